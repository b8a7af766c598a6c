import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MT19937 } from '../../../src/diffusion/rng/mt19937.js';

// Golden values of the reference MT19937 (Matsumoto & Nishimura's mt19937ar.c, C++ std::mt19937).
test('MT19937 seed 5489 (std::mt19937 default) starts with the reference outputs', () => {
  const mt = new MT19937(5489);
  const got = Array.from({ length: 5 }, () => mt.nextUint32());
  assert.deepEqual(got, [3499211612, 581869302, 3890346734, 3586334585, 545404204]);
});

test('MT19937: the 10000th output of a default-seeded engine is 4123659995 (C++ [rand.predef])', () => {
  const mt = new MT19937(5489);
  let v = 0;
  for (let i = 0; i < 10000; i++) v = mt.nextUint32();
  assert.equal(v, 4123659995);
});

test('MT19937 accepts the full uint32 seed range and rejects anything else', () => {
  assert.doesNotThrow(() => new MT19937(0));
  assert.doesNotThrow(() => new MT19937(0xffffffff));
  for (const bad of [-1, 2 ** 32, 1.5, Number.NaN]) assert.throws(() => new MT19937(bad), RangeError);
});
