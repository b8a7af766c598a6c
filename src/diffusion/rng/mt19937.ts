/**
 * MT19937, the 32-bit Mersenne Twister, seeded and drawn the way torch's CPU generator does.
 *
 * Upstream: pytorch/pytorch aten/src/ATen/core/MT19937RNGEngine.h (init_with_uint32, next_state, operator())
 * and aten/src/ATen/CPUGeneratorImpl.cpp (random(), random64()). torch keeps only the low 32 bits of a seed,
 * so callers pass `seed & 0xFFFFFFFF`.
 */

const N = 624;
const M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;

export class MT19937 {
  private readonly state = new Uint32Array(N);
  private index = N;

  /** @param seed an unsigned 32-bit integer (torch: the low 32 bits of the manual seed) */
  constructor(seed: number) {
    if (!Number.isInteger(seed) || seed < 0 || seed > 0xffffffff) {
      throw new RangeError(`MT19937 seed must be an unsigned 32-bit integer, got ${seed}`);
    }
    const s = this.state;
    s[0] = seed;
    for (let i = 1; i < N; i++) {
      const prev = s[i - 1];
      s[i] = Math.imul(1812433253, prev ^ (prev >>> 30)) + i;
    }
  }

  /** Regenerates all 624 words at once (the classic "twist"). */
  private twist(): void {
    const s = this.state;
    let k = 0;
    for (; k < N - M; k++) {
      const y = (s[k] & UPPER_MASK) | (s[k + 1] & LOWER_MASK);
      s[k] = s[k + M] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    for (; k < N - 1; k++) {
      const y = (s[k] & UPPER_MASK) | (s[k + 1] & LOWER_MASK);
      s[k] = s[k + M - N] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    }
    const y = (s[N - 1] & UPPER_MASK) | (s[0] & LOWER_MASK);
    s[N - 1] = s[M - 1] ^ (y >>> 1) ^ (y & 1 ? MATRIX_A : 0);
    this.index = 0;
  }

  /** Next tempered 32-bit output, as an unsigned integer in [0, 2^32). */
  nextUint32(): number {
    if (this.index >= N) this.twist();
    let y = this.state[this.index++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }
}
