import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cfgCombine, denoisedFromModelOutput, modelInputScale } from '../../../src/diffusion/denoiser.js';

test('c_in = 1/√(σ²+1)', () => {
  assert.equal(modelInputScale(0), 1);
  assert.ok(Math.abs(modelInputScale(Math.sqrt(3)) - 0.5) < 1e-15);
});

test('epsilon: x0 = x − σ·ε; v: x0 = x/(σ²+1) − σ·v/√(σ²+1)', () => {
  const x = Float32Array.of(3, -1);
  assert.deepEqual(denoisedFromModelOutput(x, Float32Array.of(1, 0.5), 2, 'epsilon'), Float32Array.of(1, -2));
  // σ = √3: c_skip = 1/4, c_out = −√3/2
  const v = denoisedFromModelOutput(Float32Array.of(4, 8), Float32Array.of(0, 2 / Math.sqrt(3)), Math.sqrt(3), 'v_prediction');
  assert.ok(Math.abs(v[0] - 1) < 1e-6 && Math.abs(v[1] - 1) < 1e-6);
  // a v-model that is exact for data x0: v = α·ε − σ_vp·x0 at the VP point of x
  const sigma = 1.7;
  const x0 = 0.3;
  const eps = -1.1;
  const alpha = 1 / Math.sqrt(sigma ** 2 + 1);
  const sigmaVp = sigma * alpha;
  const out = denoisedFromModelOutput(Float32Array.of(x0 + sigma * eps), Float32Array.of(alpha * eps - sigmaVp * x0), sigma, 'v_prediction');
  assert.ok(Math.abs(out[0] - x0) < 1e-6);
  assert.throws(() => denoisedFromModelOutput(x, Float32Array.of(1), 1, 'epsilon'), RangeError);
});

test('cfgCombine = uncond + s·(cond − uncond)', () => {
  assert.deepEqual(cfgCombine(Float32Array.of(1, 2), Float32Array.of(3, 2), 7.5), Float32Array.of(16, 2));
  assert.deepEqual(cfgCombine(Float32Array.of(1, 2), Float32Array.of(3, 2), 1), Float32Array.of(3, 2));
});
