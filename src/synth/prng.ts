/**
 * Seeded, fast pseudo-random numbers for synthetic weights.
 *
 * Every tensor gets its own stream, seeded from (pipeline seed, component, tensor key), so a tensor's bytes
 * depend only on those and never on the order tensors are generated in: same seed ⇒ same bytes, and adding a
 * tensor elsewhere does not shift any other. The generator is mulberry32 (Tommy Ettinger's public-domain
 * 32-bit mixer): statistically plenty for random weights and ~10 ns per value in V8, which matters when a
 * preset has a billion parameters.
 */

/** 32-bit FNV-1a of a string, then mixed with the seed (murmur3 finaliser) so nearby seeds decorrelate. */
export function streamSeed(seed: number, ...keys: string[]): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (const key of keys) {
    for (let i = 0; i < key.length; i++) {
      h ^= key.charCodeAt(i);
      h = Math.imul(h, 0x01000193);
    }
    h ^= 0xff; // key separator, so ('ab','c') ≠ ('a','bc')
    h = Math.imul(h, 0x01000193);
  }
  h ^= Math.floor(seed / 0x100000000); // high bits of seeds above 2^32
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Fills `out` with center + U(-bound, bound). Inlined mulberry32 (no method call per value): this loop
 * produces the bulk of every preset's bytes.
 */
export function fillUniform(out: Float32Array, seed32: number, bound: number, center = 0): Float32Array {
  let s = seed32 | 0;
  const scale = (2 * bound) / 4294967296;
  const base = center - bound;
  for (let i = 0; i < out.length; i++) {
    s = (s + 0x6d2b79f5) | 0;
    let t = Math.imul(s ^ (s >>> 15), s | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = base + ((t ^ (t >>> 14)) >>> 0) * scale;
  }
  return out;
}
