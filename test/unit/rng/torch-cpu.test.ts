import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createNoiseGenerator, type TorchCpuKernel } from '../../../src/diffusion/rng/index.js';

const KERNELS: TorchCpuKernel[] = ['avx2', 'default'];
const cpu = (seed: number | bigint, kernel: TorchCpuKernel = 'avx2') =>
  createNoiseGenerator('cpu', seed, { cpuKernel: kernel });

function assertSameBits(a: Float32Array, b: Float32Array, msg?: string): void {
  assert.equal(a.length, b.length, msg);
  assert.deepEqual(new Uint32Array(a.buffer, a.byteOffset, a.length), new Uint32Array(b.buffer, b.byteOffset, b.length), msg);
}
const round4 = (a: Float32Array) => Array.from(a, (v) => Number(v.toFixed(4)));

// Widely published torch outputs (torch docs, tutorials): torch.manual_seed(s); torch.randn(shape), to 4 d.p.
// The 3- and 5-element cases run the numel < 16 path, the 4x4 case the numel >= 16 path.
const PUBLISHED: { seed: number; shape: number[]; values: number[] }[] = [
  { seed: 42, shape: [3], values: [0.3367, 0.1288, 0.2345] },
  { seed: 0, shape: [5], values: [1.541, -0.2934, -2.1788, 0.5684, -1.0845] },
  {
    seed: 0,
    shape: [4, 4],
    values: [
      -1.1258, -1.1524, -0.2506, -0.4339, 0.8487, 0.692, -0.316, -2.1152, 0.3223, -1.2633, 0.35, 0.3081, 0.1198,
      1.2377, 1.1168, -0.2473,
    ],
  },
];

for (const kernel of KERNELS) {
  test(`cpu/${kernel}: published torch.randn values (golden table)`, () => {
    for (const { seed, shape, values } of PUBLISHED) assert.deepEqual(round4(cpu(seed, kernel).randn(shape)), values);
  });

  test(`cpu/${kernel}: same seed, same noise; different seed, different noise`, () => {
    assertSameBits(cpu(7, kernel).randn([1, 4, 8, 8]), cpu(7, kernel).randn([1, 4, 8, 8]));
    assert.notDeepEqual(cpu(7, kernel).randn([16]), cpu(8, kernel).randn([16]));
  });

  test(`cpu/${kernel}: [1,4,2,2] is the first 16 values of [1,4,8,8]; [1,4,16,16] starts with [1,4,8,8]`, () => {
    const big = cpu(1234, kernel).randn([1, 4, 8, 8]);
    assertSameBits(cpu(1234, kernel).randn([1, 4, 2, 2]), big.subarray(0, 16));
    assertSameBits(cpu(1234, kernel).randn([1, 4, 16, 16]).subarray(0, 256), big);
  });

  test(`cpu/${kernel}: [2,4,8,8] equals two successive [1,4,8,8] calls on one generator`, () => {
    const g = cpu(42, kernel);
    const first = g.randn([1, 4, 8, 8]);
    const second = g.randn([1, 4, 8, 8]);
    const both = cpu(42, kernel).randn([2, 4, 8, 8]);
    assertSameBits(both.subarray(0, 256), first);
    assertSameBits(both.subarray(256), second);
  });

  test(`cpu/${kernel}: a ragged tail (numel % 16 != 0) redoes the last 16 slots from fresh uniforms`, () => {
    const ragged = cpu(0, kernel).randn([1, 4, 5, 5]); // 100 = 6*16 + 4
    const long = cpu(0, kernel).randn([1, 4, 64, 64]);
    assertSameBits(ragged.subarray(0, 84), long.subarray(0, 84));
    // the last 16 come from 16 fresh uniforms (draws 100..115), not from the block-aligned stream
    assert.notDeepEqual(Array.from(ragged.subarray(84)), Array.from(long.subarray(84, 100)));
  });
}

test('cpu: small tensors (numel < 16) keep the second Box-Muller value in the generator across calls', () => {
  const g = cpu(42);
  const a = g.randn([1, 3]);
  const b = g.randn([1, 3]);
  const six = cpu(42).randn([6]);
  assertSameBits(a, six.subarray(0, 3));
  assertSameBits(b, six.subarray(3));
  assert.deepEqual(round4(b), [0.2303, -1.1229, -0.1863]); // torch.manual_seed(42); torch.randn(6)[3:]
});

test('cpu: the numel >= 16 path neither uses nor clears the cached small-tensor value', () => {
  const g = cpu(3);
  const one = g.randn([1]); // draws a pair, caches its sine half
  const block = g.randn([16]);
  const next = g.randn([1]); // the cached half, still there
  const h = cpu(3);
  const two = h.randn([2]); // same pair, cache consumed: same 4 MT draws as above
  assertSameBits(one, two.subarray(0, 1));
  assertSameBits(next, two.subarray(1));
  assertSameBits(block, h.randn([16]));
});

test('cpu: torch keeps only the low 32 bits of the seed', () => {
  const five = cpu(5).randn([1, 4, 8, 8]);
  assertSameBits(cpu(2 ** 32 + 5).randn([1, 4, 8, 8]), five);
  assertSameBits(cpu(7 * 2 ** 32 + 5).randn([1, 4, 8, 8]), five);
  assertSameBits(cpu((1n << 63n) + 5n).randn([1, 4, 8, 8]), five);
  assertSameBits(cpu(2 ** 32 + 5).randn([3]), cpu(5).randn([3]));
});

test('cpu: the avx2 and default kernels agree on small tensors and to ~2e-6 on large ones', () => {
  assertSameBits(cpu(11, 'avx2').randn([15]), cpu(11, 'default').randn([15]));
  const a = cpu(11, 'avx2').randn([1, 4, 64, 64]);
  const d = cpu(11, 'default').randn([1, 4, 64, 64]);
  let differ = 0;
  let maxAbs = 0;
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== d[i]) differ++;
    maxAbs = Math.max(maxAbs, Math.abs(a[i] - d[i]));
  }
  assert.ok(differ > 0, 'the kernels are distinct');
  assert.ok(maxAbs < 1e-5, `max abs difference ${maxAbs}`);
});

test('cpu: empty and scalar shapes', () => {
  assert.equal(cpu(1).randn([0, 4]).length, 0);
  assert.deepEqual(round4(cpu(42).randn([])), [0.3367]);
});
