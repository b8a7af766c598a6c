/**
 * IEEE 754 binary16 ↔ binary32 conversion on bit patterns.
 *
 * onnxruntime-node takes and returns float16 tensors as Uint16Array (raw bits), and .npy / safetensors
 * store fp16 the same way, so the project keeps fp16 data as Uint16Array and converts at the edges.
 * float32 → float16 rounds to nearest, ties to even (what numpy's astype(float16) and torch's .half() do);
 * values past the fp16 range become ±Infinity, NaN stays NaN (quiet), signed zero keeps its sign.
 */

// One shared scratch word to read a float32's bits without allocating.
const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** float32 (any JS number, first rounded to float32) → fp16 bit pattern, round-to-nearest-even. */
export function float32ToFloat16Bits(value: number): number {
  scratchF32[0] = value;
  const x = scratchU32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;

  if (exp === 0xff) {
    // Inf stays Inf; NaN keeps its top payload bits and is forced quiet so it never turns into Inf.
    return mant === 0 ? sign | 0x7c00 : sign | 0x7e00 | (mant >>> 13);
  }
  const e = exp - 127 + 15; // rebias
  if (e >= 0x1f) return sign | 0x7c00; // overflow → Inf (RNE rounds everything ≥ 65520 up to Inf)

  if (e <= 0) {
    // fp16 subnormal (or zero): value = m · 2^-24 with m = full · 2^(exp-126).
    const shift = 14 - e; // ≥ 14
    if (shift > 24) return sign; // below 2^-25 (float32 subnormals included): rounds to ±0
    const full = mant | 0x800000;
    const m = full >>> shift;
    const rem = full & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    // A carry out of the subnormal range yields 0x0400, the smallest normal: still correct.
    return sign | (rem > half || (rem === half && (m & 1) === 1) ? m + 1 : m);
  }

  const h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  // A carry from the mantissa into the exponent is the correct rounding (and 0x7bff+1 = Inf).
  return sign | (rem > 0x1000 || (rem === 0x1000 && (h & 1) === 1) ? h + 1 : h);
}

/** fp16 bit pattern → its exact value (every fp16 is exactly representable in float32). */
export function float16BitsToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exp = (bits >>> 10) & 0x1f;
  const mant = bits & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant === 0 ? sign * Infinity : NaN;
  return sign * (1024 + mant) * 2 ** (exp - 25);
}

let decodeTable: Float32Array | undefined;

/** Float32Array (or any numbers) → Uint16Array of fp16 bits. */
export function float32ToFloat16Array(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = float32ToFloat16Bits(src[i]);
  return out;
}

/** Uint16Array of fp16 bits → Float32Array. Uses a 256 KiB lookup table built on first use. */
export function float16ToFloat32Array(src: Uint16Array): Float32Array {
  if (decodeTable === undefined) {
    decodeTable = new Float32Array(65536);
    for (let b = 0; b < 65536; b++) decodeTable[b] = float16BitsToFloat32(b);
  }
  const table = decodeTable;
  const out = new Float32Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = table[src[i]];
  return out;
}
