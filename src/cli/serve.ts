/**
 * `loraserve serve` (and `npm start`): the HTTP server on one model, one render worker per device.
 *
 * Every flag has an environment variable (flag wins): HOST, PORT, MODEL, MODELS_DIR, LORA_DIR, EMBEDDINGS_DIR,
 * DEVICE, DEVICE_ID, THREADS, API_KEY, CORS_ORIGIN, MAX_QUEUE, JOB_TIMEOUT, MAX_STEPS, MAX_PIXELS, MAX_BATCH,
 * MAX_UPLOAD_MB, MAX_PROMPT_CHARS, PREVIEW_EVERY, SHUTDOWN_GRACE, LOG_LEVEL, REDIS_URL, ROLE, RESULT_TTL, MAX_RESULT_MB, STALL_CHECK, AFFINITY, RESULTS_DIR, API_URL,
 * CACHE_DIR, CACHE_MB, LORA_CACHE_MB.
 *
 * Roles (serve-roles.ts): `all` (default) renders and serves HTTP — in-process without Redis, on BullMQ with it;
 * with `--redis`, `api` serves HTTP and renders nothing, `worker` renders and serves only GET /health.
 *
 * With no model given and none under models/, it generates the random-weight demo pipeline models/demo-tiny
 * (and its LoRAs into the LoRA folder) and says plainly that its images are noise.
 *
 * SIGTERM/SIGINT: new requests get 503 SHUTTING_DOWN, the listening socket closes, queued jobs fail with
 * SHUTTING_DOWN, running jobs get the grace period to finish and are then cancelled; exit code 0. A second
 * signal exits at once with 1.
 */
import { copyFileSync, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { pino, type Logger as PinoLogger } from 'pino';
import { parseDeviceKind, type DeviceConfig } from '../core/config.js';
import { LoraserveError } from '../core/errors.js';
import { VERSION } from '../core/version.js';
import { LoraLibrary } from '../lora/index.js';
import { buildApp } from '../server/app.js';
import { serverConfig } from '../server/config.js';
import { synthesize } from '../synth/index.js';
import { LORA_MERGE_HELP, LORA_MERGE_OPTIONS, loraMergeFlags, num, oneOf, parseFlags, str, type Flags } from './args.js';
import { jobFiles } from '../engine/job-files.js';
import { FileNoticePublisher } from '../jobs/file-notices.js';
import { ApiFileIndex, publishFileChanges, startWorkerFiles } from './serve-files.js';
import { FolderEmbeddingProvider, LibraryLoraProvider } from './serve-providers.js';
import { makeServeQueue, parseRole, startRenderWorkers, startWorkerHealth, type QueueSettings } from './serve-roles.js';

const HELP = `usage: loraserve serve [options]          (every option also reads an environment variable)

  --host ADDR            listen address (HOST; default 127.0.0.1 — use 0.0.0.0 in a container)
  --port N               listen port (PORT; default 7860, as A1111)
  --model DIR            diffusers ONNX pipeline folder (MODEL; default: the first pipeline under --models-dir,
                         else the random-weight demo model, generated on first start)
  --models-dir DIR       where pipelines are looked for (MODELS_DIR; default models)
  --lora-dir DIR         LoRA folder, watched for changes (LORA_DIR; default loras)
  --embeddings-dir DIR   textual-inversion embeddings (EMBEDDINGS_DIR; default models/embeddings)
  --device cpu|cuda|webgpu  execution provider (DEVICE; default cpu)
  --device-id N[,N…]     CUDA device ordinals; one render worker each (DEVICE_ID; default 0)
  --threads N            onnxruntime threads per worker, 0 = all cores (THREADS; default 0)
  --api-key KEY          require Authorization: Bearer KEY (API_KEY; default: none)
  --cors-origin LIST     allowed CORS origins, comma-separated, * for any (CORS_ORIGIN; default: none)
  --max-queue N          jobs that may wait (MAX_QUEUE; default 32); more get 503 + Retry-After
  --job-timeout S        seconds a job may run (JOB_TIMEOUT; default 600)
  --max-steps N          (MAX_STEPS; default 150)     --max-pixels N  width×height (MAX_PIXELS; default 1048576)
  --max-batch N          (MAX_BATCH; default 8)       --max-prompt-chars N (MAX_PROMPT_CHARS; default 20000)
  --max-upload-mb N      LoRA upload limit (MAX_UPLOAD_MB; default 1024)
  --preview-every N      progress preview every N steps, 0 = none (PREVIEW_EVERY; default 5)
  --shutdown-grace S     seconds running jobs get to finish on SIGTERM (SHUTDOWN_GRACE; default 30)
  --redis URL            Redis for the BullMQ job queue (REDIS_URL; default: none = in-process queue)
  --role api|worker|all  with --redis: api serves HTTP only, worker renders only (health on --port), all both
                         (ROLE; default all)
  --result-ttl S         seconds results and ended jobs stay in Redis (RESULT_TTL; default 900)
  --max-result-mb N      largest result kept in Redis (MAX_RESULT_MB; default 64)
  --stall-check S        a worker that died is noticed after about S seconds and its job rerun elsewhere
                         (BullMQ lock duration and stalled-job check; STALL_CHECK; default 30)
  --results-dir DIR      with --redis: workers write result PNGs here (<job id>/<n>.png) instead of into Redis,
                         API processes read them from here — a folder all of them see (RESULTS_DIR)
  --api-url URL          worker role without a shared LoRA folder: fetch the LoRAs and embeddings jobs need from
                         this API by sha256 into a verified local cache, and follow its uploads and deletions
                         (API_URL; --api-key is sent; default: read --lora-dir and --embeddings-dir directly)
  --cache-dir DIR        with --api-url: the file cache (CACHE_DIR; default <models-dir>/file-cache)
  --cache-mb N           with --api-url: its size bound, least recently used files go first (CACHE_MB; default 4096)
  --lora-cache-mb N      parsed LoRAs each render worker keeps ready, least recently used go first
                         (LORA_CACHE_MB; default 1024)
${LORA_MERGE_HELP}
  --affinity on|off      with --redis: send a job to an idle worker that has its LoRA set warm (AFFINITY;
                         default on); off = every job to the shared queue
  --log-level LEVEL      debug, info, warn, error (LOG_LEVEL; default info); logs are JSON lines on stdout
  --no-docs              do not serve the OpenAPI document and UI at /docs
`;

const OPTIONS = {
  host: { type: 'string' },
  port: { type: 'string' },
  model: { type: 'string' },
  'models-dir': { type: 'string' },
  'lora-dir': { type: 'string' },
  'embeddings-dir': { type: 'string' },
  device: { type: 'string' },
  'device-id': { type: 'string' },
  threads: { type: 'string' },
  'api-key': { type: 'string' },
  'cors-origin': { type: 'string' },
  'max-queue': { type: 'string' },
  'job-timeout': { type: 'string' },
  'max-steps': { type: 'string' },
  'max-pixels': { type: 'string' },
  'max-batch': { type: 'string' },
  'max-prompt-chars': { type: 'string' },
  'max-upload-mb': { type: 'string' },
  'preview-every': { type: 'string' },
  'shutdown-grace': { type: 'string' },
  'log-level': { type: 'string' },
  redis: { type: 'string' },
  role: { type: 'string' },
  'result-ttl': { type: 'string' },
  'max-result-mb': { type: 'string' },
  'stall-check': { type: 'string' },
  affinity: { type: 'string' },
  'results-dir': { type: 'string' },
  'api-url': { type: 'string' },
  'cache-dir': { type: 'string' },
  'cache-mb': { type: 'string' },
  'lora-cache-mb': { type: 'string' },
  ...LORA_MERGE_OPTIONS,
  'no-docs': { type: 'boolean' },
} as const;

const ENV: Record<string, string> = {
  host: 'HOST',
  port: 'PORT',
  model: 'MODEL',
  'models-dir': 'MODELS_DIR',
  'lora-dir': 'LORA_DIR',
  'embeddings-dir': 'EMBEDDINGS_DIR',
  device: 'DEVICE',
  'device-id': 'DEVICE_ID',
  threads: 'THREADS',
  'api-key': 'API_KEY',
  'cors-origin': 'CORS_ORIGIN',
  'max-queue': 'MAX_QUEUE',
  'job-timeout': 'JOB_TIMEOUT',
  'max-steps': 'MAX_STEPS',
  'max-pixels': 'MAX_PIXELS',
  'max-batch': 'MAX_BATCH',
  'max-prompt-chars': 'MAX_PROMPT_CHARS',
  'max-upload-mb': 'MAX_UPLOAD_MB',
  'preview-every': 'PREVIEW_EVERY',
  'shutdown-grace': 'SHUTDOWN_GRACE',
  'log-level': 'LOG_LEVEL',
  redis: 'REDIS_URL',
  role: 'ROLE',
  'result-ttl': 'RESULT_TTL',
  'max-result-mb': 'MAX_RESULT_MB',
  'stall-check': 'STALL_CHECK',
  affinity: 'AFFINITY',
  'results-dir': 'RESULTS_DIR',
  'api-url': 'API_URL',
  'cache-dir': 'CACHE_DIR',
  'cache-mb': 'CACHE_MB',
  'lora-cache-mb': 'LORA_CACHE_MB',
  'lora-merge-after': 'LORA_MERGE_AFTER',
  'lora-merge-mb': 'LORA_MERGE_MB',
};

/** Flags over environment: an unset flag takes its variable (empty counts as unset). */
export function withEnv(flags: Flags, env: NodeJS.ProcessEnv = process.env): Flags {
  const out: Flags = { ...flags };
  for (const [flag, name] of Object.entries(ENV)) {
    const v = env[name];
    if (out[flag] === undefined && v !== undefined && v !== '') out[flag] = v;
  }
  return out;
}

/** A folder is a pipeline when it has model_index.json (diffusers' and optimum's exports both write one). */
export function findPipeline(modelsDir: string): string | undefined {
  if (!existsSync(modelsDir)) return undefined;
  for (const name of readdirSync(modelsDir).sort()) {
    const dir = join(modelsDir, name);
    if (!name.startsWith('.') && statSync(dir).isDirectory() && existsSync(join(dir, 'model_index.json'))) return dir;
  }
  return undefined;
}

async function demoModel(modelsDir: string, loraDir: string, log: PinoLogger): Promise<string> {
  const dir = join(modelsDir, 'demo-tiny');
  if (!existsSync(join(dir, 'model_index.json'))) {
    log.warn({ dir }, 'no model found: generating the random-weight demo pipeline (a few seconds)');
    await synthesize({ preset: 'tiny', outDir: dir, seed: 0, loras: 5, overwrite: true });
  }
  const from = join(dir, 'loras');
  for (const f of existsSync(from) ? readdirSync(from).filter((n) => n.endsWith('.safetensors')) : []) {
    const to = join(loraDir, f);
    if (!existsSync(to)) copyFileSync(join(from, f), to);
  }
  log.warn(
    { model: dir, loras: loraDir },
    'DEMO MODE: serving models/demo-tiny, a RANDOM-WEIGHT model — its images are noise. It exists so the API can be tried ' +
      'without a download. To serve a real model, export a Stable Diffusion pipeline to ONNX into models/<name>/ (see ' +
      'models/README.md) or pass --model DIR, and restart.',
  );
  return dir;
}

function devicesFrom(flags: Flags): DeviceConfig[] {
  const name = str(flags, 'device', 'cpu')!;
  const kind = parseDeviceKind(name);
  if (!kind) throw new LoraserveError('INVALID_ARGUMENT', `--device must be cpu, cuda or webgpu (got '${name}')`);
  const threads = num(flags, 'threads', 0, { integer: true, min: 0, max: 1024 });
  const ids = (str(flags, 'device-id', '0') ?? '0').split(',').map((s) => s.trim());
  if (kind !== 'cuda') return [{ kind, threads: threads || undefined }];
  return ids.map((id) => {
    const deviceId = Number(id);
    if (!Number.isInteger(deviceId) || deviceId < 0) throw new LoraserveError('INVALID_ARGUMENT', `--device-id must be integers separated by commas (got '${id}')`);
    return { kind, deviceId, threads: threads || undefined };
  });
}

export async function serveCommand(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(HELP);
    return 0;
  }
  const flags = withEnv(parseFlags(argv, OPTIONS).flags);
  const level = str(flags, 'log-level', 'info')!;
  if (!['debug', 'info', 'warn', 'error'].includes(level)) throw new LoraserveError('INVALID_ARGUMENT', `--log-level must be debug, info, warn or error (got '${level}')`);
  const log = pino({ level, base: { service: 'loraserve', version: VERSION } });

  const host = str(flags, 'host', '127.0.0.1')!;
  const port = num(flags, 'port', 7860, { integer: true, min: 0, max: 65535 });
  const modelsDir = resolve(str(flags, 'models-dir', 'models')!);
  const loraDir = resolve(str(flags, 'lora-dir', 'loras')!);
  const embeddingsDir = resolve(str(flags, 'embeddings-dir', join(modelsDir, 'embeddings'))!);
  const devices = devicesFrom(flags);
  const corsOrigins = (str(flags, 'cors-origin', '') ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  const graceMs = num(flags, 'shutdown-grace', 30, { min: 0, max: 3600 }) * 1000;
  const redisUrl = str(flags, 'redis') || undefined;
  const role = parseRole(str(flags, 'role') || undefined, redisUrl);
  mkdirSync(loraDir, { recursive: true });

  // An API process loads no model: the workers advertise theirs.
  const given = str(flags, 'model');
  let modelDir = given ? resolve(given) : findPipeline(modelsDir);
  const demo = !modelDir && role !== 'api';
  if (role !== 'api') modelDir ??= await demoModel(modelsDir, loraDir, log);
  const settings: QueueSettings = {
    redisUrl,
    role,
    modelDir,
    loraDir,
    embeddingsDir,
    devices,
    maxQueued: num(flags, 'max-queue', 32, { integer: true, min: 0 }),
    defaultTimeoutMs: num(flags, 'job-timeout', 600, { min: 1 }) * 1000,
    resultTtlMs: num(flags, 'result-ttl', 900, { min: 1 }) * 1000,
    maxResultBytes: num(flags, 'max-result-mb', 64, { min: 1 }) * 1024 * 1024,
    stallCheckMs: num(flags, 'stall-check', 30, { min: 0.2, max: 3600 }) * 1000,
    loraCacheBytes: num(flags, 'lora-cache-mb', 1024, { min: 1 }) * 1024 * 1024,
    loraMerge: loraMergeFlags(flags),
    affinity: oneOf(flags, 'affinity', ['on', 'off'] as const, 'on') === 'on',
    resultsDir: resultsDir(str(flags, 'results-dir') || undefined, redisUrl),
    logger: log.child({ component: 'jobs' }),
  };
  const apiUrl = str(flags, 'api-url') || undefined;
  if (apiUrl && role !== 'worker') throw new LoraserveError('INVALID_ARGUMENT', '--api-url is for --role worker (a worker fetching files from an API process)');
  if (apiUrl && !/^https?:\/\//.test(apiUrl)) throw new LoraserveError('INVALID_ARGUMENT', `--api-url must be an http:// or https:// URL (got '${apiUrl}')`);
  if (role === 'worker') {
    const files = apiUrl
      ? {
          apiUrl,
          apiKey: str(flags, 'api-key') || undefined,
          cacheDir: resolve(str(flags, 'cache-dir', join(modelsDir, 'file-cache'))!),
          cacheBytes: num(flags, 'cache-mb', 4096, { min: 1 }) * 1024 * 1024,
        }
      : undefined;
    return serveWorkers(settings, host, port, graceMs, log, files);
  }

  const config = serverConfig({
    apiKey: str(flags, 'api-key') || undefined,
    corsOrigins,
    docs: !flags['no-docs'],
    jobTimeoutMs: settings.defaultTimeoutMs,
    previewEvery: num(flags, 'preview-every', 5, { integer: true, min: 0 }),
    limits: {
      maxSteps: num(flags, 'max-steps', 150, { integer: true, min: 1, max: 1000 }),
      maxPixels: num(flags, 'max-pixels', 1024 * 1024, { integer: true, min: 64 * 64 }),
      maxBatch: num(flags, 'max-batch', 8, { integer: true, min: 1, max: 256 }),
      maxPromptChars: num(flags, 'max-prompt-chars', 20_000, { integer: true, min: 1 }),
      maxUploadBytes: num(flags, 'max-upload-mb', 1024, { min: 1 }) * 1024 * 1024,
    },
    // The demo model is slow at 512x512 for what it shows; its native default is smaller.
    defaults: demo ? { width: 256, height: 256 } : {},
  });

  const library = await LoraLibrary.open(loraDir, { logger: log.child({ component: 'loras' }) });
  library.watch();
  // With Redis, render workers may have no shared disk: jobs name their LoRA files by sha256, the API serves
  // them, and every change of the folders is announced (src/cli/serve-files.ts).
  const fileIndex = redisUrl ? new ApiFileIndex(library, embeddingsDir, { logger: log.child({ component: 'files' }) }) : undefined;
  const notices = redisUrl ? new FileNoticePublisher({ redisUrl, logger: log.child({ component: 'files' }) }) : undefined;
  if (fileIndex && notices) await publishFileChanges(fileIndex, notices);
  if (redisUrl) settings.filesFor = (r) => jobFiles(r, library);
  const queue = await makeServeQueue(settings);
  const { app, stopAccepting } = await buildApp({
    queue,
    config,
    logger: log.child({ component: 'http' }),
    loras: new LibraryLoraProvider(library, async () => (await queue.models())[0]?.loraTargets),
    embeddings: new FolderEmbeddingProvider(embeddingsDir),
    files: fileIndex,
  });

  let stopping: Promise<void> | undefined;
  const shutdown = (why: string): Promise<void> => {
    stopping ??= (async () => {
      log.info({ why, graceMs }, 'shutting down: no new requests; running jobs get the grace period');
      stopAccepting();
      await Promise.all([queue.close(graceMs), app.close()]);
      fileIndex?.close();
      await notices?.close();
      library.close();
      log.info('stopped');
    })();
    return stopping;
  };
  const done = new Promise<number>((resolveExit) => {
    const onSignal = (sig: NodeJS.Signals) => {
      if (stopping) {
        log.warn({ signal: sig }, 'second signal: exiting now');
        process.exit(1);
      }
      shutdown(sig).then(
        () => exitAfterShutdown(0, resolveExit, log),
        (e) => {
          log.error({ err: e }, 'shutdown failed');
          exitAfterShutdown(1, resolveExit, log);
        },
      );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });

  const url = await app.listen({ host, port });
  log.info(
    { url, model: modelDir, loras: loraDir, embeddings: embeddingsDir, devices: devices.map((d) => d.kind + (d.deviceId !== undefined ? `:${d.deviceId}` : '')), docs: config.docs ? '/docs' : false, auth: Boolean(config.apiKey) },
    `loraserve ${VERSION} listening (role ${role}${redisUrl ? ', BullMQ queue' : ''}); ${modelDir ? `loading ${basename(modelDir)}` : 'waiting for render workers'}`,
  );
  try {
    await queue.ready();
    log.info({ models: (await queue.models()).map((m) => `${m.name} [${m.hash}] on ${m.provider}`) }, 'ready');
  } catch (e) {
    log.error({ err: e }, 'the model could not be loaded');
    await shutdown('model failed to load');
    throw e;
  }
  return done;
}

/** `--role worker`: render workers on this machine's devices, health on host:port; SIGTERM hands a job that does not finish within the grace period back to the queue. */
async function serveWorkers(settings: QueueSettings, host: string, port: number, graceMs: number, log: PinoLogger, files?: { apiUrl: string; apiKey?: string; cacheDir: string; cacheBytes: number }): Promise<number> {
  // Without a shared disk the render threads read the file cache's view folders, kept in step with the API.
  const synced = files && settings.redisUrl ? await startWorkerFiles({ redisUrl: settings.redisUrl, ...files, logger: log.child({ component: 'files' }) }) : undefined;
  if (synced) settings = { ...settings, loraDir: synced.loraDir, embeddingsDir: synced.embeddingsDir, files: synced.sync };
  const workers = await startRenderWorkers(settings);
  let up = true;
  const health = await startWorkerHealth(workers, host, port, () => up);
  log.info({ health: `${health.url}/health`, workers: workers.map((w) => w.id), model: settings.modelDir }, `loraserve ${VERSION} render worker(s) ready`);
  return new Promise<number>((resolveExit) => {
    let stopping = false;
    const onSignal = (sig: NodeJS.Signals) => {
      if (stopping) {
        log.warn({ signal: sig }, 'second signal: exiting now');
        process.exit(1);
      }
      stopping = true;
      up = false;
      log.info({ signal: sig, graceMs }, 'worker shutting down: the running job gets the grace period');
      Promise.all(workers.map((w) => w.close(graceMs, { handBack: true })))
        .then(() => synced?.sync.close())
        .then(() => new Promise<void>((r) => health.server.close(() => r())))
        .then(
          () => exitAfterShutdown(0, resolveExit, log),
          (e) => {
            log.error({ err: e }, 'worker shutdown failed');
            exitAfterShutdown(1, resolveExit, log);
          },
        );
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
  });
}

function resultsDir(dir: string | undefined, redisUrl: string | undefined): string | undefined {
  if (!dir) return undefined;
  if (!redisUrl) throw new LoraserveError('INVALID_ARGUMENT', '--results-dir is for the Redis roles (workers write there, API processes read); without --redis results stay in memory');
  mkdirSync(dir, { recursive: true });
  return resolve(dir);
}

/**
 * Hands the exit code back (the process then ends when nothing is left running) — and, as a safety net, exits
 * anyway if something still holds the event loop a few seconds after a completed shutdown, naming what it was,
 * so that a leaked connection shows up in the log instead of as a container that never stops.
 */
function exitAfterShutdown(code: number, resolveExit: (code: number) => void, log: PinoLogger): void {
  resolveExit(code);
  setTimeout(() => {
    log.warn({ resources: process.getActiveResourcesInfo() }, 'still running 5 s after shutdown; exiting');
    process.exit(code);
  }, 5000).unref();
}
