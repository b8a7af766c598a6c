/**
 * The plan of a batch: every input line × its iterations (A1111 n_iter) × every sweep point → one item with a
 * deterministic name, a fully spelled-out native body (defaults filled in, so the manifest records exactly what
 * was asked for and the in-process and --server runs ask for the same thing) and its PNG file names. Each body
 * is checked with the same conversion the server uses; a bad one is an error naming its line.
 */
import { DEFAULT_NATIVE, NATIVE_FIELDS, nativeBodyToRequest, type NativeBody } from '../engine/native-request.js';
import type { InputLine, LineNote, ParsedInput } from './batch-input.js';
import { applySweepPoint, imageFileName, itemName, pointLabels, shortHash, type Sweep, sweepPoints } from './batch-sweep.js';

export interface PlanItem {
  /** The item's name (its PNG's name without extension, before any `-imgK`); unique in the plan. */
  key: string;
  line: number;
  /** 0-based A1111 n_iter index (0 elsewhere). */
  iteration: number;
  /** Value index per sweep. */
  point: number[];
  /** `key=value` per sweep. */
  labels: string[];
  /** Canonical native body; `seed` is -1 until the manifest gives it one (Manifest.resolveSeeds). */
  body: Record<string, unknown>;
  /**
   * Items that share one picked seed when theirs is -1: every item of a line (its name's line part), so a
   * sweep compares like with like, as A1111's X/Y/Z plot fixes the seed before its grid.
   */
  seedGroup: string;
  /** Added to the group's seed (A1111 n_iter: iteration k starts at seed + k·batch_size). */
  seedOffset: number;
  batchSize: number;
  /** One PNG per image of the batch. */
  files: string[];
}

/** The items of one line and iteration: one contact sheet (or one per Z value). */
export interface PlanGroup {
  line: number;
  iteration: number;
  nIter: number;
  prompt: string;
  items: PlanItem[];
}

export interface Plan {
  items: PlanItem[];
  /** Zero-padded width of the line numbers in names. */
  lineDigits: number;
  groups: PlanGroup[];
  errors: LineNote[];
}

/** The native defaults as native fields: what a line that leaves a field out renders with. */
export function baseDefaults(): Record<string, unknown> {
  const d = DEFAULT_NATIVE;
  return { negative_prompt: '', sampler: d.sampler, scheduler: d.scheduler, steps: d.steps, cfg_scale: d.cfgScale, seed: -1, rng: d.rng, width: d.width, height: d.height, batch_size: 1, flavor: 'native' };
}

const LORA_ORDER = ['name', 'weight', 'te', 'unet', 'blocks'];

/** Keys in NATIVE_FIELDS order (and LoRA keys in theirs), undefined dropped: the same request ⇒ the same JSON. */
export function canonicalBody(b: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(NATIVE_FIELDS)) {
    const v = b[k];
    if (v === undefined) continue;
    if (k === 'loras' && Array.isArray(v)) {
      out.loras = v.map((l) => {
        if (typeof l !== 'object' || l === null) return l;
        const o: Record<string, unknown> = {};
        for (const lk of LORA_ORDER) if ((l as Record<string, unknown>)[lk] !== undefined) o[lk] = (l as Record<string, unknown>)[lk];
        for (const [lk, lv] of Object.entries(l)) if (!(lk in o) && lv !== undefined) o[lk] = lv;
        return o;
      });
    } else out[k] = v;
  }
  for (const [k, v] of Object.entries(b)) if (!(k in out) && v !== undefined) out[k] = v; // unknown: kept for the error
  return out;
}

function checkBody(body: Record<string, unknown>): string | undefined {
  try {
    nativeBodyToRequest(body, { randomSeed: () => 0 });
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

export function buildPlan(input: ParsedInput, sweeps: readonly Sweep[], defaults: Record<string, unknown>): Plan {
  const maxLine = Math.max(0, ...input.lines.map((l) => l.line));
  const digits = Math.max(4, String(maxLine).length);
  const plan: Plan = { items: [], lineDigits: digits, groups: [], errors: [...input.errors] };
  const points = sweepPoints(sweeps);
  const names = new Set<string>();
  for (const l of input.lines) addLine(plan, l, sweeps, points, defaults, digits, names);
  plan.errors.sort((a, b) => a.line - b.line);
  return plan;
}

function addLine(plan: Plan, l: InputLine, sweeps: readonly Sweep[], points: number[][], defaults: Record<string, unknown>, digits: number, names: Set<string>): void {
  const base = { ...baseDefaults(), ...defaults, ...l.body };
  const baseProblem = checkBody(base);
  if (baseProblem) {
    plan.errors.push({ line: l.line, message: baseProblem });
    return;
  }
  const problems = new Set<string>();
  for (let it = 0; it < l.nIter; it++) {
    const group: PlanGroup = { line: l.line, iteration: it, nIter: l.nIter, prompt: String(base.prompt), items: [] };
    for (const point of points) {
      const body = canonicalBody(applySweepPoint(base, sweeps, point));
      const labels = pointLabels(sweeps, point);
      const problem = checkBody(body);
      if (problem) {
        problems.add(sweeps.length ? `${labels.join(' ')}: ${problem}` : problem);
        continue;
      }
      const batchSize = (body.batch_size as number | undefined) ?? 1;
      // A1111 n_iter: iteration k renders seeds seed + k·batch_size onwards (processing.py all_seeds).
      const seedOffset = it * batchSize;
      if (typeof body.seed === 'number' && body.seed !== -1) body.seed = body.seed + seedOffset;
      let key = itemName(l.line, digits, l.nIter > 1 ? it : undefined, labels);
      if (names.has(key)) key = `${key}~${shortHash(JSON.stringify([l.line, it, labels]))}`;
      names.add(key);
      const item: PlanItem = {
        key,
        line: l.line,
        iteration: it,
        point,
        labels,
        body,
        seedGroup: itemName(l.line, digits, undefined, []),
        seedOffset,
        batchSize,
        files: Array.from({ length: batchSize }, (_, k) => imageFileName(key, k, batchSize)),
      };
      plan.items.push(item);
      group.items.push(item);
    }
    if (group.items.length) plan.groups.push(group);
  }
  for (const p of problems) plan.errors.push({ line: l.line, message: p });
}

/** The body of an item as the native API types it (after resolveSeeds). */
export function asNativeBody(item: PlanItem): NativeBody {
  return item.body as unknown as NativeBody;
}
