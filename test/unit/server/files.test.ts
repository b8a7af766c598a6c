/**
 * The internal file routes render workers fetch from (`/internal/v1/files`), on a real LoRA library of the
 * tiny model's LoRAs and an embeddings folder; the manifest's change notices; the files a job needs.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ApiFileIndex, manifestNotices } from '../../../src/cli/serve-files.js';
import { LibraryLoraProvider } from '../../../src/cli/serve-providers.js';
import { jobFiles } from '../../../src/engine/job-files.js';
import type { FileEntry } from '../../../src/jobs/file-wire.js';
import { LoraLibrary } from '../../../src/lora/index.js';
import { buildApp, type LoraserveApp } from '../../../src/server/app.js';
import { serverConfig } from '../../../src/server/config.js';
import { tinyModelDir } from '../../helpers/tiny-model.js';
import { fakeQueue } from './support.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const auth = { authorization: 'Bearer k3y' };

let root: string;
let loraDir: string;
let embDir: string;
let library: LoraLibrary;
let index: ApiFileIndex;
let built: LoraserveApp;

before(async () => {
  root = mkdtempSync(join(tmpdir(), 'loraserve-files-'));
  loraDir = join(root, 'loras');
  embDir = join(root, 'embeddings');
  cpSync(join(await tinyModelDir(), 'loras'), loraDir, { recursive: true, filter: (src) => !src.endsWith('.json') });
  library = await LoraLibrary.open(loraDir);
  mkdirSync(embDir);
  writeFileSync(join(embDir, 'style.pt'), Buffer.from('not really a pickle, only bytes to serve'));
  writeFileSync(join(embDir, 'notes.txt'), 'not an embedding');
  index = new ApiFileIndex(library, embDir);
  built = await buildApp({ queue: fakeQueue(), config: serverConfig({ apiKey: 'k3y' }), loras: new LibraryLoraProvider(library), files: index });
});
after(async () => {
  await built.app.close();
  index.close();
  library.close();
  rmSync(root, { recursive: true, force: true });
});

test('GET /internal/v1/files lists every LoRA and embedding with its sha256 and size', async () => {
  assert.equal((await built.app.inject({ method: 'GET', url: '/internal/v1/files' })).statusCode, 401, 'same API key as every route');
  const res = await built.app.inject({ method: 'GET', url: '/internal/v1/files', headers: auth });
  assert.equal(res.statusCode, 200);
  const files = res.json().files as FileEntry[];
  assert.deepEqual(
    files.map((f) => `${f.kind}:${f.name}:${f.file}`),
    ['lora:catears:catears.safetensors', 'lora:costume:costume.safetensors', 'lora:idol:idol.safetensors', 'lora:lights:lights.safetensors', 'lora:stage:stage.safetensors', 'embedding:style:style.pt'],
  );
  for (const f of files) {
    const bytes = readFileSync(join(f.kind === 'lora' ? loraDir : embDir, f.file));
    assert.equal(f.sha256, sha(bytes));
    assert.equal(f.bytes, bytes.byteLength);
  }
});

test('GET /internal/v1/files/:sha256 streams a library file; other hashes are 404, malformed ones 400', async () => {
  const idol = readFileSync(join(loraDir, 'idol.safetensors'));
  const res = await built.app.inject({ method: 'GET', url: `/internal/v1/files/${sha(idol)}`, headers: auth });
  assert.equal(res.statusCode, 200);
  assert.equal(res.headers['content-type'], 'application/octet-stream');
  assert.equal(Number(res.headers['content-length']), idol.byteLength);
  assert.deepEqual(res.rawPayload, idol);
  const emb = readFileSync(join(embDir, 'style.pt'));
  assert.deepEqual((await built.app.inject({ method: 'GET', url: `/internal/v1/files/${sha(emb)}`, headers: auth })).rawPayload, emb);

  const notes = await built.app.inject({ method: 'GET', url: `/internal/v1/files/${sha(readFileSync(join(embDir, 'notes.txt')))}`, headers: auth });
  assert.equal(notes.statusCode, 404, 'a file beside the libraries is not served');
  assert.equal(notes.json().error.code, 'NOT_FOUND');
  const bad = await built.app.inject({ method: 'GET', url: '/internal/v1/files/..%2F..%2Fetc%2Fpasswd', headers: auth });
  assert.equal(bad.statusCode, 400);
  assert.equal((await built.app.inject({ method: 'GET', url: `/internal/v1/files/${sha(idol)}` })).statusCode, 401);
});

test('without a file provider the routes answer 404', async () => {
  const bare = await buildApp({ queue: fakeQueue() });
  try {
    const res = await bare.app.inject({ method: 'GET', url: '/internal/v1/files' });
    assert.equal(res.statusCode, 404);
    assert.equal(res.json().error.code, 'NOT_FOUND');
  } finally {
    await bare.app.close();
  }
});

test('manifestNotices: new and re-pointed names, deletions', () => {
  const e = (kind: 'lora' | 'embedding', name: string, h: string): FileEntry => ({ kind, name, file: `${name}.safetensors`, sha256: h.repeat(64), bytes: 1 });
  assert.deepEqual(manifestNotices([e('lora', 'a', '1'), e('lora', 'b', '2'), e('embedding', 'a', '3')], [e('lora', 'a', '1'), e('lora', 'b', '4'), e('lora', 'c', '5')]), [
    { kind: 'lora', name: 'b', file: 'b.safetensors', sha256: '4'.repeat(64), bytes: 1 },
    { kind: 'lora', name: 'c', file: 'c.safetensors', sha256: '5'.repeat(64), bytes: 1 },
    { kind: 'embedding', name: 'a', file: 'a.safetensors', deleted: true },
  ]);
});

test('the watch reports an added and a removed LoRA as notices', async () => {
  const seen: unknown[] = [];
  await index.watch((n) => seen.push(...n));
  const bytes = readFileSync(join(loraDir, 'idol.safetensors'));
  writeFileSync(join(loraDir, 'idol-copy.safetensors'), bytes);
  rmSync(join(loraDir, 'stage.safetensors'));
  await library.scan();
  for (let i = 0; i < 100 && seen.length < 2; i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(seen, [
    { kind: 'lora', name: 'idol-copy', file: 'idol-copy.safetensors', sha256: sha(bytes), bytes: bytes.byteLength },
    { kind: 'lora', name: 'stage', file: 'stage.safetensors', deleted: true },
  ]);
});

test('jobFiles: the request list and prompt tags, resolved by the library, unknown names left out', async () => {
  const files = await jobFiles(
    { prompt: 'a cat <lora:catears:0.5> <lora:nope:1> <lora:IDOL:0.3>', loras: [{ name: 'idol', weight: 1 }, { name: '../x', weight: 1 }] },
    library,
  );
  assert.deepEqual(files, [
    { kind: 'lora', name: 'idol', file: 'idol.safetensors', sha256: sha(readFileSync(join(loraDir, 'idol.safetensors'))) },
    { kind: 'lora', name: 'catears', file: 'catears.safetensors', sha256: sha(readFileSync(join(loraDir, 'catears.safetensors'))) },
  ]);
});
