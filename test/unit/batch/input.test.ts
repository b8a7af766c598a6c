/** Input formats of `loraserve batch`: JSONL, CSV (RFC 4180 quoting), A1111 lines; every error names its line. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseLoraList, readCsvRecords } from '../../../src/cli/batch-csv.js';
import { detectFormat, parseInput } from '../../../src/cli/batch-input.js';

test('JSONL: one object per line, blank lines skipped, bad lines reported with their numbers', () => {
  const text = ['{"prompt":"a","steps":3}', '', '{"prompt":"b",}', '[1,2]', '\ufeff', '{"prompt":"c","loras":[{"name":"catears","weight":0.6}]}'].join('\n');
  const p = parseInput(text, 'jsonl');
  assert.deepEqual(p.lines.map((l) => [l.line, l.body.prompt]), [[1, 'a'], [6, 'c']]);
  assert.deepEqual(p.errors.map((e) => e.line), [3, 4]);
  assert.match(p.errors[0].message, /not valid JSON/);
  assert.match(p.errors[1].message, /must be a JSON object/);
});

test('CSV records: quotes, doubled quotes, embedded commas and line breaks, CRLF, BOM', () => {
  const { records, errors } = readCsvRecords('\ufeffa,b,c\r\n"x, y","say ""hi""", z \r\n"multi\nline",,"  kept  "\n\n');
  assert.deepEqual(errors, []);
  assert.deepEqual(records.map((r) => [r.line, r.cells]), [
    [1, ['a', 'b', 'c']],
    [2, ['x, y', 'say "hi"', ' z ']],
    [3, ['multi\nline', '', '  kept  ']],
  ]);
  assert.deepEqual(records[2].quoted, [true, false, true]);
});

test('CSV rows: typed cells, loras as name:weight;…, bad rows named by the line they start on', () => {
  const text = [
    'prompt,negative_prompt,steps,loras,seed',
    '"cute 1girl, cat ears","bad hands, extra digits",3,catears:0.6;idol:0.8,5',
    'plain,,2,,',
    '"multi',
    'line",x,2,"[{""name"":""stage"",""weight"":0.4}]",',
    'bad,x,abc,,',
    'short,row',
    '"unclosed,x,2,,',
  ].join('\n');
  const p = parseInput(text, 'csv');
  assert.deepEqual(
    p.lines.map((l) => [l.line, l.body]),
    [
      [2, { prompt: 'cute 1girl, cat ears', negative_prompt: 'bad hands, extra digits', steps: 3, loras: [{ name: 'catears', weight: 0.6 }, { name: 'idol', weight: 0.8 }], seed: 5 }],
      [3, { prompt: 'plain', steps: 2 }],
      [4, { prompt: 'multi\nline', negative_prompt: 'x', steps: 2, loras: [{ name: 'stage', weight: 0.4 }] }],
    ],
  );
  assert.deepEqual(
    p.errors.map((e) => [e.line, e.message]),
    [
      [6, "steps: 'abc' is not a number"],
      [7, '2 cells, but the header has 5 columns'],
      [8, 'a quoted cell is not closed (missing ")'],
    ],
  );
});

test('CSV header problems are one error on line 1', () => {
  const p = parseInput('prompt,cfg,steps,steps\nx,1,2,3\n', 'csv');
  assert.equal(p.lines.length, 0);
  assert.equal(p.errors[0].line, 1);
  assert.match(p.errors[0].message, /column 'cfg' is not a native field/);
  assert.match(p.errors[0].message, /column 'steps' appears twice/);
  assert.match(parseInput('steps\n3\n', 'csv').errors[0].message, /no 'prompt' column/);
});

test('lora lists: name, name:weight, name:te:unet, JSON; malformed entries refused', () => {
  assert.deepEqual(parseLoraList(' catears ; idol:0.5;stage:0.2:0.7 '), [
    { name: 'catears' },
    { name: 'idol', weight: 0.5 },
    { name: 'stage', weight: 0.7, te: 0.2, unet: 0.7 },
  ]);
  assert.deepEqual(parseLoraList('[{"name":"x","weight":-1}]'), [{ name: 'x', weight: -1 }]);
  assert.throws(() => parseLoraList('catears:abc'), /'catears:abc' is not NAME, NAME:WEIGHT or NAME:TE:UNET/);
  assert.throws(() => parseLoraList('a:1:2:3'), /not NAME/);
});

test('A1111 lines: line numbers in errors, the other lines parsed, warnings kept', () => {
  const p = parseInput(['cute 1girl', '--prompt "cat" --steps x', '', '--prompt dog --styles anime', '--stpes 3'].join('\n'), 'a1111');
  assert.deepEqual(p.lines.map((l) => [l.line, l.body.prompt]), [[1, 'cute 1girl'], [4, 'dog']]);
  assert.deepEqual(p.errors.map((e) => e.line), [2, 5]);
  assert.match(p.errors[1].message, /unknown commandline option: --stpes/);
  assert.deepEqual(p.warnings, [{ line: 4, message: '--styles is not supported by loraserve and was ignored' }]);
});

test('format detection: by extension, else JSONL when the first line is an object, else A1111', () => {
  assert.equal(detectFormat('x.jsonl', ''), 'jsonl');
  assert.equal(detectFormat('x.NDJSON', ''), 'jsonl');
  assert.equal(detectFormat('x.csv', '{"prompt":1}'), 'csv');
  assert.equal(detectFormat('x.txt', '\n  {"prompt":"a"}\n'), 'jsonl');
  assert.equal(detectFormat('x.txt', '--prompt a'), 'a1111');
  assert.equal(detectFormat('prompts', 'a cat'), 'a1111');
});
