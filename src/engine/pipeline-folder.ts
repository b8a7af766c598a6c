/**
 * Checks that a folder is a diffusers/optimum ONNX Stable Diffusion pipeline before anything is loaded,
 * and reports everything missing or unreadable in one error (not the first problem only).
 *
 * Layout (diffusers scripts/convert_stable_diffusion_checkpoint_to_onnx.py, optimum-cli export onnx):
 *   model_index.json
 *   text_encoder/model.onnx        unet/model.onnx (+ external data beside it)
 *   vae_decoder/model.onnx         vae_encoder/model.onnx (optional)
 *   tokenizer/{vocab.json, merges.txt, tokenizer_config.json, special_tokens_map.json}
 *   scheduler/scheduler_config.json
 */
import { accessSync, constants, readFileSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { LoraserveError } from '../core/errors.js';

export interface PipelineFiles {
  dir: string;
  name: string;
  modelIndex: Record<string, unknown>;
  textEncoder: string;
  unet: string;
  vaeDecoder: string;
  vaeEncoder?: string;
  tokenizerDir: string;
  schedulerConfig: Record<string, unknown>;
  /** vae_decoder/config.json when the export wrote one (optimum does), for scaling_factor. */
  vaeConfig?: Record<string, unknown>;
}

const REQUIRED_FILES = [
  'model_index.json',
  'text_encoder/model.onnx',
  'unet/model.onnx',
  'vae_decoder/model.onnx',
  'tokenizer/vocab.json',
  'tokenizer/merges.txt',
  'tokenizer/tokenizer_config.json',
  'tokenizer/special_tokens_map.json',
  'scheduler/scheduler_config.json',
];

function readable(path: string): string | undefined {
  try {
    const st = statSync(path);
    if (!st.isFile()) return 'not a file';
    accessSync(path, constants.R_OK);
    return undefined;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : `unreadable (${(e as Error).message})`;
  }
}

function readJson(path: string, problems: string[], rel: string): Record<string, unknown> {
  try {
    const v = JSON.parse(readFileSync(path, 'utf8'));
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      problems.push(`${rel}: not a JSON object`);
      return {};
    }
    return v as Record<string, unknown>;
  } catch (e) {
    problems.push(`${rel}: invalid JSON (${(e as Error).message})`);
    return {};
  }
}

export function checkPipelineFolder(dirIn: string): PipelineFiles {
  const dir = resolve(dirIn);
  let st;
  try {
    st = statSync(dir);
  } catch {
    throw new LoraserveError('MODEL_INVALID', `model folder ${dir} does not exist`, { dir });
  }
  if (!st.isDirectory()) throw new LoraserveError('MODEL_INVALID', `model path ${dir} is not a folder`, { dir });

  const problems: string[] = [];
  for (const rel of REQUIRED_FILES) {
    const why = readable(join(dir, rel));
    if (why) problems.push(`${rel}: ${why}`);
  }
  const optionalEncoder = join(dir, 'vae_encoder/model.onnx');
  const encoderWhy = readable(optionalEncoder);
  if (encoderWhy && encoderWhy !== 'missing') problems.push(`vae_encoder/model.onnx: ${encoderWhy}`);

  const modelIndex = readable(join(dir, 'model_index.json')) ? {} : readJson(join(dir, 'model_index.json'), problems, 'model_index.json');
  const schedulerConfig = readable(join(dir, 'scheduler/scheduler_config.json'))
    ? {}
    : readJson(join(dir, 'scheduler/scheduler_config.json'), problems, 'scheduler/scheduler_config.json');
  const vaeConfigPath = join(dir, 'vae_decoder/config.json');
  const vaeConfig = readable(vaeConfigPath) ? undefined : readJson(vaeConfigPath, problems, 'vae_decoder/config.json');

  if (problems.length > 0) {
    throw new LoraserveError(
      'MODEL_INVALID',
      `${dir} is not a diffusers ONNX Stable Diffusion pipeline: ${problems.join('; ')}. ` +
        `Expected the layout written by diffusers' convert_stable_diffusion_checkpoint_to_onnx.py or optimum-cli export onnx.`,
      { dir, problems },
    );
  }
  return {
    dir,
    name: basename(dir),
    modelIndex,
    textEncoder: join(dir, 'text_encoder/model.onnx'),
    unet: join(dir, 'unet/model.onnx'),
    vaeDecoder: join(dir, 'vae_decoder/model.onnx'),
    vaeEncoder: encoderWhy ? undefined : optionalEncoder,
    tokenizerDir: join(dir, 'tokenizer'),
    schedulerConfig,
    vaeConfig,
  };
}
