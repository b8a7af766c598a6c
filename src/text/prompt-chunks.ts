/**
 * A prompt line → 77-token chunks for the text encoder: ids, per-token weights, textual-inversion slots.
 *
 * Port of AUTOMATIC1111/stable-diffusion-webui v1.9.4 `modules/sd_hijack_clip.py`
 * `FrozenCLIPEmbedderWithCustomWordsBase.tokenize_line` (+ `empty_chunk`, and the pad-id rewrite of
 * `process_tokens`):
 *
 *  1. the line is split into weighted runs (prompt-attention.ts; emphasis mode "None" skips that) and each run is
 *     tokenized on its own;
 *  2. tokens fill chunks of 75; a full chunk is closed with BOS in front and EOS behind (77 ids);
 *  3. comma backtrack: when a chunk is full and the token that does not fit is not a comma, and the chunk's last
 *     comma is at most `commaPaddingBacktrack` (A1111's "Prompt word wrap length limit", default 20) tokens from
 *     the end, the tokens after that comma move to the next chunk and the closed chunk is padded with EOS;
 *  4. a BREAK marker (weight -1) closes the chunk, padded with EOS;
 *  5. an embedding name (embedding-lookup.ts) becomes as many slots as it has vectors, with the run's weight;
 *     when they do not fit in the current chunk's remaining room, the chunk is closed first;
 *  6. the last chunk is closed the same way; an empty line gives one chunk [BOS, EOS × 76];
 *  7. when the tokenizer's pad id differs from EOS (SD2's "!"), every id after the chunk's first EOS becomes pad.
 *
 * Slots: A1111 writes id 0 in a slot and records a "fix" (offset, embedding); when the chunk is encoded its
 * EmbeddingsWithFixes layer (modules/sd_hijack.py) puts the embedding's vectors at the fix's offset. We do the
 * same bookkeeping, and when a chunk closes we write placeholder ids `placeholderBase + row` at each fix's
 * offset, where `row` indexes the extra rows the rewritten text encoder appends to its token table
 * (src/onnx/text-encoder-rewrite.ts): the encoder then reads the vectors itself.
 *
 * Bug-compatible corner: the comma backtrack moves tokens but not fixes. When an embedding's slots sit after the
 * chunk's last comma and get moved, A1111 still writes its vectors at the old offset of the closed chunk (over
 * EOS padding, weight 1) and the moved slots in the next chunk stay id 0 (the token "!"). We reproduce that,
 * because the goal is A1111's output; it needs an embedding ending exactly at token 75 followed by a word.
 */
import { LoraserveError } from '../core/errors.js';
import type { EmbeddingInfo, EmbeddingLookup } from './embedding-lookup.js';
import { parsePromptAttention, type WeightedText } from './prompt-attention.js';

/** A1111's chunk_length: tokens of prompt per chunk, BOS and EOS not counted. */
export const CHUNK_LENGTH = 75;
/** A1111's default for "Prompt word wrap length limit" (opts.comma_padding_backtrack). */
export const DEFAULT_COMMA_PADDING_BACKTRACK = 20;

export interface ChunkTokenizer {
  encode(text: string): number[];
  idOf(token: string): number | undefined;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
}

/** Where one embedding's vectors sit in a chunk. */
export interface ChunkFix<T extends EmbeddingInfo = EmbeddingInfo> {
  /** Index in the 77-id chunk of the first vector (A1111's PromptChunkFix.offset + 1, BOS counted). */
  offset: number;
  embedding: T;
}

export interface PromptChunk<T extends EmbeddingInfo = EmbeddingInfo> {
  /** CHUNK_LENGTH + 2 ids: BOS, tokens (placeholders in embedding slots), EOS, padding. */
  tokens: number[];
  /** One weight per id: 1 for BOS/EOS/padding, the run's weight for its tokens and slots. */
  multipliers: number[];
  fixes: ChunkFix<T>[];
}

/**
 * Row allocation for the extra embedding table, shared by every line encoded in one text-encoder run so that an
 * embedding used twice has one set of rows. Rows are given out in first-use order.
 */
export class EmbeddingRows<T extends EmbeddingInfo = EmbeddingInfo> {
  private readonly starts = new Map<T, number>();
  private readonly order: T[] = [];
  private rows = 0;

  /** `placeholderBase`: the token table's row count; slot ids are `placeholderBase + row`. */
  constructor(readonly placeholderBase: number) {}

  /** First row of `embedding`, allocated on first use. */
  rowOf(embedding: T): number {
    let start = this.starts.get(embedding);
    if (start === undefined) {
      start = this.rows;
      this.starts.set(embedding, start);
      this.order.push(embedding);
      this.rows += embedding.vectorCount;
    }
    return start;
  }

  /** Embeddings in row order with their first row. */
  entries(): Array<{ embedding: T; row: number }> {
    return this.order.map((embedding) => ({ embedding, row: this.starts.get(embedding)! }));
  }

  get rowCount(): number {
    return this.rows;
  }

  /** The embedding and vector index a placeholder id stands for, or undefined for an ordinary token id. */
  slotOf(id: number): { embedding: T; index: number } | undefined {
    const row = id - this.placeholderBase;
    if (row < 0 || row >= this.rows) return undefined;
    for (const embedding of this.order) {
      const start = this.starts.get(embedding)!;
      if (row < start + embedding.vectorCount) return { embedding, index: row - start };
    }
    return undefined;
  }
}

export interface TokenizeLineOptions<T extends EmbeddingInfo> {
  /** Embedding names to look for; without it every name is plain text. */
  embeddings?: EmbeddingLookup<T>;
  /** Needed when `embeddings` is given. */
  rows?: EmbeddingRows<T>;
  /** false = A1111 emphasis mode "None": brackets are plain text, no weights, no BREAK. Default true. */
  parseAttention?: boolean;
  /** A1111's opts.comma_padding_backtrack; 0 turns the backtrack off. Default 20. */
  commaPaddingBacktrack?: number;
}

export interface TokenizedLine<T extends EmbeddingInfo> {
  chunks: PromptChunk<T>[];
  /** A1111's token_count: 75 per closed chunk plus the tokens of the last one (the UI's "n/75" counter). */
  tokenCount: number;
}

interface OpenChunk<T extends EmbeddingInfo> {
  tokens: number[];
  multipliers: number[];
  fixes: Array<{ offset: number; embedding: T }>;
}

const emptyOpen = <T extends EmbeddingInfo>(): OpenChunk<T> => ({ tokens: [], multipliers: [], fixes: [] });

/** tokenize_line: one prompt (already free of `<lora:…>` tags and prompt-editing syntax) → chunks. */
export function tokenizeLine<T extends EmbeddingInfo>(tokenizer: ChunkTokenizer, line: string, opts: TokenizeLineOptions<T> = {}): TokenizedLine<T> {
  const parsed: WeightedText[] = opts.parseAttention === false ? [{ text: line, weight: 1.0 }] : parsePromptAttention(line);
  const backtrack = opts.commaPaddingBacktrack ?? DEFAULT_COMMA_PADDING_BACKTRACK;
  const commaToken = tokenizer.idOf(',</w>');
  if (opts.embeddings && !opts.rows) throw new LoraserveError('INTERNAL', 'tokenizeLine: embeddings given without rows');

  const chunks: PromptChunk<T>[] = [];
  let chunk = emptyOpen<T>();
  let tokenCount = 0;
  let lastComma = -1;

  const nextChunk = (isLast = false): void => {
    tokenCount += isLast ? chunk.tokens.length : CHUNK_LENGTH;
    const toAdd = CHUNK_LENGTH - chunk.tokens.length;
    if (toAdd > 0) {
      for (let i = 0; i < toAdd; i++) {
        chunk.tokens.push(tokenizer.eosId);
        chunk.multipliers.push(1.0);
      }
    }
    const tokens = [tokenizer.bosId, ...chunk.tokens, tokenizer.eosId];
    if (tokenizer.padId !== tokenizer.eosId) {
      // process_tokens (SD2): everything after the first EOS becomes the pad id.
      const firstEos = tokens.indexOf(tokenizer.eosId);
      for (let i = firstEos + 1; i < tokens.length; i++) tokens[i] = tokenizer.padId;
    }
    // EmbeddingsWithFixes: each fix's vectors go at its offset (+1 for BOS), as many as fit in the chunk.
    const fixes = chunk.fixes.map((f) => ({ offset: f.offset + 1, embedding: f.embedding }));
    for (const f of fixes) {
      const base = opts.rows!.placeholderBase + opts.rows!.rowOf(f.embedding);
      const n = Math.min(tokens.length - f.offset, f.embedding.vectorCount);
      for (let i = 0; i < n; i++) tokens[f.offset + i] = base + i;
    }
    chunks.push({ tokens, multipliers: [1.0, ...chunk.multipliers, 1.0], fixes });
    lastComma = -1;
    chunk = emptyOpen<T>();
  };

  for (const { text, weight } of parsed) {
    if (text === 'BREAK' && weight === -1) {
      nextChunk();
      continue;
    }
    const tokens = tokenizer.encode(text);
    let position = 0;
    while (position < tokens.length) {
      const token = tokens[position];
      if (token === commaToken) {
        lastComma = chunk.tokens.length;
      } else if (backtrack !== 0 && chunk.tokens.length === CHUNK_LENGTH && lastComma !== -1 && chunk.tokens.length - lastComma <= backtrack) {
        // Move what follows the last comma into the next chunk. The fixes stay with the closed chunk, as in
        // A1111 (see the file comment: a moved embedding keeps its vectors in the closed chunk).
        const breakLocation = lastComma + 1;
        const relocTokens = chunk.tokens.slice(breakLocation);
        const relocMults = chunk.multipliers.slice(breakLocation);
        chunk.tokens = chunk.tokens.slice(0, breakLocation);
        chunk.multipliers = chunk.multipliers.slice(0, breakLocation);
        nextChunk();
        chunk.tokens = relocTokens;
        chunk.multipliers = relocMults;
      }

      if (chunk.tokens.length === CHUNK_LENGTH) nextChunk();

      const match = opts.embeddings?.findAt(tokens, position);
      if (!match) {
        chunk.tokens.push(token);
        chunk.multipliers.push(weight);
        position++;
        continue;
      }
      const embedding = match.embedding;
      if (embedding.problem !== undefined) {
        throw new LoraserveError('EMBEDDING_INVALID', `textual inversion "${embedding.name}" in the prompt cannot be used: ${embedding.problem}`, {
          embedding: embedding.name,
        });
      }
      const embLen = embedding.vectorCount;
      if (embLen > CHUNK_LENGTH) {
        // A1111 would build a chunk longer than 77 and fail in the encoder.
        throw new LoraserveError('EMBEDDING_INVALID', `textual inversion "${embedding.name}" has ${embLen} vectors; at most ${CHUNK_LENGTH} fit in a prompt chunk`, {
          embedding: embedding.name,
          vectors: embLen,
        });
      }
      if (chunk.tokens.length + embLen > CHUNK_LENGTH) nextChunk();
      chunk.fixes.push({ offset: chunk.tokens.length, embedding });
      for (let i = 0; i < embLen; i++) {
        chunk.tokens.push(0);
        chunk.multipliers.push(weight);
      }
      position += match.length;
    }
  }

  if (chunk.tokens.length > 0 || chunks.length === 0) nextChunk(true);
  return { chunks, tokenCount };
}

/** empty_chunk: [BOS, EOS × 76] (pad after the first EOS on SD2), weights 1: what a shorter prompt is padded with. */
export function emptyChunk<T extends EmbeddingInfo = EmbeddingInfo>(tokenizer: ChunkTokenizer): PromptChunk<T> {
  const tokens = [tokenizer.bosId, ...new Array<number>(CHUNK_LENGTH + 1).fill(tokenizer.eosId)];
  if (tokenizer.padId !== tokenizer.eosId) for (let i = 2; i < tokens.length; i++) tokens[i] = tokenizer.padId;
  return { tokens, multipliers: new Array<number>(CHUNK_LENGTH + 2).fill(1.0), fixes: [] };
}
