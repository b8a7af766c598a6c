/**
 * The native request fields (`POST /v1/images` JSON, and the lines of a `loraserve batch` file) → RenderRequest.
 *
 * One definition of the field names, their defaults and their value limits, shared by the HTTP server (whose
 * TypeBox schema reads the same limits, so a body the schema accepts always converts) and the batch CLI (which
 * has no schema in front of it, so every field is checked here and a bad one is named). Limits that depend on
 * a server's configuration or on the loaded model (max steps, max pixels, size multiple, known LoRAs) are not
 * checked here: they belong to the server's edge (src/server/edge/check.ts) and to src/engine/validate.ts.
 */
import { LoraserveError } from '../core/errors.js';
import { MAX_SEED, randomSeed, type RngKind } from '../diffusion/rng/index.js';
import type { EmphasisMode, LoraSpec, RenderRequest, SamplingFlavor } from './request.js';

/** One entry of `loras`. */
export interface NativeLora {
  name: string;
  weight?: number;
  te?: number;
  unet?: number;
  blocks?: Record<string, number>;
}

/** The native fields, as JSON carries them. */
export interface NativeBody {
  prompt: string;
  negative_prompt?: string;
  loras?: NativeLora[];
  sampler?: string;
  scheduler?: string;
  steps?: number;
  cfg_scale?: number;
  /** -1 = pick one at random. */
  seed?: number;
  rng?: RngKind;
  clip_skip?: number;
  emphasis?: EmphasisMode;
  flavor?: SamplingFlavor;
  preview_every?: number;
  width?: number;
  height?: number;
  batch_size?: number;
}

/** What a field left out becomes (the server's are configurable; `loraserve batch` uses DEFAULT_NATIVE). */
export interface NativeDefaults {
  width: number;
  height: number;
  steps: number;
  cfgScale: number;
  sampler: string;
  scheduler: string;
  rng: RngKind;
}

export const DEFAULT_NATIVE: NativeDefaults = {
  width: 512,
  height: 512,
  steps: 20,
  cfgScale: 7,
  sampler: 'euler_a',
  scheduler: 'automatic',
  rng: 'cpu',
};

/** Value limits of the native fields that hold whatever the server is configured with. */
export const NATIVE_LIMITS = {
  loraName: { minLength: 1, maxLength: 255 },
  /** weight, te, unet and every block weight. */
  loraWeight: { minimum: -20, maximum: 20 },
  loras: { maxItems: 64 },
  blockKeyPattern: '^[A-Za-z0-9_]{1,16}$',
  sampler: { minLength: 1, maxLength: 64 },
  scheduler: { maxLength: 64 },
  steps: { minimum: 1, maximum: 10_000 },
  cfgScale: { minimum: 0, maximum: 100 },
  seed: { minimum: -1, maximum: MAX_SEED },
  clipSkip: { minimum: 1, maximum: 12 },
  previewEvery: { minimum: 0, maximum: 10_000 },
  size: { minimum: 8, maximum: 16384 },
  batchSize: { minimum: 1, maximum: 1024 },
} as const;

export const RNG_KINDS = ['cpu', 'nv'] as const;
export const EMPHASIS_MODES = ['Original', 'No norm', 'Ignore'] as const;
export const FLAVORS = ['native', 'a1111'] as const;

export type NativeFieldType = 'string' | 'integer' | 'number' | 'loras';

/** Every native field and the JSON type it takes (text formats such as CSV convert their cells by this). */
export const NATIVE_FIELDS: Readonly<Record<keyof NativeBody, NativeFieldType>> = {
  prompt: 'string',
  negative_prompt: 'string',
  loras: 'loras',
  sampler: 'string',
  scheduler: 'string',
  steps: 'integer',
  cfg_scale: 'number',
  seed: 'integer',
  rng: 'string',
  clip_skip: 'integer',
  emphasis: 'string',
  flavor: 'string',
  preview_every: 'integer',
  width: 'integer',
  height: 'integer',
  batch_size: 'integer',
};

export interface NativeRequestOptions {
  /** Default: DEFAULT_NATIVE. */
  defaults?: NativeDefaults;
  /** Preview interval for a body without `preview_every` (0 or undefined = none). */
  previewEvery?: number;
  /** 'reject' (default): a field that is not a native field is an error; 'ignore': it is skipped. */
  unknownFields?: 'reject' | 'ignore';
  /** What seed -1 becomes; default randomSeed (A1111's range). */
  randomSeed?: () => number;
}

interface Problem {
  field: string;
  message: string;
}

/**
 * Checks and converts a native body. Every problem found is listed in one INVALID_ARGUMENT error, each naming
 * its field (`steps`, `loras[1].weight`); `details.field` is the first one's.
 */
export function nativeBodyToRequest(body: unknown, opts: NativeRequestOptions = {}): RenderRequest {
  const problems: Problem[] = [];
  const b = checkNativeBody(body, opts.unknownFields ?? 'reject', problems);
  if (problems.length || !b) {
    throw new LoraserveError('INVALID_ARGUMENT', problems.map((p) => p.message).join('; '), { field: problems[0]?.field, problems });
  }
  const d = opts.defaults ?? DEFAULT_NATIVE;
  const seed = b.seed ?? -1;
  const previewEvery = opts.previewEvery !== undefined && opts.previewEvery > 0 ? opts.previewEvery : undefined;
  return withoutUndefined<RenderRequest>({
    prompt: b.prompt,
    negativePrompt: b.negative_prompt ?? '',
    steps: b.steps ?? d.steps,
    cfgScale: b.cfg_scale ?? d.cfgScale,
    sampler: b.sampler ?? d.sampler,
    scheduler: b.scheduler ?? d.scheduler,
    flavor: b.flavor ?? 'native',
    seed: seed === -1 ? (opts.randomSeed ?? randomSeed)() : seed,
    rng: b.rng ?? d.rng,
    width: b.width ?? d.width,
    height: b.height ?? d.height,
    batchSize: b.batch_size ?? 1,
    loras: b.loras?.map(nativeLoraToSpec),
    clipSkip: b.clip_skip,
    emphasis: b.emphasis,
    previewEvery: b.preview_every ?? previewEvery,
  });
}

export function nativeLoraToSpec(l: NativeLora): LoraSpec {
  return withoutUndefined({ name: l.name, weight: l.weight ?? 1, te: l.te, unet: l.unet, blocks: l.blocks });
}

/** Drops keys whose value is undefined (records and logs then show only what was set). */
export function withoutUndefined<T extends object>(o: T): T {
  for (const k of Object.keys(o) as Array<keyof T>) if (o[k] === undefined) delete o[k];
  return o;
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function shown(v: unknown): string {
  const s = typeof v === 'string' ? JSON.stringify(v) : Array.isArray(v) ? 'an array' : v === null ? 'null' : typeof v === 'object' ? 'an object' : String(v);
  return s.length > 60 ? `${s.slice(0, 60)}…` : s;
}

function checkNumber(
  problems: Problem[],
  field: string,
  v: unknown,
  range: { minimum: number; maximum: number },
  integer: boolean,
): number | undefined {
  if (v === undefined) return undefined;
  const kind = integer ? 'an integer' : 'a number';
  if (typeof v !== 'number' || !Number.isFinite(v) || (integer && !Number.isInteger(v)) || v < range.minimum || v > range.maximum) {
    problems.push({ field, message: `${field} must be ${kind} from ${range.minimum} to ${range.maximum} (got ${shown(v)})` });
    return undefined;
  }
  return v;
}

function checkString(problems: Problem[], field: string, v: unknown, len: { minLength?: number; maxLength: number }): string | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string') {
    problems.push({ field, message: `${field} must be a string (got ${shown(v)})` });
    return undefined;
  }
  if (v.length < (len.minLength ?? 0) || v.length > len.maxLength) {
    problems.push({ field, message: `${field} must have ${len.minLength ?? 0} to ${len.maxLength} characters (got ${v.length})` });
    return undefined;
  }
  return v;
}

function checkEnum<T extends string>(problems: Problem[], field: string, v: unknown, allowed: readonly T[]): T | undefined {
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || !(allowed as readonly string[]).includes(v)) {
    problems.push({ field, message: `${field} must be one of ${allowed.map((a) => JSON.stringify(a)).join(', ')} (got ${shown(v)})` });
    return undefined;
  }
  return v as T;
}

const LORA_FIELDS = new Set(['name', 'weight', 'te', 'unet', 'blocks']);
const BLOCK_KEY = new RegExp(NATIVE_LIMITS.blockKeyPattern);

function checkLoras(problems: Problem[], v: unknown): NativeLora[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v)) {
    problems.push({ field: 'loras', message: `loras must be an array of {name, weight} (got ${shown(v)})` });
    return undefined;
  }
  if (v.length > NATIVE_LIMITS.loras.maxItems) {
    problems.push({ field: 'loras', message: `loras has ${v.length} entries; at most ${NATIVE_LIMITS.loras.maxItems}` });
    return undefined;
  }
  const W = NATIVE_LIMITS.loraWeight;
  return v.map((l, i): NativeLora => {
    const at = `loras[${i}]`;
    if (!isRecord(l)) {
      problems.push({ field: at, message: `${at} must be an object {name, weight} (got ${shown(l)})` });
      return { name: '' };
    }
    for (const k of Object.keys(l)) if (!LORA_FIELDS.has(k)) problems.push({ field: `${at}.${k}`, message: `${at}.${k} is not a known field (name, weight, te, unet, blocks)` });
    if (l.name === undefined) problems.push({ field: `${at}.name`, message: `${at}.name is required` });
    let blocks: Record<string, number> | undefined;
    if (l.blocks !== undefined) {
      if (!isRecord(l.blocks)) {
        problems.push({ field: `${at}.blocks`, message: `${at}.blocks must be an object of block id → weight (got ${shown(l.blocks)})` });
      } else {
        blocks = {};
        for (const [k, w] of Object.entries(l.blocks)) {
          if (!BLOCK_KEY.test(k)) problems.push({ field: `${at}.blocks`, message: `${at}.blocks: '${k}' is not a block id (letters, digits, '_', at most 16)` });
          const n = checkNumber(problems, `${at}.blocks.${k}`, w, W, false);
          if (n !== undefined) blocks[k] = n;
        }
      }
    }
    return withoutUndefined({
      name: checkString(problems, `${at}.name`, l.name, NATIVE_LIMITS.loraName) ?? '',
      weight: checkNumber(problems, `${at}.weight`, l.weight, W, false),
      te: checkNumber(problems, `${at}.te`, l.te, W, false),
      unet: checkNumber(problems, `${at}.unet`, l.unet, W, false),
      blocks,
    });
  });
}

/** Typed view of a body, with every problem pushed to `problems`. */
function checkNativeBody(body: unknown, unknownFields: 'reject' | 'ignore', problems: Problem[]): NativeBody | undefined {
  if (!isRecord(body)) {
    problems.push({ field: '', message: `a request must be a JSON object (got ${shown(body)})` });
    return undefined;
  }
  if (unknownFields === 'reject') {
    for (const k of Object.keys(body)) {
      if (!(k in NATIVE_FIELDS)) problems.push({ field: k, message: `'${k}' is not a known field${suggestField(k)}` });
    }
  }
  if (body.prompt === undefined) problems.push({ field: 'prompt', message: 'prompt is required' });
  const L = NATIVE_LIMITS;
  const out: NativeBody = {
    prompt: checkString(problems, 'prompt', body.prompt, { maxLength: Number.MAX_SAFE_INTEGER }) ?? '',
    negative_prompt: checkString(problems, 'negative_prompt', body.negative_prompt, { maxLength: Number.MAX_SAFE_INTEGER }),
    loras: checkLoras(problems, body.loras),
    sampler: checkString(problems, 'sampler', body.sampler, L.sampler),
    scheduler: checkString(problems, 'scheduler', body.scheduler, L.scheduler),
    steps: checkNumber(problems, 'steps', body.steps, L.steps, true),
    cfg_scale: checkNumber(problems, 'cfg_scale', body.cfg_scale, L.cfgScale, false),
    seed: checkNumber(problems, 'seed', body.seed, L.seed, true),
    rng: checkEnum(problems, 'rng', body.rng, RNG_KINDS),
    clip_skip: checkNumber(problems, 'clip_skip', body.clip_skip, L.clipSkip, true),
    emphasis: checkEnum(problems, 'emphasis', body.emphasis, EMPHASIS_MODES),
    flavor: checkEnum(problems, 'flavor', body.flavor, FLAVORS),
    preview_every: checkNumber(problems, 'preview_every', body.preview_every, L.previewEvery, true),
    width: checkNumber(problems, 'width', body.width, L.size, true),
    height: checkNumber(problems, 'height', body.height, L.size, true),
    batch_size: checkNumber(problems, 'batch_size', body.batch_size, L.batchSize, true),
  };
  return withoutUndefined(out);
}

/** A1111 and OpenAI spellings people carry over, and close misspellings of our own names. */
const FIELD_HINTS: Record<string, string> = {
  cfg: 'cfg_scale',
  cfgscale: 'cfg_scale',
  negative: 'negative_prompt',
  negativeprompt: 'negative_prompt',
  sampler_name: 'sampler',
  samplername: 'sampler',
  n: 'batch_size',
  batch: 'batch_size',
  batchsize: 'batch_size',
  clipskip: 'clip_skip',
  lora: 'loras',
  schedule: 'scheduler',
  schedule_type: 'scheduler',
};

function suggestField(k: string): string {
  const norm = k.toLowerCase().replace(/[-\s]/g, '_');
  const hit = FIELD_HINTS[norm] ?? FIELD_HINTS[norm.replace(/_/g, '')] ?? (norm in NATIVE_FIELDS ? norm : undefined);
  return hit ? ` (did you mean '${hit}'?)` : '';
}
