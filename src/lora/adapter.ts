/**
 * parseLora: one LoRA file → a LoraAdapter whose every layer names a layer of the loaded model, has the
 * right shapes, and carries its down/up factors (fp16 files stay fp16) plus its alpha/rank scale. Pure: it returns a whole adapter or
 * throws, so nothing half-loaded survives a bad file.
 *
 * Order of checks (cheapest first, so a wrong file fails before any tensor is decoded):
 *   1. safetensors structure (LORA_INVALID),
 *   2. network type: LoHa/LoKr/DoRA/… refuse the whole file (LORA_UNSUPPORTED),
 *   3. pairing of down/up/alpha keys per layer (LORA_INVALID for a lone down or up, or rank disagreement),
 *   4. matching against the targets and their shapes (LORA_MISMATCH with the first mismatches; zero matched
 *      layers is also LORA_MISMATCH — a LoRA that changes nothing is a mistake, not a no-op),
 *   5. decoding with NaN/Inf checks (LORA_INVALID).
 * Merge rule (kohya / A1111 / diffusers): W ← W + weight · (alpha / rank) · (up @ down).reshape(W.shape);
 * alpha = rank when the file has none.
 */
import { LoraserveError } from '../core/errors.js';
import { loraInfoFromHeader, detectFormat } from './info.js';
import { type ParsedKey, parseKey } from './key-formats.js';
import { TargetIndex } from './key-resolve.js';
import { peftAlpha, peftConfigsFromMetadata } from './peft-config.js';
import { decodeFactor, decodeScalar, parseSafetensors, type SafetensorsFile, type TensorEntry } from './safetensors.js';
import type { LoraAdapter, LoraFormat, LoraInfo, LoraLayer, LoraTarget } from './types.js';

export interface ParseLoraOptions {
  /** PEFT's adapter_config.json, when it sits beside the weights instead of inside them. */
  adapterConfig?: Record<string, unknown>;
  /** How many shape mismatches to list in a LORA_MISMATCH message (all are counted). */
  maxMismatches?: number;
}

/** One shape disagreement between a LoRA layer and the model's layer. */
export interface LoraShapeMismatch {
  key: string;
  module: string;
  /** e.g. "down [r, 768] / up [320, r]". */
  expected: string;
  got: string;
}

type LoraKey = Extract<ParsedKey, { kind: 'lora' }>;

interface Group {
  first: LoraKey;
  down?: TensorEntry;
  up?: TensorEntry;
  alpha?: TensorEntry;
  keys: string[];
}

/** What a message can say about the base model the file was made for (modelspec / ss_base_model_version / ss_v2). */
function trainedFor(info: LoraInfo): string | null {
  const v = info.baseModelVersion;
  if (v && !v.startsWith('ss_v2')) return v;
  return info.baseModel === 'unknown' ? null : info.baseModel;
}

/** A key without its role suffix: `lora_unet_x.lora_down.weight` → `lora_unet_x`, `unet.m.lora_A.weight` → `unet.m`. */
function stemOf(key: string): string {
  return key.replace(/\.(lora_down\.weight|lora_up\.weight|alpha|lora_[AB](\.[^.]+)?\.weight|(lora|lora_linear_layer)\.(down|up)\.weight|(down|up)\.weight)$/, '');
}

const fmt = (shape: readonly number[]): string => `[${shape.join(', ')}]`;

function expectedShapes(t: LoraTarget): string {
  const k = t.kernel ?? [1, 1];
  const down = t.kind === 'conv' && (k[0] > 1 || k[1] > 1) ? `[r, ${t.inFeatures}, ${k[0]}, ${k[1]}]` : `[r, ${t.inFeatures}]`;
  return `down ${down} / up [${t.outFeatures}, r]`;
}

/**
 * Checks down/up shapes against the target; returns the rank and down kernel, or a reason.
 * Accepted: linear down [r, in] / up [out, r]; 1×1 convs and linear layers also accept the 4-D forms
 * [r, in, 1, 1] / [out, r, 1, 1] (kohya writes those for SD1's 1×1 proj_in/proj_out; the delta is the same
 * matrix); a k×k conv takes down [r, in, k, k] / up [out, r, 1, 1] (LoCon).
 */
function checkShapes(t: LoraTarget, down: readonly number[], up: readonly number[]): { rank: number; kernel: [number, number] } | string {
  const rank = down[0];
  const k = t.kernel ?? [1, 1];
  const spatial = t.kind === 'conv' && (k[0] > 1 || k[1] > 1);
  let kernel: [number, number] = [1, 1];
  if (down.length === 2) {
    if (spatial) return 'a 2-D down cannot adapt a k×k convolution';
  } else if (down.length === 4) {
    kernel = [down[2], down[3]];
    if (spatial ? kernel[0] !== k[0] || kernel[1] !== k[1] : kernel[0] !== 1 || kernel[1] !== 1) return 'down kernel differs';
  } else {
    return 'down is neither 2-D nor 4-D';
  }
  if (down[1] !== t.inFeatures) return 'in features differ';
  if (up.length !== 2 && !(up.length === 4 && up[2] === 1 && up[3] === 1)) return 'up is neither [out, r] nor [out, r, 1, 1]';
  if (up[0] !== t.outFeatures) return 'out features differ';
  if (up[1] !== rank) return 'rank differs';
  if (rank < 1) return 'rank 0';
  return { rank, kernel };
}

function groupKeys(file: SafetensorsFile): { groups: Map<string, Group>; unknown: string[] } {
  const groups = new Map<string, Group>();
  const unknown: string[] = [];
  for (const [name, entry] of file.header.tensors) {
    const k = parseKey(name);
    if (k.kind !== 'lora') {
      unknown.push(name);
      continue;
    }
    let g = groups.get(k.group);
    if (!g) groups.set(k.group, (g = { first: k, keys: [] }));
    if (k.role !== 'alpha' && (g.first.role === 'alpha' || g.first.family !== k.family)) g.first = k;
    g.keys.push(name);
    if (g[k.role]) {
      throw new LoraserveError('LORA_INVALID', `${file.source}: two ${k.role} tensors for the same layer ("${name}")`, {
        file: file.source,
        problem: 'duplicate-layer',
        tensor: name,
      });
    }
    g[k.role] = entry;
  }
  return { groups, unknown };
}

/** Parses a LoRA file in memory against the model's targetable layers. */
export function parseLora(name: string, bytes: Uint8Array, targets: readonly LoraTarget[], options: ParseLoraOptions = {}): LoraAdapter {
  const file = parseSafetensors(bytes, name);
  const { header } = file;
  const info = loraInfoFromHeader(header);
  const { format: detected, unsupported } = detectFormat(header);
  if (unsupported) {
    throw new LoraserveError(
      'LORA_UNSUPPORTED',
      `LoRA '${name}': ${unsupported.network} is not supported yet (key "${unsupported.key}"); only LoRA and LoCon (lora_down/lora_up, lora_A/lora_B) files can be applied`,
      { lora: name, network: unsupported.network, key: unsupported.key },
    );
  }

  const { groups, unknown } = groupKeys(file);
  const index = new TargetIndex(targets);
  const peft = peftConfigsFromMetadata(header.metadata, options.adapterConfig);
  const unmatched = [...unknown];
  const mismatches: LoraShapeMismatch[] = [];
  const seen = new Map<string, string>();
  let unetNaming: LoraAdapter['unetNaming'] = null;
  type Pending = { g: Group; down: TensorEntry; up: TensorEntry; target: LoraTarget; rank: number; kernel: [number, number] };
  const pending: Pending[] = [];

  for (const g of groups.values()) {
    const stem = stemOf(g.keys[0]);
    if (!g.down || !g.up) {
      // A lone alpha (e.g. of a layer a converter dropped) changes nothing; a lone down or up is a broken file.
      if (!g.down && !g.up) {
        unmatched.push(...g.keys);
        continue;
      }
      throw new LoraserveError('LORA_INVALID', `${name}: layer "${stem}" has a ${g.down ? 'down' : 'up'} tensor but no ${g.down ? 'up' : 'down'}`, {
        file: name,
        problem: 'incomplete-layer',
        tensor: stem,
      });
    }
    const upRank = g.up.shape[1];
    if (g.down.shape.length < 2 || g.up.shape.length < 2 || upRank !== g.down.shape[0]) {
      throw new LoraserveError(
        'LORA_INVALID',
        `${name}: layer "${stem}" has down ${fmt(g.down.shape)} and up ${fmt(g.up.shape)}, whose ranks disagree`,
        { file: name, problem: 'rank-mismatch', tensor: stem },
      );
    }
    const r = index.resolve(g.first);
    if (r.kind === 'none') {
      unmatched.push(...g.keys);
      continue;
    }
    if (r.kind === 'ambiguous') {
      throw new LoraserveError(
        'LORA_MISMATCH',
        `LoRA '${name}': "${stem}" could name ${r.candidates.map((c) => c.module).join(' or ')} in this model`,
        { lora: name, key: stem, candidates: r.candidates.map((c) => c.module) },
      );
    }
    const t = r.target;
    if (g.first.naming === 'kohya' && t.part === 'unet') unetNaming ??= r.naming === 'ldm' ? 'ldm' : 'diffusers';
    const moduleKey = `${t.part}|${t.module}`;
    const previous = seen.get(moduleKey);
    if (previous !== undefined) {
      throw new LoraserveError('LORA_INVALID', `${name}: "${previous}" and "${stem}" both adapt ${t.module}`, {
        file: name,
        problem: 'duplicate-layer',
        module: t.module,
      });
    }
    seen.set(moduleKey, stem);
    const shapes = checkShapes(t, g.down.shape, g.up.shape);
    if (typeof shapes === 'string') {
      mismatches.push({ key: stem, module: t.module, expected: expectedShapes(t), got: `down ${fmt(g.down.shape)} / up ${fmt(g.up.shape)}` });
      continue;
    }
    pending.push({ g, down: g.down, up: g.up, target: t, ...shapes });
  }

  if (mismatches.length > 0) {
    const max = options.maxMismatches ?? 3;
    const base = trainedFor(info) ? ` (the file says it was trained for ${trainedFor(info)})` : '';
    const list = mismatches
      .slice(0, max)
      .map((m) => `${m.module}: expected ${m.expected}, got ${m.got}`)
      .join('; ');
    throw new LoraserveError(
      'LORA_MISMATCH',
      `LoRA '${name}' does not fit this model${base}: ${mismatches.length} of ${mismatches.length + pending.length} matched layers have other shapes — ${list}${mismatches.length > max ? '; …' : ''}`,
      { lora: name, mismatches: mismatches.slice(0, 20), count: mismatches.length, baseModel: info.baseModel, baseModelVersion: info.baseModelVersion },
    );
  }
  if (pending.length === 0) {
    const examples = unmatched.slice(0, 3).map((k) => `"${k}"`).join(', ');
    throw new LoraserveError(
      'LORA_MISMATCH',
      `LoRA '${name}' matches none of this model's ${targets.length} LoRA-targetable layers (${header.tensors.size} tensors${examples ? `, e.g. ${examples}` : ''}${trainedFor(info) ? `; trained for ${trainedFor(info)}` : ''})`,
      { lora: name, unmatchedKeys: unmatched.slice(0, 20), unmatchedCount: unmatched.length, baseModel: info.baseModel },
    );
  }

  // Keep the model's layer order (stable plans, stable graph inputs), not the file's.
  const order = new Map(targets.map((t, i) => [`${t.part}|${t.module}`, i]));
  pending.sort((a, b) => (order.get(`${a.target.part}|${a.target.module}`) ?? 0) - (order.get(`${b.target.part}|${b.target.module}`) ?? 0));

  const layers: LoraLayer[] = [];
  let bytesHeld = 0;
  let alphaTensors = 0;
  let alphaFromConfig = 0;
  for (const { g, down: downEntry, up: upEntry, target: t, rank, kernel } of pending) {
    let alpha = rank;
    let scale = 1;
    if (g.alpha) {
      alpha = decodeScalar(file, g.alpha);
      scale = alpha / rank;
      alphaTensors++;
    } else if (g.first.family !== 'kohya') {
      const p = peftAlpha(peft, t.part, t.module, rank);
      if (p) {
        ({ alpha, scale } = p);
        alphaFromConfig++;
      }
    }
    const down = decodeFactor(file, downEntry);
    const up = decodeFactor(file, upEntry);
    bytesHeld += down.byteLength + up.byteLength;
    layers.push({
      part: t.part,
      module: t.module,
      kind: t.kind,
      rank,
      alpha,
      scale,
      down,
      up,
      downKernel: kernel,
      inFeatures: t.inFeatures,
      outFeatures: t.outFeatures,
      key: stemOf(g.keys[0]),
    });
  }

  const format: LoraFormat = detected ?? 'kohya';
  const alphas = [...new Set(layers.map((l) => l.alpha))].sort((a, b) => a - b);
  return {
    name,
    format: format === 'kohya' && layers.some((l) => l.kind === 'conv' && (l.downKernel[0] > 1 || l.downKernel[1] > 1)) ? 'locon' : format,
    unetNaming,
    layers,
    unmatchedKeys: unmatched,
    metadata: header.metadata,
    info: {
      ...info,
      ranks: [...new Set(layers.map((l) => l.rank))].sort((a, b) => a - b),
      alphas,
      alphaSource: alphaTensors > 0 ? 'tensors' : alphaFromConfig > 0 ? 'metadata' : 'none',
    },
    bytes: bytesHeld,
  };
}
