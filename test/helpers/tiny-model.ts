/** One generated tiny pipeline per test process (src/synth, ~0.2 s), removed when the process exits. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { synthesize } from '../../src/synth/index.js';

const cache = new Map<string, Promise<string>>();

export function tinyModelDir(preset: 'tiny' | 'tiny-sd2' = 'tiny'): Promise<string> {
  let p = cache.get(preset);
  if (!p) {
    const root = mkdtempSync(join(tmpdir(), `loraserve-test-${preset}-`));
    process.once('exit', () => rmSync(root, { recursive: true, force: true }));
    p = synthesize({ preset, outDir: join(root, 'model'), seed: 0 }).then((r) => r.outDir);
    cache.set(preset, p);
  }
  return p;
}

export interface TinyModel {
  root: string;
  modelDir: string;
  /** The generated LoRA files (catears, idol, stage, costume [LoCon], lights [PEFT], …). */
  loras: string[];
  cleanup(): void;
}

/** A private generated tiny pipeline (for tests that need their own folder); `cleanup` removes it. */
export async function makeTinyModel(opts: { loras?: number } = {}): Promise<TinyModel> {
  const root = mkdtempSync(join(tmpdir(), 'loraserve-tiny-'));
  const r = await synthesize({ preset: 'tiny', outDir: join(root, 'model'), seed: 0, loras: opts.loras ?? 3 });
  return { root, modelDir: r.outDir, loras: r.loras, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}
