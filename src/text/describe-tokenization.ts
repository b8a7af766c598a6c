/**
 * What `loraserve tokenize` shows for a prompt: the chunks the text encoder will see, with each token's id,
 * vocabulary string and weight, as A1111 would build them (the same steps as src/engine/conditioning.ts up to
 * the encoder: tags out, trailing weight, prompt-editing schedule, 75-token chunks).
 */
import type { EmbeddingInfo, EmbeddingLookup, NameTokenizer } from './embedding-lookup.js';
import { parseExtraNetworks, type ExtraNetworkTag, type LoraTag } from './extra-networks.js';
import { EmbeddingRows, tokenizeLine, type ChunkTokenizer } from './prompt-chunks.js';
import { splitComposablePrompt, type WeightedSubprompt } from './prompt-composable.js';
import { promptSchedule } from './prompt-schedule.js';

export interface DescribedToken {
  id: number;
  /** The vocabulary entry ("cat</w>", "<|startoftext|>"), or `<name#i>` for vector i of an embedding. */
  text: string;
  weight: number;
  embedding?: { name: string; index: number };
}

export interface DescribedChunk {
  tokens: DescribedToken[];
}

export interface DescribedText {
  /** The schedule entries (end steps) that use this text. */
  untilSteps: number[];
  text: string;
  /** A1111's token count (the UI's "n/75"). */
  tokenCount: number;
  chunks: DescribedChunk[];
}

export interface TokenizationDescription {
  /** The prompt after `<lora:…>` tags were taken out (positive prompts only). */
  prompt: string;
  loras: LoraTag[];
  ignoredTags: ExtraNetworkTag[];
  /** AND parts with their weights (one part without AND; its weight is the trailing `:w`). */
  subprompts: WeightedSubprompt[];
  texts: DescribedText[];
}

export interface DescribeOptions<T extends EmbeddingInfo> {
  embeddings?: EmbeddingLookup<T>;
  /** Token-table rows of the model (first placeholder id); default: the tokenizer's vocabulary size. */
  placeholderBase?: number;
  /** Steps for the prompt-editing schedule; default 20. */
  steps?: number;
  /** A negative prompt: tags stay text and no trailing weight is read, as in A1111. */
  negative?: boolean;
  /** false = emphasis mode "None". */
  parseAttention?: boolean;
  commaPaddingBacktrack?: number;
}

export interface DescribableTokenizer extends ChunkTokenizer, NameTokenizer {
  readonly vocabSize: number;
  tokenToString(id: number): string | undefined;
}

export function describeTokenization<T extends EmbeddingInfo>(tokenizer: DescribableTokenizer, prompt: string, opts: DescribeOptions<T> = {}): TokenizationDescription {
  const tags = opts.negative ? { prompt, loras: [], ignored: [] } : parseExtraNetworks(prompt);
  const subprompts = opts.negative ? [{ text: prompt, weight: 1 }] : splitComposablePrompt(tags.prompt);
  const rows = new EmbeddingRows<T>(opts.placeholderBase ?? tokenizer.vocabSize);
  const texts: DescribedText[] = [];
  const byText = new Map<string, DescribedText>();
  for (const sub of subprompts) {
    for (const entry of promptSchedule(sub.text, opts.steps ?? 20)) {
      const seen = byText.get(entry.prompt);
      if (seen) {
        seen.untilSteps.push(entry.untilStep);
        continue;
      }
      const line = tokenizeLine(tokenizer, entry.prompt, {
        ...(opts.embeddings ? { embeddings: opts.embeddings, rows } : {}),
        parseAttention: opts.parseAttention,
        commaPaddingBacktrack: opts.commaPaddingBacktrack,
      });
      const described: DescribedText = {
        untilSteps: [entry.untilStep],
        text: entry.prompt,
        tokenCount: line.tokenCount,
        chunks: line.chunks.map((c) => ({
          tokens: c.tokens.map((id, i) => {
            const slot = rows.slotOf(id);
            if (slot) return { id, text: `<${slot.embedding.name}#${slot.index}>`, weight: c.multipliers[i], embedding: { name: slot.embedding.name, index: slot.index } };
            return { id, text: tokenizer.tokenToString(id) ?? `#${id}`, weight: c.multipliers[i] };
          }),
        })),
      };
      byText.set(entry.prompt, described);
      texts.push(described);
    }
  }
  return { prompt: tags.prompt, loras: tags.loras, ignoredTags: tags.ignored, subprompts, texts };
}
