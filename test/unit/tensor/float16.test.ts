import { test } from 'node:test';
import assert from 'node:assert/strict';
import { float16BitsToFloat32, float32ToFloat16Bits, float16ToFloat32Array, float32ToFloat16Array } from '../../../src/tensor/float16.js';

// Golden: numpy 2.4 `np.array(values, dtype=np.float32).astype(np.float16).view(np.uint16)`.
const NUMPY_GOLDEN: Array<[number, number]> = [
  [1.0, 15360],
  [0.5, 14336],
  [2.5, 16640],
  [1 / 3, 13653],
  [65519.99, 31743], // just below the Inf rounding threshold 65520 → max finite 65504
  [65520, 31744], // tie between 65504 and 2^16 → even → Inf
  [1e-8, 0],
  [2 ** -25, 0], // tie between 0 and the smallest subnormal → even → 0
  [2 ** -25 * 1.0001, 1],
  [6.1e-5, 1023], // largest subnormal region
  [-0, 32768],
  [1 + 2 ** -11, 15360], // tie → even (1.0)
  [1 + 3 * 2 ** -11, 15362], // tie → even (1 + 2^-9)
  [65504 + 15.99, 31743],
  [2 ** -24 * 1.5, 2], // subnormal tie → even
  [2 ** -24 * 2.5, 2],
  [2 ** -24 * 0.5, 0],
  [2 ** -24 * 0.50001, 1],
  [-(2 ** -24) * 3.5, 32772],
  [2 ** -14 * (1 - 2 ** -11), 1024], // rounds up out of the subnormal range to the smallest normal
  [1e30, 31744],
  [-1e30, 64512],
  [Infinity, 31744],
  [-Infinity, 64512],
];

test('float32 → float16 matches numpy, ties to even', () => {
  for (const [v, bits] of NUMPY_GOLDEN) assert.equal(float32ToFloat16Bits(v), bits, `value ${v}`);
});

test('NaN stays NaN (quiet) in both directions', () => {
  const bits = float32ToFloat16Bits(NaN);
  assert.equal(bits & 0x7c00, 0x7c00);
  assert.notEqual(bits & 0x3ff, 0);
  assert.ok(Number.isNaN(float16BitsToFloat32(bits)));
  // a signalling-NaN payload with only low bits set must not collapse into Inf
  const f = new Float32Array(new Uint32Array([0x7f800001]).buffer)[0];
  assert.ok(Number.isNaN(float16BitsToFloat32(float32ToFloat16Bits(f))));
});

test('every non-NaN fp16 value decodes exactly and re-encodes to the same bits', () => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const decoded = float16ToFloat32Array(all);
  for (let b = 0; b < 65536; b++) {
    const isNaN16 = (b & 0x7c00) === 0x7c00 && (b & 0x3ff) !== 0;
    if (isNaN16) {
      assert.ok(Number.isNaN(decoded[b]));
      continue;
    }
    assert.equal(decoded[b], float16BitsToFloat32(b));
    assert.equal(float32ToFloat16Bits(decoded[b]), b, `bits ${b}`);
  }
  assert.equal(float16BitsToFloat32(0x3c00), 1);
  assert.equal(float16BitsToFloat32(0x7bff), 65504);
  assert.equal(float16BitsToFloat32(0x0001), 2 ** -24);
  assert.ok(Object.is(float16BitsToFloat32(0x8000), -0));
});

test('midpoints between neighbouring positive fp16 values round to the even one', () => {
  for (let b = 0; b < 0x7bff; b += 37) {
    const lo = float16BitsToFloat32(b);
    const hi = float16BitsToFloat32(b + 1);
    const mid = (lo + hi) / 2; // exact in float32
    assert.equal(float32ToFloat16Bits(mid), b % 2 === 0 ? b : b + 1, `between ${b} and ${b + 1}`);
  }
});

test('array helpers', () => {
  const src = new Float32Array([0, 1, -2, 0.1]);
  const half = float32ToFloat16Array(src);
  assert.deepEqual([...half], [0, 15360, 49152, 11878]);
  assert.deepEqual([...float16ToFloat32Array(half)], [0, 1, -2, float16BitsToFloat32(11878)]);
});
