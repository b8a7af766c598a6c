/**
 * `--sweep KEY=V1,V2,…`: the values one field (or one LoRA's weight) takes across a batch, and the cartesian
 * product of several sweeps. The first sweep is a contact sheet's X axis, the second its Y axis, the rest one
 * sheet per combination (A1111's X/Y/Z plot, generalised).
 *
 * Product order is itertools.product's: the first sweep outermost, the last one changing fastest.
 */
import { createHash } from 'node:crypto';
import { LoraserveError } from '../core/errors.js';

/** What a sweep sets: a native field, or the weight of one LoRA (added to `loras` when the line lacks it). */
export type SweepTarget = { kind: 'lora'; name: string } | { kind: 'field'; field: SweepField; numeric: boolean; integer: boolean };

export type SweepField = 'seed' | 'cfg_scale' | 'steps' | 'sampler' | 'scheduler' | 'width' | 'height' | 'clip_skip';

const FIELDS: Readonly<Record<SweepField, { numeric: boolean; integer: boolean }>> = {
  seed: { numeric: true, integer: true },
  cfg_scale: { numeric: true, integer: false },
  steps: { numeric: true, integer: true },
  sampler: { numeric: false, integer: false },
  scheduler: { numeric: false, integer: false },
  width: { numeric: true, integer: true },
  height: { numeric: true, integer: true },
  clip_skip: { numeric: true, integer: true },
};

export interface SweepValue {
  value: number | string;
  /** The value as shown in names and labels: numbers canonical (`0.40` → `0.4`), strings as written. */
  label: string;
}

export interface Sweep {
  /** `lora.catears`, `seed`, … */
  key: string;
  target: SweepTarget;
  values: SweepValue[];
}

function usage(message: string, spec: string): LoraserveError {
  return new LoraserveError('INVALID_ARGUMENT', `--sweep ${spec}: ${message}`, { flag: 'sweep' });
}

/**
 * `a,b,"c,d"` → ['a', 'b', 'c,d']: comma-separated, blanks around a value dropped, a value in double quotes may
 * hold commas (`""` inside quotes is one quote).
 */
export function splitSweepValues(s: string): string[] {
  const out: string[] = [];
  let i = 0;
  for (;;) {
    while (s[i] === ' ' || s[i] === '\t') i++;
    let v = '';
    if (s[i] === '"') {
      i++;
      for (;;) {
        if (i >= s.length) throw new LoraserveError('INVALID_ARGUMENT', `unclosed quote in '${s}'`);
        if (s[i] === '"') {
          if (s[i + 1] === '"') {
            v += '"';
            i += 2;
            continue;
          }
          i++;
          break;
        }
        v += s[i++];
      }
      while (s[i] === ' ' || s[i] === '\t') i++;
      if (i < s.length && s[i] !== ',') throw new LoraserveError('INVALID_ARGUMENT', `text after a quoted value in '${s}'`);
    } else {
      const end = s.indexOf(',', i);
      v = (end < 0 ? s.slice(i) : s.slice(i, end)).trim();
      i = end < 0 ? s.length : end;
      if (v === '') throw new LoraserveError('INVALID_ARGUMENT', `empty value in '${s}'`);
    }
    out.push(v);
    if (i >= s.length) return out;
    i++; // the comma
  }
}

/** One `--sweep` flag. Numbers are checked for form here; their ranges when the requests are checked. */
export function parseSweep(spec: string): Sweep {
  const eq = spec.indexOf('=');
  if (eq <= 0) throw usage('expected KEY=V1,V2,… (e.g. lora.catears=0,0.4,0.8 or seed=1,2,3)', spec);
  const key = spec.slice(0, eq).trim();
  let target: SweepTarget;
  if (key.startsWith('lora.')) {
    const name = key.slice(5);
    if (name === '') throw usage('lora. needs a LoRA name (lora.catears)', spec);
    target = { kind: 'lora', name };
  } else if (key in FIELDS) {
    target = { kind: 'field', field: key as SweepField, ...FIELDS[key as SweepField] };
  } else {
    throw usage(`'${key}' cannot be swept; use lora.NAME, ${Object.keys(FIELDS).join(', ')}`, spec);
  }
  let raw: string[];
  try {
    raw = splitSweepValues(spec.slice(eq + 1));
  } catch (e) {
    throw usage((e as Error).message, spec);
  }
  const numeric = target.kind === 'lora' || target.numeric;
  const values = raw.map((r): SweepValue => {
    if (!numeric) return { value: r, label: r };
    const v = Number(r);
    if (!Number.isFinite(v)) throw usage(`'${r}' is not a number`, spec);
    if (target.kind === 'field' && target.integer && !Number.isInteger(v)) throw usage(`'${r}' is not an integer`, spec);
    return { value: v, label: String(v) };
  });
  const seen = new Set<string>();
  for (const v of values) {
    if (seen.has(v.label)) throw usage(`value ${v.label} is listed twice`, spec);
    seen.add(v.label);
  }
  return { key, target, values };
}

/** Checks a set of sweeps: one sweep per key. */
export function checkSweeps(sweeps: readonly Sweep[]): void {
  const keys = new Set<string>();
  for (const s of sweeps) {
    if (keys.has(s.key)) throw new LoraserveError('INVALID_ARGUMENT', `--sweep ${s.key} is given twice; list all its values in one flag`, { flag: 'sweep' });
    keys.add(s.key);
  }
}

/** Every combination of value indices, first sweep outermost (one empty point when there are no sweeps). */
export function sweepPoints(sweeps: readonly Sweep[]): number[][] {
  let points: number[][] = [[]];
  for (const s of sweeps) points = points.flatMap((p) => s.values.map((_, k) => [...p, k]));
  return points;
}

/**
 * A copy of `body` with the point's values set. A LoRA sweep sets that LoRA's `weight` and drops its `te`/`unet`
 * (which would otherwise override the swept weight); a LoRA the line does not name is appended.
 */
export function applySweepPoint(body: Record<string, unknown>, sweeps: readonly Sweep[], point: readonly number[]): Record<string, unknown> {
  const out: Record<string, unknown> = { ...body };
  sweeps.forEach((s, i) => {
    const v = s.values[point[i]].value;
    if (s.target.kind === 'field') {
      out[s.target.field] = v;
      return;
    }
    const name = s.target.name;
    const loras = Array.isArray(out.loras) ? [...(out.loras as unknown[])] : [];
    const at = loras.findIndex((l) => typeof l === 'object' && l !== null && (l as { name?: unknown }).name === name);
    if (at >= 0) {
      const { te: _te, unet: _unet, ...rest } = loras[at] as Record<string, unknown>;
      loras[at] = { ...rest, weight: v };
    } else {
      loras.push({ name, weight: v });
    }
    out.loras = loras;
  });
  return out;
}

/** `key=label` for each sweep of the point (`lora.catears=0.4`). */
export function pointLabels(sweeps: readonly Sweep[], point: readonly number[]): string[] {
  return sweeps.map((s, i) => `${s.key}=${s.values[point[i]].label}`);
}

const MAX_NAME = 150;

export function shortHash(s: string, hexDigits = 8): string {
  return createHash('sha256').update(s).digest('hex').slice(0, hexDigits);
}

/** A file-name-safe form of a name part: letters, digits and `._+=-` stay, anything else becomes `_`. */
export function safeNamePart(s: string): string {
  return s.replace(/[^A-Za-z0-9._+=-]/g, '_');
}

/**
 * The deterministic name (without extension) of one item: its line number, zero-padded, then the iteration (A1111
 * n_iter > 1) and the sweep values: `0003-lora.catears=0.4-seed=2`. A name longer than 150 characters keeps its
 * start and ends in a hash of the whole.
 */
export function itemName(line: number, lineDigits: number, iteration: number | undefined, labels: readonly string[]): string {
  const parts = [String(line).padStart(lineDigits, '0')];
  if (iteration !== undefined) parts.push(`iter${iteration + 1}`);
  parts.push(...labels.map(safeNamePart));
  const name = parts.join('-');
  if (name.length <= MAX_NAME) return name;
  return `${name.slice(0, MAX_NAME - 9)}~${shortHash(name)}`;
}

/** The PNG file of image k of an item: the item's name, with `-imgK` when the item renders several. */
export function imageFileName(name: string, k: number, batchSize: number): string {
  return batchSize > 1 ? `${name}-img${k}.png` : `${name}.png`;
}
