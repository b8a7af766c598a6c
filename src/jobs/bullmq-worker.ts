/**
 * The render side of the BullMQ queue: a BullMQ `Worker` (concurrency 1) in front of one RenderHost (one render
 * thread, one device). Several may run in one process (one per device) and on many machines.
 *
 * - Step events go out as `job.updateProgress()` (BullMQ's event stream carries them to every API process).
 * - Cancel reaches the running job through a Redis pub/sub message naming it; a flag key covers the moment
 *   between BullMQ handing us the job and our subscription seeing it. The abort goes through the RenderHost's
 *   AbortSignal, which the render thread reads between steps.
 * - A process that dies mid-job stops renewing BullMQ's lock; another worker's stalled-job check moves the job
 *   back to waiting (up to `maxStalledCount` times, then BullMQ fails it) — seeds are in the request, so the
 *   rerun gives the same pixels.
 * - The worker advertises itself (device, model, state, crashes, warm LoRA sets, its own queue) in a registry
 *   hash with an expiry it renews.
 * - LoRA-affinity routing (bullmq-affinity.ts): besides the shared queue the worker consumes its own queue, where
 *   an API sends a job whose LoRA set this worker holds warm. One render slot between the two: while a routed
 *   job runs, the shared consumer is paused, and a shared job it had already fetched goes straight back.
 */
import { Queue, WaitingError, Worker, type Job } from 'bullmq';
import { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { LoraserveError, toLoraserveError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { silentLogger } from '../core/logger.js';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { writeFilesAtomic } from '../core/fs-atomic.js';
import type { RenderProgress, RenderResult } from '../engine/request.js';
import { loraSetKey, loraSetNames, moveWorkerQueueJobs, WarmSets } from './bullmq-affinity.js';
import {
  DEFAULT_PREFIX,
  DEFAULT_QUEUE_NAME,
  decodeRequest,
  redisOptionsFromUrl,
  wireKeys,
  workerQueueName,
  type WireImage,
  type WireJobData,
  type WireKeys,
  type WireOutcome,
  type WireProgress,
  type WireWorkerEntry,
} from './bullmq-wire.js';
import type { FileSync } from './file-sync.js';
import type { RenderHostLike } from './local-queue.js';
import type { JobProgress, WorkerState, WorkerStats } from './queue.js';

export interface BullmqRenderWorkerOptions {
  redisUrl: string;
  /** A started render host; the worker owns it from now on and closes it. */
  host: RenderHostLike;
  /** Device label shown in stats, e.g. `cpu` or `cuda:0`. */
  device: string;
  /** Unique per worker; default `<device>@<random>`. */
  id?: string;
  queueName?: string;
  prefix?: string;
  /** How long result PNGs stay readable in Redis; default 15 minutes. */
  resultTtlMs?: number;
  /**
   * Write result PNGs here (`<jobId>/<n>.png`, atomically) instead of into Redis; Redis then holds only their
   * paths. A folder the API processes see too (shared disk); the size limit below does not apply to it.
   */
  resultsDir?: string;
  /** Largest result (sum of PNG bytes) kept in Redis; a larger one fails with PAYLOAD_TOO_LARGE. Default 64 MiB. */
  maxResultBytes?: number;
  /** Times a job may be found stalled (its worker died) and rerun before BullMQ fails it; default 2. */
  maxStalledCount?: number;
  /** BullMQ lock duration; a dead worker's job is seen as stalled after about this long. Default 30 s. */
  lockDurationMs?: number;
  /** How often the stalled-job check runs; default 30 s. */
  stalledIntervalMs?: number;
  /** Registry heartbeat period; the entry expires after three missed beats (at least 10 s). Default 5 s. */
  heartbeatMs?: number;
  /**
   * The worker's file cache, synced with the API (workers without a shared LoRA folder): a job's files are
   * fetched and verified by sha256 before its render, and pinned while it runs.
   */
  files?: FileSync;
  /** LoRA sets advertised as warm (the last ones rendered); default 8. */
  warmSets?: number;
  logger?: Logger;
}

interface Running {
  id: string;
  abort(reason: 'cancel' | 'timeout' | 'shutdown'): void;
}

const MINUTE = 60_000;

export class BullmqRenderWorker {
  readonly id: string;
  readonly device: string;
  private readonly opts: BullmqRenderWorkerOptions;
  private readonly keys: WireKeys;
  private readonly logger: Logger;
  private readonly redis: Redis;
  private readonly sub: Redis;
  /** Consumers of the shared queue and of this worker's own (affinity) queue. */
  private readonly worker: Worker<WireJobData, WireOutcome>;
  private readonly own: Worker<WireJobData, WireOutcome>;
  readonly ownQueueName: string;
  private readonly queues: { shared: Queue<WireJobData, WireOutcome>; own: Queue<WireJobData, WireOutcome> };
  private readonly warm: WarmSets;
  private readonly heartbeat: NodeJS.Timeout;
  private state: WorkerState = 'idle';
  private running: Running | undefined;
  private runningDone: Promise<unknown> | undefined;
  private crashes = 0;
  /** Jobs this worker ended, by final state (a job handed back on shutdown is not one). */
  private readonly ended = { done: 0, failed: 0, cancelled: 0 };
  private closing: Promise<void> | undefined;
  /** Set by close({ handBack }): a job stopped by the shutdown goes back to waiting instead of ending. */
  private handBack = false;

  private constructor(opts: BullmqRenderWorkerOptions) {
    this.opts = opts;
    this.device = opts.device;
    this.id = opts.id ?? `${opts.device}@${randomUUID().slice(0, 8)}`;
    this.logger = opts.logger ?? silentLogger;
    const queueName = opts.queueName ?? DEFAULT_QUEUE_NAME;
    const prefix = opts.prefix ?? DEFAULT_PREFIX;
    this.keys = wireKeys(prefix, queueName);
    const connection = redisOptionsFromUrl(opts.redisUrl);
    this.redis = new Redis({ ...connection, maxRetriesPerRequest: null });
    this.sub = new Redis({ ...connection, maxRetriesPerRequest: null });
    this.sub.on('message', (_channel: string, jobId: string) => {
      if (this.running?.id === jobId) this.running.abort('cancel');
    });
    for (const c of [this.redis, this.sub]) c.on('error', (e: Error) => this.logger.warn({ worker: this.id, err: e.message }, 'redis connection error'));
    this.ownQueueName = workerQueueName(queueName, this.id);
    this.warm = new WarmSets(opts.warmSets ?? 8);
    const workerOpts = {
      connection: { ...connection, maxRetriesPerRequest: null },
      prefix,
      name: this.id,
      concurrency: 1,
      autorun: false,
      maxStalledCount: opts.maxStalledCount ?? 2,
      lockDuration: opts.lockDurationMs ?? 30_000,
      stalledInterval: opts.stalledIntervalMs ?? 30_000,
    };
    this.worker = new Worker<WireJobData, WireOutcome>(queueName, (job, token) => this.take(job, token, false), workerOpts);
    this.own = new Worker<WireJobData, WireOutcome>(this.ownQueueName, (job, token) => this.take(job, token, true), workerOpts);
    this.queues = {
      shared: new Queue<WireJobData, WireOutcome>(queueName, { connection: { ...connection }, prefix }),
      own: new Queue<WireJobData, WireOutcome>(this.ownQueueName, { connection: { ...connection }, prefix }),
    };
    for (const w of [this.worker, this.own]) w.on('error', (e) => this.logger.warn({ worker: this.id, err: e.message }, 'bullmq worker error'));
    for (const q of Object.values(this.queues)) q.on('error', (e) => this.logger.warn({ worker: this.id, err: e.message }, 'bullmq queue error'));
    this.heartbeat = setInterval(() => void this.advertise(), opts.heartbeatMs ?? 5000);
    this.heartbeat.unref();
  }

  /** Connects, subscribes to cancels, advertises itself and starts taking jobs. */
  static async start(opts: BullmqRenderWorkerOptions): Promise<BullmqRenderWorker> {
    const w = new BullmqRenderWorker(opts);
    await w.sub.subscribe(w.keys.cancelChannel);
    await Promise.all([w.worker.waitUntilReady(), w.own.waitUntilReady()]);
    await w.redis.sadd(w.keys.workerQueues, w.ownQueueName);
    await w.advertise();
    for (const consumer of [w.worker, w.own]) void consumer.run().catch((e: unknown) => w.logger.error({ worker: w.id, err: String(e) }, 'bullmq worker stopped'));
    return w;
  }

  /**
   * The recently rendered LoRA sets whose every LoRA the render thread still holds parsed and prepared (as of its
   * last result): what it can start without a preparation. A host that reports no cache keeps the recent list.
   */
  private warmNow(): string[] {
    const cached = this.opts.host.loraCache?.cached;
    if (!cached) return this.warm.list();
    const have = new Set(cached);
    return this.warm.list().filter((set) => loraSetNames(set).every((n) => have.has(n)));
  }

  /** This worker's registry view and job counts (the worker role's GET /health and GET /metrics). */
  stats(): WorkerStats & { jobs: { done: number; failed: number; cancelled: number } } {
    const { expiresAt: _expiresAt, queue: _queue, ...view } = this.entry();
    return { ...view, jobs: { ...this.ended } };
  }

  private entry(): WireWorkerEntry {
    let model;
    try {
      model = this.opts.host.model;
    } catch {
      model = undefined;
    }
    // Three missed beats, and never under 10 s: a busy machine may delay a timer by seconds, and a worker wrongly
    // seen as gone shrinks the queue's admitted capacity (submit would refuse with QUEUE_FULL).
    const beat = this.opts.heartbeatMs ?? 5000;
    return {
      id: this.id,
      device: this.device,
      state: this.state,
      jobId: this.running?.id,
      model,
      crashes: this.crashes,
      loraCache: this.opts.host.loraCache,
      warmSets: this.warmNow(),
      queue: this.ownQueueName,
      expiresAt: Date.now() + Math.max(3 * beat, 10_000),
    };
  }

  private async advertise(): Promise<void> {
    try {
      await this.redis.hset(this.keys.workers, this.id, JSON.stringify(this.entry()));
      await this.redis.publish(this.keys.workersChannel, this.id);
    } catch (e) {
      this.logger.warn({ worker: this.id, err: String(e) }, 'could not advertise worker');
    }
  }

  /**
   * The one render slot both consumers share. A shared job fetched while a routed one renders goes back to the
   * shared queue's tail at once (another worker takes it); a routed job waits for the slot — it was sent here
   * because this worker looked idle, so the wait is the rare race of both arriving together.
   */
  private async take(job: Job<WireJobData, WireOutcome>, token: string | undefined, routed: boolean): Promise<WireOutcome> {
    if (this.running && !routed) {
      await job.moveToWait(token);
      throw new WaitingError();
    }
    if (routed) {
      void this.redis.del(this.keys.claim(this.id)).catch(() => undefined);
      void this.worker.pause(true).catch(() => undefined);
    }
    try {
      while (this.running) await this.runningDone;
      return await this.process(job, token, routed);
    } finally {
      if (routed && !this.closing) void this.worker.resume().catch(() => undefined);
    }
  }

  private async process(job: Job<WireJobData, WireOutcome>, token: string | undefined, routed: boolean): Promise<WireOutcome> {
    const id = job.id!;
    const data = job.data;
    const startedAt = Date.now();
    const controller = new AbortController();
    let reason: 'cancel' | 'timeout' | 'shutdown' | undefined;
    this.running = {
      id,
      abort: (r) => {
        reason ??= r;
        controller.abort();
      },
    };
    this.state = 'busy';
    let finished!: () => void;
    this.runningDone = new Promise<void>((r) => (finished = r));
    // Progress goes out in order on one connection; the return value follows the last of it.
    let chain: Promise<unknown> = Promise.resolve();
    const send = (p: WireProgress) => {
      chain = chain.then(() => job.updateProgress(p)).catch((e: unknown) => this.logger.warn({ jobId: id, err: String(e) }, 'progress not sent'));
    };
    let lastProgress: JobProgress | undefined;
    const loraSet = data.loraSet ?? loraSetKey(data.request);
    const base = { worker: this.id, startedAt, ...(routed ? { routed } : {}), ...(loraSet ? { warmHit: this.warmNow().includes(loraSet) } : {}) };
    let timer: NodeJS.Timeout | undefined;
    try {
      await this.advertise();
      if (this.closing) this.running.abort('shutdown');
      if (await this.redis.exists(this.keys.cancelFlag(id))) this.running.abort('cancel');
      send({ kind: 'started', worker: this.id, at: startedAt });
      timer = setTimeout(() => this.running?.abort('timeout'), data.timeoutMs);
      const onProgress = (p: RenderProgress) => {
        lastProgress = { step: p.step, total: p.total, elapsedMs: p.elapsedMs, etaMs: p.etaMs };
        const preview = p.preview && { rgbB64: Buffer.from(p.preview.rgb).toString('base64'), width: p.preview.width, height: p.preview.height, step: p.step };
        send({ kind: 'step', worker: this.id, at: Date.now(), ...lastProgress, ...(preview ? { preview } : {}) });
      };
      if (controller.signal.aborted) throw new LoraserveError('CANCELLED', 'render cancelled before it started');
      const got = data.files?.length && this.opts.files ? await this.opts.files.ensure(data.files) : undefined;
      let result: RenderResult;
      try {
        result = await this.opts.host.render(decodeRequest(data.request), { signal: controller.signal, onProgress, rescanLoras: Boolean(got?.relinked.length) });
      } finally {
        got?.release();
      }
      const images = await this.storeImages(id, result.images);
      const bytes = result.images.reduce((n, i) => n + i.png.byteLength, 0);
      const limit = this.opts.maxResultBytes ?? 64 * 1024 * 1024;
      if (!this.opts.resultsDir && bytes > limit) throw new LoraserveError('PAYLOAD_TOO_LARGE', `the result (${bytes} bytes of PNG) is over the ${limit}-byte limit for results kept in Redis`, { jobId: id, bytes, limit });
      await this.redis.set(this.keys.result(id), JSON.stringify(images), 'PX', this.opts.resultTtlMs ?? 15 * MINUTE);
      await chain;
      this.warm.touch(loraSet);
      this.ended.done++;
      return { outcome: 'done', ...base, finishedAt: Date.now(), seeds: result.seeds, infotexts: images.map((i) => i.infotext), render: result.timings, lastProgress };
    } catch (e) {
      let err = toLoraserveError(e, 'INFERENCE_FAILED');
      let outcome: 'failed' | 'cancelled' = 'failed';
      if (err.code === 'CANCELLED' && reason === 'timeout') {
        err = new LoraserveError('TIMEOUT', `job ran longer than its ${data.timeoutMs} ms limit and was stopped`, { jobId: id, timeoutMs: data.timeoutMs });
      } else if (err.code === 'CANCELLED' && reason === 'shutdown' && this.handBack) {
        // Back to BullMQ's wait list, for another worker to start again (same seeds, same pixels).
        await chain;
        await job.moveToWait(token);
        this.logger.info({ worker: this.id, jobId: id }, 'job handed back to the queue');
        throw new WaitingError();
      } else if (err.code === 'CANCELLED' && reason === 'shutdown') {
        outcome = 'cancelled';
        err = new LoraserveError('SHUTTING_DOWN', 'job stopped because the worker shut down', { jobId: id });
      } else if (err.code === 'CANCELLED') {
        outcome = 'cancelled';
      } else if (err.code === 'WORKER_CRASHED') {
        this.crashes++;
      }
      await chain;
      this.ended[outcome]++;
      return { outcome, ...base, finishedAt: Date.now(), error: err.toJSON(), lastProgress };
    } finally {
      clearTimeout(timer);
      this.running = undefined;
      this.state = 'idle';
      await this.advertise();
      finished();
    }
  }

  private async storeImages(id: string, images: RenderResult['images']): Promise<WireImage[]> {
    const dir = this.opts.resultsDir;
    if (!dir) return images.map((i) => ({ pngB64: Buffer.from(i.png).toString('base64'), width: i.width, height: i.height, seed: i.seed, infotext: i.infotext }));
    const files = images.map((img, k) => ({ file: `${id}/${k}.png`, img }));
    try {
      mkdirSync(join(dir, id), { recursive: true });
      writeFilesAtomic(files.map((f) => ({ path: join(dir, f.file), data: f.img.png })));
    } catch (e) {
      throw new LoraserveError('IO_FAILED', `could not write job ${id}'s images to the results folder: ${(e as Error).message}`, { jobId: id, dir });
    }
    return files.map(({ file, img }) => ({ file, width: img.width, height: img.height, seed: img.seed, infotext: img.infotext }));
  }

  /**
   * Stops taking jobs; a running job gets `graceMs` to finish and is then stopped: with `handBack` it goes back
   * to the queue for another worker (a worker process leaving a running cluster), else it ends cancelled with
   * SHUTTING_DOWN (the whole service stopping). The render host is closed and the registry entry removed.
   * Idempotent.
   */
  close(graceMs = 30_000, options: { handBack?: boolean } = {}): Promise<void> {
    this.handBack = options.handBack ?? false;
    this.closing ??= this.shutdown(graceMs);
    return this.closing;
  }

  private async shutdown(graceMs: number): Promise<void> {
    clearInterval(this.heartbeat);
    const closed = Promise.all([this.worker.close(), this.own.close()]);
    if (this.running) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.runningDone, new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
      this.running?.abort('shutdown');
    }
    await closed;
    this.state = 'down';
    await this.redis.hdel(this.keys.workers, this.id).catch(() => undefined);
    await this.releaseOwnQueue().catch((e: unknown) => this.logger.warn({ worker: this.id, err: String(e) }, 'could not hand back the worker queue; an API sweep will'));
    await Promise.allSettled(Object.values(this.queues).map((q) => q.close()));
    await this.redis.publish(this.keys.workersChannel, this.id).catch(() => undefined);
    await this.opts.host.close().catch((e: unknown) => this.logger.warn({ worker: this.id, err: String(e) }, 'render host did not close cleanly'));
    this.sub.disconnect();
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  /**
   * Jobs routed here but not run go to the shared queue. The queue itself stays until its finished jobs'
   * records have expired; then an API's sweep removes it (BullmqQueue.sweepWorkerQueues).
   */
  private async releaseOwnQueue(): Promise<void> {
    await moveWorkerQueueJobs(this.queues.own, this.queues.shared, {
      redis: this.redis,
      keys: this.keys,
      includeActive: false,
      maxReroutes: this.opts.maxStalledCount ?? 2,
      keepFinishedMs: this.opts.resultTtlMs ?? 15 * MINUTE,
      keepFinished: 200,
    });
  }
}
