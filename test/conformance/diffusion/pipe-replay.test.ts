/**
 * Replays diffusers 0.21.4's own Euler and DDIM pipeline runs (tiny-sd15 refs/pipe) through our schedules and
 * samplers: the reference UNet outputs stand in for the model, so every step's latents, every UNet input and
 * timestep must come out as diffusers computed them.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { cfgCombine, denoisedFromModelOutput, modelInputScale } from '../../../src/diffusion/denoiser.js';
import { resolveSampling } from '../../../src/diffusion/registry.js';
import { parseSchedulerConfig } from '../../../src/diffusion/scheduler-config.js';
import { compare, requireFixtures, tinySd15Refs } from '../../helpers/fixtures.js';

interface PipelineRun {
  scheduler_class: string;
  init_noise_sigma: number;
  timesteps: number[];
  sigmas: number[] | null;
  num_inference_steps: number;
  guidance_scale: number;
}

const TOL = 1e-4;
const RUNS: [run: string, sampler: string][] = [
  ['euler_64x64', 'euler'],
  ['ddim_64x64', 'ddim'],
  ['euler_128x64', 'euler'],
  ['euler_64x64_lora_catears@0.8', 'euler'],
];

const refs = tinySd15Refs();
const config = parseSchedulerConfig(JSON.parse(readFileSync(join(requireFixtures('tiny-sd15'), 'scheduler', 'scheduler_config.json'), 'utf8')));
const runs = refs.index.pipeline_runs as Record<string, PipelineRun>;

for (const [name, samplerName] of RUNS) {
  test(`diffusers ${name}: plan and every step replayed (${samplerName} × discrete)`, async (t) => {
    const run = runs[name];
    assert.ok(run, `pipeline_runs.${name} missing`);
    const sampling = resolveSampling({ sampler: samplerName, scheduler: 'automatic', flavor: 'native' });
    assert.equal(sampling.scheduleId, 'discrete');
    const plan = sampling.schedule(config, run.num_inference_steps);
    const n = plan.sigmas.length - 1;

    // Timesteps exactly; Euler's sigmas and init_noise_sigma to the float32 bit.
    assert.deepEqual(Array.from(plan.timesteps), run.timesteps);
    if (run.sigmas) {
      assert.deepEqual(Array.from(plan.sigmas, Math.fround), run.sigmas.map(Math.fround));
      assert.equal(Math.fround(plan.initNoiseScale), Math.fround(run.init_noise_sigma));
    }

    const p = `pipe/${name}/`;
    const init = refs.f32(p + 'latents_init').data;
    const sampleIn = refs.f32(p + 'unet_sample_in').data;
    const timestepIn = refs.f32(p + 'unet_timestep_in').data;
    const unetOut = refs.f32(p + 'unet_out').data;
    const perStep = refs.f32(p + 'latents_per_step').data;
    const final = refs.f32(p + 'latents_final').data;
    const per = init.length;
    let worstInput = 0;
    let worstStep = 0;
    let calls = 0;

    const x0 = init.map((v) => v * plan.initNoiseScale);
    const out = await sampling.sampler({
      x: x0,
      plan,
      nextNoise: () => assert.fail('Euler/DDIM must not draw noise'),
      denoise: async (x, sigma, i) => {
        assert.equal(i, calls++);
        // (a) the UNet input the pipeline would feed: x·c_in for both CFG rows, and the timestep
        const cIn = modelInputScale(sigma);
        const sample = x.map((v) => v * cIn);
        for (const row of [0, 1]) {
          const r = compare(sample, sampleIn.subarray((2 * i + row) * per, (2 * i + row + 1) * per)).relL2;
          worstInput = Math.max(worstInput, r);
        }
        assert.equal(Math.fround(plan.timestepFor(sigma)), timestepIn[i], `timestep of call ${i}`);
        // (b) the denoised x0 from the reference noise_pred rows [uncond, cond], CFG on ε as diffusers does
        const eps = cfgCombine(unetOut.subarray(2 * i * per, (2 * i + 1) * per), unetOut.subarray((2 * i + 1) * per, (2 * i + 2) * per), run.guidance_scale);
        return denoisedFromModelOutput(x, eps, sigma, 'epsilon');
      },
      onStep: (i, _n, x) => {
        // diffusers' DDIM keeps VP latents: x_vp = x_σ / √(σ²+1) at the σ the step landed on
        const toVp = samplerName === 'ddim' ? modelInputScale(plan.sigmas[i + 1]) : 1;
        const r = compare(x.map((v) => v * toVp), perStep.subarray(i * per, (i + 1) * per)).relL2;
        worstStep = Math.max(worstStep, r);
      },
    });
    assert.equal(calls, n);
    const latents = out.map((v) => v * (plan.finalScale ?? 1));
    const finalErr = compare(latents, final);
    t.diagnostic(`${name}: worst UNet input rel L2 ${worstInput.toExponential(2)}, worst per-step latents rel L2 ${worstStep.toExponential(2)}, final rel L2 ${finalErr.relL2.toExponential(2)} (max abs ${finalErr.maxAbs.toExponential(2)})`);
    assert.ok(worstInput < TOL, `UNet input rel L2 ${worstInput}`);
    assert.ok(worstStep < TOL, `per-step latents rel L2 ${worstStep}`);
    assert.ok(finalErr.relL2 < TOL, `final latents rel L2 ${finalErr.relL2}`);
  });
}
