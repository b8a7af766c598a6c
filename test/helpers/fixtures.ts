/**
 * Access to ../shared/fixtures (read-only reference data produced by diffusers, k-diffusion, torch, A1111).
 * Conformance tests call requireFixtures(): a missing folder is a loud failure, never a skip.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { RenderRequest } from '../../src/engine/request.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export const FIXTURES_DIR = process.env.LORASERVE_FIXTURES ?? resolve(repoRoot, '..', 'shared', 'fixtures');

export function requireFixtures(sub = ''): string {
  const p = join(FIXTURES_DIR, sub);
  if (!existsSync(p)) {
    throw new Error(
      `conformance fixtures not found at ${p}. They live beside the repository in ../shared/fixtures ` +
        `(or set LORASERVE_FIXTURES). Conformance tests never skip silently.`,
    );
  }
  return p;
}

export type RefDtype = 'float32' | 'int32' | 'int64' | 'float16' | 'uint8';
export interface RefEntry {
  file: string;
  dtype: RefDtype;
  shape: number[];
  desc?: string;
}

/** A reference tensor set: an index.json with a `tensors` map of {file, dtype, shape}. */
export class RefSet {
  readonly dir: string;
  readonly index: { tensors: Record<string, RefEntry>; [k: string]: unknown };
  constructor(dir: string) {
    this.dir = dir;
    this.index = JSON.parse(readFileSync(join(dir, 'index.json'), 'utf8'));
  }
  entry(name: string): RefEntry {
    const e = this.index.tensors[name];
    if (!e) throw new Error(`reference tensor ${name} not in ${this.dir}/index.json`);
    return e;
  }
  f32(name: string): { data: Float32Array; shape: number[] } {
    const e = this.entry(name);
    if (e.dtype !== 'float32') throw new Error(`${name} is ${e.dtype}, not float32`);
    const b = readFileSync(join(this.dir, e.file));
    return { data: new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)), shape: e.shape };
  }
  i32(name: string): { data: Int32Array; shape: number[] } {
    const e = this.entry(name);
    if (e.dtype !== 'int32') throw new Error(`${name} is ${e.dtype}, not int32`);
    const b = readFileSync(join(this.dir, e.file));
    return { data: new Int32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)), shape: e.shape };
  }
}

export function tinySd15Refs(): RefSet {
  return new RefSet(join(requireFixtures('tiny-sd15'), 'refs'));
}
export function kdiffRefs(): RefSet {
  return new RefSet(join(requireFixtures('tiny-sd15'), 'refs', 'kdiff'));
}

/** max |a-b| and relative L2 ‖a-b‖/‖b‖. */
export function compare(a: ArrayLike<number>, b: ArrayLike<number>): { maxAbs: number; relL2: number } {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let maxAbs = 0;
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    if (Math.abs(d) > maxAbs || Number.isNaN(d)) maxAbs = Number.isNaN(d) ? Infinity : Math.abs(d);
    num += d * d;
    den += b[i] * b[i];
  }
  return { maxAbs, relL2: Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30) };
}

/**
 * The render request that replays diffusers' pipeline run `name` from ../shared/fixtures/tiny-sd15 (Euler,
 * discrete schedule, 64×64, its own initial latents), with `loras` in the request list; latents returned.
 */
export function pipeRunRequest(name: string, loras: Array<{ name: string; weight: number }> = []): RenderRequest {
  const refs = tinySd15Refs();
  const run = (refs.index.pipeline_runs as Record<string, { prompt: string; negative_prompt: string; guidance_scale: number; num_inference_steps: number }>)[name];
  if (!run) throw new Error(`fixtures: no pipeline run ${name}`);
  return {
    prompt: run.prompt,
    negativePrompt: run.negative_prompt,
    steps: run.num_inference_steps,
    cfgScale: run.guidance_scale,
    sampler: 'euler',
    scheduler: 'discrete',
    flavor: 'native',
    seed: 0,
    rng: 'cpu',
    width: 64,
    height: 64,
    batchSize: 1,
    initialNoise: refs.f32(`pipe/${name}/latents_init`).data,
    returnLatents: true,
    loras,
  };
}
