/**
 * The job interface every front end (HTTP routes, the load bench) talks to, whatever runs the renders.
 *
 * Two implementations are planned: `LocalQueue` (local-queue.ts: in-process FIFO in front of one render worker
 * thread per device) and a BullMQ/Redis one (issue 10: API processes and render workers on other machines).
 * So everything that crosses this interface is plain data — records and events survive JSON or structured
 * clone unchanged (byte arrays aside, which a remote implementation carries as base64) — and every call that
 * might need a round trip returns a Promise. The only in-process-only thing is `SubmitOptions.clientSignal`,
 * and that stays on the caller's side: an implementation turns its abort into `cancel(id)`.
 *
 * States: queued → running → done | failed | cancelled. A job may also go queued → cancelled/failed (cancel,
 * shutdown). Final records are kept for a bounded time and count, then forgotten (`get` → undefined).
 */
import { errorFromJSON, LoraserveError } from '../core/errors.js';
import type { RenderRequest, RenderTimings } from '../engine/request.js';
import type { ErrorJson, LoraCacheStats, ModelInfo } from './protocol.js';

export type { ErrorJson, LoraCacheStats, ModelInfo } from './protocol.js';

export type JobState = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

export const FINAL_STATES: readonly JobState[] = ['done', 'failed', 'cancelled'];

export function isFinal(state: JobState): boolean {
  return state === 'done' || state === 'failed' || state === 'cancelled';
}

export interface SubmitOptions {
  /** Longest the job may run once started (queue wait not included); it then fails with TIMEOUT. */
  timeoutMs?: number;
  /** Aborting it cancels the job (a synchronous HTTP client that went away). Caller-side only. */
  clientSignal?: AbortSignal;
  /** Free-form labels kept on the record and in logs, e.g. `{ api: 'a1111', requestId }`. */
  labels?: Record<string, string>;
}

/** Low-resolution RGB preview (latent-space approximation), 3 bytes per pixel. */
export interface JobPreview {
  rgb: Uint8Array;
  width: number;
  height: number;
  step: number;
}

export interface JobProgress {
  step: number;
  total: number;
  elapsedMs: number;
  etaMs: number;
}

export interface JobImage {
  png: Uint8Array;
  width: number;
  height: number;
  seed: number;
  infotext: string;
}

export interface JobTimings {
  /** Time from submission until a worker took the job. */
  queuedMs?: number;
  /** Time from start until the job ended (includes the worker's result transfer). */
  runMs?: number;
  /** The engine's own breakdown (done jobs only). */
  render?: RenderTimings;
}

/** A job as `list()` shows it: everything but the image bytes and the preview. */
export interface JobSummary {
  id: string;
  state: JobState;
  /** 1 = next to run; present while queued. */
  position?: number;
  /** The request as submitted (without `initialNoise`). */
  request: Omit<RenderRequest, 'initialNoise'>;
  labels: Record<string, string>;
  /** Which worker runs or ran it (e.g. `cpu:0`). */
  worker?: string;
  progress?: JobProgress;
  /** Set once a cancel was asked for a running job; the state follows at the next step. */
  cancelRequested?: boolean;
  seeds?: number[];
  infotexts?: string[];
  error?: ErrorJson;
  timings: JobTimings;
  /** Epoch milliseconds. */
  createdAt: number;
  startedAt?: number;
  finishedAt?: number;
}

export interface JobRecord extends JobSummary {
  /** PNG files with infotext, one per batch image (done jobs). */
  images?: JobImage[];
  /** Latest preview of a running job, when previews were asked for. */
  preview?: JobPreview;
}

/** What subscribers hear. `at` is epoch milliseconds. */
export type JobEvent =
  | { type: 'queued'; id: string; at: number; position: number }
  | { type: 'position'; id: string; at: number; position: number }
  | { type: 'started'; id: string; at: number; worker: string }
  | ({ type: 'progress'; id: string; at: number; preview?: JobPreview } & JobProgress)
  | { type: 'done'; id: string; at: number; seeds: number[]; infotexts: string[]; timings: JobTimings }
  | { type: 'failed'; id: string; at: number; error: ErrorJson; timings: JobTimings }
  | { type: 'cancelled'; id: string; at: number; error: ErrorJson; timings: JobTimings };

export type JobEventType = JobEvent['type'];

export function isFinalEvent(e: JobEvent): e is Extract<JobEvent, { type: 'done' | 'failed' | 'cancelled' }> {
  return e.type === 'done' || e.type === 'failed' || e.type === 'cancelled';
}

export type JobListener = (event: JobEvent) => void;
export type Unsubscribe = () => void;

export type WorkerState = 'starting' | 'idle' | 'busy' | 'down';

export interface WorkerStats {
  id: string;
  device: string;
  state: WorkerState;
  jobId?: string;
  model?: ModelInfo;
  /** Times this worker's render thread died (each failed its job and was restarted). */
  crashes: number;
  loraCache?: LoraCacheStats;
  /** LoRA sets (sorted names joined by '+') whose prepared state this worker holds, most recent first. */
  warmSets?: string[];
}

export interface QueueStats {
  /** False once close() began. */
  accepting: boolean;
  queued: number;
  running: number;
  /** Most jobs that may wait; submit beyond it fails with QUEUE_FULL. */
  maxQueued: number;
  workers: WorkerStats[];
  /** Jobs that reached each final state since start (counters). */
  totals: { submitted: number; done: number; failed: number; cancelled: number };
  /**
   * LoRA-affinity routing (BullMQ queue only): jobs sent to a worker that had their LoRA set warm vs to the
   * shared queue, and of the finished jobs with LoRAs, how many ran where their set was already warm.
   */
  affinity?: { enabled: boolean; routed: number; shared: number; warmHits: number; warmRuns: number };
}

export interface ListOptions {
  states?: JobState[];
  /** Newest first; default 100. */
  limit?: number;
}

export interface JobQueue {
  /** Resolves once at least one worker has its model loaded; rejects if none could load it. */
  ready(): Promise<void>;
  /** The models the workers serve (empty until one is loaded). */
  models(): Promise<ModelInfo[]>;
  /**
   * Queues a render. Throws QUEUE_FULL (details.retryAfterSeconds) when the queue is full and SHUTTING_DOWN
   * after close() began. The returned summary is the job as queued.
   */
  submit(request: RenderRequest, options?: SubmitOptions): Promise<JobSummary>;
  get(id: string): Promise<JobRecord | undefined>;
  list(options?: ListOptions): Promise<JobSummary[]>;
  /**
   * Cancels a queued job at once, or asks a running one to stop at its next step (the record then says
   * `cancelRequested` until the state follows). A final job is left as it is. Undefined for an unknown id.
   */
  cancel(id: string): Promise<JobSummary | undefined>;
  /**
   * Listens to one job. The listener first hears the job's current state (queued + position, started and the
   * latest progress, or its final event) and then live events, so subscribing after submit never misses the
   * end. Nothing is heard for an unknown id. Listeners are called asynchronously and must not throw.
   */
  subscribe(id: string, listener: JobListener): Unsubscribe;
  /** Listens to every job's live events (metrics, logs, A1111's global progress). */
  subscribeAll(listener: JobListener): Unsubscribe;
  stats(): Promise<QueueStats>;
  /**
   * Stops accepting work; queued jobs fail with SHUTTING_DOWN; running ones get `graceMs` to finish and are
   * then cancelled; workers are shut down. Idempotent.
   */
  close(graceMs?: number): Promise<void>;
}

/**
 * Waits for a job to end and returns its final record. Built on `subscribe` + `get`, so it works with any
 * implementation. Aborting `signal` stops waiting (it does not cancel the job).
 */
export function waitForJob(queue: JobQueue, id: string, signal?: AbortSignal): Promise<JobRecord> {
  return new Promise<JobRecord>((resolve, reject) => {
    let settled = false;
    const finish = (f: () => void) => {
      if (settled) return;
      settled = true;
      unsubscribe();
      signal?.removeEventListener('abort', onAbort);
      f();
    };
    const onAbort = () => finish(() => reject(new LoraserveError('CANCELLED', `stopped waiting for job ${id}`, { jobId: id })));
    const unsubscribe = queue.subscribe(id, (e) => {
      if (!isFinalEvent(e)) return;
      queue.get(id).then(
        (r) => finish(() => (r ? resolve(r) : reject(new LoraserveError('NOT_FOUND', `job ${id} ended but its record is gone`, { jobId: id })))),
        (err) => finish(() => reject(err)),
      );
    });
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    // An unknown id is never heard from: find out instead of waiting forever.
    queue.get(id).then(
      (r) => {
        if (!r) finish(() => reject(new LoraserveError('NOT_FOUND', `no job ${id}`, { jobId: id })));
      },
      (err) => finish(() => reject(err)),
    );
  });
}

/** The error a failed or cancelled record carries, as a LoraserveError (for callers that rethrow it). */
export function jobError(record: JobSummary): LoraserveError {
  if (record.error) return errorFromJSON(record.error);
  return new LoraserveError('INTERNAL', `job ${record.id} ended in state ${record.state} without an error`);
}
