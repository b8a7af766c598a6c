/**
 * Replays the A1111 / k-diffusion runs (tiny-sd15 refs/kdiff): sigmas and float UNet timesteps as A1111
 * v1.9.4 builds them on ldm's noise table, the UNet inputs, and every sampler step fed with the reference's
 * CFG-combined denoised x0 (and, for Euler a, the reference's ancestral noise draws).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { modelInputScale } from '../../../src/diffusion/denoiser.js';
import { resolveSampling } from '../../../src/diffusion/registry.js';
import { parseSchedulerConfig } from '../../../src/diffusion/scheduler-config.js';
import { compare, kdiffRefs, requireFixtures } from '../../helpers/fixtures.js';

interface KdiffRun {
  a1111: { sampler: string; schedule_type: string; steps: number };
  sigmas: number[];
  unet_timesteps: number[];
}

const TOL = 1e-4;
const refs = kdiffRefs();
const config = parseSchedulerConfig(JSON.parse(readFileSync(join(requireFixtures('tiny-sd15'), 'scheduler', 'scheduler_config.json'), 'utf8')));
const runs = refs.index.runs as Record<string, KdiffRun>;

/** What each run's sampler/schedule also resolves from (A1111's legacy combined names, our ids). */
const ALSO_RESOLVES: Record<string, [string, string][]> = {
  a1111_euler_uniform: [['euler', 'uniform'], ['Euler', '']],
  a1111_dpmpp2m_karras: [['DPM++ 2M Karras', 'Automatic'], ['dpmpp_2m', 'karras'], ['k_dpmpp_2m', 'Karras']],
  a1111_euler_a_cpu: [['euler_a', 'uniform'], ['k_euler_a', 'automatic']],
  a1111_lms_uniform: [['lms', 'uniform']],
  a1111_dpmpp2m_uniform: [['DPM++ 2M Uniform', '']],
};

test('kdiff references: every run is covered', () => {
  assert.deepEqual(Object.keys(runs).sort(), [
    'a1111_dpmpp2m_karras',
    'a1111_dpmpp2m_uniform',
    'a1111_euler_a_cpu',
    'a1111_euler_a_nv',
    'a1111_euler_uniform',
    'a1111_euler_uniform_lora',
    'a1111_lms_uniform',
  ]);
});

for (const [name, run] of Object.entries(runs)) {
  test(`A1111 ${name}: ${run.a1111.sampler} / ${run.a1111.schedule_type}`, async (t) => {
    const sampling = resolveSampling({ sampler: run.a1111.sampler, scheduler: run.a1111.schedule_type, flavor: 'a1111' });
    for (const [sampler, scheduler] of ALSO_RESOLVES[name] ?? []) {
      const other = resolveSampling({ sampler, scheduler, flavor: 'a1111' });
      assert.deepEqual([other.samplerId, other.scheduleId], [sampling.samplerId, sampling.scheduleId], `${sampler} / ${scheduler}`);
    }
    const plan = sampling.schedule(config, run.a1111.steps);
    const n = plan.sigmas.length - 1;
    assert.equal(n, run.a1111.steps);

    // Bit-exact in float32: sigmas (sigmas.bin) and the float UNet timesteps (timesteps.bin).
    const sigmasRef = refs.f32(`${name}/sigmas`).data;
    const timestepsRef = refs.f32(`${name}/timesteps`).data;
    assert.deepEqual(Array.from(plan.sigmas, Math.fround), Array.from(sigmasRef));
    assert.deepEqual(Array.from(plan.timesteps, Math.fround), Array.from(timestepsRef));
    assert.deepEqual(Array.from(plan.sigmas, Math.fround), run.sigmas.map(Math.fround));
    assert.equal(plan.initNoiseScale, plan.sigmas[0]);

    const init = refs.f32(`${name}/latents_init`).data;
    const sampleIn = refs.f32(`${name}/unet_sample_in`).data;
    const denoisedRef = refs.f32(`${name}/denoised`).data;
    const perStep = refs.f32(`${name}/latents_per_step`).data;
    const final = refs.f32(`${name}/latents_final`).data;
    const per = init.length;
    const ancestral = name.includes('euler_a') ? refs.f32(`${name}/ancestral_noise`).data : null;
    let draws = 0;
    let worstInput = 0;
    let worstStep = 0;
    let calls = 0;

    const out = await sampling.sampler({
      x: init.map((v) => v * plan.initNoiseScale),
      plan,
      nextNoise: () => {
        assert.ok(ancestral, `${sampling.samplerId} must not draw noise`);
        assert.ok(draws < ancestral.length / per, 'more ancestral draws than the reference made');
        return ancestral.slice(draws * per, ++draws * per);
      },
      denoise: async (x, sigma, i) => {
        assert.equal(i, calls++);
        assert.equal(Math.fround(plan.timestepFor(sigma)), timestepsRef[i]);
        const cIn = modelInputScale(sigma);
        const sample = x.map((v) => v * cIn);
        for (const row of [0, 1]) {
          worstInput = Math.max(worstInput, compare(sample, sampleIn.subarray((2 * i + row) * per, (2 * i + row + 1) * per)).relL2);
        }
        return denoisedRef.slice(i * per, (i + 1) * per);
      },
      onStep: (i, _n, x) => {
        worstStep = Math.max(worstStep, compare(x, perStep.subarray(i * per, (i + 1) * per)).relL2);
      },
    });
    assert.equal(calls, n);
    if (ancestral) assert.equal(draws, ancestral.length / per, 'Euler a draws once per step except the last');
    assert.equal(plan.finalScale, undefined);
    const finalErr = compare(out, final);
    t.diagnostic(`${name}: worst UNet input rel L2 ${worstInput.toExponential(2)}, worst per-step latents rel L2 ${worstStep.toExponential(2)}, final rel L2 ${finalErr.relL2.toExponential(2)} (max abs ${finalErr.maxAbs.toExponential(2)})`);
    assert.ok(worstInput < TOL, `UNet input rel L2 ${worstInput}`);
    assert.ok(worstStep < TOL, `per-step latents rel L2 ${worstStep}`);
    assert.ok(finalErr.relL2 < TOL, `final latents rel L2 ${finalErr.relL2}`);
  });
}
