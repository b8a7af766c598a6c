/**
 * The JobQueue on BullMQ and Redis: the API side. Submit adds a BullMQ job; state, order, locks and stalled-job
 * recovery are BullMQ's; events come from BullMQ's `QueueEvents` stream (progress = `job.updateProgress()` from
 * the render worker, completed = the worker's returned outcome). Records are read back from the BullMQ job
 * (plus the result key for images, or a tombstone for a job that ended before a worker took it), so they survive
 * a restart of this process. Wire format and key names: bullmq-wire.ts; render side: bullmq-worker.ts.
 *
 * With `workers` given (role `all`), the queue owns those local workers: `ready()` waits for them and `close()`
 * drains the queue (waiting jobs fail with SHUTTING_DOWN) and closes them. Without, it is a pure API process:
 * `ready()` waits until some worker advertises a model, and `close()` leaves other processes' jobs alone.
 *
 * LoRA-affinity routing (bullmq-affinity.ts): a job whose LoRA set an idle worker holds warm goes to that
 * worker's own queue (bullmq-worker-queues.ts keeps those queues and sweeps a dead worker's), else to the
 * shared queue.
 */
import { Queue, QueueEvents, type Job } from 'bullmq';
import { loraSetKey } from './bullmq-affinity.js';
import { withDeadline } from './bullmq-deadline.js';
import { WorkerQueueSet } from './bullmq-worker-queues.js';
import { Redis } from 'ioredis';
import { randomUUID } from 'node:crypto';
import { LoraserveError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { silentLogger } from '../core/logger.js';
import type { RenderRequest } from '../engine/request.js';
import type { BullmqRenderWorker } from './bullmq-worker.js';
import {
  DEFAULT_PREFIX,
  DEFAULT_QUEUE_NAME,
  encodeRequest,
  redisOptionsFromUrl,
  shownRequest,
  wireKeys,
  type WireJobData,
  type WireKeys,
  type WireOutcome,
  type WireTombstone,
  type WireWorkerEntry,
} from './bullmq-wire.js';
import type { FileRef } from './file-wire.js';
import type { ModelInfo } from './protocol.js';
import { recordFromJob, tombstoneRecord, eventsFromProgress, finalEventOf, infraError, type Stored } from './bullmq-records.js';
import { replayEvents, summarize } from './job-records.js';
import { JobSubscribers } from './job-subscribers.js';
import {
  isFinal,
  isFinalEvent,
  type JobEvent,
  type JobListener,
  type JobQueue,
  type JobRecord,
  type JobSummary,
  type ListOptions,
  type QueueStats,
  type SubmitOptions,
  type Unsubscribe,
} from './queue.js';

export interface BullmqQueueOptions {
  redisUrl: string;
  queueName?: string;
  prefix?: string;
  /** Most jobs that may wait (BullMQ's wait list); submit beyond it fails with QUEUE_FULL. Default 32. */
  maxQueued?: number;
  /** Running-time limit for jobs that give none; default 10 minutes. */
  defaultTimeoutMs?: number;
  /** Preview every N steps for requests that do not say (0 = none); default 0. */
  previewEvery?: number;
  /** Ended jobs kept readable (BullMQ removeOnComplete/removeOnFail, tombstone TTL); default 200 jobs, 15 minutes. */
  keepFinished?: number;
  keepFinishedMs?: number;
  /** Local render workers this queue owns (role `all`). */
  workers?: BullmqRenderWorker[];
  /** Folder the workers write result PNGs to instead of Redis (shared with them); records read them from it. */
  resultsDir?: string;
  /** The LoRA files a request needs, by sha256, carried in the job for workers that fetch them (serve: jobFiles). */
  filesFor?: (request: RenderRequest) => Promise<FileRef[]>;
  /** LoRA-affinity routing; default on. Off: every job goes to the shared queue. */
  affinity?: boolean;
  /** How often gone workers' queues are swept (and the registry read for them); default 5 s. */
  sweepMs?: number;
  /** Times a job may be moved off a dead worker's queue before it fails (as BullMQ's maxStalledCount); default 2. */
  maxReroutes?: number;
  logger?: Logger;
}

const MINUTE = 60_000;
const ENDED_STATES = new Set(['completed', 'failed']);

export class BullmqQueue implements JobQueue {
  private readonly opts: Required<Omit<BullmqQueueOptions, 'redisUrl' | 'queueName' | 'prefix' | 'workers' | 'logger' | 'resultsDir' | 'filesFor'>>;
  private readonly filesFor: BullmqQueueOptions['filesFor'];
  private readonly workerQueues: WorkerQueueSet;
  private readonly resultsDir: string | undefined;
  private readonly sweeper: NodeJS.Timeout;
  private readonly affinityTotals = { routed: 0, shared: 0, warmHits: 0, warmRuns: 0 };
  private readonly keys: WireKeys;
  private readonly logger: Logger;
  private readonly connection: ReturnType<typeof redisOptionsFromUrl>;
  private readonly queueName: string;
  private readonly prefix: string;
  private readonly redis: Redis;
  private readonly sub: Redis;
  private readonly queue: Queue<WireJobData, WireOutcome>;
  private readonly events: QueueEvents;
  private readonly workers: BullmqRenderWorker[];
  private readonly subs: JobSubscribers;
  private readonly workerWaiters = new Set<() => void>();
  private readonly totals = { submitted: 0, done: 0, failed: 0, cancelled: 0 };
  private avgRunMs = 5000;
  private accepting = true;
  private closing: Promise<void> | undefined;
  private closed = false;
  private readonly started: Promise<void>;

  constructor(options: BullmqQueueOptions) {
    this.logger = options.logger ?? silentLogger;
    this.subs = new JobSubscribers(this.logger);
    this.opts = {
      maxQueued: options.maxQueued ?? 32,
      defaultTimeoutMs: options.defaultTimeoutMs ?? 10 * MINUTE,
      previewEvery: options.previewEvery ?? 0,
      keepFinished: options.keepFinished ?? 200,
      keepFinishedMs: options.keepFinishedMs ?? 15 * MINUTE,
      affinity: options.affinity ?? true,
      sweepMs: options.sweepMs ?? 5000,
      maxReroutes: options.maxReroutes ?? 2,
    };
    this.queueName = options.queueName ?? DEFAULT_QUEUE_NAME;
    this.prefix = options.prefix ?? DEFAULT_PREFIX;
    this.keys = wireKeys(this.prefix, this.queueName);
    this.workers = options.workers ?? [];
    this.resultsDir = options.resultsDir;
    this.filesFor = options.filesFor;
    this.connection = redisOptionsFromUrl(options.redisUrl);
    // Commands fail fast while Redis is away (no offline queue), so a submit answers 503 instead of hanging.
    this.redis = new Redis({ ...this.connection, enableOfflineQueue: false, maxRetriesPerRequest: 1 });
    this.sub = new Redis({ ...this.connection, maxRetriesPerRequest: null });
    this.queue = new Queue<WireJobData, WireOutcome>(this.queueName, { connection: { ...this.connection }, prefix: this.prefix });
    this.events = new QueueEvents(this.queueName, { connection: { ...this.connection, maxRetriesPerRequest: null }, prefix: this.prefix });
    for (const c of [this.redis, this.sub]) c.on('error', (e: Error) => this.logger.warn({ err: e.message }, 'redis connection error'));
    this.queue.on('error', (e) => this.logger.warn({ err: e.message }, 'bullmq queue error'));
    this.events.on('error', (e) => this.logger.warn({ err: e.message }, 'bullmq queue events error'));
    this.listen(this.events, this.queue);
    this.workerQueues = new WorkerQueueSet({
      connection: this.connection,
      prefix: this.prefix,
      redis: this.redis,
      keys: this.keys,
      shared: this.queue,
      keepFinishedMs: this.opts.keepFinishedMs,
      keepFinished: this.opts.keepFinished,
      maxReroutes: this.opts.maxReroutes,
      onEvents: (events, queue) => this.listen(events, queue),
      logger: this.logger,
    });
    this.sub.on('message', () => {
      if (!this.closing) void this.workerQueues.sync().catch(() => undefined);
      for (const wake of [...this.workerWaiters]) wake();
    });
    // Our own command connection has no offline queue (a 503 instead of a hang): wait for it before reading.
    const redisReady = new Promise<void>((resolve) => (this.redis.status === 'ready' ? resolve() : this.redis.once('ready', () => resolve())));
    this.started = Promise.all([this.events.waitUntilReady(), this.queue.waitUntilReady(), this.sub.subscribe(this.keys.workersChannel), redisReady]).then(() => this.workerQueues.sync());
    this.started.catch(() => undefined);
    // Worker leases expire by time, so noticing a gone worker (and rescuing the jobs in its queue) takes a timer.
    this.sweeper = setInterval(() => void this.sweep(), this.opts.sweepMs);
    this.sweeper.unref();
  }

  /** Job events from one queue (the shared one or a worker's) into our listeners. */
  private listen(events: QueueEvents, queue: Queue<WireJobData, WireOutcome>): void {
    events.on('progress', ({ jobId, data }) => {
      for (const e of eventsFromProgress(jobId, data)) this.emit(e);
    });
    events.on('completed', ({ jobId, returnvalue }) => void this.onEnded(queue, jobId, returnvalue));
    events.on('failed', ({ jobId, failedReason }) => void this.onEnded(queue, jobId, undefined, failedReason));
    events.on('removed', ({ jobId }) => void this.onEnded(queue, jobId));
  }

  private async sweep(): Promise<void> {
    if (this.closed || this.redis.status !== 'ready') return;
    try {
      await this.workerQueues.sweep(await this.liveWorkers());
    } catch (e) {
      this.logger.warn({ err: String(e) }, 'worker queue sweep failed');
    }
  }

  async ready(): Promise<void> {
    await this.started;
    if (this.workers.length) {
      return; // local workers are started before they are handed over
    }
    for (;;) {
      const woke = new Promise<void>((resolve) => {
        const wake = () => {
          this.workerWaiters.delete(wake);
          resolve();
        };
        this.workerWaiters.add(wake);
      });
      if (this.closed) throw new LoraserveError('SHUTTING_DOWN', 'the queue closed before any render worker appeared');
      if ((await this.liveWorkers()).some((w) => w.model)) return;
      await woke; // a worker advertised itself (pub/sub), not a timer
    }
  }

  async models(): Promise<ModelInfo[]> {
    const out: ModelInfo[] = [];
    for (const w of await this.liveWorkers()) if (w.model && !out.some((m) => m.sha256 === w.model!.sha256)) out.push(w.model);
    return out;
  }

  async submit(request: RenderRequest, options: SubmitOptions = {}): Promise<JobSummary> {
    if (!this.accepting) throw new LoraserveError('SHUTTING_DOWN', 'the server is shutting down and takes no new jobs');
    if (options.clientSignal?.aborted) throw new LoraserveError('CANCELLED', 'the client went away before the job was queued');
    const id = randomUUID();
    const req = request.previewEvery === undefined && this.opts.previewEvery > 0 ? { ...request, previewEvery: this.opts.previewEvery } : request;
    const files = (await this.filesFor?.(req)) ?? [];
    const loraSet = loraSetKey(req, files);
    const data: WireJobData = {
      request: encodeRequest(req),
      timeoutMs: options.timeoutMs ?? this.opts.defaultTimeoutMs,
      labels: { ...options.labels },
      createdAt: Date.now(),
      loraSet,
      ...(files.length ? { files } : {}),
    };
    const position = await this.withRedis('submit', async () => {
      // Counted as waiting + running beyond what the live workers hold, so a job that a worker is just taking
      // counts the same whether it is still in BullMQ's wait list or already active (no race with pick-up).
      const waiting = await this.waitingBeyondWorkers();
      if (waiting >= this.opts.maxQueued) {
        const retryAfterSeconds = await this.retryAfterSeconds(waiting);
        throw new LoraserveError('QUEUE_FULL', `the queue is full (${this.opts.maxQueued} jobs waiting); retry in about ${retryAfterSeconds} s`, {
          retryAfterSeconds,
          maxQueued: this.opts.maxQueued,
        });
      }
      const keep = { age: Math.ceil(this.opts.keepFinishedMs / 1000), count: this.opts.keepFinished };
      const target = this.opts.affinity && loraSet ? await this.workerQueues.route(await this.liveWorkers(), loraSet, id) : undefined;
      if (target) await this.redis.set(this.keys.route(id), target.name, 'PX', data.timeoutMs + this.opts.keepFinishedMs + 10 * MINUTE);
      await (target ?? this.queue).add('render', data, { jobId: id, attempts: 1, removeOnComplete: keep, removeOnFail: keep });
      if (loraSet) this.affinityTotals[target ? 'routed' : 'shared']++;
      return target ? 1 : Math.max(1, await this.waitingBeyondWorkers());
    });
    this.totals.submitted++;
    const signal = options.clientSignal;
    if (signal) {
      const onAbort = () => void this.cancel(id).catch(() => undefined);
      signal.addEventListener('abort', onAbort, { once: true });
      const off = this.subscribe(id, (e) => {
        if (isFinalEvent(e)) {
          signal.removeEventListener('abort', onAbort);
          off();
        }
      });
    }
    this.emit({ type: 'queued', id, at: Date.now(), position });
    this.logger.debug({ jobId: id, ...data.labels, position }, 'job queued');
    return { id, state: 'queued', position, request: shownRequest(data.request), labels: data.labels, timings: {}, createdAt: data.createdAt };
  }

  async get(id: string): Promise<JobRecord | undefined> {
    return this.withRedis('read', async () => {
      const stored = await this.read(id);
      return stored?.record;
    });
  }

  async list(options: ListOptions = {}): Promise<JobSummary[]> {
    const limit = options.limit ?? 100;
    return this.withRedis('read', async () => {
      const states = ['waiting', 'active', 'completed', 'failed'] as const;
      const queues = [this.queue, ...this.workerQueues.queues()];
      const jobs = (await Promise.all(queues.map((q) => q.getJobs([...states], 0, Math.max(limit * 4, 100))))).flat();
      jobs.sort((a, b) => b.timestamp - a.timestamp);
      const out: JobSummary[] = [];
      for (let job of jobs) {
        if (out.length >= limit) break;
        const state = await job.getState();
        if (ENDED_STATES.has(state)) job = ((await (this.queueOf(job) ?? this.queue).getJob(job.id!)) as Job<WireJobData, WireOutcome> | undefined) ?? job;
        const rec = await recordFromJob(job, state, { redis: this.redis, keys: this.keys, queue: this.queueOf(job) ?? this.queue, withImages: false, resultsDir: this.resultsDir });
        if (!options.states || options.states.includes(rec.state)) out.push(summarize(rec));
      }
      return out;
    });
  }

  async cancel(id: string): Promise<JobSummary | undefined> {
    return this.withRedis('cancel', async () => {
      const stored = await this.read(id);
      if (!stored || isFinal(stored.record.state)) return stored && summarize(stored.record);
      if (stored.record.state === 'queued' && (await this.endWaiting(stored.job!, 'cancelled', new LoraserveError('CANCELLED', 'job cancelled before it started', { jobId: id })))) {
        return summarize((await this.read(id))!.record);
      }
      // Running (or taken by a worker while we looked): flag first, then tell the worker.
      await this.redis.set(this.keys.cancelFlag(id), '1', 'PX', this.opts.keepFinishedMs);
      await this.redis.publish(this.keys.cancelChannel, id);
      const now = (await this.read(id))?.record ?? stored.record;
      return summarize(isFinal(now.state) ? now : { ...now, cancelRequested: true });
    });
  }

  subscribe(id: string, listener: JobListener): Unsubscribe {
    const { sub, drop } = this.subs.add(id, listener, true);
    // Current state first (read from Redis), then the live events that came in meanwhile.
    this.read(id).then(
      (stored) => {
        if (!stored) {
          drop(); // unknown id: nothing is heard
          return this.subs.flush(sub, []);
        }
        const replay = replayEvents(stored.record);
        const sawStart = replay.some((e) => e.type === 'started');
        const lastStep = stored.record.progress?.step ?? 0;
        const final = isFinal(stored.record.state);
        this.subs.flush(sub, replay, (e) => !final && !(sawStart && e.type === 'started') && !(e.type === 'progress' && e.step <= lastStep) && !(e.type === 'queued'));
      },
      (err: unknown) => {
        this.logger.warn({ jobId: id, err: String(err) }, 'could not read job for a subscriber');
        this.subs.flush(sub, [], () => false);
      },
    );
    return drop;
  }

  subscribeAll(listener: JobListener): Unsubscribe {
    return this.subs.addAll(listener);
  }

  async stats(): Promise<QueueStats> {
    return this.withRedis('read', async () => {
      const [counts, workers] = await Promise.all([this.workerQueues.jobCounts(), this.liveWorkers()]);
      const { wait: queued, active: running } = counts;
      return {
        accepting: this.accepting,
        queued,
        running,
        maxQueued: this.opts.maxQueued,
        workers: workers.map(({ expiresAt: _e, ...w }) => w),
        totals: { ...this.totals },
        affinity: { enabled: this.opts.affinity, ...this.affinityTotals },
      };
    });
  }

  close(graceMs = 30_000): Promise<void> {
    this.closing ??= this.shutdown(graceMs);
    return this.closing;
  }

  private async shutdown(graceMs: number): Promise<void> {
    this.accepting = false;
    clearInterval(this.sweeper);
    if (this.workers.length) {
      // This process owns the render side: nothing would run what waits, so it ends now.
      const endAllWaiting = async (queues: Queue<WireJobData, WireOutcome>[]) => {
        for (const q of queues) {
          const waiting = await q.getJobs(['waiting'], 0, -1).catch(() => [] as Job<WireJobData, WireOutcome>[]);
          for (const job of waiting) {
            await this.endWaiting(job, 'failed', new LoraserveError('SHUTTING_DOWN', 'the server shut down before the job started', { jobId: job.id })).catch(() => false);
          }
        }
      };
      await endAllWaiting([this.queue, ...this.workerQueues.queues()]);
      await Promise.all(this.workers.map((w) => w.close(graceMs)));
      await endAllWaiting([this.queue]); // what a closing worker moved off its own queue
      // Let the final events of the jobs the workers just ended reach our subscribers.
      await new Promise((r) => setTimeout(r, 50));
    }
    this.closed = true;
    for (const wake of [...this.workerWaiters]) wake();
    await Promise.allSettled([this.events.close(), this.queue.close(), this.workerQueues.close()]);
    this.sub.disconnect();
    await this.redis.quit().catch(() => this.redis.disconnect());
  }

  // --- internals -------------------------------------------------------------------------------------------

  /**
   * Ends a job that no worker has taken: its tombstone is written, then BullMQ removes it (atomically refused
   * when a worker holds its lock — then it is running and false is returned). Listeners hear the end through
   * BullMQ's `removed` event, like every other end.
   */
  private async endWaiting(job: Job<WireJobData, WireOutcome>, state: 'cancelled' | 'failed', error: LoraserveError): Promise<boolean> {
    const id = job.id!;
    const stone: WireTombstone & { data: WireJobData } = { state, error: error.toJSON(), finishedAt: Date.now(), data: job.data };
    await this.redis.set(this.keys.ended(id), JSON.stringify(stone), 'PX', this.opts.keepFinishedMs);
    try {
      await job.remove();
      return true;
    } catch {
      await this.redis.del(this.keys.ended(id));
      return false;
    }
  }

  private async read(id: string): Promise<Stored | undefined> {
    const redis = this.closed ? new Redis({ ...this.connection, maxRetriesPerRequest: 1 }) : this.redis;
    const queue = this.closed ? new Queue<WireJobData, WireOutcome>(this.queueName, { connection: { ...this.connection }, prefix: this.prefix }) : this.queue;
    try {
      let job = ((await queue.getJob(id)) as Job<WireJobData, WireOutcome> | undefined) ?? (this.closed ? undefined : await this.workerQueues.findJob(id));
      if (job) {
        const state = await job.getState();
        // The job was read before its state: if it ended in between, the copy lacks its outcome. Read it again.
        // After close() only the temporary connections above are open.
        const own = this.closed ? queue : (this.queueOf(job) ?? queue);
        if (ENDED_STATES.has(state)) job = ((await own.getJob(id)) as Job<WireJobData, WireOutcome> | undefined) ?? job;
        if (state !== 'unknown') return { job, record: await recordFromJob(job, state, { redis, keys: this.keys, queue: own, withImages: true, resultsDir: this.resultsDir }) };
      }
      const stone = await redis.get(this.keys.ended(id));
      return stone ? { record: tombstoneRecord(id, JSON.parse(stone)) } : undefined;
    } finally {
      if (this.closed) {
        await queue.close();
        redis.disconnect();
      }
    }
  }

  private async onEnded(queue: Queue<WireJobData, WireOutcome>, jobId: string, outcome?: WireOutcome | string, failedReason?: string): Promise<void> {
    try {
      let event: JobEvent | undefined;
      if (outcome !== undefined || failedReason !== undefined) {
        const o = typeof outcome === 'string' ? (JSON.parse(outcome) as WireOutcome) : outcome;
        const job = await queue.getJob(jobId);
        const createdAt = job?.data.createdAt ?? job?.timestamp ?? Date.now();
        if (o?.outcome === 'done' && o.warmHit !== undefined) {
          this.affinityTotals.warmRuns++;
          if (o.warmHit) this.affinityTotals.warmHits++;
        }
        event = o ? finalEventOf(jobId, o, createdAt) : { type: 'failed', id: jobId, at: Date.now(), error: infraError(jobId, failedReason ?? ''), timings: {} };
        if (o?.outcome === 'done') this.avgRunMs = 0.8 * this.avgRunMs + 0.2 * (o.finishedAt - o.startedAt);
      } else {
        const stone = await this.redis.get(this.keys.ended(jobId));
        if (!stone) return; // removed by retention, not ended by us
        event = replayEvents(tombstoneRecord(jobId, JSON.parse(stone)))[0];
      }
      if (event && isFinalEvent(event)) this.totals[event.type]++;
      if (event) this.emit(event);
    } catch (e) {
      this.logger.warn({ jobId, err: String(e) }, 'could not read an ended job');
    }
  }

  private emit(e: JobEvent): void {
    this.subs.emit(e);
  }

  private async liveWorkers(): Promise<WireWorkerEntry[]> {
    const all = await this.redis.hgetall(this.keys.workers);
    const now = Date.now();
    const out: WireWorkerEntry[] = [];
    for (const [id, json] of Object.entries(all)) {
      const w = JSON.parse(json) as WireWorkerEntry;
      if (w.expiresAt < now) void this.redis.hdel(this.keys.workers, id).catch(() => undefined);
      else out.push(w);
    }
    return out.sort((a, b) => a.id.localeCompare(b.id));
  }

  private async waitingBeyondWorkers(): Promise<number> {
    const [counts, workers] = await Promise.all([this.workerQueues.jobCounts(), this.liveWorkers()]);
    return Math.max(0, counts.wait + counts.active - workers.length);
  }

  /** The Queue object of the queue a job lives in (shared or a worker's). */
  private queueOf(job: Job<WireJobData, WireOutcome>): Queue<WireJobData, WireOutcome> | undefined {
    return job.queueName === this.queue.name ? this.queue : this.workerQueues.get(job.queueName);
  }

  private async retryAfterSeconds(waiting: number): Promise<number> {
    const live = Math.max(1, (await this.liveWorkers()).length);
    const s = Math.ceil(((waiting + 1) * this.avgRunMs) / live / 1000);
    return Math.min(3600, Math.max(1, s));
  }

  private withRedis<T>(what: string, f: () => Promise<T>): Promise<T> {
    return withDeadline(this.redis, this.closed, what, f);
  }
}
