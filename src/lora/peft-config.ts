/**
 * Alpha for PEFT-style LoRAs (lora_A / lora_B), which carry no `.alpha` tensors: the scale comes from the
 * PEFT `LoraConfig` (`lora_alpha`, `r`, `alpha_pattern`, `use_rslora`). Where files keep it:
 *   - diffusers ≥ 0.34 `save_lora_weights`: `__metadata__.lora_adapter_metadata`, a JSON object whose keys are
 *     LoraConfig fields prefixed by component (`unet.lora_alpha`, `text_encoder.alpha_pattern`, …;
 *     diffusers `_pack_dict_with_prefix`);
 *   - an `adapter_config` entry holding PEFT's adapter_config.json (some exporters embed it);
 *   - a flat `lora_alpha` entry.
 * An external adapter_config.json (PEFT `save_pretrained` writes it beside the weights) can be passed in.
 * No alpha anywhere means alpha = rank (scale 1), as diffusers/PEFT load such files.
 *
 * Upstream: peft `tuners/lora/layer.py` (scaling = lora_alpha / r, or lora_alpha / sqrt(r) with use_rslora)
 * and `utils/other.py` get_pattern_key (a pattern key matches a module whose path ends with it).
 */
import type { LoraPart } from './types.js';

export interface PeftConfig {
  loraAlpha?: number;
  r?: number;
  alphaPattern: Record<string, number>;
  rankPattern: Record<string, number>;
  useRslora: boolean;
  useDora: boolean;
}

export interface PeftConfigs {
  unet?: PeftConfig;
  te?: PeftConfig;
  /** Unprefixed config: applies to any part without its own. */
  any?: PeftConfig;
}

function num(v: unknown): number | undefined {
  const n = typeof v === 'string' ? Number(v) : v;
  return typeof n === 'number' && Number.isFinite(n) ? n : undefined;
}

function numberMap(v: unknown): Record<string, number> {
  const out: Record<string, number> = {};
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
    for (const [k, x] of Object.entries(v)) {
      const n = num(x);
      if (n !== undefined) out[k] = n;
    }
  }
  return out;
}

function configFrom(fields: Record<string, unknown>): PeftConfig | undefined {
  const c: PeftConfig = {
    loraAlpha: num(fields.lora_alpha),
    r: num(fields.r),
    alphaPattern: numberMap(fields.alpha_pattern),
    rankPattern: numberMap(fields.rank_pattern),
    useRslora: fields.use_rslora === true || fields.use_rslora === 'true' || fields.use_rslora === 'True',
    useDora: fields.use_dora === true || fields.use_dora === 'true' || fields.use_dora === 'True',
  };
  const empty = c.loraAlpha === undefined && c.r === undefined && Object.keys(c.alphaPattern).length === 0 && !c.useRslora && !c.useDora;
  return empty ? undefined : c;
}

function parseJsonObject(s: string | undefined): Record<string, unknown> | undefined {
  if (s === undefined) return undefined;
  try {
    const v = JSON.parse(s) as unknown;
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

const COMPONENTS: Array<[string, keyof PeftConfigs]> = [
  ['unet.', 'unet'],
  ['text_encoder.', 'te'],
];

/** PEFT configs found in a file's metadata (and an optional external adapter_config.json object). */
export function peftConfigsFromMetadata(metadata: Record<string, string>, external?: Record<string, unknown>): PeftConfigs {
  const out: PeftConfigs = {};
  const packed = parseJsonObject(metadata.lora_adapter_metadata);
  if (packed) {
    const byComponent: Record<string, Record<string, unknown>> = {};
    const plain: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(packed)) {
      if (k.endsWith('__proto__')) continue; // plain data only
      const comp = COMPONENTS.find(([prefix]) => k.startsWith(prefix));
      if (comp) (byComponent[comp[1]] ??= {})[k.slice(comp[0].length)] = v;
      else if (!k.includes('.')) plain[k] = v;
    }
    for (const [, slot] of COMPONENTS) {
      const fields = byComponent[slot];
      if (fields) out[slot] = configFrom(fields);
    }
    out.any = configFrom(plain);
  }
  const embedded = parseJsonObject(metadata.adapter_config) ?? external;
  if (embedded && !out.any) out.any = configFrom(embedded);
  if (!out.any && metadata.lora_alpha !== undefined) out.any = configFrom({ lora_alpha: metadata.lora_alpha, r: metadata.r });
  return out;
}

function patternValue(patterns: Record<string, number>, module: string): number | undefined {
  for (const [key, value] of Object.entries(patterns)) {
    if (module === key || module.endsWith(`.${key}`)) return value;
    try {
      if (new RegExp(`(^|\\.)(${key})$`).test(module)) return value;
    } catch {
      // not a regex: the literal checks above were all it could mean
    }
  }
  return undefined;
}

/** alpha and scale of one PEFT layer, or undefined when no config applies. */
export function peftAlpha(configs: PeftConfigs, part: LoraPart, module: string, rank: number): { alpha: number; scale: number } | undefined {
  const c = configs[part] ?? configs.any;
  if (!c) return undefined;
  const alpha = patternValue(c.alphaPattern, module) ?? c.loraAlpha;
  if (alpha === undefined) return undefined;
  return { alpha, scale: c.useRslora ? alpha / Math.sqrt(rank) : alpha / rank };
}
