/** Tokenizer access for tools that need no sessions (`loraserve tokenize`). */
import { join, resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { LoraserveError } from '../core/errors.js';
import { ClipTokenizer } from '../text/clip-tokenizer.js';

/** Loads the tokenizer of a model folder (or a bare tokenizer folder). */
export async function loadModelTokenizer(dir: string): Promise<ClipTokenizer> {
  const root = resolve(dir);
  if (!existsSync(root)) throw new LoraserveError('MODEL_INVALID', `model folder ${root} does not exist`);
  const tokDir = existsSync(join(root, 'tokenizer')) ? join(root, 'tokenizer') : root;
  return ClipTokenizer.fromFolder(tokDir);
}
