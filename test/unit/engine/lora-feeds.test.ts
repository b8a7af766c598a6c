/**
 * The branch feeds compute the merged delta: (x·Aᵀ)·Bᵀ (linear) or conv(conv(x;A); B) (conv) must equal
 * Σᵢ sᵢ · upᵢ @ downᵢ for one and several LoRAs, for float32 and float16 graphs and float32 and fp16 files,
 * a repeated request reuses the same feed objects, and zero-rank feeds add nothing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildFeeds, emptyFeeds, LoraFactorCache, scaleOnDown } from '../../../src/engine/lora-feeds.js';
import type { LoraLayer, ScaledLayer } from '../../../src/lora/index.js';
import type { LoraBranch, LoraBranchPlan } from '../../../src/onnx/lora-branches.js';
import { factorToFloat32 } from '../../../src/lora/safetensors.js';
import { float16ToFloat32Array, float32ToFloat16Array } from '../../../src/tensor/float16.js';

function rand(n: number, seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: n }, () => {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    return Math.fround(s / 2 ** 31 - 0.5);
  });
}

function branch(kind: 'linear' | 'conv', inF: number, outF: number, kernel: [number, number], dtype: 'float32' | 'float16' = 'float32'): LoraBranch {
  return { index: 0, module: 'm', op: kind === 'conv' ? 'Conv' : 'MatMul', kind, inFeatures: inF, outFeatures: outF, kernel, dtype, downInput: 'd', upInput: 'u' };
}

function layer(b: LoraBranch, rank: number, seed: number, file: 'float32' | 'float16' = 'float32'): LoraLayer {
  const k = b.kernel[0] * b.kernel[1];
  const f = (x: Float32Array) => (file === 'float16' ? float32ToFloat16Array(x) : x);
  return {
    part: 'unet', module: b.module, kind: b.kind, rank, alpha: rank, scale: 1,
    down: f(rand(rank * b.inFeatures * k, seed)), up: f(rand(b.outFeatures * rank, seed + 7)),
    downKernel: b.kernel, inFeatures: b.inFeatures, outFeatures: b.outFeatures, key: `k${seed}`,
  };
}

/** Σ s·up@down as [out, in·kh·kw]. */
function mergedDelta(b: LoraBranch, layers: ScaledLayer[]): Float64Array {
  const cols = b.inFeatures * b.kernel[0] * b.kernel[1];
  const d = new Float64Array(b.outFeatures * cols);
  for (const { layer: l, scale } of layers) {
    const up = factorToFloat32(l.up), down = factorToFloat32(l.down);
    for (let o = 0; o < b.outFeatures; o++) for (let c = 0; c < cols; c++) {
      let acc = 0;
      for (let j = 0; j < l.rank; j++) acc += up[o * l.rank + j] * down[j * cols + c];
      d[o * cols + c] += scale * acc;
    }
  }
  return d;
}

/** The same delta from the feeds, as the graph combines them: A [R, in·k] and B [out, R] for both kinds. */
function deltaFromFeeds(b: LoraBranch, feeds: ReturnType<typeof buildFeeds>): Float64Array {
  const f = (name: string) => (feeds[name].type === 'float16' ? float16ToFloat32Array(feeds[name].data as Uint16Array) : (feeds[name].data as Float32Array));
  const A = f('d'), B = f('u');
  const R = feeds.d.dims[0];
  assert.equal(feeds.u.dims[1], R);
  const cols = b.inFeatures * b.kernel[0] * b.kernel[1];
  const d = new Float64Array(b.outFeatures * cols);
  for (let o = 0; o < b.outFeatures; o++) for (let c = 0; c < cols; c++) {
    let acc = 0;
    for (let j = 0; j < R; j++) acc += A[j * cols + c] * B[o * R + j];
    d[o * cols + c] = acc;
  }
  return d;
}

function maxDiff(a: Float64Array, b: Float64Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

// in 6 / out 5 puts the scales on down (the shorter write), in 12 / out 5 on up; 3×3 convs always on up.
for (const [kind, kernel, inF] of [['linear', [1, 1], 6], ['linear', [1, 1], 12], ['conv', [1, 1], 6], ['conv', [3, 3], 6]] as const) {
  for (const dtype of ['float32', 'float16'] as const) {
    for (const file of ['float32', 'float16'] as const) {
      test(`${kind} ${kernel.join('x')} in ${inF} ${dtype} graph, ${file} file: one and three LoRAs give the merged delta`, () => {
        const b = branch(kind, inF, 5, [...kernel] as [number, number], dtype);
        const plan: LoraBranchPlan = { branches: [b], byModule: new Map([['m', b]]) };
        const cache = new LoraFactorCache();
        const tol = dtype === 'float32' ? 1e-6 : 2e-3;
        const l1 = layer(b, 2, 1, file), l2 = layer(b, 3, 2, file), l3 = layer(b, 1, 3, file);
        const [scaled, plain] = scaleOnDown(b) ? (['d', 'u'] as const) : (['u', 'd'] as const);
        for (const set of [[{ lora: 'a', layer: l1, weight: 0.7, scale: 0.35 }], [
          { lora: 'a', layer: l1, weight: 0.7, scale: 0.35 },
          { lora: 'b', layer: l2, weight: -0.4, scale: -0.4 },
          { lora: 'c', layer: l3, weight: 1.3, scale: 2.6 },
        ]] as ScaledLayer[][]) {
          const feeds = buildFeeds(plan, new Map([['m', set]]), emptyFeeds(plan), cache);
          assert.ok(maxDiff(deltaFromFeeds(b, feeds), mergedDelta(b, set)) < tol);
          // the same request again: the very same feed objects (nothing rebuilt, ORT tensors reused)
          const repeat = buildFeeds(plan, new Map([['m', set.map((x) => ({ ...x }))]]), emptyFeeds(plan), cache);
          assert.equal(repeat.d, feeds.d);
          assert.equal(repeat.u, feeds.u);
          // new weights: the plain factor is reused, only the one carrying the scales is new
          const reweighted = set.map((x) => ({ ...x, scale: x.scale * -2 }));
          const again = buildFeeds(plan, new Map([['m', reweighted]]), emptyFeeds(plan), cache);
          assert.equal(again[plain], feeds[plain]);
          assert.notEqual(again[scaled], feeds[scaled]);
          assert.ok(maxDiff(deltaFromFeeds(b, again), mergedDelta(b, reweighted)) < tol);
        }
      });
    }
  }
}

test('a single LoRA whose precision matches the graph feeds its own unscaled factor; copies count against the budget', () => {
  for (const inF of [6, 12]) {
    const b = branch('linear', inF, 5, [1, 1]);
    const plan: LoraBranchPlan = { branches: [b], byModule: new Map([['m', b]]) };
    const onDown = scaleOnDown(b);
    assert.equal(onDown, inF === 6);
    const cache = new LoraFactorCache();
    const l1 = layer(b, 2, 1);
    const feeds = buildFeeds(plan, new Map([['m', [{ lora: 'a', layer: l1, weight: 1, scale: 0.5 }]]]), emptyFeeds(plan), cache);
    assert.equal(onDown ? feeds.u.data : feeds.d.data, onDown ? l1.up : l1.down);
    const scaledBytes = 4 * 2 * (onDown ? inF : 5);
    assert.equal(cache.bytes, scaledBytes);
    const half = layer(b, 2, 1, 'float16');
    buildFeeds(plan, new Map([['m', [{ lora: 'a', layer: half, weight: 1, scale: 0.5 }]]]), emptyFeeds(plan), cache);
    assert.equal(cache.bytes, scaledBytes + 4 * (2 * inF + 5 * 2)); // fp16 file, float32 graph: both widened
  }
});

test('the cache stays within its byte budget, dropping the least recently used', () => {
  const b = branch('linear', 6, 5, [1, 1]);
  const plan: LoraBranchPlan = { branches: [b], byModule: new Map([['m', b]]) };
  const cache = new LoraFactorCache(100);
  for (let i = 0; i < 10; i++) buildFeeds(plan, new Map([['m', [{ lora: 'a', layer: layer(b, 2, i), weight: 1, scale: i + 1 }]]]), emptyFeeds(plan), cache);
  assert.ok(cache.bytes <= 100, `${cache.bytes}`);
});

test('zero-rank feeds have zero-size factors of the right rank-0 shapes', () => {
  const lin = branch('linear', 6, 5, [1, 1]);
  const conv = { ...branch('conv', 6, 5, [3, 3]), index: 1, module: 'c', downInput: 'cd', upInput: 'cu' };
  const feeds = emptyFeeds({ branches: [lin, conv], byModule: new Map() });
  assert.deepEqual(feeds.d.dims, [0, 6]);
  assert.deepEqual(feeds.u.dims, [5, 0]);
  assert.deepEqual(feeds.cd.dims, [0, 6, 3, 3]);
  assert.deepEqual(feeds.cu.dims, [5, 0, 1, 1]);
  assert.deepEqual(Object.keys(feeds).sort(), ['cd', 'cu', 'd', 'u']);
});

test('a layer whose shape disagrees with the branch is LORA_MISMATCH', () => {
  const b = branch('linear', 6, 5, [1, 1]);
  const plan: LoraBranchPlan = { branches: [b], byModule: new Map([['m', b]]) };
  const bad = { ...layer(b, 2, 1), inFeatures: 7 };
  assert.throws(() => buildFeeds(plan, new Map([['m', [{ lora: 'x', layer: bad, weight: 1, scale: 1 }]]]), emptyFeeds(plan), new LoraFactorCache()), (e: Error & { code?: string }) => e.code === 'LORA_MISMATCH');
  assert.throws(() => buildFeeds(plan, new Map([['other', [{ lora: 'x', layer: layer(b, 2, 1), weight: 1, scale: 1 }]]]), emptyFeeds(plan), new LoraFactorCache()), (e: Error & { code?: string }) => e.code === 'LORA_MISMATCH');
});

test('arena-backed factors: a leased factor is never recycled while leased, even once evicted; released ones are', () => {
  const b = branch('linear', 64, 64, [1, 1]);
  const plan: LoraBranchPlan = { branches: [b], byModule: new Map([['m', b]]) };
  // Room for about one set's factors: each new set evicts the previous one.
  const cache = new LoraFactorCache(2 * 4 * 64 * 4);
  cache.topUp(1 << 20);
  const sets = new Map<number, Map<string, ScaledLayer[]>>();
  const set = (i: number) => {
    if (!sets.has(i)) sets.set(i, new Map([['m', [{ lora: 'a', layer: layer(b, 2, i), weight: 1, scale: 0.5 }, { lora: 'b', layer: layer(b, 2, i + 100), weight: 1, scale: 2 }]]]));
    return sets.get(i)!;
  };
  const lease1 = cache.lease();
  const f1 = buildFeeds(plan, set(1), emptyFeeds(plan), cache, lease1);
  const snapshot = Float32Array.from(f1.d.data as Float32Array);
  assert.ok(cache.arena.usedBytes > 0, 'carved from the arena');
  // Set 2 evicts set 1's entries, but lease1 still holds them: their memory must not be reused.
  const lease2 = cache.lease();
  buildFeeds(plan, set(2), emptyFeeds(plan), cache, lease2);
  const lease3 = cache.lease();
  buildFeeds(plan, set(3), emptyFeeds(plan), cache, lease3);
  assert.deepEqual(f1.d.data, snapshot, 'leased factor intact');
  const used = cache.arena.usedBytes;
  lease1.release();
  lease1.release(); // idempotent
  assert.ok(cache.arena.usedBytes < used, 'evicted and released: given back');
  lease2.release();
  // Set 3's entries are cached (not evicted): releasing keeps them, and a hit returns the same tensor.
  lease3.release();
  const lease4 = cache.lease();
  const again = buildFeeds(plan, set(3), emptyFeeds(plan), cache, lease4);
  const f3 = buildFeeds(plan, set(3), emptyFeeds(plan), cache);
  assert.equal(again.d, f3.d);
  // A factor handed out without a lease is pinned for good: evicting it does not recycle its memory.
  const before = cache.arena.usedBytes;
  lease4.release();
  buildFeeds(plan, set(4), emptyFeeds(plan), cache, cache.lease());
  assert.ok(cache.arena.usedBytes >= before, 'the unleased hit kept set 3 pinned');
});

test('rank-1 "empty" feeds (for WebGPU, which crashes on zero-size tensors) are zeros of rank-1 shapes', () => {
  const lin = branch('linear', 6, 5, [1, 1]);
  const conv = { ...branch('conv', 6, 5, [3, 3]), index: 1, module: 'c', downInput: 'cd', upInput: 'cu' };
  const feeds = emptyFeeds({ branches: [lin, conv], byModule: new Map() }, 1);
  assert.deepEqual(feeds.d.dims, [1, 6]);
  assert.deepEqual(feeds.u.dims, [5, 1]);
  assert.deepEqual(feeds.cd.dims, [1, 6, 3, 3]);
  assert.deepEqual(feeds.cu.dims, [5, 1, 1, 1]);
  for (const t of Object.values(feeds)) assert.ok(t.data.length > 0 && (t.data as Float32Array).every((v) => v === 0));
});
