/**
 * Byte-level BPE as CLIP uses it (GPT-2's scheme with an end-of-word marker).
 *
 * Upstream: openai/CLIP `clip/simple_tokenizer.py` (`bytes_to_unicode`, `SimpleTokenizer.bpe`), copied into
 * huggingface/transformers `src/transformers/models/clip/tokenization_clip.py` (`bytes_to_unicode`, `CLIPTokenizer.bpe`).
 *
 * A word's UTF-8 bytes are first spelled with 256 printable stand-in characters (so the vocabulary never holds raw
 * control bytes or spaces), its last symbol gets `</w>` appended, and then adjacent pairs are merged, lowest merge
 * rank first, until no ranked pair is left.
 */

/** GPT-2's `bytes_to_unicode`: printable Latin-1 bytes stand for themselves, the other 68 shift to U+0100.. . */
export const BYTE_TO_CHAR: readonly string[] = (() => {
  const table: string[] = new Array(256);
  const printable = (b: number) => (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
  let shifted = 0;
  for (let b = 0; b < 256; b++) table[b] = String.fromCharCode(printable(b) ? b : 256 + shifted++);
  return table;
})();

/** Inverse of BYTE_TO_CHAR, keyed by the stand-in's UTF-16 code. */
export const CHAR_TO_BYTE: ReadonlyMap<number, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c.charCodeAt(0), b]));

export const END_OF_WORD = '</w>';

const utf8 = new TextEncoder();

/** A word's UTF-8 bytes as stand-in characters, one per byte. */
export function byteEncode(word: string): string {
  let out = '';
  for (const b of utf8.encode(word)) out += BYTE_TO_CHAR[b];
  return out;
}

/** Merge ranks keyed `${left} ${right}`; a space never occurs inside a symbol (byte 0x20 has a stand-in). */
export type MergeRanks = ReadonlyMap<string, number>;

export function mergeKey(left: string, right: string): string {
  return `${left} ${right}`;
}

/**
 * Splits a byte-encoded word into BPE symbols; the last one carries `</w>`.
 *
 * Each round finds the pair with the lowest rank and merges every occurrence of it, left to right without overlap
 * ("aaa" with rank(a,a) → "aa","a"), exactly like upstream's `bpe`. Words are short (prompts are split into words
 * first), so the quadratic rescan is cheaper than a heap here.
 */
export function bpeMerge(encodedWord: string, ranks: MergeRanks): string[] {
  let symbols = encodedWord.split('');
  if (symbols.length === 0) return [];
  symbols[symbols.length - 1] += END_OF_WORD;
  while (symbols.length > 1) {
    let bestRank = Infinity;
    let left = '';
    let right = '';
    for (let i = 0; i + 1 < symbols.length; i++) {
      const rank = ranks.get(mergeKey(symbols[i], symbols[i + 1]));
      if (rank !== undefined && rank < bestRank) {
        bestRank = rank;
        left = symbols[i];
        right = symbols[i + 1];
      }
    }
    if (bestRank === Infinity) break;
    const merged: string[] = [];
    for (let i = 0; i < symbols.length; i++) {
      if (i + 1 < symbols.length && symbols[i] === left && symbols[i + 1] === right) {
        merged.push(left + right);
        i++;
      } else {
        merged.push(symbols[i]);
      }
    }
    symbols = merged;
  }
  return symbols;
}

const utf8Lenient = new TextDecoder('utf-8', { fatal: false });

/**
 * Symbols back to text: stand-ins → bytes → UTF-8 (invalid sequences become U+FFFD, like transformers'
 * `errors="replace"`). A character that is not a stand-in (only in hand-made vocabularies) contributes its own UTF-8.
 */
export function byteDecode(symbols: string): string {
  const bytes: number[] = [];
  for (const ch of symbols) {
    const b = CHAR_TO_BYTE.get(ch.charCodeAt(0));
    if (b !== undefined && ch.length === 1) bytes.push(b);
    else for (const raw of utf8.encode(ch)) bytes.push(raw);
  }
  return utf8Lenient.decode(new Uint8Array(bytes));
}
