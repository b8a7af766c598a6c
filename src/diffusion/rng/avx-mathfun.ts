/**
 * One lane of ATen's AVX2 float32 `log256_ps` and `sincos256_ps`, reproduced bit for bit.
 *
 * Upstream: pytorch/pytorch aten/src/ATen/native/cpu/avx_mathfun.h (Cephes-derived polynomials, itself after
 * Julien Pommier's sse_mathfun). torch's x86-64 normal kernel (normal_fill_16_AVX2) calls these, not libm.
 * Every step is float32 (Math.fround after each operation); the multiply-adds that GCC contracted into FMA
 * instructions when it compiled the AVX2 kernel use fmaf32 (single rounding). Which ones were contracted is
 * what the reference emulation in ../shared/fixtures/rng/spec/torch_randn_emulation.py pins down; changing any
 * of them breaks bit-exactness against torch-cpu.json.
 */
import { fmaf32 } from '../../tensor/fma.js';

const f = Math.fround;

// Shared scratch for float32 <-> bits reinterpretation (module-local, never escapes a call).
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

function bitsOf(x: number): number {
  f32[0] = x;
  return u32[0];
}
function fromBits(b: number): number {
  u32[0] = b;
  return f32[0];
}

const MIN_NORM_POS = fromBits(0x00800000);
const SQRTHF = f(0.707106781186547524);
const LOG_P0 = f(7.0376836292e-2);
const LOG_P1 = f(-1.1514610310e-1);
const LOG_P2 = f(1.1676998740e-1);
const LOG_P3 = f(-1.2420140846e-1);
const LOG_P4 = f(1.4249322787e-1);
const LOG_P5 = f(-1.6668057665e-1);
const LOG_P6 = f(2.0000714765e-1);
const LOG_P7 = f(-2.4999993993e-1);
const LOG_P8 = f(3.3333331174e-1);
const LOG_Q1 = f(-2.12194440e-4);
const LOG_Q2 = f(0.693359375);

/** log256_ps for one lane; x is a positive float32. */
export function log256Lane(xIn: number): number {
  let x = xIn < MIN_NORM_POS ? MIN_NORM_POS : xIn; // _mm256_max_ps: cut off denormals
  const bits = bitsOf(x);
  let e = (bits >>> 23) - 0x7f + 1; // exponent + 1, a small integer: exact in float32
  x = fromBits((bits & 0x807fffff) | 0x3f000000); // mantissa in [0.5, 1)
  // if x < SQRTHF { e -= 1; x = x + x - 1 } else { x = x - 1 }, written as the kernel's masked adds
  if (x < SQRTHF) {
    e -= 1;
    x = f(f(x - 1) + x);
  } else {
    x = f(x - 1);
  }
  const z = f(x * x);
  let y = LOG_P0;
  y = fmaf32(y, x, LOG_P1);
  y = fmaf32(y, x, LOG_P2);
  y = fmaf32(y, x, LOG_P3);
  y = fmaf32(y, x, LOG_P4);
  y = fmaf32(y, x, LOG_P5);
  y = fmaf32(y, x, LOG_P6);
  y = fmaf32(y, x, LOG_P7);
  y = fmaf32(y, x, LOG_P8);
  y = f(y * x);
  y = fmaf32(y, z, f(e * LOG_Q1)); // y*z + e*q1, contracted as fma(y, z, e*q1)
  y = f(y - z * 0.5); // z*0.5 is exact
  return fmaf32(e, LOG_Q2, f(x + y));
}

const FOPI = f(1.27323954473516); // 4/pi
const DP1 = -0.78515625;
const DP2 = -2.4187564849853515625e-4;
const DP3 = f(-3.77489497744594108e-8);
const SINCOF_P0 = f(-1.9515295891e-4);
const SINCOF_P1 = f(8.3321608736e-3);
const SINCOF_P2 = f(-1.6666654611e-1);
const COSCOF_P0 = f(2.443315711809948e-5);
const COSCOF_P1 = f(-1.388731625493765e-3);
const COSCOF_P2 = f(4.166664568298827e-2);

/** Results of the last sincos256Lane call (kept in module state so the hot loop allocates nothing). */
export const sincosOut = { sin: 0, cos: 0 };

/** sincos256_ps for one lane; x is a float32. Writes sincosOut.sin / sincosOut.cos. */
export function sincos256Lane(xIn: number): void {
  let signSin = xIn < 0 || Object.is(xIn, -0);
  let x = Math.abs(xIn);
  let j = Math.trunc(f(x * FOPI)); // _mm256_cvttps_epi32: truncation
  j = (j + 1) & ~1; // round to an even octant
  const y = j;
  const swapSin = (j & 4) !== 0;
  const polySelect = (j & 2) === 0;
  // Extended-precision modular arithmetic: x - j*(pi/4) in three parts, each an FMA.
  x = fmaf32(y, DP1, x);
  x = fmaf32(y, DP2, x);
  x = fmaf32(y, DP3, x);
  const signCos = (~(j - 2) & 4) !== 0;
  if (swapSin) signSin = !signSin;

  const z = f(x * x);
  let yc = COSCOF_P0;
  yc = fmaf32(yc, z, COSCOF_P1);
  yc = fmaf32(yc, z, COSCOF_P2);
  yc = f(yc * z);
  yc = fmaf32(yc, z, -(z * 0.5)); // (yc*z) - z*0.5, contracted
  yc = f(yc + 1);

  let ys = SINCOF_P0;
  ys = fmaf32(ys, z, SINCOF_P1);
  ys = fmaf32(ys, z, SINCOF_P2);
  ys = f(ys * z);
  ys = fmaf32(ys, x, x);

  const s = polySelect ? ys : yc;
  const c = polySelect ? yc : ys;
  // The kernel flips sign bits with XOR; negation does the same to a float32, zeros included.
  sincosOut.sin = signSin ? -s : s;
  sincosOut.cos = signCos ? -c : c;
}
