/**
 * LocalQueue's own bookkeeping with stand-in hosts (no model, no threads): several workers, positions after a
 * cancel, record retention, start-up failure, previews by default, a throwing listener, close() with waiting jobs.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LoraserveError } from '../../../src/core/errors.js';
import { LocalQueue } from '../../../src/jobs/local-queue.js';
import { type JobEvent, waitForJob } from '../../../src/jobs/queue.js';
import { FakeHost } from '../../helpers/fake-host.js';
import { smallRequest } from '../../helpers/small-render.js';

function fakeQueue(opts: { workers?: number; stepMs?: number; keepFinished?: number; previewEvery?: number; maxQueued?: number } = {}) {
  const hosts: FakeHost[] = [];
  const queue = new LocalQueue({
    devices: Array.from({ length: opts.workers ?? 1 }, () => ({ kind: 'cpu' as const })),
    hostFactory: async () => {
      const h = new FakeHost(opts.stepMs);
      hosts.push(h);
      return h;
    },
    keepFinished: opts.keepFinished,
    previewEvery: opts.previewEvery,
    maxQueued: opts.maxQueued,
  });
  return { queue, hosts };
}

test('two workers run two jobs at once; each job names its worker', async () => {
  const { queue } = fakeQueue({ workers: 2, stepMs: 5 });
  await queue.ready();
  const a = await queue.submit(smallRequest({ steps: 10 }));
  const b = await queue.submit(smallRequest({ steps: 10 }));
  const st = await queue.stats();
  assert.equal(st.running, 2);
  assert.equal(st.queued, 0);
  const [ra, rb] = await Promise.all([waitForJob(queue, a.id), waitForJob(queue, b.id)]);
  assert.notEqual(ra.worker, rb.worker);
  assert.deepEqual(st.workers.map((w) => w.id), ['cpu#0', 'cpu#1']);
  await queue.close();
});

test('cancelling a waiting job moves the ones behind it up, with position events', async () => {
  const { queue } = fakeQueue({ stepMs: 5 });
  await queue.ready();
  const running = await queue.submit(smallRequest({ steps: 50 }));
  const b = await queue.submit(smallRequest());
  const c = await queue.submit(smallRequest());
  const heard: JobEvent[] = [];
  queue.subscribe(c.id, (e) => heard.push(e));
  await queue.cancel(b.id);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(heard.map((e) => [e.type, 'position' in e ? e.position : undefined]), [
    ['queued', 2],
    ['position', 1],
  ]);
  assert.equal((await queue.get(c.id))?.position, 1);
  await queue.cancel(running.id);
  await waitForJob(queue, c.id);
  await queue.close();
});

test('ended records are kept up to keepFinished, oldest dropped first', async () => {
  const { queue } = fakeQueue({ keepFinished: 2, stepMs: 0 });
  await queue.ready();
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) {
    const j = await queue.submit(smallRequest({ steps: 1, seed: i }));
    await waitForJob(queue, j.id);
    ids.push(j.id);
  }
  assert.equal(await queue.get(ids[0]), undefined);
  assert.equal(await queue.get(ids[1]), undefined);
  assert.equal((await queue.get(ids[3]))?.state, 'done');
  await assert.rejects(waitForJob(queue, ids[0]), /no job/);
  assert.equal((await queue.stats()).totals.done, 4);
  await queue.close();
});

test('a worker that cannot start fails ready(), submit and the jobs that waited', async () => {
  const queue = new LocalQueue({
    hostFactory: async () => {
      await new Promise((r) => setTimeout(r, 20));
      throw new LoraserveError('MODEL_INVALID', 'unet/model.onnx missing');
    },
  });
  const waiting = await queue.submit(smallRequest());
  await assert.rejects(queue.ready(), /unet\/model.onnx missing/);
  const r = await waitForJob(queue, waiting.id);
  assert.equal(r.state, 'failed');
  assert.equal(r.error?.code, 'MODEL_INVALID');
  await assert.rejects(queue.submit(smallRequest()), (e: unknown) => (e as LoraserveError).code === 'MODEL_INVALID');
  assert.deepEqual((await queue.stats()).workers.map((w) => w.state), ['down']);
  await queue.close();
});

test('previews are asked for by default when configured, and a request can say otherwise', async () => {
  const { queue, hosts } = fakeQueue({ previewEvery: 2 });
  await queue.ready();
  await waitForJob(queue, (await queue.submit(smallRequest({ steps: 4 }))).id);
  await waitForJob(queue, (await queue.submit(smallRequest({ steps: 4, previewEvery: 0 }))).id);
  assert.deepEqual(hosts[0].seen.map((r) => r.previewEvery), [2, 0]);
  await queue.close();
});

test('a listener that throws does not stop the job or other listeners', async () => {
  const { queue } = fakeQueue();
  await queue.ready();
  const offBad = queue.subscribeAll(() => {
    throw new Error('listener bug');
  });
  const types: string[] = [];
  const offGood = queue.subscribeAll((e) => types.push(e.type));
  const j = await queue.submit(smallRequest({ steps: 2 }));
  const r = await waitForJob(queue, j.id);
  assert.equal(r.state, 'done');
  await new Promise((res) => setImmediate(res));
  assert.deepEqual(types, ['queued', 'started', 'progress', 'progress', 'done']);
  offBad();
  offGood();
  await queue.close();
});

test('records are copies: changing one does not change the queue', async () => {
  const { queue } = fakeQueue();
  await queue.ready();
  const j = await queue.submit(smallRequest({ steps: 1 }));
  const r = await waitForJob(queue, j.id);
  r.labels.x = 'y';
  r.timings.queuedMs = -1;
  const again = await queue.get(j.id);
  assert.equal(again?.labels.x, undefined);
  assert.notEqual(again?.timings.queuedMs, -1);
  await queue.close();
});

test('close() fails waiting jobs with SHUTTING_DOWN and closes every host', async () => {
  const { queue, hosts } = fakeQueue({ stepMs: 2 });
  await queue.ready();
  const running = await queue.submit(smallRequest({ steps: 5 }));
  const waiting = await queue.submit(smallRequest());
  await queue.close(5000);
  assert.equal((await queue.get(running.id))?.state, 'done'); // finished within the grace period
  assert.equal((await queue.get(waiting.id))?.error?.code, 'SHUTTING_DOWN');
  assert.ok(hosts.every((h) => h.closed));
  assert.equal((await queue.stats()).accepting, false);
  await queue.close(); // idempotent
});
