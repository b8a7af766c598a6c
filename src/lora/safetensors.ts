/**
 * A strict .safetensors reader (format: huggingface/safetensors README "Format", validation as its Rust
 * `Metadata::validate`): 8-byte little-endian header length N, N bytes of UTF-8 JSON mapping each tensor
 * name to {dtype, shape, data_offsets: [begin, end]} (relative to the data section) plus an optional
 * `__metadata__` string→string map, then the data section.
 *
 * Why strict: a LoRA file comes from the internet. Anything odd (a truncated download, a header length past
 * the end, overlapping or out-of-range offsets, holes, a shape that does not fit its bytes, an unknown dtype,
 * NaN/Inf weights) is refused with LORA_INVALID and `details.problem` naming it, before any tensor is used.
 * Every function here is pure (returns a value or throws), so nothing half-loaded stays behind.
 */
import { open } from 'node:fs/promises';
import { LoraserveError } from '../core/errors.js';
import { float16ToFloat32Array } from '../tensor/float16.js';

export type SafetensorsDtype =
  | 'F64'
  | 'F32'
  | 'F16'
  | 'BF16'
  | 'I64'
  | 'I32'
  | 'I16'
  | 'I8'
  | 'U64'
  | 'U32'
  | 'U16'
  | 'U8'
  | 'BOOL'
  | 'F8_E4M3'
  | 'F8_E5M2';

export const DTYPE_BYTES: Readonly<Record<SafetensorsDtype, number>> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U64: 8,
  U32: 4,
  U16: 2,
  U8: 1,
  BOOL: 1,
  F8_E4M3: 1,
  F8_E5M2: 1,
};

/** LoRA weights we decode; other dtypes are read (the header is valid) but refused as weights. */
export const WEIGHT_DTYPES: readonly SafetensorsDtype[] = ['F32', 'F16', 'BF16'];

/** safetensors' own MAX_HEADER_SIZE (100 MB): a larger length is a corrupt or hostile file. */
export const MAX_HEADER_BYTES = 100_000_000;

export interface TensorEntry {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Byte range within the data section. */
  begin: number;
  end: number;
}

export interface SafetensorsHeader {
  /** N, the JSON header's length. */
  headerLength: number;
  /** 8 + N: where the data section starts in the file. */
  dataStart: number;
  dataLength: number;
  fileSize: number;
  metadata: Record<string, string>;
  /** In data-offset order. */
  tensors: Map<string, TensorEntry>;
}

export interface SafetensorsFile {
  header: SafetensorsHeader;
  bytes: Uint8Array;
  /** Name used in error messages (file name or LoRA name). */
  source: string;
}

export type SafetensorsProblem =
  | 'truncated'
  | 'header-past-end'
  | 'header-too-large'
  | 'header-not-utf8'
  | 'header-not-json'
  | 'header-not-object'
  | 'bad-metadata'
  | 'bad-entry'
  | 'unknown-dtype'
  | 'bad-shape'
  | 'bad-offsets'
  | 'size-mismatch'
  | 'out-of-range'
  | 'misaligned'
  | 'overlap'
  | 'gap'
  | 'trailing-bytes'
  | 'non-finite';

function invalid(source: string, problem: SafetensorsProblem, message: string, extra?: Record<string, unknown>): LoraserveError {
  return new LoraserveError('LORA_INVALID', `${source}: ${message}`, { file: source, problem, ...extra });
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Reads N from the first 8 bytes and checks it against the file size. */
export function readHeaderLength(first8: Uint8Array, fileSize: number, source: string): number {
  if (fileSize < 8 || first8.byteLength < 8) {
    throw invalid(source, 'truncated', `truncated file (${fileSize} bytes): a safetensors file starts with an 8-byte header length`);
  }
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  if (n > BigInt(fileSize - 8)) {
    throw invalid(source, 'header-past-end', `header length ${n} runs past the end of the file (${fileSize} bytes; truncated or not a safetensors file)`);
  }
  if (n > BigInt(MAX_HEADER_BYTES)) {
    throw invalid(source, 'header-too-large', `header length ${n} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  return Number(n);
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/**
 * Parses and validates the JSON header (`headerBytes` = the N bytes after the length) against a file of
 * `fileSize` bytes. Checks every entry, then the data layout: sorted by offset, each tensor must start where
 * the previous one ended (no overlap, no hole), be aligned to its element size, and the last must end at the
 * end of the file.
 */
export function parseHeader(headerBytes: Uint8Array, fileSize: number, source: string): SafetensorsHeader {
  const headerLength = headerBytes.byteLength;
  const dataStart = 8 + headerLength;
  const dataLength = fileSize - dataStart;
  let text: string;
  try {
    text = utf8.decode(headerBytes);
  } catch {
    throw invalid(source, 'header-not-utf8', 'header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw invalid(source, 'header-not-json', `header is not JSON (${(e as Error).message})`);
  }
  if (!isPlainObject(json)) {
    throw invalid(source, 'header-not-object', `header is ${json === null ? 'null' : Array.isArray(json) ? 'an array' : `a ${typeof json}`}, not a JSON object`);
  }

  const metadata: Record<string, string> = {};
  const rawMeta = json.__metadata__;
  if (rawMeta !== undefined) {
    if (!isPlainObject(rawMeta)) throw invalid(source, 'bad-metadata', '__metadata__ is not an object');
    for (const [k, v] of Object.entries(rawMeta)) {
      if (typeof v !== 'string') throw invalid(source, 'bad-metadata', `__metadata__.${k} is a ${v === null ? 'null' : typeof v}, not a string`);
      // defineProperty: a key named "__proto__" stays plain data instead of replacing the prototype.
      Object.defineProperty(metadata, k, { value: v, enumerable: true, writable: true, configurable: true });
    }
  }

  const entries: TensorEntry[] = [];
  for (const [name, raw] of Object.entries(json)) {
    if (name === '__metadata__') continue;
    if (!isPlainObject(raw)) throw invalid(source, 'bad-entry', `tensor "${name}" is not an object`, { tensor: name });
    const dtype = raw.dtype;
    if (typeof dtype !== 'string' || !Object.hasOwn(DTYPE_BYTES, dtype)) {
      throw invalid(source, 'unknown-dtype', `tensor "${name}" has unknown dtype ${JSON.stringify(dtype)}`, { tensor: name });
    }
    const shape = raw.shape;
    if (!Array.isArray(shape) || !shape.every(isCount)) {
      throw invalid(source, 'bad-shape', `tensor "${name}" has an invalid shape ${JSON.stringify(shape)}`, { tensor: name });
    }
    const offsets = raw.data_offsets;
    if (!Array.isArray(offsets) || offsets.length !== 2 || !isCount(offsets[0]) || !isCount(offsets[1]) || offsets[0] > offsets[1]) {
      throw invalid(source, 'bad-offsets', `tensor "${name}" has invalid data_offsets ${JSON.stringify(offsets)}`, { tensor: name });
    }
    const elemBytes = DTYPE_BYTES[dtype as SafetensorsDtype];
    let numel = 1;
    for (const d of shape as number[]) {
      numel *= d;
      if (!Number.isSafeInteger(numel)) throw invalid(source, 'bad-shape', `tensor "${name}" shape ${JSON.stringify(shape)} is too large`, { tensor: name });
    }
    const [begin, end] = offsets as [number, number];
    if (end - begin !== numel * elemBytes) {
      throw invalid(
        source,
        'size-mismatch',
        `tensor "${name}": ${dtype}[${(shape as number[]).join(', ')}] needs ${numel * elemBytes} bytes but data_offsets [${begin}, ${end}] hold ${end - begin}`,
        { tensor: name },
      );
    }
    if (end > dataLength) {
      throw invalid(
        source,
        'out-of-range',
        `tensor "${name}" ends at data byte ${end} but the file has only ${Math.max(dataLength, 0)} data bytes (truncated?)`,
        { tensor: name },
      );
    }
    if (begin % elemBytes !== 0) {
      throw invalid(source, 'misaligned', `tensor "${name}" (${dtype}) starts at data byte ${begin}, not a multiple of ${elemBytes}`, { tensor: name });
    }
    entries.push({ name, dtype: dtype as SafetensorsDtype, shape: [...(shape as number[])], begin, end });
  }

  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let prev: TensorEntry | undefined;
  let pos = 0;
  for (const e of entries) {
    if (e.begin < pos) {
      throw invalid(source, 'overlap', `tensors "${prev?.name}" and "${e.name}" overlap (data bytes ${e.begin}..${pos})`, { tensor: e.name });
    }
    if (e.begin > pos) {
      throw invalid(source, 'gap', `${e.begin - pos} unindexed data bytes before tensor "${e.name}" (holes are not allowed)`, { tensor: e.name });
    }
    pos = e.end;
    prev = e;
  }
  if (pos !== dataLength) {
    throw invalid(source, 'trailing-bytes', `${dataLength - pos} bytes after the last tensor are not indexed by the header`);
  }
  return { headerLength, dataStart, dataLength, fileSize, metadata, tensors: new Map(entries.map((e) => [e.name, e])) };
}

/** Parses a whole file held in memory. */
export function parseSafetensors(bytes: Uint8Array, source = 'safetensors'): SafetensorsFile {
  const n = readHeaderLength(bytes.subarray(0, 8), bytes.byteLength, source);
  const header = parseHeader(bytes.subarray(8, 8 + n), bytes.byteLength, source);
  return { header, bytes, source };
}

/** Reads and validates only the header of a file (library scans: a few KB per LoRA, no tensor data). */
export async function readSafetensorsHeader(path: string, source = path): Promise<SafetensorsHeader> {
  const fh = await open(path, 'r');
  try {
    const { size } = await fh.stat();
    const first8 = new Uint8Array(8);
    if (size >= 8) await fh.read(first8, 0, 8, 0);
    const n = readHeaderLength(first8, size, source);
    const headerBytes = new Uint8Array(n);
    let off = 0;
    while (off < n) {
      const { bytesRead } = await fh.read(headerBytes, off, n - off, 8 + off);
      if (bytesRead === 0) throw invalid(source, 'truncated', `file ended inside the header (shrinking while being read?)`);
      off += bytesRead;
    }
    return parseHeader(headerBytes, size, source);
  } finally {
    await fh.close();
  }
}

function entryOf(file: SafetensorsFile, nameOrEntry: string | TensorEntry): TensorEntry {
  if (typeof nameOrEntry !== 'string') return nameOrEntry;
  const e = file.header.tensors.get(nameOrEntry);
  if (!e) throw new LoraserveError('INTERNAL', `${file.source}: no tensor "${nameOrEntry}"`);
  return e;
}

/** The raw little-endian bytes of one tensor (a view into the file). */
export function tensorBytes(file: SafetensorsFile, nameOrEntry: string | TensorEntry): Uint8Array {
  const e = entryOf(file, nameOrEntry);
  const start = file.header.dataStart + e.begin;
  return file.bytes.subarray(start, start + (e.end - e.begin));
}

/** A copy of `bytes` starting on an ArrayBuffer offset that is a multiple of `align` (typed arrays need it). */
function aligned(bytes: Uint8Array, align: number): { buffer: ArrayBufferLike; offset: number } {
  if (bytes.byteOffset % align === 0) return { buffer: bytes.buffer, offset: bytes.byteOffset };
  return { buffer: new Uint8Array(bytes).buffer, offset: 0 };
}

// Typed arrays read host byte order; safetensors is little-endian, like every platform Node runs on.
const hostIsLittleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** A factor's values as float32: the array itself when it already is, else a widened copy (exact). */
export function factorToFloat32(f: Float32Array | Uint16Array): Float32Array {
  return f instanceof Uint16Array ? float16ToFloat32Array(f) : f;
}

/**
 * Decodes a LoRA factor keeping fp16 as fp16: an F16 tensor becomes a Uint16Array of its bits (a copy, so the
 * file's bytes can be dropped), F32/BF16 a Float32Array (bf16 widened: exact, and no fp16 rounding). Keeping
 * fp16 makes a loaded LoRA hold about its file size instead of twice it; the engine widens while it stacks
 * factors for the graph anyway (src/engine/lora-feeds.ts). Same dtype and NaN/Inf checks as decodeFloat32.
 */
export function decodeFactor(file: SafetensorsFile, nameOrEntry: string | TensorEntry): Float32Array | Uint16Array {
  const e = entryOf(file, nameOrEntry);
  if (e.dtype !== 'F16') return decodeFloat32(file, e);
  if (!hostIsLittleEndian) throw new LoraserveError('INTERNAL', 'safetensors decoding assumes a little-endian host');
  const raw = tensorBytes(file, e);
  const { buffer, offset } = aligned(raw, 2);
  const out = new Uint16Array(buffer, offset, raw.byteLength / 2).slice();
  let bad = 0;
  let first = -1;
  for (let i = 0; i < out.length; i++) {
    // exponent all ones: ±Inf or NaN
    if ((out[i] & 0x7c00) === 0x7c00) {
      if (first < 0) first = i;
      bad++;
    }
  }
  if (bad > 0) {
    const v = out[first] & 0x3ff ? 'NaN' : out[first] & 0x8000 ? '-Infinity' : 'Infinity';
    throw invalid(file.source, 'non-finite', `tensor "${e.name}" has ${bad} non-finite value(s) (first at index ${first}: ${v})`, { tensor: e.name });
  }
  return out;
}

/**
 * Decodes an F32/F16/BF16 tensor into a new Float32Array (fp16/bf16 widened exactly). Other dtypes are
 * LORA_UNSUPPORTED; any NaN or ±Inf is LORA_INVALID naming the tensor (a NaN weight would turn every image
 * black, long after the request that loaded it).
 */
export function decodeFloat32(file: SafetensorsFile, nameOrEntry: string | TensorEntry): Float32Array {
  if (!hostIsLittleEndian) throw new LoraserveError('INTERNAL', 'safetensors decoding assumes a little-endian host');
  const e = entryOf(file, nameOrEntry);
  const raw = tensorBytes(file, e);
  let out: Float32Array;
  if (e.dtype === 'F32') {
    const { buffer, offset } = aligned(raw, 4);
    out = new Float32Array(buffer, offset, raw.byteLength / 4).slice();
  } else if (e.dtype === 'F16') {
    const { buffer, offset } = aligned(raw, 2);
    out = float16ToFloat32Array(new Uint16Array(buffer, offset, raw.byteLength / 2));
  } else if (e.dtype === 'BF16') {
    // bfloat16 is the top half of a float32: shift the bits up.
    const { buffer, offset } = aligned(raw, 2);
    const half = new Uint16Array(buffer, offset, raw.byteLength / 2);
    const bits = new Uint32Array(half.length);
    for (let i = 0; i < half.length; i++) bits[i] = half[i] << 16;
    out = new Float32Array(bits.buffer);
  } else {
    throw new LoraserveError(
      'LORA_UNSUPPORTED',
      `${file.source}: tensor "${e.name}" is ${e.dtype}; LoRA weights must be F32, F16 or BF16`,
      { file: file.source, tensor: e.name, dtype: e.dtype },
    );
  }
  let bad = 0;
  let first = -1;
  for (let i = 0; i < out.length; i++) {
    // x - x is 0 for every finite x and NaN for NaN and ±Inf.
    if (out[i] - out[i] !== 0) {
      if (first < 0) first = i;
      bad++;
    }
  }
  if (bad > 0) {
    throw invalid(file.source, 'non-finite', `tensor "${e.name}" has ${bad} non-finite value(s) (first at index ${first}: ${out[first]})`, {
      tensor: e.name,
    });
  }
  return out;
}

/** Reads a one-element tensor of any numeric dtype (kohya's `.alpha` is F32/F16/BF16; some tools write F64 or ints). */
export function decodeScalar(file: SafetensorsFile, nameOrEntry: string | TensorEntry): number {
  const e = entryOf(file, nameOrEntry);
  const numel = e.shape.reduce((a, b) => a * b, 1);
  if (numel !== 1) {
    throw invalid(file.source, 'bad-shape', `tensor "${e.name}" should hold one value but has shape [${e.shape.join(', ')}]`, { tensor: e.name });
  }
  const raw = tensorBytes(file, e);
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  let v: number;
  switch (e.dtype) {
    case 'F32':
    case 'F16':
    case 'BF16':
      return decodeFloat32(file, e)[0];
    case 'F64':
      v = view.getFloat64(0, true);
      break;
    case 'I64':
      v = Number(view.getBigInt64(0, true));
      break;
    case 'U64':
      v = Number(view.getBigUint64(0, true));
      break;
    case 'I32':
      v = view.getInt32(0, true);
      break;
    case 'U32':
      v = view.getUint32(0, true);
      break;
    case 'I16':
      v = view.getInt16(0, true);
      break;
    case 'U16':
      v = view.getUint16(0, true);
      break;
    case 'I8':
      v = view.getInt8(0);
      break;
    case 'U8':
      v = view.getUint8(0);
      break;
    default:
      throw new LoraserveError('LORA_UNSUPPORTED', `${file.source}: tensor "${e.name}" is ${e.dtype}, not a number type`, {
        file: file.source,
        tensor: e.name,
        dtype: e.dtype,
      });
  }
  if (!Number.isFinite(v)) throw invalid(file.source, 'non-finite', `tensor "${e.name}" is ${v}`, { tensor: e.name });
  return v;
}
