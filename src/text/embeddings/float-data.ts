/**
 * Little-endian float tensors (float32 / float16 / bfloat16 / float64) → Float32Array, shared by the
 * safetensors and torch readers of this folder. Errors are EMBEDDING_INVALID naming the file.
 */
import { LoraserveError } from '../../core/errors.js';
import { float16BitsToFloat32 } from '../../tensor/float16.js';

export type FloatDtype = 'float32' | 'float16' | 'bfloat16' | 'float64';

export const FLOAT_DTYPE_BYTES: Readonly<Record<FloatDtype, number>> = { float32: 4, float16: 2, bfloat16: 2, float64: 8 };

/**
 * Reads `count` elements of `dtype` at element index `start` with element `stride` (for torch views) from `bytes`.
 * Checks the range first; refuses NaN/Inf values (a corrupt or diverged embedding).
 */
export function decodeFloats(bytes: Uint8Array, dtype: FloatDtype, start: number, count: number, stride: number, file: string, what: string): Float32Array {
  const size = FLOAT_DTYPE_BYTES[dtype];
  const last = count === 0 ? start : start + (count - 1) * stride;
  if (start < 0 || (last + 1) * size > bytes.byteLength) {
    throw new LoraserveError('EMBEDDING_INVALID', `${file}: ${what} reaches past its data (${(last + 1) * size} > ${bytes.byteLength} bytes)`, { file });
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    const at = (start + i * stride) * size;
    let v: number;
    if (dtype === 'float32') v = view.getFloat32(at, true);
    else if (dtype === 'float16') v = float16BitsToFloat32(view.getUint16(at, true));
    else if (dtype === 'bfloat16') v = bfloat16ToFloat32(view.getUint16(at, true));
    else v = view.getFloat64(at, true);
    if (!Number.isFinite(v)) {
      throw new LoraserveError('EMBEDDING_INVALID', `${file}: ${what} holds a non-finite value (${v}) at element ${i}`, { file });
    }
    out[i] = v;
  }
  return out;
}

const bf16Scratch = new DataView(new ArrayBuffer(4));
function bfloat16ToFloat32(bits: number): number {
  bf16Scratch.setUint32(0, bits << 16);
  return bf16Scratch.getFloat32(0);
}
