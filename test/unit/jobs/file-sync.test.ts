/**
 * Files reach a render worker without a shared disk: a real Redis (test/helpers/redis.ts), a real listening
 * API (buildApp with the file routes on a LoRA library and an embeddings folder), and a worker's FileSync with
 * its cache. Uploads, replacements and deletions on the API are seen by the worker without a restart; a job's
 * LoRA is fetched on first need, verified, and readable by an unchanged LoraLibrary on the view folder.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { isLoraserveError } from '../../../src/core/errors.js';
import { ApiFileIndex, publishFileChanges, startWorkerFiles } from '../../../src/cli/serve-files.js';
import { LibraryLoraProvider } from '../../../src/cli/serve-providers.js';
import { jobFiles } from '../../../src/engine/job-files.js';
import { FileNoticePublisher } from '../../../src/jobs/file-notices.js';
import { LoraLibrary } from '../../../src/lora/index.js';
import { buildApp, type LoraserveApp } from '../../../src/server/app.js';
import { serverConfig } from '../../../src/server/config.js';
import { redisServerAvailable, startRedis, type TestRedis } from '../../helpers/redis.js';
import { tinyModelDir } from '../../helpers/tiny-model.js';
import { fakeQueue } from '../server/support.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function until(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) assert.fail(`timed out waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

if (!redisServerAvailable() && !process.env.CI) {
  test('needs redis-server (apt-get install -y redis-server)', { skip: 'redis-server is not installed' }, () => {});
} else {
  describe('FileSync against a real Redis and API', () => {
    let redis: TestRedis;
    let root: string;
    let loraDir: string;
    let embDir: string;
    let library: LoraLibrary;
    let index: ApiFileIndex;
    let api: LoraserveApp;
    let apiUrl: string;
    let publisher: FileNoticePublisher;
    let worker: Awaited<ReturnType<typeof startWorkerFiles>>;
    const closers: Array<() => Promise<void> | void> = [];

    before(async () => {
      redis = await startRedis();
      root = mkdtempSync(join(tmpdir(), 'loraserve-fsync-'));
      loraDir = join(root, 'api-loras');
      embDir = join(root, 'api-embeddings');
      cpSync(join(await tinyModelDir(), 'loras'), loraDir, { recursive: true, filter: (src) => !src.endsWith('.json') });
      mkdirSync(embDir);
      writeFileSync(join(embDir, 'style.pt'), 'embedding bytes v1');
      library = await LoraLibrary.open(loraDir);
      index = new ApiFileIndex(library, embDir, { debounceMs: 20 });
      api = await buildApp({ queue: fakeQueue(), config: serverConfig({ apiKey: 'k3y' }), loras: new LibraryLoraProvider(library), files: index });
      apiUrl = await api.app.listen({ host: '127.0.0.1', port: 0 });
      publisher = new FileNoticePublisher({ redisUrl: redis.url });
      await publishFileChanges(index, publisher);
      worker = await startWorkerFiles({ redisUrl: redis.url, apiUrl, apiKey: 'k3y', cacheDir: join(root, 'cache'), cacheBytes: 8 << 20 });
    });
    after(async () => {
      for (const c of closers) await c();
      await worker?.sync.close();
      await publisher?.close();
      await api?.app.close();
      index?.close();
      library?.close();
      await redis?.stop();
      rmSync(root, { recursive: true, force: true });
    });

    const view = (dir: string) => readdirSync(dir).sort();

    test('start: the manifest is known, embeddings are fetched at once, LoRAs wait for first use', () => {
      assert.deepEqual(worker.sync.manifest().map((e) => `${e.kind}:${e.name}`).sort(), ['embedding:style', 'lora:catears', 'lora:costume', 'lora:idol', 'lora:lights', 'lora:stage']);
      assert.deepEqual(view(worker.embeddingsDir), ['style.pt']);
      assert.equal(readFileSync(join(worker.embeddingsDir, 'style.pt'), 'utf8'), 'embedding bytes v1');
      assert.deepEqual(view(worker.loraDir), []);
    });

    test("ensure fetches a job's LoRAs, verified, under their names; an unchanged LoraLibrary reads them", async () => {
      const files = await jobFiles({ prompt: 'a cat <lora:catears:0.7>', loras: [{ name: 'idol', weight: 0.5 }] }, library);
      const { release, relinked } = await worker.sync.ensure(files);
      assert.deepEqual(view(worker.loraDir), ['catears.safetensors', 'idol.safetensors']);
      assert.deepEqual(relinked.sort(), ['catears.safetensors', 'idol.safetensors']);
      const again = await worker.sync.ensure(files);
      assert.deepEqual(again.relinked, [], 'already in place');
      assert.deepEqual(readFileSync(join(worker.loraDir, 'catears.safetensors')), readFileSync(join(loraDir, 'catears.safetensors')));
      assert.equal(worker.cache.stats().pinned, 3, 'the two LoRAs (for the job) and the embedding');
      const workerLibrary = await LoraLibrary.open(worker.loraDir);
      try {
        assert.equal((await workerLibrary.hashes('catears')).sha256, files.find((f) => f.name === 'catears')!.sha256);
      } finally {
        workerLibrary.close();
      }
      release();
      assert.equal(worker.cache.stats().pinned, 3, 'the second ensure still holds its pins');
      again.release();
      assert.equal(worker.cache.stats().pinned, 1);
    });

    test('an upload is seen without a restart; a replaced LoRA is never read with its old bytes', async () => {
      const stage = readFileSync(join(loraDir, 'stage.safetensors'));
      writeFileSync(join(loraDir, 'new-one.safetensors'), stage);
      writeFileSync(join(loraDir, 'catears.safetensors'), readFileSync(join(loraDir, 'costume.safetensors'))); // overwrite
      await library.scan(); // what an upload's install does
      await until('the new LoRA in the manifest', () => worker.sync.manifest().some((e) => e.name === 'new-one'));
      await until('the replaced LoRA unlinked', () => !existsSync(join(worker.loraDir, 'catears.safetensors')));
      await worker.sync.ensure(await jobFiles({ prompt: '<lora:catears:1>' }, library)).then((e) => e.release());
      assert.deepEqual(readFileSync(join(worker.loraDir, 'catears.safetensors')), readFileSync(join(loraDir, 'costume.safetensors')));
    });

    test('a deletion removes the name; a job naming a deleted file fails UNKNOWN_LORA', async () => {
      const [idol] = await jobFiles({ prompt: '<lora:idol:1>' }, library);
      assert.ok(existsSync(join(worker.loraDir, 'idol.safetensors')));
      rmSync(join(loraDir, 'idol.safetensors'));
      await library.scan();
      await until('idol unlinked', () => !existsSync(join(worker.loraDir, 'idol.safetensors')));
      const lights = (await jobFiles({ prompt: '<lora:lights:1>' }, library))[0];
      rmSync(join(loraDir, 'lights.safetensors'));
      await library.scan();
      await assert.rejects(worker.sync.ensure([lights]), (e) => isLoraserveError(e) && e.code === 'UNKNOWN_LORA');
      assert.equal(worker.cache.has(lights.sha256), false);
      // idol's blob is still cached: a job submitted before the delete still renders with it.
      (await worker.sync.ensure([idol])).release();
    });

    test('a changed embedding is fetched again at once', async () => {
      writeFileSync(join(embDir, 'style.pt'), 'embedding bytes v2');
      await until('the new embedding', () => readFileSync(join(worker.embeddingsDir, 'style.pt'), 'utf8') === 'embedding bytes v2');
      writeFileSync(join(embDir, 'second.pt'), 'another');
      await until('the added embedding', () => existsSync(join(worker.embeddingsDir, 'second.pt')));
    });

    test('a shared folder is read first; a file there that does not match the hash falls back to the API', async () => {
      const shared = join(root, 'shared');
      mkdirSync(shared);
      writeFileSync(join(shared, 'stage.safetensors'), 'tampered');
      const other = await startWorkerFiles({ redisUrl: redis.url, apiUrl, apiKey: 'k3y', cacheDir: join(root, 'cache2'), cacheBytes: 8 << 20, sharedLoraDir: shared });
      closers.push(() => other.sync.close());
      (await other.sync.ensure(await jobFiles({ prompt: '<lora:stage:1>' }, library))).release();
      assert.deepEqual(readFileSync(join(other.loraDir, 'stage.safetensors')), readFileSync(join(loraDir, 'stage.safetensors')));
    });

    test('notices missed while Redis was down are caught up by a full sync when it returns', async () => {
      (await worker.sync.ensure(await jobFiles({ prompt: '<lora:new-one:1>' }, library))).release();
      assert.ok(existsSync(join(worker.loraDir, 'new-one.safetensors')));
      const before = worker.sync.syncCount;
      await redis.kill();
      rmSync(join(loraDir, 'new-one.safetensors'));
      await library.scan(); // its notice is lost
      await redis.restart();
      await until('a resync after the reconnect', () => worker.sync.syncCount > before, 15_000);
      await until('new-one unlinked', () => !existsSync(join(worker.loraDir, 'new-one.safetensors')));
    });
  });
}
