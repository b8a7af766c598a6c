/**
 * BullMQ job (or tombstone) → the JobQueue's plain records and events. Pure mapping plus the two reads a record
 * needs beside the job hash: its place in the wait list and its result images.
 */
import type { Job, Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import { readFile } from 'node:fs/promises';
import { relative, resolve } from 'node:path';
import { LoraserveError } from '../core/errors.js';
import type { ErrorJson } from './protocol.js';
import { outcomeTimings, shownRequest, type WireImage, type WireJobData, type WireKeys, type WireOutcome, type WireProgress, type WireTombstone } from './bullmq-wire.js';
import type { JobEvent, JobImage, JobRecord } from './queue.js';

export interface Stored {
  /** Absent for a tombstone. */
  job?: Job<WireJobData, WireOutcome>;
  record: JobRecord;
}

interface ReadContext {
  redis: Redis;
  keys: WireKeys;
  queue: Queue<WireJobData, WireOutcome>;
  withImages: boolean;
  /** Folder the workers write result PNGs to (shared with this process), when configured. */
  resultsDir?: string;
}

const WAITING_STATES = new Set(['waiting', 'prioritized', 'delayed', 'waiting-children']);

export async function recordFromJob(job: Job<WireJobData, WireOutcome>, bullState: string, ctx: ReadContext): Promise<JobRecord> {
  const id = job.id!;
  const data = job.data;
  const rec: JobRecord = {
    id,
    state: 'queued',
    request: shownRequest(data.request),
    labels: { ...data.labels },
    timings: {},
    createdAt: data.createdAt ?? job.timestamp,
  };
  if (WAITING_STATES.has(bullState)) {
    rec.position = await waitPosition(ctx, id);
    return rec;
  }
  if (bullState === 'active') {
    rec.state = 'running';
    rec.worker = job.processedBy;
    rec.startedAt = job.processedOn;
    if (rec.startedAt !== undefined) rec.timings.queuedMs = rec.startedAt - rec.createdAt;
    const p = job.progress as WireProgress | number | undefined;
    if (p && typeof p === 'object' && p.kind === 'step') {
      rec.progress = { step: p.step, total: p.total, elapsedMs: p.elapsedMs, etaMs: p.etaMs };
      if (p.preview) rec.preview = { rgb: new Uint8Array(Buffer.from(p.preview.rgbB64, 'base64')), width: p.preview.width, height: p.preview.height, step: p.preview.step };
    }
    if (await ctx.redis.exists(ctx.keys.cancelFlag(id))) rec.cancelRequested = true;
    return rec;
  }
  if (bullState === 'completed' && job.returnvalue) {
    const o = job.returnvalue;
    rec.state = o.outcome;
    rec.worker = o.worker;
    rec.startedAt = o.startedAt;
    rec.finishedAt = o.finishedAt;
    rec.timings = outcomeTimings(o, rec.createdAt);
    if (o.lastProgress) rec.progress = o.lastProgress;
    if (o.error) rec.error = o.error;
    if (o.outcome === 'done') {
      rec.seeds = o.seeds;
      rec.infotexts = o.infotexts;
      if (ctx.withImages) rec.images = await readImages(ctx, id);
    }
    return rec;
  }
  // BullMQ's own failure: the job stalled too often (its workers died) or lost its lock.
  rec.state = 'failed';
  rec.worker = job.processedBy;
  rec.startedAt = job.processedOn;
  rec.finishedAt = job.finishedOn ?? Date.now();
  if (rec.startedAt !== undefined) rec.timings = { queuedMs: rec.startedAt - rec.createdAt, runMs: rec.finishedAt - rec.startedAt };
  rec.error = infraError(id, job.failedReason ?? '');
  return rec;
}

async function waitPosition(ctx: ReadContext, id: string): Promise<number> {
  // BullMQ pushes new jobs at the head of the wait list and workers take from the tail.
  const waitKey = ctx.queue.toKey('wait');
  const [len, index] = await Promise.all([ctx.redis.llen(waitKey), ctx.redis.lpos(waitKey, id)]);
  return index === null ? 1 : Math.max(1, len - index);
}

async function readImages(ctx: ReadContext, id: string): Promise<JobImage[] | undefined> {
  const json = await ctx.redis.get(ctx.keys.result(id));
  if (!json) return undefined; // past its TTL
  const images = JSON.parse(json) as WireImage[];
  return Promise.all(
    images.map(async (i) => {
      let png: Uint8Array;
      if (i.file !== undefined) {
        if (!ctx.resultsDir) throw new LoraserveError('IO_FAILED', `job ${id}'s images are in a results folder, and this process has none configured (--results-dir)`, { jobId: id });
        png = await readFile(resolveInside(ctx.resultsDir, i.file)).catch((e: unknown) => {
          throw new LoraserveError('IO_FAILED', `job ${id}'s image ${i.file} cannot be read from the results folder: ${(e as Error).message}`, { jobId: id, file: i.file });
        });
      } else {
        png = Buffer.from(i.pngB64 ?? '', 'base64');
      }
      return { png, width: i.width, height: i.height, seed: i.seed, infotext: i.infotext };
    }),
  );
}

/** `dir/file` when file stays inside dir (a result path comes from Redis: never follow one out of the folder). */
export function resolveInside(dir: string, file: string): string {
  const full = resolve(dir, file);
  const rel = relative(resolve(dir), full);
  if (rel === '' || rel.startsWith('..') || resolve(rel) === rel) throw new LoraserveError('IO_FAILED', `result path '${file}' is outside the results folder`, { file });
  return full;
}

export function tombstoneRecord(id: string, stone: WireTombstone & { data: WireJobData }): JobRecord {
  return {
    id,
    state: stone.state,
    request: shownRequest(stone.data.request),
    labels: { ...stone.data.labels },
    timings: {},
    createdAt: stone.data.createdAt,
    finishedAt: stone.finishedAt,
    error: stone.error,
  };
}

/** A failure BullMQ itself decided (the processor always returns): stalled jobs are crashed workers. */
export function infraError(jobId: string, failedReason: string): ErrorJson {
  if (/stalled/i.test(failedReason)) {
    return { code: 'WORKER_CRASHED', message: `the job's render worker died too many times (${failedReason})`, details: { jobId } };
  }
  return { code: 'INTERNAL', message: `the job queue failed the job: ${failedReason || 'no reason given'}`, details: { jobId } };
}

export function eventsFromProgress(jobId: string, data: unknown): JobEvent[] {
  const p = data as WireProgress;
  if (!p || typeof p !== 'object') return [];
  if (p.kind === 'started') return [{ type: 'started', id: jobId, at: p.at, worker: p.worker }];
  if (p.kind === 'step') {
    const preview = p.preview && { rgb: new Uint8Array(Buffer.from(p.preview.rgbB64, 'base64')), width: p.preview.width, height: p.preview.height, step: p.preview.step };
    return [{ type: 'progress', id: jobId, at: p.at, step: p.step, total: p.total, elapsedMs: p.elapsedMs, etaMs: p.etaMs, ...(preview ? { preview } : {}) }];
  }
  return [];
}

export function finalEventOf(jobId: string, o: WireOutcome, createdAt: number): JobEvent {
  const base = { id: jobId, at: o.finishedAt, timings: outcomeTimings(o, createdAt) };
  if (o.outcome === 'done') return { type: 'done', ...base, seeds: o.seeds ?? [], infotexts: o.infotexts ?? [] };
  const error = o.error ?? { code: 'INTERNAL', message: 'job ended without an error' };
  return o.outcome === 'cancelled' ? { type: 'cancelled', ...base, error } : { type: 'failed', ...base, error };
}
