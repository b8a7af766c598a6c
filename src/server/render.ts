/**
 * Running a parsed request through the queue on behalf of a synchronous HTTP call, and the JSON view of a job
 * record the native routes return. Shared by the native, A1111 and OpenAI routes, so that all three behave
 * alike: queue limits, per-job timeout, and a client that hangs up cancels its job.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { RenderRequest } from '../engine/request.js';
import { jobError, type JobRecord, type JobSummary, waitForJob } from '../jobs/queue.js';
import type { ServerContext } from './context.js';
import { isoTime, toBase64 } from './http.js';

export interface RunOptions {
  labels?: Record<string, string>;
  /** Told the job id as soon as it is queued (A1111 interrupt/skip track the current job). */
  onQueued?: (id: string) => void;
}

/** Aborts when the client closes the connection before the response went out. */
export function clientGone(reply: FastifyReply): { signal: AbortSignal; release: () => void } {
  const ac = new AbortController();
  const onClose = () => {
    if (!reply.raw.writableFinished) ac.abort();
  };
  reply.raw.on('close', onClose);
  return { signal: ac.signal, release: () => reply.raw.off('close', onClose) };
}

/** Submits, waits for the end, and returns the done record; a failed or cancelled job is thrown as its error. */
export async function renderAndWait(ctx: ServerContext, request: FastifyRequest, reply: FastifyReply, job: RenderRequest, opts: RunOptions = {}): Promise<JobRecord> {
  const gone = clientGone(reply);
  try {
    const submitted = await ctx.queue.submit(job, {
      timeoutMs: ctx.config.jobTimeoutMs,
      clientSignal: gone.signal,
      labels: { requestId: String(request.id), ...opts.labels },
    });
    opts.onQueued?.(submitted.id);
    request.log.info({ jobId: submitted.id, position: submitted.position, seed: job.seed, steps: job.steps, size: `${job.width}x${job.height}`, batch: job.batchSize }, 'job queued');
    const rec = await waitForJob(ctx.queue, submitted.id);
    const t = rec.timings;
    request.log.info({ jobId: rec.id, state: rec.state, queuedMs: t.queuedMs, runMs: t.runMs, renderMs: t.render && Math.round(t.render.totalMs) }, `job ${rec.state}`);
    if (rec.state !== 'done') throw jobError(rec);
    return rec;
  } finally {
    gone.release();
  }
}

export interface JobJson {
  id: string;
  state: string;
  position?: number;
  progress?: { step: number; total: number; elapsed_ms: number; eta_ms: number };
  cancel_requested?: boolean;
  seeds?: number[];
  infotexts?: string[];
  images?: string[];
  error?: { code: string; message: string; details?: Record<string, unknown> };
  timings: { queued_ms?: number; run_ms?: number; render?: Record<string, number | boolean> };
  worker?: string;
  created_at: string;
  started_at?: string;
  finished_at?: string;
  links: { self: string; events: string };
}

export function jobJson(rec: JobSummary & { images?: JobRecord['images'] }): JobJson {
  const r = rec.timings.render;
  return {
    id: rec.id,
    state: rec.state,
    position: rec.position,
    progress: rec.progress && { step: rec.progress.step, total: rec.progress.total, elapsed_ms: Math.round(rec.progress.elapsedMs), eta_ms: Math.round(rec.progress.etaMs) },
    cancel_requested: rec.cancelRequested,
    seeds: rec.seeds,
    infotexts: rec.infotexts,
    images: rec.images?.map((i) => toBase64(i.png)),
    error: rec.error,
    timings: {
      queued_ms: rec.timings.queuedMs,
      run_ms: rec.timings.runMs,
      render: r && {
        total_ms: round1(r.totalMs),
        text_ms: round1(r.textMs),
        denoise_ms: round1(r.denoiseMs),
        vae_ms: round1(r.vaeMs),
        encode_ms: round1(r.encodeMs),
        ort_ms: round1(r.ortMs),
        unet_calls: r.unetCalls,
        lora_ms: round1(r.loraMs ?? 0),
        merged_unet: r.mergedUnet ?? false,
      },
    },
    worker: rec.worker,
    created_at: isoTime(rec.createdAt)!,
    started_at: isoTime(rec.startedAt),
    finished_at: isoTime(rec.finishedAt),
    links: { self: `/v1/jobs/${rec.id}`, events: `/v1/jobs/${rec.id}/events` },
  };
}

function round1(v: number): number {
  return Math.round(v * 10) / 10;
}
