import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { computeLoraHashes, loraHashesInfotext, loraHashesOfBytes } from '../../../src/lora/hashes.js';
import { closestNames, editDistance, validateLoraName } from '../../../src/lora/names.js';
import { f32, file, ramp, throwsCode } from './support.js';

const dir = mkdtempSync(join(tmpdir(), 'loraserve-hash-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

test('addnet hash = sha256 of the bytes after the header; metadata edits keep it, the full hash changes', async () => {
  // > 4 MiB so the stream delivers several chunks.
  const tensors = [{ name: 'w', dtype: 'F32' as const, shape: [1_200_000], data: f32(ramp(1_200_000)) }];
  const a = file(tensors, { ss_output_name: 'a' });
  const b = file(tensors, { ss_output_name: 'a renamed copy', ss_training_comment: 'edited' });
  const n = Number(new DataView(a.buffer).getBigUint64(0, true));
  const pa = join(dir, 'a.safetensors');
  const pb = join(dir, 'b.safetensors');
  writeFileSync(pa, a);
  writeFileSync(pb, b);
  const ha = await computeLoraHashes(pa);
  const hb = await computeLoraHashes(pb);
  assert.equal(ha.sha256, sha(a));
  assert.equal(ha.addnet, sha(a.subarray(8 + n)));
  assert.equal(ha.short, ha.addnet.slice(0, 12));
  assert.equal(hb.addnet, ha.addnet);
  assert.notEqual(hb.sha256, ha.sha256);
  assert.deepEqual(loraHashesOfBytes(a), ha);
});

test('hashing a file shorter than 8 bytes is LORA_INVALID', () => {
  throwsCode(() => loraHashesOfBytes(new Uint8Array(3)), 'LORA_INVALID', /truncated/);
});

// A1111 extensions-builtin/Lora/extra_networks_lora.py: `f"{alias.replace(':', '').replace(',', '')}: {shorthash}"`, joined by ", ".
test('Lora hashes infotext value, as A1111 writes it', () => {
  assert.equal(
    loraHashesInfotext([
      { name: 'catears', hash: 'a1b2c3d4e5f6' },
      { name: 'idol', hash: '0123456789ab' },
    ]),
    'catears: a1b2c3d4e5f6, idol: 0123456789ab',
  );
  assert.equal(loraHashesInfotext([{ name: 'odd:name, v2', hash: 'ffffffffffff' }]), 'oddname v2: ffffffffffff');
  assert.equal(loraHashesInfotext([{ name: 'nohash', hash: '' }]), '');
});

test('names: path separators and .. are refused; edit distance; suggestions', () => {
  for (const bad of ['../secret', 'a/b', 'a\\b', '..', '', '  ', 'x\0y']) throwsCode(() => validateLoraName(bad), 'INVALID_ARGUMENT');
  assert.equal(validateLoraName('cat ears v1.5'), 'cat ears v1.5');
  assert.equal(editDistance('kitten', 'sitting'), 3);
  assert.equal(editDistance('', 'abc'), 3);
  assert.equal(editDistance('catear', 'catears'), 1);
  assert.deepEqual(closestNames('catear', ['catears', 'idol', 'stage', 'Catears_v2']), ['catears', 'Catears_v2']);
  assert.deepEqual(closestNames('IDOL', ['idol', 'idols', 'stage']), ['idol', 'idols']);
  assert.deepEqual(closestNames('zzz', ['catears', 'idol']), []);
});
