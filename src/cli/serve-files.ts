/**
 * The API process's side of moving files to render workers (docs/ARCHITECTURE.md, scale-out): the manifest of
 * its LoRA library and embeddings folder by sha256, served to workers (src/server/routes/files.ts through the
 * FileProvider interface), and the changes to it, turned into notices on Redis (src/jobs/file-notices.ts).
 *
 * A change is noticed however it happened — an upload or delete through the API, or a file copied into the
 * folder by hand: the LoRA library's own watcher reports it, the embeddings folder is watched here. Each
 * change recomputes the manifest (hashes are cached per path, size and mtime) and publishes the difference.
 */
import { createHash } from 'node:crypto';
import { createReadStream, type FSWatcher, watch as fsWatch } from 'node:fs';
import { open, readdir, stat } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { type Logger, silentLogger } from '../core/logger.js';
import { FileCache } from '../jobs/file-cache.js';
import type { FileNoticePublisher } from '../jobs/file-notices.js';
import { FolderFileSource, HttpFileSource } from '../jobs/file-source.js';
import { FileSync } from '../jobs/file-sync.js';
import type { FileEntry, FileNotice } from '../jobs/file-wire.js';
import type { LoraLibrary } from '../lora/index.js';
import type { FileProvider } from '../server/providers.js';

/** The embedding files A1111's loader reads (src/text/embeddings/library.ts); subfolders are not offered. */
const EMBEDDING_EXTENSIONS = new Set(['.pt', '.bin', '.safetensors']);

function sha256OfFile(path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(path, { highWaterMark: 4 << 20 })
      .on('data', (c) => h.update(c as Buffer))
      .on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}

function key(e: Pick<FileEntry, 'kind' | 'name'>): string {
  return `${e.kind}\u0000${e.name}`;
}

/** What changed between two manifests, as notices. */
export function manifestNotices(before: readonly FileEntry[], after: readonly FileEntry[]): FileNotice[] {
  const old = new Map(before.map((e) => [key(e), e]));
  const out: FileNotice[] = [];
  for (const e of after) {
    const o = old.get(key(e));
    old.delete(key(e));
    if (!o || o.sha256 !== e.sha256 || o.file !== e.file) out.push({ kind: e.kind, name: e.name, file: e.file, sha256: e.sha256, bytes: e.bytes });
  }
  for (const o of old.values()) out.push({ kind: o.kind, name: o.name, file: o.file, deleted: true });
  return out;
}

export class ApiFileIndex implements FileProvider {
  private readonly log: Logger;
  private readonly debounceMs: number;
  private readonly embeddingHashes = new Map<string, { size: number; mtimeMs: number; sha256: Promise<string> }>();
  private readonly byPath = new Map<string, string>();
  private last: FileEntry[] = [];
  private readonly listeners = new Set<(notices: FileNotice[]) => void>();
  private unsubscribe: (() => void) | undefined;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private refreshing: Promise<void> = Promise.resolve();

  constructor(
    private readonly library: LoraLibrary,
    private readonly embeddingsDir: string,
    options: { logger?: Logger; debounceMs?: number } = {},
  ) {
    this.log = options.logger ?? silentLogger;
    this.debounceMs = options.debounceMs ?? 250;
  }

  async list(): Promise<FileEntry[]> {
    const out: FileEntry[] = [];
    for (const e of this.library.list()) {
      try {
        out.push({ kind: 'lora', name: e.name, file: basename(e.file), sha256: (await this.library.hashes(e.name)).sha256, bytes: e.size });
        this.byPath.set(out[out.length - 1].sha256, e.file);
      } catch {
        // removed while listing
      }
    }
    let names: string[] = [];
    try {
      names = (await readdir(this.embeddingsDir)).filter((n) => !n.startsWith('.') && EMBEDDING_EXTENSIONS.has(extname(n).toLowerCase())).sort();
    } catch {
      // no embeddings folder: no embeddings
    }
    for (const file of names) {
      const path = join(this.embeddingsDir, file);
      try {
        const st = await stat(path);
        if (!st.isFile() || st.size === 0) continue;
        let c = this.embeddingHashes.get(path);
        if (!c || c.size !== st.size || c.mtimeMs !== st.mtimeMs) {
          c = { size: st.size, mtimeMs: st.mtimeMs, sha256: sha256OfFile(path) };
          this.embeddingHashes.set(path, c);
        }
        const sha256 = await c.sha256;
        out.push({ kind: 'embedding', name: file.slice(0, -extname(file).length), file, sha256, bytes: st.size });
        this.byPath.set(sha256, path);
      } catch {
        this.embeddingHashes.delete(path);
      }
    }
    return out;
  }

  async open(sha256: string): Promise<{ entry: FileEntry; stream: Readable } | undefined> {
    const entry = (await this.list()).find((e) => e.sha256 === sha256);
    const path = this.byPath.get(sha256);
    if (!entry || !path) return undefined;
    // The descriptor pins the file that was hashed even if it is replaced now; its size is the one announced.
    const fh = await open(path, 'r').catch(() => undefined);
    if (!fh) return undefined;
    const st = await fh.stat();
    if (st.size !== entry.bytes) {
      await fh.close();
      return undefined;
    }
    return { entry, stream: fh.createReadStream({ highWaterMark: 1 << 20, autoClose: true }) };
  }

  /**
   * Follows the LoRA library and the embeddings folder; `listener` gets the notices of each change (after
   * the first manifest, computed now). Returns the first manifest.
   */
  async watch(listener: (notices: FileNotice[]) => void): Promise<FileEntry[]> {
    this.listeners.add(listener);
    if (!this.unsubscribe) {
      this.last = await this.list();
      this.unsubscribe = this.library.onChange(() => this.schedule(0));
      try {
        this.watcher = fsWatch(this.embeddingsDir, { persistent: false }, () => this.schedule(this.debounceMs));
        this.watcher.on('error', (e) => this.log.warn({ dir: this.embeddingsDir, err: String(e) }, 'embeddings folder watch failed'));
      } catch (e) {
        this.log.warn({ dir: this.embeddingsDir, err: String(e) }, 'cannot watch the embeddings folder; workers see its changes after a restart of the API');
      }
    }
    return this.last;
  }

  /** Recomputes the manifest now and reports what changed (also what an upload path may call directly). */
  refresh(): Promise<void> {
    this.refreshing = this.refreshing.then(async () => {
      const next = await this.list();
      const notices = manifestNotices(this.last, next);
      this.last = next;
      if (!notices.length) return;
      for (const l of this.listeners) {
        try {
          l(notices);
        } catch (e) {
          this.log.error({ err: String(e) }, 'file notice listener failed');
        }
      }
    });
    return this.refreshing.catch((e) => this.log.error({ err: String(e) }, 'file manifest refresh failed'));
  }

  private schedule(ms: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.refresh();
    }, ms);
  }

  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    this.watcher?.close();
    this.watcher = undefined;
    this.listeners.clear();
  }
}

/** API side, Redis roles: publishes every change of the index's manifest, and a `resync` now (an API that starts may have changed files while it was down). */
export async function publishFileChanges(index: ApiFileIndex, publisher: FileNoticePublisher): Promise<void> {
  await index.watch((notices) => void publisher.publish(notices));
  await publisher.publish([{ resync: true }]);
}

export interface WorkerFilesSettings {
  redisUrl: string;
  /** BullMQ prefix and queue name, as the queue's (defaults: loraserve, renders). */
  prefix?: string;
  queueName?: string;
  /** The API's base URL (manifest and bytes). */
  apiUrl: string;
  apiKey?: string;
  /** The cache folder (blobs and the view folders the render threads read). */
  cacheDir: string;
  cacheBytes: number;
  /** The API's folders mounted here, read before asking the API (bytes are verified either way). */
  sharedLoraDir?: string;
  sharedEmbeddingsDir?: string;
  /** How long start-up waits for the API's manifest before failing; default 2 minutes. */
  waitForApiMs?: number;
  logger?: Logger;
}

/**
 * Worker side, Redis roles without a shared disk: the cache, synced with the API. Give the render hosts
 * `loraDir` and `embeddingsDir`, and call `sync.ensure(files)` before each render.
 */
export async function startWorkerFiles(s: WorkerFilesSettings): Promise<{ sync: FileSync; cache: FileCache; loraDir: string; embeddingsDir: string }> {
  const cache = await FileCache.open({ root: s.cacheDir, maxBytes: s.cacheBytes, logger: s.logger });
  const api = new HttpFileSource({ apiUrl: s.apiUrl, apiKey: s.apiKey });
  const shared = s.sharedLoraDir || s.sharedEmbeddingsDir ? [new FolderFileSource({ lora: s.sharedLoraDir, embedding: s.sharedEmbeddingsDir })] : [];
  // Workers and the API start in any order (a compose file starts them together): wait for the API a while.
  const deadline = Date.now() + (s.waitForApiMs ?? 120_000);
  let sync: FileSync;
  for (let attempt = 1; ; attempt++) {
    try {
      sync = await FileSync.start({ redisUrl: s.redisUrl, prefix: s.prefix, queueName: s.queueName, cache, manifest: api, sources: [...shared, api], logger: s.logger });
      break;
    } catch (e) {
      if (Date.now() > deadline) throw e;
      (s.logger ?? silentLogger).warn({ apiUrl: s.apiUrl, attempt, err: String(e) }, 'file sync: the API is not reachable yet; retrying');
      await new Promise((r) => setTimeout(r, Math.min(5000, 250 * 2 ** attempt)));
    }
  }
  return { sync, cache, loraDir: cache.viewDir('lora'), embeddingsDir: cache.viewDir('embedding') };
}
