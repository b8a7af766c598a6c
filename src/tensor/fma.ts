/**
 * Fused multiply-add for JavaScript numbers, which only have separately rounded `*` and `+`.
 *
 * Why: the compiled code we reproduce bit for bit (torch's AVX2 Box-Muller kernel, glibc's FMA builds of
 * logf/sinf/cosf) computes a*b+c with ONE rounding. Emulating that with `a*b + c` (two roundings) changes the
 * last bit of a few results, so both float32 and float64 flavours are emulated here.
 */

const fround = Math.fround;

/**
 * fma for float32 operands, rounded once to float32 (vfmadd…ps).
 *
 * a*b of two float32 values is exact in float64, so `s = a*b + c` has only one float64 rounding; rounding `s`
 * to float32 is then wrong only when `s` landed exactly on a float32 midpoint while the exact sum did not
 * (double rounding). That case is detected and decided from the float64 rounding error of `s`.
 */
export function fmaf32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const r = fround(s);
  const d = s - r;
  if (d === 0) return r;
  // s lies between r and the float32 neighbour on its side; it is a midpoint iff that neighbour is r + 2d.
  const other = r + 2 * d;
  if (fround(other) !== other) return r;
  // Exact rounding error of s = p + c (Knuth's TwoSum): the true sum is s + err.
  const bv = s - p;
  const err = p - (s - bv) + (c - bv);
  if (err === 0) return r; // a true tie: round-half-even already chose r
  return err > 0 ? Math.max(r, other) : Math.min(r, other);
}

/** Veltkamp splitting constant for float64: 2^27 + 1. */
const SPLIT = 134217729;

/**
 * fma for float64 operands (vfmadd…sd), rounded once to float64.
 *
 * The product's rounding error comes exactly from Dekker's TwoProduct and the sum's from TwoSum; the final
 * `s + (t + e)` can differ from a correctly rounded fma only when the exact result sits within ~2^-100
 * relative of a float64 rounding boundary (not worth exact handling: glibc-mathf.ts rounds to float32 after).
 */
export function fma64(a: number, b: number, c: number): number {
  const p = a * b;
  let t = SPLIT * a;
  const ah = t - (t - a);
  const al = a - ah;
  t = SPLIT * b;
  const bh = t - (t - b);
  const bl = b - bh;
  const e = ah * bh - p + ah * bl + al * bh + al * bl; // exact: p + e === a*b
  const s = p + c;
  const bv = s - p;
  const err = p - (s - bv) + (c - bv); // exact: s + err === p + c
  return s + (err + e);
}
