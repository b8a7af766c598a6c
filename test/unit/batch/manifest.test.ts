/** The batch manifest: torn last lines, seeds picked once per line, and what counts as finished. */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { parseInput } from '../../../src/cli/batch-input.js';
import { Manifest, MANIFEST_NAME, readManifest, sha256Hex } from '../../../src/cli/batch-manifest.js';
import { buildPlan } from '../../../src/cli/batch-plan.js';
import { parseSweep } from '../../../src/cli/batch-sweep.js';

const dir = mkdtempSync(join(tmpdir(), 'loraserve-manifest-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function planOf(text: string, sweeps: string[] = []) {
  return buildPlan(parseInput(text, 'jsonl'), sweeps.map(parseSweep), {});
}

test('a torn last line is ignored on read and cut off before the next append', () => {
  const d = mkdtempSync(join(dir, 'torn-'));
  const path = join(d, MANIFEST_NAME);
  writeFileSync(path, '{"status":"seeded","seeds":{"0001":5},"at":"x"}\n{"status":"done","key":"0001","fi');
  const read = readManifest(path);
  assert.equal(read.records.length, 1);
  assert.equal(read.tornTail, true);
  const m = Manifest.read(d);
  assert.equal(m.seedFor('0001'), 5);
  assert.equal(m.badLines, 0);
  m.append({ status: 'seeded', seeds: { '0002': 6 }, at: 'y' });
  m.close();
  const lines = readFileSync(path, 'utf8').split('\n');
  assert.deepEqual(lines.map((l) => (l ? JSON.parse(l).status : '')), ['seeded', 'seeded', '']);
});

test('seed -1: one seed per line, shared by its sweep, recorded and reused on resume', () => {
  const d = mkdtempSync(join(dir, 'seeds-'));
  const text = '{"prompt":"a"}\n{"prompt":"b","seed":3}\n';
  const plan = planOf(text, ['cfg_scale=5,6']);
  const m = Manifest.read(d);
  let n = 100;
  const picked = m.resolveSeeds(plan.items, () => n++);
  assert.deepEqual(picked, { '0001': 100 });
  assert.deepEqual(plan.items.map((i) => i.body.seed), [100, 100, 3, 3]);
  m.append({ status: 'seeded', seeds: picked, at: 'now' });
  m.close();
  const again = planOf(text, ['cfg_scale=5,6']);
  const m2 = Manifest.read(d);
  assert.deepEqual(m2.resolveSeeds(again.items, () => 999), {});
  assert.deepEqual(again.items.map((i) => i.body.seed), [100, 100, 3, 3]);
});

test('finished = every PNG on disk with the recorded sha256 and the same request', () => {
  const d = mkdtempSync(join(dir, 'done-'));
  const [item] = planOf('{"prompt":"a","seed":1}\n').items;
  const png = Buffer.from('not really a png');
  const m = Manifest.read(d);
  assert.equal(m.isFinished(item, d), false, 'nothing recorded');
  writeFileSync(join(d, item.files[0]), png);
  assert.equal(m.isFinished(item, d), false, 'file without a manifest line');
  m.append({ status: 'done', key: item.key, line: 1, image: 0, file: item.files[0], sha256: sha256Hex(png), bytes: png.length, seed: 1, request: { ...item.body }, at: 'now' });
  m.close();
  assert.equal(Manifest.read(d).isFinished(item, d), true);
  const changed = planOf('{"prompt":"a","seed":1,"steps":5}\n').items[0];
  assert.equal(Manifest.read(d).isFinished(changed, d), false, 'a different request renders again');
  appendFileSync(join(d, item.files[0]), 'x');
  assert.equal(Manifest.read(d).isFinished(item, d), false, 'a changed file renders again');
  rmSync(join(d, item.files[0]));
  assert.equal(Manifest.read(d).isFinished(item, d), false, 'a missing file renders again');
});
