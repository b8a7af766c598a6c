/**
 * A render worker's content-addressed file cache: LoRA and embedding files it fetched, by sha256, with a size
 * bound, plus one "view" folder per kind that the existing loaders read unchanged (LoraLibrary's `loraDir`,
 * EmbeddingLibrary's `embeddingsDir`).
 *
 * ```
 * <root>/blobs/<sha256>            the bytes; written to <root>/tmp first, verified, fsynced, renamed
 * <root>/loras/<name>.safetensors  hard link to a blob (a copy where links are refused)
 * <root>/embeddings/<file>         likewise
 * ```
 *
 * - A blob exists only complete and verified: bytes stream to a temp file while hashing; a hash mismatch, a
 *   short body (truncated download) or a body longer than announced leaves nothing behind (IO_FAILED with
 *   `details.reason` = hash-mismatch | truncated | too-large).
 * - A view entry changes atomically: link (or copy) to a hidden temp name in the view folder, then rename over
 *   the name, so a loader scanning the folder sees the old file or the new one, never neither.
 * - The size bound is kept by evicting the least recently used blobs that no running job has pinned; a blob
 *   evicted takes its view entries with it (a hard link would otherwise keep its bytes on disk). A pinned blob
 *   is never evicted, so the bound can be exceeded while the pinned set alone exceeds it.
 * - Concurrent fetches of one hash share one download.
 */
import { createHash, randomBytes } from 'node:crypto';
import { copyFile, link, mkdir, open, readdir, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { LoraserveError, isLoraserveError } from '../core/errors.js';
import { type Logger, silentLogger } from '../core/logger.js';
import { checkSha256, checkViewFileName, type FileKind } from './file-wire.js';

export interface FileCacheOptions {
  root: string;
  /** Upper bound of the blobs' total size (pinned blobs may exceed it while pinned). */
  maxBytes: number;
  logger?: Logger;
}

export interface FileCacheStats {
  bytes: number;
  blobs: number;
  maxBytes: number;
  pinned: number;
  evictions: number;
}

interface Blob {
  bytes: number;
  lastUse: number;
  pins: number;
}

const VIEW_DIRS: Record<FileKind, string> = { lora: 'loras', embedding: 'embeddings' };

function fail(reason: string, message: string, details: Record<string, unknown> = {}): LoraserveError {
  return new LoraserveError('IO_FAILED', message, { reason, ...details });
}

export class FileCache {
  readonly root: string;
  readonly maxBytes: number;
  private readonly log: Logger;
  private readonly blobs = new Map<string, Blob>();
  private readonly views: Record<FileKind, Map<string, string>> = { lora: new Map(), embedding: new Map() };
  private readonly inflight = new Map<string, Promise<void>>();
  /** Pins taken before the blob exists (a job pins, then fetches). */
  private readonly earlyPins = new Map<string, number>();
  private total = 0;
  private evictions = 0;
  private clock = 0;

  private constructor(opts: FileCacheOptions) {
    this.root = opts.root;
    this.maxBytes = opts.maxBytes;
    this.log = opts.logger ?? silentLogger;
  }

  /**
   * Opens (creating) the cache folder: blobs left by an earlier run are kept (their last use is their atime),
   * temp files removed, and view entries kept only where they are a hard link of a known blob.
   */
  static async open(opts: FileCacheOptions): Promise<FileCache> {
    const c = new FileCache(opts);
    await rm(c.tmpDir, { recursive: true, force: true });
    for (const d of [c.blobDir, c.tmpDir, c.viewDir('lora'), c.viewDir('embedding')]) await mkdir(d, { recursive: true });
    const byIno = new Map<number, string>();
    for (const name of await readdir(c.blobDir)) {
      const p = join(c.blobDir, name);
      if (!/^[0-9a-f]{64}$/.test(name)) {
        await rm(p, { force: true, recursive: true });
        continue;
      }
      const st = await stat(p);
      c.blobs.set(name, { bytes: st.size, lastUse: st.atimeMs, pins: 0 });
      c.total += st.size;
      byIno.set(st.ino, name);
    }
    // Continue the clock after the newest last use, so order survives a restart.
    c.clock = Math.max(0, ...[...c.blobs.values()].map((b) => b.lastUse));
    for (const kind of Object.keys(VIEW_DIRS) as FileKind[]) {
      for (const file of await readdir(c.viewDir(kind))) {
        const p = join(c.viewDir(kind), file);
        const sha = file.startsWith('.') ? undefined : byIno.get((await stat(p)).ino);
        if (sha) c.views[kind].set(file, sha);
        else await rm(p, { force: true, recursive: true });
      }
    }
    await c.evict();
    return c;
  }

  get blobDir(): string {
    return join(this.root, 'blobs');
  }

  private get tmpDir(): string {
    return join(this.root, 'tmp');
  }

  /** The folder a loader reads for this kind (LoraLibrary's loraDir, EmbeddingLibrary's embeddingsDir). */
  viewDir(kind: FileKind): string {
    return join(this.root, VIEW_DIRS[kind]);
  }

  blobPath(sha256: string): string {
    return join(this.blobDir, checkSha256(sha256));
  }

  has(sha256: string): boolean {
    return this.blobs.has(sha256);
  }

  /** The hash a view name points at, if any. */
  viewed(kind: FileKind, file: string): string | undefined {
    return this.views[kind].get(file);
  }

  viewEntries(kind: FileKind): ReadonlyMap<string, string> {
    return this.views[kind];
  }

  stats(): FileCacheStats {
    let pinned = 0;
    for (const b of this.blobs.values()) if (b.pins > 0) pinned++;
    return { bytes: this.total, blobs: this.blobs.size, maxBytes: this.maxBytes, pinned, evictions: this.evictions };
  }

  /**
   * Keeps a blob from eviction until the returned release is called (idempotent). May be taken before the
   * blob exists: a job pins what it needs, then fetches it.
   */
  pin(sha256: string): () => void {
    checkSha256(sha256);
    const b = this.blobs.get(sha256);
    if (b) {
      b.pins++;
      this.touch(sha256);
    } else this.earlyPins.set(sha256, (this.earlyPins.get(sha256) ?? 0) + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const blob = this.blobs.get(sha256);
      if (blob && blob.pins > 0) blob.pins--;
      else {
        const n = (this.earlyPins.get(sha256) ?? 1) - 1;
        if (n > 0) this.earlyPins.set(sha256, n);
        else this.earlyPins.delete(sha256);
      }
      this.evict().catch((e) => this.log.warn({ err: String(e) }, 'file cache eviction failed'));
    };
  }

  /**
   * Stores a blob from `open()`'s body unless it is present (concurrent calls for one hash share one
   * download). The body is hashed as it is written; `bytes`, when given, is the exact size expected.
   */
  fetch(sha256: string, openBody: () => Promise<AsyncIterable<Uint8Array>>, bytes?: number): Promise<void> {
    checkSha256(sha256);
    if (this.blobs.has(sha256)) {
      this.touch(sha256);
      return Promise.resolve();
    }
    let p = this.inflight.get(sha256);
    if (!p) {
      p = (async () => this.write(sha256, await openBody(), bytes))().finally(() => this.inflight.delete(sha256));
      this.inflight.set(sha256, p);
    }
    return p;
  }

  private async write(sha256: string, body: AsyncIterable<Uint8Array>, expected?: number): Promise<void> {
    const tmp = join(this.tmpDir, `${sha256}.${randomBytes(4).toString('hex')}.part`);
    const fh = await open(tmp, 'wx', 0o644);
    const hash = createHash('sha256');
    let n = 0;
    let closed = false;
    try {
      for await (const chunk of body) {
        n += chunk.byteLength;
        if (expected !== undefined && n > expected) throw fail('too-large', `file ${sha256.slice(0, 12)}: more than the ${expected} bytes announced`, { sha256, bytes: expected });
        hash.update(chunk);
        let off = 0;
        while (off < chunk.byteLength) off += (await fh.write(chunk, off, chunk.byteLength - off)).bytesWritten;
      }
      if (expected !== undefined && n < expected) throw fail('truncated', `file ${sha256.slice(0, 12)}: ${n} of ${expected} bytes arrived`, { sha256, bytes: expected, received: n });
      const got = hash.digest('hex');
      if (got !== sha256) throw fail('hash-mismatch', `file ${sha256.slice(0, 12)}: the bytes received hash to ${got.slice(0, 12)}`, { sha256, received: got });
      await fh.sync();
      await fh.close();
      closed = true;
      await rename(tmp, join(this.blobDir, sha256));
    } catch (e) {
      if (!closed) await fh.close().catch(() => undefined);
      await rm(tmp, { force: true });
      if (isLoraserveError(e)) throw e;
      throw fail('download', `file ${sha256.slice(0, 12)}: ${(e as Error).message ?? String(e)}`, { sha256, received: n });
    }
    const pins = this.earlyPins.get(sha256) ?? 0;
    this.earlyPins.delete(sha256);
    this.blobs.set(sha256, { bytes: n, lastUse: ++this.clock, pins });
    this.total += n;
    this.touch(sha256);
    await this.evict();
  }

  /** Points a view name at a present blob (replacing what it pointed at), atomically; false when it already did. */
  async link(kind: FileKind, file: string, sha256: string): Promise<boolean> {
    checkViewFileName(file);
    if (!this.blobs.has(checkSha256(sha256))) throw new LoraserveError('NOT_FOUND', `file ${sha256.slice(0, 12)} is not in the cache`, { sha256 });
    if (this.views[kind].get(file) === sha256) {
      this.touch(sha256);
      return false;
    }
    const dest = join(this.viewDir(kind), file);
    const tmp = join(this.viewDir(kind), `.${file}.${randomBytes(4).toString('hex')}.tmp`);
    try {
      try {
        await link(this.blobPath(sha256), tmp);
      } catch {
        await copyFile(this.blobPath(sha256), tmp); // another filesystem, or links refused
      }
      await rename(tmp, dest);
    } catch (e) {
      await rm(tmp, { force: true });
      throw fail('view', `cannot place ${file} in ${this.viewDir(kind)}: ${(e as Error).message}`, { file });
    }
    this.views[kind].set(file, sha256);
    this.touch(sha256);
    return true;
  }

  /** Removes a view name; false when there was none. */
  async unlink(kind: FileKind, file: string): Promise<boolean> {
    checkViewFileName(file);
    const had = this.views[kind].delete(file);
    await rm(join(this.viewDir(kind), file), { force: true });
    return had;
  }

  /** Evicts least recently used unpinned blobs (and their view entries) until the total fits the bound. */
  async evict(): Promise<string[]> {
    if (this.total <= this.maxBytes) return [];
    const victims = [...this.blobs.entries()].filter(([sha, b]) => b.pins === 0 && !this.inflight.has(sha)).sort((a, b) => a[1].lastUse - b[1].lastUse);
    const out: string[] = [];
    for (const [sha, b] of victims) {
      if (this.total <= this.maxBytes) break;
      for (const kind of Object.keys(VIEW_DIRS) as FileKind[]) {
        for (const [file, s] of this.views[kind]) if (s === sha) await this.unlink(kind, file);
      }
      // Re-check: a pin may have arrived while view entries were removed.
      if (b.pins > 0) continue;
      this.blobs.delete(sha);
      this.total -= b.bytes;
      this.evictions++;
      await rm(join(this.blobDir, sha), { force: true });
      out.push(sha);
    }
    if (out.length) this.log.debug({ evicted: out.map((s) => s.slice(0, 12)), bytes: this.total, maxBytes: this.maxBytes }, 'file cache evicted blobs');
    return out;
  }

  private touch(sha256: string): void {
    const b = this.blobs.get(sha256);
    if (!b) return;
    b.lastUse = Math.max(++this.clock, Date.now());
    this.clock = b.lastUse;
    // Not written back to the file's times: the LoRA loader keys its caches on mtime, and rewriting times
    // loses their sub-millisecond part. After a restart the order starts from the blobs' atimes.
  }
}
