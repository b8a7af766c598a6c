/**
 * Python `re` character classes spelled out for JavaScript, so the A1111 ports in this folder match what Python
 * matches. For str patterns Python's classes are Unicode-aware where JavaScript's are not:
 *  - `\s` is "str.isspace()": it includes U+001C..U+001F and U+0085, and not U+FEFF (which JS's `\s` has);
 *  - `\w` is letters, digits and underscore of every script (JS: ASCII only), so `\b` is a Unicode word boundary;
 *  - `\d` and float() take every Unicode decimal digit ('١.٥' is 1.5).
 */

/** Python's `\s` as a character class (for use inside `new RegExp(…, 'u')`). */
export const PY_SPACE = '[\\t\\n\\v\\f\\r\\x1c-\\x1f \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]';

/** Python's `\w` as a character class, as far as Unicode properties can say it (needs the 'u' flag). */
export const PY_WORD = '[\\p{L}\\p{N}_]';

/** Python's `\bWORD\b` for a word made of word characters (needs the 'u' flag). */
export function pyWordBounded(word: string): string {
  return `(?<!${PY_WORD})${word}(?!${PY_WORD})`;
}

const ND = /^\p{Nd}$/u;

/**
 * Replaces Unicode decimal digits by ASCII ones, so that Number() reads what Python's float() reads. Unicode encodes
 * each script's digits as whole runs of ten consecutive code points (0..9), so a digit's value is its distance
 * from the start of its run, modulo 10 (some runs hold several sets of ten, e.g. the mathematical digits).
 */
export function asciiDigits(s: string): string {
  let out = '';
  for (const ch of s) {
    if (ch >= '0' && ch <= '9') out += ch;
    else if (ND.test(ch)) {
      let start = ch.codePointAt(0)!;
      while (ND.test(String.fromCodePoint(start - 1))) start--;
      out += String((ch.codePointAt(0)! - start) % 10);
    } else out += ch;
  }
  return out;
}
