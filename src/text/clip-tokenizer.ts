/**
 * CLIP's BPE tokenizer, matching what diffusers' Stable Diffusion pipelines feed the text encoder.
 *
 * Reference behaviour: huggingface/transformers `src/transformers/models/clip/tokenization_clip.py` (`CLIPTokenizer`,
 * the "slow" tokenizer diffusers uses) with ftfy installed, driven by `tokenization_utils.py`
 * (`PreTrainedTokenizer.tokenize`). That in turn ports openai/CLIP `clip/simple_tokenizer.py`. The pipeline:
 *
 *   1. split the raw text on the special tokens (exact, case-sensitive: bos/eos/unk/pad), each becomes its own id;
 *   2. every other piece: ftfy.fix_text → whitespace_clean → lower()                        (text-normalize.ts)
 *   3. cut into words with CLIP's pattern (specials, English contractions, letter runs, single digits, symbol runs);
 *   4. each word: UTF-8 bytes → stand-in characters → BPE merges with `</w>` → vocabulary ids  (byte-level-bpe.ts)
 *
 * Step 1 is why SD2's tokenizer (pad_token "!") turns every '!' in a prompt into id 0 ("!" without `</w>`) where
 * SD1's gives "!</w>" / "!!</w>": that is what diffusers feeds SD2 (huggingface/diffusers#4153), so we match it.
 *
 * Where the tokenizers disagree (see ../shared/fixtures/clip-tokenizer/README.md) we follow transformers' slow
 * tokenizer with ftfy ("hf-slow"): `&amp;` in a line without '<' becomes '&' (openai-clip agrees; the fast tokenizer
 * and the no-ftfy slow tokenizer keep `&amp;`), CJK characters are not split into separate words (the no-ftfy
 * tokenizer splits them). We differ from hf-slow only on mojibake, which ftfy repairs and we do not
 * (text-normalize.ts explains why).
 */
import { readClipTokenizerFolder } from './clip-tokenizer-files.js';
import { bpeMerge, byteDecode, byteEncode, mergeKey } from './byte-level-bpe.js';
import { cleanWhitespace, fixText } from './text-normalize.js';
import { LoraserveError } from '../core/errors.js';

export interface ClipTokenizerSpecials {
  bos: string;
  eos: string;
  unk: string;
  pad: string;
}

export interface ClipTokenizerOptions {
  specials?: Partial<ClipTokenizerSpecials>;
  /** Length of `encodeForModel`'s output, BOS and EOS included. Default 77. */
  maxLength?: number;
  /** Lower-case the text before splitting it into words. Default true (CLIP's vocabulary is lower-case). */
  lowerCase?: boolean;
}

/** CLIP's defaults, also transformers' `CLIPTokenizer.__init__` defaults. SD2 folders override pad with "!". */
export const CLIP_DEFAULT_SPECIALS: Readonly<ClipTokenizerSpecials> = {
  bos: '<|startoftext|>',
  eos: '<|endoftext|>',
  unk: '<|endoftext|>',
  pad: '<|endoftext|>',
};
export const CLIP_DEFAULT_MAX_LENGTH = 77;

/**
 * CLIP's word pattern (transformers compiles it with re.IGNORECASE; so do we). The first two alternatives catch
 * specials written in another case ("<|EndOfText|>" is lower-cased into one), which the BPE cache maps to their ids.
 */
const CLIP_WORD = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\p{White_Space}\p{L}\p{N}]+/giu;
/** "left right" with nothing else: the form of every line of a real merges.txt, usable as a MergeRanks key as is. */
const SIMPLE_MERGE_LINE = /^\S+ \S+$/;
/** Upstream seeds its BPE cache with these two words, so they never go through BPE. */
const LITERAL_SPECIAL_WORDS = ['<|startoftext|>', '<|endoftext|>'];
/**
 * Upstream's word cache grows forever; a server sees every word users type, so ours forgets its oldest entry past
 * this size (far above the distinct words of any realistic prompt workload, a few MB at most).
 */
const WORD_CACHE_LIMIT = 50_000;

/** Where the data came from, for error messages ("merges.txt line 12" vs "merges[11]"). */
interface DataSource {
  vocab: string;
  mergeLine: (index: number) => string;
}
const IN_MEMORY: DataSource = { vocab: 'vocab', mergeLine: (i) => `merges[${i}]` };

export class ClipTokenizer {
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
  readonly unkId: number;
  readonly maxLength: number;
  readonly vocabSize: number;
  readonly specials: Readonly<ClipTokenizerSpecials>;

  private readonly vocab: ReadonlyMap<string, number>;
  private readonly tokens: readonly (string | undefined)[];
  private readonly ranks: ReadonlyMap<string, number>;
  private readonly lowerCase: boolean;
  /** Special token content → id, and a pattern finding them (longest first), or null when there are none. */
  private readonly specialIds: ReadonlyMap<string, number>;
  private readonly specialPattern: RegExp | null;
  private readonly literalSpecialWords: ReadonlyMap<string, readonly number[]>;
  private readonly wordCache = new Map<string, readonly number[]>();

  /**
   * Loads a Hugging Face tokenizer folder: vocab.json and merges.txt are required; tokenizer_config.json and
   * special_tokens_map.json are optional (CLIP defaults). Throws MODEL_INVALID listing every missing, unreadable
   * or malformed file at once.
   */
  static async fromFolder(dir: string): Promise<ClipTokenizer> {
    const files = await readClipTokenizerFolder(dir);
    return ClipTokenizer.build(files.vocab, files.merges, files.options, {
      vocab: `${dir}/vocab.json`,
      mergeLine: (i) => `${dir}/merges.txt line ${i + files.firstMergeLine}`,
    });
  }

  /**
   * Builds a tokenizer from in-memory data. `merges` are the lines of merges.txt after `#version` (a leading
   * `#version` line and blank lines are skipped), each "left right"; earlier lines merge first.
   */
  static fromData(vocab: Record<string, number>, merges: string[], opts: ClipTokenizerOptions = {}): ClipTokenizer {
    return ClipTokenizer.build(vocab, merges, opts, IN_MEMORY);
  }

  private static build(
    vocabObject: Record<string, number>,
    mergeLines: readonly string[],
    opts: ClipTokenizerOptions,
    source: DataSource,
  ): ClipTokenizer {
    if (vocabObject === null || typeof vocabObject !== 'object' || Array.isArray(vocabObject)) {
      throw new LoraserveError('MODEL_INVALID', `${source.vocab} must be a JSON object of token → id`);
    }
    const vocab = new Map<string, number>();
    let maxId = -1;
    // for…in + Map is about twice as fast as Object.entries on CLIP's 49408 entries.
    for (const token in vocabObject) {
      const id = vocabObject[token];
      if (!Number.isSafeInteger(id) || id < 0) {
        throw new LoraserveError('MODEL_INVALID', `${source.vocab}: token ${JSON.stringify(token)} has id ${JSON.stringify(id)}, not a non-negative integer`);
      }
      vocab.set(token, id);
      if (id > maxId) maxId = id;
    }
    if (vocab.size === 0) throw new LoraserveError('MODEL_INVALID', `${source.vocab} is empty`);
    const tokens: (string | undefined)[] = new Array(maxId + 1);
    for (const [token, id] of vocab) tokens[id] = token;

    const ranks = new Map<string, number>();
    let rank = 0;
    for (let i = 0; i < mergeLines.length; i++) {
      const raw = mergeLines[i];
      if (i === 0 && raw.startsWith('#version')) continue;
      // A repeated pair takes its later rank, as in transformers' `dict(zip(merges, range(len(merges))))`.
      // Fast path: a well-formed line already is its own key.
      if (SIMPLE_MERGE_LINE.test(raw)) {
        ranks.set(raw, rank++);
        continue;
      }
      const line = raw.trim();
      if (line === '') continue;
      const parts = line.split(/\s+/);
      if (parts.length !== 2) {
        throw new LoraserveError('MODEL_INVALID', `${source.mergeLine(i)}: expected two symbols "left right", got ${JSON.stringify(line)}`);
      }
      ranks.set(mergeKey(parts[0], parts[1]), rank++);
    }

    const specials: ClipTokenizerSpecials = { ...CLIP_DEFAULT_SPECIALS, ...definedOnly(opts.specials) };
    const idOfSpecial = (role: keyof ClipTokenizerSpecials): number => {
      const id = vocab.get(specials[role]);
      if (id === undefined) {
        throw new LoraserveError('MODEL_INVALID', `${role} token ${JSON.stringify(specials[role])} is not in ${source.vocab}`, { role, token: specials[role] });
      }
      return id;
    };
    const maxLength = opts.maxLength ?? CLIP_DEFAULT_MAX_LENGTH;
    if (!Number.isSafeInteger(maxLength) || maxLength < 2) {
      throw new LoraserveError('MODEL_INVALID', `maxLength must be an integer ≥ 2 (room for BOS and EOS), got ${maxLength}`);
    }
    return new ClipTokenizer({
      vocab,
      tokens,
      ranks,
      specials,
      ids: { bos: idOfSpecial('bos'), eos: idOfSpecial('eos'), unk: idOfSpecial('unk'), pad: idOfSpecial('pad') },
      maxLength,
      lowerCase: opts.lowerCase ?? true,
    });
  }

  private constructor(parts: {
    vocab: Map<string, number>;
    tokens: (string | undefined)[];
    ranks: Map<string, number>;
    specials: ClipTokenizerSpecials;
    ids: Record<keyof ClipTokenizerSpecials, number>;
    maxLength: number;
    lowerCase: boolean;
  }) {
    this.vocab = parts.vocab;
    this.tokens = parts.tokens;
    this.ranks = parts.ranks;
    this.specials = Object.freeze({ ...parts.specials });
    this.bosId = parts.ids.bos;
    this.eosId = parts.ids.eos;
    this.unkId = parts.ids.unk;
    this.padId = parts.ids.pad;
    this.maxLength = parts.maxLength;
    this.lowerCase = parts.lowerCase;
    this.vocabSize = parts.vocab.size;

    const specialIds = new Map<string, number>();
    for (const role of ['bos', 'eos', 'unk', 'pad'] as const) specialIds.set(parts.specials[role], parts.ids[role]);
    this.specialIds = specialIds;
    // Longest first, so that at one position the longest special wins (transformers' Trie.split does the same).
    const contents = [...specialIds.keys()].filter((s) => s !== '').sort((a, b) => b.length - a.length);
    this.specialPattern = contents.length === 0 ? null : new RegExp(contents.map(escapeRegExp).join('|'), 'g');
    this.literalSpecialWords = new Map(LITERAL_SPECIAL_WORDS.map((w) => [w, [this.vocab.get(w) ?? this.unkId]]));
  }

  /** Raw token ids of `text`: no BOS/EOS, no truncation, no padding. */
  encode(text: string): number[] {
    const ids: number[] = [];
    if (this.specialPattern === null) {
      this.encodePlainText(text, ids);
      return ids;
    }
    let pos = 0;
    for (const match of text.matchAll(this.specialPattern)) {
      this.encodePlainText(text.slice(pos, match.index), ids);
      ids.push(this.specialIds.get(match[0])!);
      pos = match.index! + match[0].length;
    }
    this.encodePlainText(text.slice(pos), ids);
    return ids;
  }

  /**
   * The text encoder's input_ids: [BOS, first maxLength-2 ids, EOS, pad…], length maxLength. Equals transformers'
   * `tokenizer(text, padding="max_length", max_length=maxLength, truncation=True)`; EOS stays last even when the
   * prompt is cut. Pad is the pad token's id: EOS (49407) for SD1 folders, "!" (0) for SD2 folders.
   */
  encodeForModel(text: string): Int32Array {
    const ids = this.encode(text);
    const out = new Int32Array(this.maxLength).fill(this.padId);
    const kept = Math.min(ids.length, this.maxLength - 2);
    out[0] = this.bosId;
    for (let i = 0; i < kept; i++) out[1 + i] = ids[i];
    out[1 + kept] = this.eosId;
    return out;
  }

  /**
   * Best-effort text of `ids`, for debugging and the `tokenize` command: tokens are joined, mapped back to bytes,
   * decoded as UTF-8 and `</w>` becomes a space (transformers' `convert_tokens_to_string`, without its
   * `clean_up_tokenization_spaces` heuristics). Specials appear as written ("<|startoftext|>").
   */
  decode(ids: readonly number[]): string {
    let joined = '';
    for (const id of ids) {
      const token = this.tokenToString(id);
      if (token === undefined) {
        throw new LoraserveError('INVALID_ARGUMENT', `token id ${id} is not in the vocabulary (size ${this.vocabSize})`, { id });
      }
      joined += token;
    }
    return byteDecode(joined).replaceAll('</w>', ' ').trim();
  }

  /** The vocabulary entry of `id`, as stored ("cat</w>", "ðŁĺ"), or undefined. */
  tokenToString(id: number): string | undefined {
    return Number.isInteger(id) && id >= 0 ? this.tokens[id] : undefined;
  }

  /** The id of a vocabulary entry as stored ("cat</w>"), or undefined. */
  idOf(token: string): number | undefined {
    return this.vocab.get(token);
  }

  /** Steps 2–4 of the file comment for text that holds no special token. */
  private encodePlainText(text: string, out: number[]): void {
    if (text === '') return;
    let clean = cleanWhitespace(fixText(text));
    if (this.lowerCase) clean = clean.toLowerCase();
    for (const match of clean.matchAll(CLIP_WORD)) {
      for (const id of this.encodeWord(match[0])) out.push(id);
    }
  }

  private encodeWord(word: string): readonly number[] {
    const special = this.literalSpecialWords.get(word);
    if (special) return special;
    const cached = this.wordCache.get(word);
    if (cached) return cached;
    const ids = bpeMerge(byteEncode(word), this.ranks).map((symbol) => this.vocab.get(symbol) ?? this.unkId);
    if (this.wordCache.size >= WORD_CACHE_LIMIT) this.wordCache.delete(this.wordCache.keys().next().value!);
    this.wordCache.set(word, ids);
    return ids;
  }
}

function definedOnly<T extends object>(partial: Partial<T> | undefined): Partial<T> {
  const out: Partial<T> = {};
  if (partial) for (const [k, v] of Object.entries(partial)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
}
