/**
 * glibc's single-precision logf, sinf and cosf (x86-64 FMA builds), reproduced bit for bit.
 *
 * Why: torch's portable ("default") Box-Muller kernel calls the platform libm, and these functions are not
 * correctly rounded (logf: 0.82 ulp, sinf/cosf: 0.56 ulp), so `Math.fround(Math.log(x))` is 1 ulp off for a
 * few inputs. They compute in float64 and round once, which JavaScript can follow exactly.
 *
 * Upstream: glibc sysdeps/ieee754/flt-32/e_logf.c, e_logf_data.c, s_sinf.c, s_cosf.c, s_sincosf.h,
 * sincosf_poly.h, s_sincosf_data.c (the ARM optimized-routines code, glibc >= 2.28; checked against Debian
 * bookworm's glibc 2.36). On x86-64 with FMA, glibc's ifunc picks the copy GCC built with -mfma, where every
 * `a*b + c` became one fused multiply-add: those are the fma64 calls below.
 *
 * Only what the Box-Muller kernel reaches is ported: logf of positive finite floats, sinf/cosf of |x| < 120.
 *
 * Verified once, exhaustively, against glibc 2.36 on x86-64 (a C program calling libm): identical on all 2^24
 * possible u1 = 1 - k*2^-24 (logf) and all 2^24 theta = float(2*pi*k*2^-24) (sinf, cosf). On that domain the
 * non-FMA build gives the same floats too; Math.fround(Math.log/cos/sin) differs on 0.7% / 1.3% / 1.3%.
 */
import { fma64 } from '../../tensor/fma.js';

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Parses a C99 hexadecimal float literal ("-0x1.57bf7808caadep-2") exactly, so the tables read like upstream. */
function hexFloat(lit: string): number {
  const m = /^(-?)0x([0-9a-f])(?:\.([0-9a-f]*))?p([+-]?\d+)$/i.exec(lit);
  if (!m) throw new Error(`bad hex float literal ${lit}`);
  const frac = m[3] ?? '';
  const mantissa = parseInt(m[2] + frac, 16); // at most 53 significant bits: exact
  const v = mantissa * 2 ** (Number(m[4]) - 4 * frac.length);
  return m[1] ? -v : v;
}

// ---- logf ----
const LOGF_TABLE_BITS = 4;
const LOGF_N = 1 << LOGF_TABLE_BITS;
const LOGF_OFF = 0x3f330000;
/** __logf_data.tab: {invc, logc} pairs. */
const LOGF_TAB: readonly (readonly [number, number])[] = [
  ['0x1.661ec79f8f3bep+0', '-0x1.57bf7808caadep-2'],
  ['0x1.571ed4aaf883dp+0', '-0x1.2bef0a7c06ddbp-2'],
  ['0x1.49539f0f010bp+0', '-0x1.01eae7f513a67p-2'],
  ['0x1.3c995b0b80385p+0', '-0x1.b31d8a68224e9p-3'],
  ['0x1.30d190c8864a5p+0', '-0x1.6574f0ac07758p-3'],
  ['0x1.25e227b0b8eap+0', '-0x1.1aa2bc79c81p-3'],
  ['0x1.1bb4a4a1a343fp+0', '-0x1.a4e76ce8c0e5ep-4'],
  ['0x1.12358f08ae5bap+0', '-0x1.1973c5a611cccp-4'],
  ['0x1.0953f419900a7p+0', '-0x1.252f438e10c1ep-5'],
  ['0x1p+0', '0x0p+0'],
  ['0x1.e608cfd9a47acp-1', '0x1.aa5aa5df25984p-5'],
  ['0x1.ca4b31f026aap-1', '0x1.c5e53aa362eb4p-4'],
  ['0x1.b2036576afce6p-1', '0x1.526e57720db08p-3'],
  ['0x1.9c2d163a1aa2dp-1', '0x1.bc2860d22477p-3'],
  ['0x1.886e6037841edp-1', '0x1.1058bc8a07ee1p-2'],
  ['0x1.767dcf5534862p-1', '0x1.4043057b6ee09p-2'],
].map(([a, b]) => [hexFloat(a), hexFloat(b)] as const);
const LOGF_INVC = Float64Array.from(LOGF_TAB, (e) => e[0]);
const LOGF_LOGC = Float64Array.from(LOGF_TAB, (e) => e[1]);
const LN2 = hexFloat('0x1.62e42fefa39efp-1');
const LOGF_A0 = hexFloat('-0x1.00ea348b88334p-2');
const LOGF_A1 = hexFloat('0x1.5575b0be00b6ap-2');
const LOGF_A2 = hexFloat('-0x1.ffffef20a4123p-2');

/** glibc logf for a positive finite float32 x (other inputs: NaN / -Infinity like libm). */
export function glibcLogf(x: number): number {
  f32[0] = x;
  let ix = u32[0];
  if (ix === 0x3f800000) return 0;
  if ((ix - 0x00800000) >>> 0 >= 0x7f800000 - 0x00800000) {
    // x < 0x1p-126 or inf or nan
    if ((ix & 0x7fffffff) === 0) return -Infinity;
    if (ix === 0x7f800000) return x;
    if (ix & 0x80000000 || ix > 0x7f800000) return NaN;
    // subnormal: normalize
    f32[0] = x * 0x800000;
    ix = u32[0] - (23 << 23);
  }
  // x = 2^k z, z in [OFF, 2*OFF] exactly; the table entry i has c near the centre of z's subinterval.
  const tmp = (ix - LOGF_OFF) >>> 0;
  const i = (tmp >>> (23 - LOGF_TABLE_BITS)) % LOGF_N;
  const k = (tmp | 0) >> 23; // arithmetic shift
  u32[0] = (ix - (tmp & 0xff800000)) >>> 0;
  const z = f32[0];
  const invc = LOGF_INVC[i];
  const logc = LOGF_LOGC[i];
  // log(x) = log1p(z/c - 1) + log(c) + k*Ln2
  const r = fma64(z, invc, -1);
  const y0 = fma64(k, LN2, logc);
  const r2 = r * r;
  let y = fma64(LOGF_A1, r, LOGF_A2);
  y = fma64(LOGF_A0, r2, y);
  y = fma64(y, r2, y0 + r);
  return Math.fround(y);
}

// ---- sinf / cosf ----
interface SincosTable {
  sign: readonly number[];
  hpiInv: number;
  hpi: number;
  c0: number;
  c1: number;
  c2: number;
  c3: number;
  c4: number;
  s1: number;
  s2: number;
  s3: number;
}
const SIGN = [1, -1, -1, 1];
const HPI_INV = hexFloat('0x1.45F306DC9C883p+23'); // 2/pi * 2^24 (x86-64 has no TOINT_INTRINSICS)
const HPI = hexFloat('0x1.921FB54442D18p0');
const S1 = hexFloat('-0x1.555545995a603p-3');
const S2 = hexFloat('0x1.1107605230bc4p-7');
const S3 = hexFloat('-0x1.994eb3774cf24p-13');
const C0 = hexFloat('0x1p0');
const C1 = hexFloat('-0x1.ffffffd0c621cp-2');
const C2 = hexFloat('0x1.55553e1068f19p-5');
const C3 = hexFloat('-0x1.6c087e89a359dp-10');
const C4 = hexFloat('0x1.99343027bf8c3p-16');
/** __sincosf_table[0] and [1]; the second negates the cosine polynomial. */
const TABLE: readonly [SincosTable, SincosTable] = [
  { sign: SIGN, hpiInv: HPI_INV, hpi: HPI, c0: C0, c1: C1, c2: C2, c3: C3, c4: C4, s1: S1, s2: S2, s3: S3 },
  { sign: SIGN, hpiInv: HPI_INV, hpi: HPI, c0: -C0, c1: -C1, c2: -C2, c3: -C3, c4: -C4, s1: S1, s2: S2, s3: S3 },
];

/** abstop12 thresholds, as bit patterns of the float arguments: pio4 (as float), 0x1p-12f, 120.0f. */
const TOP12_PIO4 = 0x3f4;
const TOP12_TINY = 0x398;
const TOP12_120 = 0x42f;

function abstop12(y: number): number {
  f32[0] = y;
  return (u32[0] >>> 20) & 0x7ff;
}

/** sinf_poly: the sine polynomial when n is even, the cosine polynomial when odd. */
function sinfPoly(x: number, x2: number, p: SincosTable, n: number): number {
  if ((n & 1) === 0) {
    const x3 = x * x2;
    const s1 = fma64(x2, p.s3, p.s2);
    const x7 = x3 * x2;
    const s = fma64(x3, p.s1, x);
    return Math.fround(fma64(x7, s1, s));
  }
  const x4 = x2 * x2;
  const c2 = fma64(x2, p.c4, p.c3);
  const c1 = fma64(x2, p.c1, p.c0);
  const x6 = x4 * x2;
  const c = fma64(x4, p.c2, c1);
  return Math.fround(fma64(x6, c2, c));
}

/** reduce_fast: x - n*pi/2 with n the nearest quadrant (for |x| < 120); returns the quadrant in reducedN. */
let reducedN = 0;
function reduceFast(x: number, p: SincosTable): number {
  const r = x * p.hpiInv;
  const n = ((r | 0) + 0x800000) >> 24; // (int32_t)r truncates; hpi_inv carries 2^24 for the rounding
  reducedN = n;
  return fma64(-n, p.hpi, x);
}

/** glibc sinf for a float32 |y| < 120 (beyond that, not bit-exact: falls back to Math.sin). */
export function glibcSinf(y: number): number {
  const top = abstop12(y);
  if (top < TOP12_PIO4) {
    if (top < TOP12_TINY) return y;
    return sinfPoly(y, y * y, TABLE[0], 0);
  }
  if (top < TOP12_120) {
    const x = reduceFast(y, TABLE[0]);
    const n = reducedN;
    const p = n & 2 ? TABLE[1] : TABLE[0];
    return sinfPoly(x * p.sign[n & 3], x * x, p, n);
  }
  return Math.fround(Math.sin(y));
}

/** glibc cosf for a float32 |y| < 120 (beyond that, not bit-exact: falls back to Math.cos). */
export function glibcCosf(y: number): number {
  const top = abstop12(y);
  if (top < TOP12_PIO4) {
    if (top < TOP12_TINY) return 1;
    return sinfPoly(y, y * y, TABLE[0], 1);
  }
  if (top < TOP12_120) {
    const x = reduceFast(y, TABLE[0]);
    const n = reducedN;
    const p = n & 2 ? TABLE[1] : TABLE[0];
    return sinfPoly(x * p.sign[n & 3], x * x, p, n ^ 1);
  }
  return Math.fround(Math.cos(y));
}
