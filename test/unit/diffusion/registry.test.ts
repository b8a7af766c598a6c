import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LoraserveError } from '../../../src/core/errors.js';
import { listSamplers, listSchedulers, resolveSampling, type SamplingFlavor } from '../../../src/diffusion/registry.js';
import { sd15 } from './sd15.js';

/**
 * [sampler, scheduler, flavor] → [sampler id, schedule walked, infotext Sampler, infotext Schedule type].
 * A1111 rows follow v1.9.4 modules/sd_samplers_kdiffusion.py (per-sampler 'scheduler' defaults),
 * modules/sd_samplers.py get_sampler_and_scheduler (legacy "X Karras" names) and sd_samplers_timesteps.py.
 */
const TABLE: [sampler: string, scheduler: string, flavor: SamplingFlavor, want: [string, string, string, string]][] = [
  ['Euler a', '', 'a1111', ['euler_a', 'uniform', 'Euler a', 'Automatic']],
  ['Euler a', 'Automatic', 'a1111', ['euler_a', 'uniform', 'Euler a', 'Automatic']],
  ['Euler', 'Uniform', 'a1111', ['euler', 'uniform', 'Euler', 'Uniform']],
  ['LMS', 'automatic', 'a1111', ['lms', 'uniform', 'LMS', 'Automatic']],
  ['LMS Karras', '', 'a1111', ['lms', 'karras', 'LMS', 'Karras']],
  ['DPM++ 2M', 'Automatic', 'a1111', ['dpmpp_2m', 'karras', 'DPM++ 2M', 'Karras']],
  ['DPM++ 2M Karras', '', 'a1111', ['dpmpp_2m', 'karras', 'DPM++ 2M', 'Karras']],
  ['dpm++ 2m karras', 'Exponential', 'a1111', ['dpmpp_2m', 'karras', 'DPM++ 2M', 'Karras']],
  ['DPM++ 2M', 'Uniform', 'a1111', ['dpmpp_2m', 'uniform', 'DPM++ 2M', 'Uniform']],
  ['DPM++ 2M SDE', '', 'a1111', ['dpmpp_2m_sde', 'exponential', 'DPM++ 2M SDE', 'Exponential']],
  ['DPM++ 2M SDE Karras', '', 'a1111', ['dpmpp_2m_sde', 'karras', 'DPM++ 2M SDE', 'Karras']],
  ['DPM++ SDE Karras', '', 'a1111', ['dpmpp_sde', 'karras', 'DPM++ SDE', 'Karras']],
  ['DPM2 a', '', 'a1111', ['dpm2_a', 'karras', 'DPM2 a', 'Karras']],
  ['Euler', 'SGMUniform', 'a1111', ['euler', 'sgm_uniform', 'Euler', 'SGM Uniform']],
  ['DDIM', '', 'a1111', ['ddim', 'a1111_ddim', 'DDIM', 'Automatic']],
  ['DDIM', 'Karras', 'a1111', ['ddim', 'a1111_ddim', 'DDIM', 'Karras']],
  ['k_euler_a', '', 'a1111', ['euler_a', 'uniform', 'Euler a', 'Automatic']],
  ['euler', '', 'native', ['euler', 'discrete', 'Euler', 'Discrete']],
  ['euler', 'automatic', 'native', ['euler', 'discrete', 'Euler', 'Discrete']],
  ['ddim', '', 'native', ['ddim', 'discrete', 'DDIM', 'Discrete']],
  ['dpmpp_2m', 'karras', 'native', ['dpmpp_2m', 'karras', 'DPM++ 2M', 'Karras']],
  ['dpmpp_2m_karras', '', 'native', ['dpmpp_2m', 'karras', 'DPM++ 2M', 'Karras']],
  ['DPM++ 2M', '', 'native', ['dpmpp_2m', 'discrete', 'DPM++ 2M', 'Discrete']],
  ['euler_ancestral', 'sgm_uniform', 'native', ['euler_a', 'sgm_uniform', 'Euler a', 'SGM Uniform']],
  ['  Euler   A ', ' KARRAS ', 'native', ['euler_a', 'karras', 'Euler a', 'Karras']],
  ['lcm', 'simple', 'native', ['lcm', 'simple', 'LCM', 'Simple']],
];
for (const [sampler, scheduler, flavor, want] of TABLE) {
  test(`resolve "${sampler}" / "${scheduler}" (${flavor})`, () => {
    const r = resolveSampling({ sampler, scheduler, flavor });
    assert.deepEqual([r.samplerId, r.scheduleId, r.a1111Sampler, r.a1111Schedule], want);
    assert.equal(r.tableFlavor, flavor === 'a1111' ? 'ldm' : 'diffusers');
    const plan = r.schedule(sd15, 8);
    assert.ok(plan.sigmas.length >= 8 && plan.sigmas.every((s, i) => i === 0 || s <= plan.sigmas[i - 1]));
  });
}

test('unknown sampler: INVALID_SAMPLER listing the valid names', () => {
  assert.throws(
    () => resolveSampling({ sampler: 'Euler b', scheduler: '', flavor: 'a1111' }),
    (e: unknown) =>
      e instanceof LoraserveError && e.code === 'INVALID_SAMPLER' && e.message.includes('DPM++ 2M') && Array.isArray(e.details?.valid) && (e.details!.valid as string[]).includes('Euler a'),
  );
  assert.throws(() => resolveSampling({ sampler: '', flavor: 'native' }), (e: unknown) => e instanceof LoraserveError && e.code === 'INVALID_SAMPLER');
});

test('unknown schedule: INVALID_SCHEDULER listing the valid names', () => {
  assert.throws(
    () => resolveSampling({ sampler: 'euler', scheduler: 'Align Your Steps', flavor: 'native' }),
    (e: unknown) => e instanceof LoraserveError && e.code === 'INVALID_SCHEDULER' && e.message.includes('Karras') && (e.details!.valid as string[]).includes('Automatic'),
  );
  assert.throws(() => resolveSampling({ sampler: 'DPM++ 2M Banana', flavor: 'a1111' }), (e: unknown) => e instanceof LoraserveError && e.code === 'INVALID_SAMPLER');
});

test('lists for GET /samplers and /schedulers', () => {
  const samplers = listSamplers();
  assert.ok(samplers.find((s) => s.id === 'euler_a' && s.label === 'Euler a' && s.aliases.includes('k_euler_a')));
  assert.equal(new Set(samplers.map((s) => s.id)).size, samplers.length);
  const schedulers = listSchedulers();
  assert.equal(schedulers[0].id, 'automatic');
  assert.deepEqual(schedulers.map((s) => s.id), ['automatic', 'discrete', 'uniform', 'karras', 'exponential', 'polyexponential', 'sgm_uniform', 'simple']);
});

test('flavours build on different noise tables (diffusers float32 vs ldm float64)', () => {
  const a = resolveSampling({ sampler: 'euler', scheduler: 'uniform', flavor: 'native' }).schedule(sd15, 20);
  const b = resolveSampling({ sampler: 'euler', scheduler: 'uniform', flavor: 'a1111' }).schedule(sd15, 20);
  let worst = 0;
  for (let i = 0; i < 20; i++) worst = Math.max(worst, Math.abs(a.sigmas[i] - b.sigmas[i]) / b.sigmas[i]);
  assert.ok(worst > 0 && worst < 1e-5, `${worst}`); // ᾱ differs by < 1e-6; σ near σ_min amplifies it
});
