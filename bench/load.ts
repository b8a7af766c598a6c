/**
 * bench/load: the HTTP service under load, on loopback only, with a bounded number of requests.
 *
 *   node --import tsx bench/load.ts [--model DIR] [--size 64] [--steps 4] [--requests 32]
 *        [--concurrency 1,4,16] [--lora-sets "none;catears:0.6;catears:0.6,idol:0.8,stage:0.4"] [--threads 0]
 *
 * Without --model a tiny random-weight pipeline (src/synth, with its LoRAs) is generated in a temp folder.
 * Prints, in one run:
 *   - direct in-process renders (RenderHost.render, no queue, no HTTP) and the same request through the queue
 *     (no HTTP) and through POST /v1/images: median latency of each and the HTTP overhead;
 *   - for each concurrency: throughput (images/s) and p50/p99 latency of POST /v1/images, requests cycling
 *     through the LoRA sets (one set per request, so consecutive requests switch LoRAs).
 * One render worker serves all requests (as `loraserve serve` on one device), so throughput at concurrency
 * > 1 shows queueing, not parallel renders.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { LoraSpec, RenderRequest } from '../src/engine/request.js';
import { LocalQueue } from '../src/jobs/local-queue.js';
import { waitForJob } from '../src/jobs/queue.js';
import { RenderHost } from '../src/jobs/render-host.js';
import { LoraLibrary } from '../src/lora/index.js';
import { LibraryLoraProvider } from '../src/cli/serve-providers.js';
import { buildApp } from '../src/server/app.js';
import { serverConfig } from '../src/server/config.js';
import { synthesize } from '../src/synth/index.js';
import { smallRequest } from '../test/helpers/small-render.js';

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    size: { type: 'string', default: '64' },
    steps: { type: 'string', default: '4' },
    requests: { type: 'string', default: '32' },
    concurrency: { type: 'string', default: '1,4,16' },
    'lora-sets': { type: 'string', default: 'none;catears:0.6;catears:0.6,idol:0.8,stage:0.4;idol:1' },
    threads: { type: 'string', default: '0' },
  },
});
const size = Number(values.size);
const steps = Number(values.steps);
const requests = Math.min(1000, Math.max(1, Number(values.requests)));
const levels = values.concurrency!.split(',').map(Number).filter((n) => n > 0 && n <= 64);
const threads = Number(values.threads) || undefined;

/** "none;a:0.6;a:0.6,b:0.8" → [[], [a 0.6], [a 0.6, b 0.8]] */
function parseSets(s: string): LoraSpec[][] {
  return s.split(';').map((set) =>
    set.trim() === 'none' || set.trim() === ''
      ? []
      : set.split(',').map((item) => {
          const [name, w] = item.trim().split(':');
          return { name, weight: w === undefined ? 1 : Number(w) };
        }),
  );
}
const sets = parseSets(values['lora-sets']!);

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))];
}
const median = (xs: number[]) => pct([...xs].sort((a, b) => a - b), 50);
const ms = (v: number) => `${v.toFixed(1)} ms`;

const root = mkdtempSync(join(tmpdir(), 'loraserve-bench-load-'));
let modelDir = values.model;
let loraDir = modelDir ? join(modelDir, 'loras') : '';
if (!modelDir) {
  const r = await synthesize({ preset: 'tiny', outDir: join(root, 'tiny'), seed: 0, loras: 5 });
  modelDir = r.outDir;
  loraDir = join(r.outDir, 'loras');
}

const device = { kind: 'cpu' as const, threads };
const queue = new LocalQueue({ modelDir, loraDir, devices: [device], maxQueued: Math.max(64, ...levels) });
const library = await LoraLibrary.open(loraDir);
const { app } = await buildApp({
  queue,
  loras: new LibraryLoraProvider(library),
  config: serverConfig({ docs: false, previewEvery: 0, limits: { maxSteps: 1000 } }),
});
await app.listen({ host: '127.0.0.1', port: 0 });
const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;

try {
  await queue.ready();
  const model = (await queue.models())[0];
  console.log(`model ${model.name} [${model.hash}] on ${model.provider}; ${size}x${size}, ${steps} steps, euler; LoRA sets: ${values['lora-sets']}`);

  const body = (k: number) => ({ prompt: 'cute 1girl, cat ears, stage lights', negative_prompt: 'bad hands', sampler: 'euler', steps, width: size, height: size, seed: 1000 + k, loras: sets[k % sets.length] });
  const engineRequest = (k: number): RenderRequest =>
    smallRequest({ prompt: 'cute 1girl, cat ears, stage lights', negativePrompt: 'bad hands', steps, seed: 1000 + k, width: size, height: size, loras: sets[k % sets.length] });
  const httpOnce = async (k: number): Promise<number> => {
    const t0 = performance.now();
    const res = await fetch(`${base}/v1/images`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body(k)) });
    if (res.status !== 200) throw new Error(`HTTP ${res.status}: ${await res.text()}`);
    await res.arrayBuffer();
    return performance.now() - t0;
  };

  // 1. Overhead at concurrency 1: the same requests direct, through the queue, over HTTP. Warm-up runs first
  // everywhere (session warm-up, LoRA parsing).
  const host = await RenderHost.start(modelDir, device, undefined, { loraDir });
  const direct: number[] = [];
  const queued: number[] = [];
  const http: number[] = [];
  const rounds = Math.max(8, Math.min(requests, 32));
  // Direct renders run as a block on their own worker thread, which is then closed: two idle onnxruntime thread
  // pools spinning after their runs would slow each other down and blur the comparison.
  // Each set three times first, so the timed renders run as on a warmed server: hot sets on their merged UNets
  // (--lora-merge-after 2 builds on the third render).
  for (let k = 0; k < sets.length * 3; k++) await host.render(engineRequest(k));
  for (let k = 0; k < rounds; k++) {
    const t0 = performance.now();
    await host.render(engineRequest(k));
    direct.push(performance.now() - t0);
  }
  await host.close();
  await new Promise((r) => setTimeout(r, 500));
  for (let k = 0; k < sets.length * 3; k++) await httpOnce(k);
  // Queue and HTTP share the server's worker, so they are interleaved.
  for (let k = 0; k < rounds; k++) {
    const t0 = performance.now();
    const j = await queue.submit(engineRequest(k));
    await waitForJob(queue, j.id);
    queued.push(performance.now() - t0);
    http.push(await httpOnce(k));
  }
  console.log(`\nlatency at concurrency 1 (median of ${rounds}):`);
  console.log(`  direct RenderHost.render      ${ms(median(direct))}`);
  console.log(`  through the queue (no HTTP)   ${ms(median(queued))}   (+${ms(median(queued) - median(direct))})`);
  console.log(`  POST /v1/images (JSON/base64) ${ms(median(http))}   (HTTP overhead over the queue: ${ms(median(http) - median(queued))}; over direct: ${ms(median(http) - median(direct))})`);

  // 2. Throughput and latency by concurrency.
  console.log(`\nPOST /v1/images, ${requests} requests per level, LoRA set cycling per request:`);
  console.log('  concurrency   images/s     p50         p99         max');
  for (const c of levels) {
    const lat: number[] = [];
    let next = 0;
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: c }, async () => {
        for (let k = next++; k < requests; k = next++) lat.push(await httpOnce(k));
      }),
    );
    const wall = (performance.now() - t0) / 1000;
    lat.sort((a, b) => a - b);
    console.log(`  ${String(c).padStart(11)}   ${(requests / wall).toFixed(2).padStart(8)}   ${ms(pct(lat, 50)).padStart(10)}  ${ms(pct(lat, 99)).padStart(10)}  ${ms(lat.at(-1)!).padStart(10)}`);
  }
  const stats = await queue.stats();
  console.log(`\njobs: ${stats.totals.done} done, ${stats.totals.failed} failed, ${stats.totals.cancelled} cancelled`);
} finally {
  await app.close();
  await queue.close();
  library.close();
  rmSync(root, { recursive: true, force: true });
}
