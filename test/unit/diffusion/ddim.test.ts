/**
 * DDIM in σ-space (samplers/ddim.ts on schedules/discrete.ts 'ddim' mode) against DDIMScheduler.step written
 * out in its own VP terms (diffusers v0.21.4 schedulers/scheduling_ddim.py, eta 0), on a toy Gaussian model,
 * including the configurations where diffusers' "previous timestep" t − N/n is not the next scheduled one.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { buildNoiseTable, sigmaFromAlphaCumprod } from '../../../src/diffusion/noise-table.js';
import { sampleDdim } from '../../../src/diffusion/samplers/ddim.js';
import { diffusersTimesteps, discreteSchedule } from '../../../src/diffusion/schedules/discrete.js';
import { sd15With } from './sd15.js';

const MU = 0.4;
const S = 0.9;
/** Posterior mean of x0 ~ N(MU, S²) given x = x0 + σ·ε. */
const x0Of = (xSigma: number, sigma: number) => MU + ((S * S) / (S * S + sigma * sigma)) * (xSigma - MU);

const CASES: [name: string, overrides: Record<string, unknown>, steps: number][] = [
  ['leading + offset 1 (SD)', {}, 8],
  ['leading, set_alpha_to_one', { set_alpha_to_one: true }, 8],
  ['trailing, 7 steps (t − 142 ≠ next timestep)', { timestep_spacing: 'trailing', steps_offset: 0 }, 7],
  ['linspace, 8 steps (t − 125 ≠ next timestep)', { timestep_spacing: 'linspace', steps_offset: 0 }, 8],
  ['clip_sample to 0.5', { clip_sample: true, clip_sample_range: 0.5 }, 10],
];

for (const [name, overrides, steps] of CASES) {
  test(`DDIM ${name}: equals diffusers' VP-space step`, async () => {
    const config = sd15With(overrides);
    const table = buildNoiseTable(config, 'diffusers');
    const ac = table.alphasCumprod;
    const z = Float64Array.from({ length: 64 }, (_, i) => Math.sin(i * 1.7) * 1.5);

    // diffusers, in its own terms
    const ts = diffusersTimesteps({ config, steps }, 'ddim');
    const ratio = Math.floor(config.numTrainTimesteps / steps);
    const finalAlpha = config.setAlphaToOne ? 1 : ac[0];
    let vp = Float64Array.from(z);
    for (const t of ts) {
      const at = ac[t];
      const prev = t - ratio;
      const ap = prev >= 0 ? ac[prev] : finalAlpha;
      const sigma = sigmaFromAlphaCumprod(at);
      vp = vp.map((v) => {
        const x0 = x0Of(v / Math.sqrt(at), sigma);
        const eps = (v - Math.sqrt(at) * x0) / Math.sqrt(1 - at);
        const x0c = config.clipSample ? Math.min(config.clipSampleRange, Math.max(-config.clipSampleRange, x0)) : x0;
        return Math.sqrt(ap) * x0c + Math.sqrt(1 - ap) * eps;
      });
    }

    // ours, in σ-space
    const plan = discreteSchedule({ config, steps, table }, 'ddim');
    const out = await sampleDdim({
      x: Float32Array.from(z, (v) => v * plan.initNoiseScale),
      plan,
      denoise: async (x, sigma) => x.map((v) => x0Of(v, sigma)),
      nextNoise: () => assert.fail(),
    });
    const latents = Array.from(out, (v) => v * (plan.finalScale ?? 1));
    let worst = 0;
    for (let i = 0; i < z.length; i++) worst = Math.max(worst, Math.abs(latents[i] - vp[i]) / (1 + Math.abs(vp[i])));
    assert.ok(worst < 2e-6, `worst ${worst}`);
  });
}
