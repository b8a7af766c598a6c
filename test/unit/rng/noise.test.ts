import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LoraserveError } from '../../../src/core/errors.js';
import { createNoiseGenerator, MAX_SEED, parseSeed, randomSeed } from '../../../src/diffusion/rng/index.js';

const isInvalid = (e: unknown) => e instanceof LoraserveError && e.code === 'INVALID_ARGUMENT';

for (const [kind, cpuKernel] of [
  ['cpu', 'avx2'],
  ['cpu', 'default'],
  ['nv', undefined],
] as const) {
  test(`${kind}${cpuKernel ? `/${cpuKernel}` : ''}: a large draw has N(0,1) moments`, () => {
    const g = createNoiseGenerator(kind, 2024, { cpuKernel });
    assert.equal(g.kind, kind);
    const x = g.randn([4, 256, 256]); // 262144 values
    let s1 = 0;
    let s2 = 0;
    let s4 = 0;
    for (const v of x) {
      s1 += v;
      s2 += v * v;
      s4 += v ** 4;
    }
    const n = x.length;
    const mean = s1 / n;
    const variance = s2 / n - mean * mean;
    // standard errors: mean 1/sqrt(n) ~ 0.002, variance sqrt(2/n) ~ 0.003, 4th moment sqrt(96/n) ~ 0.02
    assert.ok(Math.abs(mean) < 0.01, `mean ${mean}`);
    assert.ok(Math.abs(variance - 1) < 0.015, `variance ${variance}`);
    assert.ok(Math.abs(s4 / n - 3) < 0.1, `4th moment ${s4 / n}`);
  });
}

test('parseSeed accepts -1 and integers 0..2^53-1 (numbers or decimal strings)', () => {
  assert.equal(parseSeed(-1), -1);
  assert.equal(parseSeed(0), 0);
  assert.equal(parseSeed(42), 42);
  assert.equal(parseSeed(MAX_SEED), 2 ** 53 - 1);
  assert.equal(parseSeed('1234'), 1234);
  assert.equal(parseSeed('-1'), -1);
  assert.equal(parseSeed(4294967296), 4294967296);
});

test('parseSeed rejects everything else with INVALID_ARGUMENT', () => {
  for (const bad of [1.5, -2, 2 ** 53, Number.NaN, Infinity, -Infinity, '12a', '', '1e3', '0x10', null, undefined, {}, [], true, 5n]) {
    assert.throws(() => parseSeed(bad), isInvalid, `parseSeed(${String(bad)})`);
  }
});

test('randomSeed is an integer in A1111\'s range [0, 4294967293]', () => {
  for (let i = 0; i < 1000; i++) {
    const s = randomSeed();
    assert.ok(Number.isInteger(s) && s >= 0 && s <= 4294967293, String(s));
  }
});

test('createNoiseGenerator validates its inputs', () => {
  assert.throws(() => createNoiseGenerator('cpu', -1), isInvalid, 'seed -1 must be resolved first');
  assert.throws(() => createNoiseGenerator('nv', 1.5), isInvalid);
  assert.throws(() => createNoiseGenerator('nv', 2 ** 53), isInvalid);
  assert.throws(() => createNoiseGenerator('nv', 1n << 64n), isInvalid);
  assert.throws(() => createNoiseGenerator('gpu' as never, 1), isInvalid);
  assert.throws(() => createNoiseGenerator('cpu', 1, { cpuKernel: 'neon' as never }), isInvalid);
  const g = createNoiseGenerator('cpu', 1);
  assert.throws(() => g.randn([1, -4]), isInvalid);
  assert.throws(() => g.randn([2.5]), isInvalid);
  assert.throws(() => g.randn([65536, 65536]), isInvalid);
});
