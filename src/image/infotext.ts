/**
 * AUTOMATIC1111's "infotext": the generation parameters A1111 stores in a PNG's `parameters` text chunk and shows
 * under each image. Ported from AUTOMATIC1111/stable-diffusion-webui v1.9.4:
 *   - writing: `modules/processing.py` create_infotext (field order, None omitted, `k if k == v`), with
 *     `modules/infotext_utils.py` quote(); "Lora hashes" from `extensions-builtin/Lora/extra_networks_lora.py`
 *     activate(), "TI hashes" from `modules/sd_hijack_clip.py` forward().
 *   - reading: `modules/infotext_utils.py` parse_generation_parameters (re_param, unquote).
 *
 * Shape of the text:
 *   <prompt, possibly several lines>
 *   Negative prompt: <negative prompt, possibly several lines>      (line absent when the negative prompt is empty)
 *   Steps: 20, Sampler: Euler a, Schedule type: Karras, CFG scale: 7, Seed: 123, Size: 512x512, …
 *
 * Batches: since v1.2 A1111 writes no "Batch size"/"Batch pos" (removed in commit 00dab8f1); each image simply
 * carries its own seed (A1111's all_seeds = seed + i when the variation strength is 0) — pass that seed here.
 */

/** A "name: hash" pair as listed in "Lora hashes" / "TI hashes". */
export interface NameHash {
  name: string;
  hash: string;
}

export type InfotextValue = string | number | boolean | null | undefined;

/**
 * The fields A1111 v1.9.4 writes, in its order. Optional fields left undefined are omitted, as A1111 omits None.
 * Numbers print as Python would print them, with integral values as ints (`CFG scale: 7`, `CFG scale: 7.5`) —
 * that is what A1111's UI writes (gradio hands integral slider values over as ints); its HTTP API, which parses
 * cfg_scale as a float, would write `7.0`.
 */
export interface InfotextParams {
  prompt: string;
  negativePrompt: string;
  steps: number;
  sampler: string;
  /** "Karras", "Exponential", … ; A1111 writes "Automatic" when the user left the default. */
  scheduleType?: string;
  cfgScale: number;
  /** instruct-pix2pix only. */
  imageCfgScale?: number;
  /** This image's seed (in a batch: the base seed + index). */
  seed: number;
  /** Face restoration model, only when restoration was applied. */
  faceRestoration?: string;
  width: number;
  height: number;
  /** A1111 "short hash": first 10 hex digits of the checkpoint file's sha256. */
  modelHash?: string;
  modelName?: string;
  vaeHash?: string;
  vaeName?: string;
  /** Written only with a non-zero variationSeedStrength, like A1111. */
  variationSeed?: number;
  variationSeedStrength?: number;
  seedResizeFrom?: { width: number; height: number };
  /** img2img / hires fix. */
  denoisingStrength?: number;
  /** Written only when > 1. */
  clipSkip?: number;
  /** eta noise seed delta; written only when non-zero. */
  ensd?: number;
  initImageHash?: string;
  /** "CPU" or "NV"; the default "GPU" is not written. */
  rng?: string;
  /** Negative guidance minimum sigma; written only when non-zero. */
  ngms?: number;
  tiling?: boolean;
  /**
   * A1111's extra_generation_params: written after the fixed fields in insertion order. A key equal to a fixed
   * field replaces that field's value in place (Python dict merge semantics); undefined/null omits it.
   */
  extra?: Record<string, InfotextValue>;
  loraHashes?: NameHash[];
  tiHashes?: NameHash[];
  /** Written by A1111 only when the prompt uses ( or [ and the emphasis mode is not "Original". */
  emphasis?: string;
  /** e.g. "v1.9.4", or this server's own version string. */
  version?: string;
  user?: string;
}

/** Python's str() of a number: ints as ints, floats as repr() (shortest round-trip, 'e-05' style exponents). */
export function pythonNumber(n: number): string {
  if (Number.isNaN(n)) return 'nan';
  if (!Number.isFinite(n)) return n > 0 ? 'inf' : '-inf';
  if (Number.isInteger(n)) return Number.isSafeInteger(n) ? String(n) : BigInt(n).toString();
  // JS and Python pick the same shortest digits; they differ only in when they switch to exponent form.
  // Python's repr uses scientific notation for decimal exponents < -4 (and ≥ 16, which no non-integer reaches).
  const [mant, expText] = n.toExponential().split('e');
  const exp = Number(expText);
  if (exp >= -4) return String(n);
  const sign = exp < 0 ? '-' : '+';
  return `${mant}e${sign}${String(Math.abs(exp)).padStart(2, '0')}`;
}

function pythonStr(v: string | number | boolean): string {
  if (typeof v === 'string') return v;
  if (typeof v === 'boolean') return v ? 'True' : 'False';
  return pythonNumber(v);
}

/**
 * A1111 `quote()`: values containing ',', '\n' or ':' are written as a JSON string (non-ASCII kept as is,
 * `json.dumps(ensure_ascii=False)`, which escapes exactly what JSON.stringify escapes). Anything else — a lone
 * '"' included — is written raw.
 */
export function quoteValue(v: string): string {
  return v.includes(',') || v.includes('\n') || v.includes(':') ? JSON.stringify(v) : v;
}

/** extra_networks_lora.py / sd_hijack_clip.py drop ':' and ',' from names so the list parses back. */
function hashList(items: NameHash[] | undefined): string | undefined {
  if (!items || items.length === 0) return undefined;
  return items.map(({ name, hash }) => `${name.replaceAll(':', '').replaceAll(',', '')}: ${hash}`).join(', ');
}

const when = <T>(cond: boolean, v: T): T | undefined => (cond ? v : undefined);

/** Builds the infotext for one image, field for field as A1111 v1.9.4 create_infotext does. */
export function formatInfotext(p: InfotextParams): string {
  // Map.set on an existing key keeps its position and replaces the value, like a Python dict literal with **extra.
  const params = new Map<string, InfotextValue>([
    ['Steps', p.steps],
    ['Sampler', p.sampler],
    ['Schedule type', p.scheduleType],
    ['CFG scale', p.cfgScale],
    ['Image CFG scale', p.imageCfgScale],
    ['Seed', p.seed],
    ['Face restoration', p.faceRestoration],
    ['Size', `${p.width}x${p.height}`],
    ['Model hash', p.modelHash],
    ['Model', p.modelName],
    ['VAE hash', p.vaeHash],
    ['VAE', p.vaeName],
    ['Variation seed', when(!!p.variationSeedStrength, p.variationSeed)],
    ['Variation seed strength', when(!!p.variationSeedStrength, p.variationSeedStrength)],
    [
      'Seed resize from',
      p.seedResizeFrom && p.seedResizeFrom.width > 0 && p.seedResizeFrom.height > 0
        ? `${p.seedResizeFrom.width}x${p.seedResizeFrom.height}`
        : undefined,
    ],
    ['Denoising strength', p.denoisingStrength],
    ['Clip skip', when((p.clipSkip ?? 1) > 1, p.clipSkip)],
    ['ENSD', when(!!p.ensd, p.ensd)],
    ['Init image hash', p.initImageHash],
    ['RNG', when(p.rng !== 'GPU', p.rng)],
    ['NGMS', when(!!p.ngms, p.ngms)],
    ['Tiling', p.tiling ? 'True' : undefined],
  ]);
  // extra_generation_params, then what A1111 adds to it during the run: Lora hashes (extra network
  // activation), TI hashes and Emphasis (prompt conditioning).
  for (const [k, v] of Object.entries(p.extra ?? {})) params.set(k, v);
  const lora = hashList(p.loraHashes);
  if (lora !== undefined) params.set('Lora hashes', lora);
  const ti = hashList(p.tiHashes);
  if (ti !== undefined) params.set('TI hashes', ti);
  if (p.emphasis !== undefined) params.set('Emphasis', p.emphasis);
  params.set('Version', p.version);
  params.set('User', p.user);

  const parts: string[] = [];
  for (const [k, v] of params) {
    if (v === undefined || v === null) continue;
    const s = pythonStr(v);
    parts.push(k === s ? k : `${k}: ${quoteValue(s)}`);
  }
  const negative = p.negativePrompt ? `\nNegative prompt: ${p.negativePrompt}` : '';
  return `${p.prompt}${negative}\n${parts.join(', ')}`.trim();
}

// re_param from infotext_utils.py. Python's str-pattern \w is Unicode-aware, JS's is not: spelled out with
// \p{L}\p{N}_. Python's '.' matches anything but '\n'; JS's also stops at '\r', U+2028 and U+2029, hence [^\n].
const RE_PARAM = /\s*([\p{L}\p{N}_][\p{L}\p{N}_ \-/]+):\s*("(?:\\[^\n]|[^\\"])+"|[^,]*)(?:,|$)/gu;

export interface ParsedInfotext {
  prompt: string;
  negativePrompt: string;
  /** Every "Key: value" of the parameter line, values unquoted, in order of appearance. */
  params: Record<string, string>;
}

/** A1111 unquote(): a JSON-quoted value is decoded; one that is not valid JSON is kept as written. */
function unquote(v: string): string {
  if (v.length === 0 || v[0] !== '"' || v[v.length - 1] !== '"') return v;
  try {
    const r: unknown = JSON.parse(v);
    return typeof r === 'string' ? r : v;
  } catch {
    return v;
  }
}

/**
 * Splits an infotext back into prompt, negative prompt and parameters (A1111 parse_generation_parameters,
 * without the parts that need A1111's runtime: styles, defaults for missing keys, "Size-1"/"Size-2" splitting,
 * hires-fix back-compat). The last line counts as the parameter line only if it holds at least 3 "Key: value"
 * pairs; otherwise it belongs to the prompt. Every prompt line is trimmed, as in A1111.
 */
export function parseInfotext(text: string): ParsedInfotext {
  const all = text.trim().split('\n');
  let lastLine = all.pop() as string;
  const lines = all;
  if ([...lastLine.matchAll(RE_PARAM)].length < 3) {
    lines.push(lastLine);
    lastLine = '';
  }

  let prompt = '';
  let negativePrompt = '';
  let doneWithPrompt = false;
  for (let line of lines) {
    line = line.trim();
    if (line.startsWith('Negative prompt:')) {
      doneWithPrompt = true;
      line = line.slice(16).trim();
    }
    if (doneWithPrompt) negativePrompt += (negativePrompt === '' ? '' : '\n') + line;
    else prompt += (prompt === '' ? '' : '\n') + line;
  }

  const params: Record<string, string> = {};
  for (const m of lastLine.matchAll(RE_PARAM)) {
    const k = m[1];
    const v = m[2];
    // A1111 indexes v[0], which raises on an empty value; its except clause then drops the key.
    if (v.length === 0) continue;
    params[k] = v[0] === '"' && v[v.length - 1] === '"' ? unquote(v) : v;
  }
  return { prompt, negativePrompt, params };
}
