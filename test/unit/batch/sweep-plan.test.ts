/** Sweeps (parsing, product order, how they change a request), deterministic names, and the plan of a batch. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseInput } from '../../../src/cli/batch-input.js';
import { buildPlan } from '../../../src/cli/batch-plan.js';
import { sheetPages } from '../../../src/cli/batch-sheet.js';
import { applySweepPoint, checkSweeps, imageFileName, itemName, parseSweep, splitSweepValues, sweepPoints } from '../../../src/cli/batch-sweep.js';

test('sweep values: commas split, quotes keep commas, numbers canonical', () => {
  assert.deepEqual(splitSweepValues('0, 0.4 ,0.8'), ['0', '0.4', '0.8']);
  assert.deepEqual(splitSweepValues('"DPM++ 2M Karras",Euler a, "say ""x"", y" '), ['DPM++ 2M Karras', 'Euler a', 'say "x", y']);
  assert.throws(() => splitSweepValues('a,,b'), /empty value/);
  assert.throws(() => splitSweepValues('"a'), /unclosed quote/);
  const s = parseSweep('lora.catears=0,0.40,.8');
  assert.deepEqual(s.target, { kind: 'lora', name: 'catears' });
  assert.deepEqual(s.values.map((v) => v.label), ['0', '0.4', '0.8']);
  assert.deepEqual(parseSweep('sampler="DPM++ 2M Karras",euler').values.map((v) => v.value), ['DPM++ 2M Karras', 'euler']);
  for (const [spec, msg] of [
    ['seed', /expected KEY=V1,V2/],
    ['prompt=a,b', /'prompt' cannot be swept/],
    ['steps=1,2.5', /'2.5' is not an integer/],
    ['cfg_scale=x', /'x' is not a number/],
    ['seed=1,1.0', /value 1 is listed twice/],
    ['lora.=1', /needs a LoRA name/],
  ] as const) {
    assert.throws(() => parseSweep(spec), msg, spec);
  }
  assert.throws(() => checkSweeps([parseSweep('seed=1'), parseSweep('seed=2')]), /given twice/);
});

test('the product runs like itertools.product: first sweep outermost', () => {
  const sweeps = [parseSweep('lora.catears=0,0.4,0.8'), parseSweep('lora.idol=0.5,1'), parseSweep('seed=1,2')];
  const pts = sweepPoints(sweeps);
  assert.equal(pts.length, 12);
  assert.deepEqual(pts.slice(0, 5), [[0, 0, 0], [0, 0, 1], [0, 1, 0], [0, 1, 1], [1, 0, 0]]);
  assert.deepEqual(sweepPoints([]), [[]]);
});

test('a LoRA sweep overrides that LoRA (dropping its te/unet) or appends it; field sweeps set the field', () => {
  const body = { prompt: 'x', loras: [{ name: 'catears', weight: 0.6, te: 0.2 }, { name: 'stage', weight: 0.4 }] };
  const sweeps = [parseSweep('lora.catears=0.8'), parseSweep('lora.idol=1'), parseSweep('cfg_scale=5')];
  assert.deepEqual(applySweepPoint(body, sweeps, [0, 0, 0]), {
    prompt: 'x',
    loras: [{ name: 'catears', weight: 0.8 }, { name: 'stage', weight: 0.4 }, { name: 'idol', weight: 1 }],
    cfg_scale: 5,
  });
  assert.equal(body.loras[0].weight, 0.6, 'the line itself is not changed');
});

test('names: golden table', () => {
  const table: Array<[Parameters<typeof itemName>, string]> = [
    [[3, 4, undefined, ['lora.catears=0.4', 'seed=2']], '0003-lora.catears=0.4-seed=2'],
    [[12, 4, undefined, []], '0012'],
    [[12345, 5, 1, ['cfg_scale=7.5']], '12345-iter2-cfg_scale=7.5'],
    [[1, 4, undefined, ['sampler=DPM++ 2M Karras']], '0001-sampler=DPM++_2M_Karras'],
    [[1, 4, undefined, ['lora.ねこ=1', 'scheduler=a/b\\c']], '0001-lora.__=1-scheduler=a_b_c'],
  ];
  for (const [args, want] of table) assert.equal(itemName(...args), want);
  const long = itemName(1, 4, undefined, [`sampler=${'x'.repeat(200)}`]);
  assert.equal(long.length, 150);
  assert.match(long, /^0001-sampler=x+~[0-9a-f]{8}$/);
  assert.equal(imageFileName('0003-seed=2', 0, 1), '0003-seed=2.png');
  assert.equal(imageFileName('0003-seed=2', 1, 2), '0003-seed=2-img1.png');
});

test('plan: defaults filled in, lines × iterations × sweep points, bad lines and bad sweep values named', () => {
  const text = [
    '--prompt "cat ears" --steps 3 --width 64 --height 64 --n_iter 2 --seed 10 --batch_size 2',
    '--prompt dog --width 4',
    'a plain prompt',
  ].join('\n');
  const plan = buildPlan(parseInput(text, 'a1111'), [parseSweep('lora.catears=0,0.5'), parseSweep('steps=2,0')], { width: 64, height: 64 });
  assert.deepEqual(
    plan.items.map((i) => [i.key, i.files.join(' '), i.body.seed]),
    [
      ['0001-iter1-lora.catears=0-steps=2', '0001-iter1-lora.catears=0-steps=2-img0.png 0001-iter1-lora.catears=0-steps=2-img1.png', 10],
      ['0001-iter1-lora.catears=0.5-steps=2', '0001-iter1-lora.catears=0.5-steps=2-img0.png 0001-iter1-lora.catears=0.5-steps=2-img1.png', 10],
      ['0001-iter2-lora.catears=0-steps=2', '0001-iter2-lora.catears=0-steps=2-img0.png 0001-iter2-lora.catears=0-steps=2-img1.png', 12],
      ['0001-iter2-lora.catears=0.5-steps=2', '0001-iter2-lora.catears=0.5-steps=2-img0.png 0001-iter2-lora.catears=0.5-steps=2-img1.png', 12],
      ['0003-lora.catears=0-steps=2', '0003-lora.catears=0-steps=2.png', -1],
      ['0003-lora.catears=0.5-steps=2', '0003-lora.catears=0.5-steps=2.png', -1],
    ],
  );
  assert.deepEqual(plan.items[4].body, {
    prompt: 'a plain prompt',
    negative_prompt: '',
    loras: [{ name: 'catears', weight: 0 }],
    sampler: 'euler_a',
    scheduler: 'automatic',
    steps: 2,
    cfg_scale: 7,
    seed: -1,
    rng: 'cpu',
    flavor: 'a1111',
    width: 64,
    height: 64,
    batch_size: 1,
  });
  assert.deepEqual(
    plan.errors.map((e) => [e.line, e.message]),
    [
      [1, 'lora.catears=0 steps=0: steps must be an integer from 1 to 10000 (got 0)'],
      [1, 'lora.catears=0.5 steps=0: steps must be an integer from 1 to 10000 (got 0)'],
      [2, 'width must be an integer from 8 to 16384 (got 4)'],
      [3, 'lora.catears=0 steps=0: steps must be an integer from 1 to 10000 (got 0)'],
      [3, 'lora.catears=0.5 steps=0: steps must be an integer from 1 to 10000 (got 0)'],
    ],
  );
  assert.equal(plan.items[0].seedGroup, '0001');
  assert.deepEqual(plan.items.map((i) => i.seedOffset), [0, 0, 2, 2, 0, 0]);
});

test('plan: JSONL fields are checked like the server checks them, naming the field', () => {
  const text = ['{"prompt":"a","cfg":7}', '{"prompt":"b","loras":[{"name":"x","weight":99}]}', '{"steps":3}'].join('\n');
  const plan = buildPlan(parseInput(text, 'jsonl'), [], {});
  assert.equal(plan.items.length, 0);
  assert.deepEqual(plan.errors.map((e) => [e.line, e.message]), [
    [1, "'cfg' is not a known field (did you mean 'cfg_scale'?)"],
    [2, 'loras[0].weight must be a number from -20 to 20 (got 99)'],
    [3, 'prompt is required'],
  ]);
});

test('contact sheets: X = first sweep, Y = second, one sheet per value of the rest', () => {
  const sweeps = [parseSweep('lora.catears=0,0.4,0.8'), parseSweep('lora.idol=0.5,1'), parseSweep('seed=1,2')];
  const plan = buildPlan(parseInput('{"prompt":"a"}\n{"prompt":"b"}\n', 'jsonl'), sweeps, {});
  const pages = sheetPages(plan.groups, sweeps, plan.lineDigits);
  assert.deepEqual(pages.map((p) => p.file), ['sheet-0001-seed=1.png', 'sheet-0001-seed=2.png', 'sheet-0002-seed=1.png', 'sheet-0002-seed=2.png']);
  const p = pages[1];
  assert.equal(p.cells.length, 2);
  assert.equal(p.cells[0].length, 3);
  assert.equal(p.cells[1][2]?.key, '0001-lora.catears=0.8-lora.idol=1-seed=2');
  assert.equal(sheetPages(plan.groups, [], plan.lineDigits).length, 0);
});
