/**
 * The float tensors of a .safetensors file, for textual-inversion embeddings (a few KB to a few hundred KB).
 *
 * Format: huggingface/safetensors README — u64 little-endian header length N, N bytes of JSON
 * {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {…}}, then the data. A minimal reader of
 * its own because src/text may not import src/lora (whose strict reader throws LORA_INVALID); the checks that
 * matter for an embedding are here: the header fits, each tensor's bytes lie inside the data section and match
 * its shape, its dtype is a float. Anything else is EMBEDDING_INVALID naming the file.
 */
import { LoraserveError } from '../../core/errors.js';
import { decodeFloats, FLOAT_DTYPE_BYTES, type FloatDtype } from './float-data.js';

export interface FloatTensor {
  shape: number[];
  data: Float32Array;
}

const DTYPES: Record<string, FloatDtype> = { F32: 'float32', F16: 'float16', BF16: 'bfloat16', F64: 'float64' };
const MAX_HEADER_BYTES = 100_000_000;

/** Every tensor of the file, decoded to float32, in header order. */
export function readSafetensorsFloats(bytes: Uint8Array, file: string): Map<string, FloatTensor> {
  const invalid = (why: string): LoraserveError => new LoraserveError('EMBEDDING_INVALID', `${file}: not a valid .safetensors file (${why})`, { file });
  if (bytes.byteLength < 8) throw invalid('shorter than its 8-byte header length');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(view.getBigUint64(0, true));
  if (n > MAX_HEADER_BYTES || 8 + n > bytes.byteLength) throw invalid(`header length ${n} does not fit a ${bytes.byteLength}-byte file`);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + n)));
  } catch (e) {
    throw invalid(`header is not UTF-8 JSON: ${(e as Error).message}`);
  }
  if (header === null || typeof header !== 'object' || Array.isArray(header)) throw invalid('header is not a JSON object');
  const data = bytes.subarray(8 + n);
  const out = new Map<string, FloatTensor>();
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') continue;
    const e = entry as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const dtype = typeof e?.dtype === 'string' ? DTYPES[e.dtype] : undefined;
    if (!dtype) throw new LoraserveError('EMBEDDING_INVALID', `${file}: tensor "${name}" has dtype ${JSON.stringify(e?.dtype)}, not a float type`, { file, tensor: name });
    const shape = e.shape;
    const offsets = e.data_offsets;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw invalid(`tensor "${name}" has a bad shape`);
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every((d) => Number.isSafeInteger(d) && d >= 0)) throw invalid(`tensor "${name}" has bad data_offsets`);
    const [begin, end] = offsets as [number, number];
    const count = (shape as number[]).reduce((a, b) => a * b, 1);
    if (end < begin || end > data.byteLength || end - begin !== count * FLOAT_DTYPE_BYTES[dtype]) {
      throw invalid(`tensor "${name}" data_offsets [${begin}, ${end}] do not match its shape [${shape.join(', ')}] or the data section`);
    }
    out.set(name, { shape: shape as number[], data: decodeFloats(data.subarray(begin, end), dtype, 0, count, 1, file, `tensor "${name}"`) });
  }
  return out;
}
