/**
 * Where a batch renders: in this process on a model folder (one render worker thread, one item at a time), or
 * on a loraserve server through `POST /v1/images` (JSON answer, several requests in flight with --concurrency).
 * Both take the same native body and hand back the PNG bytes as rendered, infotext included, so the two give
 * byte-identical files for the same request. Then the loop that runs the unfinished items of a plan, writes
 * each PNG atomically and records it in the manifest; a failing item is recorded and the batch goes on.
 */
import { join } from 'node:path';
import type { DeviceConfig } from '../core/config.js';
import { errorFromJSON, LoraserveError, toLoraserveError } from '../core/errors.js';
import { writeFileAtomic } from '../core/fs-atomic.js';
import type { Logger } from '../core/logger.js';
import { nativeBodyToRequest } from '../engine/native-request.js';
import type { RenderProgress } from '../engine/request.js';
import { RenderHost, type RenderHostFolders } from '../jobs/render-host.js';
import { type Manifest, sha256Hex } from './batch-manifest.js';
import type { PlanItem } from './batch-plan.js';

export interface RenderedItem {
  images: Array<{ png: Uint8Array; seed: number }>;
  timings: Record<string, number>;
}

export interface ItemRenderer {
  /** Items rendered at the same time. */
  readonly concurrency: number;
  /** What renders, for the log ("model DIR on cpu", "server URL"). */
  readonly description: string;
  render(body: Record<string, unknown>, opts: { signal?: AbortSignal; onProgress?: (p: { step: number; total: number }) => void }): Promise<RenderedItem>;
  close(): Promise<void>;
}

/** Renders in this process through a RenderHost (its worker thread keeps the event loop free for progress). */
export class InProcessRenderer implements ItemRenderer {
  readonly concurrency = 1;
  readonly description: string;
  private constructor(private readonly host: RenderHost) {
    this.description = `model ${host.modelDir} on ${host.model.provider}`;
  }

  static async start(modelDir: string, device: DeviceConfig, logger: Logger, folders: RenderHostFolders): Promise<InProcessRenderer> {
    return new InProcessRenderer(await RenderHost.start(modelDir, device, logger, folders));
  }

  async render(body: Record<string, unknown>, opts: { signal?: AbortSignal; onProgress?: (p: RenderProgress) => void }): Promise<RenderedItem> {
    const t0 = performance.now();
    const r = await this.host.render(nativeBodyToRequest(body), opts);
    const t = r.timings;
    return {
      images: r.images.map((i) => ({ png: i.png, seed: i.seed })),
      timings: { wall_ms: round1(performance.now() - t0), render_ms: round1(t.totalMs), denoise_ms: round1(t.denoiseMs) },
    };
  }

  close(): Promise<void> {
    return this.host.close();
  }
}

interface ImagesJson {
  images?: string[];
  seeds?: number[];
  timings?: { queued_ms?: number; run_ms?: number; render?: { total_ms?: number; denoise_ms?: number } };
  error?: { code?: string; message?: string; details?: Record<string, unknown> };
}

/** Renders on a loraserve server: `POST {url}/v1/images` with `Accept: application/json`. */
export class ServerRenderer implements ItemRenderer {
  readonly description: string;
  private readonly base: string;

  constructor(
    url: string,
    readonly concurrency: number,
    private readonly apiKey?: string,
  ) {
    this.base = url.replace(/\/+$/, '');
    this.description = `server ${this.base}`;
  }

  private headers(): Record<string, string> {
    return { 'content-type': 'application/json', accept: 'application/json', ...(this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {}) };
  }

  /** Fails early (before any item) when the server cannot be reached or refuses the key. */
  async check(): Promise<void> {
    let res: Response;
    try {
      res = await fetch(`${this.base}/v1/models`, { headers: this.headers() });
    } catch (e) {
      throw new LoraserveError('IO_FAILED', `cannot reach ${this.base}: ${causeMessage(e)}`);
    }
    if (res.status === 401) throw new LoraserveError('UNAUTHORIZED', `${this.base} requires an API key (--api-key), or the key given is not valid`);
    if (res.status === 404) throw new LoraserveError('INVALID_ARGUMENT', `${this.base} does not look like a loraserve server (GET /v1/models: 404)`);
  }

  async render(body: Record<string, unknown>, opts: { signal?: AbortSignal }): Promise<RenderedItem> {
    const t0 = performance.now();
    let res: Response;
    try {
      res = await fetch(`${this.base}/v1/images`, { method: 'POST', headers: this.headers(), body: JSON.stringify(body), signal: opts.signal });
    } catch (e) {
      if (opts.signal?.aborted) throw new LoraserveError('CANCELLED', 'cancelled');
      throw new LoraserveError('IO_FAILED', `cannot reach ${this.base}: ${causeMessage(e)}`);
    }
    let json: ImagesJson;
    try {
      json = (await res.json()) as ImagesJson;
    } catch {
      throw new LoraserveError('IO_FAILED', `${this.base} answered ${res.status} without a JSON body`);
    }
    if (!res.ok || json.error) throw errorFromJSON(json.error ?? { code: 'INTERNAL', message: `HTTP ${res.status}` });
    const images = json.images ?? [];
    const seeds = json.seeds ?? [];
    const t = json.timings;
    return {
      images: images.map((b64, k) => ({ png: Buffer.from(b64, 'base64'), seed: seeds[k] })),
      timings: withNumbers({ wall_ms: round1(performance.now() - t0), queued_ms: t?.queued_ms, render_ms: t?.render?.total_ms, denoise_ms: t?.render?.denoise_ms }),
    };
  }

  async close(): Promise<void> {}
}

function causeMessage(e: unknown): string {
  const c = (e as { cause?: { message?: string; code?: string } }).cause;
  return c?.code ?? c?.message ?? (e as Error).message;
}

function round1(v: number): number {
  return Math.round(v * 10) / 10;
}

function withNumbers(o: Record<string, number | undefined>): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(o)) if (typeof v === 'number') out[k] = v;
  return out;
}

/** What the loop tells its display. */
export interface RunEvents {
  started(item: PlanItem): void;
  step(item: PlanItem, step: number, total: number): void;
  done(item: PlanItem, ms: number): void;
  failed(item: PlanItem, error: LoraserveError): void;
}

export interface RunOutcome {
  done: PlanItem[];
  failed: Array<{ item: PlanItem; error: LoraserveError }>;
  /** Not started because the run was interrupted. */
  notRun: PlanItem[];
}

/**
 * Renders `items` (already seeded) with up to `renderer.concurrency` in flight. Each PNG is written atomically
 * (temporary file + rename) before its manifest line is appended, so what the manifest calls done is on disk.
 */
export async function runItems(items: readonly PlanItem[], renderer: ItemRenderer, manifest: Manifest, outDir: string, events: RunEvents, signal: AbortSignal): Promise<RunOutcome> {
  const out: RunOutcome = { done: [], failed: [], notRun: [] };
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length && !signal.aborted) {
      const item = items[next++];
      events.started(item);
      const t0 = performance.now();
      try {
        const r = await renderer.render(item.body, { signal, onProgress: (p) => events.step(item, p.step, p.total) });
        if (r.images.length !== item.files.length) {
          throw new LoraserveError('INTERNAL', `expected ${item.files.length} image(s), got ${r.images.length}`);
        }
        const at = new Date().toISOString();
        r.images.forEach((img, k) => writeFileAtomic(join(outDir, item.files[k]), img.png));
        r.images.forEach((img, k) =>
          manifest.append({
            status: 'done',
            key: item.key,
            line: item.line,
            image: k,
            file: item.files[k],
            sha256: sha256Hex(img.png),
            bytes: img.png.byteLength,
            seed: img.seed,
            request: item.body,
            timings: r.timings,
            at,
          }),
        );
        out.done.push(item);
        events.done(item, performance.now() - t0);
      } catch (e) {
        const err = toLoraserveError(e);
        if (signal.aborted && err.code === 'CANCELLED') {
          out.notRun.push(item);
          continue;
        }
        manifest.append({ status: 'failed', key: item.key, line: item.line, request: item.body, error: { code: err.code, message: err.message }, at: new Date().toISOString() });
        out.failed.push({ item, error: err });
        events.failed(item, err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(renderer.concurrency, items.length)) }, worker));
  out.notRun.push(...items.slice(next));
  return out;
}
