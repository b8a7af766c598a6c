/**
 * bench/scale: the BullMQ scale-out path against the single-process server, on loopback only, bounded.
 *
 *   node --import tsx bench/scale.ts [--model DIR] [--size 64] [--steps 6] [--jobs 24] [--affinity-jobs 72]
 *        [--threads 1] [--repeat 9]
 *
 * Needs Debian's redis-server (a private one is started on a free loopback port and stopped at the end). Without
 * --model a tiny random-weight pipeline with five LoRAs is generated in a temp folder. All render workers run in
 * this process, each with its own render thread (as `serve --role worker` would run them on one machine, one per
 * device); `--threads` onnxruntime threads each, so two workers use two cores.
 *
 * Prints, in one run:
 *   1. throughput (images/s) of the single-process server (in-process queue, one worker) vs the BullMQ path with
 *      one and with two workers, `--jobs` jobs from as many closed-loop clients as workers + 1, cycling LoRA sets;
 *   2. over 6 LoRA sets, two cold workers whose LoRA caches hold about 3 of the 5 LoRAs (`--lora-cache-mb` as a
 *      real deployment bounds it; unbounded, every worker soon holds everything and routing cannot matter), with
 *      1 and 2 closed-loop clients, affinity routing on vs off: warm-LoRA hit rate (jobs whose set was already
 *      prepared on the worker that ran them) and throughput;
 *   3. the added latency of the Redis path over the in-process path for one small render (sequential, median).
 * Merged-weights UNets are off here (`--lora-merge-after off`): this measures queueing and LoRA-cache affinity,
 * and a hot set's build mid-run (~0.5 s on tiny) would outweigh the few-second runs; bench/lora measures them.
 */
import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import type { LoraSpec, RenderRequest } from '../src/engine/request.js';
import { BullmqQueue } from '../src/jobs/bullmq-queue.js';
import { BullmqRenderWorker } from '../src/jobs/bullmq-worker.js';
import { LocalQueue } from '../src/jobs/local-queue.js';
import { type JobQueue, waitForJob } from '../src/jobs/queue.js';
import { RenderHost } from '../src/jobs/render-host.js';
import { synthesize } from '../src/synth/index.js';
import { startRedis } from '../test/helpers/redis.js';
import { smallRequest } from '../test/helpers/small-render.js';

const NO_MERGE = { after: 'off' } as const;

const { values } = parseArgs({
  options: {
    model: { type: 'string' },
    size: { type: 'string', default: '64' },
    steps: { type: 'string', default: '6' },
    jobs: { type: 'string', default: '24' },
    'affinity-jobs': { type: 'string', default: '72' },
    threads: { type: 'string', default: '1' },
    repeat: { type: 'string', default: '9' },
  },
});
const size = Number(values.size);
const steps = Number(values.steps);
const jobs = Math.min(500, Math.max(2, Number(values.jobs)));
const affinityJobs = Math.min(500, Math.max(6, Number(values['affinity-jobs'])));
const threads = Number(values.threads) || undefined;
const repeat = Math.min(50, Math.max(1, Number(values.repeat)));

const root = mkdtempSync(join(tmpdir(), 'loraserve-bench-scale-'));
let modelDir = values.model;
let loraDir = modelDir ? join(modelDir, 'loras') : '';
if (!modelDir) {
  const r = await synthesize({ preset: 'tiny', outDir: join(root, 'tiny'), seed: 0, loras: 5 });
  modelDir = r.outDir;
  loraDir = join(r.outDir, 'loras');
}
const redis = await startRedis();
const device = { kind: 'cpu' as const, threads };

const SETS: LoraSpec[][] = [
  [{ name: 'catears', weight: 0.6 }],
  [{ name: 'idol', weight: 0.8 }],
  [{ name: 'stage', weight: 0.4 }],
  [{ name: 'costume', weight: 0.7 }],
  [{ name: 'lights', weight: 0.5 }],
  [
    { name: 'catears', weight: 0.6 },
    { name: 'idol', weight: 0.8 },
    { name: 'stage', weight: 0.4 },
  ],
];

/** Job k of a run: its own seed, the k-th LoRA set (cycling); the rest as the tests' small render. */
function request(k: number, sets: LoraSpec[][]): RenderRequest {
  return smallRequest({ prompt: 'a cat with ears, masterpiece', negativePrompt: 'lowres', steps, seed: 1000 + k, width: size, height: size, loras: sets[k % sets.length] });
}

interface Cluster {
  queue: JobQueue;
  close(): Promise<void>;
}

let clusterNo = 0;
async function bullmqCluster(workers: number, affinity = true, loraCacheBytes?: number): Promise<Cluster> {
  const queueName = `bench-${++clusterNo}`;
  const ws = await Promise.all(
    Array.from({ length: workers }, async (_, i) => {
      const host = await RenderHost.start(modelDir!, device, undefined, { loraDir, loraCacheBytes, loraMerge: NO_MERGE });
      return BullmqRenderWorker.start({ redisUrl: redis.url, host, device: 'cpu', id: `w${i}`, queueName });
    }),
  );
  const api = new BullmqQueue({ redisUrl: redis.url, queueName, maxQueued: 1000, affinity });
  await api.ready();
  return {
    queue: api,
    async close() {
      await api.close(0);
      await Promise.all(ws.map((w) => w.close(0)));
    },
  };
}

async function localCluster(): Promise<Cluster> {
  const queue = new LocalQueue({ modelDir, loraDir, devices: [device], maxQueued: 1000, loraMerge: NO_MERGE });
  await queue.ready();
  return { queue, close: () => queue.close(0) };
}

/** `n` jobs from `clients` closed-loop clients; images/s over the whole run. */
async function throughput(queue: JobQueue, n: number, clients: number, sets: LoraSpec[][]): Promise<{ perSecond: number; ms: number }> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      for (let k = next++; k < n; k = next++) {
        const r = await waitForJob(queue, (await queue.submit(request(k, sets))).id);
        if (r.state !== 'done') throw new Error(`job ${k} ended ${r.state}: ${r.error?.message}`);
      }
    }),
  );
  const ms = performance.now() - t0;
  return { perSecond: (n * 1000) / ms, ms };
}

async function warmUp(queue: JobQueue): Promise<void> {
  // Every worker's first render pays session warm-up; not what is compared here.
  await Promise.all([0, 1, 2].map(async (k) => waitForJob(queue, (await queue.submit(request(k, [[]]))).id)));
}

const fmt = (v: number, d = 2) => v.toFixed(d);
try {
  console.log(`bench/scale — ${size}×${size}, ${steps} steps, euler, ${threads ?? 'all'} onnxruntime thread(s) per worker, redis ${redis.url}`);

  // 1. Throughput: single process vs BullMQ with 1 and 2 workers.
  console.log(`\n1. throughput, ${jobs} jobs cycling ${SETS.length} LoRA sets`);
  const rows: Array<[string, number]> = [];
  for (const [label, make, workers] of [
    ['single process (in-process queue, 1 worker)', localCluster, 1],
    ['BullMQ, 1 worker', () => bullmqCluster(1), 1],
    ['BullMQ, 2 workers', () => bullmqCluster(2), 2],
  ] as const) {
    const c = await make();
    try {
      await warmUp(c.queue);
      const r = await throughput(c.queue, jobs, workers + 1, SETS);
      rows.push([label, r.perSecond]);
      console.log(`   ${label.padEnd(46)} ${fmt(r.perSecond)} images/s (${fmt(r.ms / 1000, 1)} s)`);
    } finally {
      await c.close();
    }
  }
  const single = rows[0][1];
  console.log(`   ratios to single process: BullMQ 1 worker ${fmt(rows[1][1] / single)}×, 2 workers ${fmt(rows[2][1] / single)}×`);

  // 2. Affinity on vs off, cold workers, 6 LoRA sets, LoRA caches that hold about 3 of the 5 LoRAs.
  const loraBytes = readdirSync(loraDir).filter((f) => f.endsWith('.safetensors')).map((f) => statSync(join(loraDir, f)).size);
  const cacheBytes = Math.round((loraBytes.reduce((a, b) => a + b, 0) * 3) / loraBytes.length);
  console.log(`\n2. LoRA-affinity routing, 2 cold workers, ${affinityJobs} jobs over ${SETS.length} LoRA sets, LoRA cache ${(cacheBytes / 1024).toFixed(0)} KiB per worker (~3 of the 5 LoRAs)`);
  for (const clients of [1, 2]) {
    const aff: Record<string, { hit: number; perSecond: number }> = {};
    for (const on of [false, true]) {
      const c = await bullmqCluster(2, on, cacheBytes);
      try {
        const r = await throughput(c.queue, affinityJobs, clients, SETS);
        const a = (await c.queue.stats()).affinity!;
        aff[on ? 'on' : 'off'] = { hit: a.warmHits / Math.max(1, a.warmRuns), perSecond: r.perSecond };
        console.log(
          `   ${clients} client(s), affinity ${on ? 'on ' : 'off'}: warm-LoRA hit rate ${fmt((100 * a.warmHits) / Math.max(1, a.warmRuns), 1)} % (${a.warmHits}/${a.warmRuns}), sent to a warm worker ${a.routed}, shared ${a.shared}; ${fmt(r.perSecond)} images/s`,
        );
      } finally {
        await c.close();
      }
    }
    console.log(`   ${clients} client(s), on vs off: hit rate ${fmt(aff.on.hit * 100, 1)} % vs ${fmt(aff.off.hit * 100, 1)} %, throughput ${fmt(aff.on.perSecond / aff.off.perSecond)}×`);
  }

  // 3. Latency of one small render: in-process vs Redis path.
  console.log(`\n3. one render at a time, ${repeat} renders (median), no LoRA`);
  const lat: number[] = [];
  for (const make of [localCluster, () => bullmqCluster(1)]) {
    const c = await make();
    try {
      await warmUp(c.queue);
      const times: number[] = [];
      for (let i = 0; i < repeat; i++) {
        const t0 = performance.now();
        await waitForJob(c.queue, (await c.queue.submit(request(i, [[]]))).id);
        times.push(performance.now() - t0);
      }
      times.sort((a, b) => a - b);
      lat.push(times[Math.floor(times.length / 2)]);
    } finally {
      await c.close();
    }
  }
  console.log(`   in-process ${fmt(lat[0], 1)} ms, Redis path ${fmt(lat[1], 1)} ms: +${fmt(lat[1] - lat[0], 1)} ms (${fmt((100 * (lat[1] - lat[0])) / lat[0], 1)} %)`);
} finally {
  await redis.stop();
  rmSync(root, { recursive: true, force: true });
}
