import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { isLoraserveError } from '../../../src/core/errors.js';
import { FileCache } from '../../../src/jobs/file-cache.js';

const roots: string[] = [];
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

function tempRoot(): string {
  const d = mkdtempSync(join(tmpdir(), 'loraserve-fcache-'));
  roots.push(d);
  return d;
}

function blob(seed: number, size = 1000): { bytes: Uint8Array; sha: string } {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (i * 31 + seed * 7) & 255;
  return { bytes, sha: createHash('sha256').update(bytes).digest('hex') };
}

/** A body delivered in small chunks, optionally failing after `failAfter` bytes (a dropped connection). */
function body(bytes: Uint8Array, failAfter?: number): () => Promise<AsyncIterable<Uint8Array>> {
  return async () =>
    (async function* () {
      for (let i = 0; i < bytes.byteLength; i += 100) {
        if (failAfter !== undefined && i >= failAfter) throw new Error('socket hang up');
        yield bytes.subarray(i, Math.min(i + 100, bytes.byteLength));
      }
    })();
}

async function rejectsReason(p: Promise<unknown>, reason: string): Promise<void> {
  await assert.rejects(p, (e) => isLoraserveError(e) && e.code === 'IO_FAILED' && e.details?.reason === reason);
}

function leftovers(root: string): string[] {
  return [...readdirSync(join(root, 'tmp')), ...readdirSync(join(root, 'blobs'))];
}

test('fetch stores a verified blob; a second fetch of the hash is a hit', async () => {
  const root = tempRoot();
  const c = await FileCache.open({ root, maxBytes: 1 << 20 });
  const a = blob(1);
  let opened = 0;
  const open = async () => {
    opened++;
    return body(a.bytes)();
  };
  await Promise.all([c.fetch(a.sha, open, 1000), c.fetch(a.sha, open, 1000)]);
  await c.fetch(a.sha, open);
  assert.equal(opened, 1, 'one download for concurrent and repeated fetches');
  assert.deepEqual(readFileSync(c.blobPath(a.sha)), Buffer.from(a.bytes));
  assert.deepEqual(c.stats(), { bytes: 1000, blobs: 1, maxBytes: 1 << 20, pinned: 0, evictions: 0 });
});

test('hash mismatch, truncated body, body over its size and a dropped stream leave nothing behind', async () => {
  const root = tempRoot();
  const c = await FileCache.open({ root, maxBytes: 1 << 20 });
  const a = blob(1);
  const b = blob(2);
  await rejectsReason(c.fetch(a.sha, body(b.bytes)), 'hash-mismatch');
  await rejectsReason(c.fetch(a.sha, body(a.bytes.subarray(0, 500)), 1000), 'truncated');
  await rejectsReason(c.fetch(a.sha, body(a.bytes.subarray(0, 500))), 'hash-mismatch');
  await rejectsReason(c.fetch(a.sha, body(a.bytes), 999), 'too-large');
  await rejectsReason(c.fetch(a.sha, body(a.bytes, 500), 1000), 'download');
  assert.deepEqual(leftovers(root), []);
  assert.equal(c.has(a.sha), false);
  // …and a later good fetch works.
  await c.fetch(a.sha, body(a.bytes), 1000);
  assert.equal(c.has(a.sha), true);
});

test('views: hard links named per kind, re-pointed atomically, removed on delete', async () => {
  const root = tempRoot();
  const c = await FileCache.open({ root, maxBytes: 1 << 20 });
  const a = blob(1);
  const b = blob(2, 1200);
  await c.fetch(a.sha, body(a.bytes));
  await c.fetch(b.sha, body(b.bytes));
  await c.link('lora', 'catears.safetensors', a.sha);
  const view = join(c.viewDir('lora'), 'catears.safetensors');
  assert.equal(statSync(view).ino, statSync(c.blobPath(a.sha)).ino, 'a hard link, not a copy');
  await c.link('lora', 'catears.safetensors', b.sha);
  assert.deepEqual(readFileSync(view), Buffer.from(b.bytes));
  assert.equal(c.viewed('lora', 'catears.safetensors'), b.sha);
  assert.deepEqual(readdirSync(c.viewDir('lora')), ['catears.safetensors'], 'no temp names left');
  await c.link('embedding', 'style.pt', a.sha);
  assert.deepEqual(readdirSync(c.viewDir('embedding')), ['style.pt']);
  assert.equal(await c.unlink('lora', 'catears.safetensors'), true);
  assert.deepEqual(readdirSync(c.viewDir('lora')), []);
  assert.equal(await c.unlink('lora', 'catears.safetensors'), false);
  await assert.rejects(c.link('lora', '../escape.safetensors', a.sha), (e) => isLoraserveError(e) && e.code === 'INVALID_ARGUMENT');
  await assert.rejects(c.link('lora', 'x.safetensors', blob(9).sha), (e) => isLoraserveError(e) && e.code === 'NOT_FOUND');
});

test('eviction keeps the total under the bound, least recently used first, with their view entries', async () => {
  const root = tempRoot();
  const c = await FileCache.open({ root, maxBytes: 2500 });
  const [a, b, d] = [blob(1), blob(2), blob(3)];
  await c.fetch(a.sha, body(a.bytes));
  await c.link('lora', 'a.safetensors', a.sha);
  await c.fetch(b.sha, body(b.bytes));
  await c.link('lora', 'a.safetensors', a.sha); // a used again: b is now the least recently used
  await c.fetch(d.sha, body(d.bytes));
  assert.equal(c.has(b.sha), false, 'b evicted');
  assert.equal(c.has(a.sha), true);
  assert.equal(c.has(d.sha), true);
  assert.ok(c.stats().bytes <= 2500);
  assert.equal(c.stats().evictions, 1);
  // Evicting a blob removes the names that pointed at it.
  await c.fetch(b.sha, body(b.bytes)); // evicts a now
  assert.equal(c.has(a.sha), false);
  assert.deepEqual(readdirSync(c.viewDir('lora')), []);
  assert.equal(c.viewed('lora', 'a.safetensors'), undefined);
});

test('a pinned blob is never evicted; release lets the bound apply again', async () => {
  const root = tempRoot();
  const c = await FileCache.open({ root, maxBytes: 1500 });
  const [a, b] = [blob(1), blob(2)];
  const releaseA = c.pin(a.sha); // pinned before it exists, as a job does
  await c.fetch(a.sha, body(a.bytes));
  const releaseB = c.pin(b.sha);
  await c.fetch(b.sha, body(b.bytes));
  assert.equal(c.has(a.sha) && c.has(b.sha), true, 'both pinned: over the bound for now');
  assert.equal(c.stats().pinned, 2);
  releaseA();
  releaseA(); // idempotent
  await c.evict();
  assert.equal(c.has(a.sha), false);
  assert.equal(c.has(b.sha), true);
  releaseB();
  await c.evict();
  assert.equal(c.has(b.sha), true, 'within the bound alone');
  assert.equal(c.stats().pinned, 0);
});

test('reopen keeps blobs and their links, drops temp files and strangers', async () => {
  const root = tempRoot();
  const c = await FileCache.open({ root, maxBytes: 1 << 20 });
  const a = blob(1);
  await c.fetch(a.sha, body(a.bytes));
  await c.link('lora', 'a.safetensors', a.sha);
  writeFileSync(join(root, 'tmp', `${a.sha}.dead.part`), 'half');
  writeFileSync(join(root, 'blobs', 'not-a-hash'), 'x');
  writeFileSync(join(c.viewDir('lora'), 'stranger.safetensors'), 'x');
  writeFileSync(join(c.viewDir('lora'), '.a.safetensors.1234.tmp'), 'x');
  const again = await FileCache.open({ root, maxBytes: 1 << 20 });
  assert.equal(again.has(a.sha), true);
  assert.equal(again.viewed('lora', 'a.safetensors'), a.sha);
  assert.deepEqual(readdirSync(again.viewDir('lora')), ['a.safetensors']);
  assert.deepEqual(readdirSync(join(root, 'tmp')), []);
  assert.deepEqual(readdirSync(join(root, 'blobs')), [a.sha]);
});
