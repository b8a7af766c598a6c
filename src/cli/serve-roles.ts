/**
 * The queue behind `loraserve serve`, by role (`--role`, ROLE) and Redis URL (`--redis`, REDIS_URL):
 *
 * | role     | no Redis                 | Redis                                                          |
 * | -------- | ------------------------ | -------------------------------------------------------------- |
 * | `all`    | LocalQueue (in-process)  | BullmqQueue owning one BullmqRenderWorker per device           |
 * | `api`    | refused                  | BullmqQueue only: renders nothing, waits for workers to appear |
 * | `worker` | refused                  | one BullmqRenderWorker per device; no public HTTP: health and metrics |
 *
 * The worker role's health server is plain node:http (the cli never imports the Fastify server for it):
 * `GET /health` answers 200 with the workers' registry view while they run, 503 once they stop; `GET /metrics`
 * gives Prometheus text for this process's workers (src/cli/worker-metrics.ts).
 */
import { createServer, type Server } from 'node:http';
import type { DeviceConfig, LoraMergeConfig } from '../core/config.js';
import { LoraserveError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { PROMETHEUS_CONTENT_TYPE } from '../core/prometheus.js';
import { BullmqQueue } from '../jobs/bullmq-queue.js';
import { BullmqRenderWorker } from '../jobs/bullmq-worker.js';
import { LocalQueue } from '../jobs/local-queue.js';
import type { JobQueue } from '../jobs/queue.js';
import { RenderHost } from '../jobs/render-host.js';
import type { RenderRequest } from '../engine/request.js';
import type { FileRef } from '../jobs/file-wire.js';
import type { FileSync } from '../jobs/file-sync.js';
import { type MetricsWorker, processFigures, renderWorkerMetrics } from './worker-metrics.js';

export type ServeRole = 'api' | 'worker' | 'all';

export function parseRole(value: string | undefined, redisUrl: string | undefined): ServeRole {
  const role = value ?? 'all';
  if (role !== 'api' && role !== 'worker' && role !== 'all') throw new LoraserveError('INVALID_ARGUMENT', `--role must be api, worker or all (got '${role}')`);
  if (role !== 'all' && !redisUrl) throw new LoraserveError('INVALID_ARGUMENT', `--role ${role} needs --redis URL (REDIS_URL): API processes and workers meet in Redis`);
  if (redisUrl && !/^rediss?:\/\//.test(redisUrl)) throw new LoraserveError('INVALID_ARGUMENT', `--redis must be a redis:// or rediss:// URL (got '${redisUrl}')`);
  return role;
}

export interface QueueSettings {
  redisUrl?: string;
  role: ServeRole;
  modelDir?: string;
  loraDir: string;
  embeddingsDir: string;
  devices: DeviceConfig[];
  maxQueued: number;
  defaultTimeoutMs: number;
  /** Result PNGs' lifetime in Redis and their size limit (Redis roles). */
  resultTtlMs: number;
  maxResultBytes: number;
  /** BullMQ lock duration and stalled-job check period: how soon a dead worker's job is rerun elsewhere. */
  stallCheckMs: number;
  /** Byte bound of each render thread's parsed-LoRA cache. */
  loraCacheBytes?: number;
  /** Merged-weights UNets for hot LoRA sets (default when undefined). */
  loraMerge?: LoraMergeConfig;
  /** Shared folder for result PNGs instead of Redis (Redis roles). */
  resultsDir?: string;
  /** API side: the LoRA files a request needs, carried in the job (src/engine/job-files.ts). */
  filesFor?: (request: RenderRequest) => Promise<FileRef[]>;
  /** Worker side: the file cache synced with the API (worker role with --api-url). */
  files?: FileSync;
  /** LoRA-affinity routing (API side of the BullMQ queue). */
  affinity: boolean;
  logger: Logger;
}

function deviceLabel(d: DeviceConfig): string {
  return d.kind === 'cuda' ? `cuda:${d.deviceId ?? 0}` : d.kind;
}

/** One started BullmqRenderWorker per device (each with its own render thread). */
export async function startRenderWorkers(s: QueueSettings): Promise<BullmqRenderWorker[]> {
  if (!s.modelDir || !s.redisUrl) throw new LoraserveError('INVALID_ARGUMENT', 'render workers need a model and a Redis URL');
  const { modelDir, redisUrl } = s;
  return Promise.all(
    s.devices.map(async (device) => {
      const logger = s.logger.child?.({ device: deviceLabel(device) }) ?? s.logger;
      const host = await RenderHost.start(modelDir, device, logger, { loraDir: s.loraDir, embeddingsDir: s.embeddingsDir, loraCacheBytes: s.loraCacheBytes, loraMerge: s.loraMerge });
      return BullmqRenderWorker.start({
        redisUrl,
        host,
        device: deviceLabel(device),
        resultTtlMs: s.resultTtlMs,
        maxResultBytes: s.maxResultBytes,
        resultsDir: s.resultsDir,
        files: s.files,
        lockDurationMs: s.stallCheckMs,
        stalledIntervalMs: s.stallCheckMs,
        logger,
      });
    }),
  );
}

/** The JobQueue the HTTP server talks to (roles `all` and `api`). */
export async function makeServeQueue(s: QueueSettings): Promise<JobQueue> {
  if (s.role === 'worker') throw new LoraserveError('INTERNAL', 'the worker role has no HTTP queue');
  if (!s.redisUrl) {
    return new LocalQueue({
      modelDir: s.modelDir,
      loraDir: s.loraDir,
      embeddingsDir: s.embeddingsDir,
      loraCacheBytes: s.loraCacheBytes,
      loraMerge: s.loraMerge,
      devices: s.devices,
      maxQueued: s.maxQueued,
      defaultTimeoutMs: s.defaultTimeoutMs,
      logger: s.logger,
    });
  }
  const workers = s.role === 'all' ? await startRenderWorkers(s) : [];
  return new BullmqQueue({
    redisUrl: s.redisUrl,
    maxQueued: s.maxQueued,
    defaultTimeoutMs: s.defaultTimeoutMs,
    keepFinishedMs: s.resultTtlMs,
    affinity: s.affinity,
    resultsDir: s.resultsDir,
    filesFor: s.filesFor,
    workers,
    logger: s.logger,
  });
}

/**
 * The worker role's own port: `GET /health` (200 with each worker's id, device and — when the worker reports
 * it — state while they run, 503 once they stop) and `GET /metrics` (Prometheus text, src/cli/worker-metrics.ts).
 */
export function startWorkerHealth(workers: readonly MetricsWorker[], host: string, port: number, isUp: () => boolean): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    if (req.method === 'GET' && path === '/metrics') {
      res.writeHead(200, { 'content-type': PROMETHEUS_CONTENT_TYPE });
      res.end(renderWorkerMetrics(workers.map((w) => w.stats()), processFigures()));
      return;
    }
    if (req.method !== 'GET' || (path !== '/health' && path !== '/healthz')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'NOT_FOUND', message: 'only GET /health and GET /metrics here' } }));
      return;
    }
    const up = isUp();
    res.writeHead(up ? 200 : 503, { 'content-type': 'application/json' });
    const view = workers.map((w) => {
      const s = w.stats();
      return { id: w.id, device: w.device, ...(s?.state ? { state: s.state } : {}), ...(s?.jobId ? { jobId: s.jobId } : {}) };
    });
    res.end(JSON.stringify({ status: up ? 'ok' : 'stopping', role: 'worker', workers: view }));
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      const a = server.address() as { port: number };
      resolve({ server, url: `http://${host}:${a.port}` });
    });
  });
}
