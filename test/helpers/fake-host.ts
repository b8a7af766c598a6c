/** A stand-in render host (no model, no thread) for queue tests: waits `stepMs` per step, honours abort between steps. */
import { LoraserveError } from '../../src/core/errors.js';
import type { RenderRequest, RenderResult } from '../../src/engine/request.js';
import type { RenderHostLike } from '../../src/jobs/local-queue.js';
import type { ModelInfo } from '../../src/jobs/queue.js';
import type { RenderCallOptions } from '../../src/jobs/render-host.js';

export const FAKE_MODEL: ModelInfo = { name: 'fake', dir: '/fake', hash: '0123456789', sha256: 'ab'.repeat(32), provider: 'cpu', sizeMultiple: 64, precision: 'float32', predictionType: 'epsilon', loraTargets: [] };

/** Renders by waiting `stepMs` per step; honours the abort signal between steps like the real worker. */
export class FakeHost implements RenderHostLike {
  readonly model = FAKE_MODEL;
  readonly seen: RenderRequest[] = [];
  closed = false;
  constructor(private readonly stepMs = 2) {}
  async render(req: RenderRequest, opts: RenderCallOptions): Promise<RenderResult> {
    this.seen.push(req);
    const t0 = performance.now();
    for (let s = 1; s <= req.steps; s++) {
      await new Promise((r) => setTimeout(r, this.stepMs));
      if (opts.signal?.aborted) throw new LoraserveError('CANCELLED', 'render cancelled');
      const elapsedMs = performance.now() - t0;
      const preview = req.previewEvery && s % req.previewEvery === 0 ? { rgb: new Uint8Array(3), width: 1, height: 1 } : undefined;
      opts.onProgress?.({ step: s, total: req.steps, elapsedMs, etaMs: 0, preview });
    }
    const seeds = Array.from({ length: req.batchSize }, (_, k) => req.seed + k);
    return {
      images: seeds.map((seed) => ({ png: new Uint8Array([0x89, 0x50, 0x4e, 0x47]), width: req.width, height: req.height, seed, infotext: `Seed: ${seed}` })),
      seeds,
      timings: { totalMs: 1, loraMs: 0, mergedUnet: false, textMs: 0, denoiseMs: 1, vaeMs: 0, encodeMs: 0, ortMs: 1, unetCalls: req.steps },
    };
  }
  async close(): Promise<void> {
    this.closed = true;
  }
}

