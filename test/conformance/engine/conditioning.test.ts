/**
 * buildConditioning end to end on the tiny-sd15 fixture: the rewritten text encoder in onnxruntime-node, the
 * fixture's CLIP tokenizer, and A1111's conditioning steps. Against refs/kdiff/prompt_embeds ([cond; uncond] as
 * A1111 v1.9.4's FrozenCLIPEmbedderWithCustomWords computed them in PyTorch for the k-diffusion references): the
 * same numbers up to onnxruntime-vs-torch float differences. Then the seed prompts with three textual-inversion
 * embeddings (written to a temp folder) and clip skip 2 run through the same path.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as ort from 'onnxruntime-node';
import { buildConditioning, type TextEncodeFn } from '../../../src/engine/conditioning.js';
import { encodeModel, readModel } from '../../../src/onnx/proto.js';
import { rewriteTextEncoder, textEncoderFeeds } from '../../../src/onnx/text-encoder-rewrite.js';
import { ClipTokenizer } from '../../../src/text/clip-tokenizer.js';
import { EmbeddingLibrary } from '../../../src/text/embeddings/library.js';
import { compare, kdiffRefs, requireFixtures } from '../../helpers/fixtures.js';

ort.env.logLevel = 'error';

async function fixtureEncoder(): Promise<{ encode: TextEncodeFn; info: ReturnType<typeof rewriteTextEncoder>; tokenizer: ClipTokenizer }> {
  const dir = requireFixtures('tiny-sd15');
  const { model } = await readModel(join(dir, 'text_encoder', 'model.onnx'));
  const info = rewriteTextEncoder(model);
  const session = await ort.InferenceSession.create(encodeModel(model), { graphOptimizationLevel: 'all' });
  const encode: TextEncodeFn = async (ids, extra, clipSkip) => {
    const { feeds, output } = textEncoderFeeds(info, ids, extra, clipSkip);
    const out = await session.run(Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, new ort.Tensor(t.type, t.data, t.dims)])), [output]);
    return out[output].data as Float32Array;
  };
  return { encode, info, tokenizer: await ClipTokenizer.fromFolder(join(dir, 'tokenizer')) };
}

test('A1111 conditioning of the k-diffusion reference prompts equals refs/kdiff/prompt_embeds', async () => {
  const { encode, info, tokenizer } = await fixtureEncoder();
  const refs = kdiffRefs();
  const run = (refs.index.runs as Record<string, { prompt: string; negative_prompt: string }>)['a1111_euler_uniform'];
  const c = await buildConditioning(
    { tokenizer, encode, hiddenSize: info.hiddenSize, placeholderBase: info.tableRows, layers: info.layers },
    { prompt: run.prompt, negativePrompt: run.negative_prompt, steps: 8 },
  );
  const embeds = refs.f32('prompt_embeds').data; // [cond; uncond], [2, 77, 32]
  const per = 77 * 32;
  const cond = compare(c.condAt(0), embeds.subarray(0, per));
  const uncond = compare(c.uncondAt(0), embeds.subarray(per));
  assert.ok(cond.maxAbs < 1e-5 && uncond.maxAbs < 1e-5, `cond ${JSON.stringify(cond)} uncond ${JSON.stringify(uncond)}`);
  assert.equal(c.sameLength, true);
});

test('the seed prompts with EasyNegativeV2 (16), ng_deepnegative_v1_75t (75), badhandv4 (6) and clip skip 2', async () => {
  const { encode, info, tokenizer } = await fixtureEncoder();
  const dir = await mkdtemp(join(tmpdir(), 'loraserve-seed-ti-'));
  try {
    const write = (name: string, n: number) => {
      const data = Float32Array.from({ length: n * 32 }, (_, i) => Math.sin(i + n));
      const json = JSON.stringify({ emb_params: { dtype: 'F32', shape: [n, 32], data_offsets: [0, data.byteLength] } }).padEnd(64, ' ');
      const head = Buffer.alloc(8);
      head.writeBigUInt64LE(BigInt(json.length));
      return writeFile(join(dir, `${name}.safetensors`), Buffer.concat([head, Buffer.from(json), Buffer.from(data.buffer)]));
    };
    await Promise.all([write('EasyNegativeV2', 16), write('ng_deepnegative_v1_75t', 75), write('badhandv4', 6)]);
    const embeddings = await EmbeddingLibrary.open(dir);
    const prompt = '(masterpiece:1.3), ((,best quality,)), 1girl, (red hair: 1.1) <lora:catears:0.6><lora:idol:0.8><lora:stage:0.4>';
    const negativePrompt = 'NSFW,text,(worst quality:1.331), EasyNegativeV2, ng_deepnegative_v1_75t, pregnancy, badhandv4, six fingers,';
    const c = await buildConditioning(
      { tokenizer, encode, hiddenSize: info.hiddenSize, placeholderBase: info.tableRows, layers: info.layers, embeddings },
      { prompt, negativePrompt, steps: 20, clipSkip: 2 },
    );
    assert.equal(c.condTokens, 77);
    assert.equal(c.uncondTokens, 3 * 77); // the 75-vector embedding takes a chunk of its own
    assert.equal(c.sameLength, false);
    assert.deepEqual(c.loraTags.map((t) => `${t.name}:${t.te}`), ['catears:0.6', 'idol:0.8', 'stage:0.4']);
    assert.deepEqual(c.infotext.tiHashes.map((h) => h.name), ['EasyNegativeV2', 'ng_deepnegative_v1_75t', 'badhandv4']);
    for (const h of c.infotext.tiHashes) assert.match(h.hash, /^[0-9a-f]{12}$/);
    for (const v of c.uncondAt(0)) assert.ok(Number.isFinite(v));
    const padded = await buildConditioning(
      { tokenizer, encode, hiddenSize: info.hiddenSize, placeholderBase: info.tableRows, layers: info.layers, embeddings },
      { prompt, negativePrompt, steps: 20, clipSkip: 2, padConds: true },
    );
    assert.equal(padded.condTokens, 3 * 77);
    assert.deepEqual(padded.condAt(0).subarray(0, 77 * 32), c.condAt(0));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
