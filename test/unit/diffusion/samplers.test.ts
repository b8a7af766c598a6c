/**
 * One suite every sampler runs (adding a sampler to the registry adds it here): a toy analytic model instead of
 * a UNet. Data x0 ~ N(μ, s²) per element has the exact denoiser D(x, σ) = μ + s²/(s²+σ²)·(x − μ) and the
 * probability-flow ODE solution x(σ) = μ + (x_start − μ)·√(s²+σ²)/√(s²+σ_start²); s = 0 (a single data point)
 * makes D constant and x(σ) = μ + σ·z exact for every deterministic sampler.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LoraserveError } from '../../../src/core/errors.js';
import { listSamplers, resolveSampling } from '../../../src/diffusion/registry.js';
import type { Denoise, SigmaPlan } from '../../../src/diffusion/types.js';
import { sd15 } from './sd15.js';

const MU = 0.5;

/** Deterministic standard normals (mulberry32 + Box–Muller). */
function normals(seed: number): () => Float32Array {
  let a = seed >>> 0;
  const u = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return () => {
    const out = new Float32Array(LEN);
    for (let i = 0; i < LEN; i += 2) {
      const r = Math.sqrt(-2 * Math.log(1 - u()));
      const th = 2 * Math.PI * u();
      out[i] = r * Math.cos(th);
      out[i + 1] = r * Math.sin(th);
    }
    return out;
  };
}
const LEN = 4096;

function gaussianDenoiser(s: number, calls: number[] = []): Denoise {
  return async (x, sigma, i) => {
    calls.push(i);
    await Promise.resolve(); // a real model call is asynchronous: let other jobs interleave
    const k = (s * s) / (s * s + sigma * sigma);
    return x.map((v) => MU + k * (v - MU));
  };
}

const SAMPLERS = listSamplers();
const DETERMINISTIC = SAMPLERS.filter((s) => s.noisePerStep === 0).map((s) => s.id);
const STOCHASTIC = SAMPLERS.filter((s) => s.noisePerStep > 0).map((s) => s.id);

function planFor(sampler: string, scheduler: string, steps: number, flavor: 'native' | 'a1111' = 'native') {
  const r = resolveSampling({ sampler, scheduler, flavor });
  return { r, plan: r.schedule(sd15, steps) };
}

function start(plan: SigmaPlan, z: Float32Array): Float32Array {
  return z.map((v) => MU + v * plan.initNoiseScale);
}

test('the suite covers every registered sampler', () => {
  assert.deepEqual(
    [...DETERMINISTIC, ...STOCHASTIC].sort(),
    ['ddim', 'dpm2', 'dpm2_a', 'dpmpp_2m', 'dpmpp_2m_sde', 'dpmpp_2m_sde_heun', 'dpmpp_2s_a', 'dpmpp_3m_sde', 'dpmpp_sde', 'euler', 'euler_a', 'heun', 'lcm', 'lms'],
  );
});

for (const id of DETERMINISTIC) {
  for (const scheduler of ['discrete', 'karras', 'uniform', 'exponential']) {
    test(`${id} × ${scheduler}: a single data point is reached exactly, every step on x = μ + σ·z`, async () => {
      const { r, plan } = planFor(id, scheduler, 12);
      const z = normals(1)();
      const x0 = start(plan, z);
      const seen: number[] = [];
      const out = await r.sampler({
        x: x0,
        plan,
        denoise: gaussianDenoiser(0),
        nextNoise: () => assert.fail('deterministic sampler drew noise'),
        onStep: (i, n, x) => {
          seen.push(i);
          assert.equal(n, plan.sigmas.length - 1);
          // the σ-space latent after step i sits at sigmas[i+1]; the VP re-read of DDIM keeps that true
          const sigma = plan.sigmas[i + 1];
          for (let j = 0; j < LEN; j += 97) assert.ok(Math.abs(x[j] - (MU + sigma * z[j] * (plan.initNoiseScale / plan.sigmas[0]))) < 2e-4 * (1 + Math.abs(x[j])), `step ${i} j ${j}`);
        },
      });
      assert.deepEqual(seen, [...Array(plan.sigmas.length - 1).keys()]);
      const sLast = plan.sigmas[plan.sigmas.length - 1];
      for (let j = 0; j < LEN; j += 13) assert.ok(Math.abs(out[j] - (MU + sLast * z[j] * (plan.initNoiseScale / plan.sigmas[0]))) < 1e-4);
      assert.deepEqual(x0, start(plan, z), 'the input latents were modified');
    });
  }
}

test('deterministic samplers follow the Gaussian ODE; higher order is closer than Euler', async (t) => {
  const s = 1;
  const errs: Record<string, number> = {};
  for (const id of DETERMINISTIC) {
    const { r, plan } = planFor(id, 'karras', 10);
    const z = normals(2)();
    const x0 = start(plan, z);
    const out = await r.sampler({ x: x0, plan, denoise: gaussianDenoiser(s), nextNoise: () => assert.fail() });
    const ratio = s / Math.sqrt(s * s + plan.sigmas[0] ** 2);
    let err = 0;
    let ref = 0;
    for (let j = 0; j < LEN; j++) {
      const exact = MU + (x0[j] - MU) * ratio;
      err += (out[j] - exact) ** 2;
      ref += exact ** 2;
    }
    errs[id] = Math.sqrt(err / ref);
  }
  t.diagnostic(`rel error after 10 Karras steps: ${Object.entries(errs).map(([k, v]) => `${k} ${v.toExponential(2)}`).join(', ')}`);
  for (const [id, e] of Object.entries(errs)) assert.ok(e < 0.2, `${id}: rel error ${e}`);
  for (const id of ['heun', 'dpm2', 'dpmpp_2m', 'lms']) assert.ok(errs[id] < errs.euler / 2, `${id} ${errs[id]} vs euler ${errs.euler}`);
  assert.ok(Math.abs(errs.ddim - errs.euler) < 1e-6, 'DDIM on a σ-space plan is Euler');
});

for (const id of STOCHASTIC) {
  test(`${id}: reaches a single data point; noise drawn ${SAMPLERS.find((s) => s.id === id)!.noisePerStep}× per step except the last`, async () => {
    const { r, plan } = planFor(id, 'karras', 10);
    const n = plan.sigmas.length - 1;
    const draw = normals(3);
    let draws = 0;
    const out = await r.sampler({ x: start(plan, normals(4)()), plan, denoise: gaussianDenoiser(0), nextNoise: () => (draws++, draw()) });
    for (let j = 0; j < LEN; j += 7) assert.ok(Math.abs(out[j] - MU) < 1e-5);
    assert.equal(draws, SAMPLERS.find((s) => s.id === id)!.noisePerStep * (n - 1));
  });

  // LCM jumps to the model's x0 every step: with this (posterior-mean) denoiser it shrinks the spread by
  // design; it is meant for consistency-distilled models.
  if (id !== 'lcm') {
    test(`${id}: samples a Gaussian data distribution with its mean and spread (100 steps)`, async () => {
      const s = 0.8;
      const { r, plan } = planFor(id, 'karras', 100);
      const out = await r.sampler({ x: start(plan, normals(5)()), plan, denoise: gaussianDenoiser(s), nextNoise: normals(6) });
      const mean = out.reduce((a, v) => a + v, 0) / LEN;
      const std = Math.sqrt(out.reduce((a, v) => a + (v - mean) ** 2, 0) / LEN);
      assert.ok(Math.abs(mean - MU) < 0.04, `mean ${mean}`);
      assert.ok(Math.abs(std - s) / s < 0.05, `std ${std}`);
    });
  }
}

test('eta 0: Euler a is Euler (still taking its draws, ×0, as k-diffusion does); DPM++ 2M SDE draws nothing', async () => {
  const { r, plan } = planFor('euler_a', 'karras', 8);
  const z = normals(7)();
  let draws = 0;
  const a = await r.sampler({ x: start(plan, z), plan, denoise: gaussianDenoiser(1), nextNoise: () => (draws++, normals(1)()), eta: 0 });
  const e = await planFor('euler', 'karras', 8).r.sampler({ x: start(plan, z), plan, denoise: gaussianDenoiser(1), nextNoise: () => assert.fail() });
  assert.deepEqual(a, e);
  assert.equal(draws, 7);
  const sde = planFor('dpmpp_2m_sde', 'karras', 8);
  await sde.r.sampler({ x: start(sde.plan, z), plan: sde.plan, denoise: gaussianDenoiser(1), nextNoise: () => assert.fail('drew noise'), eta: 0 });
});

for (const { id } of SAMPLERS) {
  test(`${id}: an aborted signal stops it before the next model call with CANCELLED`, async () => {
    const { r, plan } = planFor(id, 'karras', 10);
    const signal = { aborted: false };
    const calls: number[] = [];
    await assert.rejects(
      r.sampler({
        x: start(plan, normals(8)()),
        plan,
        denoise: gaussianDenoiser(1, calls),
        nextNoise: normals(9),
        signal,
        onStep: (i) => {
          if (i === 1) signal.aborted = true;
        },
      }),
      (e: unknown) => e instanceof LoraserveError && e.code === 'CANCELLED',
    );
    assert.ok(calls.every((i) => i <= 1), `model called for step ${Math.max(...calls)} after the abort`);
  });
}

test('concurrent jobs share nothing: interleaved runs equal sequential ones', async () => {
  const ids = SAMPLERS.map((s) => s.id);
  const run = (id: string) => {
    const { r, plan } = planFor(id, 'karras', 6);
    return r.sampler({ x: start(plan, normals(10)()), plan, denoise: gaussianDenoiser(0.7), nextNoise: normals(11) });
  };
  const together = await Promise.all([...ids, ...ids].map(run));
  for (let k = 0; k < ids.length; k++) {
    const alone = await run(ids[k]);
    assert.deepEqual(together[k], alone, ids[k]);
    assert.deepEqual(together[k + ids.length], alone, ids[k]);
  }
});

test('A1111 flavour: DPM2 discards the next-to-last σ (n + 1 planned, n walked)', () => {
  const { plan } = planFor('DPM2', 'Karras', 10, 'a1111');
  assert.equal(plan.sigmas.length, 11);
  const { plan: native } = planFor('dpm2', 'karras', 10);
  assert.equal(native.sigmas.length, 11);
  assert.notDeepEqual(Array.from(plan.sigmas), Array.from(native.sigmas));
});
