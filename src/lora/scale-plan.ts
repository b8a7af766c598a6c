/**
 * The scale plan of one request: for every targeted module, which LoRA layers apply and with what effective
 * scale, so that  ΔW(module) = Σ scale_i · up_i @ down_i.
 *
 *   scale = (te ?? weight for text-encoder layers, unet ?? weight for UNet layers) × block weight × alpha/rank
 *
 * A1111 semantics: `<lora:name:te:unet>` multipliers (extensions-builtin/Lora/networks.py te_multiplier /
 * unet_multiplier), block weights as the LoRA Block Weight extension (block-weights.ts; BASE scales the text
 * encoder). Negative and > 1 weights are allowed, as in A1111. Layers whose effective scale is exactly 0 are
 * left out (they change nothing, and leaving them out keeps the low-rank branches short).
 */
import { LoraserveError } from '../core/errors.js';
import { blockIdOf, blockWeight, normalizeBlockWeights } from './block-weights.js';
import { SD_UNET_LAYOUT, type UnetLayout } from './ldm-names.js';
import type { LoraAdapter, LoraLayer, LoraRequest } from './types.js';

export interface ScaledLayer {
  /** The request's name for the LoRA. */
  lora: string;
  layer: LoraLayer;
  /** The user's weight for this layer: part weight × block weight. */
  weight: number;
  /** weight × layer.scale (alpha/rank): multiply up @ down by this. */
  scale: number;
}

export interface ScalePlan {
  /** UNet module path → its LoRA layers, in request order. */
  unet: Map<string, ScaledLayer[]>;
  /** Text-encoder module path → its LoRA layers, in request order. */
  te: Map<string, ScaledLayer[]>;
  /** Per part, the largest summed rank over its modules (the widest concatenated low-rank branch). */
  maxRank: { unet: number; te: number };
  /** The request, canonicalised: equal signatures mean equal deltas for the same adapters. */
  signature: string;
}

export interface ScalePlanOptions {
  /** UNet layout for block ids (default SD1/SD2: 2 layers per block); `unetLayoutFromModules(targets)` gives the model's. */
  layout?: UnetLayout;
}

export type AdapterLookup = ReadonlyMap<string, LoraAdapter> | ((name: string) => LoraAdapter | undefined);

function finiteOrThrow(v: unknown, what: string, lora: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v)) {
    throw new LoraserveError('INVALID_ARGUMENT', `LoRA '${lora}': ${what} must be a finite number`, { lora, field: what });
  }
  return v;
}

export function planLoraScales(requests: readonly LoraRequest[], adapters: AdapterLookup, options: ScalePlanOptions = {}): ScalePlan {
  const layout = options.layout ?? SD_UNET_LAYOUT;
  const lookup = typeof adapters === 'function' ? adapters : (n: string) => adapters.get(n);
  const names = new Set<string>();
  const used = new Map<LoraAdapter, string>();
  const plan: ScalePlan = { unet: new Map(), te: new Map(), maxRank: { unet: 0, te: 0 }, signature: '' };
  const canonical: unknown[] = [];

  for (const req of requests) {
    if (typeof req.name !== 'string' || req.name === '') throw new LoraserveError('INVALID_ARGUMENT', 'a LoRA in the request has no name');
    if (names.has(req.name)) {
      throw new LoraserveError('INVALID_ARGUMENT', `LoRA '${req.name}' is named twice in one request; give it one entry (with te/unet/blocks if needed)`, {
        lora: req.name,
      });
    }
    names.add(req.name);
    const weight = finiteOrThrow(req.weight, 'weight', req.name);
    const te = req.te === undefined ? weight : finiteOrThrow(req.te, 'te', req.name);
    const unet = req.unet === undefined ? weight : finiteOrThrow(req.unet, 'unet', req.name);
    const blocks = normalizeBlockWeights(req.blocks, req.name);
    const adapter = lookup(req.name);
    if (!adapter) throw new LoraserveError('UNKNOWN_LORA', `unknown LoRA '${req.name}'`, { name: req.name });
    const other = used.get(adapter);
    if (other !== undefined) {
      throw new LoraserveError('INVALID_ARGUMENT', `'${req.name}' and '${other}' are the same LoRA; name it once`, { lora: req.name, same: other });
    }
    used.set(adapter, req.name);
    canonical.push([
      req.name,
      te,
      unet,
      [...blocks.ids].sort(([a], [b]) => (a < b ? -1 : 1)),
      [...blocks.groups].sort(([a], [b]) => (a < b ? -1 : 1)),
    ]);

    for (const layer of adapter.layers) {
      const w = (layer.part === 'te' ? te : unet) * blockWeight(blocks, blockIdOf(layer.part, layer.module, layout));
      const scale = w * layer.scale;
      if (scale === 0) continue;
      const map = layer.part === 'te' ? plan.te : plan.unet;
      let list = map.get(layer.module);
      if (!list) map.set(layer.module, (list = []));
      list.push({ lora: req.name, layer, weight: w, scale });
    }
  }

  for (const part of ['unet', 'te'] as const) {
    for (const list of plan[part].values()) {
      const r = list.reduce((a, s) => a + s.layer.rank, 0);
      if (r > plan.maxRank[part]) plan.maxRank[part] = r;
    }
  }
  plan.signature = JSON.stringify(canonical);
  return plan;
}
