/**
 * Prompt + negative prompt → the text conditioning a render's UNet calls read, step by step, the way
 * AUTOMATIC1111 v1.9.4 builds it (modules/processing.py setup_conds → prompt_parser.get_learned_conditioning /
 * get_multicond_learned_conditioning → sd_hijack_clip.FrozenCLIPEmbedderWithCustomWordsBase.forward):
 *
 *  1. `<lora:…>` tags come out of the positive prompt (text/extra-networks.ts); the negative prompt keeps its
 *     text as written (A1111 parses tags only in the positive prompt);
 *  2. the positive prompt's trailing `:weight` becomes the guidance weight `cfgWeight` (text/prompt-composable.ts);
 *     AND (composable diffusion) is refused;
 *  3. each prompt's editing schedule (text/prompt-schedule.ts) gives its texts, one per schedule entry;
 *  4. each text → 77-token chunks (text/prompt-chunks.ts); within one prompt every entry is brought to the
 *     entry count of chunks with empty chunks, as forward() batches chunk i of every entry together;
 *  5. one text-encoder call encodes every distinct chunk (with the textual-inversion rows);
 *  6. emphasis (modules/sd_emphasis.py) per (prompt, chunk index) batch — "Original": z·w, then × old mean /
 *     new mean, the means taken over the whole batch of that chunk index, as A1111 does; "No norm": z·w;
 *     "Ignore"/"None": z;
 *  7. chunks are concatenated along the sequence: [chunks × 77, D] per schedule entry;
 *  8. "Pad conds" (opts.pad_cond_uncond, sd_samplers_cfg_denoiser.pad_cond_uncond): the shorter of cond and uncond
 *     gets copies of the empty prompt's encoding appended. Without it, different lengths mean separate UNet
 *     batches for cond and uncond (`sameLength` false), as A1111 does by default.
 *
 * `condAt(i)` / `uncondAt(i)` take the denoiser call index i (0-based; A1111's CFGDenoiser.step) and pick the first
 * schedule entry whose end step is ≥ i, as reconstruct_cond_batch does. Schedules are made for `steps` = A1111's
 * total_steps: the sampler's denoiser calls (twice the steps for second-order samplers).
 *
 * Numerics: float32 like torch; the means are summed in float64 (torch sums float32 with its own blocking), so
 * emphasized conditionings can differ from A1111's in the last bit.
 */
import { LoraserveError } from '../core/errors.js';
import type { EmbeddingLibrary, TextualInversion } from '../text/embeddings/library.js';
import type { EmbeddingLookup, NameTokenizer } from '../text/embedding-lookup.js';
import { parseExtraNetworks, type ExtraNetworkTag, type LoraTag } from '../text/extra-networks.js';
import { CHUNK_LENGTH, emptyChunk, EmbeddingRows, tokenizeLine, type ChunkTokenizer, type PromptChunk } from '../text/prompt-chunks.js';
import { splitComposablePrompt } from '../text/prompt-composable.js';
import { promptSchedule, type ScheduledPrompt } from '../text/prompt-schedule.js';

/** A1111's emphasis modes (modules/sd_emphasis.py options). */
export type EmphasisMode = 'Original' | 'No norm' | 'Ignore' | 'None';

/**
 * Runs the (rewritten) text encoder: `ids` [n, 77] with placeholder ids ≥ placeholderBase for textual-inversion
 * slots, `extra` [m, D] the rows those ids read, `clipSkip` 1 = last layer. Returns [n, 77, D] float32.
 */
export type TextEncodeFn = (ids: Int32Array, extra: Float32Array, clipSkip: number) => Promise<Float32Array>;

export interface ConditioningModel {
  tokenizer: ChunkTokenizer & NameTokenizer;
  encode: TextEncodeFn;
  /** D, the text encoder's hidden size. */
  hiddenSize: number;
  /** The encoder's token-table rows (TextEncoderRewrite.tableRows): textual-inversion ids start here. */
  placeholderBase: number;
  /** Encoder layers: the largest clip skip (TextEncoderRewrite.layers). */
  layers: number;
  embeddings?: EmbeddingLibrary;
  /**
   * A1111's `cond_stage_model_empty_prompt` [77, D] for "Pad conds": A1111 encodes "" once when the model loads,
   * without LoRAs and at the clip skip of that moment. Without it the empty prompt is encoded with this render's
   * encoder (its LoRAs and clip skip).
   */
  emptyPrompt?: Float32Array;
}

export interface ConditioningRequest {
  prompt: string;
  negativePrompt: string;
  /** A1111's total_steps: denoiser calls of the sampler. */
  steps: number;
  clipSkip?: number;
  emphasis?: EmphasisMode;
  padConds?: boolean;
  /** A1111's "Prompt word wrap length limit" (comma_padding_backtrack); default 20. */
  commaPaddingBacktrack?: number;
}

export interface UsedEmbedding {
  name: string;
  file: string;
  hash: string;
}

export interface Conditioning {
  /** [condTokens, D] for denoiser call `call` (0-based). */
  condAt(call: number): Float32Array;
  /** [uncondTokens, D] for denoiser call `call`. */
  uncondAt(call: number): Float32Array;
  /** Sequence lengths (77 × chunks), after padding. */
  condTokens: number;
  uncondTokens: number;
  /** Equal lengths: cond and uncond may share one UNet batch. */
  sameLength: boolean;
  /** The prompt's trailing `:weight` (1 without one): CFG scale is multiplied by it (combine_denoised). */
  cfgWeight: number;
  /** `<lora:…>` tags of the prompt, in order (merge with the request's list: text/extra-networks.ts mergeLoraLists). */
  loraTags: LoraTag[];
  /** Tags of kinds A1111 skips as unknown. */
  ignoredTags: ExtraNetworkTag[];
  /** The schedules, for logs and debugging. */
  schedules: { cond: ScheduledPrompt[]; uncond: ScheduledPrompt[] };
  /** Infotext fields: "TI hashes" (in A1111's order), "Emphasis" when not Original, "Pad conds" when padded. */
  infotext: { tiHashes: Array<{ name: string; hash: string }>; emphasis?: string; padConds?: boolean };
  embeddingsUsed: UsedEmbedding[];
  /** Rows the text encoder ran (distinct chunks). */
  encodedChunks: number;
}

type Chunk = PromptChunk<TextualInversion>;

/** One prompt's encoding group: its schedule entries' chunks, brought to one chunk count. */
interface Group {
  schedule: ScheduledPrompt[];
  /** [entry][chunk index] */
  chunks: Chunk[][];
  chunkCount: number;
}

export async function buildConditioning(model: ConditioningModel, req: ConditioningRequest): Promise<Conditioning> {
  const clipSkip = req.clipSkip ?? 1;
  if (!Number.isInteger(clipSkip) || clipSkip < 1 || clipSkip > model.layers) {
    throw new LoraserveError('INVALID_ARGUMENT', `clip skip must be an integer from 1 to ${model.layers} (this text encoder's layers), got ${req.clipSkip}`);
  }
  if (!Number.isInteger(req.steps) || req.steps < 1) throw new LoraserveError('INVALID_ARGUMENT', `steps must be a positive integer, got ${req.steps}`);
  const emphasis = req.emphasis ?? 'Original';
  const D = model.hiddenSize;

  // 1–2. tags, AND / trailing weight
  const tags = parseExtraNetworks(req.prompt);
  const parts = splitComposablePrompt(tags.prompt);
  if (parts.length > 1) {
    throw new LoraserveError('INVALID_PROMPT', `the prompt uses AND (composable diffusion, ${parts.length} subprompts), which is not supported`, { subprompts: parts.length });
  }
  const cfgWeight = parts[0].weight;
  if (!Number.isFinite(cfgWeight)) throw new LoraserveError('INVALID_PROMPT', 'the weight at the end of the prompt is not a finite number');

  // 3–4. schedules and chunks (uncond first: A1111 builds uc before c, which orders "TI hashes")
  const lookup: EmbeddingLookup<TextualInversion> | undefined = model.embeddings?.lookupFor(model.tokenizer, D);
  const rows = new EmbeddingRows<TextualInversion>(model.placeholderBase);
  const chunkOpts = {
    ...(lookup && lookup.size > 0 ? { embeddings: lookup, rows } : {}),
    parseAttention: emphasis !== 'None',
    commaPaddingBacktrack: req.commaPaddingBacktrack,
  };
  const makeGroup = (text: string): Group => {
    const schedule = promptSchedule(text, req.steps);
    const cache = new Map<string, Chunk[]>();
    const perEntry = schedule.map((e) => {
      let c = cache.get(e.prompt);
      if (!c) cache.set(e.prompt, (c = tokenizeLine(model.tokenizer, e.prompt, chunkOpts).chunks));
      return c;
    });
    const chunkCount = Math.max(...perEntry.map((c) => c.length));
    const empty = emptyChunk<TextualInversion>(model.tokenizer);
    return { schedule, chunkCount, chunks: perEntry.map((c) => Array.from({ length: chunkCount }, (_, i) => c[i] ?? empty)) };
  };
  const uncond = makeGroup(req.negativePrompt);
  const cond = makeGroup(parts[0].text);

  // 8 (lengths known now): the empty prompt's chunk joins the batch when padding needs it.
  const pad = req.padConds === true && cond.chunkCount !== uncond.chunkCount;
  const emptyLine = pad && !model.emptyPrompt ? tokenizeLine<TextualInversion>(model.tokenizer, '', { parseAttention: emphasis !== 'None' }).chunks[0] : undefined;

  // 5. one encoder call over the distinct chunks
  const distinct = new Map<string, number>();
  const order: Chunk[] = [];
  const rowOf = (c: Chunk): number => {
    const key = c.tokens.join(',');
    let r = distinct.get(key);
    if (r === undefined) {
      r = order.length;
      distinct.set(key, r);
      order.push(c);
    }
    return r;
  };
  const groupRows = [uncond, cond].map((g) => g.chunks.map((entry) => entry.map(rowOf)));
  const emptyRow = emptyLine ? rowOf(emptyLine) : -1;
  const ids = new Int32Array(order.length * (CHUNK_LENGTH + 2));
  order.forEach((c, r) => ids.set(c.tokens, r * (CHUNK_LENGTH + 2)));
  const extra = new Float32Array(rows.rowCount * D);
  for (const { embedding, row } of rows.entries()) extra.set(embedding.vectors.subarray(0, embedding.vectorCount * D), row * D);
  const z = await model.encode(ids, extra, clipSkip);
  const per = (CHUNK_LENGTH + 2) * D;
  if (z.length !== order.length * per) {
    throw new LoraserveError('INFERENCE_FAILED', `text encoder returned ${z.length} values for ${order.length} chunks of 77 × ${D}`);
  }

  // 6–7. emphasis per chunk-index batch, then concatenation
  const assemble = (g: Group, rowIds: number[][]): Float32Array[] => {
    const out = g.schedule.map(() => new Float32Array(g.chunkCount * per));
    for (let i = 0; i < g.chunkCount; i++) {
      const batch = g.chunks.map((entry, e) => ({ z: z.subarray(rowIds[e][i] * per, (rowIds[e][i] + 1) * per), multipliers: entry[i].multipliers }));
      applyEmphasis(emphasis, batch, D).forEach((zi, e) => out[e].set(zi, i * per));
    }
    return out;
  };
  let uncondCtx = assemble(uncond, groupRows[0]);
  let condCtx = assemble(cond, groupRows[1]);

  if (pad) {
    const empty = model.emptyPrompt ?? z.slice(emptyRow * per, (emptyRow + 1) * per);
    if (empty.length !== per) throw new LoraserveError('INVALID_ARGUMENT', `emptyPrompt has ${empty.length} values, expected 77 × ${D}`);
    const target = Math.max(cond.chunkCount, uncond.chunkCount) * per;
    const padTo = (ctx: Float32Array[]): Float32Array[] =>
      ctx.map((c) => {
        if (c.length === target) return c;
        const out = new Float32Array(target);
        out.set(c);
        for (let at = c.length; at < target; at += per) out.set(empty, at);
        return out;
      });
    condCtx = padTo(condCtx);
    uncondCtx = padTo(uncondCtx);
  }

  // infotext: TI hashes in A1111's order (the cond forward's names, then the uncond forward's), Emphasis
  const used = (g: Group): TextualInversion[] => {
    const seen = new Map<string, TextualInversion>();
    for (let i = 0; i < g.chunkCount; i++) for (const entry of g.chunks) for (const f of entry[i].fixes) if (!seen.has(f.embedding.name)) seen.set(f.embedding.name, f.embedding);
    return [...seen.values()];
  };
  const tiOrder = [...used(cond), ...used(uncond)];
  const texts = [...cond.schedule, ...uncond.schedule].map((e) => e.prompt);
  const emphasisNoted = emphasis !== 'Original' && texts.some((t) => t.includes('(') || t.includes('['));
  const embeddingsUsed = new Map<string, UsedEmbedding>();
  for (const e of tiOrder) embeddingsUsed.set(e.name, { name: e.name, file: e.file, hash: e.shortHash });

  const condTokens = condCtx[0].length / D;
  const uncondTokens = uncondCtx[0].length / D;
  return {
    condAt: (call) => condCtx[scheduleIndex(cond.schedule, call)],
    uncondAt: (call) => uncondCtx[scheduleIndex(uncond.schedule, call)],
    condTokens,
    uncondTokens,
    sameLength: condTokens === uncondTokens,
    cfgWeight,
    loraTags: tags.loras,
    ignoredTags: tags.ignored,
    schedules: { cond: cond.schedule, uncond: uncond.schedule },
    infotext: {
      tiHashes: tiOrder.filter((e) => e.shortHash !== '').map((e) => ({ name: e.name, hash: e.shortHash })),
      ...(emphasisNoted ? { emphasis } : {}),
      ...(pad ? { padConds: true } : {}),
    },
    embeddingsUsed: [...embeddingsUsed.values()],
    encodedChunks: order.length,
  };
}

/** reconstruct_cond_batch: the first entry with call ≤ end step; entry 0 when none (A1111's default index). */
function scheduleIndex(schedule: ScheduledPrompt[], call: number): number {
  for (let i = 0; i < schedule.length; i++) if (call <= schedule[i].untilStep) return i;
  return 0;
}

/**
 * sd_emphasis.py after_transformers for one batch (chunk i of every schedule entry of one prompt). Returns new
 * arrays; float32 products as torch computes them, means over the whole batch.
 */
export function applyEmphasis(mode: EmphasisMode, batch: Array<{ z: Float32Array; multipliers: readonly number[] }>, D: number): Float32Array[] {
  if (mode === 'Ignore' || mode === 'None') return batch.map((b) => Float32Array.from(b.z));
  const weighted = batch.map(({ z, multipliers }) => {
    const out = new Float32Array(z.length);
    for (let t = 0; t < multipliers.length; t++) {
      const w = Math.fround(multipliers[t]);
      for (let d = 0; d < D; d++) out[t * D + d] = z[t * D + d] * w;
    }
    return out;
  });
  if (mode === 'No norm') return weighted;
  const originalMean = meanOf(batch.map((b) => b.z));
  const newMean = meanOf(weighted);
  const ratio = Math.fround(originalMean / newMean);
  for (const w of weighted) for (let i = 0; i < w.length; i++) w[i] = w[i] * ratio;
  return weighted;
}

function meanOf(arrays: Float32Array[]): number {
  let sum = 0;
  let n = 0;
  for (const a of arrays) {
    for (let i = 0; i < a.length; i++) sum += a[i];
    n += a.length;
  }
  return Math.fround(sum / n);
}
