/**
 * LoRA names as users type them: validation (a name is a file stem, never a path) and "did you mean"
 * suggestions by edit distance.
 */
import { LoraserveError } from '../core/errors.js';

/**
 * A LoRA name names a file in the library folder by its stem; anything that could walk out of the folder
 * (path separators, `..`, NUL) or is empty is refused with INVALID_ARGUMENT.
 */
export function validateLoraName(name: unknown): string {
  if (typeof name !== 'string' || name.trim() === '') throw new LoraserveError('INVALID_ARGUMENT', 'LoRA name is empty');
  if (/[/\\\0]/.test(name) || name.includes('..') || name === '.') {
    throw new LoraserveError('INVALID_ARGUMENT', `LoRA name '${name}' may not contain path separators or '..'`, { name });
  }
  return name;
}

/** Levenshtein distance (insert, delete, substitute; each costs 1). */
export function editDistance(a: string, b: string): number {
  if (a === b) return 0;
  if (a.length === 0) return b.length;
  if (b.length === 0) return a.length;
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  let cur = new Array<number>(b.length + 1);
  for (let i = 1; i <= a.length; i++) {
    cur[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const sub = prev[j - 1] + (a.charCodeAt(i - 1) === b.charCodeAt(j - 1) ? 0 : 1);
      cur[j] = Math.min(sub, prev[j] + 1, cur[j - 1] + 1);
    }
    [prev, cur] = [cur, prev];
  }
  return prev[b.length];
}

/**
 * Up to `n` candidates close to `name` (case-insensitive): within an edit distance of max(2, ⌊len/3⌋), or
 * containing it / contained in it (≥ 3 characters), nearest first, then alphabetical.
 */
export function closestNames(name: string, candidates: Iterable<string>, n = 3): string[] {
  const q = name.toLowerCase();
  const limit = Math.max(2, Math.floor(q.length / 3));
  const scored: Array<[string, number]> = [];
  const seen = new Set<string>();
  for (const c of candidates) {
    if (seen.has(c)) continue;
    seen.add(c);
    const lc = c.toLowerCase();
    const d = editDistance(q, lc);
    const contains = q.length >= 3 && lc.length >= 3 && (lc.includes(q) || q.includes(lc));
    if (d <= limit || contains) scored.push([c, d]);
  }
  scored.sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return scored.slice(0, n).map(([c]) => c);
}
