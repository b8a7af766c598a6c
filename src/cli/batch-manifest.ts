/**
 * `manifest.jsonl` in a batch's output folder: one JSON line per event, appended and fsynced as it happens, so
 * that a batch killed at any moment can be resumed.
 *
 *  - `{"status":"seeded","seeds":{LINE:SEED,…}}`: the seed picked for each line whose request says -1 (one
 *    per line, shared by its sweep), written before any of its items renders, so a resume renders the same images;
 *  - `{"status":"done","key","line","image","file","sha256","bytes","seed","request","timings","at"}`: one per PNG;
 *  - `{"status":"failed","key","line","request","error":{code,message},"at"}`.
 *
 * An item is finished when every one of its PNGs has a `done` line for the same request whose sha256 matches
 * the file on disk; anything else (no line, a missing or changed file, a different request) renders again. A
 * process killed mid-append leaves a torn last line: it is ignored on read and cut off before the next append.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { LoraserveError } from '../core/errors.js';
import { randomSeed } from '../diffusion/rng/index.js';
import type { PlanItem } from './batch-plan.js';

export const MANIFEST_NAME = 'manifest.jsonl';

export interface DoneRecord {
  status: 'done';
  key: string;
  line: number;
  image: number;
  file: string;
  sha256: string;
  bytes: number;
  seed: number;
  request: Record<string, unknown>;
  timings?: Record<string, number>;
  at: string;
}

export interface FailedRecord {
  status: 'failed';
  key: string;
  line: number;
  request: Record<string, unknown>;
  error: { code: string; message: string };
  at: string;
}

export interface SeededRecord {
  status: 'seeded';
  seeds: Record<string, number>;
  at: string;
}

export type ManifestRecord = DoneRecord | FailedRecord | SeededRecord;

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Records of a manifest file; a line that is not JSON (a torn last line) is skipped and counted. */
export function readManifest(path: string): { records: ManifestRecord[]; badLines: number; tornTail: boolean; validBytes: number } {
  if (!existsSync(path)) return { records: [], badLines: 0, tornTail: false, validBytes: 0 };
  const buf = readFileSync(path);
  const lastNewline = buf.lastIndexOf(0x0a);
  const validBytes = lastNewline + 1;
  const tornTail = validBytes < buf.length;
  const records: ManifestRecord[] = [];
  let badLines = 0;
  for (const line of buf.toString('utf8', 0, validBytes).split('\n')) {
    if (line.trim() === '') continue;
    try {
      const r = JSON.parse(line) as ManifestRecord;
      if (r && typeof r === 'object' && typeof r.status === 'string') records.push(r);
      else badLines++;
    } catch {
      badLines++;
    }
  }
  return { records, badLines, tornTail, validBytes };
}

export class Manifest {
  readonly path: string;
  /** The latest `done` record of each file. */
  private readonly done = new Map<string, DoneRecord>();
  private readonly seeds = new Map<string, number>();
  private fd: number | null = null;
  /** Lines that were not JSON when the manifest was read (a torn tail not included). */
  readonly badLines: number;

  private constructor(path: string, records: ManifestRecord[], badLines: number) {
    this.path = path;
    this.badLines = badLines;
    for (const r of records) this.note(r);
  }

  /** Reads `dir/manifest.jsonl` (if any). Nothing is written until `openForAppend`. */
  static read(dir: string): Manifest {
    const path = join(dir, MANIFEST_NAME);
    const m = readManifest(path);
    return new Manifest(path, m.records, m.badLines);
  }

  private note(r: ManifestRecord): void {
    if (r.status === 'done' && typeof r.file === 'string') this.done.set(r.file, r);
    if (r.status === 'seeded' && r.seeds && typeof r.seeds === 'object') {
      for (const [k, s] of Object.entries(r.seeds)) if (Number.isSafeInteger(s) && s >= 0) this.seeds.set(k, s);
    }
  }

  /** Opens for appending; a torn last line from a killed run is cut off first. */
  openForAppend(): void {
    if (this.fd !== null) return;
    try {
      const { validBytes } = readManifest(this.path);
      this.fd = openSync(this.path, existsSync(this.path) ? 'r+' : 'w');
      ftruncateSync(this.fd, validBytes);
      closeSync(this.fd);
      this.fd = openSync(this.path, 'a');
    } catch (e) {
      throw new LoraserveError('IO_FAILED', `cannot write ${this.path}: ${(e as Error).message}`, undefined, { cause: e });
    }
  }

  /** Appends one record and fsyncs it. */
  append(r: ManifestRecord): void {
    if (this.fd === null) this.openForAppend();
    writeSync(this.fd!, JSON.stringify(r) + '\n');
    fsyncSync(this.fd!);
    this.note(r);
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  seedFor(key: string): number | undefined {
    return this.seeds.get(key);
  }

  doneFor(file: string): DoneRecord | undefined {
    return this.done.get(file);
  }

  /**
   * Fills in the seed of every item whose request says -1: its seed group's (its line's) seed as the manifest
   * recorded it, else a new random one. Returns the new ones, to be recorded before anything renders.
   */
  resolveSeeds(items: readonly PlanItem[], pick: () => number = randomSeed): Record<string, number> {
    const picked: Record<string, number> = {};
    for (const it of items) {
      if (it.body.seed !== -1) continue;
      let s = this.seedFor(it.seedGroup);
      if (s === undefined) this.seeds.set(it.seedGroup, (picked[it.seedGroup] = s = pick()));
      it.body.seed = s + it.seedOffset;
    }
    return picked;
  }

  /** True when every PNG of the item is on disk, unchanged, and recorded as done for this same request. */
  isFinished(item: PlanItem, outDir: string): boolean {
    return item.files.every((file) => {
      const rec = this.done.get(file);
      if (!rec || !isDeepStrictEqual(rec.request, item.body)) return false;
      const path = join(outDir, file);
      if (!existsSync(path)) return false;
      try {
        return sha256Hex(readFileSync(path)) === rec.sha256;
      } catch {
        return false;
      }
    });
  }
}
