/**
 * Behaviour every JobQueue implementation must show, as one suite (the hono router-test pattern): the
 * in-process queue runs it now; the BullMQ queue (issue 10) adds one call with its own setup.
 *
 * Renders are real (tiny random-weight model, 64×64) so that progress, cancellation between steps, timeouts and
 * worker deaths go through the real worker thread.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { isLoraserveError } from '../../../src/core/errors.js';
import type { RenderRequest } from '../../../src/engine/request.js';
import { type JobEvent, type JobQueue, waitForJob } from '../../../src/jobs/queue.js';
import { smallRequest } from '../../helpers/small-render.js';

export interface QueueSuiteSetup {
  /** A started queue with one worker on the tiny model. */
  makeQueue(opts: { maxQueued: number }): Promise<JobQueue>;
  /** Makes the worker's render thread die while the next job runs (or undefined when not possible). */
  killWorkerDuringNextJob?(queue: JobQueue): Promise<void>;
}

/** Collects one job's events until it ends. */
function events(queue: JobQueue, id: string): Promise<JobEvent[]> {
  return new Promise((resolve) => {
    const seen: JobEvent[] = [];
    const off = queue.subscribe(id, (e) => {
      seen.push(e);
      if (e.type === 'done' || e.type === 'failed' || e.type === 'cancelled') {
        off();
        resolve(seen);
      }
    });
  });
}

function firstProgress(queue: JobQueue, id: string): Promise<void> {
  return new Promise((resolve) => {
    const off = queue.subscribe(id, (e) => {
      if (e.type === 'progress') {
        off();
        resolve();
      }
    });
  });
}

/** Long enough (hundreds of ms at 64×64) to be caught running. */
const slow = (over: Partial<RenderRequest> = {}) => smallRequest({ steps: 300, ...over });

export function runQueueSuite(name: string, setup: QueueSuiteSetup): void {
  describe(`JobQueue conformance: ${name}`, () => {
    let queue: JobQueue;
    before(async () => {
      queue = await setup.makeQueue({ maxQueued: 16 });
      await queue.ready();
    });
    after(() => queue.close(1000));

    test('runs jobs in arrival order and reports queued positions', async () => {
      const started: string[] = [];
      const off = queue.subscribeAll((e) => {
        if (e.type === 'started') started.push(e.id);
      });
      const a = await queue.submit(smallRequest({ steps: 6 }));
      const b = await queue.submit(smallRequest({ seed: 2 }));
      const c = await queue.submit(smallRequest({ seed: 3 }));
      assert.equal(b.state, 'queued');
      assert.equal(b.position, 1);
      assert.equal(c.position, 2);
      const [ra, rb, rc] = await Promise.all([a, b, c].map((j) => waitForJob(queue, j.id)));
      off();
      assert.deepEqual(started, [a.id, b.id, c.id]);
      for (const r of [ra, rb, rc]) assert.equal(r.state, 'done');
      assert.deepEqual(rc.seeds, [3]);
    });

    test('a done record keeps PNGs, seeds, infotexts and timings', async () => {
      const j = await queue.submit(smallRequest({ batchSize: 2, seed: 10 }), { labels: { api: 'test' } });
      const r = await waitForJob(queue, j.id);
      assert.equal(r.state, 'done');
      assert.deepEqual(r.seeds, [10, 11]);
      assert.equal(r.images?.length, 2);
      assert.deepEqual([...r.images![0].png.subarray(1, 4)], [0x50, 0x4e, 0x47]);
      assert.match(r.infotexts![1], /Seed: 11/);
      assert.equal(r.labels.api, 'test');
      assert.ok(r.timings.render && r.timings.runMs !== undefined && r.timings.queuedMs !== undefined);
      assert.ok(r.finishedAt! >= r.startedAt! && r.startedAt! >= r.createdAt);
      // Reading it again later gives the same record.
      assert.deepEqual((await queue.get(j.id))?.seeds, [10, 11]);
    });

    test('progress events count steps up to the total, with previews when asked', async () => {
      const j = await queue.submit(smallRequest({ steps: 4, previewEvery: 2 }));
      const seen = await events(queue, j.id);
      const progress = seen.filter((e) => e.type === 'progress');
      assert.deepEqual(progress.map((e) => (e.type === 'progress' ? e.step : 0)), [1, 2, 3, 4]);
      const withPreview = progress.filter((e) => e.type === 'progress' && e.preview);
      assert.equal(withPreview.length, 1); // step 2 (the last step sends none: the image itself follows)
      const p = withPreview[0].type === 'progress' ? withPreview[0].preview! : undefined;
      assert.equal(p!.rgb.length, p!.width * p!.height * 3);
      assert.equal(seen.at(-1)?.type, 'done');
    });

    test('a late subscriber hears the final event', async () => {
      const j = await queue.submit(smallRequest());
      await waitForJob(queue, j.id);
      const seen = await events(queue, j.id);
      assert.deepEqual(seen.map((e) => e.type), ['done']);
    });

    test('cancels a queued job at once and a running one between steps', async () => {
      const running = await queue.submit(slow());
      const queued = await queue.submit(smallRequest());
      await firstProgress(queue, running.id);
      const c1 = await queue.cancel(queued.id);
      assert.equal(c1?.state, 'cancelled');
      const c2 = await queue.cancel(running.id);
      assert.ok(c2?.state === 'cancelled' || c2?.cancelRequested);
      const r = await waitForJob(queue, running.id);
      assert.equal(r.state, 'cancelled');
      assert.equal(r.error?.code, 'CANCELLED');
      assert.ok((r.progress?.step ?? 0) < 300);
      assert.equal((await queue.get(queued.id))?.error?.code, 'CANCELLED');
      assert.equal(await queue.cancel('no-such-job'), undefined);
    });

    test('an aborted client signal cancels its job', async () => {
      const ac = new AbortController();
      const j = await queue.submit(slow(), { clientSignal: ac.signal });
      await firstProgress(queue, j.id);
      ac.abort();
      const r = await waitForJob(queue, j.id);
      assert.equal(r.state, 'cancelled');
    });

    test('a job past its timeout fails with TIMEOUT and the next one runs', async () => {
      const j = await queue.submit(slow({ steps: 900 }), { timeoutMs: 150 });
      const next = await queue.submit(smallRequest());
      const r = await waitForJob(queue, j.id);
      assert.equal(r.state, 'failed');
      assert.equal(r.error?.code, 'TIMEOUT');
      assert.equal((await waitForJob(queue, next.id)).state, 'done');
    });

    test('an engine error fails the job with its code', async () => {
      const j = await queue.submit(smallRequest({ width: 72 }));
      const r = await waitForJob(queue, j.id);
      assert.equal(r.state, 'failed');
      assert.equal(r.error?.code, 'INVALID_SIZE');
    });

    test('a full queue refuses with QUEUE_FULL and a retry hint', async () => {
      const small = await setup.makeQueue({ maxQueued: 1 });
      try {
        await small.ready();
        const a = await small.submit(slow());
        const b = await small.submit(slow());
        await assert.rejects(small.submit(smallRequest()), (e: unknown) => {
          assert.ok(isLoraserveError(e));
          assert.equal(e.code, 'QUEUE_FULL');
          assert.equal(e.status, 503);
          assert.ok(Number(e.details?.retryAfterSeconds) >= 1);
          return true;
        });
        await small.cancel(b.id);
        await small.cancel(a.id);
        const st = await small.stats();
        assert.equal(st.totals.submitted, 2);
      } finally {
        await small.close(500);
      }
    });

    test('a worker that dies fails its job with WORKER_CRASHED and is replaced', { skip: !setup.killWorkerDuringNextJob }, async () => {
      await setup.killWorkerDuringNextJob!(queue);
      const j = await queue.submit(smallRequest());
      const r = await waitForJob(queue, j.id);
      assert.equal(r.state, 'failed');
      assert.equal(r.error?.code, 'WORKER_CRASHED');
      const again = await waitForJob(queue, (await queue.submit(smallRequest())).id);
      assert.equal(again.state, 'done');
      const st = await queue.stats();
      assert.equal(st.workers[0].crashes, 1);
    });

    test('close() refuses new work and ends running work within the grace period', async () => {
      const q = await setup.makeQueue({ maxQueued: 4 });
      await q.ready();
      const running = await q.submit(slow({ steps: 900 }));
      const waiting = await q.submit(smallRequest());
      await firstProgress(q, running.id);
      const t0 = Date.now();
      await q.close(100);
      assert.ok(Date.now() - t0 < 5000);
      assert.equal((await q.get(waiting.id))?.error?.code, 'SHUTTING_DOWN');
      const r = await q.get(running.id);
      assert.equal(r?.state, 'cancelled');
      assert.equal(r?.error?.code, 'SHUTTING_DOWN');
      await assert.rejects(q.submit(smallRequest()), /shutting down/);
    });
  });
}
