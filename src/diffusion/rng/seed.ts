/**
 * Seeds as users give them: A1111 semantics (-1 = pick one at random), validated at the edge.
 */
import { randomInt } from 'node:crypto';
import { LoraserveError } from '../../core/errors.js';

/** The largest seed accepted: JS numbers are exact integers up to here. */
export const MAX_SEED = Number.MAX_SAFE_INTEGER;

/**
 * Validates a user-supplied seed: -1 (random) or an integer in [0, 2^53-1]. Accepts a number, or a string of
 * decimal digits (CLI flags and form fields arrive as strings). Anything else is INVALID_ARGUMENT.
 */
export function parseSeed(x: unknown): number {
  let v: number;
  if (typeof x === 'number') v = x;
  else if (typeof x === 'string' && /^\s*-?\d+\s*$/.test(x)) v = Number(x);
  else throw invalidSeed(x, 'not an integer');
  if (!Number.isInteger(v)) throw invalidSeed(x, 'not an integer');
  if (v === -1) return -1;
  if (v < 0 || v > MAX_SEED) throw invalidSeed(x, 'out of range');
  return v;
}

function invalidSeed(x: unknown, reason: string): LoraserveError {
  const shown = typeof x === 'string' ? JSON.stringify(x.length > 40 ? `${x.slice(0, 40)}…` : x) : String(x);
  return new LoraserveError(
    'INVALID_ARGUMENT',
    `seed must be -1 (random) or an integer from 0 to ${MAX_SEED}; got ${shown} (${reason})`,
    { field: 'seed', reason },
  );
}

/**
 * What seed -1 becomes. A1111 (modules/processing.py get_fixed_seed) uses int(random.randrange(4294967294)),
 * a uniform integer in [0, 4294967293]; so do we, from a CSPRNG.
 */
export function randomSeed(): number {
  return randomInt(4294967294);
}

/**
 * A validated generator seed as an unsigned 64-bit BigInt: a non-negative safe-integer number, or a bigint in
 * [0, 2^64). -1 must already have been replaced (randomSeed) by the caller.
 */
export function seedToUint64(seed: number | bigint): bigint {
  if (typeof seed === 'bigint') {
    if (seed >= 0n && seed < 1n << 64n) return seed;
  } else if (Number.isSafeInteger(seed) && seed >= 0) {
    return BigInt(seed);
  }
  throw new LoraserveError(
    'INVALID_ARGUMENT',
    `noise seed must be an integer from 0 to ${MAX_SEED} (or a bigint below 2^64); got ${String(seed)}` +
      (seed === -1 ? ' (resolve -1 with randomSeed() first)' : ''),
    { field: 'seed' },
  );
}
