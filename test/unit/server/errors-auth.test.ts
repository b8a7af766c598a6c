/**
 * The one error shape and its codes (validation, limits, unknown routes, bad JSON, body size, full queue,
 * shutdown), the optional API key, CORS and request ids — on a stand-in queue, so no model is needed.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LoraserveError } from '../../../src/core/errors.js';
import { buildApp } from '../../../src/server/app.js';
import { serverConfig } from '../../../src/server/config.js';
import { fakeQueue } from './support.js';

const config = (over: Parameters<typeof serverConfig>[0] = {}) => serverConfig({ docs: false, ...over, defaults: { width: 64, height: 64, steps: 3 } });

function assertError(res: { statusCode: number; json(): unknown }, status: number, code: string): Record<string, unknown> {
  assert.equal(res.statusCode, status);
  const body = res.json() as { error: { code: string; message: string; details?: Record<string, unknown> } };
  assert.deepEqual(Object.keys(body), ['error']);
  assert.equal(body.error.code, code);
  assert.equal(typeof body.error.message, 'string');
  return body.error.details ?? {};
}

test('schema violations are INVALID_ARGUMENT listing every field', async () => {
  const { app } = await buildApp({ queue: fakeQueue(), config: config() });
  const res = await app.inject({ method: 'POST', url: '/v1/images', payload: { steps: 'many', cfg: 7, loras: [{ weight: 1 }] } });
  const details = assertError(res, 400, 'INVALID_ARGUMENT');
  const fields = (details.problems as Array<{ field: string }>).map((p) => p.field).sort();
  assert.deepEqual(fields, ['body.cfg', 'body.loras[0].name', 'body.prompt', 'body.steps']);
  await app.close();
});

test('configured limits, sampler names, sizes and LoRA names are checked before anything is queued', async () => {
  let submitted = 0;
  const { app } = await buildApp({
    queue: fakeQueue(async () => {
      submitted++;
      throw new Error('unreachable');
    }),
    config: config({ limits: { maxSteps: 10, maxBatch: 2, maxPromptChars: 20, maxPixels: 128 * 128 } }),
  });
  const post = (payload: object) => app.inject({ method: 'POST', url: '/v1/images', payload: { prompt: 'cat', ...payload } });
  assert.match(String((await post({ steps: 11 })).json().error.message), /steps 11 is over the limit of 10/);
  assertError(await post({ batch_size: 3 }), 400, 'INVALID_ARGUMENT');
  assertError(await post({ prompt: 'x'.repeat(21) }), 400, 'INVALID_ARGUMENT');
  assertError(await post({ width: 256, height: 256 }), 400, 'INVALID_SIZE');
  assert.match(String(assertError(await post({ width: 96 }), 400, 'INVALID_SIZE').problems), /not a multiple of 64 .*nearest: 128/);
  assertError(await post({ sampler: 'Euler z' }), 400, 'INVALID_SAMPLER');
  assertError(await post({ scheduler: 'wobbly' }), 400, 'INVALID_SCHEDULER');
  assertError(await post({ seed: -2 }), 400, 'INVALID_ARGUMENT');
  assertError(await post({ loras: [{ name: '../etc/passwd' }] }), 400, 'INVALID_ARGUMENT');
  const unknown = assertError(await post({ loras: [{ name: 'catears' }] }), 400, 'UNKNOWN_LORA');
  assert.equal(unknown.name, 'catears');
  assert.equal(submitted, 0);
  await app.close();
});

test('unknown routes, bad JSON and oversized bodies keep the shape', async () => {
  const { app } = await buildApp({ queue: fakeQueue(), config: config({ limits: { bodyLimitBytes: 1000 } }) });
  assertError(await app.inject({ method: 'GET', url: '/v2/nothing' }), 404, 'NOT_FOUND');
  assertError(await app.inject({ method: 'POST', url: '/v1/images', headers: { 'content-type': 'application/json' }, payload: '{"prompt": ' }), 400, 'INVALID_ARGUMENT');
  assertError(await app.inject({ method: 'POST', url: '/v1/images', payload: { prompt: 'x'.repeat(2000) } }), 413, 'PAYLOAD_TOO_LARGE');
  assertError(await app.inject({ method: 'POST', url: '/v1/images', headers: { 'content-type': 'text/plain' }, payload: 'cat' }), 400, 'INVALID_ARGUMENT');
  assertError(await app.inject({ method: 'GET', url: '/v1/jobs/nope' }), 404, 'NOT_FOUND');
  assertError(await app.inject({ method: 'DELETE', url: '/v1/jobs/nope' }), 404, 'NOT_FOUND');
  await app.close();
});

test('a full queue is 503 QUEUE_FULL with Retry-After', async () => {
  const { app } = await buildApp({
    queue: fakeQueue(async () => {
      throw new LoraserveError('QUEUE_FULL', 'the queue is full', { retryAfterSeconds: 7 });
    }),
    config: config(),
  });
  for (const [url, payload] of [
    ['/v1/images', { prompt: 'cat' }],
    ['/sdapi/v1/txt2img', { prompt: 'cat', width: 64, height: 64 }],
    ['/v1/images/generations', { prompt: 'cat', size: '64x64' }],
  ] as const) {
    const res = await app.inject({ method: 'POST', url, payload });
    assertError(res, 503, 'QUEUE_FULL');
    assert.equal(res.headers['retry-after'], '7');
  }
  await app.close();
});

test('after stopAccepting, requests get 503 SHUTTING_DOWN', async () => {
  const { app, stopAccepting } = await buildApp({ queue: fakeQueue(), config: config() });
  stopAccepting();
  const res = await app.inject({ method: 'GET', url: '/v1/samplers' });
  assertError(res, 503, 'SHUTTING_DOWN');
  assert.ok(res.headers['retry-after']);
  await app.close();
});

test('with an API key, routes need the Bearer token; health checks and docs do not', async () => {
  const { app } = await buildApp({ queue: fakeQueue(), config: serverConfig({ apiKey: 's3cret', docs: true }) });
  const res = await app.inject({ method: 'GET', url: '/v1/samplers' });
  assertError(res, 401, 'UNAUTHORIZED');
  assert.equal(res.headers['www-authenticate'], 'Bearer');
  assertError(await app.inject({ method: 'GET', url: '/sdapi/v1/samplers', headers: { authorization: 'Bearer wrong' } }), 401, 'UNAUTHORIZED');
  assert.equal((await app.inject({ method: 'GET', url: '/v1/samplers', headers: { authorization: 'Bearer s3cret' } })).statusCode, 200);
  assert.equal((await app.inject({ method: 'GET', url: '/healthz' })).statusCode, 200);
  assert.equal((await app.inject({ method: 'GET', url: '/readyz' })).statusCode, 200);
  assert.equal((await app.inject({ method: 'GET', url: '/docs/json' })).statusCode, 200);
  await app.close();
});

test('CORS answers preflights for configured origins only', async () => {
  const { app } = await buildApp({ queue: fakeQueue(), config: config({ corsOrigins: ['https://ui.example'] }) });
  const ok = await app.inject({ method: 'OPTIONS', url: '/v1/images', headers: { origin: 'https://ui.example', 'access-control-request-method': 'POST' } });
  assert.equal(ok.statusCode, 204);
  assert.equal(ok.headers['access-control-allow-origin'], 'https://ui.example');
  const other = await app.inject({ method: 'GET', url: '/healthz', headers: { origin: 'https://evil.example' } });
  assert.equal(other.headers['access-control-allow-origin'], undefined);
  await app.close();
});

test('request ids: a client id is echoed, otherwise one is made', async () => {
  const { app } = await buildApp({ queue: fakeQueue(), config: config() });
  assert.equal((await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'abc-123' } })).headers['x-request-id'], 'abc-123');
  assert.match(String((await app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'bad id\n' } })).headers['x-request-id']), /^[0-9a-f-]{36}$/);
  await app.close();
});

test('/readyz is 503 until a worker has its model, and says why', async () => {
  const queue = fakeQueue();
  const stats = await queue.stats();
  stats.workers[0].state = 'starting';
  const { app } = await buildApp({ queue, config: config() });
  const res = await app.inject({ method: 'GET', url: '/readyz' });
  const d = assertError(res, 503, 'MODEL_NOT_LOADED');
  assert.equal((d.workers as Array<{ state: string }>)[0].state, 'starting');
  await app.close();
});

test('the OpenAPI document lists every route group', async () => {
  const { app } = await buildApp({ queue: fakeQueue(), config: serverConfig() });
  const doc = (await app.inject({ method: 'GET', url: '/docs/json' })).json() as { paths: Record<string, unknown> };
  for (const p of ['/v1/images', '/v1/jobs/{id}', '/v1/jobs/{id}/events', '/v1/loras', '/sdapi/v1/txt2img', '/sdapi/v1/progress', '/v1/images/generations', '/metrics']) {
    assert.ok(doc.paths[p], `missing ${p}`);
  }
  assert.equal((await app.inject({ method: 'GET', url: '/docs' })).statusCode < 400, true);
  await app.close();
});
