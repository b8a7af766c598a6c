/**
 * Linear multistep (order 4): x ← x + Σ_j c_j·d_{i−j}, where d are the last (up to) four ODE slopes and c_j
 * integrates the Lagrange basis polynomial of slope j over [σ_i, σ_{i+1}].
 *
 * Upstream: crowsonkb/k-diffusion@ab527a9a k_diffusion/sampling.py sample_lms / linear_multistep_coeff. There
 * scipy.integrate.quad integrates the (degree ≤ 3) polynomial; 4-point Gauss–Legendre is exact for degree ≤ 7,
 * so the coefficients agree to float64 rounding.
 */
import type { Sampler } from '../types.js';
import { derivative, stepCount, throwIfCancelled } from './common.js';

const GL_NODES = [-0.8611363115940526, -0.3399810435848563, 0.3399810435848563, 0.8611363115940526];
const GL_WEIGHTS = [0.3478548451374538, 0.6521451548625461, 0.6521451548625461, 0.3478548451374538];

/** ∫_{t[i]}^{t[i+1]} Π_{k≠j} (τ − t[i−k]) / (t[i−j] − t[i−k]) dτ. */
export function linearMultistepCoeff(order: number, t: ArrayLike<number>, i: number, j: number): number {
  if (order - 1 > i) throw new RangeError(`order ${order} too high for step ${i}`);
  const a = t[i];
  const b = t[i + 1];
  const half = (b - a) / 2;
  const mid = (a + b) / 2;
  let sum = 0;
  for (let q = 0; q < GL_NODES.length; q++) {
    const tau = mid + half * GL_NODES[q];
    let prod = 1;
    for (let k = 0; k < order; k++) if (k !== j) prod *= (tau - t[i - k]) / (t[i - j] - t[i - k]);
    sum += GL_WEIGHTS[q] * prod;
  }
  return sum * half;
}

export const sampleLms: Sampler = async ({ x: x0, plan, denoise, onStep, signal }) => {
  const order = 4;
  const n = stepCount(plan);
  const { sigmas } = plan;
  const ds: Float32Array[] = [];
  let x = x0;
  for (let i = 0; i < n; i++) {
    throwIfCancelled(signal);
    const denoised = await denoise(x, sigmas[i], i);
    ds.push(derivative(x, denoised, sigmas[i]));
    if (ds.length > order) ds.shift();
    const cur = Math.min(i + 1, order);
    const coeffs = Array.from({ length: cur }, (_, j) => linearMultistepCoeff(cur, sigmas, i, j));
    const recent = Array.from({ length: cur }, (_, j) => ds[ds.length - 1 - j]);
    const next = new Float32Array(x.length);
    for (let e = 0; e < x.length; e++) {
      let acc = x[e];
      for (let j = 0; j < cur; j++) acc += coeffs[j] * recent[j][e];
      next[e] = acc;
    }
    x = next;
    await onStep?.(i, n, x, denoised);
  }
  return x;
};
