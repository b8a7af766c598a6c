import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LoraserveError } from '../../../src/core/errors.js';
import { buildNoiseTable, sigmaToT } from '../../../src/diffusion/noise-table.js';
import { a1111DdimSchedule, a1111DdimTimesteps } from '../../../src/diffusion/schedules/a1111-ddim.js';
import { diffusersTimesteps, discreteSchedule } from '../../../src/diffusion/schedules/discrete.js';
import { exponentialSchedule, polyexponentialSchedule } from '../../../src/diffusion/schedules/exponential.js';
import { karrasSchedule } from '../../../src/diffusion/schedules/karras.js';
import { discardPenultimateSigma } from '../../../src/diffusion/schedules/plan.js';
import { sgmUniformSchedule } from '../../../src/diffusion/schedules/sgm-uniform.js';
import { simpleSchedule } from '../../../src/diffusion/schedules/simple.js';
import { uniformSchedule } from '../../../src/diffusion/schedules/uniform.js';
import { sd15, sd15With } from './sd15.js';

/**
 * diffusers v0.21.4 set_timesteps, N = 1000 (schedulers/scheduling_euler_discrete.py and scheduling_ddim.py):
 *   linspace  Euler: np.linspace(0, N−1, n, dtype=float32)[::-1]      DDIM: same in float64, .round(), int64
 *   leading   (np.arange(0, n) · (N // n)).round()[::-1] + steps_offset
 *   trailing  np.arange(N, 0, −N/n).round() − 1
 * Values worked out with numpy from those lines.
 */
const TIMESTEPS: [spacing: string, offset: number, n: number, euler: number[], ddim?: number[]][] = [
  ['leading', 1, 8, [876, 751, 626, 501, 376, 251, 126, 1]],
  ['leading', 1, 20, [951, 901, 851, 801, 751, 701, 651, 601, 551, 501, 451, 401, 351, 301, 251, 201, 151, 101, 51, 1]],
  ['leading', 1, 30, [958, 925, 892, 859, 826, 793, 760, 727, 694, 661, 628, 595, 562, 529, 496, 463, 430, 397, 364, 331, 298, 265, 232, 199, 166, 133, 100, 67, 34, 1]],
  ['leading', 1, 3, [667, 334, 1]],
  ['leading', 0, 10, [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]],
  ['trailing', 0, 8, [999, 874, 749, 624, 499, 374, 249, 124]],
  ['trailing', 0, 7, [999, 856, 713, 570, 428, 285, 142]],
  ['trailing', 0, 30, [999, 966, 932, 899, 866, 832, 799, 766, 732, 699, 666, 632, 599, 566, 532, 499, 466, 432, 399, 366, 332, 299, 266, 232, 199, 166, 132, 99, 66, 32]],
  ['linspace', 0, 8, [999, 856.2857055664062, 713.5714111328125, 570.8571166992188, 428.1428527832031, 285.4285583496094, 142.7142791748047, 0], [999, 856, 714, 571, 428, 285, 143, 0]],
  ['linspace', 0, 7, [999, 832.5, 666, 499.5, 333, 166.5, 0], [999, 832, 666, 500, 333, 166, 0]],
];
for (const [spacing, offset, n, euler, ddim] of TIMESTEPS) {
  test(`diffusers timesteps: ${spacing}, steps_offset ${offset}, ${n} steps`, () => {
    const config = sd15With({ timestep_spacing: spacing, steps_offset: offset });
    assert.deepEqual(Array.from(diffusersTimesteps({ config, steps: n }, 'euler')), euler);
    assert.deepEqual(Array.from(diffusersTimesteps({ config, steps: n }, 'ddim')), ddim ?? euler);
  });
}

const dTable = buildNoiseTable(sd15, 'diffusers');
const lTable = buildNoiseTable(sd15, 'ldm');

test('discrete (Euler mode): σ at the scheduled timesteps then 0; init_noise_sigma by spacing', () => {
  const plan = discreteSchedule({ config: sd15, steps: 8, table: dTable });
  assert.deepEqual(Array.from(plan.timesteps), [876, 751, 626, 501, 376, 251, 126, 1]);
  assert.deepEqual(Array.from(plan.sigmas), [...[876, 751, 626, 501, 376, 251, 126, 1].map((t) => dTable.sigmas[t]), 0]);
  const s0 = plan.sigmas[0];
  assert.equal(plan.initNoiseScale, Math.fround(Math.sqrt(Math.fround(Math.fround(s0 * s0) + 1)))); // leading: √(σ²+1)
  assert.equal(plan.timestepFor(plan.sigmas[3]), 501);
  assert.equal(plan.finalScale, undefined);
  const lin = discreteSchedule({ config: sd15With({ timestep_spacing: 'linspace', steps_offset: 0 }), steps: 8, table: dTable });
  assert.equal(lin.initNoiseScale, lin.sigmas[0]); // linspace/trailing: σ_max
  assert.equal(lin.sigmas[0], dTable.sigmaMax);
  assert.equal(lin.timesteps[1], 856.2857055664062); // fractional timestep fed as is
  // np.interp between table entries, rounded to float32
  const j = 856;
  assert.equal(lin.sigmas[1], Math.fround(dTable.sigmas[j] + (dTable.sigmas[j + 1] - dTable.sigmas[j]) * (856.2857055664062 - j)));
});

test('discrete (DDIM mode): ends at σ(ᾱ[0]) with √ᾱ[0] back to VP latents, or at 0 with set_alpha_to_one', () => {
  const plan = discreteSchedule({ config: sd15, steps: 8, table: dTable }, 'ddim');
  assert.equal(plan.sigmas.length, 9);
  assert.equal(plan.sigmas[8], dTable.sigmas[0]);
  assert.ok(Math.abs(plan.finalScale! - Math.sqrt(dTable.alphasCumprod[0])) < 1e-7);
  assert.ok(Math.abs(plan.initNoiseScale - 1 / Math.sqrt(dTable.alphasCumprod[876])) < 1e-5);
  assert.equal(plan.stepTargets, undefined); // leading: t − N/n is always the next timestep
  const one = discreteSchedule({ config: sd15With({ set_alpha_to_one: true }), steps: 8, table: dTable }, 'ddim');
  assert.equal(one.sigmas[8], 0);
  assert.equal(one.finalScale, undefined);
  assert.equal(discreteSchedule({ config: sd15With({ clip_sample: true }), steps: 8, table: dTable }, 'ddim').clipDenoised, 1);
});

test('discrete (DDIM mode) with trailing 7 steps steps to t − 142, not to the next timestep', () => {
  const plan = discreteSchedule({ config: sd15With({ timestep_spacing: 'trailing', steps_offset: 0 }), steps: 7, table: dTable }, 'ddim');
  assert.deepEqual(Array.from(plan.timesteps), [999, 856, 713, 570, 428, 285, 142]);
  assert.deepEqual(Array.from(plan.stepTargets!), [857, 714, 571, 428, 286, 143, 0].map((t) => dTable.sigmas[t]));
  assert.equal(plan.sigmas[7], dTable.sigmas[0]); // prev of 142 is 0 ≥ 0: ᾱ[0], not final_alpha_cumprod
});

test('uniform: k-diffusion get_sigmas — timesteps linspace(999, 0, n), σ_max first, then 0', () => {
  const plan = uniformSchedule({ config: sd15, steps: 8, table: lTable });
  assert.equal(plan.sigmas.length, 9);
  assert.equal(plan.sigmas[8], 0);
  const expected = [999, 856.2857, 713.5714, 570.8571, 428.1428, 285.4286, 142.7143, 0];
  plan.timesteps.forEach((t, i) => assert.ok(Math.abs(t - expected[i]) < 1e-3, `t[${i}] = ${t}`));
  assert.ok(Math.abs(plan.sigmas[0] - lTable.sigmaMax) / lTable.sigmaMax < 2e-7); // exp(log σ): within an ulp
  assert.equal(plan.initNoiseScale, plan.sigmas[0]);
});

test('karras: (σ_max^(1/7) + i/(n−1)·(σ_min^(1/7) − σ_max^(1/7)))^7, then 0', () => {
  for (const n of [1, 2, 8, 25]) {
    const plan = karrasSchedule({ config: sd15, steps: n, table: lTable });
    assert.equal(plan.sigmas.length, n + 1);
    for (let i = 0; i < n; i++) {
      const ramp = n === 1 ? 0 : i / (n - 1);
      const want = (lTable.sigmaMax ** (1 / 7) + ramp * (lTable.sigmaMin ** (1 / 7) - lTable.sigmaMax ** (1 / 7))) ** 7;
      assert.ok(Math.abs(plan.sigmas[i] - want) / want < 1e-6, `n=${n} i=${i}`);
    }
    assert.equal(plan.sigmas[n], 0);
  }
});

test('exponential / polyexponential: evenly spaced in log σ from σ_max to σ_min', () => {
  const e = exponentialSchedule({ config: sd15, steps: 10, table: lTable });
  const p = polyexponentialSchedule({ config: sd15, steps: 10, table: lTable });
  for (let i = 0; i < 10; i++) {
    const want = Math.exp(Math.log(lTable.sigmaMax) + (i / 9) * (Math.log(lTable.sigmaMin) - Math.log(lTable.sigmaMax)));
    assert.ok(Math.abs(e.sigmas[i] - want) / want < 1e-6);
    assert.ok(Math.abs(p.sigmas[i] - want) / want < 1e-6);
  }
  assert.equal(e.sigmas[10], 0);
});

test('sgm_uniform never evaluates σ_min; simple takes every N/n-th table σ', () => {
  const sgm = sgmUniformSchedule({ config: sd15, steps: 4, table: lTable });
  assert.deepEqual(Array.from(sgm.timesteps, (t) => Math.round(t * 100) / 100), [999, 749.25, 499.5, 249.75]);
  const simple = simpleSchedule({ config: sd15, steps: 4, table: lTable });
  assert.deepEqual(Array.from(simple.sigmas), [999, 749, 499, 249].map((t) => lTable.sigmas[t]).concat(0));
  assert.deepEqual(Array.from(simple.timesteps), [999, 749, 499, 249]);
});

test('A1111 DDIM: T = range(0, 1000, 1000 // n) + 1, n − 1 … calls, landing on ᾱ[1]', () => {
  assert.deepEqual(a1111DdimTimesteps(8, 1000), [1, 126, 251, 376, 501, 626, 751, 876]);
  assert.equal(a1111DdimTimesteps(7, 1000).length, 8); // 1000 // 7 = 142 → 0 … 994
  assert.equal(a1111DdimTimesteps(20, 1000).length, 20);
  const plan = a1111DdimSchedule({ config: sd15, steps: 8, table: lTable });
  assert.deepEqual(Array.from(plan.timesteps), [876, 751, 626, 501, 376, 251, 126]);
  assert.equal(plan.sigmas[7], lTable.sigmas[1]);
  assert.ok(Math.abs(plan.finalScale! - Math.sqrt(lTable.alphasCumprod[1])) < 1e-7);
  assert.throws(() => a1111DdimSchedule({ config: sd15, steps: 1, table: lTable }), (e: unknown) => e instanceof LoraserveError && e.code === 'INVALID_ARGUMENT');
});

test('discardPenultimateSigma drops the σ before 0', () => {
  const plan = karrasSchedule({ config: sd15, steps: 9, table: lTable });
  const d = discardPenultimateSigma(plan);
  assert.deepEqual(Array.from(d.sigmas), [...Array.from(plan.sigmas.subarray(0, 8)), 0]);
  assert.equal(d.timesteps.length, 8);
  assert.equal(d.timestepFor(d.sigmas[3]), sigmaToT(lTable, d.sigmas[3]));
});

test('step counts outside 1 … N are INVALID_ARGUMENT', () => {
  for (const steps of [0, -1, 1.5, 1001]) {
    assert.throws(() => uniformSchedule({ config: sd15, steps, table: lTable }), (e: unknown) => e instanceof LoraserveError && e.code === 'INVALID_ARGUMENT');
    assert.throws(() => discreteSchedule({ config: sd15, steps, table: dTable }), (e: unknown) => e instanceof LoraserveError && e.code === 'INVALID_ARGUMENT');
  }
});
