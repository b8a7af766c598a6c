/**
 * The BullMQ queue (API side + one BullmqRenderWorker on a real render thread, tiny model) through the shared
 * queue suite, on a private redis-server (test/helpers/redis.ts). Without redis-server installed the suite is
 * skipped locally and fails in CI (.ci/run installs it).
 */
import { after, before, describe, test } from 'node:test';
import { BullmqQueue } from '../../../src/jobs/bullmq-queue.js';
import { BullmqRenderWorker } from '../../../src/jobs/bullmq-worker.js';
import type { JobQueue } from '../../../src/jobs/queue.js';
import { RenderHost } from '../../../src/jobs/render-host.js';
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
      const worker = await BullmqRenderWorker.start({ redisUrl: redis.url, host, device: 'cpu', queueName, heartbeatMs: 1000 });
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
}
