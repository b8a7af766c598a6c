/**
 * What the BullMQ API side (bullmq-queue.ts) and render workers (bullmq-worker.ts) agree on: Redis key names,
 * the job's data, the progress payloads and the processor's return value. Everything here is JSON; byte arrays
 * travel as base64.
 *
 * Division of labour with BullMQ: BullMQ owns job state (wait → active → completed/failed), locks, stalled-job
 * recovery and the event stream; we add only what it has no primitive for — a per-job cancel flag plus a
 * pub/sub channel to reach the worker running a job, tombstones for jobs cancelled before they started (BullMQ
 * can only remove those), result bytes under their own key with a TTL, and the worker registry.
 *
 * Outcomes: the processor *returns* done, failed or cancelled (a render error is an answer, not a reason to
 * retry — it would fail the same way again). BullMQ's own `failed` state is left for infrastructure failures:
 * a job that stalled more than `maxStalledCount` times (its worker process died) or lost its lock.
 */
import type { FileRef } from './file-wire.js';
import type { ErrorJson, ModelInfo } from './protocol.js';
import type { JobProgress, JobTimings, WorkerStats } from './queue.js';
import type { RenderRequest, RenderTimings } from '../engine/request.js';

export const DEFAULT_QUEUE_NAME = 'renders';
export const DEFAULT_PREFIX = 'loraserve';

/** Our own keys, beside BullMQ's `<prefix>:<queue>:*` (the extra `lsv` segment keeps them apart from job ids). */
export function wireKeys(prefix: string, queueName: string) {
  const base = `${prefix}:${queueName}:lsv`;
  return {
    result: (id: string) => `${base}:result:${id}`,
    ended: (id: string) => `${base}:ended:${id}`,
    cancelFlag: (id: string) => `${base}:cancel:${id}`,
    cancelChannel: `${base}:cancel`,
    workers: `${base}:workers`,
    workersChannel: `${base}:workers`,
    /** Set of the per-worker (affinity) queues' names, so a dead worker's queue is found and emptied. */
    workerQueues: `${base}:worker-queues`,
    /** Held by an API while it routes one job to an idle worker, so two submits do not pick the same one. */
    claim: (workerId: string) => `${base}:claim:${workerId}`,
    /** Which per-worker queue holds a job (absent: the shared queue). */
    route: (id: string) => `${base}:route:${id}`,
    /** One sweeper at a time per dead worker's queue. */
    sweepLock: (queue: string) => `${base}:sweep:${queue}`,
  };
}

/**
 * A worker's own queue for LoRA-affinity routing. BullMQ queue names may not contain ':'; a worker id is
 * `<device>@<random>` and may hold other characters, so it is reduced to a safe set.
 */
export function workerQueueName(queueName: string, workerId: string): string {
  return `${queueName}.w.${workerId.replace(/[^A-Za-z0-9@._-]/g, '_')}`;
}
export type WireKeys = ReturnType<typeof wireKeys>;

/** The BullMQ job's data. */
export interface WireJobData {
  request: WireRequest;
  timeoutMs: number;
  labels: Record<string, string>;
  createdAt: number;
  /** The job's LoRA set (sorted names, '' for none): what affinity routing and warm-hit counting compare. */
  loraSet?: string;
  /** The LoRA files the job needs, by sha256 (workers without a shared folder fetch them from the API). */
  files?: FileRef[];
  /** Times the job was moved off a dead worker's own queue; bounded like BullMQ's stalled reruns. */
  reroutes?: number;
}

export type WireRequest = Omit<RenderRequest, 'initialNoise'> & { initialNoiseB64?: string };

export function encodeRequest(r: RenderRequest): WireRequest {
  const { initialNoise, ...rest } = r;
  if (!initialNoise) return rest;
  return { ...rest, initialNoiseB64: Buffer.from(initialNoise.buffer, initialNoise.byteOffset, initialNoise.byteLength).toString('base64') };
}

export function decodeRequest(w: WireRequest): RenderRequest {
  const { initialNoiseB64, ...rest } = w;
  if (initialNoiseB64 === undefined) return rest;
  const bytes = Buffer.from(initialNoiseB64, 'base64');
  const copy = new Uint8Array(bytes); // own, aligned buffer
  return { ...rest, initialNoise: new Float32Array(copy.buffer, 0, copy.byteLength / 4) };
}

/** The request as records show it (no noise tensor). */
export function shownRequest(w: WireRequest): Omit<RenderRequest, 'initialNoise'> {
  const { initialNoiseB64: _n, ...rest } = w;
  return rest;
}

export interface WirePreview {
  rgbB64: string;
  width: number;
  height: number;
  step: number;
}

/** `job.updateProgress()` payloads; the latest one is what `job.progress` holds. */
export type WireProgress =
  | { kind: 'started'; worker: string; at: number }
  | ({ kind: 'step'; worker: string; at: number; preview?: WirePreview } & JobProgress);

/** The processor's return value (BullMQ `returnvalue`). Images are under `keys.result(id)`. */
export interface WireOutcome {
  outcome: 'done' | 'failed' | 'cancelled';
  worker: string;
  startedAt: number;
  finishedAt: number;
  error?: ErrorJson;
  seeds?: number[];
  infotexts?: string[];
  render?: RenderTimings;
  lastProgress?: JobProgress;
  /** The job's LoRA set was warm on the worker that ran it (absent for jobs without LoRAs). */
  warmHit?: boolean;
  /** It came through the worker's own queue (affinity routing), not the shared one. */
  routed?: boolean;
}

/** One result image: its bytes in Redis, or (with a results folder) its path relative to that folder. */
export interface WireImage {
  pngB64?: string;
  file?: string;
  width: number;
  height: number;
  seed: number;
  infotext: string;
}

/** A job that ended without a worker ever taking it (cancelled or failed while waiting). */
export interface WireTombstone {
  state: 'cancelled' | 'failed';
  error: ErrorJson;
  finishedAt: number;
}

/** One entry of the worker registry hash; stale once `expiresAt` passed (the worker stopped heartbeating). */
export interface WireWorkerEntry extends WorkerStats {
  expiresAt: number;
  model?: ModelInfo;
  /** The worker's own BullMQ queue (affinity routing sends jobs there). */
  queue?: string;
}

export function outcomeTimings(o: WireOutcome, createdAt: number): JobTimings {
  return { queuedMs: o.startedAt - createdAt, runMs: o.finishedAt - o.startedAt, render: o.render };
}

/** Connection options for BullMQ/ioredis from a `redis://[user:pass@]host:port[/db]` URL (`rediss:` = TLS). */
export function redisOptionsFromUrl(url: string): { host: string; port: number; username?: string; password?: string; db?: number; tls?: object } {
  const u = new URL(url);
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') throw new Error(`not a redis URL: ${url}`);
  const db = u.pathname.length > 1 ? Number(u.pathname.slice(1)) : undefined;
  return {
    host: u.hostname || '127.0.0.1',
    port: u.port ? Number(u.port) : 6379,
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(db !== undefined && Number.isInteger(db) ? { db } : {}),
    ...(u.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}
