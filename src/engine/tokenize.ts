/** Tokenizer access for tools that need no sessions (`loraserve tokenize`). */
import { join, resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { LoraserveError } from '../core/errors.js';
import { ClipTokenizer } from '../text/clip-tokenizer.js';
import { describeTokenization, type TokenizationDescription } from '../text/describe-tokenization.js';
import { EmbeddingLibrary } from '../text/embeddings/library.js';

/** Loads the tokenizer of a model folder (or a bare tokenizer folder). */
export async function loadModelTokenizer(dir: string): Promise<ClipTokenizer> {
  const root = resolve(dir);
  if (!existsSync(root)) throw new LoraserveError('MODEL_INVALID', `model folder ${root} does not exist`);
  const tokDir = existsSync(join(root, 'tokenizer')) ? join(root, 'tokenizer') : root;
  return ClipTokenizer.fromFolder(tokDir);
}

/**
 * What the text encoder will see for a prompt, as A1111 builds it: `<lora:>` tags taken out, prompt-editing
 * schedule, 75-token chunks with BOS/EOS/padding, per-token weights, embedding vectors by name.
 */
export async function describePrompt(
  dir: string,
  prompt: string,
  opts: { embeddingsDir?: string; steps?: number; negative?: boolean } = {},
): Promise<TokenizationDescription> {
  const tokenizer = await loadModelTokenizer(dir);
  const embeddings = opts.embeddingsDir && existsSync(opts.embeddingsDir) ? await EmbeddingLibrary.open(opts.embeddingsDir) : undefined;
  return describeTokenization(tokenizer, prompt, {
    embeddings: embeddings?.lookupFor(tokenizer),
    steps: opts.steps,
    negative: opts.negative,
  });
}
