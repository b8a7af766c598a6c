/**
 * The render worker thread: owns the onnxruntime sessions (whose run() blocks the thread it runs on) and
 * renders one request at a time. Cancellation arrives as a flag in shared memory that the render loop
 * reads between steps, because this thread's event loop does not turn while a step runs.
 */
import { parentPort } from 'node:worker_threads';
import { toLoraserveError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { generate } from '../engine/generate.js';
import { LoraResolver } from '../engine/lora-resolver.js';
import { LoraLibrary } from '../lora/index.js';
import { EmbeddingLibrary } from '../text/embeddings/library.js';
import { loadModel, type LoadedModel } from '../engine/model.js';
import { MergedUnets } from '../engine/merged-unets.js';
import { totalmem } from 'node:os';
import { DEFAULT_LORA_MERGE_AFTER, type LoraMergeConfig } from '../core/config.js';
import { sizeMultiple } from '../engine/validate.js';
import type { HostToWorker, WorkerToHost } from './protocol.js';

const port = parentPort;
if (!port) throw new Error('render-worker must run in a worker thread');

const post = (m: WorkerToHost) => port.postMessage(m);

// Log lines travel to the host, which owns the real logger.
const forward =
  (level: 'debug' | 'info' | 'warn' | 'error') =>
  (o: object | string, m?: string): void =>
    post({ type: 'log', level, obj: typeof o === 'string' ? {} : (o as Record<string, unknown>), msg: typeof o === 'string' ? o : m ?? '' });
const logger: Logger = { debug: forward('debug'), info: forward('info'), warn: forward('warn'), error: forward('error') };

let model: LoadedModel | undefined;
let library: LoraLibrary | undefined;
let resolver: LoraResolver | undefined;
let embeddings: EmbeddingLibrary | undefined;
let merged: MergedUnets | undefined;

function mergedUnets(m: LoadedModel, cfg: LoraMergeConfig | undefined): MergedUnets {
  const after = cfg?.after ?? DEFAULT_LORA_MERGE_AFTER;
  return new MergedUnets(m, { after: after === 'off' ? undefined : after, maxBytes: cfg?.maxBytes ?? totalmem() / 4, logger });
}

async function releaseModel(): Promise<void> {
  await merged?.release();
  merged = undefined;
  if (model) await model.release();
  model = undefined;
}

async function handle(msg: HostToWorker): Promise<void> {
  switch (msg.type) {
    case 'load': {
      try {
        await releaseModel();
        library?.close();
        model = await loadModel(msg.modelDir, { device: msg.device, logger });
        merged = mergedUnets(model, msg.loraMerge);
        library = msg.loraDir ? await LoraLibrary.open(msg.loraDir, { logger, cacheBytes: msg.loraCacheBytes }) : undefined;
        library?.watch();
        resolver = new LoraResolver(model, library, { logger, merged });
        resolver.prepare();
        embeddings = msg.embeddingsDir ? await EmbeddingLibrary.open(msg.embeddingsDir) : undefined;
        post({
          type: 'loaded',
          info: {
            name: model.name,
            dir: model.files.dir,
            hash: model.hash.short,
            sha256: model.hash.sha256,
            provider: model.unet.provider,
            sizeMultiple: sizeMultiple(model),
            precision: model.unetSig.floatType,
            predictionType: model.scheduler.predictionType,
            loraTargets: [...model.lora.te.targets, ...model.lora.unet.targets],
          },
        });
      } catch (e) {
        post({ type: 'load-failed', error: toLoraserveError(e, 'MODEL_INVALID').toJSON() });
      }
      return;
    }
    case 'render': {
      const flag = msg.cancelFlag;
      const signal = { get aborted() { return Atomics.load(flag, 0) !== 0; } };
      try {
        if (!model) throw toLoraserveError(new Error('no model loaded'), 'MODEL_NOT_LOADED');
        // Files were just placed or re-pointed in the LoRA folder: read it now, not when the watcher's delay ends.
        if (msg.rescanLoras) await library?.scan();
        const result = await generate(
          model,
          msg.request,
          { signal, onProgress: (progress) => post({ type: 'progress', id: msg.id, progress }) },
          { loras: resolver, embeddings },
        );
        // Copied, not transferred: PNG bytes may sit in a Buffer pool shared with other data.
        post({ type: 'result', id: msg.id, result, loraCache: loraCacheStats() });
        // Between renders: touch the memory the next never-seen LoRA set will be built in.
        resolver?.prepare();
      } catch (e) {
        post({ type: 'failed', id: msg.id, error: toLoraserveError(e, 'INFERENCE_FAILED').toJSON() });
      }
      return;
    }
    case 'shutdown': {
      await releaseModel();
      library?.close();
      port!.close();
      return;
    }
  }
}

function loraCacheStats() {
  if (!resolver || !library) return undefined;
  const c = library.cacheStats();
  const m = merged?.stats();
  return {
    ...resolver.counters,
    ...(m ? { mergedSessions: m.sessions, mergedBuilds: m.builds, mergedHits: m.hits } : {}),
    entries: c.entries,
    bytes: c.bytes + resolver.stackedBytes,
    cached: library.cachedNames(resolver.targets),
  };
}

// One message at a time, in order: a render never overlaps a load.
let chain: Promise<void> = Promise.resolve();
port.on('message', (msg: HostToWorker) => {
  chain = chain.then(() => handle(msg));
});
