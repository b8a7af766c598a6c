import assert from 'node:assert/strict';
import { test } from 'node:test';
import { alphasCumprodFor, buildNoiseTable, sigmaFromAlphaCumprod, sigmaToT, tToSigma } from '../../../src/diffusion/noise-table.js';
import { parseSchedulerConfig } from '../../../src/diffusion/scheduler-config.js';
import { sd15 } from './sd15.js';

test('SD1.5 σ table ends are k-diffusion\'s well-known σ_min / σ_max', () => {
  const t = buildNoiseTable(sd15, 'ldm');
  assert.equal(t.sigmaMin, Math.fround(0.029167532920837402));
  assert.equal(t.sigmaMax, Math.fround(14.614642143249512));
  assert.equal(t.sigmas.length, 1000);
  for (let i = 1; i < 1000; i++) assert.ok(t.sigmas[i] > t.sigmas[i - 1] && t.alphasCumprod[i] < t.alphasCumprod[i - 1]);
});

test('diffusers (float32) and ldm (float64) ᾱ agree to < 1e-6 relative, values are float32', () => {
  const a = alphasCumprodFor(sd15, 'diffusers');
  const b = alphasCumprodFor(sd15, 'ldm');
  let worst = 0;
  let differ = 0;
  for (let i = 0; i < 1000; i++) {
    assert.equal(Math.fround(a[i]), a[i]);
    assert.equal(Math.fround(b[i]), b[i]);
    worst = Math.max(worst, Math.abs(a[i] - b[i]) / b[i]);
    if (a[i] !== b[i]) differ++;
  }
  assert.ok(worst < 1e-6, `worst ${worst}`);
  assert.ok(differ > 0, 'the flavours are not the same table');
  assert.equal(a[0], Math.fround(1 - 0.00085));
});

test('schedules: linear and cosine betas follow their formulas', () => {
  const lin = alphasCumprodFor(parseSchedulerConfig({ beta_schedule: 'linear', beta_start: 0.0001, beta_end: 0.02 }), 'ldm');
  assert.equal(lin[0], Math.fround(1 - 0.0001));
  let p = 1;
  for (let i = 0; i < 1000; i++) p *= 1 - (0.0001 + (i * (0.02 - 0.0001)) / 999);
  assert.ok(Math.abs(lin[999] - p) / p < 1e-6);
  const cos = alphasCumprodFor(parseSchedulerConfig({ beta_schedule: 'squaredcos_cap_v2' }), 'ldm');
  const ab = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
  // ᾱ[t] = ab((t+1)/N) / ab(0) until the 0.999 cap bites at the very end
  for (const t of [0, 100, 500, 900]) assert.ok(Math.abs(cos[t] - ab((t + 1) / 1000) / ab(0)) < 1e-6, `t=${t}`);
});

test('σ from ᾱ in float32: √((1−ᾱ)/ᾱ)', () => {
  assert.equal(sigmaFromAlphaCumprod(1), 0);
  assert.equal(sigmaFromAlphaCumprod(0.5), 1);
  assert.equal(sigmaFromAlphaCumprod(0.2), 2);
});

test('sigmaToT / tToSigma: exact on the table, inverse in between, clamped outside', () => {
  const t = buildNoiseTable(sd15, 'ldm');
  for (const k of [0, 1, 250, 500, 998, 999]) {
    assert.equal(sigmaToT(t, t.sigmas[k]), k);
    assert.equal(tToSigma(t, k), Math.fround(Math.exp(t.logSigmas[k])));
  }
  for (const tt of [0.5, 123.25, 856.2857, 998.75]) assert.ok(Math.abs(sigmaToT(t, tToSigma(t, tt)) - tt) < 1e-3, `t=${tt}`);
  assert.equal(sigmaToT(t, 0.001), 0);
  assert.equal(sigmaToT(t, 100), 999);
});
