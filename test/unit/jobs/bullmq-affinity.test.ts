/**
 * LoRA-affinity routing: the routing key and warm-set bookkeeping (pure), then on a private redis-server with
 * stand-in render hosts: a job whose LoRA set an idle worker holds warm goes to that worker's own queue; with
 * affinity off everything goes to the shared queue; a dead worker's queue is emptied into the shared queue
 * (waiting jobs, and running ones once their lock expired), and a job moved too often fails WORKER_CRASHED.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Queue, Worker } from 'bullmq';
import { loraSetKey, loraSetNames, WarmSets, warmCandidates } from '../../../src/jobs/bullmq-affinity.js';
import { BullmqQueue } from '../../../src/jobs/bullmq-queue.js';
import { BullmqRenderWorker } from '../../../src/jobs/bullmq-worker.js';
import { encodeRequest, redisOptionsFromUrl, workerQueueName, wireKeys, type WireJobData, type WireWorkerEntry } from '../../../src/jobs/bullmq-wire.js';
import { waitForJob } from '../../../src/jobs/queue.js';
import { FakeHost } from '../../helpers/fake-host.js';
import { redisServerAvailable, startRedis, type TestRedis } from '../../helpers/redis.js';
import { smallRequest } from '../../helpers/small-render.js';
import { Redis } from 'ioredis';

test('loraSetKey: tags and the request list, deduplicated and sorted; none is empty', () => {
  assert.equal(loraSetKey({ prompt: 'a cat', loras: [] }), '');
  assert.equal(loraSetKey({ prompt: 'a cat <lora:zeta:0.5> <lora:alpha:1>', loras: [{ name: 'mid', weight: 0.3 }] }), 'alpha+mid+zeta');
  // The same set at other weights is the same key: new weights rescale one factor, a new set parses and stacks.
  assert.equal(loraSetKey({ prompt: '<lora:alpha:0.2>', loras: [{ name: 'alpha', weight: 0.9 }] }), 'alpha');
  // A prompt the worker will refuse (dyn=) needs no routing.
  assert.equal(loraSetKey({ prompt: '<lora:alpha:1:dyn=4>' }), '');
});

test('loraSetNames: the names back out of a key, file hashes dropped', () => {
  const files = [{ kind: 'lora' as const, name: 'alpha', sha256: 'ab'.repeat(32) }];
  const key = loraSetKey({ prompt: '<lora:alpha:1> <lora:beta:0.5>' }, files);
  assert.equal(key, `alpha@${'ab'.repeat(6)}+beta`);
  assert.deepEqual(loraSetNames(key), ['alpha', 'beta']);
  assert.deepEqual(loraSetNames(''), []);
});

test('WarmSets: most recent first, bounded, empty key ignored', () => {
  const w = new WarmSets(2);
  w.touch('a');
  w.touch('b');
  w.touch('a');
  w.touch('');
  assert.deepEqual(w.list(), ['a', 'b']);
  w.touch('c');
  assert.deepEqual(w.list(), ['c', 'a']);
  assert.equal(w.list().includes('b'), false);
});

test('warmCandidates: idle workers with the set warm and a queue, most recently warmed first', () => {
  const base = { device: 'cpu', crashes: 0, expiresAt: Date.now() + 10_000 };
  const ws: WireWorkerEntry[] = [
    { ...base, id: 'busy', state: 'busy', queue: 'q.busy', warmSets: ['x'] },
    { ...base, id: 'old', state: 'idle', queue: 'q.old', warmSets: ['y', 'x'] },
    { ...base, id: 'new', state: 'idle', queue: 'q.new', warmSets: ['x'] },
    { ...base, id: 'noqueue', state: 'idle', warmSets: ['x'] },
    { ...base, id: 'cold', state: 'idle', queue: 'q.cold', warmSets: ['y'] },
  ];
  assert.deepEqual(warmCandidates(ws, 'x').map((w) => w.id), ['new', 'old']);
  assert.deepEqual(warmCandidates(ws, ''), []);
});

if (!redisServerAvailable() && !process.env.CI) {
  describe('affinity on Redis', () => {
    test('needs redis-server (apt-get install -y redis-server)', { skip: 'redis-server is not installed' }, () => {});
  });
} else {
  let redis: TestRedis;
  before(async () => {
    redis = await startRedis();
  });
  after(() => redis?.stop());
  let n = 0;

  async function cluster(opts: { affinity: boolean; workers?: number }) {
    const queueName = `aff-${++n}`;
    const workers = await Promise.all(
      Array.from({ length: opts.workers ?? 2 }, (_, i) => BullmqRenderWorker.start({ redisUrl: redis.url, host: new FakeHost(5), device: 'cpu', queueName, id: `w${i}`, heartbeatMs: 200 })),
    );
    const api = new BullmqQueue({ redisUrl: redis.url, queueName, affinity: opts.affinity, sweepMs: 200 });
    await api.ready();
    return {
      queueName,
      api,
      workers,
      async close() {
        await api.close(0);
        await Promise.all(workers.map((w) => w.close(0)));
      },
    };
  }

  test('a job whose LoRA set an idle worker holds warm runs on that worker, through its own queue', async () => {
    const c = await cluster({ affinity: true });
    try {
      const req = smallRequest({ loras: [{ name: 'catears', weight: 0.8 }] });
      const first = await waitForJob(c.api, (await c.api.submit(req)).id);
      assert.equal(first.state, 'done');
      const warmOn = first.worker!;
      // Give the worker's "idle + warm" advertisement a moment to land (it is written as the job ends).
      await new Promise((r) => setTimeout(r, 50));
      for (let i = 0; i < 6; i++) {
        const rec = await waitForJob(c.api, (await c.api.submit({ ...req, seed: 100 + i, loras: [{ name: 'catears', weight: i / 6 }] })).id);
        assert.equal(rec.state, 'done');
        assert.equal(rec.worker, warmOn, `job ${i} ran where its LoRA set was warm`);
        assert.deepEqual(rec.seeds, [100 + i]);
      }
      const st = await c.api.stats();
      assert.equal(st.affinity?.enabled, true);
      assert.equal(st.affinity?.routed, 6);
      assert.equal(st.affinity?.shared, 1);
      assert.equal(st.affinity?.warmRuns, 7);
      assert.equal(st.affinity?.warmHits, 6);
      assert.ok(st.workers.find((w) => w.id === warmOn)?.warmSets?.includes('catears'));
      // Records of routed jobs are listed and readable like shared ones.
      assert.equal((await c.api.list({ states: ['done'] })).length, 7);
      // A job without LoRAs is never routed.
      await waitForJob(c.api, (await c.api.submit(smallRequest())).id);
      assert.equal((await c.api.stats()).affinity?.routed, 6);
    } finally {
      await c.close();
    }
  });

  test("a set the render thread no longer holds (evicted from its LoRA cache) is not advertised warm, and not routed to", async () => {
    const queueName = `aff-${++n}`;
    const host = Object.assign(new FakeHost(5), { loraCache: { hits: 0, misses: 0, evictions: 0, entries: 1, bytes: 1, cached: ['catears'] } });
    const worker = await BullmqRenderWorker.start({ redisUrl: redis.url, host, device: 'cpu', queueName, id: 'only', heartbeatMs: 200 });
    const api = new BullmqQueue({ redisUrl: redis.url, queueName, sweepMs: 200 });
    try {
      await api.ready();
      const run = async (loras: { name: string; weight: number }[]) => (await waitForJob(api, (await api.submit(smallRequest({ loras }))).id)).state;
      assert.equal(await run([{ name: 'catears', weight: 1 }]), 'done');
      assert.equal(await run([{ name: 'idol', weight: 1 }]), 'done');
      await new Promise((r) => setTimeout(r, 50));
      // idol was rendered but the host's cache holds only catears: only catears is warm.
      assert.deepEqual(worker.stats().warmSets, ['catears']);
      assert.equal(await run([{ name: 'idol', weight: 0.5 }]), 'done');
      assert.equal(await run([{ name: 'catears', weight: 0.5 }]), 'done');
      const a = (await api.stats()).affinity!;
      assert.equal(a.routed, 1, 'only the catears job was routed');
      assert.equal(a.warmHits, 1);
    } finally {
      await api.close(0);
      await worker.close(0);
    }
  });

  test('affinity off: every job goes to the shared queue', async () => {
    const c = await cluster({ affinity: false });
    try {
      const req = smallRequest({ loras: [{ name: 'catears', weight: 0.8 }] });
      for (let i = 0; i < 3; i++) assert.equal((await waitForJob(c.api, (await c.api.submit({ ...req, seed: i })).id)).state, 'done');
      const st = await c.api.stats();
      assert.equal(st.affinity?.enabled, false);
      assert.equal(st.affinity?.routed, 0);
      assert.equal(st.affinity?.shared, 3);
    } finally {
      await c.close();
    }
  });

  test("a dead worker's queue is emptied into the shared queue; a job moved too often fails WORKER_CRASHED", async () => {
    const c = await cluster({ affinity: true, workers: 1 });
    const conn = redisOptionsFromUrl(redis.url);
    const keys = wireKeys('loraserve', c.queueName);
    const ghostQueue = workerQueueName(c.queueName, 'ghost@dead');
    const direct = new Redis({ ...conn });
    const ghost = new Queue<WireJobData>(ghostQueue, { connection: { ...conn }, prefix: 'loraserve' });
    try {
      // A worker that died: its queue is registered but it no longer heartbeats. One job waits there, one was
      // running (taken with a short lock that is never renewed), one running had already been moved twice.
      const data = (seed: number, reroutes = 0): WireJobData => ({ request: encodeRequest(smallRequest({ seed })), timeoutMs: 60_000, labels: {}, createdAt: Date.now(), loraSet: '', reroutes });
      await direct.sadd(keys.workerQueues, ghostQueue);
      await ghost.add('render', data(7, 2), { jobId: 'ghost-crashing' });
      const taker = new Worker(ghostQueue, null, { connection: { ...conn, maxRetriesPerRequest: null }, prefix: 'loraserve', lockDuration: 300, autorun: false });
      const running = await taker.getNextJob('dead-token');
      assert.equal(running?.id, 'ghost-crashing');
      await ghost.add('render', data(8), { jobId: 'ghost-running' });
      assert.equal((await taker.getNextJob('dead-token-2'))?.id, 'ghost-running');
      await taker.close(true);
      await ghost.add('render', data(9), { jobId: 'ghost-waiting' });
      for (const id of ['ghost-crashing', 'ghost-running', 'ghost-waiting']) await direct.set(keys.route(id), ghostQueue);

      const waiting = await waitForJob(c.api, 'ghost-waiting');
      assert.equal(waiting.state, 'done');
      assert.equal(waiting.worker, 'w0');
      assert.deepEqual(waiting.seeds, [9]);
      const rerun = await waitForJob(c.api, 'ghost-running');
      assert.equal(rerun.state, 'done');
      assert.deepEqual(rerun.seeds, [8]);
      const crashed = await waitForJob(c.api, 'ghost-crashing');
      assert.equal(crashed.state, 'failed');
      assert.equal(crashed.error?.code, 'WORKER_CRASHED');
      // Emptied and gone: the queue left the registry set.
      const deadline = Date.now() + 5000;
      while ((await direct.sismember(keys.workerQueues, ghostQueue)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      assert.equal(await direct.sismember(keys.workerQueues, ghostQueue), 0);
    } finally {
      await ghost.close();
      direct.disconnect();
      await c.close();
    }
  });
}
