/**
 * The LoRA folder: every `*.safetensors` in one directory, named by file stem (A1111's name) with kohya's
 * `ss_output_name` as an alias (A1111 `extensions-builtin/Lora/network.py` NetworkOnDisk.alias).
 *
 * - A scan reads only headers (a few KB per file); tensors are read when a LoRA is first used, parsed
 *   against the model's targets, and kept in a byte-bounded LRU (the engine keeps whatever it derives).
 * - Hashes (A1111 short hash and full sha256) are computed lazily and cached by (path, size, mtime).
 * - `watch()` follows the folder with fs.watch, debounced; a file that fails to parse (a half-copied
 *   download, a broken file) is reported and left out, never fatal, and retried on its next change.
 * - Names with path separators or `..` are refused: a name never reaches outside the folder.
 */
import { type FSWatcher, watch as fsWatch } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { extname, join, resolve as resolvePath } from 'node:path';
import { LoraserveError, toLoraserveError } from '../core/errors.js';
import { type Logger, silentLogger } from '../core/logger.js';
import { parseLora, type ParseLoraOptions } from './adapter.js';
import { ByteLru } from './byte-lru.js';
import { computeLoraHashes, type LoraHashes } from './hashes.js';
import { loraInfoFromHeader } from './info.js';
import { closestNames, validateLoraName } from './names.js';
import { readSafetensorsHeader } from './safetensors.js';
import type { LoraAdapter, LoraInfo, LoraTarget } from './types.js';

export { loraHashesInfotext } from './hashes.js';

export interface LoraFileEntry {
  /** File stem: the name A1111 and our requests use. */
  name: string;
  /** `ss_output_name` when present (may equal the stem). */
  alias: string | null;
  /** Absolute path. */
  file: string;
  size: number;
  mtimeMs: number;
  info: LoraInfo;
}

export interface LoraLibraryFailure {
  /** Stem of the file that failed. */
  name: string;
  file: string;
  error: { code: string; message: string };
}

export interface LibraryChange {
  added: string[];
  removed: string[];
  changed: string[];
  /** Files that are present but could not be read (new failures and failures that persist). */
  failed: LoraLibraryFailure[];
}

export interface LoraLibraryOptions {
  logger?: Logger;
  /** Byte budget of parsed adapters kept in memory (default 1 GiB). */
  cacheBytes?: number;
  /** Quiet time after the last file event before rescanning (default 250 ms). */
  debounceMs?: number;
}

const EXTENSION = '.safetensors';
const SCAN_CONCURRENCY = 8;

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (t: T) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

function errorJson(e: unknown): { code: string; message: string } {
  const le = toLoraserveError(e, 'LORA_INVALID');
  return { code: le.code, message: le.message };
}

/** The parsed-adapter cache key: this file's current version, parsed for these targets. */
function adapterKey(e: LoraFileEntry, targets: readonly LoraTarget[]): string {
  return `${e.file}|${e.size}|${e.mtimeMs}|${targetsKey(targets)}`;
}

/** A stable fingerprint of a target list, so adapters parsed for one model are not served to another. */
const targetKeys = new WeakMap<readonly LoraTarget[], string>();
function targetsKey(targets: readonly LoraTarget[]): string {
  let k = targetKeys.get(targets);
  if (k === undefined) {
    const h = createHash('sha1');
    for (const t of targets) h.update(`${t.part}|${t.module}|${t.kind}|${t.inFeatures}|${t.outFeatures}|${t.kernel?.join('x') ?? ''}\n`);
    k = h.digest('hex');
    targetKeys.set(targets, k);
  }
  return k;
}

export class LoraLibrary {
  readonly dir: string;
  private readonly log: Logger;
  private readonly debounceMs: number;
  private entries = new Map<string, LoraFileEntry>();
  private failed = new Map<string, LoraLibraryFailure>();
  private readonly adapters: ByteLru<string, LoraAdapter>;
  private readonly inflight = new Map<string, Promise<LoraAdapter>>();
  private readonly hashCache = new Map<string, { size: number; mtimeMs: number; hashes: Promise<LoraHashes> }>();
  private readonly listeners = new Set<(c: LibraryChange) => void>();
  private scanning: Promise<LibraryChange> | undefined;
  private queued: Promise<LibraryChange> | undefined;
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(dir: string, options: LoraLibraryOptions = {}) {
    this.dir = resolvePath(dir);
    this.log = options.logger ?? silentLogger;
    this.debounceMs = options.debounceMs ?? 250;
    this.adapters = new ByteLru(options.cacheBytes ?? 1 << 30);
  }

  /** A library with its first scan done. */
  static async open(dir: string, options: LoraLibraryOptions = {}): Promise<LoraLibrary> {
    const lib = new LoraLibrary(dir, options);
    await lib.scan();
    return lib;
  }

  /** Re-reads the folder (headers of new or changed files only). A call during a scan waits for one more scan after it. */
  scan(): Promise<LibraryChange> {
    if (this.scanning) {
      this.queued ??= this.scanning
        .catch(() => undefined)
        .then(() => {
          this.queued = undefined;
          return this.scan();
        });
      return this.queued;
    }
    this.scanning = this.scanOnce().finally(() => {
      this.scanning = undefined;
    });
    return this.scanning;
  }

  private async scanOnce(): Promise<LibraryChange> {
    let names: string[];
    try {
      names = (await readdir(this.dir, { withFileTypes: true }))
        .filter((d) => (d.isFile() || d.isSymbolicLink()) && !d.name.startsWith('.') && extname(d.name).toLowerCase() === EXTENSION)
        .map((d) => d.name)
        .sort();
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new LoraserveError('IO_FAILED', `cannot read LoRA folder ${this.dir}: ${(e as Error).message}`);
      this.log.warn({ dir: this.dir }, 'LoRA folder does not exist; the library is empty');
      names = [];
    }

    const results = await mapLimit(names, SCAN_CONCURRENCY, async (fileName) => {
      const file = join(this.dir, fileName);
      const name = fileName.slice(0, -EXTENSION.length);
      try {
        const st = await stat(file);
        if (!st.isFile()) return undefined;
        const old = this.entries.get(name);
        if (old && old.file === file && old.size === st.size && old.mtimeMs === st.mtimeMs) return { entry: old };
        const header = await readSafetensorsHeader(file, fileName);
        const info = loraInfoFromHeader(header);
        const entry: LoraFileEntry = { name, alias: info.outputName, file, size: st.size, mtimeMs: st.mtimeMs, info };
        return { entry };
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined; // removed while scanning
        return { failure: { name, file, error: errorJson(e) } satisfies LoraLibraryFailure };
      }
    });

    const next = new Map<string, LoraFileEntry>();
    const failed = new Map<string, LoraLibraryFailure>();
    for (const r of results) {
      if (!r) continue;
      if ('failure' in r && r.failure) {
        failed.set(r.failure.name, r.failure);
        continue;
      }
      if ('entry' in r && r.entry) {
        if (next.has(r.entry.name)) {
          failed.set(r.entry.name, {
            name: r.entry.name,
            file: r.entry.file,
            error: { code: 'INVALID_FILE', message: `${r.entry.file}: another file already has the name '${r.entry.name}'` },
          });
          continue;
        }
        next.set(r.entry.name, r.entry);
      }
    }

    const change: LibraryChange = { added: [], removed: [], changed: [], failed: [...failed.values()] };
    for (const [name, e] of next) {
      const old = this.entries.get(name);
      if (!old) change.added.push(name);
      else if (old !== e) change.changed.push(name);
    }
    for (const [name, old] of this.entries) {
      if (!next.has(name)) change.removed.push(name);
      if (!next.has(name) || next.get(name) !== old) this.forget(old.file);
    }
    const newFailures = [...failed.keys()].filter((n) => this.failed.get(n)?.error.message !== failed.get(n)?.error.message);
    this.entries = next;
    this.failed = failed;

    for (const f of change.failed) if (newFailures.includes(f.name)) this.log.warn({ file: f.file, code: f.error.code }, `LoRA not loaded: ${f.error.message}`);
    if (change.added.length + change.removed.length + change.changed.length + newFailures.length > 0) {
      this.log.info({ added: change.added, removed: change.removed, changed: change.changed, failed: newFailures }, `LoRA library: ${next.size} LoRAs`);
      for (const l of this.listeners) {
        try {
          l(change);
        } catch (e) {
          this.log.error({ err: String(e) }, 'LoRA library listener failed');
        }
      }
    }
    return change;
  }

  /** Drops cached adapters and hashes of a file that changed or went away. */
  private forget(file: string): void {
    this.adapters.deleteWhere((k) => k.startsWith(`${file}|`));
    this.hashCache.delete(file);
  }

  /** All readable LoRAs, by name. */
  list(): LoraFileEntry[] {
    return [...this.entries.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Files present but unreadable, with why. */
  failures(): LoraLibraryFailure[] {
    return [...this.failed.values()];
  }

  /**
   * Finds a LoRA by what a user typed: the exact stem, then the stem ignoring case, then the alias
   * (exact, then ignoring case). An ambiguous case-insensitive or alias match finds nothing.
   */
  get(name: string): LoraFileEntry | undefined {
    validateLoraName(name);
    const exact = this.entries.get(name);
    if (exact) return exact;
    const lower = name.toLowerCase();
    const unique = (list: LoraFileEntry[]): LoraFileEntry | undefined => (list.length === 1 ? list[0] : undefined);
    const all = [...this.entries.values()];
    const ci = all.filter((e) => e.name.toLowerCase() === lower);
    if (ci.length > 0) return unique(ci);
    const alias = all.filter((e) => e.alias === name);
    if (alias.length > 0) return unique(alias);
    return unique(all.filter((e) => e.alias !== null && e.alias.toLowerCase() === lower));
  }

  /** Like get(), but an unknown name is UNKNOWN_LORA with suggestions, and an unreadable file says why. */
  resolve(name: string): LoraFileEntry {
    const entry = this.get(name);
    if (entry) return entry;
    const failure = this.failed.get(name) ?? [...this.failed.values()].find((f) => f.name.toLowerCase() === name.toLowerCase());
    if (failure) {
      throw new LoraserveError('LORA_INVALID', `LoRA '${name}' could not be read: ${failure.error.message}`, { name, file: failure.file, cause: failure.error });
    }
    const suggestions = this.closest(name);
    const hint = suggestions.length > 0 ? `; did you mean ${suggestions.join(', ')}?` : ` (${this.entries.size} LoRAs in ${this.dir})`;
    throw new LoraserveError('UNKNOWN_LORA', `unknown LoRA '${name}'${hint}`, { name, suggestions });
  }

  /** Up to n names (stems or aliases) close to `name`. */
  closest(name: string, n = 3): string[] {
    const candidates: string[] = [];
    for (const e of this.list()) {
      candidates.push(e.name);
      if (e.alias && e.alias !== e.name) candidates.push(e.alias);
    }
    return closestNames(name, candidates, n);
  }

  /** A1111 short hash and full sha256, computed once per (path, size, mtime). */
  hashes(name: string): Promise<LoraHashes> {
    let e: LoraFileEntry;
    try {
      e = this.resolve(name);
    } catch (err) {
      return Promise.reject(err);
    }
    const cached = this.hashCache.get(e.file);
    if (cached && cached.size === e.size && cached.mtimeMs === e.mtimeMs) return cached.hashes;
    const hashes = computeLoraHashes(e.file);
    this.hashCache.set(e.file, { size: e.size, mtimeMs: e.mtimeMs, hashes });
    hashes.catch(() => {
      if (this.hashCache.get(e.file)?.hashes === hashes) this.hashCache.delete(e.file);
    });
    return hashes;
  }

  /** The parsed adapter of a LoRA for a model's targets (cached; concurrent loads share one parse). */
  load(name: string, targets: readonly LoraTarget[], options?: ParseLoraOptions): Promise<LoraAdapter> {
    let e: LoraFileEntry;
    try {
      e = this.resolve(name);
    } catch (err) {
      return Promise.reject(err);
    }
    const key = adapterKey(e, targets);
    const hit = this.adapters.get(key);
    if (hit) return Promise.resolve(hit);
    const running = this.inflight.get(key);
    if (running) return running;
    const p = (async () => {
      const bytes = await readFile(e.file).catch((err: NodeJS.ErrnoException) => {
        throw new LoraserveError('IO_FAILED', `cannot read LoRA '${e.name}' (${e.file}): ${err.message}`, { name: e.name });
      });
      const adapter = parseLora(e.name, bytes, targets, options);
      // Keep it only if the file is still the one scanned (a change rescans and would drop it anyway).
      if (this.entries.get(e.name) === e) this.adapters.set(key, adapter, adapter.bytes);
      return adapter;
    })().finally(() => this.inflight.delete(key));
    this.inflight.set(key, p);
    return p;
  }

  /** Names whose current file is parsed for these targets and held in the cache (what a worker has warm). */
  cachedNames(targets: readonly LoraTarget[]): string[] {
    const out: string[] = [];
    for (const e of this.entries.values()) if (this.adapters.has(adapterKey(e, targets))) out.push(e.name);
    return out.sort();
  }

  /** Bytes and count of parsed adapters held. */
  cacheStats(): { bytes: number; entries: number; maxBytes: number } {
    return { bytes: this.adapters.bytes, entries: this.adapters.size, maxBytes: this.adapters.maxBytes };
  }

  /** Calls `listener` after every scan that changed something; returns an unsubscribe function. */
  onChange(listener: (c: LibraryChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Follows the folder for added, removed and changed files (debounced rescans). Idempotent. */
  watch(listener?: (c: LibraryChange) => void): void {
    if (listener) this.onChange(listener);
    if (this.watcher) return;
    try {
      this.watcher = fsWatch(this.dir, { persistent: false }, () => this.scheduleScan());
      this.watcher.on('error', (e) => this.log.warn({ dir: this.dir, err: String(e) }, 'LoRA folder watch failed'));
    } catch (e) {
      this.log.warn({ dir: this.dir, err: String(e) }, 'cannot watch the LoRA folder; new files appear after a rescan');
    }
  }

  private scheduleScan(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.scan().catch((e) => this.log.error({ err: String(e) }, 'LoRA folder rescan failed'));
    }, this.debounceMs);
  }

  /** Stops watching and drops caches. */
  close(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.watcher?.close();
    this.watcher = undefined;
    this.listeners.clear();
    this.adapters.clear();
  }
}
