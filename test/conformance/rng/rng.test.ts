/**
 * Every noise generator against the reference files in ../shared/fixtures/rng (see its README.md):
 * torch 1.13 / 2.13 CPU randn (AVX2 and portable kernels) and AUTOMATIC1111's rng_philox.py.
 * One shared suite; adding a generator means adding one row to IMPLEMENTATIONS.
 *
 * Result when written: all 3 x 55,160 values bit-exact (max abs difference 0), so bit-exactness is asserted;
 * the project's bar (|diff| <= 1e-6) is checked first so a failure says how far off it is.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { createNoiseGenerator, type NoiseGenerator } from '../../../src/diffusion/rng/index.js';
import { compare, requireFixtures } from '../../helpers/fixtures.js';

interface FixtureEntry {
  seed: number;
  shape: number[];
  call: number;
  values: number[];
}

interface Implementation {
  name: string;
  file: string;
  make(seed: number): NoiseGenerator;
  bitExact: boolean;
}

const IMPLEMENTATIONS: Implementation[] = [
  { name: 'cpu/avx2', file: 'torch-cpu.json', make: (s) => createNoiseGenerator('cpu', s), bitExact: true },
  {
    name: 'cpu/default',
    file: 'torch-cpu-default-kernel.json',
    make: (s) => createNoiseGenerator('cpu', s, { cpuKernel: 'default' }),
    bitExact: true,
  },
  { name: 'nv (philox)', file: 'philox-nv.json', make: (s) => createNoiseGenerator('nv', s), bitExact: true },
];

const TOLERANCE = 1e-6;

for (const impl of IMPLEMENTATIONS) {
  test(`${impl.name} vs ${impl.file}${impl.bitExact ? ': bit-exact' : `: within ${TOLERANCE}`}`, async (t) => {
    const entries: FixtureEntry[] = JSON.parse(readFileSync(join(requireFixtures('rng'), impl.file), 'utf8'));
    assert.ok(entries.length > 0);
    // Replay call 1, 2, … of each (seed, shape) on one generator, in order.
    entries.sort((a, b) => a.seed - b.seed || a.shape.join().localeCompare(b.shape.join()) || a.call - b.call);
    const generators = new Map<string, { gen: NoiseGenerator; calls: number }>();
    let total = 0;
    let exact = 0;
    let worst = 0;
    for (const e of entries) {
      const key = `${e.seed}:${e.shape.join('x')}`;
      if (e.call === 1) generators.set(key, { gen: impl.make(e.seed), calls: 0 });
      const slot = generators.get(key);
      assert.ok(slot && slot.calls === e.call - 1, `${key}: call ${e.call} without the calls before it`);
      slot.calls++;
      const got = slot.gen.randn(e.shape);
      const want = Float32Array.from(e.values); // shortest decimals of float32 values: exact
      const { maxAbs } = compare(got, want);
      let same = 0;
      for (let i = 0; i < got.length; i++) if (Object.is(got[i], want[i])) same++;
      total += got.length;
      exact += same;
      worst = Math.max(worst, maxAbs);
      await t.test(`seed ${e.seed} [${e.shape.join(',')}] call ${e.call}`, () => {
        assert.equal(got.length, want.length);
        assert.ok(maxAbs <= TOLERANCE, `max abs difference ${maxAbs}`);
        if (impl.bitExact) assert.equal(same, got.length, `${got.length - same} values not bit-identical`);
      });
    }
    t.diagnostic(`${impl.name}: ${exact} of ${total} values bit-exact, max abs difference ${worst}`);
  });
}
