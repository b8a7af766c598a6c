/**
 * The few torch CPU float behaviours the schedules must copy to reproduce upstream tables bit for bit.
 *
 * Every upstream table (diffusers' betas, k-diffusion's sigmas, A1111's schedules) is a torch float32 or
 * float64 tensor built by `torch.linspace` and elementwise ops. A float32 op is emulated as the float64 op
 * followed by Math.fround: for + − × ÷ and sqrt on float32 inputs this is exactly torch's rounding (float64
 * has more than 2·24+2 bits). exp/log/pow go through libm or SLEEF in torch and may differ in the last ulp;
 * callers document where that shows.
 */

export type TorchFloat = 'float32' | 'float64';

const identity = (v: number): number => v;

/** Rounding function for a dtype: Math.fround for float32, identity for float64. */
export function rounder(dtype: TorchFloat): (v: number) => number {
  return dtype === 'float32' ? Math.fround : identity;
}

// One-rounding a·b + c (the FMA contraction torch's AVX2 kernels use), shared with the RNG kernels.
export { fmaf32 as fmaF32, fma64 as fmaF64 } from '../tensor/fma.js';
import { fmaf32 as fmaF32, fma64 as fmaF64 } from '../tensor/fma.js';

/**
 * `torch.linspace(start, end, steps, dtype)` exactly as torch 1.13 computes it on an AVX2 x86-64 CPU.
 *
 * Upstream: pytorch/pytorch v1.13 aten/src/ATen/native/cpu/RangeFactoriesKernel.cpp (linspace_kernel) and
 * aten/src/ATen/native/cpu/Loops.h (vectorized_loop). The first half counts up from `start`, the second half
 * down from `end` (`step` is computed once, in the dtype). The vectorized loop handles pairs of vectors
 * (8 float32 or 4 float64 lanes each) while at least two full vectors remain, deciding the side per vector
 * from its first index and filling lanes as `base + k·step`; the tail is scalar, per element. The AVX2 kernel
 * is compiled with FMA contraction, so every `x + step·i` is one fused operation: with separate roundings
 * diffusers' float32 SD betas come out different in 682 of 1000 ᾱ values (checked against the tiny-sd15
 * reference, which this reproduces bit for bit). Later torch (2.1+) dropped the vector path; for the sizes
 * the schedules use the results agree.
 */
export function torchLinspace(start: number, end: number, steps: number, dtype: TorchFloat): Float64Array {
  const r = rounder(dtype);
  const fma = dtype === 'float32' ? fmaF32 : fmaF64;
  const out = new Float64Array(steps);
  if (steps === 0) return out;
  const s = r(start);
  const e = r(end);
  if (steps === 1) {
    out[0] = s;
    return out;
  }
  const step = r(r(e - s) / (steps - 1));
  const halfway = Math.floor(steps / 2);
  const at = (i: number) => (i < halfway ? fma(step, i, s) : fma(-step, steps - i - 1, e));
  const lanes = dtype === 'float32' ? 8 : 4;
  let i = 0;
  for (; i <= steps - 2 * lanes; i += 2 * lanes) {
    for (let c = i; c < i + 2 * lanes; c += lanes) {
      const base = at(c);
      out[c] = base;
      for (let k = 1; k < lanes; k++) out[c + k] = fma(k, step, base);
    }
  }
  for (; i < steps; i++) out[i] = at(i);
  return out;
}
