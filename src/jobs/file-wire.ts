/**
 * What the API process and render workers agree on to move LoRA and embedding files without a shared disk:
 * the manifest entry, the change notice published on Redis, and the names a file may have.
 *
 * Files are addressed by sha256 of their bytes: the API names the file a job needs by name *and* hash, a worker
 * fetches that hash (from the API over HTTP, or from a shared folder), verifies it while writing, and keeps it in
 * a content-addressed cache (src/jobs/file-cache.ts). Names are only views onto hashes.
 */
import { LoraserveError } from '../core/errors.js';

export type FileKind = 'lora' | 'embedding';
export const FILE_KINDS: readonly FileKind[] = ['lora', 'embedding'];

/** A named file of a kind, by content hash. `file` is the name in the folder (`<name>.safetensors` for LoRAs). */
export interface FileRef {
  kind: FileKind;
  name: string;
  sha256: string;
  /** File name inside the kind's folder; defaults to `<name>.safetensors`. */
  file?: string;
  /** Size in bytes, when known (a fetch longer than this is cut off, a shorter one is truncated). */
  bytes?: number;
}

/** One line of the API's manifest (`GET /internal/v1/files`). */
export interface FileEntry {
  kind: FileKind;
  name: string;
  file: string;
  sha256: string;
  bytes: number;
}

/** Published on `fileChannel()` when the API's folders change: a name now points at a hash, or is gone. */
export type FileNotice = ({ kind: FileKind; name: string; file: string } & ({ sha256: string; bytes: number } | { deleted: true })) | { resync: true };

/** The notice channel, beside the queue's other `lsv` keys (src/jobs/bullmq-wire.ts wireKeys). */
export function fileChannel(prefix: string, queueName: string): string {
  return `${prefix}:${queueName}:lsv:files`;
}

const SHA256 = /^[0-9a-f]{64}$/;

export function isSha256(s: string): boolean {
  return SHA256.test(s);
}

export function checkSha256(s: string): string {
  if (!SHA256.test(s)) throw new LoraserveError('INVALID_ARGUMENT', `not a sha256 (64 lowercase hex digits): '${s.slice(0, 80)}'`, { sha256: s.slice(0, 80) });
  return s;
}

/**
 * A file name a view folder may hold: one path segment, not hidden, no separators or control characters
 * (a name from Redis or HTTP never reaches outside the cache folder).
 */
export function checkViewFileName(file: string): string {
  // eslint-disable-next-line no-control-regex
  if (!file || file.length > 255 || file.startsWith('.') || /[/\\\u0000-\u001f\u007f]/.test(file) || file === '..') {
    throw new LoraserveError('INVALID_ARGUMENT', `not a plain file name: '${file.slice(0, 80)}'`, { file: file.slice(0, 80) });
  }
  return file;
}

export function refFile(ref: Pick<FileRef, 'name' | 'file'>): string {
  return ref.file ?? `${ref.name}.safetensors`;
}

export function parseFileNotice(text: string): FileNotice | undefined {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!o || typeof o !== 'object') return undefined;
  const n = o as Record<string, unknown>;
  if (n.resync === true) return { resync: true };
  if ((n.kind !== 'lora' && n.kind !== 'embedding') || typeof n.name !== 'string' || typeof n.file !== 'string') return undefined;
  if (n.deleted === true) return { kind: n.kind, name: n.name, file: n.file, deleted: true };
  if (typeof n.sha256 === 'string' && isSha256(n.sha256) && typeof n.bytes === 'number') return { kind: n.kind, name: n.name, file: n.file, sha256: n.sha256, bytes: n.bytes };
  return undefined;
}
