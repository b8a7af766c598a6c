/**
 * `loraserve serve --redis URL --role api|worker`: an API process and a render-worker process meet in a private
 * redis-server; a synchronous PNG request through the API is rendered by the worker, and both exit 0 on SIGTERM.
 * Two workers and a SIGKILL mid-job: BullMQ's stalled-job check reruns the job on the other worker, same pixels.
 * Also the role/Redis flag rules. Skipped locally (not in CI) when redis-server is not installed.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseRole } from '../../../src/cli/serve-roles.js';
import { redisServerAvailable, startRedis } from '../../helpers/redis.js';
import { spawnServe } from '../../helpers/serve-process.js';
import { tinyModelDir } from '../../helpers/tiny-model.js';

test('roles: all is the default; api and worker need a redis:// URL', () => {
  assert.equal(parseRole(undefined, undefined), 'all');
  assert.equal(parseRole('worker', 'redis://127.0.0.1:6379'), 'worker');
  assert.throws(() => parseRole('api', undefined), /needs --redis/);
  assert.throws(() => parseRole('both', 'redis://x'), /api, worker or all/);
  assert.throws(() => parseRole('all', 'http://x'), /redis:\/\//);
});

test('an api process and a worker process render through Redis and stop on SIGTERM', { skip: !redisServerAvailable() && !process.env.CI ? 'redis-server is not installed' : false }, async () => {
  const [model, redis] = await Promise.all([tinyModelDir(), startRedis()]);
  const loras = mkdtempSync(join(tmpdir(), 'loraserve-roles-loras-'));
  const api = spawnServe(['--role', 'api', '--redis', redis.url, '--lora-dir', loras]);
  const worker = spawnServe(['--role', 'worker', '--redis', redis.url, '--model', model, '--lora-dir', loras]);
  try {
    const health = String((await worker.waitFor((l) => typeof l.health === 'string')).health);
    const base = String((await api.waitFor((l) => typeof l.url === 'string')).url);
    await api.waitFor((l) => l.msg === 'ready');
    const res = await fetch(`${base}/v1/images`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', accept: 'image/png' },
      body: JSON.stringify({ prompt: 'cat', width: 64, height: 64, steps: 3, seed: 7 }),
    });
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'image/png');
    const png = new Uint8Array(await res.arrayBuffer());
    assert.deepEqual([...png.subarray(1, 4)], [0x50, 0x4e, 0x47]);
    const h = (await (await fetch(health)).json()) as { status: string; workers: unknown[] };
    assert.equal(h.status, 'ok');
    assert.equal(h.workers.length, 1);
    api.child.kill('SIGTERM');
    worker.child.kill('SIGTERM');
    assert.equal(await api.exited, 0);
    assert.equal(await worker.exited, 0);
  } finally {
    for (const p of [api, worker]) if (p.child.exitCode === null) p.child.kill('SIGKILL');
    await redis.stop();
    rmSync(loras, { recursive: true, force: true });
  }
});

test('a worker SIGKILLed mid-job: its job reruns on the other worker and ends done with the same PNG', { skip: !redisServerAvailable() && !process.env.CI ? 'redis-server is not installed' : false }, async () => {
  const [model, redis] = await Promise.all([tinyModelDir(), startRedis()]);
  const loras = mkdtempSync(join(tmpdir(), 'loraserve-roles-loras-'));
  const workerArgs = ['--role', 'worker', '--redis', redis.url, '--model', model, '--lora-dir', loras, '--stall-check', '1'];
  const api = spawnServe(['--role', 'api', '--redis', redis.url, '--lora-dir', loras, '--max-steps', '400']);
  const workers = [spawnServe(workerArgs), spawnServe(workerArgs)];
  try {
    const ids = await Promise.all(workers.map(async (w) => (await w.waitFor((l) => Array.isArray(l.workers))).workers as string[]));
    const base = String((await api.waitFor((l) => typeof l.url === 'string')).url);
    await api.waitFor((l) => l.msg === 'ready');
    const body = JSON.stringify({ prompt: 'cat', width: 64, height: 64, steps: 400, seed: 11 });
    const submit = async () =>
    {
      const res = await fetch(`${base}/v1/images`, { method: 'POST', headers: { 'content-type': 'application/json', prefer: 'respond-async' }, body });
      assert.equal(res.status, 202, await res.clone().text());
      return ((await res.json()) as { id: string }).id;
    };
    type Job = { state: string; worker?: string; progress?: { step: number }; images?: string[]; error?: { code: string } };
    const job = async (id: string) => (await (await fetch(`${base}/v1/jobs/${id}`)).json()) as Job;
    const until = async (id: string, ok: (j: Job) => boolean): Promise<Job> => {
      const deadline = Date.now() + 60_000;
      for (;;) {
        const j = await job(id);
        if (ok(j)) return j;
        assert.ok(Date.now() < deadline, `job ${id} stuck: ${JSON.stringify(j)}`);
        await new Promise((r) => setTimeout(r, 20));
      }
    };
    const id = await submit();
    const running = await until(id, (j) => j.state === 'running' && (j.progress?.step ?? 0) > 0);
    const victim = ids.findIndex((list) => list.includes(running.worker ?? ''));
    assert.ok(victim >= 0, `running on an unknown worker: ${running.worker}`);
    workers[victim].child.kill('SIGKILL');
    const done = await until(id, (j) => j.state === 'done' || j.state === 'failed' || j.state === 'cancelled');
    assert.equal(done.state, 'done', JSON.stringify(done.error));
    assert.ok(ids[1 - victim].includes(done.worker ?? ''), 'finished by the surviving worker');
    // The same request rendered again from the start gives the same bytes (seeded noise, same infotext).
    const again = await until(await submit(), (j) => j.state === 'done');
    assert.equal(done.images?.[0], again.images?.[0]);
    api.child.kill('SIGTERM');
    workers[1 - victim].child.kill('SIGTERM');
    assert.equal(await api.exited, 0);
    assert.equal(await workers[1 - victim].exited, 0);
  } finally {
    for (const p of [api, ...workers]) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await redis.stop();
    rmSync(loras, { recursive: true, force: true });
  }
});
