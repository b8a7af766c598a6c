/** The native fields → RenderRequest conversion shared by `POST /v1/images` and `loraserve batch`. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_NATIVE, nativeBodyToRequest } from '../../../src/engine/native-request.js';
import { LoraserveError } from '../../../src/core/errors.js';

test('defaults fill what a body leaves out; LoRA weight defaults to 1; undefined fields are dropped', () => {
  const r = nativeBodyToRequest({ prompt: 'cat', loras: [{ name: 'catears' }, { name: 'idol', te: 0.5, blocks: { in: 0 } }] }, { randomSeed: () => 42 });
  assert.deepEqual(r, {
    prompt: 'cat',
    negativePrompt: '',
    steps: DEFAULT_NATIVE.steps,
    cfgScale: DEFAULT_NATIVE.cfgScale,
    sampler: DEFAULT_NATIVE.sampler,
    scheduler: DEFAULT_NATIVE.scheduler,
    flavor: 'native',
    seed: 42,
    rng: 'cpu',
    width: 512,
    height: 512,
    batchSize: 1,
    loras: [{ name: 'catears', weight: 1 }, { name: 'idol', weight: 1, te: 0.5, blocks: { in: 0 } }],
  });
});

test('every field maps to its RenderRequest name; preview_every falls back to the configured interval', () => {
  const body = {
    prompt: 'p',
    negative_prompt: 'n',
    sampler: 'DPM++ 2M',
    scheduler: 'karras',
    steps: 3,
    cfg_scale: 6.5,
    seed: 9,
    rng: 'nv',
    clip_skip: 2,
    emphasis: 'No norm',
    flavor: 'a1111',
    width: 64,
    height: 128,
    batch_size: 2,
  };
  const r = nativeBodyToRequest(body, { previewEvery: 5 });
  assert.deepEqual(
    [r.negativePrompt, r.sampler, r.scheduler, r.steps, r.cfgScale, r.seed, r.rng, r.clipSkip, r.emphasis, r.flavor, r.width, r.height, r.batchSize, r.previewEvery],
    ['n', 'DPM++ 2M', 'karras', 3, 6.5, 9, 'nv', 2, 'No norm', 'a1111', 64, 128, 2, 5],
  );
  assert.equal(nativeBodyToRequest({ ...body, preview_every: 0 }, { previewEvery: 5 }).previewEvery, 0);
  assert.equal(nativeBodyToRequest(body, { previewEvery: 0 }).previewEvery, undefined);
});

test('all problems in one INVALID_ARGUMENT error, each naming its field', () => {
  let err: LoraserveError | undefined;
  try {
    nativeBodyToRequest({ prompt: 7, steps: 0, cfg_scale: 'x', seed: -2, rng: 'gpu', width: 10.5, loras: [{ name: '', weight: 30, extra: 1 }, 'x'], cfgscale: 1 });
  } catch (e) {
    err = e as LoraserveError;
  }
  assert.ok(err);
  assert.equal(err.code, 'INVALID_ARGUMENT');
  const fields = (err.details?.problems as Array<{ field: string }>).map((p) => p.field);
  assert.deepEqual(fields, ['cfgscale', 'prompt', 'loras[0].extra', 'loras[0].name', 'loras[0].weight', 'loras[1]', 'steps', 'cfg_scale', 'seed', 'rng', 'width']);
  assert.equal(err.details?.field, 'cfgscale');
  assert.match(err.message, /'cfgscale' is not a known field \(did you mean 'cfg_scale'\?\)/);
  assert.match(err.message, /steps must be an integer from 1 to 10000 \(got 0\)/);
  assert.match(err.message, /rng must be one of "cpu", "nv" \(got "gpu"\)/);
  assert.throws(() => nativeBodyToRequest([]), /must be a JSON object/);
  assert.throws(() => nativeBodyToRequest({}), /prompt is required/);
});

test("unknownFields 'ignore' skips other fields (the OpenAI route's n, size, model)", () => {
  const r = nativeBodyToRequest({ prompt: 'x', n: 2, size: '64x64', model: 'dall-e-3', seed: 1 }, { unknownFields: 'ignore' });
  assert.equal(r.seed, 1);
  assert.equal(r.batchSize, 1);
});
