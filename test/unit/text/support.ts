/** Shared by the text tests: a miniature CLIP-shaped tokenizer (byte stand-ins, a few merges, the specials). */
import { BYTE_TO_CHAR } from '../../../src/text/byte-level-bpe.js';
import { ClipTokenizer } from '../../../src/text/clip-tokenizer.js';

const MERGES = ['c a', 'ca t</w>', 'e m', 'em b</w>'];

/** ids: "!" 0 … (256 stand-ins), the same with "</w>" (256 … 511), the merges, BOS, EOS. */
export function tinyVocab(): Record<string, number> {
  const vocab: Record<string, number> = {};
  let id = 0;
  const standIns = [...BYTE_TO_CHAR].sort((a, b) => a.charCodeAt(0) - b.charCodeAt(0));
  for (const c of standIns) vocab[c] = id++;
  for (const c of standIns) vocab[`${c}</w>`] = id++;
  for (const m of MERGES) vocab[m.replace(' ', '')] ??= id++;
  vocab['<|startoftext|>'] = id++;
  vocab['<|endoftext|>'] = id++;
  return vocab;
}

/** SD1-style (pad = EOS); `sd2: true` gives SD2's pad "!" (id 0). */
export function tinyTokenizer(opts: { sd2?: boolean } = {}): ClipTokenizer {
  return ClipTokenizer.fromData(tinyVocab(), MERGES, opts.sd2 ? { specials: { pad: '!' } } : {});
}

/** `n` one-token words "a a a …" (each "a</w>"). */
export const words = (n: number, w = 'a'): string => Array.from({ length: n }, () => w).join(' ');
