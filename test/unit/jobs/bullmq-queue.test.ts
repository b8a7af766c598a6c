/**
 * The BullMQ queue (API side + one BullmqRenderWorker on a real render thread, tiny model) through the shared
 * queue suite, on a private redis-server (test/helpers/redis.ts). Without redis-server installed the suite is
 * skipped locally and fails in CI (.ci/run installs it).
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { isLoraserveError } from '../../../src/core/errors.js';
import { BullmqQueue } from '../../../src/jobs/bullmq-queue.js';
import { BullmqRenderWorker } from '../../../src/jobs/bullmq-worker.js';
import { type JobQueue, waitForJob } from '../../../src/jobs/queue.js';
import { RenderHost } from '../../../src/jobs/render-host.js';
import { smallRequest } from '../../helpers/small-render.js';
import { redisServerAvailable, startRedis, type TestRedis } from '../../helpers/redis.js';
import { tinyModelDir } from '../../helpers/tiny-model.js';
import { runQueueSuite } from './queue-suite.js';

if (!redisServerAvailable() && !process.env.CI) {
  describe('JobQueue conformance: BullmqQueue', () => {
    test('needs redis-server (apt-get install -y redis-server)', { skip: 'redis-server is not installed' }, () => {});
  });
} else {
  let modelDir: string;
  let redis: TestRedis;
  before(async () => {
    [modelDir, redis] = await Promise.all([tinyModelDir(), startRedis()]);
  });
  after(() => redis?.stop());

  const hosts = new WeakMap<JobQueue, RenderHost>();
  let n = 0;

  runQueueSuite('BullmqQueue', {
    async makeQueue({ maxQueued }) {
      const queueName = `suite-${++n}`;
      const host = await RenderHost.start(modelDir, { kind: 'cpu', threads: 1 });
      const worker = await BullmqRenderWorker.start({ redisUrl: redis.url, host, device: 'cpu', queueName });
      const q = new BullmqQueue({ redisUrl: redis.url, queueName, maxQueued, workers: [worker] });
      await q.ready();
      hosts.set(q, host);
      return q;
    },
    async killWorkerDuringNextJob(queue) {
      // As in local-queue.test.ts: the render thread exits, the next render finds it gone (a crash to the host).
      const worker = (hosts.get(queue) as unknown as { worker: { postMessage(m: unknown): void } }).worker;
      worker.postMessage({ type: 'shutdown' });
    },
  });

  test('Redis unreachable: submit answers 503 QUEUE_UNAVAILABLE at once; service resumes when Redis returns', async () => {
    const own = await startRedis();
    const host = await RenderHost.start(modelDir, { kind: 'cpu', threads: 1 });
    const worker = await BullmqRenderWorker.start({ redisUrl: own.url, host, device: 'cpu', heartbeatMs: 200 });
    const q = new BullmqQueue({ redisUrl: own.url, workers: [worker] });
    try {
      await q.ready();
      assert.equal((await waitForJob(q, (await q.submit(smallRequest())).id)).state, 'done');
      await own.kill();
      await new Promise((r) => setTimeout(r, 100)); // the client notices the closed socket
      const t0 = Date.now();
      await assert.rejects(q.submit(smallRequest()), (e: unknown) => {
        assert.ok(isLoraserveError(e));
        assert.equal(e.status, 503);
        assert.equal(e.code, 'QUEUE_UNAVAILABLE');
        assert.ok(Number(e.details?.retryAfterSeconds) >= 1);
        return true;
      });
      assert.ok(Date.now() - t0 < 1000, 'the 503 comes without waiting on Redis');
      await own.restart();
      // Clients reconnect by themselves; the worker re-advertises on its heartbeat. A client retries on 503.
      const deadline = Date.now() + 20_000;
      let id: string | undefined;
      while (!id) {
        try {
          id = (await q.submit(smallRequest({ seed: 5 }))).id;
        } catch (e) {
          if (!isLoraserveError(e) || Date.now() > deadline) throw e;
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      const r = await waitForJob(q, id);
      assert.equal(r.state, 'done');
      assert.deepEqual(r.seeds, [5]);
    } finally {
      await q.close(500);
      await own.stop();
    }
  });

  test('a worker closed with handBack returns its running job to the queue; another worker finishes it', async () => {
    const queueName = 'hand-back';
    const [h1, h2] = await Promise.all([0, 1].map(() => RenderHost.start(modelDir, { kind: 'cpu', threads: 1 })));
    const first = await BullmqRenderWorker.start({ redisUrl: redis.url, host: h1, device: 'cpu', queueName, id: 'first' });
    const api = new BullmqQueue({ redisUrl: redis.url, queueName });
    let second: BullmqRenderWorker | undefined;
    try {
      await api.ready();
      const j = await api.submit(smallRequest({ steps: 300, seed: 9 }));
      await new Promise<void>((resolve) => {
        const off = api.subscribe(j.id, (e) => {
          if (e.type === 'progress') {
            off();
            resolve();
          }
        });
      });
      second = await BullmqRenderWorker.start({ redisUrl: redis.url, host: h2, device: 'cpu', queueName, id: 'second' });
      await first.close(0, { handBack: true });
      const r = await waitForJob(api, j.id);
      assert.equal(r.state, 'done');
      assert.equal(r.worker, 'second');
      assert.deepEqual(r.seeds, [9]);
    } finally {
      await first.close(0);
      await second?.close(0);
      if (!second) await h2.close();
      await api.close(0);
    }
  });
}
