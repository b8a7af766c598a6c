import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePromptAttention } from '../../../src/text/prompt-attention.js';

type Row = [string, Array<[string, number]>];
const run = (p: string): Array<[string, number]> => parsePromptAttention(p).map((r) => [r.text, r.weight]);

/** A1111 v1.9.4 modules/prompt_parser.py parse_prompt_attention docstring, verbatim (exact float results). */
const A1111_DOCSTRING: Row[] = [
  ['normal text', [['normal text', 1.0]]],
  ['an (important) word', [['an ', 1.0], ['important', 1.1], [' word', 1.0]]],
  ['(unbalanced', [['unbalanced', 1.1]]],
  ['\\(literal\\]', [['(literal]', 1.0]]],
  ['(unnecessary)(parens)', [['unnecessaryparens', 1.1]]],
  [
    'a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).',
    [
      ['a ', 1.0],
      ['house', 1.5730000000000004],
      [' ', 1.1],
      ['on', 1.0],
      [' a ', 1.1],
      ['hill', 0.55],
      [', sun, ', 1.1],
      ['sky', 1.4641000000000006],
      ['.', 1.1],
    ],
  ],
];

/**
 * More cases, each checked against A1111 v1.9.4's parse_prompt_attention run under CPython 3.11: BREAK, escapes,
 * lone backslashes, unicode digits, stray brackets, spaces around the weight, the seed prompt's forms.
 */
const MORE: Row[] = [
  ['a BREAK b', [['a', 1.0], ['BREAK', -1], ['b', 1.0]]],
  ['a BREAK BREAK b', [['a', 1.0], ['BREAK', -1], ['', 1.0], ['BREAK', -1], ['b', 1.0]]],
  ['BREAK', [['', 1.0], ['BREAK', -1], ['', 1.0]]],
  // \b is a word boundary: no BREAK inside a word, also after a non-ASCII letter (Python's Unicode \w)
  ['aBREAK b', [['aBREAK b', 1.0]]],
  ['éBREAK', [['éBREAK', 1.0]]],
  // a weighted BREAK is no longer the -1 marker: tokenize_line will encode the word "BREAK" with weight -1.2
  ['(a BREAK b:1.2)', [['a', 1.2], ['BREAK', -1.2], ['b', 1.2]]],
  ['\\\\(x\\\\)', [['\\', 1.0], ['x\\', 1.1]]],
  // an escaped backslash is one backslash; a lone backslash (not before ()[]\) is dropped
  ['a\\\\b', [['a\\b', 1.0]]],
  ['a\\b', [['ab', 1.0]]],
  ['(a:١.٥)', [['a', 1.5]]],
  ['[[a]]', [['a', 0.8264462809917354]]],
  ['(a:0)', [['a', 0.0]]],
  ['((a:1.2):0.5)', [['a', 0.6]]],
  ['(a:-1)', [['a', -1.0]]],
  ['(a: 1.5 )', [['a', 1.5]]],
  ['(a :1.5)', [['a ', 1.5]]],
  ['a:1.5)', [['a:1.5)', 1.0]]],
  ['(a:1.5', [['a:1.5', 1.1]]],
  ['[a', [['a', 0.9090909090909091]]],
  ['(a[b)c]', [['a', 1.1], ['b', 1.0], ['c', 0.9090909090909091]]],
  ['(a:+2)', [['a', 2.0]]],
  [':', [[':', 1.0]]],
  ['(a:.5)', [['a', 0.5]]],
  ['(a:5.)', [['a', 5.0]]],
  ['', [['', 1.0]]],
  // the seed prompt's forms: a space before the weight, empty items, nested doubles
  ['(red hair: 1.1)', [['red hair', 1.1]]],
  ['((,best quality,))', [[',best quality,', 1.2100000000000002]]],
  ['(,long_hair,single braid :1.4)', [[',long_hair,single braid ', 1.4]]],
  ['(worst quality:1.331), x', [['worst quality', 1.331], [', x', 1.0]]],
];

test('parse_prompt_attention: A1111 docstring examples', () => {
  for (const [prompt, expected] of A1111_DOCSTRING) assert.deepEqual(run(prompt), expected, prompt);
});

test('parse_prompt_attention: further cases checked against A1111', () => {
  for (const [prompt, expected] of MORE) assert.deepEqual(run(prompt), expected, JSON.stringify(prompt));
});

test('departures where A1111 raises or overflows: literal text, clamped weights', () => {
  // A1111: ValueError could not convert string to float: '1.2.3' (the render fails)
  assert.deepEqual(run('(a:1.2.3) b'), [['a:1.2.3) b', 1.1]]);
  assert.deepEqual(run('(a:.)'), [['a:.)', 1.1]]);
  // a 400-digit weight is inf in Python; here the largest float32
  const big = run(`(a:${'9'.repeat(400)})`);
  assert.equal(big[0][1], 3.4028234663852886e38);
  const deep = run('('.repeat(2000) + 'a');
  assert.ok(Number.isFinite(deep[0][1]));
});

/** A small seeded PRNG (xorshift32), so a failure names a reproducible case. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}

test('property: no string throws, every weight is finite, texts join back to the unescaped input length bound', () => {
  const alphabet = ['(', ')', '[', ']', ':', '\\', ' ', '\n', 'a', 'b', '1', '.', '0', '-', '+', '9', ':1.5)', ':1e999)', 'BREAK', ' BREAK ', 'é', '١', '\u3000', '|', '<', '>'];
  const next = rng(20240611);
  for (let i = 0; i < 4000; i++) {
    const len = 1 + Math.floor(next() * 40);
    let s = '';
    for (let j = 0; j < len; j++) s += alphabet[Math.floor(next() * alphabet.length)];
    let out: Array<[string, number]>;
    try {
      out = run(s);
    } catch (e) {
      assert.fail(`parsePromptAttention(${JSON.stringify(s)}) threw ${(e as Error).message}`);
    }
    assert.ok(out.length > 0, JSON.stringify(s));
    for (const [text, w] of out) {
      assert.ok(Number.isFinite(w), `${JSON.stringify(s)}: weight ${w} for ${JSON.stringify(text)}`);
      assert.equal(typeof text, 'string');
    }
    // runs of equal weight are merged
    for (let k = 1; k < out.length; k++) assert.notEqual(out[k][1], out[k - 1][1], JSON.stringify(s));
  }
});
