/**
 * The branch feeds compute the merged delta: ((x·A) ⊙ s)·B (linear) or conv(conv(x;A) ⊙ s; B) (conv) must equal
 * Σᵢ sᵢ · upᵢ @ downᵢ for one and several LoRAs, in float32 and float16 layouts, and zero-rank feeds add nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildFeeds, emptyFeeds, LoraFactorCache } from '../../../src/engine/lora-feeds.js';
import type { LoraLayer, ScaledLayer } from '../../../src/lora/index.js';
import type { LoraBranch, LoraBranchPlan } from '../../../src/onnx/lora-branches.js';
import { float16ToFloat32Array } from '../../../src/tensor/float16.js';

function rand(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return Math.fround(s / 2 ** 31 - 0.5);
  });
}

function branch(kind: 'linear' | 'conv', inF: number, outF: number, kernel: [number, number], dtype: 'float32' | 'float16' = 'float32'): LoraBranch {
  return { index: 0, module: 'm', op: kind === 'conv' ? 'Conv' : 'MatMul', kind, inFeatures: inF, outFeatures: outF, kernel, dtype, downInput: 'd', upInput: 'u', scaleInput: 's' };
}

function layer(b: LoraBranch, rank: number, seed: number): LoraLayer {
  const k = b.kernel[0] * b.kernel[1];
  return {
    part: 'unet', module: b.module, kind: b.kind, rank, alpha: rank, scale: 1,
    down: rand(rank * b.inFeatures * k, seed), up: rand(b.outFeatures * rank, seed + 7),
    downKernel: b.kernel, inFeatures: b.inFeatures, outFeatures: b.outFeatures, key: `k${seed}`,
  };
}

/** Σ s·up@down as [out, in·kh·kw]. */
function mergedDelta(b: LoraBranch, layers: ScaledLayer[]): Float64Array {
  const cols = b.inFeatures * b.kernel[0] * b.kernel[1];
  const d = new Float64Array(b.outFeatures * cols);
  for (const { layer: l, scale } of layers) {
    for (let o = 0; o < b.outFeatures; o++) for (let c = 0; c < cols; c++) {
      let acc = 0;
      for (let j = 0; j < l.rank; j++) acc += l.up[o * l.rank + j] * l.down[j * cols + c];
      d[o * cols + c] += scale * acc;
    }
  }
  return d;
}

/** The same delta from the feeds, as the graph combines them. */
function deltaFromFeeds(b: LoraBranch, feeds: ReturnType<typeof buildFeeds>): Float64Array {
  const f = (name: string) => (feeds[name].type === 'float16' ? float16ToFloat32Array(feeds[name].data as Uint16Array) : (feeds[name].data as Float32Array));
  const A = f('d'), B = f('u'), s = f('s');
  const R = s.length;
  const cols = b.inFeatures * b.kernel[0] * b.kernel[1];
  const d = new Float64Array(b.outFeatures * cols);
  for (let o = 0; o < b.outFeatures; o++) for (let c = 0; c < cols; c++) {
    let acc = 0;
    for (let j = 0; j < R; j++) {
      const a = A[j * cols + c]; // A [R, in·k] for both kinds (the graph transposes it for linear layers)
      const bb = b.kind === 'conv' ? B[o * R + j] : B[j * b.outFeatures + o]; // conv B [out, R]; linear B [R, out]
      acc += a * s[j] * bb;
    }
    d[o * cols + c] = acc;
  }
  return d;
}

function maxDiff(a: Float64Array, b: Float64Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

for (const [kind, kernel] of [['linear', [1, 1]], ['conv', [1, 1]], ['conv', [3, 3]]] as const) {
  for (const dtype of ['float32', 'float16'] as const) {
    test(`${kind} ${kernel.join('x')} ${dtype}: one and three LoRAs give the merged delta`, () => {
      const b = branch(kind, 6, 5, [...kernel] as [number, number], dtype);
      const plan: LoraBranchPlan = { branches: [b], byModule: new Map([['m', b]]) };
      const cache = new LoraFactorCache();
      const tol = dtype === 'float32' ? 1e-6 : 2e-3;
      const l1 = layer(b, 2, 1), l2 = layer(b, 3, 2), l3 = layer(b, 1, 3);
      for (const set of [[{ lora: 'a', layer: l1, weight: 0.7, scale: 0.35 }], [
        { lora: 'a', layer: l1, weight: 0.7, scale: 0.35 },
        { lora: 'b', layer: l2, weight: -0.4, scale: -0.4 },
        { lora: 'c', layer: l3, weight: 1.3, scale: 2.6 },
      ]] as ScaledLayer[][]) {
        const feeds = buildFeeds(plan, new Map([['m', set]]), emptyFeeds(plan), cache);
        assert.ok(maxDiff(deltaFromFeeds(b, feeds), mergedDelta(b, set)) < tol);
        // again from the cache (stacked once per combination), with other weights
        const reweighted = set.map((x) => ({ ...x, scale: x.scale * -2 }));
        const again = buildFeeds(plan, new Map([['m', reweighted]]), emptyFeeds(plan), cache);
        assert.ok(maxDiff(deltaFromFeeds(b, again), mergedDelta(b, reweighted)) < tol);
      }
    });
  }
}

test('zero-rank feeds have zero-size factors of the right rank-0 shapes', () => {
  const lin = branch('linear', 6, 5, [1, 1]);
  const conv = { ...branch('conv', 6, 5, [3, 3]), index: 1, module: 'c', downInput: 'cd', upInput: 'cu', scaleInput: 'cs' };
  const feeds = emptyFeeds({ branches: [lin, conv], byModule: new Map() });
  assert.deepEqual(feeds.d.dims, [0, 6]);
  assert.deepEqual(feeds.u.dims, [0, 5]);
  assert.deepEqual(feeds.s.dims, [0]);
  assert.deepEqual(feeds.cd.dims, [0, 6, 3, 3]);
  assert.deepEqual(feeds.cu.dims, [5, 0, 1, 1]);
  assert.deepEqual(feeds.cs.dims, [0, 1, 1]);
});

test('a layer whose shape disagrees with the branch is LORA_MISMATCH', () => {
  const b = branch('linear', 6, 5, [1, 1]);
  const plan: LoraBranchPlan = { branches: [b], byModule: new Map([['m', b]]) };
  const bad = { ...layer(b, 2, 1), inFeatures: 7 };
  assert.throws(() => buildFeeds(plan, new Map([['m', [{ lora: 'x', layer: bad, weight: 1, scale: 1 }]]]), emptyFeeds(plan), new LoraFactorCache()), (e: Error & { code?: string }) => e.code === 'LORA_MISMATCH');
  assert.throws(() => buildFeeds(plan, new Map([['other', [{ lora: 'x', layer: layer(b, 2, 1), weight: 1, scale: 1 }]]]), emptyFeeds(plan), new LoraFactorCache()), (e: Error & { code?: string }) => e.code === 'LORA_MISMATCH');
});
