/**
 * LoRA-affinity routing on BullMQ's own primitives.
 *
 * BullMQ has no way to offer one job to one consumer of a queue (a worker cannot filter what it takes), but a
 * queue with a single consumer is exactly that. So every render worker consumes two queues: the shared one, and
 * its own (`<queue>.w.<workerId>`), with one render slot between them. A worker advertises in the registry the
 * LoRA sets it holds warm (WarmSets below) and its queue; on submit, an API process that finds an idle worker
 * with the job's set warm claims it for a moment (SET NX with an expiry, so two submits do not pick the same
 * worker) and adds the job to that worker's queue; otherwise the job goes to the shared queue, as without
 * affinity. Everything else stays BullMQ's: the job's state, lock, progress and completion events.
 *
 * What BullMQ cannot do for a single-consumer queue is recover it when its consumer dies: no other worker runs
 * the stalled-job check there. `moveWorkerQueueJobs` does it: a dead worker's waiting jobs, and its active ones
 * once their BullMQ lock has expired, are added to the shared queue under the same id and removed from the
 * worker's queue (add first, so a crash in between leaves a duplicate that the next sweep removes — BullMQ
 * ignores a second add of an id — never a lost job). A job moved more often than allowed fails with
 * WORKER_CRASHED, as BullMQ's own stalled-job limit does on the shared queue.
 */
import type { Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { LoraserveError } from '../core/errors.js';
import { lorasForRequest } from '../engine/lora-list.js';
import type { RenderRequest } from '../engine/request.js';
import type { FileRef } from './file-wire.js';
import type { WireJobData, WireKeys, WireOutcome, WireTombstone, WireWorkerEntry } from './bullmq-wire.js';

/**
 * The LoRA set a request applies, as a routing key: sorted unique names joined by '+' ('' for none). With the
 * job's files known, a name carries its file's hash (`name@sha256[:12]`): a file replaced under the same name is
 * a different set, cold everywhere.
 */
export function loraSetKey(request: Pick<RenderRequest, 'prompt' | 'loras'>, files: readonly FileRef[] = []): string {
  try {
    const hashOf = new Map(files.filter((f) => f.kind === 'lora').map((f) => [f.name, f.sha256.slice(0, 12)]));
    const names = new Set(lorasForRequest(request.prompt, request.loras).map((l) => (hashOf.has(l.name) ? `${l.name}@${hashOf.get(l.name)}` : l.name)));
    return [...names].sort().join('+');
  } catch {
    return ''; // a prompt the worker will refuse; it needs no routing
  }
}

/** The LoRA names in a loraSetKey, without their file hashes. */
export function loraSetNames(key: string): string[] {
  return key ? key.split('+').map((n) => n.replace(/@[0-9a-f]+$/, '')) : [];
}

/** The LoRA sets a worker rendered last, most recent first; bounded like the caches that keep them prepared. */
export class WarmSets {
  private readonly keys: string[] = [];
  constructor(private readonly max = 8) {}

  touch(key: string): void {
    if (!key) return;
    const i = this.keys.indexOf(key);
    if (i >= 0) this.keys.splice(i, 1);
    this.keys.unshift(key);
    if (this.keys.length > this.max) this.keys.length = this.max;
  }

  list(): string[] {
    return [...this.keys];
  }
}

/** Idle workers with `key` warm and a queue of their own; the most recently warmed first. */
export function warmCandidates(workers: readonly WireWorkerEntry[], key: string): WireWorkerEntry[] {
  if (!key) return [];
  return workers
    .filter((w) => w.state === 'idle' && w.queue && w.warmSets?.includes(key))
    .sort((a, b) => a.warmSets!.indexOf(key) - b.warmSets!.indexOf(key));
}

export interface MoveOptions {
  redis: Redis;
  keys: WireKeys;
  /** Also take active jobs whose lock expired (their worker died); false for a worker emptying its own queue. */
  includeActive: boolean;
  /** Moves allowed before a job fails with WORKER_CRASHED. */
  maxReroutes: number;
  keepFinishedMs: number;
  keepFinished: number;
}

/** Moves the jobs of one worker's queue to the shared queue; returns how many are left there (locked ones). */
export async function moveWorkerQueueJobs(from: Queue<WireJobData, WireOutcome>, to: Queue<WireJobData, WireOutcome>, o: MoveOptions): Promise<number> {
  const states = o.includeActive ? (['waiting', 'active'] as const) : (['waiting'] as const);
  const jobs = (await from.getJobs([...states], 0, -1)) as Job<WireJobData, WireOutcome>[];
  // Oldest first, so they keep their order at the shared queue's tail.
  jobs.sort((a, b) => a.timestamp - b.timestamp);
  let left = 0;
  for (const job of jobs) {
    const id = job.id!;
    const state = await job.getState();
    if (state === 'active' && (await o.redis.exists(`${from.toKey(id)}:lock`))) {
      left++; // its worker still holds it (alive, or dead for less than a lock period)
      continue;
    }
    if (state !== 'waiting' && state !== 'active') continue;
    const wasStarted = state === 'active';
    const reroutes = (job.data.reroutes ?? 0) + (wasStarted ? 1 : 0);
    if (reroutes > o.maxReroutes) {
      const error = new LoraserveError('WORKER_CRASHED', `the job's render worker died ${reroutes} times`, { jobId: id, reroutes });
      const stone: WireTombstone & { data: WireJobData } = { state: 'failed', error: error.toJSON(), finishedAt: Date.now(), data: job.data };
      await o.redis.set(o.keys.ended(id), JSON.stringify(stone), 'PX', o.keepFinishedMs);
    } else {
      const keep = { age: Math.ceil(o.keepFinishedMs / 1000), count: o.keepFinished };
      await to.add('render', { ...job.data, reroutes }, { jobId: id, attempts: 1, removeOnComplete: keep, removeOnFail: keep });
    }
    try {
      await job.remove();
      await o.redis.del(o.keys.route(id));
    } catch {
      left++; // taken meanwhile; the next sweep looks again
    }
  }
  return left;
}
