/** A small, fast render request for jobs/server tests: 64×64 (the tiny UNet's size step), a few steps. */
import type { RenderRequest } from '../../src/engine/request.js';

export function smallRequest(over: Partial<RenderRequest> = {}): RenderRequest {
  return {
    prompt: 'a cat with ears',
    negativePrompt: '',
    steps: 3,
    cfgScale: 7,
    sampler: 'euler',
    scheduler: 'automatic',
    flavor: 'native',
    seed: 42,
    rng: 'cpu',
    width: 64,
    height: 64,
    batchSize: 1,
    ...over,
  };
}
