import assert from 'node:assert/strict';
import { test } from 'node:test';
import { glibcCosf, glibcLogf, glibcSinf } from '../../../src/diffusion/rng/glibc-mathf.js';

// Golden values from Debian bookworm glibc 2.36 (x86-64) logf/cosf/sinf, chosen where the correctly rounded
// Math.fround(Math.log(x)) etc. is one ulp away, so a regression to plain Math functions fails here.
// (The port was checked on all 2^24 inputs the Box-Muller kernel can produce: 0 differences.)
const LOGF: [number, number][] = [
  [0.9857334494590759, -0.014369296841323376],
  [0.983950138092041, -0.01618005707859993],
];
const COSF: [number, number][] = [
  [0.7918115854263306, 0.7025572657585144],
  [1.060728669166565, 0.48823627829551697],
];
const SINF: [number, number][] = [
  [0.11951904743909836, 0.11923470348119736],
  [0.4108458161354065, 0.39938491582870483],
];

test('glibcLogf matches glibc logf (golden table)', () => {
  for (const [x, want] of LOGF) {
    assert.equal(glibcLogf(x), want, `logf(${x})`);
    assert.notEqual(Math.fround(Math.log(x)), want, 'premise: correctly rounded log differs here');
  }
  assert.equal(glibcLogf(1), 0);
  assert.equal(glibcLogf(2 ** -24), Math.fround(-24 * Math.LN2));
  assert.equal(glibcLogf(0), -Infinity);
  assert.ok(Number.isNaN(glibcLogf(-1)));
});

test('glibcCosf / glibcSinf match glibc (golden table)', () => {
  for (const [x, want] of COSF) assert.equal(glibcCosf(x), want, `cosf(${x})`);
  for (const [x, want] of SINF) assert.equal(glibcSinf(x), want, `sinf(${x})`);
  assert.equal(glibcCosf(0), 1);
  assert.equal(glibcSinf(0), 0);
  assert.equal(glibcSinf(2 ** -13), 2 ** -13); // tiny arguments return x itself
});

test('glibc sinf/cosf stay within 1 ulp of the true value over [0, 2pi)', () => {
  for (let i = 0; i < 2000; i++) {
    const x = Math.fround((i / 2000) * 2 * Math.PI);
    for (const [got, exact] of [
      [glibcSinf(x), Math.sin(x)],
      [glibcCosf(x), Math.cos(x)],
    ]) {
      const ulp = 2 ** (Math.floor(Math.log2(Math.max(Math.abs(exact), 2 ** -126))) - 23);
      assert.ok(Math.abs(got - exact) <= ulp, `x=${x}: ${got} vs ${exact}`);
    }
  }
});
