/**
 * buildConditioning with the miniature tokenizer and a fake text encoder whose output is a known function of
 * (id, position, channel) — and, for placeholder ids, the extra row it is given — so every step of A1111's
 * conditioning (chunks, emphasis, schedules, padding, textual inversion, infotext) can be checked by hand.
 * The real encoder on the tiny-sd15 fixture is in test/conformance/engine/conditioning.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { applyEmphasis, buildConditioning, type ConditioningModel, type TextEncodeFn } from '../../../src/engine/conditioning.js';
import { LoraserveError } from '../../../src/core/errors.js';
import { EmbeddingLibrary } from '../../../src/text/embeddings/library.js';
import { tokenizeLine } from '../../../src/text/prompt-chunks.js';
import { f32bytes, safetensors } from '../text/embedding-builders.js';
import { tinyTokenizer, words } from '../text/support.js';

const D = 4;
const tok = tinyTokenizer();
const BASE = 1000; // the fake encoder's "token table rows"

/** Fake encoder value of an ordinary id at position t, channel d (clip skip shifts it). */
const value = (id: number, t: number, d: number, clipSkip: number): number => Math.fround((((id * 31 + t * 7 + d * 3) % 17) + 1) / 17 + clipSkip / 8);

function fakeEncoder(calls: Array<{ rows: number; extraRows: number; clipSkip: number }> = []): TextEncodeFn {
  return async (ids, extra, clipSkip) => {
    calls.push({ rows: ids.length / 77, extraRows: extra.length / D, clipSkip });
    const z = new Float32Array(ids.length * D);
    for (let i = 0; i < ids.length; i++) {
      const t = i % 77;
      for (let d = 0; d < D; d++) z[i * D + d] = ids[i] >= BASE ? extra[(ids[i] - BASE) * D + d] : value(ids[i], t, d, clipSkip);
    }
    return z;
  };
}

const model = (over: Partial<ConditioningModel> = {}): ConditioningModel => ({ tokenizer: tok, encode: fakeEncoder(), hiddenSize: D, placeholderBase: BASE, layers: 3, ...over });

/** The fake encoder's raw output for one chunk of `line`. */
function rawChunk(line: string, index = 0, clipSkip = 1, parseAttention = true): Float32Array {
  const c = tokenizeLine(tok, line, { parseAttention }).chunks[index];
  const z = new Float32Array(77 * D);
  c.tokens.forEach((id, t) => {
    for (let d = 0; d < D; d++) z[t * D + d] = value(id, t, d, clipSkip);
  });
  return z;
}

test('a plain prompt: the encoder output itself (emphasis is an identity without weights), one UNet batch', async () => {
  const c = await buildConditioning(model(), { prompt: 'a b', negativePrompt: 'b', steps: 10 });
  assert.deepEqual(c.condAt(0), rawChunk('a b'));
  assert.deepEqual(c.uncondAt(9), rawChunk('b'));
  assert.equal(c.condTokens, 77);
  assert.equal(c.sameLength, true);
  assert.equal(c.cfgWeight, 1);
  assert.deepEqual(c.infotext, { tiHashes: [] });
  assert.equal(c.encodedChunks, 2);
});

test('emphasis: Original rescales to the old mean, No norm multiplies, Ignore leaves z', async () => {
  const prompt = '(a:1.5) [b] a';
  const z = rawChunk(prompt);
  const w = tokenizeLine(tok, prompt).chunks[0].multipliers;
  const weighted = z.map((v, i) => Math.fround(v * Math.fround(w[Math.floor(i / D)])));
  const mean = (a: ArrayLike<number>) => Array.from(a).reduce((s, v) => s + v, 0) / a.length;
  const ratio = mean(z) / mean(weighted);

  const original = (await buildConditioning(model(), { prompt, negativePrompt: '', steps: 4 })).condAt(0);
  for (let i = 0; i < z.length; i++) assert.ok(Math.abs(original[i] - weighted[i] * ratio) < 1e-6, `Original at ${i}`);
  assert.ok(Math.abs(mean(original) - mean(z)) < 1e-6, 'the mean is restored');

  const noNorm = await buildConditioning(model(), { prompt, negativePrompt: '', steps: 4, emphasis: 'No norm' });
  assert.deepEqual(noNorm.condAt(0), weighted);
  assert.equal(noNorm.infotext.emphasis, 'No norm');
  const ignore = await buildConditioning(model(), { prompt, negativePrompt: '', steps: 4, emphasis: 'Ignore' });
  assert.deepEqual(ignore.condAt(0), z);
  // "None": brackets are words
  const none = await buildConditioning(model(), { prompt, negativePrompt: '', steps: 4, emphasis: 'None' });
  assert.deepEqual(none.condAt(0), rawChunk(prompt, 0, 1, false));
  assert.notDeepEqual(none.condAt(0), z);
});

test('Original emphasis takes its means over the whole batch of a chunk index (all schedule entries)', () => {
  const z1 = Float32Array.from({ length: 77 * D }, (_, i) => 1 + (i % 5));
  const z2 = Float32Array.from({ length: 77 * D }, (_, i) => 2 + (i % 3));
  const m1 = new Array(77).fill(1);
  m1[1] = 2;
  const m2 = new Array(77).fill(1);
  const [a, b] = applyEmphasis('Original', [{ z: z1, multipliers: m1 }, { z: z2, multipliers: m2 }], D);
  // one ratio for both: entry 2 (no weights) is scaled too
  const ratio = b[0] / z2[0];
  assert.ok(ratio < 1);
  for (let i = 0; i < z2.length; i++) assert.ok(Math.abs(b[i] - z2[i] * ratio) < 1e-6);
  assert.ok(Math.abs(a[D] - z1[D] * 2 * ratio) < 1e-6);
});

test('long prompts: 75-token chunks concatenated; different lengths → separate batches, or Pad conds', async () => {
  const long = words(80);
  const c = await buildConditioning(model(), { prompt: long, negativePrompt: 'b', steps: 4 });
  assert.equal(c.condTokens, 154);
  assert.equal(c.uncondTokens, 77);
  assert.equal(c.sameLength, false);
  const cond = c.condAt(0);
  assert.deepEqual(cond.subarray(0, 77 * D), rawChunk(long, 0));
  assert.deepEqual(cond.subarray(77 * D), rawChunk(long, 1));

  const padded = await buildConditioning(model(), { prompt: long, negativePrompt: 'b', steps: 4, padConds: true });
  assert.equal(padded.uncondTokens, 154);
  assert.equal(padded.sameLength, true);
  assert.equal(padded.infotext.padConds, true);
  assert.deepEqual(padded.uncondAt(0).subarray(0, 77 * D), rawChunk('b'));
  assert.deepEqual(padded.uncondAt(0).subarray(77 * D), rawChunk(''), 'the empty prompt encoding');
  // A1111's own empty-prompt tensor (encoded at load, without LoRA) when the caller has it
  const empty = new Float32Array(77 * D).fill(0.5);
  const withEmpty = await buildConditioning(model({ emptyPrompt: empty }), { prompt: long, negativePrompt: 'b', steps: 4, padConds: true });
  assert.deepEqual(withEmpty.uncondAt(0).subarray(77 * D), empty);
  // equal lengths: nothing to pad, no "Pad conds" in the infotext
  assert.equal((await buildConditioning(model(), { prompt: 'a', negativePrompt: 'b', steps: 4, padConds: true })).infotext.padConds, undefined);
});

test('prompt editing: condAt(call) picks the first entry whose end step is ≥ call; entries share a chunk count', async () => {
  const c = await buildConditioning(model(), { prompt: `[a:${words(80, 'b')}:2]`, negativePrompt: '', steps: 4 });
  assert.deepEqual(c.schedules.cond.map((e) => e.untilStep), [2, 4]);
  // entry 1 ("a") is padded with an empty chunk to entry 2's two chunks, as forward() batches them
  assert.equal(c.condTokens, 154);
  for (const call of [0, 1, 2]) assert.deepEqual(c.condAt(call).subarray(0, 77 * D), rawChunk('a'));
  assert.deepEqual(c.condAt(0).subarray(77 * D), rawChunk(''));
  assert.deepEqual(c.condAt(3).subarray(0, 77 * D), rawChunk(words(80, 'b')));
  // past the last entry A1111 falls back to entry 0
  assert.deepEqual(c.condAt(99).subarray(0, 77 * D), rawChunk('a'));
});

test('prompt text: <lora:> tags out of the prompt only, trailing weight, AND refused, clip skip passed', async () => {
  const calls: Array<{ rows: number; extraRows: number; clipSkip: number }> = [];
  const c = await buildConditioning(model({ encode: fakeEncoder(calls) }), { prompt: 'a <lora:catears:0.6> b :1.5', negativePrompt: '<lora:x:1> b', steps: 4, clipSkip: 2 });
  assert.deepEqual(c.loraTags.map((t) => [t.name, t.te, t.unet]), [['catears', 0.6, 0.6]]);
  assert.equal(c.cfgWeight, 1.5);
  assert.deepEqual(c.condAt(0), rawChunk('a  b', 0, 2));
  assert.deepEqual(c.uncondAt(0), rawChunk('<lora:x:1> b', 0, 2), 'the negative prompt keeps its tags as text');
  assert.deepEqual(calls, [{ rows: 2, extraRows: 0, clipSkip: 2 }]);

  const refused = (p: Promise<unknown>, code: string, re: RegExp) => assert.rejects(p, (e: unknown) => e instanceof LoraserveError && e.code === code && re.test(e.message));
  await refused(buildConditioning(model(), { prompt: 'a AND b', negativePrompt: '', steps: 4 }), 'INVALID_PROMPT', /AND/);
  await refused(buildConditioning(model(), { prompt: 'a', negativePrompt: '', steps: 4, clipSkip: 4 }), 'INVALID_ARGUMENT', /1 to 3/);
  await refused(buildConditioning(model(), { prompt: '<hypernet:x:1>', negativePrompt: '', steps: 4 }), 'INVALID_PROMPT', /hypernetworks/);
});

test('one encoder run over distinct chunks: an identical prompt and negative prompt encode once', async () => {
  const calls: Array<{ rows: number; extraRows: number; clipSkip: number }> = [];
  const c = await buildConditioning(model({ encode: fakeEncoder(calls) }), { prompt: '[a|b]', negativePrompt: 'a', steps: 6 });
  assert.equal(c.schedules.cond.length, 6);
  assert.equal(c.encodedChunks, 2);
  assert.deepEqual(calls.map((x) => x.rows), [2]);
  // A1111's CFGDenoiser counts calls from 0 and takes the first entry with call ≤ end step: a, a, b, a, b, a
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((i) => (isDeepStrictEqual(c.condAt(i), rawChunk('a')) ? 'a' : isDeepStrictEqual(c.condAt(i), rawChunk('b')) ? 'b' : '?')), ['a', 'a', 'b', 'a', 'b', 'a']);
  assert.deepEqual(c.condAt(2), rawChunk('b'));
});

test('textual inversion: vectors fed as extra rows, refused by name at the wrong width, TI hashes in A1111 order', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'loraserve-cond-'));
  try {
    const vec = (n: number, w: number, v: number) => safetensors({ emb_params: { dtype: 'F32', shape: [n, w], data: f32bytes(Array.from({ length: n * w }, (_, i) => v + i)) } });
    await writeFile(join(dir, 'qq.safetensors'), vec(2, D, 100));
    await writeFile(join(dir, 'emb.safetensors'), vec(1, D, 200));
    await writeFile(join(dir, 'wide.safetensors'), vec(1, 2 * D, 300));
    const lib = await EmbeddingLibrary.open(dir);
    const calls: Array<{ rows: number; extraRows: number; clipSkip: number }> = [];
    const c = await buildConditioning(model({ embeddings: lib, encode: fakeEncoder(calls) }), { prompt: 'a emb', negativePrompt: 'qq b emb', steps: 4 });
    assert.deepEqual(calls, [{ rows: 2, extraRows: 3, clipSkip: 1 }]);
    // negative: BOS, qq (2 vectors), b, emb (1 vector)
    const u = c.uncondAt(0);
    assert.deepEqual(Array.from(u.subarray(1 * D, 3 * D)), [100, 101, 102, 103, 104, 105, 106, 107]);
    assert.deepEqual(Array.from(u.subarray(4 * D, 5 * D)), [200, 201, 202, 203]);
    assert.deepEqual(Array.from(c.condAt(0).subarray(2 * D, 3 * D)), [200, 201, 202, 203]);
    // "TI hashes": the cond forward's names first, then the uncond forward's (A1111 prepends each new list)
    const h = (n: string) => lib.get(n)!.shortHash;
    assert.deepEqual(c.infotext.tiHashes, [{ name: 'emb', hash: h('emb') }, { name: 'qq', hash: h('qq') }, { name: 'emb', hash: h('emb') }]);
    assert.deepEqual(c.embeddingsUsed.map((e) => e.name), ['emb', 'qq']);
    await assert.rejects(
      buildConditioning(model({ embeddings: lib }), { prompt: 'a wide', negativePrompt: '', steps: 4 }),
      (e: unknown) => e instanceof LoraserveError && e.code === 'EMBEDDING_INVALID' && /"wide".*width 8; this model's text encoder takes width 4/.test(e.message),
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
