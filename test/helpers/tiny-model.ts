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
