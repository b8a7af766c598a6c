/**
 * `loraserve batch` end to end on the generated tiny model: the 12-image sweep gives 12 PNGs, a
 * manifest and contact sheets; killed mid-way (SIGKILL, then Ctrl-C) it leaves only whole PNGs and a rerun
 * finishes without rendering anything twice; the same batch through `--server` gives byte-identical files.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { batchCommand } from '../../../src/cli/batch.js';
import { decodePng, readPngText } from '../../../src/image/png.js';
import { tinyModelDir } from '../../helpers/tiny-model.js';
import { tinyServer } from '../server/support.js';

const SWEEPS = ['--sweep', 'lora.catears=0,0.4,0.8', '--sweep', 'lora.idol=0.5,1', '--sweep', 'seed=1,2'];
const root = mkdtempSync(join(tmpdir(), 'loraserve-batch-'));
const input = join(root, 'prompts.jsonl');
let model: string;

before(async () => {
  model = await tinyModelDir();
  writeFileSync(input, JSON.stringify({ prompt: 'cute 1girl, cat ears', negative_prompt: 'bad hands', width: 64, height: 64, steps: 3 }) + '\n');
});
after(() => rmSync(root, { recursive: true, force: true }));

interface Run {
  child: ChildProcess;
  exited: Promise<number | null>;
  stderr: () => string;
}

function startBatch(out: string, extra: string[] = []): Run {
  const child = spawn(process.execPath, ['bin/loraserve.js', 'batch', input, '--model', model, '--lora-dir', join(model, 'loras'), '--out', out, ...SWEEPS, ...extra], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  return { child, exited: new Promise((resolve) => child.on('exit', (code) => resolve(code))), stderr: () => stderr };
}

type Done = { status: string; file: string; sha256: string; seed: number };

function doneLines(out: string): Done[] {
  const path = join(out, 'manifest.jsonl');
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.includes('"status":"done"') && l.endsWith('}'))
    .map((l) => JSON.parse(l) as Done);
}

/** Waits until the manifest has at least n done lines, then sends the signal. */
async function killAfter(run: Run, out: string, n: number, signal: NodeJS.Signals): Promise<number | null> {
  for (;;) {
    if (doneLines(out).length >= n) break;
    if (run.child.exitCode !== null) throw new Error(`batch ended before ${n} images: ${run.stderr()}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  run.child.kill(signal);
  return run.exited;
}

const pngsIn = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.png')).sort();

/** Every PNG on disk is whole: its chunks and CRCs check out and its pixels decode. */
async function assertWholePngs(dir: string): Promise<void> {
  for (const f of pngsIn(dir)) {
    const buf = readFileSync(join(dir, f));
    assert.doesNotThrow(() => readPngText(buf), f);
    await decodePng(buf);
  }
}

const out = join(root, 'in-process');

test('12-image sweep: killed twice mid-way, rerun finishes it without rendering any image twice', async () => {
  // 1. SIGKILL after a few images: no cleanup runs at all.
  const first = startBatch(out);
  assert.equal(await killAfter(first, out, 3, 'SIGKILL'), null);
  await assertWholePngs(out);
  const afterKill = doneLines(out);
  assert.ok(afterKill.length < 12, 'killed before the end');
  const mtimes = new Map(afterKill.map((d) => [d.file, statSync(join(out, d.file)).mtimeMs]));

  // 2. Ctrl-C: the render in progress is cancelled, exit 130, and the summary says what is left.
  const second = startBatch(out);
  assert.equal(await killAfter(second, out, afterKill.length + 2, 'SIGINT'), 130);
  assert.match(second.stderr(), new RegExp(`${afterKill.length} already done`));
  assert.match(second.stderr(), /not run \(interrupted\)/);
  await assertWholePngs(out);

  // 3. Finish.
  const third = startBatch(out);
  assert.equal(await third.exited, 0, third.stderr());
  assert.match(third.stderr(), /12 item\(s\): \d+ rendered, \d+ already done, 0 failed; 2 contact sheet\(s\)/);

  const done = doneLines(out);
  const files = done.map((d) => d.file);
  assert.equal(new Set(files).size, 12, 'twelve images');
  assert.equal(files.length, 12, 'each rendered and recorded once');
  for (const [f, t] of mtimes) assert.equal(statSync(join(out, f)).mtimeMs, t, `${f} was not rewritten`);
  const pngs = pngsIn(out);
  assert.deepEqual(pngs.filter((f) => !f.startsWith('sheet-')), [...files].sort());
  assert.ok(pngs.includes('0001-lora.catears=0.4-lora.idol=1-seed=2.png'));
  assert.deepEqual(pngs.filter((f) => f.startsWith('sheet-')), ['sheet-0001-seed=1.png', 'sheet-0001-seed=2.png']);
  assert.deepEqual(readdirSync(out).filter((f) => f.endsWith('.tmp')), [], 'stale temporary files removed');
  await assertWholePngs(out);

  // Images carry their infotext; sheets carry none and hold a 3 × 2 grid.
  const one = readPngText(readFileSync(join(out, '0001-lora.catears=0.4-lora.idol=1-seed=2.png')));
  assert.match(one.parameters, /Seed: 2,/);
  assert.match(one.parameters, /<lora:catears:0.4>|Lora hashes: "[^"]*catears/);
  assert.deepEqual(readPngText(readFileSync(join(out, 'sheet-0001-seed=1.png'))), {});
  const sheet = await decodePng(readFileSync(join(out, 'sheet-0001-seed=1.png')));
  assert.ok(sheet.width > 3 * 64 && sheet.height > 2 * 64);
  for (const d of done) assert.equal(d.seed, /seed=2/.test(d.file) ? 2 : 1);
});

test('--server renders byte-identical files for the same requests', async (t) => {
  if (!existsSync(join(out, 'manifest.jsonl'))) return t.skip('needs the in-process run');
  const s = await tinyServer({ previewEvery: 0 });
  try {
    await s.app.listen({ host: '127.0.0.1', port: 0 });
    const base = `http://127.0.0.1:${(s.app.server.address() as AddressInfo).port}`;
    const viaServer = join(root, 'server');
    const code = await batchCommand([input, '--server', base, '--concurrency', '2', '--out', viaServer, '--quiet', ...SWEEPS]);
    assert.equal(code, 0);
    const a = pngsIn(out);
    assert.deepEqual(pngsIn(viaServer), a);
    for (const f of a) assert.ok(readFileSync(join(out, f)).equals(readFileSync(join(viaServer, f))), `${f} differs`);
  } finally {
    await s.close();
  }
});

test('bad lines are reported with their numbers and the rest still renders; exit 2', async () => {
  const file = join(root, 'mixed.txt');
  writeFileSync(file, ['--prompt "cat" --steps 2 --width 64 --height 64 --seed 3', '--prompt dog --stpes 2', '--prompt bird --steps 2 --width 64 --height 64 --seed 4 --sampler_name nope'].join('\n'));
  const dir = join(root, 'mixed');
  const run = spawn(process.execPath, ['bin/loraserve.js', 'batch', file, '--model', model, '--out', dir], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  run.stderr.on('data', (d) => (stderr += d));
  const code = await new Promise((resolve) => run.on('exit', resolve));
  assert.equal(code, 2, stderr);
  assert.match(stderr, /mixed\.txt:2: unknown commandline option: --stpes/);
  assert.match(stderr, /FAILED 0003 \(line 3\): .*nope/);
  assert.deepEqual(pngsIn(dir), ['0001.png']);
  const failed = readFileSync(join(dir, 'manifest.jsonl'), 'utf8').split('\n').filter((l) => l.includes('"failed"'));
  assert.equal(failed.length, 1);
});
