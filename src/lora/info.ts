/**
 * A LoRA's self-description, from the safetensors header alone (a library scan never reads tensor data):
 * format and network type from the key names, ranks from the shapes, alpha / base model / trigger words /
 * alias from kohya's `ss_*` metadata and the modelspec fields.
 *
 * Upstream for the metadata reading: A1111 `extensions-builtin/Lora/network.py` (NetworkOnDisk: alias =
 * ss_output_name, detect_version from ss_base_model_version / ss_v2) and `ui_edit_user_metadata.py`
 * (build_tags: ss_tag_frequency summed over datasets, most frequent first; long free-text captions are split
 * into words).
 */
import { parseKey, type KeyFamily, type UnsupportedNetwork } from './key-formats.js';
import { peftConfigsFromMetadata } from './peft-config.js';
import type { SafetensorsHeader } from './safetensors.js';
import type { BaseModel, LoraFormat, LoraInfo } from './types.js';

export const TRIGGER_WORDS = 10;

function finite(s: string | undefined): number | null {
  if (s === undefined || s.trim() === '' || s === 'None') return null;
  const n = Number(s);
  return Number.isFinite(n) ? n : null;
}

/** Base model from modelspec.architecture (most precise), then kohya's ss_base_model_version, then ss_v2. */
export function baseModelOf(metadata: Record<string, string>, hasTe2Keys: boolean): { baseModel: BaseModel; version: string | null } {
  const arch = metadata['modelspec.architecture'];
  if (arch) {
    if (arch.startsWith('stable-diffusion-v1')) return { baseModel: 'sd1', version: arch };
    if (arch.startsWith('stable-diffusion-v2')) return { baseModel: 'sd2', version: arch };
    if (arch.startsWith('stable-diffusion-xl')) return { baseModel: 'sdxl', version: arch };
    return { baseModel: 'other', version: arch };
  }
  const v = metadata.ss_base_model_version;
  if (v) {
    if (v.startsWith('sd_v1')) return { baseModel: 'sd1', version: v };
    if (v.startsWith('sd_v2')) return { baseModel: 'sd2', version: v };
    if (v.startsWith('sdxl')) return { baseModel: 'sdxl', version: v };
    return { baseModel: 'other', version: v };
  }
  if (metadata.ss_v2 === 'True') return { baseModel: 'sd2', version: 'ss_v2=True' };
  if (metadata.ss_v2 === 'False') return { baseModel: 'sd1', version: 'ss_v2=False' };
  if (hasTe2Keys) return { baseModel: 'sdxl', version: null };
  return { baseModel: 'unknown', version: null };
}

/** A1111 ui_edit_user_metadata.py is_non_comma_tagset: captions, not tags, when tags average ≥ 16 characters. */
function isNonCommaTagset(tags: Map<string, number>): boolean {
  let total = 0;
  for (const t of tags.keys()) total += t.length;
  return total / tags.size >= 16;
}

// Python's re `[-_\w']+` with str patterns: \w is Unicode letters, digits and underscore.
const WORD = /[-_\p{L}\p{N}\p{M}']+/gu;

/** A1111 build_tags: (tag, count) pairs, most frequent first, ties in first-seen order (Python's stable sort). */
export function tagFrequency(ssTagFrequency: string | undefined): Array<[string, number]> {
  if (!ssTagFrequency) return [];
  let parsed: unknown;
  try {
    parsed = JSON.parse(ssTagFrequency);
  } catch {
    return [];
  }
  if (typeof parsed !== 'object' || parsed === null) return [];
  let tags = new Map<string, number>();
  for (const dataset of Object.values(parsed as Record<string, unknown>)) {
    if (typeof dataset !== 'object' || dataset === null) continue;
    for (const [rawTag, count] of Object.entries(dataset as Record<string, unknown>)) {
      const n = Math.trunc(Number(count));
      if (!Number.isFinite(n)) continue;
      const tag = rawTag.trim();
      tags.set(tag, (tags.get(tag) ?? 0) + n);
    }
  }
  if (tags.size > 0 && isNonCommaTagset(tags)) {
    const words = new Map<string, number>();
    for (const [text, count] of tags) {
      for (const w of text.match(WORD) ?? []) {
        if (w.length < 3) continue;
        words.set(w, (words.get(w) ?? 0) + count);
      }
    }
    tags = words;
  }
  return [...tags.entries()].sort((a, b) => b[1] - a[1]);
}

/** kohya's `ss_network_args` (a JSON object of strings) → conv_dim / conv_alpha. */
function convArgs(metadata: Record<string, string>): { convRank: number | null; convAlpha: number | null } {
  try {
    const args = JSON.parse(metadata.ss_network_args ?? '{}') as Record<string, unknown>;
    const convRank = finite(args.conv_dim === undefined ? undefined : String(args.conv_dim));
    const convAlpha = finite(args.conv_alpha === undefined ? undefined : String(args.conv_alpha));
    return { convRank, convAlpha: convAlpha ?? (convRank === null ? null : 1) };
  } catch {
    return { convRank: null, convAlpha: null };
  }
}

/** The format of a file from its keys: the family most of its down keys use; LoCon when a kohya down is a k×k conv, k > 1. */
export function detectFormat(header: SafetensorsHeader): { format: LoraFormat | null; unsupported: { network: UnsupportedNetwork; key: string } | null } {
  const counts = new Map<KeyFamily, number>();
  let locon = false;
  let unsupported: { network: UnsupportedNetwork; key: string } | null = null;
  for (const [name, entry] of header.tensors) {
    const k = parseKey(name);
    if (k.kind === 'unsupported') {
      unsupported ??= { network: k.network, key: name };
      continue;
    }
    if (k.kind !== 'lora' || k.role !== 'down') continue;
    counts.set(k.family, (counts.get(k.family) ?? 0) + 1);
    if (k.family === 'kohya' && entry.shape.length === 4 && (entry.shape[2] > 1 || entry.shape[3] > 1)) locon = true;
  }
  let best: KeyFamily | null = null;
  for (const [family, n] of counts) if (best === null || n > (counts.get(best) ?? 0)) best = family;
  const format: LoraFormat | null = best === 'kohya' && locon ? 'locon' : best;
  return { format, unsupported };
}

/** Everything LoraInfo says, from the header only. */
export function loraInfoFromHeader(header: SafetensorsHeader): LoraInfo {
  const md = header.metadata;
  const { format, unsupported } = detectFormat(header);
  const ranks = new Set<number>();
  const dtypes = new Set<string>();
  const modules = { unet: new Set<string>(), te: new Set<string>(), te2: new Set<string>(), unknown: new Set<string>() };
  const bundled = new Set<string>();
  for (const [name, entry] of header.tensors) {
    dtypes.add(entry.dtype);
    const k = parseKey(name);
    if (k.kind === 'embedding') bundled.add(k.name);
    if (k.kind !== 'lora') continue;
    if (k.role === 'down' && entry.shape.length >= 2) ranks.add(entry.shape[0]);
    const slot = k.part === 'unet' || k.part === 'te' || k.part === 'te2' ? k.part : 'unknown';
    modules[slot].add(k.group);
  }

  // Alpha as the metadata states it (the `.alpha` tensors are data; parseLora reports those).
  const alphas = new Set<number>();
  const kohyaAlpha = finite(md.ss_network_alpha);
  if (kohyaAlpha !== null) alphas.add(kohyaAlpha);
  const peft = peftConfigsFromMetadata(md);
  for (const c of [peft.unet, peft.te, peft.any]) {
    if (c?.loraAlpha !== undefined) alphas.add(c.loraAlpha);
    for (const v of Object.values(c?.alphaPattern ?? {})) alphas.add(v);
  }
  const { convRank, convAlpha } = convArgs(md);
  const { baseModel, version } = baseModelOf(md, modules.te2.size > 0);
  const tags = tagFrequency(md.ss_tag_frequency);
  const str = (k: string): string | null => (md[k] !== undefined && md[k] !== '' && md[k] !== 'None' ? md[k] : null);

  return {
    format,
    unsupported: unsupported?.network ?? null,
    ranks: [...ranks].sort((a, b) => a - b),
    alphas: [...alphas].sort((a, b) => a - b),
    alphaSource: alphas.size > 0 ? 'metadata' : 'none',
    convRank,
    convAlpha,
    baseModel,
    baseModelVersion: version,
    tagFrequency: tags,
    triggerWords: tags.slice(0, TRIGGER_WORDS).map(([t]) => t),
    outputName: str('ss_output_name'),
    trainingComment: str('ss_training_comment') ?? str('modelspec.description'),
    networkModule: str('ss_network_module'),
    sdModelName: str('ss_sd_model_name'),
    declaredHash: str('sshs_model_hash'),
    tensors: header.tensors.size,
    modules: { unet: modules.unet.size, te: modules.te.size, te2: modules.te2.size, unknown: modules.unknown.size },
    dtypes: [...dtypes].sort(),
    bundledEmbeddings: [...bundled].sort(),
  };
}
