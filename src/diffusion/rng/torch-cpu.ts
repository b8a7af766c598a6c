/**
 * torch's CPU float32 randn: `torch.randn(shape, generator=torch.Generator('cpu').manual_seed(seed))`.
 *
 * Upstream: pytorch/pytorch aten/src/ATen/native/cpu/DistributionTemplates.h (normal_kernel, normal_fill,
 * normal_fill_16, normal_fill_16_AVX2), aten/src/ATen/core/DistributionsHelper.h (normal_distribution<double>,
 * uniform_real_distribution), aten/src/ATen/CPUGeneratorImpl.cpp (random64, the cached normal sample).
 * Identical in torch 1.13 and 2.x. The algorithm, checked against torch output, is written up in
 * ../shared/fixtures/rng/README.md and spec/torch_randn_emulation.py.
 *
 * Two code paths, chosen by the element count of each call:
 *  - numel < 16: one `normal_distribution<double>` sample per element. Box-Muller in float64 from two 53-bit
 *    uniforms; the pair's second value is cached IN THE GENERATOR and returned by the next element, even in
 *    the next randn call.
 *  - numel >= 16: one float32 uniform per element, then Box-Muller in blocks of 16 (u1 = 1 - u[j],
 *    u2 = u[j+8], cos -> slot j, sin -> slot j+8). A ragged tail is redone from 16 fresh uniforms over the
 *    last 16 slots. The cached sample is neither used nor cleared.
 *
 * The float32 Box-Muller math differs by build: x86-64 torch runs an AVX2 kernel with Cephes polynomials
 * ('avx2', the default here); builds without AVX2 (aarch64, ATEN_CPU_CAPABILITY=default) call libm's
 * logf/cosf/sinf ('default', reproduced from glibc). The two disagree in ~38% of values by up to ~2e-6.
 */
import { log256Lane, sincos256Lane, sincosOut } from './avx-mathfun.js';
import { glibcCosf, glibcLogf, glibcSinf } from './glibc-mathf.js';
import { MT19937 } from './mt19937.js';

export type TorchCpuKernel = 'avx2' | 'default';

const f = Math.fround;
const TWO_NEG_24 = 2 ** -24;
const TWO_NEG_53 = 2 ** -53;
const TWO_PI_F32 = f(2 * Math.PI); // _mm256_set1_ps(2.0f * c10::pi<double>)

/** normal_fill_16_AVX2 with mean 0, std 1 (the final fma(n, std, mean) is then the identity). */
function fill16Avx2(data: Float32Array, base: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = f(1 - data[base + j]);
    const u2 = data[base + j + 8];
    const radius = f(Math.sqrt(-2 * log256Lane(u1))); // -2*log is exact in float32; sqrt via f64 rounds right
    sincos256Lane(f(TWO_PI_F32 * u2));
    // The product of two float32 is exact in float64, so the Float32Array store is torch's one rounding.
    // `+ 0` is the kernel's fma(n, std=1, mean=0): it turns -0 (radius 0 when u1 == 1) into +0.
    data[base + j] = radius * sincosOut.cos + 0;
    data[base + j + 8] = radius * sincosOut.sin + 0;
  }
}

/** normal_fill_16 (scalar template) with mean 0, std 1, calling glibc's float libm. */
function fill16Default(data: Float32Array, base: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = f(1 - data[base + j]);
    const u2 = data[base + j + 8];
    const radius = f(Math.sqrt(-2 * glibcLogf(u1)));
    const theta = f(2 * Math.PI * u2); // `2.0f * c10::pi<double> * u2` is double math, stored as float
    data[base + j] = radius * glibcCosf(theta) + 0; // `* std + mean`: -0 becomes +0
    data[base + j + 8] = radius * glibcSinf(theta) + 0;
  }
}

export class TorchCpuGenerator {
  private readonly mt: MT19937;
  /** CPUGeneratorImpl::next_double_normal_sample_: the unused half of the last float64 Box-Muller pair. */
  private cachedNormal: number | null = null;
  private readonly fill16: (data: Float32Array, base: number) => void;

  /**
   * @param seed32 the low 32 bits of the seed (manual_seed keeps only those)
   * @param kernel which float32 Box-Muller build to reproduce
   */
  constructor(seed32: number, readonly kernel: TorchCpuKernel = 'avx2') {
    this.mt = new MT19937(seed32);
    this.fill16 = kernel === 'avx2' ? fill16Avx2 : fill16Default;
  }

  /** The next `numel` standard-normal float32 values, continuing this generator's stream. */
  randn(numel: number): Float32Array {
    const out = new Float32Array(numel);
    if (numel < 16) {
      for (let i = 0; i < numel; i++) out[i] = this.normalDouble();
      return out;
    }
    this.fillUniform24(out, 0, numel);
    const full = numel - (numel % 16);
    for (let b = 0; b < full; b += 16) this.fill16(out, b);
    if (full !== numel) {
      // normal_fill: "Recompute the last 16 values" from fresh uniforms (overwrites slots already filled).
      this.fillUniform24(out, numel - 16, numel);
      this.fill16(out, numel - 16);
    }
    return out;
  }

  /** uniform_real_distribution<float>(0, 1): 24 random bits per element, exact in float32. */
  private fillUniform24(out: Float32Array, from: number, to: number): void {
    const mt = this.mt;
    for (let i = from; i < to; i++) out[i] = (mt.nextUint32() & 0xffffff) * TWO_NEG_24;
  }

  /** uniform_real_distribution<double>(0, 1): 53 bits of random64() = (first draw << 32) | second draw. */
  private uniform53(): number {
    const hi = this.mt.nextUint32();
    const lo = this.mt.nextUint32();
    return ((hi & 0x1fffff) * 0x100000000 + lo) * TWO_NEG_53;
  }

  /** at::normal_distribution<double>(0, 1) with the generator's cached second sample. */
  private normalDouble(): number {
    if (this.cachedNormal !== null) {
      const v = this.cachedNormal;
      this.cachedNormal = null;
      return v + 0; // transformation::normal(v, mean 0, std 1)
    }
    const u1 = this.uniform53();
    const u2 = this.uniform53();
    // torch 1.13 writes log(1 - u2), torch 2.x log1p(-u2): 1 - u2 is exact on the 2^-53 grid, so both are
    // the log of the same number and agree up to libm's last-bit rounding, which float32 rounding hides almost always.
    const r = Math.sqrt(-2 * Math.log(1 - u2));
    const theta = 2 * Math.PI * u1;
    this.cachedNormal = r * Math.sin(theta);
    return r * Math.cos(theta) + 0;
  }
}
