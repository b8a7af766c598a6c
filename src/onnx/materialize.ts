/**
 * Turns a rewritten ModelProto into something onnxruntime can open, without copying weights.
 *
 * onnxruntime resolves external data relative to the model file's folder and refuses paths that leave it,
 * so a rewritten graph that keeps pointing at the original weights file must sit beside that file:
 *   1. no external data → the encoded bytes (sessions open from memory);
 *   2. a cache folder with hard links to the external files (same filesystem; nothing copied);
 *   3. the model's own folder, if writable (`model.<tag>.onnx` beside model.onnx);
 *   4. otherwise a copy of the external files into the cache folder (logged: it costs disk).
 */
import { createHash, randomBytes } from 'node:crypto';
import { accessSync, closeSync, constants, copyFileSync, existsSync, linkSync, mkdirSync, mkdtempSync, openSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { tmpdir } from 'node:os';
import type { Logger } from '../core/logger.js';
import { silentLogger } from '../core/logger.js';
import { encodeModel, externalDataOf, onnx, resolveExternalLocation } from './proto.js';

export type MaterializedModel = { kind: 'bytes'; bytes: Uint8Array } | { kind: 'file'; path: string; how: 'hardlink' | 'beside' | 'copy' };

export interface MaterializeOptions {
  /** Folder of the original model.onnx (external locations are relative to it). */
  modelDir: string;
  /** Short tag naming the rewrite, e.g. `lora` → model.lora.onnx. */
  tag: string;
  cacheRoot?: string;
  logger?: Logger;
}

export function defaultCacheRoot(): string {
  return process.env.LORASERVE_CACHE_DIR ?? join(tmpdir(), `loraserve-cache-${process.getuid?.() ?? 'user'}`);
}

function externalLocations(model: onnx.IModelProto): string[] {
  const locs = new Set<string>();
  for (const t of model.graph?.initializer ?? []) {
    const ext = externalDataOf(t);
    if (ext) locs.add(ext.location);
  }
  return [...locs];
}

function writeAtomic(path: string, bytes: Uint8Array): void {
  // pid alone is not unique across containers sharing a volume (every replica's node may be PID 1).
  const tmp = `${path}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  writeFileSync(tmp, bytes);
  renameSync(tmp, path);
}

function canWrite(dir: string): boolean {
  try {
    accessSync(dir, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

export function materializeModel(model: onnx.IModelProto, opts: MaterializeOptions): MaterializedModel {
  const logger = opts.logger ?? silentLogger;
  const locations = externalLocations(model);
  const bytes = encodeModel(model);
  if (locations.length === 0) return { kind: 'bytes', bytes };

  const sources = locations.map((loc) => ({ loc, path: resolveExternalLocation(opts.modelDir, loc) }));
  const key = createHash('sha256')
    .update(opts.modelDir)
    .update(bytes)
    .update(JSON.stringify(sources.map((s) => [s.loc, statSync(s.path).size, statSync(s.path).mtimeMs])))
    .digest('hex')
    .slice(0, 16);
  const cacheDir = join(opts.cacheRoot ?? defaultCacheRoot(), `${basename(opts.modelDir)}-${opts.tag}-${key}`);

  // 2. hard links in the cache
  try {
    mkdirSync(cacheDir, { recursive: true });
    for (const s of sources) {
      const dest = join(cacheDir, s.loc);
      mkdirSync(dirname(dest), { recursive: true });
      if (!existsSync(dest)) linkSync(s.path, dest);
    }
    const path = join(cacheDir, 'model.onnx');
    writeAtomic(path, bytes);
    return { kind: 'file', path, how: 'hardlink' };
  } catch (e) {
    logger.debug({ cacheDir, error: (e as Error).message }, 'hard links to model weights not possible');
  }

  // 3. beside the original
  if (canWrite(opts.modelDir)) {
    const path = join(opts.modelDir, `model.${opts.tag}.onnx`);
    writeAtomic(path, bytes);
    return { kind: 'file', path, how: 'beside' };
  }

  // 4. copy
  rmSync(cacheDir, { recursive: true, force: true });
  mkdirSync(cacheDir, { recursive: true });
  let copied = 0;
  for (const s of sources) {
    const dest = join(cacheDir, s.loc);
    mkdirSync(dirname(dest), { recursive: true });
    copyFileSync(s.path, dest);
    copied += statSync(dest).size;
  }
  logger.warn({ cacheDir, bytes: copied }, 'model folder is read-only and on another filesystem than the cache: copied its weights for the LoRA graph');
  const path = join(cacheDir, 'model.onnx');
  writeAtomic(path, bytes);
  return { kind: 'file', path, how: 'copy' };
}

export interface VariantOptions {
  modelDir: string;
  /** Initializer name → its new bytes (same dims and dtype), written to one new external-data file. */
  replacements: ReadonlyMap<string, Uint8Array>;
  cacheRoot?: string;
  logger?: Logger;
}

export interface MaterializedVariant {
  path: string;
  /** Removes the private folder (once the session is open). */
  remove(): void;
}

/**
 * A one-off copy of an external-data model with some initializers replaced (merged LoRA weights): a private
 * folder holding hard links to the original external files (copies if linking fails, logged), one new file
 * with the replacements, and the model pointing at both. Unique per call, so concurrent builds never meet.
 */
export function materializeVariant(model: onnx.IModelProto, opts: VariantOptions): MaterializedVariant {
  const logger = opts.logger ?? silentLogger;
  const root = opts.cacheRoot ?? defaultCacheRoot();
  mkdirSync(root, { recursive: true });
  const dir = mkdtempSync(join(root, `${basename(opts.modelDir)}-variant-`));
  const remove = () => rmSync(dir, { recursive: true, force: true });
  try {
    const locations = externalLocations(model);
    for (const loc of locations) {
      const src = resolveExternalLocation(opts.modelDir, loc);
      const dest = join(dir, loc);
      mkdirSync(dirname(dest), { recursive: true });
      try {
        linkSync(src, dest);
      } catch (e) {
        logger.warn({ src, error: (e as Error).message }, 'cannot hard-link model weights for a merged LoRA graph; copying them');
        copyFileSync(src, dest);
      }
    }
    let location = 'loraserve-merged.bin';
    while (locations.includes(location)) location = `_${location}`;
    const fd = openSync(join(dir, location), 'w');
    let offset = 0;
    try {
      for (const t of model.graph?.initializer ?? []) {
        const bytes = opts.replacements.get(t.name ?? '');
        if (!bytes) continue;
        for (let off = 0; off < bytes.byteLength; ) off += writeSync(fd, bytes, off, bytes.byteLength - off);
        t.rawData = new Uint8Array(0);
        t.floatData = [];
        t.int32Data = [];
        t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
        t.externalData = [
          { key: 'location', value: location },
          { key: 'offset', value: String(offset) },
          { key: 'length', value: String(bytes.byteLength) },
        ];
        offset += bytes.byteLength;
      }
    } finally {
      closeSync(fd);
    }
    const path = join(dir, 'model.onnx');
    writeFileSync(path, encodeModel(model));
    return { path, remove };
  } catch (e) {
    remove();
    throw e;
  }
}
