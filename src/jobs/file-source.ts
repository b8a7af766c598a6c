/**
 * Where a render worker gets library files it lacks: the API process over HTTP (`/internal/v1/files`, the
 * manifest and the bytes by sha256), or a shared folder when one is mounted (`<dir>/<file>`). A source only
 * delivers bytes; the cache (src/jobs/file-cache.ts) verifies them against the hash while writing, so a file
 * changed in a shared folder, a proxy's error page or a cut connection never becomes a cached blob.
 */
import { open } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { LoraserveError } from '../core/errors.js';
import { checkViewFileName, type FileEntry, type FileKind, type FileRef, refFile } from './file-wire.js';

export interface FileSource {
  /** Names this source in logs and errors. */
  readonly label: string;
  /** The bytes of a file (NOT_FOUND when the source has no file with this hash). */
  open(ref: FileRef): Promise<AsyncIterable<Uint8Array>>;
}

export interface ManifestSource {
  manifest(): Promise<FileEntry[]>;
}

export interface HttpFileSourceOptions {
  /** The API's base URL, e.g. `http://api:7860`. */
  apiUrl: string;
  /** The API key (`Authorization: Bearer`), when the API requires one. */
  apiKey?: string;
  /** Limit for the API to answer (headers; the body may take longer). Default 30 s. */
  timeoutMs?: number;
}

/** The API process as manifest and blob source. */
export class HttpFileSource implements FileSource, ManifestSource {
  readonly label: string;
  private readonly base: string;

  constructor(private readonly opts: HttpFileSourceOptions) {
    this.base = opts.apiUrl.replace(/\/+$/, '');
    this.label = `api ${this.base}`;
  }

  private async get(path: string): Promise<Response> {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(new Error(`no answer within ${this.opts.timeoutMs ?? 30_000} ms`)), this.opts.timeoutMs ?? 30_000);
    try {
      return await fetch(`${this.base}${path}`, {
        headers: this.opts.apiKey ? { authorization: `Bearer ${this.opts.apiKey}` } : {},
        signal: ctl.signal,
      });
    } catch (e) {
      throw new LoraserveError('IO_FAILED', `cannot reach the API at ${this.base}: ${(e as Error).message}`, { reason: 'unreachable', url: this.base });
    } finally {
      clearTimeout(timer);
    }
  }

  private async fail(res: Response, what: string): Promise<never> {
    const text = await res.text().catch(() => '');
    let code: string | undefined;
    try {
      code = (JSON.parse(text) as { error?: { code?: string } }).error?.code;
    } catch {
      // not our error shape
    }
    if (res.status === 404) throw new LoraserveError('NOT_FOUND', `${what}: the API has no such file`, { status: res.status, code });
    throw new LoraserveError('IO_FAILED', `${what}: the API answered ${res.status}${code ? ` ${code}` : ''}`, { reason: 'http', status: res.status, code });
  }

  async manifest(): Promise<FileEntry[]> {
    const res = await this.get('/internal/v1/files');
    if (!res.ok) return this.fail(res, 'file manifest');
    return ((await res.json()) as { files: FileEntry[] }).files;
  }

  async open(ref: FileRef): Promise<AsyncIterable<Uint8Array>> {
    const res = await this.get(`/internal/v1/files/${ref.sha256}`);
    if (!res.ok || !res.body) return this.fail(res, `${ref.kind} '${ref.name}'`);
    return Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>);
  }
}

/** A shared folder per kind (the API's LoRA folder and embeddings folder, mounted on the worker). */
export class FolderFileSource implements FileSource {
  readonly label: string;

  constructor(private readonly dirs: Partial<Record<FileKind, string>>) {
    this.label = `folder ${Object.values(dirs).filter(Boolean).join(', ')}`;
  }

  async open(ref: FileRef): Promise<AsyncIterable<Uint8Array>> {
    const dir = this.dirs[ref.kind];
    if (!dir) throw new LoraserveError('NOT_FOUND', `no shared folder for ${ref.kind} files`, { kind: ref.kind });
    const path = join(dir, checkViewFileName(refFile(ref)));
    const fh = await open(path, 'r').catch((e: NodeJS.ErrnoException) => {
      throw new LoraserveError(e.code === 'ENOENT' ? 'NOT_FOUND' : 'IO_FAILED', `cannot read ${path}: ${e.message}`, { path });
    });
    return fh.createReadStream({ highWaterMark: 1 << 20, autoClose: true });
  }
}
