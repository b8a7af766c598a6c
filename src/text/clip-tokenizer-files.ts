/**
 * Reads a Hugging Face CLIP tokenizer folder (the `tokenizer/` of an SD checkpoint or ONNX export) into the plain
 * data `ClipTokenizer` is built from. Every problem with the folder is collected and reported in one MODEL_INVALID
 * error, so a user fixes a broken model in one round.
 *
 * Files and how transformers reads them (huggingface/transformers `tokenization_clip.py`, `tokenization_utils_base.py`):
 * - vocab.json (required): { token: id }.
 * - merges.txt (required): a `#version` line, then "left right" per line; transformers keeps at most the first
 *   49152-256-2 = 48894 merges (the slice in `CLIPTokenizer.__init__`), so we do too.
 * - tokenizer_config.json (optional): bos/eos/unk/pad_token, model_max_length, do_lower_case.
 * - special_tokens_map.json (optional): bos/eos/unk/pad_token; for folders without `added_tokens_decoder` (every SD
 *   folder we know), transformers lets these override tokenizer_config.json, so we do too.
 * A token is a string or an AddedToken object `{ "content": ..., "lstrip": ..., ... }`. Its lstrip/rstrip/
 * single_word flags are not honoured: they are false in every SD tokenizer folder.
 */
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LoraserveError } from '../core/errors.js';
import type { ClipTokenizerOptions, ClipTokenizerSpecials } from './clip-tokenizer.js';

/** CLIPTokenizer's `bpe_merges[1 : 49152 - 256 - 2 + 1]`: CLIP's 49408 ids = 512 byte symbols + merges + 2 specials. */
export const CLIP_MAX_MERGES = 49152 - 256 - 2;

/** transformers writes model_max_length = int(1e30) when a tokenizer has no limit; anything this large means "unset". */
const UNSET_MAX_LENGTH_ABOVE = 1_000_000;

export interface ClipTokenizerFolder {
  vocab: Record<string, number>;
  /** merges.txt lines after the `#version` header, capped at CLIP_MAX_MERGES. */
  merges: string[];
  /** 1-based line number in merges.txt of merges[0], for error messages. */
  firstMergeLine: number;
  options: ClipTokenizerOptions;
}

const ROLES = ['bos', 'eos', 'unk', 'pad'] as const;

export async function readClipTokenizerFolder(dir: string): Promise<ClipTokenizerFolder> {
  const problems: string[] = [];
  const [vocabText, mergesText, configText, specialsText] = await Promise.all([
    readText(dir, 'vocab.json', true, problems),
    readText(dir, 'merges.txt', true, problems),
    readText(dir, 'tokenizer_config.json', false, problems),
    readText(dir, 'special_tokens_map.json', false, problems),
  ]);

  let vocab: Record<string, number> | undefined;
  if (vocabText !== undefined) {
    const parsed = parseJsonObject('vocab.json', vocabText, problems);
    // Its ids are checked while the tokenizer is built, in the same pass that indexes them.
    if (parsed) vocab = parsed as Record<string, number>;
  }

  let merges: string[] = [];
  let firstMergeLine = 1;
  if (mergesText !== undefined) {
    const lines = mergesText.split('\n');
    if (lines[0]?.startsWith('#version')) {
      lines.shift();
      firstMergeLine = 2;
    }
    merges = lines.slice(0, CLIP_MAX_MERGES);
    if (!merges.some((l) => l.trim() !== '')) problems.push('merges.txt: no merges');
  }

  const options: ClipTokenizerOptions = {};
  const specials: Partial<ClipTokenizerSpecials> = {};
  const config = configText === undefined ? undefined : parseJsonObject('tokenizer_config.json', configText, problems);
  const specialsMap = specialsText === undefined ? undefined : parseJsonObject('special_tokens_map.json', specialsText, problems);
  // tokenizer_config first, special_tokens_map second: the later one wins.
  for (const [file, source] of [['tokenizer_config.json', config], ['special_tokens_map.json', specialsMap]] as const) {
    if (!source) continue;
    for (const role of ROLES) {
      const content = tokenContent(source[`${role}_token`]);
      if (content instanceof Error) problems.push(`${file}: ${role}_token ${content.message}`);
      else if (content !== undefined) specials[role] = content;
    }
  }
  if (config) {
    const maxLength = config.model_max_length;
    if (maxLength !== undefined && maxLength !== null) {
      if (typeof maxLength !== 'number' || !Number.isInteger(maxLength) || maxLength < 2) {
        problems.push(`tokenizer_config.json: model_max_length ${JSON.stringify(maxLength)} is not an integer ≥ 2`);
      } else if (maxLength <= UNSET_MAX_LENGTH_ABOVE) {
        options.maxLength = maxLength;
      }
    }
    const lower = config.do_lower_case;
    if (lower !== undefined && lower !== null) {
      if (typeof lower !== 'boolean') problems.push(`tokenizer_config.json: do_lower_case ${JSON.stringify(lower)} is not a boolean`);
      else options.lowerCase = lower;
    }
  }
  options.specials = specials;

  if (problems.length > 0 || vocab === undefined) {
    throw new LoraserveError('MODEL_INVALID', `tokenizer folder ${dir} is not usable: ${problems.join('; ')}`, { dir, problems });
  }
  return { vocab, merges, firstMergeLine, options };
}

async function readText(dir: string, file: string, required: boolean, problems: string[]): Promise<string | undefined> {
  try {
    return await readFile(join(dir, file), 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      if (required) problems.push(`${file}: missing`);
    } else {
      problems.push(`${file}: unreadable (${code ?? (e as Error).message})`);
    }
    return undefined;
  }
}

function parseJsonObject(file: string, text: string, problems: string[]): Record<string, unknown> | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    problems.push(`${file}: not valid JSON (${(e as Error).message})`);
    return undefined;
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    problems.push(`${file}: expected a JSON object`);
    return undefined;
  }
  return value as Record<string, unknown>;
}

/** A token as written in the configs: a string, `{ "content": string, ... }`, or absent/null (use the default). */
function tokenContent(value: unknown): string | undefined | Error {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && typeof (value as { content?: unknown }).content === 'string') {
    return (value as { content: string }).content;
  }
  return new Error(`must be a string or {"content": string}, got ${JSON.stringify(value)}`);
}
