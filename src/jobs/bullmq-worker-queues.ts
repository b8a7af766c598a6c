/**
 * The API side's view of the render workers' own queues (LoRA-affinity routing, see bullmq-affinity.ts): a
 * BullMQ `Queue` and `QueueEvents` per worker queue named in the registry set, so routed jobs can be added,
 * read, cancelled and heard like shared ones; the submit-time choice of a warm worker's queue; and the sweep that empties the queue of a worker that stopped
 * heartbeating and removes the queue once its finished jobs' records have expired.
 */
import { Queue, QueueEvents, type Job } from 'bullmq';
import type { Redis } from 'ioredis';
import type { Logger } from '../core/logger.js';
import { moveWorkerQueueJobs, warmCandidates } from './bullmq-affinity.js';
import type { redisOptionsFromUrl, WireJobData, WireKeys, WireOutcome, WireWorkerEntry } from './bullmq-wire.js';

type RQueue = Queue<WireJobData, WireOutcome>;

export interface WorkerQueueSetOptions {
  connection: ReturnType<typeof redisOptionsFromUrl>;
  prefix: string;
  redis: Redis;
  keys: WireKeys;
  shared: RQueue;
  keepFinishedMs: number;
  keepFinished: number;
  maxReroutes: number;
  /** Wires a new queue's events into the owner's listeners (progress, completed, failed, removed). */
  onEvents: (events: QueueEvents, queue: RQueue) => void;
  logger: Logger;
}

export class WorkerQueueSet {
  private readonly entries = new Map<string, { queue: RQueue; events: QueueEvents }>();
  private syncing: Promise<void> | undefined;
  /** Once closed, no queue is opened again (a late sync would leave connections that keep the process alive). */
  private closed = false;

  constructor(private readonly o: WorkerQueueSetOptions) {}

  /** The queues known now (the registry set as of the last sync). */
  queues(): RQueue[] {
    return [...this.entries.values()].map((e) => e.queue);
  }

  get(name: string): RQueue | undefined {
    return this.entries.get(name)?.queue;
  }

  /** Follows the registry set: opens queues that appeared, closes those removed. Calls coalesce. */
  sync(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.syncing ??= this.doSync().finally(() => (this.syncing = undefined));
    return this.syncing;
  }

  private async doSync(): Promise<void> {
    const names = new Set(await this.o.redis.smembers(this.o.keys.workerQueues));
    for (const name of names) {
      if (this.closed) return;
      if (this.entries.has(name)) continue;
      const queue: RQueue = new Queue(name, { connection: { ...this.o.connection }, prefix: this.o.prefix });
      const events = new QueueEvents(name, { connection: { ...this.o.connection, maxRetriesPerRequest: null }, prefix: this.o.prefix });
      queue.on('error', (e) => this.o.logger.warn({ queue: name, err: e.message }, 'bullmq queue error'));
      events.on('error', (e) => this.o.logger.warn({ queue: name, err: e.message }, 'bullmq queue events error'));
      this.o.onEvents(events, queue);
      this.entries.set(name, { queue, events });
      await events.waitUntilReady();
      if (this.closed) break; // close() may have run meanwhile; it closes what is in `entries`, this one too
    }
    for (const [name, e] of this.entries) {
      if (names.has(name)) continue;
      this.entries.delete(name);
      await Promise.allSettled([e.events.close(), e.queue.close()]);
    }
  }

  /** Finds a job in the worker queues: by its route key first, else by looking in each. */
  async findJob(id: string): Promise<Job<WireJobData, WireOutcome> | undefined> {
    const routed = await this.o.redis.get(this.o.keys.route(id));
    if (routed && !this.entries.has(routed)) await this.sync();
    const order = routed ? [this.get(routed), ...this.queues()] : this.queues();
    for (const q of order) {
      if (!q) continue;
      const job = (await q.getJob(id)) as Job<WireJobData, WireOutcome> | undefined;
      if (job) return job;
    }
    return undefined;
  }

  /**
   * A dead worker's queue: waiting jobs, and active ones whose lock expired, go to the shared queue; once it
   * holds no jobs but finished ones older than their retention, it is removed. One sweeper per queue at a time.
   */
  async sweep(live: readonly WireWorkerEntry[]): Promise<void> {
    await this.sync();
    const alive = new Set(live.map((w) => w.queue));
    for (const [name, { queue }] of this.entries) {
      if (alive.has(name)) continue;
      const lock = this.o.keys.sweepLock(name);
      if (!(await this.o.redis.set(lock, '1', 'PX', 30_000, 'NX'))) continue;
      try {
        const left = await moveWorkerQueueJobs(queue, this.o.shared, {
          redis: this.o.redis,
          keys: this.o.keys,
          includeActive: true,
          maxReroutes: this.o.maxReroutes,
          keepFinishedMs: this.o.keepFinishedMs,
          keepFinished: this.o.keepFinished,
        });
        if (left > 0) continue;
        for (const type of ['completed', 'failed'] as const) await queue.clean(this.o.keepFinishedMs, 1000, type);
        const counts = await queue.getJobCounts('wait', 'active', 'completed', 'failed', 'delayed', 'prioritized');
        if (Object.values(counts).every((n) => n === 0)) {
          await queue.obliterate({ force: true });
          await this.o.redis.srem(this.o.keys.workerQueues, name);
          this.o.logger.info({ queue: name }, 'removed the queue of a worker that is gone');
        }
      } catch (e) {
        this.o.logger.warn({ queue: name, err: String(e) }, 'could not sweep a gone worker queue');
      } finally {
        await this.o.redis.del(lock).catch(() => undefined);
      }
    }
  }

  /** Waiting and running jobs over the shared queue and every worker's own. */
  async jobCounts(): Promise<{ wait: number; active: number }> {
    const all = await Promise.all([this.o.shared, ...this.queues()].map((q) => q.getJobCounts('wait', 'active')));
    return all.reduce<{ wait: number; active: number }>((t, c) => ({ wait: t.wait + (c.wait ?? 0), active: t.active + (c.active ?? 0) }), { wait: 0, active: 0 });
  }

  /**
   * Affinity routing: the queue of an idle worker with the job's LoRA set warm, claimed for a moment so that a
   * second submit does not pick it too (the worker drops the claim when it takes the job). None: undefined.
   */
  async route(live: readonly WireWorkerEntry[], loraSet: string, jobId: string): Promise<RQueue | undefined> {
    for (const w of warmCandidates(live, loraSet)) {
      if (!this.entries.has(w.queue!)) await this.sync();
      const queue = this.get(w.queue!);
      if (queue && (await this.o.redis.set(this.o.keys.claim(w.id), jobId, 'PX', 5000, 'NX'))) return queue;
    }
    return undefined;
  }

  async close(): Promise<void> {
    this.closed = true;
    // A sync in flight may be waiting on a connection to a Redis that is gone; it opens nothing more once it
    // sees `closed`, so wait for it only briefly.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.syncing?.catch(() => undefined), new Promise<void>((r) => (timer = setTimeout(r, 1000)))]);
    clearTimeout(timer);
    const all = [...this.entries.values()];
    this.entries.clear();
    await Promise.allSettled(all.flatMap((e) => [e.events.close(), e.queue.close()]));
  }
}
