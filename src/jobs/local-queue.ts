/**
 * The in-process JobQueue: one bounded FIFO in front of one render worker thread (RenderHost) per device.
 *
 * Fairness is plain arrival order: whichever worker frees up takes the oldest waiting job. The HTTP thread only
 * moves messages; renders run in the worker threads. Cancellation and timeouts go through the host's
 * AbortSignal, which the worker reads between steps (a step in flight always completes).
 *
 * Records of ended jobs stay readable for `keepFinished` jobs / `keepFinishedMs`, whichever runs out first.
 */
import { randomUUID } from 'node:crypto';
import type { DeviceConfig, LoraMergeConfig } from '../core/config.js';
import { LoraserveError, toLoraserveError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { silentLogger } from '../core/logger.js';
import type { RenderProgress, RenderRequest, RenderResult } from '../engine/request.js';
import { finalEvent, replayEvents, summarize } from './job-records.js';
import { JobSubscribers } from './job-subscribers.js';
import type { ModelInfo } from './protocol.js';
import {
  isFinal,
  type JobEvent,
  type JobListener,
  type JobQueue,
  type JobRecord,
  type JobSummary,
  type ListOptions,
  type QueueStats,
  type SubmitOptions,
  type Unsubscribe,
  type WorkerState,
  type LoraCacheStats,
  type WorkerStats,
} from './queue.js';
import { RenderHost, type RenderCallOptions } from './render-host.js';

/** What the queue needs from a render host (RenderHost, or a stand-in in tests). */
export interface RenderHostLike {
  readonly model: ModelInfo;
  /** The worker's LoRA cache figures, when it keeps such a cache (RenderHost: as of its last result). */
  readonly loraCache?: LoraCacheStats;
  render(request: RenderRequest, opts: RenderCallOptions): Promise<RenderResult>;
  close(): Promise<void>;
}

export type HostFactory = (device: DeviceConfig, logger: Logger) => Promise<RenderHostLike>;

export interface LocalQueueOptions {
  /** Pipeline folder every worker loads (unless `hostFactory` is given). */
  modelDir?: string;
  /** LoRA folder the workers read request LoRAs from (each worker watches it for changes). */
  loraDir?: string;
  /** Textual-inversion embeddings folder the workers read. */
  embeddingsDir?: string;
  /** Byte bound of each worker's parsed-LoRA cache; default 1 GiB. */
  loraCacheBytes?: number;
  /** Merged-weights UNets for hot LoRA sets (RenderHostFolders.loraMerge). */
  loraMerge?: LoraMergeConfig;
  /** One worker per entry; default one CPU worker. */
  devices?: DeviceConfig[];
  /** How workers are started; default `RenderHost.start(modelDir, device, logger)`. */
  hostFactory?: HostFactory;
  /** Most jobs that may wait (running ones not counted); default 32. */
  maxQueued?: number;
  /** Running-time limit for jobs that give none; default 10 minutes. */
  defaultTimeoutMs?: number;
  /** Preview every N steps for requests that do not say (0 = none); default 0. */
  previewEvery?: number;
  /** Ended jobs kept readable; default 200 jobs, 15 minutes. */
  keepFinished?: number;
  keepFinishedMs?: number;
  logger?: Logger;
}

interface Job {
  rec: JobRecord;
  request: RenderRequest;
  timeoutMs: number;
  controller?: AbortController;
  /** Why the job's signal was aborted; decides the final state. */
  abortReason?: 'cancel' | 'timeout' | 'shutdown';
  detachClient?: () => void;
  ended?: Promise<void>;
}

interface Worker {
  id: string;
  device: DeviceConfig;
  state: WorkerState;
  host?: RenderHostLike;
  job?: Job;
  crashes: number;
  started: Promise<void>;
}

function deviceLabel(d: DeviceConfig): string {
  return d.kind === 'cuda' ? `cuda:${d.deviceId ?? 0}` : d.kind;
}

const MINUTE = 60_000;

export class LocalQueue implements JobQueue {
  private readonly opts: Required<Omit<LocalQueueOptions, 'modelDir' | 'loraDir' | 'embeddingsDir' | 'loraCacheBytes' | 'loraMerge' | 'hostFactory' | 'devices' | 'logger'>>;
  private readonly logger: Logger;
  private readonly workers: Worker[];
  private readonly jobs = new Map<string, Job>();
  private readonly waiting: Job[] = [];
  /** Ended job ids, oldest first (retention). */
  private readonly ended: string[] = [];
  private readonly subs: JobSubscribers;
  private readonly totals = { submitted: 0, done: 0, failed: 0, cancelled: 0 };
  private accepting = true;
  private closing: Promise<void> | undefined;
  private readonly readyPromise: Promise<void>;
  /** Moving average of run time, for Retry-After. */
  private avgRunMs = 5000;
  private readonly pruneTimer: NodeJS.Timeout;

  constructor(options: LocalQueueOptions) {
    this.logger = options.logger ?? silentLogger;
    this.subs = new JobSubscribers(this.logger);
    this.opts = {
      maxQueued: options.maxQueued ?? 32,
      defaultTimeoutMs: options.defaultTimeoutMs ?? 10 * MINUTE,
      previewEvery: options.previewEvery ?? 0,
      keepFinished: options.keepFinished ?? 200,
      keepFinishedMs: options.keepFinishedMs ?? 15 * MINUTE,
    };
    const factory: HostFactory =
      options.hostFactory ??
      ((device, logger) => {
        if (!options.modelDir) throw new LoraserveError('INVALID_ARGUMENT', 'LocalQueue needs modelDir or hostFactory');
        return RenderHost.start(options.modelDir, device, logger, { loraDir: options.loraDir, embeddingsDir: options.embeddingsDir, loraCacheBytes: options.loraCacheBytes, loraMerge: options.loraMerge });
      });
    const devices = options.devices?.length ? options.devices : [{ kind: 'cpu' as const }];
    const seen = new Map<string, number>();
    this.workers = devices.map((device) => {
      const base = deviceLabel(device);
      const n = seen.get(base) ?? 0;
      seen.set(base, n + 1);
      const w: Worker = { id: `${base}#${n}`, device, state: 'starting', crashes: 0, started: Promise.resolve() };
      w.started = this.startWorker(w, factory);
      return w;
    });
    this.readyPromise = new Promise<void>((resolve, reject) => {
      let failures = 0;
      let firstError: unknown;
      const onFail = (e: unknown) => {
        firstError ??= e;
        if (++failures === this.workers.length) reject(toLoraserveError(firstError, 'MODEL_NOT_LOADED'));
      };
      for (const w of this.workers) {
        w.started.then(() => (w.state === 'down' ? onFail(new LoraserveError('SHUTTING_DOWN', 'closed while starting')) : resolve()), onFail);
      }
    });
    this.readyPromise.catch(() => undefined);
    this.pruneTimer = setInterval(() => this.prune(), MINUTE);
    this.pruneTimer.unref();
  }

  private async startWorker(w: Worker, factory: HostFactory): Promise<void> {
    const logger = this.logger.child?.({ worker: w.id }) ?? this.logger;
    try {
      w.host = await factory(w.device, logger);
    } catch (e) {
      w.state = 'down';
      const err = toLoraserveError(e, 'MODEL_NOT_LOADED');
      this.logger.error({ worker: w.id, code: err.code, err: err.message }, 'render worker failed to start');
      // With no worker left to run them, waiting jobs would wait forever.
      if (this.workers.every((x) => x.state === 'down')) {
        for (const job of this.waiting.splice(0)) this.finish(job, 'failed', err);
      }
      throw err;
    }
    if (this.closing) {
      await w.host.close();
      w.state = 'down';
      return;
    }
    w.state = 'idle';
    this.pump();
  }

  ready(): Promise<void> {
    return this.readyPromise;
  }

  async models(): Promise<ModelInfo[]> {
    const out: ModelInfo[] = [];
    for (const w of this.workers) {
      if (w.host && w.state !== 'down' && !out.some((m) => m.sha256 === w.host!.model.sha256)) out.push(w.host.model);
    }
    return out;
  }

  async submit(request: RenderRequest, options: SubmitOptions = {}): Promise<JobSummary> {
    if (!this.accepting) throw new LoraserveError('SHUTTING_DOWN', 'the server is shutting down and takes no new jobs');
    if (this.workers.every((w) => w.state === 'down')) {
      await this.readyPromise; // rethrows the load error
    }
    if (this.waiting.length >= this.opts.maxQueued) {
      const retryAfterSeconds = this.retryAfterSeconds();
      throw new LoraserveError('QUEUE_FULL', `the queue is full (${this.opts.maxQueued} jobs waiting); retry in about ${retryAfterSeconds} s`, {
        retryAfterSeconds,
        maxQueued: this.opts.maxQueued,
      });
    }
    if (options.clientSignal?.aborted) throw new LoraserveError('CANCELLED', 'the client went away before the job was queued');

    const { initialNoise: _noise, ...shown } = request;
    const id = randomUUID();
    const job: Job = {
      request: request.previewEvery === undefined && this.opts.previewEvery > 0 ? { ...request, previewEvery: this.opts.previewEvery } : request,
      timeoutMs: options.timeoutMs ?? this.opts.defaultTimeoutMs,
      rec: {
        id,
        state: 'queued',
        position: this.waiting.length + 1,
        request: shown,
        labels: { ...options.labels },
        timings: {},
        createdAt: Date.now(),
      },
    };
    const signal = options.clientSignal;
    if (signal) {
      const onAbort = () => void this.cancel(id);
      signal.addEventListener('abort', onAbort, { once: true });
      job.detachClient = () => signal.removeEventListener('abort', onAbort);
    }
    this.jobs.set(id, job);
    this.waiting.push(job);
    this.totals.submitted++;
    this.emit({ type: 'queued', id, at: Date.now(), position: job.rec.position! });
    this.logger.debug({ jobId: id, ...job.rec.labels, position: job.rec.position }, 'job queued');
    const summary = summarize(job.rec);
    this.pump();
    return summary;
  }

  async get(id: string): Promise<JobRecord | undefined> {
    const job = this.jobs.get(id);
    return job ? snapshot(job.rec) : undefined;
  }

  async list(options: ListOptions = {}): Promise<JobSummary[]> {
    const limit = options.limit ?? 100;
    const out: JobSummary[] = [];
    const all = [...this.jobs.values()].reverse();
    for (const j of all) {
      if (out.length >= limit) break;
      if (!options.states || options.states.includes(j.rec.state)) out.push(summarize(j.rec));
    }
    return out;
  }

  async cancel(id: string): Promise<JobSummary | undefined> {
    const job = this.jobs.get(id);
    if (!job) return undefined;
    if (job.rec.state === 'queued') {
      this.removeWaiting(job);
      this.finish(job, 'cancelled', new LoraserveError('CANCELLED', 'job cancelled before it started', { jobId: id }));
    } else if (job.rec.state === 'running' && !job.abortReason) {
      job.abortReason = 'cancel';
      job.rec.cancelRequested = true;
      job.controller?.abort();
    }
    return summarize(job.rec);
  }

  subscribe(id: string, listener: JobListener): Unsubscribe {
    const job = this.jobs.get(id);
    if (!job) return () => {};
    // The current state is computed now and delivered before any event emitted after this call.
    const replay = replayEvents(job.rec);
    if (isFinal(job.rec.state)) return this.subs.replayOnly(listener, replay);
    const { sub, drop } = this.subs.add(id, listener);
    this.subs.flush(sub, replay);
    return drop;
  }

  subscribeAll(listener: JobListener): Unsubscribe {
    return this.subs.addAll(listener);
  }

  async stats(): Promise<QueueStats> {
    const workers: WorkerStats[] = this.workers.map((w) => ({
      id: w.id,
      device: deviceLabel(w.device),
      state: w.state,
      jobId: w.job?.rec.id,
      model: w.host && w.state !== 'down' ? w.host.model : undefined,
      crashes: w.crashes,
      loraCache: w.host?.loraCache,
    }));
    return {
      accepting: this.accepting,
      queued: this.waiting.length,
      running: this.workers.filter((w) => w.job).length,
      maxQueued: this.opts.maxQueued,
      workers,
      totals: { ...this.totals },
    };
  }

  close(graceMs = 30_000): Promise<void> {
    this.closing ??= this.shutdown(graceMs);
    return this.closing;
  }

  private async shutdown(graceMs: number): Promise<void> {
    this.accepting = false;
    clearInterval(this.pruneTimer);
    for (const job of this.waiting.splice(0)) {
      this.finish(job, 'failed', new LoraserveError('SHUTTING_DOWN', 'the server shut down before the job started', { jobId: job.rec.id }));
    }
    const running = () => this.workers.flatMap((w) => (w.job?.ended ? [w.job] : []));
    const inFlight = running();
    if (inFlight.length) {
      this.logger.info({ jobs: inFlight.map((j) => j.rec.id), graceMs }, 'waiting for running jobs to finish');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(inFlight.map((j) => j.ended)), new Promise<void>((r) => (timer = setTimeout(r, graceMs)))]);
      clearTimeout(timer);
      for (const job of running()) {
        job.abortReason ??= 'shutdown';
        job.controller?.abort();
      }
      await Promise.all(running().map((j) => j.ended));
    }
    await Promise.all(
      this.workers.map(async (w) => {
        await w.started.catch(() => undefined);
        const host = w.host;
        w.state = 'down';
        if (host) await host.close().catch((e) => this.logger.warn({ worker: w.id, err: String(e) }, 'render worker did not close cleanly'));
      }),
    );
  }

  // --- internals -------------------------------------------------------------------------------------------

  private pump(): void {
    let moved = false;
    for (const w of this.workers) {
      if (w.state !== 'idle' || this.waiting.length === 0) continue;
      const job = this.waiting.shift()!;
      moved = true;
      job.ended = this.run(w, job);
    }
    if (moved) this.renumber(0);
  }

  private async run(w: Worker, job: Job): Promise<void> {
    const rec = job.rec;
    const started = Date.now();
    w.state = 'busy';
    w.job = job;
    rec.state = 'running';
    rec.position = undefined;
    rec.worker = w.id;
    rec.startedAt = started;
    rec.timings.queuedMs = started - rec.createdAt;
    this.emit({ type: 'started', id: rec.id, at: started, worker: w.id });
    const controller = new AbortController();
    job.controller = controller;
    const timer = setTimeout(() => {
      job.abortReason ??= 'timeout';
      controller.abort();
    }, job.timeoutMs);
    const onProgress = (p: RenderProgress) => {
      if (isFinal(rec.state)) return;
      rec.progress = { step: p.step, total: p.total, elapsedMs: p.elapsedMs, etaMs: p.etaMs };
      const preview = p.preview ? { ...p.preview, step: p.step } : undefined;
      if (preview) rec.preview = preview;
      this.emit({ type: 'progress', id: rec.id, at: Date.now(), ...rec.progress, preview });
    };
    try {
      const result = await w.host!.render(job.request, { signal: controller.signal, onProgress });
      rec.images = result.images.map((i) => ({ png: i.png, width: i.width, height: i.height, seed: i.seed, infotext: i.infotext }));
      rec.seeds = result.seeds;
      rec.infotexts = result.images.map((i) => i.infotext);
      rec.timings.render = result.timings;
      this.finish(job, 'done');
    } catch (e) {
      let err = toLoraserveError(e, 'INFERENCE_FAILED');
      let state: 'failed' | 'cancelled' = 'failed';
      if (err.code === 'CANCELLED' && job.abortReason === 'timeout') {
        err = new LoraserveError('TIMEOUT', `job ran longer than its ${job.timeoutMs} ms limit and was stopped`, { jobId: rec.id, timeoutMs: job.timeoutMs });
      } else if (err.code === 'CANCELLED' && job.abortReason === 'shutdown') {
        state = 'cancelled';
        err = new LoraserveError('SHUTTING_DOWN', 'job stopped because the server shut down', { jobId: rec.id });
      } else if (err.code === 'CANCELLED') {
        state = 'cancelled';
      } else if (err.code === 'WORKER_CRASHED') {
        w.crashes++;
      }
      this.finish(job, state, err);
    } finally {
      clearTimeout(timer);
      w.job = undefined;
      if (w.state === 'busy') w.state = 'idle';
      this.avgRunMs = 0.8 * this.avgRunMs + 0.2 * (Date.now() - started);
      if (this.accepting) this.pump();
    }
  }

  private finish(job: Job, state: 'done' | 'failed' | 'cancelled', error?: LoraserveError): void {
    const rec = job.rec;
    if (isFinal(rec.state)) return;
    const at = Date.now();
    rec.state = state;
    rec.finishedAt = at;
    rec.position = undefined;
    rec.preview = undefined;
    if (rec.startedAt !== undefined) rec.timings.runMs = at - rec.startedAt;
    if (error) rec.error = error.toJSON();
    job.detachClient?.();
    job.detachClient = undefined;
    job.controller = undefined;
    this.totals[state]++;
    const final = finalEvent(rec);
    this.emit(final); // also forgets the job's listeners
    this.ended.push(rec.id);
    this.prune();
    const log = { jobId: rec.id, ...rec.labels, state, worker: rec.worker, queuedMs: rec.timings.queuedMs, runMs: rec.timings.runMs };
    if (state === 'failed') this.logger.warn({ ...log, code: rec.error?.code, err: rec.error?.message }, 'job failed');
    else this.logger.info(log, `job ${state}`);
  }

  private removeWaiting(job: Job): void {
    const i = this.waiting.indexOf(job);
    if (i < 0) return;
    this.waiting.splice(i, 1);
    this.renumber(i);
  }

  /** Tells every waiting job from index `from` on its new place in line. */
  private renumber(from: number): void {
    const at = Date.now();
    for (let i = from; i < this.waiting.length; i++) {
      const rec = this.waiting[i].rec;
      if (rec.position === i + 1) continue;
      rec.position = i + 1;
      this.emit({ type: 'position', id: rec.id, at, position: i + 1 });
    }
  }

  private emit(e: JobEvent): void {
    this.subs.emit(e);
  }

  private prune(): void {
    const oldest = Date.now() - this.opts.keepFinishedMs;
    while (this.ended.length > 0) {
      const job = this.jobs.get(this.ended[0]);
      if (job && this.ended.length <= this.opts.keepFinished && (job.rec.finishedAt ?? 0) >= oldest) break;
      this.ended.shift();
      if (job) this.jobs.delete(job.rec.id);
    }
  }

  private retryAfterSeconds(): number {
    const live = Math.max(1, this.workers.filter((w) => w.state !== 'down').length);
    const s = Math.ceil(((this.waiting.length + 1) * this.avgRunMs) / live / 1000);
    return Math.min(3600, Math.max(1, s));
  }
}

function snapshot(rec: JobRecord): JobRecord {
  return { ...summarize(rec), images: rec.images?.slice(), preview: rec.preview };
}

