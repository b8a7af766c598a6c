/**
 * Every route through app.inject() on the tiny random-weight model: native (sync JSON and PNG, async jobs,
 * cancel), A1111 (defaults, answer shape, info keys, n_iter seeds, options, override_settings, lists,
 * png-info), OpenAI, metrics — and the same request through the three APIs giving identical pixels.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { readPngText } from '../../../src/image/png.js';
import { pixels, tinyServer, type TinyServer } from './support.js';

let s: TinyServer;
before(async () => {
  s = await tinyServer(
    {},
    { embeddings: { list: async () => [{ name: 'EasyNegativeV2', vectors: 16, shape: 768, compatible: true }, { name: 'xl-only', vectors: 2, shape: 1280, compatible: false }] } },
  );
});
after(() => s.close());

const inject = (method: 'GET' | 'POST' | 'DELETE', url: string, payload?: object, headers?: Record<string, string>) =>
  s.app.inject({ method, url, payload, headers });

async function waitDone(id: string): Promise<Record<string, unknown>> {
  for (;;) {
    const job = (await inject('GET', `/v1/jobs/${id}`)).json();
    if (['done', 'failed', 'cancelled'].includes(job.state)) return job;
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('native', () => {
  test('POST /v1/images answers JSON with base64 PNGs, seeds, infotexts and timings', async () => {
    const res = await inject('POST', '/v1/images', { prompt: 'cute 1girl, cat ears', negative_prompt: 'bad hands', seed: 7, batch_size: 2 });
    assert.equal(res.statusCode, 200);
    const body = res.json();
    assert.equal(body.images.length, 2);
    assert.deepEqual(body.seeds, [7, 8]);
    const text = readPngText(Buffer.from(body.images[1], 'base64')).parameters;
    assert.equal(text, body.infotexts[1]);
    assert.match(text, /^cute 1girl, cat ears\nNegative prompt: bad hands\nSteps: 3, Sampler: Euler a, .*Seed: 8, Size: 64x64/);
    assert.ok(body.timings.render.unet_calls > 0);
    assert.match(body.job_id, /^[0-9a-f-]{36}$/);
  });

  test('Accept: image/png gets the PNG itself; a batch stays JSON', async () => {
    const png = await inject('POST', '/v1/images', { prompt: 'cat', seed: 5 }, { accept: 'image/png' });
    assert.equal(png.statusCode, 200);
    assert.equal(png.headers['content-type'], 'image/png');
    assert.equal(png.headers['x-seed'], '5');
    assert.match(String(png.headers['x-job-id']), /^[0-9a-f-]{36}$/);
    assert.deepEqual([...png.rawPayload.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47]);
    const batch = await inject('POST', '/v1/images', { prompt: 'cat', batch_size: 2 }, { accept: 'image/png' });
    assert.match(String(batch.headers['content-type']), /application\/json/);
    const json = await inject('POST', '/v1/images', { prompt: 'cat', seed: 5 }, { accept: 'application/json, image/png;q=0.5' });
    assert.match(String(json.headers['content-type']), /application\/json/);
    assert.deepEqual(await pixels(json.json().images[0]), await pixels(png.rawPayload));
  });

  test('Prefer: respond-async → 202, Location, then the job with its images', async () => {
    const res = await inject('POST', '/v1/images', { prompt: 'cat', seed: 11 }, { prefer: 'respond-async' });
    assert.equal(res.statusCode, 202);
    assert.equal(res.headers['preference-applied'], 'respond-async');
    const id = res.json().id;
    assert.equal(res.headers.location, `/v1/jobs/${id}`);
    const job = await waitDone(id);
    assert.equal(job.state, 'done');
    assert.deepEqual(job.seeds, [11]);
    assert.equal((job.images as string[]).length, 1);
    assert.ok(job.created_at && job.finished_at);
    assert.deepEqual(job.links, { self: `/v1/jobs/${id}`, events: `/v1/jobs/${id}/events` });
    const list = (await inject('GET', '/v1/jobs?state=done&limit=5')).json();
    assert.ok(list.jobs.some((j: { id: string; images?: unknown }) => j.id === id && j.images === undefined));
    // Cancelling a finished job changes nothing.
    const del = await inject('DELETE', `/v1/jobs/${id}`);
    assert.equal(del.statusCode, 200);
    assert.equal(del.json().state, 'done');
  });

  test('DELETE cancels a queued job and a running one', async () => {
    const running = (await inject('POST', '/v1/images', { prompt: 'cat', steps: 150 }, { prefer: 'respond-async' })).json();
    const queued = (await inject('POST', '/v1/images', { prompt: 'cat' }, { prefer: 'respond-async' })).json();
    const d1 = await inject('DELETE', `/v1/jobs/${queued.id}`);
    assert.equal(d1.statusCode, 200);
    assert.equal(d1.json().state, 'cancelled');
    while ((await inject('GET', `/v1/jobs/${running.id}`)).json().state === 'queued') await new Promise((r) => setTimeout(r, 5));
    const d2 = await inject('DELETE', `/v1/jobs/${running.id}`);
    assert.ok(d2.statusCode === 202 || d2.json().state === 'cancelled');
    const end = await waitDone(running.id);
    assert.equal(end.state, 'cancelled');
    assert.equal((end.error as { code: string }).code, 'CANCELLED');
  });

  test('LoRAs by name render, change the image, and are named in the infotext; an unknown one is a 400', async () => {
    const plain = (await inject('POST', '/v1/images', { prompt: 'cat', seed: 3 })).json();
    const res = await inject('POST', '/v1/images', { prompt: 'cat', seed: 3, loras: [{ name: 'catears', weight: 0.8 }, { name: 'idol', weight: 0.6, te: 0 }] });
    assert.equal(res.statusCode, 200, res.body);
    const lora = res.json();
    assert.notDeepEqual(await pixels(lora.images[0]), await pixels(plain.images[0]));
    assert.match(lora.infotexts[0], /catears/);
    const bad = await inject('POST', '/v1/images', { prompt: 'cat', loras: [{ name: 'catear' }] });
    assert.equal(bad.statusCode, 400);
    assert.equal(bad.json().error.code, 'UNKNOWN_LORA');
    assert.deepEqual(bad.json().error.details.suggestions, ['catears']);
  });

  test('models, samplers, embeddings and png-info', async () => {
    const models = (await inject('GET', '/v1/models')).json().models;
    assert.equal(models.length, 1);
    assert.match(models[0].hash, /^[0-9a-f]{10}$/);
    const samplers = (await inject('GET', '/v1/samplers')).json();
    assert.ok(samplers.samplers.some((x: { id: string; label: string }) => x.id === 'dpmpp_2m' && x.label === 'DPM++ 2M'));
    assert.ok(samplers.schedulers.some((x: { id: string }) => x.id === 'karras'));
    assert.equal((await inject('GET', '/v1/embeddings')).json().embeddings.length, 2);
    const img = (await inject('POST', '/v1/images', { prompt: 'cat, (ears:1.2)', seed: 9 })).json().images[0];
    const info = (await inject('POST', '/v1/png-info', { image: `data:image/png;base64,${img}` })).json();
    assert.equal(info.prompt, 'cat, (ears:1.2)');
    assert.equal(info.params.Seed, '9');
    const notPng = await inject('POST', '/v1/png-info', { image: Buffer.from('GIF89a....').toString('base64') });
    assert.equal(notPng.json().error.code, 'INVALID_FILE');
  });
});

describe('A1111', () => {
  test('txt2img fills A1111 defaults, echoes them as parameters and answers info as a JSON string', async () => {
    const res = await inject('POST', '/sdapi/v1/txt2img', { prompt: 'cat', width: 64, height: 64, steps: 4, seed: 1234 });
    assert.equal(res.statusCode, 200, res.body);
    const body = res.json();
    assert.deepEqual(Object.keys(body).sort(), ['images', 'info', 'parameters']);
    assert.equal(body.images.length, 1);
    const p = body.parameters;
    assert.equal(p.sampler_index, 'Euler');
    assert.equal(p.sampler_name, null);
    assert.equal(p.cfg_scale, 7);
    assert.equal(p.n_iter, 1);
    assert.equal(p.batch_size, 1);
    assert.equal(p.negative_prompt, '');
    assert.equal(p.seed, 1234);
    assert.equal(p.send_images, true);
    assert.deepEqual(p.alwayson_scripts, {});
    const info = JSON.parse(body.info);
    for (const k of ['prompt', 'all_prompts', 'negative_prompt', 'all_negative_prompts', 'seed', 'all_seeds', 'subseed', 'all_subseeds', 'subseed_strength', 'width', 'height', 'sampler_name', 'cfg_scale', 'steps', 'batch_size', 'restore_faces', 'face_restoration_model', 'sd_model_name', 'sd_model_hash', 'sd_vae_name', 'sd_vae_hash', 'seed_resize_from_w', 'seed_resize_from_h', 'denoising_strength', 'extra_generation_params', 'index_of_first_image', 'infotexts', 'styles', 'job_timestamp', 'clip_skip', 'is_using_inpainting_conditioning', 'version']) {
      assert.ok(k in info, `info lacks ${k}`);
    }
    assert.equal(info.sampler_name, 'Euler');
    assert.equal(info.seed, 1234);
    assert.match(info.job_timestamp, /^\d{14}$/);
    assert.match(info.infotexts[0], /Sampler: Euler, Schedule type: Automatic, CFG scale: 7, Seed: 1234/);
    assert.equal(info.sd_model_hash, (await inject('GET', '/v1/models')).json().models[0].hash);
  });

  test('A1111 default steps are 50', async () => {
    const body = (await inject('POST', '/sdapi/v1/txt2img', { prompt: 'cat', width: 64, height: 64, send_images: false })).json();
    assert.equal(body.parameters.steps, 50);
    assert.equal(JSON.parse(body.info).steps, 50);
    assert.deepEqual(body.images, []);
  });

  test('n_iter × batch_size images with consecutive seeds; combined sampler names; <lora:> tags', async () => {
    const body = (await inject('POST', '/sdapi/v1/txt2img', { prompt: 'cat <lora:catears:0.7>', width: 64, height: 64, steps: 2, seed: 100, batch_size: 2, n_iter: 2, sampler_name: 'DPM++ 2M Karras' })).json();
    assert.equal(body.images.length, 4);
    const info = JSON.parse(body.info);
    assert.deepEqual(info.all_seeds, [100, 101, 102, 103]);
    assert.deepEqual(info.infotexts.map((t: string) => /Seed: (\d+)/.exec(t)![1]), ['100', '101', '102', '103']);
    assert.equal(info.sampler_name, 'DPM++ 2M');
    assert.deepEqual(info.extra_generation_params, { 'Schedule type': 'Karras' });
  });

  test('an unknown LoRA tag is a 400 UNKNOWN_LORA', async () => {
    const res = await inject('POST', '/sdapi/v1/txt2img', { prompt: 'cat <lora:nosuch:1>', width: 64, height: 64, steps: 2 });
    assert.equal(res.statusCode, 400);
    assert.equal(res.json().error.code, 'UNKNOWN_LORA');
  });

  test('what A1111 does and this server cannot is refused by field', async () => {
    for (const [field, value] of [['enable_hr', true], ['subseed_strength', 0.5], ['alwayson_scripts', { controlnet: {} }], ['restore_faces', true]] as const) {
      const res = await inject('POST', '/sdapi/v1/txt2img', { prompt: 'cat', width: 64, height: 64, [field]: value });
      assert.equal(res.statusCode, 400);
      assert.equal(res.json().error.details.field, field);
    }
    // Defaults sent explicitly (as A1111 client libraries do) are fine, as are unknown extra fields.
    const ok = await inject('POST', '/sdapi/v1/txt2img', { prompt: 'cat', width: 64, height: 64, steps: 2, enable_hr: false, restore_faces: false, alwayson_scripts: {}, eta: 1, s_churn: 0, some_extension_field: 1 });
    assert.equal(ok.statusCode, 200);
    assert.equal('some_extension_field' in ok.json().parameters, false);
  });

  test('options: get, set, unknown keys ignored, a foreign checkpoint refused; override_settings per request', async () => {
    const opts = (await inject('GET', '/sdapi/v1/options')).json();
    assert.equal(opts.CLIP_stop_at_last_layers, 1);
    assert.match(opts.sd_model_checkpoint, /\[[0-9a-f]{10}\]$/);
    const set = await inject('POST', '/sdapi/v1/options', { CLIP_stop_at_last_layers: 2, sd_model_checkpoint: opts.sd_model_checkpoint, some_ui_setting: true });
    assert.equal(set.statusCode, 200);
    assert.equal(set.body, 'null');
    assert.equal((await inject('GET', '/sdapi/v1/options')).json().CLIP_stop_at_last_layers, 2);
    const info2 = JSON.parse((await inject('POST', '/sdapi/v1/txt2img', { prompt: 'cat', width: 64, height: 64, steps: 2 })).json().info);
    assert.equal(info2.clip_skip, 2);
    const info3 = JSON.parse((await inject('POST', '/sdapi/v1/txt2img', { prompt: 'cat', width: 64, height: 64, steps: 2, override_settings: { CLIP_stop_at_last_layers: 3 } })).json().info);
    assert.equal(info3.clip_skip, 3);
    assert.equal((await inject('GET', '/sdapi/v1/options')).json().CLIP_stop_at_last_layers, 2);
    const foreign = await inject('POST', '/sdapi/v1/options', { sd_model_checkpoint: 'sdxl_base [abcdef1234]' });
    assert.equal(foreign.statusCode, 404);
    assert.equal((await inject('POST', '/sdapi/v1/options', { CLIP_stop_at_last_layers: 'two' })).json().error.code, 'INVALID_ARGUMENT');
    await inject('POST', '/sdapi/v1/options', { CLIP_stop_at_last_layers: 1 });
  });

  test('lists: sd-models, samplers, schedulers, loras, embeddings; refresh-loras; progress when idle', async () => {
    const models = (await inject('GET', '/sdapi/v1/sd-models')).json();
    assert.deepEqual(Object.keys(models[0]).sort(), ['config', 'filename', 'hash', 'model_name', 'sha256', 'title']);
    const samplers = (await inject('GET', '/sdapi/v1/samplers')).json();
    assert.ok(samplers.some((x: { name: string; aliases: string[] }) => x.name === 'Euler a' && x.aliases.includes('k_euler_a')));
    const schedulers = (await inject('GET', '/sdapi/v1/schedulers')).json();
    assert.ok(schedulers.some((x: { name: string; label: string }) => x.name === 'karras' && x.label === 'Karras'));
    const loras = (await inject('GET', '/sdapi/v1/loras')).json();
    assert.deepEqual(loras.map((l: { name: string }) => l.name).sort(), ['catears', 'costume', 'idol', 'lights', 'stage']);
    assert.deepEqual(Object.keys(loras[0]).sort(), ['alias', 'metadata', 'name', 'path']);
    assert.equal((await inject('POST', '/sdapi/v1/refresh-loras')).statusCode, 200);
    const emb = (await inject('GET', '/sdapi/v1/embeddings')).json();
    assert.deepEqual(emb.loaded.EasyNegativeV2, { step: null, sd_checkpoint: null, sd_checkpoint_name: null, shape: 768, vectors: 16 });
    assert.ok(emb.skipped['xl-only']);
    const progress = (await inject('GET', '/sdapi/v1/progress')).json();
    assert.equal(progress.progress, 0);
    assert.equal(progress.current_image, null);
    assert.equal(progress.state.job_count, 0);
    assert.equal((await inject('POST', '/sdapi/v1/interrupt')).statusCode, 200);
    assert.equal((await inject('POST', '/sdapi/v1/skip')).statusCode, 200);
  });

  test('png-info reads A1111 parameters back', async () => {
    const img = (await inject('POST', '/sdapi/v1/txt2img', { prompt: 'cat', negative_prompt: 'dog', width: 64, height: 64, steps: 2, seed: 5 })).json().images[0];
    const info = (await inject('POST', '/sdapi/v1/png-info', { image: img })).json();
    assert.match(info.info, /^cat\nNegative prompt: dog\nSteps: 2/);
    assert.equal(info.parameters.Prompt, 'cat');
    assert.equal(info.parameters['Negative prompt'], 'dog');
    assert.equal(info.parameters['Size-1'], '64');
    assert.equal(info.parameters.Seed, '5');
    assert.deepEqual(info.items, {});
  });
});

describe('OpenAI', () => {
  test('generations answers {created, data: [{b64_json}]}', async () => {
    const res = await inject('POST', '/v1/images/generations', { prompt: 'cat', n: 2, size: '64x64', model: 'dall-e-3', response_format: 'b64_json', steps: 2 });
    assert.equal(res.statusCode, 200, res.body);
    const body = res.json();
    assert.ok(Math.abs(body.created - Date.now() / 1000) < 60);
    assert.equal(body.data.length, 2);
    assert.deepEqual([...Buffer.from(body.data[0].b64_json, 'base64').subarray(1, 4)], [0x50, 0x4e, 0x47]);
  });

  test('response_format url is a clear 400; a bad size is a validation error', async () => {
    const url = await inject('POST', '/v1/images/generations', { prompt: 'cat', response_format: 'url' });
    assert.equal(url.statusCode, 400);
    assert.match(url.json().error.message, /b64_json/);
    assert.equal((await inject('POST', '/v1/images/generations', { prompt: 'cat', size: 'large' })).json().error.code, 'INVALID_ARGUMENT');
  });
});

test('the same request through the native, A1111 and OpenAI routes gives identical pixels', async () => {
  // A1111's defaults differ (sampler Euler, 50 steps, NV noise, A1111 schedules): spell everything out.
  const native = (await inject('POST', '/v1/images', { prompt: 'cat ears', negative_prompt: 'bad', sampler: 'Euler', scheduler: 'Karras', steps: 4, cfg_scale: 6.5, seed: 777, rng: 'cpu', width: 64, height: 64, flavor: 'a1111' })).json();
  const a1111 = (
    await inject('POST', '/sdapi/v1/txt2img', { prompt: 'cat ears', negative_prompt: 'bad', sampler_name: 'Euler', scheduler: 'Karras', steps: 4, cfg_scale: 6.5, seed: 777, width: 64, height: 64, override_settings: { randn_source: 'CPU' } })
  ).json();
  const openai = (await inject('POST', '/v1/images/generations', { prompt: 'cat ears', negative_prompt: 'bad', sampler: 'Euler', scheduler: 'Karras', steps: 4, cfg_scale: 6.5, seed: 777, rng: 'cpu', size: '64x64', flavor: 'a1111' })).json();
  const [p1, p2, p3] = await Promise.all([pixels(native.images[0]), pixels(a1111.images[0]), pixels(openai.data[0].b64_json)]);
  assert.ok(p1.equals(p2), 'native vs A1111');
  assert.ok(p1.equals(p3), 'native vs OpenAI');
  // And the native flavour (diffusers' tables) is a different, equally deterministic image.
  const nativeFlavour = (await inject('POST', '/v1/images', { prompt: 'cat ears', negative_prompt: 'bad', sampler: 'Euler', scheduler: 'Karras', steps: 4, cfg_scale: 6.5, seed: 777, width: 64, height: 64 })).json();
  const openaiNative = (await inject('POST', '/v1/images/generations', { prompt: 'cat ears', negative_prompt: 'bad', sampler: 'Euler', scheduler: 'Karras', steps: 4, cfg_scale: 6.5, seed: 777, size: '64x64' })).json();
  assert.ok((await pixels(nativeFlavour.images[0])).equals(await pixels(openaiNative.data[0].b64_json)));
});

test('/metrics exposes queue, job, step, HTTP figures in Prometheus text', async () => {
  const res = await inject('GET', '/metrics');
  assert.equal(res.statusCode, 200);
  assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  const text = res.body;
  assert.match(text, /^# TYPE loraserve_queue_depth gauge\nloraserve_queue_depth 0$/m);
  const done = Number(/^loraserve_jobs_total\{state="done"\} (\d+)$/m.exec(text)![1]);
  assert.ok(done >= 5);
  assert.match(text, /^loraserve_job_duration_seconds_bucket\{state="done",le="\+Inf"\} \d+$/m);
  const steps = Number(/^loraserve_step_duration_seconds_count (\d+)$/m.exec(text)![1]);
  assert.ok(steps > 0);
  assert.match(text, /^loraserve_http_requests_total\{method="POST",route="\/v1\/images",status="200"\} \d+$/m);
  assert.match(text, /^loraserve_workers\{state="idle"\} 1$/m);
  // Every sample line is `name{labels} value` or `name value`.
  for (const line of text.trim().split('\n')) if (!line.startsWith('#')) assert.match(line, /^[a-z_]+(\{[^}]*\})? -?[0-9.e+-]+$/, line);
});
