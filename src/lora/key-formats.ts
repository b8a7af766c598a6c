/**
 * What one tensor key of a LoRA file says: which format family, which part (UNet / text encoder), which
 * module (still in the file's own naming), and which role (down, up, alpha). Pure key-mapping functions in
 * the manner of diffusers `src/diffusers/loaders/lora_conversion_utils.py`, one rule per format, each with
 * the reason it exists. Unlike diffusers we never guess a module path by replacing `_` with `.`: kohya
 * names are matched against the model's own module list later (key-resolve.ts).
 *
 * Network types we cannot apply as a low-rank pair (LoHa, LoKr, DoRA, …) are recognised here by name so
 * that the file is refused as a whole (LORA_UNSUPPORTED), never half-applied.
 */
import type { LoraPart } from './types.js';

export type KeyRole = 'down' | 'up' | 'alpha';

/** Network types recognised by their keys and refused (A1111 `extensions-builtin/Lora/network_*.py` names them). */
export type UnsupportedNetwork =
  | 'LoHa'
  | 'LoKr'
  | 'DoRA'
  | 'IA3'
  | 'GLoRA'
  | 'OFT'
  | 'full weight difference (LyCORIS "full")'
  | 'LyCORIS norm-layer weights'
  | 'LyCORIS sparse bias'
  | 'LoCon with Tucker/CP decomposition (lora_mid)'
  | 'PEFT embedding LoRA';

/** Format family of a key; kohya-style keys are `kohya` here (LoCon is decided from the down shapes). */
export type KeyFamily = 'kohya' | 'diffusers-attnprocs' | 'diffusers' | 'peft';

/** The part a key's prefix names: `te2` is SDXL's second text encoder, `other` a non-SD model (`transformer.`). */
export type KeyPart = LoraPart | 'te2' | 'other';

export type ParsedKey =
  | {
      kind: 'lora';
      family: KeyFamily;
      /** null: the key has no part prefix (old attn-procs files, bare PEFT); resolved by looking the module up. */
      part: KeyPart | null;
      /** kohya: the module with `_` separators (`down_blocks_0_attentions_0_proj_in`); others: the dotted module path. */
      name: string;
      naming: 'kohya' | 'path';
      role: KeyRole;
      /** Groups the down/up/alpha keys of one layer. */
      group: string;
    }
  | { kind: 'unsupported'; network: UnsupportedNetwork }
  | { kind: 'embedding'; name: string }
  | { kind: 'unknown' };

// kohya-ss `networks/lora.py`: LORA_PREFIX_UNET = "lora_unet", LORA_PREFIX_TEXT_ENCODER = "lora_te";
// SDXL trainers write lora_te1_ / lora_te2_. The module path follows with `.` replaced by `_`, then a `.` and
// the tensor's role. Checked te1/te2 before te so `lora_te1_…` does not read as part `te` + name `1_…`.
const KOHYA = /^lora_(unet|te1|te2|te)_([^.]+)\.(.+)$/;

// Suffixes of kohya-named keys. lora_down/lora_up/alpha: plain LoRA and LoCon (kohya `networks/lora.py`,
// LyCORIS `locon`). The rest are other LyCORIS / kohya network types, listed so a file using them is refused
// by name: A1111 network_hada.py (hada_*), network_lokr.py (lokr_*), network_ia3.py (weight + on_input),
// network_glora.py (a1/a2/b1/b2), network_oft.py (oft_blocks / oft_diag), network_full.py (diff, diff_b),
// network_norm.py (w_norm, b_norm); dora_scale is kohya/LyCORIS DoRA; lora_mid is LoCon's Tucker core.
const KOHYA_ROLES: Record<string, KeyRole> = { 'lora_down.weight': 'down', 'lora_up.weight': 'up', alpha: 'alpha' };
const KOHYA_UNSUPPORTED: Array<[RegExp, UnsupportedNetwork]> = [
  [/^hada_(w1_a|w1_b|w2_a|w2_b|t1|t2)$/, 'LoHa'],
  [/^lokr_(w1|w1_a|w1_b|w2|w2_a|w2_b|t2)$/, 'LoKr'],
  [/^dora_scale$/, 'DoRA'],
  [/^(on_input|weight)$/, 'IA3'],
  [/^(a1|a2|b1|b2)\.weight$/, 'GLoRA'],
  [/^(oft_blocks|oft_diag|oft_R)$/, 'OFT'],
  [/^(diff|diff_b)$/, 'full weight difference (LyCORIS "full")'],
  [/^(w_norm|b_norm)$/, 'LyCORIS norm-layer weights'],
  [/^bias_(indices|values|size)$/, 'LyCORIS sparse bias'],
  [/^lora_mid\.weight$/, 'LoCon with Tucker/CP decomposition (lora_mid)'],
];

function kohyaPart(prefix: string): KeyPart {
  if (prefix === 'unet') return 'unet';
  if (prefix === 'te2') return 'te2';
  return 'te'; // lora_te_ (SD1/SD2) and lora_te1_ (SDXL's first encoder, the same CLIP ViT-L as SD1)
}

/**
 * Strips the part prefix of a dotted key: diffusers writes `unet.` / `text_encoder.` / `text_encoder_2.`
 * (`LoraLoaderMixin.save_lora_weights`), PEFT's `get_peft_model_state_dict` + `save_pretrained` writes
 * `base_model.model.` before the model's own names; `transformer.` is SD3/Flux, which has no target here.
 */
function splitPathPrefix(path: string): { part: KeyPart | null; module: string } {
  let p = path;
  if (p.startsWith('base_model.model.')) p = p.slice('base_model.model.'.length);
  if (p.startsWith('unet.')) return { part: 'unet', module: p.slice(5) };
  if (p.startsWith('text_encoder.')) return { part: 'te', module: p.slice('text_encoder.'.length) };
  if (p.startsWith('text_encoder_2.')) return { part: 'te2', module: p.slice('text_encoder_2.'.length) };
  if (p.startsWith('transformer.')) return { part: 'other', module: p.slice('transformer.'.length) };
  // A bare CLIP path is the text encoder (PEFT on the text encoder alone; old diffusers text LoRAs).
  if (p.startsWith('text_model.')) return { part: 'te', module: p };
  return { part: null, module: p };
}

// Old diffusers attention processors (diffusers ≤ 0.20 `save_attn_procs`, `LoRAAttnProcessor`): the UNet's
// attention modules get `processor.to_q_lora` … `processor.to_out_lora` (to_out_lora adapts `to_out.0`); the
// text encoder's CLIP attention got the same names without `processor.` on `self_attn`, adapting
// q_proj/k_proj/v_proj/out_proj (diffusers `_convert_text_encoder_lora_key` maps q.proj.lora ↔ to_q_lora).
const ATTNPROC = /^(.*?)(\.processor)?\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$/;
const ATTNPROC_ALPHA = /^(.*?)(\.processor)?\.(to_q|to_k|to_v|to_out)_lora\.alpha$/;
const UNET_ATTNPROC: Record<string, string> = { to_q: 'to_q', to_k: 'to_k', to_v: 'to_v', to_out: 'to_out.0' };
const CLIP_ATTNPROC: Record<string, string> = { to_q: 'q_proj', to_k: 'k_proj', to_v: 'v_proj', to_out: 'out_proj' };
// diffusers 0.18–0.20 text encoder `PatchedLoraProjection`: `<module>.lora_linear_layer.down.weight`.
const LINEAR_LAYER = /^(.*)\.lora_linear_layer\.(down|up)\.weight$/;
// diffusers 0.21 `LoRACompatibleLinear/Conv`: `<module>.lora.down.weight`.
const COMPAT = /^(.*)\.lora\.(down|up)\.weight$/;
// PEFT: `<module>.lora_A[.<adapter>].weight` (down) / `lora_B` (up); `lora_magnitude_vector` is PEFT's DoRA,
// `lora_embedding_A/B` adapts an nn.Embedding.
const PEFT = /^(.*)\.lora_(A|B)(?:\.[^.]+)?\.weight$/;
const PEFT_DORA = /\.lora_magnitude_vector(\.[^.]+)?(\.weight)?$/;
const PEFT_EMBEDDING = /\.lora_embedding_(A|B)(\.[^.]+)?$/;
// A1111 bundles textual-inversion embeddings in a LoRA as `bundle_emb.<name>.<key>` (networks.py).
const BUNDLE = /^bundle_emb\.([^.]+)\./;

function pathKey(family: KeyFamily, dotted: string, role: KeyRole, module?: (m: string) => string): ParsedKey {
  const { part, module: m0 } = splitPathPrefix(dotted);
  const m = module ? module(m0) : m0;
  return { kind: 'lora', family, part, name: m, naming: 'path', role, group: `p|${part ?? '?'}|${m}` };
}

/** Classifies one key (the tensor name). Pure. */
export function parseKey(key: string): ParsedKey {
  const bundle = BUNDLE.exec(key);
  if (bundle) return { kind: 'embedding', name: bundle[1] };

  const k = KOHYA.exec(key);
  if (k) {
    const [, prefix, name, suffix] = k;
    const role = KOHYA_ROLES[suffix];
    if (role) {
      const part = kohyaPart(prefix);
      return { kind: 'lora', family: 'kohya', part, name, naming: 'kohya', role, group: `k|${part}|${name}` };
    }
    for (const [re, network] of KOHYA_UNSUPPORTED) if (re.test(suffix)) return { kind: 'unsupported', network };
    return { kind: 'unknown' };
  }

  if (PEFT_DORA.test(key)) return { kind: 'unsupported', network: 'DoRA' };
  if (PEFT_EMBEDDING.test(key)) return { kind: 'unsupported', network: 'PEFT embedding LoRA' };
  const peft = PEFT.exec(key);
  if (peft) return pathKey('peft', peft[1], peft[2] === 'A' ? 'down' : 'up');

  const ap = ATTNPROC.exec(key) ?? ATTNPROC_ALPHA.exec(key);
  if (ap) {
    const [, base, processor, proj] = ap;
    const role: KeyRole = ap[4] === undefined ? 'alpha' : ap[4] === 'down' ? 'down' : 'up';
    // `processor.` only ever sits on UNet attention; CLIP's `self_attn` takes the q_proj… names.
    const clip = !processor && /(^|\.)self_attn$/.test(base);
    return pathKey('diffusers-attnprocs', base, role, (m) => `${m}.${(clip ? CLIP_ATTNPROC : UNET_ATTNPROC)[proj]}`);
  }
  const ll = LINEAR_LAYER.exec(key);
  if (ll) return pathKey('diffusers-attnprocs', ll[1], ll[2] === 'down' ? 'down' : 'up');
  const compat = COMPAT.exec(key);
  if (compat) return pathKey('diffusers', compat[1], compat[2] === 'down' ? 'down' : 'up');

  // Per-layer alpha next to a dotted key (diffusers' converted `network_alphas`, some PEFT exporters):
  // `<prefix><module>.alpha`, also after `.lora` / `.lora_linear_layer`.
  if (key.endsWith('.alpha')) {
    const stem = key.slice(0, -'.alpha'.length).replace(/\.(lora|lora_linear_layer)$/, '');
    return pathKey('peft', stem, 'alpha');
  }
  return { kind: 'unknown' };
}

/** kohya's name of a module: its path with `.` → `_` (kohya-ss networks/lora.py `lora_name.replace(".", "_")`). */
export function kohyaName(module: string): string {
  return module.replace(/\./g, '_');
}
