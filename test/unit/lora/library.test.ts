import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { type LibraryChange, LoraLibrary } from '../../../src/lora/library.js';
import { file, kohya, rejectsCode, sd15Targets, target, throwsCode } from './support.js';

const T = sd15Targets();
const Q = 'down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q';
const roots: string[] = [];
after(() => {
  for (const r of roots) rmSync(r, { recursive: true, force: true });
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'loraserve-lib-'));
  roots.push(d);
  return d;
}

function loraBytes(seed: number, metadata: Record<string, string> = {}, rank = 4): Uint8Array {
  return file(kohya(target(T, Q), rank, { alpha: rank / 2, seed }).tensors, { ss_base_model_version: 'sd_v1', ...metadata });
}

function populate(dir: string): void {
  writeFileSync(join(dir, 'catears.safetensors'), loraBytes(1, { ss_output_name: 'catEarsV2', ss_tag_frequency: '{"a":{"cat ears":3}}' }));
  writeFileSync(join(dir, 'idol.safetensors'), loraBytes(2, { ss_output_name: 'idol' }));
  writeFileSync(join(dir, 'stage.safetensors'), loraBytes(3));
  writeFileSync(join(dir, 'idol2.safetensors'), loraBytes(4, { ss_output_name: 'idol' }));
  writeFileSync(join(dir, 'broken.safetensors'), loraBytes(5).subarray(0, 100));
  writeFileSync(join(dir, 'notes.txt'), 'not a lora');
  writeFileSync(join(dir, '.catears.safetensors.123.tmp'), 'partial atomic write');
}

test('scan: names by stem, aliases, failures reported not fatal, header-only info', async () => {
  const dir = tempDir();
  populate(dir);
  const lib = await LoraLibrary.open(dir);
  assert.deepEqual(
    lib.list().map((e) => e.name),
    ['catears', 'idol', 'idol2', 'stage'],
  );
  const cat = lib.get('catears');
  assert.equal(cat?.alias, 'catEarsV2');
  assert.deepEqual(cat?.info.triggerWords, ['cat ears']);
  assert.equal(cat?.info.baseModel, 'sd1');
  assert.deepEqual(
    lib.failures().map((f) => [f.name, f.error.code]),
    [['broken', 'LORA_INVALID']],
  );
  await rejectsCode(Promise.resolve().then(() => lib.resolve('broken')), 'LORA_INVALID', /could not be read: .*broken\.safetensors/);
  lib.close();
});

test('get: exact stem, then case-insensitive stem, then alias; unknown names get suggestions', async () => {
  const dir = tempDir();
  populate(dir);
  const lib = await LoraLibrary.open(dir);
  assert.equal(lib.get('idol')?.name, 'idol', 'a stem wins over the alias idol2 also carries');
  assert.equal(lib.get('IDOL')?.name, 'idol');
  assert.equal(lib.get('catEarsV2')?.name, 'catears');
  assert.equal(lib.get('catearsv2')?.name, 'catears');
  assert.equal(lib.get('nothing'), undefined);
  const e = throwsCode(() => lib.resolve('catear'), 'UNKNOWN_LORA', /unknown LoRA 'catear'; did you mean catears/);
  assert.deepEqual((e.details?.suggestions as string[])[0], 'catears');
  throwsCode(() => lib.resolve('zzzzzz'), 'UNKNOWN_LORA', /\(4 LoRAs in /);
  assert.deepEqual(lib.closest('stag'), ['stage']);
  for (const bad of ['../catears', 'sub/idol', '..\\x', '..']) throwsCode(() => lib.get(bad), 'INVALID_ARGUMENT', /path separators|empty/);
  lib.close();
});

test('load: parsed once and cached by bytes; concurrent loads share one parse; LRU eviction', async () => {
  const dir = tempDir();
  populate(dir);
  const lib = await LoraLibrary.open(dir, { cacheBytes: 3000 });
  const [a, b] = await Promise.all([lib.load('catears', T), lib.load('catEarsV2', T)]);
  assert.equal(a, b);
  assert.equal(a.name, 'catears');
  assert.equal(a.layers.length, 1);
  assert.equal(await lib.load('catears', T), a);
  const size = a.bytes; // 4·(4·8 + 8·4) floats = 256 bytes
  assert.equal(lib.cacheStats().bytes, size);
  // Targets are keyed by content: an equal list shares the parse, another model's list parses again.
  assert.equal(await lib.load('catears', T.map((t) => ({ ...t }))), a);
  const other = [...T, { part: 'unet' as const, module: 'extra.proj', kind: 'linear' as const, inFeatures: 2, outFeatures: 2 }];
  assert.notEqual(await lib.load('catears', other), a);
  const budget = Math.floor(3000 / size);
  for (const n of ['idol', 'idol2', 'stage']) await lib.load(n, T);
  assert.ok(lib.cacheStats().entries <= budget);
  assert.ok(lib.cacheStats().bytes <= 3000);
  await rejectsCode(lib.load('broken', T), 'LORA_INVALID');
  lib.close();
});

test('hashes: computed lazily, cached, recomputed after the file changes', async () => {
  const dir = tempDir();
  const p = join(dir, 'idol.safetensors');
  const bytes = loraBytes(2);
  writeFileSync(p, bytes);
  const lib = await LoraLibrary.open(dir);
  const h1 = lib.hashes('idol');
  assert.equal(lib.hashes('idol'), h1, 'one computation');
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  assert.equal((await h1).addnet, createHash('sha256').update(bytes.subarray(8 + n)).digest('hex'));
  writeFileSync(p, loraBytes(7, {}, 2));
  await lib.scan();
  const h2 = await lib.hashes('idol');
  assert.notEqual(h2.addnet, (await h1).addnet);
  lib.close();
});

/** Resolves with the first change for which `pred` holds (or rejects after a timeout). */
function nextChange(lib: LoraLibrary, pred: (c: LibraryChange) => boolean, ms = 5000): Promise<LibraryChange> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error('no library change'));
    }, ms);
    const off = lib.onChange((c) => {
      if (!pred(c)) return;
      clearTimeout(timer);
      off();
      resolve(c);
    });
  });
}

test('watch: added, changed, removed; a half-written file is reported, then picked up when complete', async () => {
  const dir = tempDir();
  writeFileSync(join(dir, 'idol.safetensors'), loraBytes(2));
  const lib = await LoraLibrary.open(dir, { debounceMs: 30 });
  lib.watch();

  let change = nextChange(lib, (c) => c.added.includes('stage'));
  writeFileSync(join(dir, 'stage.safetensors'), loraBytes(3));
  assert.deepEqual((await change).added, ['stage']);
  const before = await lib.load('stage', T);

  change = nextChange(lib, (c) => c.changed.includes('stage'));
  writeFileSync(join(dir, 'stage.safetensors'), loraBytes(9, {}, 2));
  await change;
  const after1 = await lib.load('stage', T);
  assert.notEqual(after1, before, 'a changed file is parsed again');
  assert.equal(after1.layers[0].rank, 2);

  const full = loraBytes(4, { ss_output_name: 'costume' });
  change = nextChange(lib, (c) => c.failed.some((f) => f.name === 'costume'));
  writeFileSync(join(dir, 'costume.safetensors'), full.subarray(0, full.byteLength - 64));
  const failed = await change;
  assert.match(failed.failed.find((f) => f.name === 'costume')?.error.message ?? '', /truncated\?/);
  assert.equal(lib.get('costume'), undefined);
  change = nextChange(lib, (c) => c.added.includes('costume'));
  writeFileSync(join(dir, 'costume.safetensors'), full);
  await change;
  assert.equal(lib.get('costume')?.alias, 'costume');
  assert.deepEqual(lib.failures(), []);

  change = nextChange(lib, (c) => c.removed.includes('idol'));
  unlinkSync(join(dir, 'idol.safetensors'));
  await change;
  assert.equal(lib.get('idol'), undefined);
  throwsCode(() => lib.resolve('idol'), 'UNKNOWN_LORA');
  lib.close();
});

test('a missing folder is an empty library', async () => {
  const lib = await LoraLibrary.open(join(tempDir(), 'does-not-exist'));
  assert.deepEqual(lib.list(), []);
  lib.close();
});
