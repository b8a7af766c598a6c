import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseLora } from '../../../src/lora/adapter.js';
import { blockWeightsFromVector } from '../../../src/lora/block-weights.js';
import { planLoraScales } from '../../../src/lora/scale-plan.js';
import type { LoraAdapter } from '../../../src/lora/types.js';
import { file, kohya, sd15Targets, target, throwsCode } from './support.js';

const T = sd15Targets();
const IN01 = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q'; // IN01
const IN05 = 'down_blocks.1.attentions.1.transformer_blocks.0.attn2.to_v'; // IN05
const M00 = 'mid_block.attentions.0.proj_out';
const OUT03 = 'up_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k';
const OUT11 = 'up_blocks.3.attentions.2.proj_in';
const TEMB = 'time_embedding.linear_1'; // in no block
const TE = 'text_model.encoder.layers.1.self_attn.out_proj';

function adapter(name: string, modules: string[], rank: number, alpha: number): LoraAdapter {
  return parseLora(name, file(modules.flatMap((m, i) => kohya(target(T, m), rank, { alpha, seed: i }).tensors)), T);
}

const catears = adapter('catears', [IN01, IN05, M00, OUT03, OUT11, TEMB, TE], 4, 2); // alpha/rank 0.5
const idol = adapter('idol', [IN01, OUT03], 8, 8); // 1
const adapters = new Map([
  ['catears', catears],
  ['idol', idol],
]);

const scaleOf = (plan: ReturnType<typeof planLoraScales>, part: 'unet' | 'te', module: string, lora: string) =>
  plan[part].get(module)?.find((s) => s.lora === lora)?.scale;

test('weight × alpha/rank per layer; several LoRAs on one module keep request order', () => {
  const plan = planLoraScales(
    [
      { name: 'catears', weight: 0.6 },
      { name: 'idol', weight: 0.8 },
    ],
    adapters,
  );
  assert.equal(scaleOf(plan, 'unet', IN01, 'catears'), 0.6 * 0.5);
  assert.equal(scaleOf(plan, 'unet', IN01, 'idol'), 0.8);
  assert.deepEqual(
    plan.unet.get(IN01)?.map((s) => s.lora),
    ['catears', 'idol'],
  );
  assert.equal(scaleOf(plan, 'te', TE, 'catears'), 0.3);
  assert.equal(plan.maxRank.unet, 12);
  assert.equal(plan.maxRank.te, 4);
});

test('separate te / unet weights; negative and > 1 weights; 0 leaves layers out', () => {
  const plan = planLoraScales([{ name: 'catears', weight: 0.7, te: -0.4, unet: 1.3 }], adapters);
  assert.equal(scaleOf(plan, 'unet', M00, 'catears'), 1.3 * 0.5);
  assert.equal(scaleOf(plan, 'te', TE, 'catears'), -0.4 * 0.5);
  const noTe = planLoraScales([{ name: 'catears', weight: 1, te: 0 }], adapters);
  assert.equal(noTe.te.size, 0);
  assert.equal(noTe.unet.size, 7 - 1);
  assert.equal(planLoraScales([{ name: 'idol', weight: 0 }], adapters).unet.size, 0);
});

test('block weights: groups in/mid/out, per-block ids winning over groups, BASE for the text encoder', () => {
  const plan = planLoraScales([{ name: 'catears', weight: 1, blocks: { in: 0.5, IN05: 2, mid: 0, out: -1, OUT11: 0.25, BASE: 3 } }], adapters);
  assert.equal(scaleOf(plan, 'unet', IN01, 'catears'), 0.5 * 0.5);
  assert.equal(scaleOf(plan, 'unet', IN05, 'catears'), 2 * 0.5);
  assert.equal(plan.unet.get(M00), undefined);
  assert.equal(scaleOf(plan, 'unet', OUT03, 'catears'), -1 * 0.5);
  assert.equal(scaleOf(plan, 'unet', OUT11, 'catears'), 0.25 * 0.5);
  assert.equal(scaleOf(plan, 'unet', TEMB, 'catears'), 0.5, 'layers outside every block keep weight 1 (LBW)');
  assert.equal(scaleOf(plan, 'te', TE, 'catears'), 3 * 0.5);
  // Case-insensitive ids; LBW vectors: the 17-form zeroes IN00/IN03/…; BASE is the first value.
  const vec = blockWeightsFromVector([0.5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]);
  const lbw = planLoraScales([{ name: 'catears', weight: 1, blocks: vec }], adapters);
  assert.equal(scaleOf(lbw, 'te', TE, 'catears'), 0.25);
  assert.equal(scaleOf(lbw, 'unet', IN01, 'catears'), 0.5);
  assert.equal(scaleOf(planLoraScales([{ name: 'idol', weight: 1, blocks: { in01: 0.5 } }], adapters), 'unet', IN01, 'idol'), 0.5);
});

test('request errors: duplicate names, the same LoRA twice, unknown LoRA, bad numbers, unknown blocks', () => {
  throwsCode(() => planLoraScales([{ name: 'idol', weight: 1 }, { name: 'idol', weight: 0.5 }], adapters), 'INVALID_ARGUMENT', /named twice/);
  const byAlias = (n: string) => (n === 'Idol' || n === 'idol' ? idol : adapters.get(n));
  throwsCode(() => planLoraScales([{ name: 'idol', weight: 1 }, { name: 'Idol', weight: 1 }], byAlias), 'INVALID_ARGUMENT', /same LoRA/);
  const e = throwsCode(() => planLoraScales([{ name: 'stage', weight: 1 }], adapters), 'UNKNOWN_LORA', /unknown LoRA 'stage'/);
  assert.equal(e.details?.name, 'stage');
  throwsCode(() => planLoraScales([{ name: 'idol', weight: NaN }], adapters), 'INVALID_ARGUMENT', /weight must be a finite number/);
  throwsCode(() => planLoraScales([{ name: 'idol', weight: 1, te: Infinity }], adapters), 'INVALID_ARGUMENT', /te must be/);
  throwsCode(() => planLoraScales([{ name: 'idol', weight: 1, blocks: { IN12x: 1 } }], adapters), 'INVALID_ARGUMENT', /unknown block "IN12x"/);
  throwsCode(() => planLoraScales([{ name: '', weight: 1 }], adapters), 'INVALID_ARGUMENT', /no name/);
});

test('signature: equal for equal requests, different when any weight changes', () => {
  const sig = (r: Parameters<typeof planLoraScales>[0]) => planLoraScales(r, adapters).signature;
  const base = [
    { name: 'catears', weight: 0.6 },
    { name: 'idol', weight: 0.8, blocks: { out: 0.5, in: 1 } },
  ];
  assert.equal(sig(base), sig([{ name: 'catears', weight: 0.6, te: 0.6 }, { name: 'idol', weight: 0.8, blocks: { in: 1, out: 0.5 } }]));
  assert.notEqual(sig(base), sig([{ name: 'catears', weight: 0.4 }, base[1]]));
  assert.notEqual(sig(base), sig([base[0], { name: 'idol', weight: 0.8, blocks: { out: 0.5 } }]));
  assert.equal(sig([]), '[]');
});
