/**
 * NumPy .npy files (format versions 1.0, 2.0 and 3.0), little-endian, C order.
 *
 * Format reference: numpy `numpy/lib/format.py` (NEP 1). A file is the magic "\x93NUMPY", a major and minor
 * version byte, the header length (uint16 LE in v1, uint32 LE in v2/v3), then an ASCII (v3: UTF-8) Python dict
 * literal such as `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }` padded with spaces and ended with
 * '\n' so that the data starts on a 64-byte boundary, then the raw array bytes.
 *
 * float16 data is kept as Uint16Array of fp16 bits (the convention onnxruntime-node uses); int64 as BigInt64Array.
 * Fortran order, big-endian data and object/structured dtypes are rejected with INVALID_FILE rather than read wrong.
 */
import { LoraserveError } from '../core/errors.js';
import { float16ToFloat32Array } from './float16.js';

export type NpyDtype = 'float32' | 'float16' | 'float64' | 'int32' | 'int64' | 'uint8';
export type NpyData = Float32Array | Uint16Array | Float64Array | Int32Array | BigInt64Array | Uint8Array;

export interface NpyArray {
  data: NpyData;
  shape: number[];
  dtype: NpyDtype;
}

interface DtypeInfo {
  descr: string; // what we write
  size: number;
  make: (buf: ArrayBuffer) => NpyData;
}

const DTYPES: Record<NpyDtype, DtypeInfo> = {
  float32: { descr: '<f4', size: 4, make: (b) => new Float32Array(b) },
  float16: { descr: '<f2', size: 2, make: (b) => new Uint16Array(b) },
  float64: { descr: '<f8', size: 8, make: (b) => new Float64Array(b) },
  int32: { descr: '<i4', size: 4, make: (b) => new Int32Array(b) },
  int64: { descr: '<i8', size: 8, make: (b) => new BigInt64Array(b) },
  uint8: { descr: '|u1', size: 1, make: (b) => new Uint8Array(b) },
};

/** descr without its byte-order character → dtype. '<' and '=' (native; this code only runs little-endian) and '|' are accepted. */
const DESCR_KINDS: Record<string, NpyDtype> = { f4: 'float32', f2: 'float16', f8: 'float64', i4: 'int32', i8: 'int64', u1: 'uint8' };

const MAGIC = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]); // \x93NUMPY
const ALIGN = 64; // numpy ≥ 1.17 aligns the data to 64 bytes; readers accept any alignment.

function invalid(message: string, details?: Record<string, unknown>): LoraserveError {
  return new LoraserveError('INVALID_FILE', `npy: ${message}`, details);
}

/** Parses the header dict. Written by numpy's repr() of a dict, so a few targeted patterns read it reliably. */
function parseHeader(header: string): { dtype: NpyDtype; shape: number[] } {
  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(header);
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(header);
  const shapeM = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(header);
  if (!descr || !fortran || !shapeM) {
    // A structured dtype's descr is a list, which the descr pattern does not match: same error, clear message.
    throw invalid('header is not a {descr, fortran_order, shape} dict of a plain dtype', { header: header.trim() });
  }
  const d = descr[1];
  const order = d[0];
  if (order === '>') throw invalid(`big-endian data (${d}) is not supported; save it little-endian`, { descr: d });
  const kind = DESCR_KINDS[order === '<' || order === '=' || order === '|' ? d.slice(1) : d];
  if (kind === undefined || (order === '|' && DTYPES[kind].size !== 1)) {
    throw invalid(`unsupported dtype ${d} (supported: float32, float16, float64, int32, int64, uint8)`, { descr: d });
  }
  if (fortran[1] === 'True') throw invalid('Fortran-order arrays are not supported; save with C order', { header: header.trim() });
  const shape: number[] = [];
  for (const part of shapeM[1].split(',')) {
    const t = part.trim().replace(/L$/, ''); // Python 2 wrote longs as 3L
    if (t === '') continue;
    if (!/^\d+$/.test(t)) throw invalid(`bad shape entry '${t}'`, { header: header.trim() });
    shape.push(Number(t));
  }
  return { dtype: kind, shape };
}

/** Reads a .npy file. The returned array owns a copy of the data (aligned, independent of `buf`). */
export function readNpy(buf: Uint8Array): NpyArray {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < 10 || !b.subarray(0, 6).equals(MAGIC)) throw invalid('not a .npy file (bad magic)');
  const major = b[6];
  let headerLen: number;
  let start: number;
  if (major === 1) {
    headerLen = b.readUInt16LE(8);
    start = 10;
  } else if (major === 2 || major === 3) {
    if (b.length < 12) throw invalid('truncated header');
    headerLen = b.readUInt32LE(8);
    start = 12;
  } else {
    throw invalid(`unsupported format version ${major}.${b[7]}`);
  }
  if (start + headerLen > b.length) throw invalid('truncated header', { headerLen, fileBytes: b.length });
  const header = b.toString(major === 3 ? 'utf8' : 'latin1', start, start + headerLen);
  const { dtype, shape } = parseHeader(header);
  const info = DTYPES[dtype];
  const count = shape.reduce((a, n) => a * n, 1);
  const dataStart = start + headerLen;
  const expected = count * info.size;
  const actual = b.length - dataStart;
  if (actual !== expected) {
    throw invalid(`data is ${actual} bytes but shape (${shape.join(', ')}) of ${dtype} needs ${expected}`, { shape, dtype });
  }
  // Copy into a fresh ArrayBuffer: the source offset may not be aligned for the typed array.
  const copy = new ArrayBuffer(expected);
  new Uint8Array(copy).set(b.subarray(dataStart, dataStart + expected));
  return { data: info.make(copy), shape, dtype };
}

function dtypeOf(data: NpyData): NpyDtype {
  if (data instanceof Float32Array) return 'float32';
  if (data instanceof Uint16Array) return 'float16'; // project convention: Uint16Array holds fp16 bits
  if (data instanceof Float64Array) return 'float64';
  if (data instanceof Int32Array) return 'int32';
  if (data instanceof BigInt64Array) return 'int64';
  if (data instanceof Uint8Array) return 'uint8';
  throw new LoraserveError('INVALID_ARGUMENT', 'npy: unsupported typed array');
}

/**
 * Writes a .npy file (v1.0, or v2.0 when the header exceeds 65535 bytes), C order, little-endian.
 * The dtype follows the array type; a Uint16Array is written as float16 bits.
 */
export function writeNpy(data: NpyData, shape: readonly number[]): Buffer {
  const dtype = dtypeOf(data);
  const count = shape.reduce((a, n) => a * n, 1);
  if (!shape.every((n) => Number.isInteger(n) && n >= 0) || count !== data.length) {
    throw new LoraserveError('INVALID_ARGUMENT', `npy: shape (${shape.join(', ')}) does not hold ${data.length} elements`);
  }
  // numpy's repr of a 1-tuple keeps the trailing comma: (5,)
  const shapeText = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  const dict = `{'descr': '${DTYPES[dtype].descr}', 'fortran_order': False, 'shape': ${shapeText}, }`;
  let major = 1;
  let prefix = 10;
  // header text + padding + '\n' so that prefix + header is a multiple of ALIGN
  let total = Math.ceil((prefix + dict.length + 1) / ALIGN) * ALIGN;
  if (total - prefix > 0xffff) {
    major = 2;
    prefix = 12;
    total = Math.ceil((prefix + dict.length + 1) / ALIGN) * ALIGN;
  }
  const headerLen = total - prefix;
  const out = Buffer.alloc(total + data.byteLength);
  MAGIC.copy(out, 0);
  out[6] = major;
  out[7] = 0;
  if (major === 1) out.writeUInt16LE(headerLen, 8);
  else out.writeUInt32LE(headerLen, 8);
  out.write(dict.padEnd(headerLen - 1, ' ') + '\n', prefix, 'latin1');
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), total);
  return out;
}

/** Any supported npy array → Float32Array (fp16 decoded, float64 rounded, ints converted). */
export function npyToFloat32(arr: NpyArray): Float32Array {
  const { data, dtype } = arr;
  if (dtype === 'float32') return data as Float32Array;
  if (dtype === 'float16') return float16ToFloat32Array(data as Uint16Array);
  if (dtype === 'int64') {
    const src = data as BigInt64Array;
    const out = new Float32Array(src.length);
    for (let i = 0; i < src.length; i++) out[i] = Number(src[i]);
    return out;
  }
  return Float32Array.from(data as Float64Array | Int32Array | Uint8Array);
}
