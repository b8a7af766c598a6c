/**
 * A render worker's copy of the API's LoRA and embedding files, without a shared disk (docs/ARCHITECTURE.md,
 * scale-out). The worker's RenderHost reads the cache's view folders (`cache.viewDir('lora')` as its loraDir,
 * `cache.viewDir('embedding')` as its embeddingsDir); this class keeps them in step with the API:
 *
 * - on start, after a Redis reconnect, on a `resync` notice and on a timer: the API's manifest is read and the
 *   views reconciled — names the API no longer has are removed, embeddings fetched at once (a prompt names them
 *   implicitly, and they are small), LoRAs left to be fetched on first use (a name whose blob is cached is linked
 *   now; a name whose content changed and is not cached is unlinked, so the old bytes are never read under it);
 * - on each notice from the API (src/jobs/file-notices.ts): the same for one name;
 * - `ensure(files)` before a render: the job's files (by hash, as the API saw them at submit; src/engine/
 *   job-files.ts) are fetched if missing, verified, pinned against eviction until the render ends, and linked
 *   under their names.
 *
 * Notices and syncs are applied one at a time, in order.
 */
import { Redis } from 'ioredis';
import { LoraserveError, isLoraserveError } from '../core/errors.js';
import { type Logger, silentLogger } from '../core/logger.js';
import { DEFAULT_PREFIX, DEFAULT_QUEUE_NAME, redisOptionsFromUrl } from './bullmq-wire.js';
import type { FileCache } from './file-cache.js';
import type { FileSource, ManifestSource } from './file-source.js';
import { FILE_KINDS, fileChannel, type FileEntry, type FileKind, type FileNotice, type FileRef, parseFileNotice, refFile } from './file-wire.js';

export interface FileSyncOptions {
  redisUrl: string;
  prefix?: string;
  queueName?: string;
  cache: FileCache;
  /** Where the list of names comes from (the API: HttpFileSource). */
  manifest: ManifestSource;
  /** Where bytes come from, tried in order (e.g. a shared folder first, then the API). */
  sources: readonly FileSource[];
  /** Full manifest sync period, a safety net for missed notices (default 5 min; 0 = none). */
  resyncMs?: number;
  logger?: Logger;
}

/** What `ensure` hands back. */
export interface EnsuredFiles {
  /** Unpins the job's files (idempotent). */
  release(): void;
  /** View files placed or re-pointed by this call. */
  relinked: string[];
}

function key(kind: FileKind, name: string): string {
  return `${kind}\u0000${name}`;
}

export class FileSync {
  private readonly cache: FileCache;
  private readonly log: Logger;
  private readonly channel: string;
  private readonly sub: Redis;
  /** The API's names, as last heard. */
  private readonly known = new Map<string, FileEntry>();
  /** Embeddings stay pinned while the API has them (every prompt may use them). */
  private readonly embeddingPins = new Map<string, { sha256: string; release: () => void }>();
  private chain: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private connectedOnce = false;
  private syncs = 0;

  private constructor(private readonly opts: FileSyncOptions) {
    this.cache = opts.cache;
    this.log = opts.logger ?? silentLogger;
    this.channel = fileChannel(opts.prefix ?? DEFAULT_PREFIX, opts.queueName ?? DEFAULT_QUEUE_NAME);
    this.sub = new Redis({ ...redisOptionsFromUrl(opts.redisUrl), maxRetriesPerRequest: null });
    this.sub.on('error', (e) => this.log.debug({ err: String(e) }, 'file sync: Redis connection error'));
    this.sub.on('message', (_channel: string, text: string) => {
      const n = parseFileNotice(text);
      if (!n) return this.log.warn({ text: text.slice(0, 200) }, 'file sync: unreadable notice ignored');
      void this.enqueue(() => ('resync' in n ? this.syncNow() : this.apply(n)));
    });
    // ioredis resubscribes after a reconnect; notices sent meanwhile are lost, so read the manifest again.
    this.sub.on('ready', () => {
      if (this.connectedOnce) void this.sync();
      this.connectedOnce = true;
    });
  }

  /** Subscribes, then does the first full sync (an unreachable API fails the start: the worker has no files). */
  static async start(opts: FileSyncOptions): Promise<FileSync> {
    const s = new FileSync(opts);
    try {
      await s.sub.subscribe(s.channel);
      await s.sync();
    } catch (e) {
      await s.close();
      throw e;
    }
    const every = opts.resyncMs ?? 300_000;
    if (every > 0) {
      s.timer = setInterval(() => void s.sync().catch(() => undefined), every);
      s.timer.unref();
    }
    return s;
  }

  /** Full syncs done (tests, metrics). */
  get syncCount(): number {
    return this.syncs;
  }

  /** The API's manifest as last heard. */
  manifest(): FileEntry[] {
    return [...this.known.values()];
  }

  /** Reads the API's manifest and reconciles the view folders with it. */
  sync(): Promise<void> {
    return this.enqueue(() => this.syncNow());
  }

  /**
   * Makes a job's files present under their names and pinned; call before the render, and `release()` when it
   * ends (however it ends). Throws UNKNOWN_LORA when no source has a file any more (deleted on the API after
   * the job was submitted), IO_FAILED when it cannot be fetched. `relinked` lists the view files this call
   * placed or re-pointed: a loader that already scanned its folder must rescan before the render reads them.
   */
  async ensure(files: readonly FileRef[]): Promise<EnsuredFiles> {
    const releases: Array<() => void> = [];
    const releaseAll = () => {
      for (const r of releases) r();
    };
    const relinked: string[] = [];
    try {
      for (const f of files) {
        releases.push(this.cache.pin(f.sha256));
        await this.fetch(f);
        // The job's own version under its name, even if the API has re-pointed the name since it was submitted.
        if (await this.cache.link(f.kind, refFile(f), f.sha256)) relinked.push(refFile(f));
      }
    } catch (e) {
      releaseAll();
      throw e;
    }
    return { release: releaseAll, relinked };
  }

  private enqueue(task: () => Promise<void>): Promise<void> {
    const p = this.chain.then(task);
    this.chain = p.catch((e) => this.log.warn({ err: String(e) }, 'file sync step failed'));
    return p;
  }

  private async fetch(f: FileRef): Promise<void> {
    if (this.cache.has(f.sha256)) return;
    let last: unknown;
    let missing = 0;
    for (const source of this.opts.sources) {
      try {
        const t0 = performance.now();
        await this.cache.fetch(f.sha256, () => source.open(f), f.bytes);
        this.log.info({ kind: f.kind, name: f.name, sha256: f.sha256.slice(0, 12), from: source.label, ms: Math.round(performance.now() - t0) }, 'file fetched');
        return;
      } catch (e) {
        last = e;
        if (isLoraserveError(e) && e.code === 'NOT_FOUND') missing++;
        else this.log.warn({ kind: f.kind, name: f.name, from: source.label, err: String(e) }, 'file fetch failed');
      }
    }
    if (missing === this.opts.sources.length) {
      throw new LoraserveError(f.kind === 'lora' ? 'UNKNOWN_LORA' : 'NOT_FOUND', `${f.kind} '${f.name}' (sha256 ${f.sha256.slice(0, 12)}) is no longer on the API`, { name: f.name, sha256: f.sha256 });
    }
    throw last instanceof Error ? last : new LoraserveError('IO_FAILED', String(last));
  }

  private async syncNow(): Promise<void> {
    if (this.closed) return;
    const entries = await this.opts.manifest.manifest();
    const next = new Map(entries.map((e) => [key(e.kind, e.name), e]));
    for (const [k, old] of this.known) if (!next.has(k)) await this.apply({ kind: old.kind, name: old.name, file: old.file, deleted: true });
    // Views the cache holds that the manifest does not name (left from before a restart).
    const files = new Map(FILE_KINDS.map((kind) => [kind, new Set(entries.filter((e) => e.kind === kind).map((e) => e.file))]));
    for (const kind of FILE_KINDS) for (const file of [...this.cache.viewEntries(kind).keys()]) if (!files.get(kind)!.has(file)) await this.cache.unlink(kind, file);
    const failures: string[] = [];
    for (const e of entries) {
      try {
        await this.apply({ kind: e.kind, name: e.name, file: e.file, sha256: e.sha256, bytes: e.bytes });
      } catch (err) {
        failures.push(`${e.kind} ${e.name}: ${String(err)}`);
      }
    }
    this.syncs++;
    if (failures.length) this.log.warn({ failures }, 'file sync: some files could not be placed');
    this.log.debug({ files: entries.length }, 'file sync: manifest applied');
  }

  private async apply(n: Exclude<FileNotice, { resync: true }>): Promise<void> {
    const k = key(n.kind, n.name);
    const pin = n.kind === 'embedding' ? this.embeddingPins.get(n.file) : undefined;
    if ('deleted' in n) {
      this.known.delete(k);
      await this.cache.unlink(n.kind, n.file);
      if (pin) {
        pin.release();
        this.embeddingPins.delete(n.file);
      }
      return;
    }
    const old = this.known.get(k);
    if (old && old.file !== n.file) await this.cache.unlink(n.kind, old.file);
    this.known.set(k, { kind: n.kind, name: n.name, file: n.file, sha256: n.sha256, bytes: n.bytes });
    if (n.kind === 'embedding') {
      if (pin?.sha256 !== n.sha256) {
        const release = this.cache.pin(n.sha256);
        pin?.release();
        this.embeddingPins.set(n.file, { sha256: n.sha256, release });
      }
      await this.fetch(n);
      await this.cache.link(n.kind, n.file, n.sha256);
      return;
    }
    if (this.cache.has(n.sha256)) await this.cache.link(n.kind, n.file, n.sha256);
    else if (this.cache.viewed(n.kind, n.file) !== undefined) await this.cache.unlink(n.kind, n.file);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    for (const p of this.embeddingPins.values()) p.release();
    this.embeddingPins.clear();
    await this.chain.catch(() => undefined);
    await this.sub.quit().catch(() => this.sub.disconnect());
  }
}
