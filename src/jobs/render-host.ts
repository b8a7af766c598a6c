/**
 * Host side of the render worker thread. The calling thread (CLI, HTTP server) stays free while the
 * worker runs onnxruntime. Cancellation sets a flag in shared memory the worker reads between steps —
 * `worker.terminate()` during a run crashes the process (onnxruntime-node 1.30), so it is never used
 * to cancel, only to clean up an idle or crashed worker.
 */
import { Worker } from 'node:worker_threads';
import { randomUUID } from 'node:crypto';
import type { DeviceConfig, LoraMergeConfig } from '../core/config.js';
import { errorFromJSON, LoraserveError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { silentLogger } from '../core/logger.js';
import type { RenderProgress, RenderRequest, RenderResult } from '../engine/request.js';
import type { HostToWorker, LoraCacheStats, ModelInfo, WorkerToHost } from './protocol.js';

export interface RenderCallOptions {
  signal?: AbortSignal;
  /** The LoRA folder changed just now (a worker's file sync re-pointed names): rescan it before rendering. */
  rescanLoras?: boolean;
  onProgress?: (p: RenderProgress) => void;
}

interface Pending {
  id: string;
  resolve: (r: RenderResult) => void;
  reject: (e: Error) => void;
  onProgress?: (p: RenderProgress) => void;
  cancelFlag: Int32Array;
}

export interface RenderHostFolders {
  loraDir?: string;
  embeddingsDir?: string;
  loraCacheBytes?: number;
  /** Merged-weights sessions for hot LoRA sets; default: after 2 renders, within a quarter of the RAM. */
  loraMerge?: LoraMergeConfig;
}

const ENTRY = new URL('./worker-entry.mjs', import.meta.url);

export class RenderHost {
  readonly modelDir: string;
  readonly device: DeviceConfig;
  readonly loraDir: string | undefined;
  readonly embeddingsDir: string | undefined;
  /** Byte bound of the render thread's parsed-LoRA cache (default: the library's, 1 GiB). */
  readonly loraCacheBytes: number | undefined;
  readonly loraMerge: LoraMergeConfig | undefined;
  private readonly logger: Logger;
  private worker: Worker | null = null;
  private info: ModelInfo | null = null;
  /** The worker's LoRA cache figures as of its last result. */
  loraCache: LoraCacheStats | undefined;
  private pending: Pending | null = null;
  private queue: Promise<unknown> = Promise.resolve();
  private closing = false;

  private constructor(modelDir: string, device: DeviceConfig, logger: Logger, dirs: RenderHostFolders) {
    this.modelDir = modelDir;
    this.device = device;
    this.logger = logger;
    this.loraDir = dirs.loraDir;
    this.embeddingsDir = dirs.embeddingsDir;
    this.loraCacheBytes = dirs.loraCacheBytes;
    this.loraMerge = dirs.loraMerge;
  }

  /** Starts a worker thread and loads the model (and the LoRA and embeddings folders, when given) in it. */
  static async start(modelDir: string, device: DeviceConfig, logger: Logger = silentLogger, opts: RenderHostFolders = {}): Promise<RenderHost> {
    const host = new RenderHost(modelDir, device, logger, opts);
    await host.spawn();
    return host;
  }

  get model(): ModelInfo {
    if (!this.info) throw new LoraserveError('MODEL_NOT_LOADED', 'no model loaded');
    return this.info;
  }

  get busy(): boolean {
    return this.pending !== null;
  }

  private spawn(): Promise<void> {
    const worker = new Worker(ENTRY, { execArgv: [] });
    this.worker = worker;
    return new Promise<void>((resolve, reject) => {
      let loaded = false;
      worker.on('message', (m: WorkerToHost) => {
        switch (m.type) {
          case 'loaded':
            this.info = m.info;
            loaded = true;
            resolve();
            break;
          case 'load-failed':
            // Detach first so the exit that terminate() causes is not reported as a crash.
            this.worker = null;
            reject(errorFromJSON(m.error));
            void worker.terminate();
            break;
          case 'log':
            this.logger[m.level]({ ...m.obj, thread: 'render' }, m.msg);
            break;
          case 'progress':
            if (this.pending?.id === m.id) this.pending.onProgress?.(m.progress);
            break;
          case 'result':
            if (m.loraCache) this.loraCache = m.loraCache;
            if (this.pending?.id === m.id) this.settle()?.resolve(reviveResult(m.result));
            break;
          case 'failed':
            if (this.pending?.id === m.id) this.settle()?.reject(errorFromJSON(m.error));
            break;
        }
      });
      const onDeath = (why: string) => {
        if (this.worker !== worker) return;
        this.worker = null;
        if (!loaded) reject(new LoraserveError('WORKER_CRASHED', `render worker died while loading the model: ${why}`));
        const p = this.settle();
        if (p) p.reject(new LoraserveError('WORKER_CRASHED', `render worker crashed during the job: ${why}`));
        if (!this.closing) this.logger.error({ why }, 'render worker died');
      };
      worker.on('error', (e) => onDeath(e.message));
      worker.on('exit', (code) => onDeath(`exit code ${code}`));
      this.send({ type: 'load', modelDir: this.modelDir, device: this.device, loraDir: this.loraDir, embeddingsDir: this.embeddingsDir, loraCacheBytes: this.loraCacheBytes, loraMerge: this.loraMerge });
    });
  }

  private send(m: HostToWorker): void {
    this.worker?.postMessage(m);
  }

  private settle(): Pending | null {
    const p = this.pending;
    this.pending = null;
    return p;
  }

  /** Renders one request; calls are served one at a time in arrival order. */
  render(request: RenderRequest, opts: RenderCallOptions = {}): Promise<RenderResult> {
    const run = async (): Promise<RenderResult> => {
      if (this.closing) throw new LoraserveError('SHUTTING_DOWN', 'render worker is shutting down');
      if (opts.signal?.aborted) throw new LoraserveError('CANCELLED', 'render cancelled before it started');
      if (!this.worker) {
        this.logger.warn({}, 'restarting render worker');
        await this.spawn();
      }
      const cancelFlag = new Int32Array(new SharedArrayBuffer(4));
      const id = randomUUID();
      const onAbort = () => Atomics.store(cancelFlag, 0, 1);
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      try {
        return await new Promise<RenderResult>((resolve, reject) => {
          this.pending = { id, resolve, reject, onProgress: opts.onProgress, cancelFlag };
          this.send({ type: 'render', id, request, cancelFlag, ...(opts.rescanLoras ? { rescanLoras: true } : {}) });
        });
      } finally {
        opts.signal?.removeEventListener('abort', onAbort);
      }
    };
    const p = this.queue.then(run, run);
    this.queue = p.catch(() => undefined);
    return p;
  }

  /** Stops the worker after the job in progress (if any) is cancelled at its next step. */
  async close(): Promise<void> {
    this.closing = true;
    if (this.pending) Atomics.store(this.pending.cancelFlag, 0, 1);
    await this.queue;
    const w = this.worker;
    if (!w) return;
    await new Promise<void>((resolve) => {
      w.once('exit', () => resolve());
      w.postMessage({ type: 'shutdown' } satisfies HostToWorker);
      // An idle worker exits on its own once its port closes; terminate() is safe when no run is in flight.
      setTimeout(() => void w.terminate(), 5000).unref();
    });
    this.worker = null;
  }
}

/** Structured clone turns Buffers into plain Uint8Arrays; keep them as Buffers for callers that write files. */
function reviveResult(r: RenderResult): RenderResult {
  return { ...r, images: r.images.map((i) => ({ ...i, png: Buffer.from(i.png.buffer, i.png.byteOffset, i.png.byteLength) })) };
}

