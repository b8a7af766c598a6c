/**
 * A1111 "prompts from file" lines. Golden tables: the expected values are what CPython 3's `shlex.split` and
 * A1111's `cmdargs` (stable-diffusion-webui scripts/prompts_from_file.py) return for the same input.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { a1111CommandArgs, parseA1111Line, splitShellWords } from '../../../src/cli/batch-a1111.js';

test('splitShellWords matches Python shlex.split (posix, no comments)', () => {
  const table: Array<[string, string[]]> = [
    ['a b  c', ['a', 'b', 'c']],
    ['--prompt "cute 1girl, cat ears" --steps 20', ['--prompt', 'cute 1girl, cat ears', '--steps', '20']],
    ["--prompt 'it''s' x", ['--prompt', 'its', 'x']],
    ['--prompt "say \\"hi\\"" --seed 5', ['--prompt', 'say "hi"', '--seed', '5']],
    ['--prompt "back\\slash \\\\ \\n" end', ['--prompt', 'back\\slash \\ \\n', 'end']],
    ["a\\ b c\\\\d 'e\\f'", ['a b', 'c\\d', 'e\\f']],
    ['"" x \'\'', ['', 'x', '']],
    ['a"b c"d', ['ab cd']],
    ['--prompt\t(masterpiece:1.3),\tbest\r\nquality', ['--prompt', '(masterpiece:1.3),', 'best', 'quality']],
    ['x\\"y', ['x"y']],
    ['a#b # c', ['a#b', '#', 'c']],
    ['', []],
  ];
  for (const [input, want] of table) assert.deepEqual(splitShellWords(input), want, input);
  assert.throws(() => splitShellWords('--prompt "open'), /No closing quotation/);
  assert.throws(() => splitShellWords("'x"), /No closing quotation/);
  assert.throws(() => splitShellWords('a\\'), /No escaped character/);
});

test("a1111CommandArgs matches A1111's cmdargs", () => {
  const table: Array<[string, Record<string, unknown> | RegExp]> = [
    ['--prompt "cute 1girl, cat ears" --negative_prompt bad   hands --steps 20 --seed 5', { prompt: 'cute 1girl, cat ears', negative_prompt: 'bad hands', steps: 20, seed: 5 }],
    ['--prompt a --prompt b c', { prompt: 'b c' }],
    ['--cfg_scale 7.5 --width 64 --height 64 --batch_size 2 --n_iter 3 --prompt x', { cfg_scale: 7.5, width: 64, height: 64, batch_size: 2, n_iter: 3, prompt: 'x' }],
    ['--prompt --steps 20', { prompt: '--steps 20' }],
    ['--restore_faces true --tiling yes --prompt p', { restore_faces: true, tiling: false, prompt: 'p' }],
    ['--seed 1_000 --cfg_scale 1e1 --steps +3 --prompt p', { seed: 1000, cfg_scale: 10, steps: 3, prompt: 'p' }],
    ['--sampler_name "DPM++ 2M Karras" --prompt (masterpiece:1.3), //cute', { sampler_name: 'DPM++ 2M Karras', prompt: '(masterpiece:1.3), //cute' }],
    ['--negative_prompt "" --prompt x', { negative_prompt: '', prompt: 'x' }],
    ['--steps', /missing argument for command line option --steps/],
    ['--stpes 20', /unknown commandline option: --stpes/],
    ['--steps x', /invalid literal for int\(\) with base 10: 'x'/],
    ['--steps 2.0', /invalid literal for int\(\) with base 10: '2.0'/],
    ['--prompt "open', /No closing quotation/],
    ['--cfg_scale abc', /could not convert string to float: 'abc'/],
  ];
  for (const [line, want] of table) {
    if (want instanceof RegExp) assert.throws(() => a1111CommandArgs(line), want, line);
    else assert.deepEqual(a1111CommandArgs(line), want, line);
  }
  // Python's float() takes inf and nan; a render cannot.
  assert.throws(() => a1111CommandArgs('--cfg_scale inf'), /not a finite number/);
});

test('parseA1111Line maps tags to native fields, counts n_iter and warns about unsupported tags', () => {
  assert.deepEqual(parseA1111Line('  a plain prompt, with -- inside  '), { body: { prompt: 'a plain prompt, with -- inside', flavor: 'a1111' }, nIter: 1, warnings: [] });
  const p = parseA1111Line('--prompt "cat" --sampler_name "Euler a" --n_iter 2 --tiling true --do_not_save_grid true --seed 7');
  assert.deepEqual(p.body, { flavor: 'a1111', prompt: 'cat', sampler: 'Euler a', seed: 7 });
  assert.equal(p.nIter, 2);
  assert.deepEqual(p.warnings, ['--tiling is not supported by loraserve and was ignored']);
  assert.deepEqual(parseA1111Line('--steps 3').body, { flavor: 'a1111', steps: 3, prompt: '' });
  assert.throws(() => parseA1111Line('--n_iter 0 --prompt x'), /n_iter must be at least 1/);
});
