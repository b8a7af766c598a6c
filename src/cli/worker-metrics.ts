/**
 * `GET /metrics` of the worker role (`serve --role worker`): this process's render workers in Prometheus text.
 * Names are the API server's (src/server/metrics.ts) where they mean the same thing — crashes and the LoRA cache
 * (`cache="worker:<id>"`), so one dashboard reads both — and `loraserve_worker_*` where only a worker knows the
 * figure: its state and the jobs it ended. Job totals get their own name: the API already counts every job in
 * `loraserve_jobs_total`, and summing both targets must not count a job twice.
 */
import { metricFamily, type Sample } from '../core/prometheus.js';
import type { WorkerState, WorkerStats } from '../jobs/queue.js';

/** Jobs a worker ended, by final state, since it started. */
export interface WorkerJobCounts {
  done: number;
  failed: number;
  cancelled: number;
}

/** A worker's figures; only id and device are sure to be there (see MetricsWorker). */
export type WorkerMetricsSnapshot = Pick<WorkerStats, 'id' | 'device'> & Partial<Omit<WorkerStats, 'id' | 'device'>> & { jobs?: WorkerJobCounts };

/** What the health server needs of a render worker (BullmqRenderWorker). */
export interface MetricsWorker {
  readonly id: string;
  readonly device: string;
  stats(): WorkerMetricsSnapshot;
}

export interface ProcessFigures {
  rssBytes: number;
  startTimeSeconds: number;
}

export function processFigures(): ProcessFigures {
  return { rssBytes: process.memoryUsage.rss(), startTimeSeconds: Math.round((Date.now() - process.uptime() * 1000) / 1000) };
}

const STATES: readonly WorkerState[] = ['starting', 'idle', 'busy', 'down'];
const CACHE_FIELDS = [
  ['hits', 'loraserve_lora_cache_hits_total', 'counter', 'LoRA cache hits.'],
  ['misses', 'loraserve_lora_cache_misses_total', 'counter', 'LoRA cache misses.'],
  ['evictions', 'loraserve_lora_cache_evictions_total', 'counter', 'LoRA cache evictions.'],
  ['entries', 'loraserve_lora_cache_entries', 'gauge', 'LoRAs held in the cache.'],
  ['bytes', 'loraserve_lora_cache_bytes', 'gauge', 'Bytes held by the LoRA cache.'],
  ['mergedSessions', 'loraserve_merged_unet_sessions', 'gauge', 'Merged-weights UNet sessions held for hot LoRA sets.'],
  ['mergedBuilds', 'loraserve_merged_unet_builds_total', 'counter', 'Merged-weights UNet sessions built.'],
  ['mergedHits', 'loraserve_merged_unet_hits_total', 'counter', 'Renders that ran on a merged-weights UNet.'],
] as const;

/** The exposition text for the worker role's GET /metrics. */
export function renderWorkerMetrics(workers: readonly WorkerMetricsSnapshot[], proc: ProcessFigures): string {
  const out: string[] = [];
  const who = (w: WorkerMetricsSnapshot) => ({ worker: w.id, device: w.device });

  out.push(
    ...metricFamily(
      'loraserve_worker_info',
      'gauge',
      'Render workers in this process (1 each), with the model they serve.',
      workers.map((w) => ({ labels: { ...who(w), ...(w.model ? { model: w.model.name, model_hash: w.model.hash } : {}) }, value: 1 })),
    ),
  );
  const byState = new Map<WorkerState, number>();
  const known = workers.filter((w) => w.state !== undefined);
  for (const w of known) byState.set(w.state!, (byState.get(w.state!) ?? 0) + 1);
  out.push(...metricFamily('loraserve_workers', 'gauge', 'Render workers by state.', known.length ? STATES.map((s) => ({ labels: { state: s }, value: byState.get(s) ?? 0 })) : []));
  out.push(
    ...metricFamily(
      'loraserve_worker_state',
      'gauge',
      'Each render worker\'s state: 1 for the state it is in, 0 for the others.',
      known.flatMap((w) => STATES.map((s) => ({ labels: { ...who(w), state: s }, value: w.state === s ? 1 : 0 }))),
    ),
  );
  const counted = workers.filter((w) => w.jobs);
  out.push(
    ...metricFamily(
      'loraserve_worker_jobs_total',
      'counter',
      'Jobs this worker ended, by final state (jobs handed back to the queue on shutdown are not counted).',
      counted.flatMap((w) => (['done', 'failed', 'cancelled'] as const).map((s) => ({ labels: { ...who(w), state: s }, value: w.jobs![s] }))),
    ),
  );
  out.push(
    ...metricFamily(
      'loraserve_worker_crashes_total',
      'counter',
      'Render threads that died (their job failed with WORKER_CRASHED; the thread was restarted).',
      workers.filter((w) => w.crashes !== undefined).map((w) => ({ labels: { worker: w.id }, value: w.crashes! })),
    ),
  );
  const cached = workers.filter((w) => w.loraCache);
  if (cached.length) {
    for (const [field, name, type, help] of CACHE_FIELDS) {
      const samples: Sample[] = cached.filter((w) => w.loraCache![field] !== undefined).map((w) => ({ labels: { cache: `worker:${w.id}` }, value: w.loraCache![field]! }));
      out.push(...metricFamily(name, type, help, samples));
    }
  }
  out.push(...metricFamily('process_resident_memory_bytes', 'gauge', 'Resident memory size of this process in bytes.', [{ value: proc.rssBytes }]));
  out.push(...metricFamily('process_start_time_seconds', 'gauge', 'Start time of this process since the Unix epoch in seconds.', [{ value: proc.startTimeSeconds }]));
  return `${out.join('\n')}\n`;
}
