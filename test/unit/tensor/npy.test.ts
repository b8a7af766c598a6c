import { test } from 'node:test';
import assert from 'node:assert/strict';
import { npyToFloat32, readNpy, writeNpy } from '../../../src/tensor/npy.js';
import { LoraserveError } from '../../../src/core/errors.js';

// Golden files written by numpy 2.4 `np.save` (hex of the whole file); writeNpy must produce the same bytes.
const hdr = (dict: string) => {
  const prefix = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, 0x76, 0]);
  return Buffer.concat([prefix, Buffer.from(dict.padEnd(117, ' ') + '\n', 'latin1')]);
};
const NUMPY_FILES = {
  // np.arange(6, dtype='<f4').reshape(2, 3)
  f32_2x3: Buffer.concat([
    hdr("{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }"),
    Buffer.from('000000000000803f0000004000004040000080400000a040', 'hex'),
  ]),
  // np.array([1.5, -2], dtype='<f2')
  f16_2: Buffer.concat([hdr("{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }"), Buffer.from('003e00c0', 'hex')]),
  // np.array(7, dtype='<i8')   (0-d)
  i64_scalar: Buffer.concat([hdr("{'descr': '<i8', 'fortran_order': False, 'shape': (), }"), Buffer.from('0700000000000000', 'hex')]),
  // np.zeros((0,), dtype='<f8')
  f64_empty: hdr("{'descr': '<f8', 'fortran_order': False, 'shape': (0,), }"),
};

function assertInvalid(fn: () => unknown, re: RegExp) {
  assert.throws(fn, (e: unknown) => e instanceof LoraserveError && e.code === 'INVALID_FILE' && re.test(e.message));
}

test('reads numpy-written files', () => {
  const a = readNpy(NUMPY_FILES.f32_2x3);
  assert.equal(a.dtype, 'float32');
  assert.deepEqual(a.shape, [2, 3]);
  assert.deepEqual([...a.data], [0, 1, 2, 3, 4, 5]);

  const h = readNpy(NUMPY_FILES.f16_2);
  assert.equal(h.dtype, 'float16');
  assert.ok(h.data instanceof Uint16Array);
  assert.deepEqual([...npyToFloat32(h)], [1.5, -2]);

  const s = readNpy(NUMPY_FILES.i64_scalar);
  assert.deepEqual(s.shape, []);
  assert.deepEqual([...(s.data as BigInt64Array)], [7n]);
  assert.deepEqual([...npyToFloat32(s)], [7]);

  const e = readNpy(NUMPY_FILES.f64_empty);
  assert.deepEqual(e.shape, [0]);
  assert.equal(e.data.length, 0);
});

test('writes byte-identical files to numpy', () => {
  assert.deepEqual(writeNpy(new Float32Array([0, 1, 2, 3, 4, 5]), [2, 3]), NUMPY_FILES.f32_2x3);
  assert.deepEqual(writeNpy(new Uint16Array([0x3e00, 0xc000]), [2]), NUMPY_FILES.f16_2);
  assert.deepEqual(writeNpy(new BigInt64Array([7n]), []), NUMPY_FILES.i64_scalar);
  assert.deepEqual(writeNpy(new Float64Array(0), [0]), NUMPY_FILES.f64_empty);
});

test('round trips every dtype, from an unaligned buffer too', () => {
  const cases = [
    new Float32Array([1.5, -0, NaN, Infinity]),
    new Uint16Array([1, 2, 65535, 0]),
    new Float64Array([Math.PI, -1e300, 5e-324, 0]),
    new Int32Array([-2147483648, 2147483647, 0, 1]),
    new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n, 0n, 1n]),
    new Uint8Array([0, 255, 7, 8]),
  ];
  for (const data of cases) {
    const file = writeNpy(data, [2, 2]);
    assert.equal((file.indexOf(0x0a) + 1) % 64, 0, 'data starts on a 64-byte boundary');
    const shifted = Buffer.alloc(file.length + 1);
    file.copy(shifted, 1);
    const back = readNpy(shifted.subarray(1));
    assert.deepEqual(back.shape, [2, 2]);
    assert.equal(back.data.constructor, data.constructor);
    assert.deepEqual(back.data, data);
  }
});

test('a header over 65535 bytes is written and read as format 2.0', () => {
  const shape = new Array(30000).fill(1);
  const file = writeNpy(new Float32Array([42]), shape);
  assert.equal(file[6], 2);
  const back = readNpy(file);
  assert.equal(back.shape.length, 30000);
  assert.deepEqual([...back.data], [42]);
});

test('npyToFloat32 converts float64 and int32', () => {
  assert.deepEqual([...npyToFloat32(readNpy(writeNpy(new Float64Array([0.1, 2]), [2])))], [Math.fround(0.1), 2]);
  assert.deepEqual([...npyToFloat32(readNpy(writeNpy(new Int32Array([-3, 4]), [2])))], [-3, 4]);
});

test('rejects what it cannot read correctly', () => {
  const f32 = NUMPY_FILES.f32_2x3;
  const withDict = (dict: string, data = f32.subarray(128)) => Buffer.concat([hdr(dict), data]);
  assertInvalid(() => readNpy(Buffer.from('not an npy file at all')), /bad magic/);
  assertInvalid(() => readNpy(withDict("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }")), /Fortran/);
  assertInvalid(() => readNpy(withDict("{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }")), /big-endian/);
  assertInvalid(() => readNpy(withDict("{'descr': '<c8', 'fortran_order': False, 'shape': (3,), }")), /unsupported dtype/);
  assertInvalid(() => readNpy(withDict("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (6,), }")), /plain dtype/);
  assertInvalid(() => readNpy(withDict("{'descr': '<f4', 'fortran_order': False, 'shape': (2, x), }")), /bad shape/);
  assertInvalid(() => readNpy(f32.subarray(0, f32.length - 1)), /needs 24/);
  assertInvalid(() => readNpy(Buffer.concat([f32, Buffer.from([0])])), /needs 24/);
  assertInvalid(() => readNpy(f32.subarray(0, 60)), /truncated header/);
  const v9 = Buffer.from(f32);
  v9[6] = 9;
  assertInvalid(() => readNpy(v9), /version 9/);
  assert.throws(() => writeNpy(new Float32Array(5), [2, 3]), /does not hold 5/);
});
