/**
 * A minimal .safetensors writer (format: huggingface/safetensors README "Format"): 8-byte little-endian
 * header length N, N bytes of JSON header, then the raw little-endian tensor bytes. The header maps each
 * tensor name to {dtype, shape, data_offsets: [begin, end]} (offsets relative to the data section) plus an
 * optional `__metadata__` string→string map. Like the reference writer, tensors are laid out in sorted
 * name order, the JSON is compact, and it is padded with spaces to a multiple of 8 bytes so the data
 * section stays aligned.
 */
import { LoraserveError } from '../core/errors.js';
import { writeFileAtomic } from '../core/fs-atomic.js';

export type SafetensorsDtype = 'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

const DTYPE_SIZE: Record<SafetensorsDtype, number> = { F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1 };

export interface SafetensorsTensor {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Little-endian bytes, shape × dtype size long. */
  data: Uint8Array;
}

export function encodeSafetensors(tensors: readonly SafetensorsTensor[], metadata?: Record<string, string>): Buffer {
  const sorted = [...tensors].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  const seen = new Set<string>();
  for (const t of sorted) {
    if (t.name === '__metadata__' || seen.has(t.name)) {
      throw new LoraserveError('INVALID_ARGUMENT', `safetensors: duplicate or reserved tensor name "${t.name}"`);
    }
    seen.add(t.name);
    const want = t.shape.reduce((a, b) => a * b, 1) * DTYPE_SIZE[t.dtype];
    if (t.data.byteLength !== want) {
      throw new LoraserveError('INVALID_ARGUMENT', `safetensors: ${t.name} has ${t.data.byteLength} bytes, ${t.dtype}[${t.shape}] needs ${want}`);
    }
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + want] };
    offset += want;
  }
  let json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil(json.byteLength / 8) * 8;
  if (padded !== json.byteLength) json = Buffer.concat([json, Buffer.alloc(padded - json.byteLength, 0x20)]);
  const out = Buffer.alloc(8 + json.byteLength + offset);
  out.writeBigUInt64LE(BigInt(json.byteLength), 0);
  json.copy(out, 8);
  let pos = 8 + json.byteLength;
  for (const t of sorted) {
    out.set(t.data, pos);
    pos += t.data.byteLength;
  }
  return out;
}

/** Writes a .safetensors file atomically; returns its size in bytes. */
export function writeSafetensors(path: string, tensors: readonly SafetensorsTensor[], metadata?: Record<string, string>): number {
  const bytes = encodeSafetensors(tensors, metadata);
  writeFileAtomic(path, bytes);
  return bytes.byteLength;
}
