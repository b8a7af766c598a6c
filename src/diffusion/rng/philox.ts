/**
 * AUTOMATIC1111's "NV" noise: Philox-4x32-10 plus Box-Muller, imitating torch.randn on CUDA from the CPU.
 *
 * Upstream: AUTOMATIC1111/stable-diffusion-webui modules/rng_philox.py (tag v1.9.4, unchanged since commit
 * 0904df84, 2023-08-03): `Generator(seed).randn(shape)`. Reproduced bit for bit, including its float64
 * Box-Muller (numpy promotes uint32 * float32 to float64), which is why it is NOT bit-identical to real CUDA
 * noise (that runs Box-Muller in float32; differences up to ~2.6e-7).
 *
 * Element i of the c-th call (c = 0, 1, …) depends only on (seed, c, i):
 *   counter = [c, 0, i, 0], key = [seed low 32 bits, seed high 32 bits], 10 Philox rounds,
 *   value = float32(sqrt(-2 ln u) * sin(v)) from the first two output words. Hence every prefix of a call is
 *   shape-independent, and each call advances the generator's offset by one whatever its size.
 */

const PHILOX_M0 = 0xd2511f53;
const PHILOX_M1 = 0xcd9e8d57;
const PHILOX_W0 = 0x9e3779b9;
const PHILOX_W1 = 0xbb67ae85;
const ROUNDS = 10;

// float32 constants, as numpy holds them: two_pow32_inv and two_pow32_inv_2pi.
const TWO_POW32_INV = Math.fround(2.3283064e-10);
const TWO_POW32_INV_2PI = Math.fround(2.3283064e-10 * 6.2831855);

/** High 32 bits of the 64-bit product of two uint32 (JS numbers lose the low bits beyond 2^53). */
function mulHi32(a: number, b: number): number {
  const aL = a & 0xffff;
  const aH = a >>> 16;
  const bL = b & 0xffff;
  const bH = b >>> 16;
  const lh = aL * bH;
  const hl = aH * bL;
  const mid = ((aL * bL) >>> 16) + (lh & 0xffff) + (hl & 0xffff);
  return (aH * bH + (lh >>> 16) + (hl >>> 16) + (mid >>> 16)) >>> 0;
}

export class PhiloxGenerator {
  private readonly key0: number;
  private readonly key1: number;
  private offset = 0;

  /** @param seed the full seed, an integer in [0, 2^64): both halves key the generator */
  constructor(readonly seed: bigint) {
    if (seed < 0n || seed >= 1n << 64n) throw new RangeError(`philox seed must be in [0, 2^64), got ${seed}`);
    this.key0 = Number(seed & 0xffffffffn);
    this.key1 = Number(seed >> 32n);
  }

  /** The next `numel` values: one randn call, which advances the offset by one. */
  randn(numel: number): Float32Array {
    if (numel > 0x100000000) throw new RangeError('philox randn: at most 2^32 values per call');
    const out = new Float32Array(numel);
    const c0Start = this.offset >>> 0;
    this.offset++;
    for (let i = 0; i < numel; i++) {
      let c0 = c0Start;
      let c1 = 0;
      let c2 = i >>> 0;
      let c3 = 0;
      let k0 = this.key0;
      let k1 = this.key1;
      for (let r = 0; r < ROUNDS; r++) {
        if (r > 0) {
          k0 = (k0 + PHILOX_W0) >>> 0;
          k1 = (k1 + PHILOX_W1) >>> 0;
        }
        const hi0 = mulHi32(c0, PHILOX_M0);
        const lo0 = Math.imul(c0, PHILOX_M0) >>> 0;
        const hi2 = mulHi32(c2, PHILOX_M1);
        const lo2 = Math.imul(c2, PHILOX_M1) >>> 0;
        c0 = (hi2 ^ c1 ^ k0) >>> 0;
        c1 = lo2;
        c2 = (hi0 ^ c3 ^ k1) >>> 0;
        c3 = lo0;
      }
      out[i] = boxMuller(c0, c1);
    }
    return out;
  }
}

/** rng_philox.box_muller: only the sine branch is used; all arithmetic float64, one final float32 rounding. */
function boxMuller(x: number, y: number): number {
  const u = x * TWO_POW32_INV + TWO_POW32_INV / 2;
  const v = y * TWO_POW32_INV_2PI + TWO_POW32_INV_2PI / 2;
  return Math.sqrt(-2 * Math.log(u)) * Math.sin(v);
}
