/**
 * Results in a folder instead of Redis (`--results-dir`): the worker writes `<job id>/<n>.png` atomically and
 * Redis keeps only the paths; the API reads the PNGs back from the same folder; a path from Redis that leaves
 * the folder is refused.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { resolveInside } from '../../../src/jobs/bullmq-records.js';
import { BullmqQueue } from '../../../src/jobs/bullmq-queue.js';
import { BullmqRenderWorker } from '../../../src/jobs/bullmq-worker.js';
import { waitForJob } from '../../../src/jobs/queue.js';
import { FakeHost } from '../../helpers/fake-host.js';
import { redisServerAvailable, startRedis, type TestRedis } from '../../helpers/redis.js';
import { smallRequest } from '../../helpers/small-render.js';

test('resolveInside keeps result paths inside the results folder', () => {
  assert.equal(resolveInside('/r', 'abc/0.png'), '/r/abc/0.png');
  for (const bad of ['../x.png', '/etc/passwd', 'a/../../x', '', '.']) assert.throws(() => resolveInside('/r', bad), /outside the results folder/);
});

if (!redisServerAvailable() && !process.env.CI) {
  describe('results folder', () => {
    test('needs redis-server', { skip: 'redis-server is not installed' }, () => {});
  });
} else {
  let redis: TestRedis;
  let dir: string;
  before(async () => {
    redis = await startRedis();
    dir = mkdtempSync(join(tmpdir(), 'loraserve-results-'));
  });
  after(async () => {
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('the worker writes PNGs to the folder, Redis holds paths, the API reads them back', async () => {
    // A result limit of 1 byte: it applies to Redis only, so a folder result is not refused.
    const worker = await BullmqRenderWorker.start({ redisUrl: redis.url, host: new FakeHost(1), device: 'cpu', queueName: 'rd', resultsDir: dir, maxResultBytes: 1 });
    const api = new BullmqQueue({ redisUrl: redis.url, queueName: 'rd', resultsDir: dir });
    const blind = new BullmqQueue({ redisUrl: redis.url, queueName: 'rd' });
    try {
      await api.ready();
      const rec = await waitForJob(api, (await api.submit(smallRequest({ batchSize: 2, seed: 3 }))).id);
      assert.equal(rec.state, 'done');
      assert.deepEqual(readdirSync(join(dir, rec.id)).sort(), ['0.png', '1.png']);
      assert.equal(rec.images?.length, 2);
      assert.deepEqual([...rec.images![1].png], [...readFileSync(join(dir, rec.id, '1.png'))]);
      assert.equal(rec.images![1].seed, 4);
      // A process without the folder says so instead of returning an empty result.
      await assert.rejects(blind.get(rec.id), (e: Error & { code?: string }) => e.code === 'IO_FAILED' && /--results-dir/.test(e.message));
      assert.ok(!readdirSync(join(dir, rec.id)).some((f) => f.includes('.tmp')), 'no temp files left');
      assert.ok(existsSync(join(dir, rec.id, '0.png')));
    } finally {
      await blind.close(0);
      await api.close(0);
      await worker.close(0);
    }
  });
}
