/**
 * Seeded starting noise, the two generators AUTOMATIC1111 offers (settings "Random number generator source"):
 *  - 'cpu': torch.randn on a CPU torch.Generator (torch-cpu.ts) — A1111's "CPU" option and what diffusers
 *    users get with generator=torch.Generator('cpu'). Only the low 32 bits of the seed matter.
 *  - 'nv':  A1111's rng_philox.py (philox.ts), its CPU imitation of CUDA noise ("NV"). The full 64-bit seed
 *    matters.
 * A generator is a stream: each randn call continues where the previous one stopped, as torch does (A1111
 * draws ancestral-sampler noise as the 2nd, 3rd, … call on the image's generator). One generator per job;
 * never share one.
 */
import { LoraserveError } from '../../core/errors.js';
import { PhiloxGenerator } from './philox.js';
import { seedToUint64 } from './seed.js';
import { TorchCpuGenerator, type TorchCpuKernel } from './torch-cpu.js';

export { MAX_SEED, parseSeed, randomSeed } from './seed.js';
export type { TorchCpuKernel } from './torch-cpu.js';

export type RngKind = 'cpu' | 'nv';

export interface NoiseGenerator {
  readonly kind: RngKind;
  /** Standard-normal float32 values, row-major for `shape`; continues this generator's stream. */
  randn(shape: readonly number[]): Float32Array;
}

export interface NoiseGeneratorOptions {
  /**
   * For 'cpu': which torch build's float32 Box-Muller to reproduce. 'avx2' (default) = x86-64 torch, what
   * nearly every A1111 install runs; 'default' = torch without AVX2 (aarch64 / Apple silicon). They differ in
   * the last bits (up to ~2e-6) of ~38% of values of tensors with 16 or more elements.
   */
  cpuKernel?: TorchCpuKernel;
}

/** Largest tensor one randn call may fill (a Float32Array of 2^30 values is already 4 GiB). */
const MAX_NUMEL = 2 ** 30;

export function createNoiseGenerator(
  kind: RngKind,
  seed: number | bigint,
  opts: NoiseGeneratorOptions = {},
): NoiseGenerator {
  const seed64 = seedToUint64(seed);
  if (kind === 'cpu') {
    const kernel = opts.cpuKernel ?? 'avx2';
    if (kernel !== 'avx2' && kernel !== 'default') {
      throw new LoraserveError('INVALID_ARGUMENT', `unknown cpu kernel ${String(kernel)}; use 'avx2' or 'default'`, {
        field: 'cpuKernel',
      });
    }
    // torch.Generator.manual_seed keeps the low 32 bits: seed 2^32 + 5 draws exactly what seed 5 does.
    const gen = new TorchCpuGenerator(Number(seed64 & 0xffffffffn), kernel);
    return { kind, randn: (shape) => gen.randn(numelOf(shape)) };
  }
  if (kind === 'nv') {
    const gen = new PhiloxGenerator(seed64);
    return { kind, randn: (shape) => gen.randn(numelOf(shape)) };
  }
  throw new LoraserveError('INVALID_ARGUMENT', `unknown rng kind ${String(kind)}; use 'cpu' or 'nv'`, {
    field: 'rng',
  });
}

function numelOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw new LoraserveError('INVALID_ARGUMENT', `noise shape must be non-negative integers, got [${shape.join(', ')}]`, {
        field: 'shape',
      });
    }
    n *= d;
  }
  if (n > MAX_NUMEL) {
    throw new LoraserveError('INVALID_ARGUMENT', `noise shape [${shape.join(', ')}] has ${n} values (max ${MAX_NUMEL})`, {
      field: 'shape',
    });
  }
  return n;
}
