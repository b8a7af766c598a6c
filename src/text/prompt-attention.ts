/**
 * A1111's emphasis syntax: `(x)` ×1.1, `[x]` ÷1.1, `(x:1.3)`, nesting multiplies, `\(` escapes, `BREAK`.
 *
 * Port of AUTOMATIC1111/stable-diffusion-webui v1.9.4 `modules/prompt_parser.py` `parse_prompt_attention` (with
 * its `re_attention` and `re_break`), token for token: the same regex alternatives in the same order, the same
 * bracket stacks, the same float arithmetic (so `(((house:1.3))` gives 1.5730000000000004, as in its docstring),
 * the same merge of equal-weight runs. The result feeds prompt-chunks.ts (A1111's tokenize_line).
 *
 * Where Python and JavaScript regexes differ we spell Python's meaning out (python-regex.ts): `\s` is Python's
 * Unicode whitespace, `\b` around BREAK a Unicode word boundary ("éBREAK" is one word in A1111), `\d` any Unicode
 * decimal digit.
 *
 * Two deliberate departures, both where A1111 raises or produces a non-finite weight (the parser here never
 * throws and every weight is finite — see test/unit/text/prompt-attention.test.ts):
 *  - a weight `[.\d]+` that Python's float() rejects (`(a:1.2.3)`, `(a:.)`) makes A1111 fail the whole render with
 *    a ValueError; here the `:1.2.3)` piece is kept as literal text and the bracket stays open;
 *  - products that overflow (a 400-digit weight, hundreds of nested brackets) are clamped to ±FLOAT32_MAX, the
 *    largest weight a float32 encoder output can be multiplied by.
 */
import { asciiDigits, PY_SPACE, pyWordBounded } from './python-regex.js';

/** One run of prompt text with its attention weight. BREAK markers are `{ text: 'BREAK', weight: -1 }`. */
export interface WeightedText {
  text: string;
  weight: number;
}

const ROUND_MULTIPLIER = 1.1;
const SQUARE_MULTIPLIER = 1 / 1.1;
const FLOAT32_MAX = 3.4028234663852886e38;

/**
 * `re_attention` of prompt_parser.py, alternative for alternative (re.X ignores the pattern's layout whitespace):
 *   \\\(  \\\)  \\\[  \\]  \\\\  \\  \(  \[  :\s*([+-]?[.\d]+)\s*\)  \)  ]  [^\\()\[\]:]+  :
 */
const RE_ATTENTION = new RegExp(
  [
    '\\\\\\(',
    '\\\\\\)',
    '\\\\\\[',
    '\\\\\\]',
    '\\\\\\\\',
    '\\\\',
    '\\(',
    '\\[',
    `:${PY_SPACE}*([+-]?[.\\p{Nd}]+)${PY_SPACE}*\\)`,
    '\\)',
    '\\]',
    '[^\\\\()\\[\\]:]+',
    ':',
  ].join('|'),
  'gu',
);

/** `re_break = re.compile(r"\s*\bBREAK\b\s*", re.S)` with Python's Unicode `\b`. */
const RE_BREAK = new RegExp(`${PY_SPACE}*${pyWordBounded('BREAK')}${PY_SPACE}*`, 'gu');

/** What Python's float() accepts of a `[+-]?[.\d]+` string: digits with at most one point, at least one digit. */
const PY_DECIMAL = /^[+-]?(?:\p{Nd}+\.?\p{Nd}*|\.\p{Nd}+)$/u;

function clampFinite(w: number): number {
  if (w > FLOAT32_MAX) return FLOAT32_MAX;
  if (w < -FLOAT32_MAX) return -FLOAT32_MAX;
  return w;
}

/**
 * Splits `text` into runs of text and weight. Examples (A1111's docstring):
 *   'an (important) word'  → [['an ', 1], ['important', 1.1], [' word', 1]]
 *   '\(literal\]'          → [['(literal]', 1]]
 *   'a BREAK b'            → [['a', 1], ['BREAK', -1], ['b', 1]]
 */
export function parsePromptAttention(text: string): WeightedText[] {
  const res: WeightedText[] = [];
  const roundBrackets: number[] = [];
  const squareBrackets: number[] = [];

  const multiplyRange = (start: number, multiplier: number): void => {
    for (let p = start; p < res.length; p++) res[p].weight = clampFinite(res[p].weight * multiplier);
  };

  for (const m of text.matchAll(RE_ATTENTION)) {
    const piece = m[0];
    const weightText = m[1];
    const weight = weightText !== undefined && PY_DECIMAL.test(weightText) ? clampFinite(Number(asciiDigits(weightText))) : undefined;

    if (piece.startsWith('\\')) {
      // `\(` → '(' ; a lone backslash (the `\\` alternative matching one char) becomes '' as in A1111.
      res.push({ text: piece.slice(1), weight: 1.0 });
    } else if (piece === '(') {
      roundBrackets.push(res.length);
    } else if (piece === '[') {
      squareBrackets.push(res.length);
    } else if (weight !== undefined && roundBrackets.length > 0) {
      multiplyRange(roundBrackets.pop()!, weight);
    } else if (piece === ')' && roundBrackets.length > 0) {
      multiplyRange(roundBrackets.pop()!, ROUND_MULTIPLIER);
    } else if (piece === ']' && squareBrackets.length > 0) {
      multiplyRange(squareBrackets.pop()!, SQUARE_MULTIPLIER);
    } else {
      // Plain text (or an unmatched bracket, or a weight with no open bracket): split on BREAK.
      const parts = piece.split(RE_BREAK);
      parts.forEach((part, i) => {
        if (i > 0) res.push({ text: 'BREAK', weight: -1 });
        res.push({ text: part, weight: 1.0 });
      });
    }
  }

  // Unclosed brackets apply to the end of the prompt: all round ones, then all square ones, as A1111 does.
  for (const pos of roundBrackets) multiplyRange(pos, ROUND_MULTIPLIER);
  for (const pos of squareBrackets) multiplyRange(pos, SQUARE_MULTIPLIER);

  if (res.length === 0) return [{ text: '', weight: 1.0 }];

  // Merge runs of identical weights (exact float equality, as Python's ==).
  let i = 0;
  while (i + 1 < res.length) {
    if (res[i].weight === res[i + 1].weight) {
      res[i].text += res[i + 1].text;
      res.splice(i + 1, 1);
    } else i++;
  }
  return res;
}
