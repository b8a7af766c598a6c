/**
 * `<lora:name:w>` and the other A1111 "extra network" tags: found, removed from the prompt, read into multipliers.
 *
 * Ports AUTOMATIC1111/stable-diffusion-webui v1.9.4:
 *  - `modules/extra_networks.py` `parse_prompt` (`re_extra_net = <(\w+):([^>]+)>`, args split on ':') and
 *    `ExtraNetworkParams` (an arg with exactly one '=' is named: `item.split('=', 2)` giving two parts);
 *  - `extensions-builtin/Lora/extra_networks_lora.py` `ExtraNetworkLora.activate`: te = positional[1] (default 1),
 *    overridden by `te=`; unet = positional[2] (default: te, after its override), overridden by `unet=`;
 *    dyn = positional[3] / `dyn=` (an int);
 *  - `extensions-builtin/Lora/scripts/lora_script.py`: `lyco` is an alias of `lora`.
 *
 * Every `<word:…>` tag is removed from the text, whatever its word, as A1111 does; `hypernet` is refused
 * (INVALID_PROMPT: hypernetworks are not supported here), other unknown words are reported in `ignored` (A1111
 * logs "Skipping unknown extra network" and goes on). A1111 parses tags only in the positive prompt: a tag in the
 * negative prompt is encoded as plain text there, and callers should do the same.
 *
 * Where A1111 fails instead (float('x'), a tag whose first arg is named), it prints the error, skips activating
 * every LoRA of the render and still renders; we refuse the prompt with INVALID_PROMPT naming the tag. Non-finite
 * multipliers ('inf', 'nan', which Python's float() accepts) are refused too.
 */
import { LoraserveError } from '../core/errors.js';
import { asciiDigits } from './python-regex.js';

/** One `<lora:…>` tag as A1111 reads it. */
export interface LoraTag {
  name: string;
  /** Text-encoder multiplier. */
  te: number;
  /** UNet multiplier. */
  unet: number;
  /** `dyn` (dynamic rank for DyLoRA), when given. */
  dyn?: number;
  /** The tag as written, for error messages. */
  source: string;
}

export interface ExtraNetworkTag {
  /** The word before the first ':' (`lora`, `lyco`, `hypernet`, …). */
  kind: string;
  args: string[];
  source: string;
}

export interface ParsedExtraNetworks {
  /** The prompt with every tag removed (nothing else changes: the spaces around a tag stay). */
  prompt: string;
  loras: LoraTag[];
  /** Tags of kinds A1111 would skip as unknown. */
  ignored: ExtraNetworkTag[];
}

/** `<(\w+):([^>]+)>` with Python's Unicode `\w`. */
const RE_EXTRA_NET = /<([\p{L}\p{N}_]+):([^>]+)>/gu;

const LORA_KINDS = new Set(['lora', 'lyco']);

/** Finds and removes the tags of `prompt`. Throws INVALID_PROMPT for `<hypernet:…>` and malformed LoRA tags. */
export function parseExtraNetworks(prompt: string): ParsedExtraNetworks {
  const loras: LoraTag[] = [];
  const ignored: ExtraNetworkTag[] = [];
  const cleaned = prompt.replace(RE_EXTRA_NET, (source: string, kind: string, argText: string) => {
    const args = argText.split(':');
    if (LORA_KINDS.has(kind)) loras.push(loraFromArgs(args, source));
    else if (kind === 'hypernet') {
      throw new LoraserveError('INVALID_PROMPT', `${source}: hypernetworks are not supported (only <lora:…> / <lyco:…> tags are)`, { tag: source });
    } else ignored.push({ kind, args, source });
    return '';
  });
  return { prompt: cleaned, loras, ignored };
}

/** ExtraNetworkParams + ExtraNetworkLora.activate for one tag. */
function loraFromArgs(items: string[], source: string): LoraTag {
  const positional: string[] = [];
  const named = new Map<string, string>();
  for (const item of items) {
    // Python's item.split('=', 2) has exactly two parts only when the item holds exactly one '='.
    const parts = item.split('=');
    if (parts.length === 2) named.set(parts[0], parts[1]);
    else positional.push(item);
  }
  if (positional.length === 0) {
    throw new LoraserveError('INVALID_PROMPT', `${source}: the first argument of a <lora:…> tag must be the LoRA's name`, { tag: source });
  }
  let te = positional.length > 1 ? pyFloat(positional[1], source) : 1.0;
  if (named.has('te')) te = pyFloat(named.get('te')!, source);
  let unet = positional.length > 2 ? pyFloat(positional[2], source) : te;
  if (named.has('unet')) unet = pyFloat(named.get('unet')!, source);
  let dyn = positional.length > 3 ? pyInt(positional[3], source) : undefined;
  if (named.has('dyn')) dyn = pyInt(named.get('dyn')!, source);
  return dyn === undefined ? { name: positional[0], te, unet, source } : { name: positional[0], te, unet, dyn, source };
}

/** Python's float() on a string: surrounding whitespace, '_' between digits, inf/nan words; here finite only. */
const PY_FLOAT = /^[+-]?(?:(?:\d(?:_?\d)*)?\.?\d(?:_?\d)*|\d(?:_?\d)*\.)(?:[eE][+-]?\d(?:_?\d)*)?$/;
function pyFloat(s: string, source: string): number {
  const t = asciiDigits(s.trim());
  if (PY_FLOAT.test(t)) {
    const v = Number(t.replaceAll('_', ''));
    if (Number.isFinite(v)) return v;
  }
  throw new LoraserveError('INVALID_PROMPT', `${source}: ${JSON.stringify(s)} is not a finite number`, { tag: source, value: s });
}

/** Python's int() on a string: optional sign, digits with single '_' between them, surrounding whitespace. */
function pyInt(s: string, source: string): number {
  const t = asciiDigits(s.trim());
  if (/^[+-]?\d(?:_?\d)*$/.test(t)) return Number(t.replaceAll('_', ''));
  throw new LoraserveError('INVALID_PROMPT', `${source}: ${JSON.stringify(s)} is not an integer (dyn)`, { tag: source, value: s });
}

/** A LoRA to apply: the outcome of merging prompt tags with a request's explicit list. */
export interface LoraUse {
  name: string;
  te: number;
  unet: number;
  dyn?: number;
  /** Where the multipliers came from. */
  from: 'prompt' | 'request';
}

/**
 * The LoRAs a render applies, from the prompt's tags and the request's explicit list.
 *
 * - Tags naming the same LoRA twice: A1111's networks.load_networks appends the one network object once per
 *   mention and sets its multipliers from the last mention, so `<lora:a:0.5> <lora:a:0.3>` applies `a` twice at
 *   0.3. LoRA deltas are linear in the multiplier, so that is one use at count × the last multipliers.
 * - The request's explicit list wins over a tag naming the same LoRA (exact name match): an API caller's list is
 *   the deliberate setting; the prompt is often pasted. Request entries keep their order and come first.
 */
export function mergeLoraLists(tags: readonly LoraTag[], requested: ReadonlyArray<{ name: string; te: number; unet: number }>): LoraUse[] {
  const out: LoraUse[] = requested.map((r) => ({ name: r.name, te: r.te, unet: r.unet, from: 'request' as const }));
  const explicit = new Set(requested.map((r) => r.name));
  const byName = new Map<string, { last: LoraTag; count: number }>();
  for (const t of tags) {
    const seen = byName.get(t.name);
    byName.set(t.name, { last: t, count: (seen?.count ?? 0) + 1 });
  }
  for (const [name, { last, count }] of byName) {
    if (explicit.has(name)) continue;
    const use: LoraUse = { name, te: count * last.te, unet: count * last.unet, from: 'prompt' };
    if (last.dyn !== undefined) use.dyn = last.dyn;
    out.push(use);
  }
  return out;
}
