/**
 * Prometheus metrics, written by hand in the text exposition format (version 0.0.4): counters, gauges and
 * cumulative histograms with `le` buckets, `_sum` and `_count`. Job figures come from the queue's events (so
 * they work for any JobQueue) and its stats; HTTP figures from an onResponse hook.
 */
import { escapeLabel, formatValue } from '../core/prometheus.js';
import type { JobEvent, JobQueue, QueueStats } from '../jobs/queue.js';
import type { LoraProvider } from './providers.js';

export class Histogram {
  private readonly counts: number[];
  private sum = 0;
  private count = 0;

  constructor(readonly buckets: readonly number[]) {
    this.counts = new Array(buckets.length).fill(0);
  }

  observe(v: number): void {
    if (!Number.isFinite(v)) return;
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]) this.counts[i]++;
    this.sum += v;
    this.count++;
  }

  lines(name: string, labels = ''): string[] {
    const sep = labels ? `${labels},` : '';
    const out = this.buckets.map((b, i) => `${name}_bucket{${sep}le="${formatValue(b)}"} ${this.counts[i]}`);
    out.push(`${name}_bucket{${sep}le="+Inf"} ${this.count}`);
    const braces = labels ? `{${labels}}` : '';
    out.push(`${name}_sum${braces} ${formatValue(this.sum)}`, `${name}_count${braces} ${this.count}`);
    return out;
  }
}

const JOB_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600];
const STEP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const HTTP_BUCKETS = [0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120];

export class Metrics {
  private readonly jobSeconds = new Map<string, Histogram>();
  private readonly queueWait = new Histogram(JOB_BUCKETS);
  private readonly stepSeconds = new Histogram(STEP_BUCKETS);
  private readonly lastStep = new Map<string, { step: number; elapsedMs: number }>();
  private readonly http = new Map<string, number>();
  private readonly httpSeconds = new Histogram(HTTP_BUCKETS);
  private unsubscribe: (() => void) | undefined;

  /** Starts listening to the queue's events. */
  attach(queue: JobQueue): void {
    this.unsubscribe?.();
    this.unsubscribe = queue.subscribeAll((e) => this.onJobEvent(e));
  }

  detach(): void {
    this.unsubscribe?.();
    this.unsubscribe = undefined;
  }

  onJobEvent(e: JobEvent): void {
    switch (e.type) {
      case 'started':
        this.lastStep.set(e.id, { step: 0, elapsedMs: 0 });
        break;
      case 'progress': {
        // elapsedMs counts from the start of the sampling loop, so the first step's time is its own.
        const last = this.lastStep.get(e.id) ?? { step: 0, elapsedMs: 0 };
        if (e.step > last.step) this.stepSeconds.observe((e.elapsedMs - last.elapsedMs) / 1000 / (e.step - last.step));
        this.lastStep.set(e.id, { step: e.step, elapsedMs: e.elapsedMs });
        break;
      }
      case 'done':
      case 'failed':
      case 'cancelled': {
        this.lastStep.delete(e.id);
        if (e.timings.queuedMs !== undefined) this.queueWait.observe(e.timings.queuedMs / 1000);
        if (e.timings.runMs !== undefined) {
          let h = this.jobSeconds.get(e.type);
          if (!h) this.jobSeconds.set(e.type, (h = new Histogram(JOB_BUCKETS)));
          h.observe(e.timings.runMs / 1000);
        }
        break;
      }
    }
  }

  onHttpResponse(method: string, route: string, status: number, seconds: number): void {
    const key = `method="${escapeLabel(method)}",route="${escapeLabel(route)}",status="${status}"`;
    this.http.set(key, (this.http.get(key) ?? 0) + 1);
    this.httpSeconds.observe(seconds);
  }

  /** The exposition text for GET /metrics. */
  render(stats: QueueStats, loras?: LoraProvider): string {
    const out: string[] = [];
    const metric = (name: string, type: string, help: string, lines: string[]) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...lines);
    };
    metric('loraserve_queue_depth', 'gauge', 'Jobs waiting for a worker.', [`loraserve_queue_depth ${stats.queued}`]);
    metric('loraserve_queue_capacity', 'gauge', 'Most jobs that may wait before QUEUE_FULL.', [`loraserve_queue_capacity ${stats.maxQueued}`]);
    metric('loraserve_jobs_running', 'gauge', 'Jobs being rendered.', [`loraserve_jobs_running ${stats.running}`]);
    metric('loraserve_jobs_submitted_total', 'counter', 'Jobs accepted since start.', [`loraserve_jobs_submitted_total ${stats.totals.submitted}`]);
    metric('loraserve_jobs_total', 'counter', 'Jobs that ended, by final state.', [
      `loraserve_jobs_total{state="done"} ${stats.totals.done}`,
      `loraserve_jobs_total{state="failed"} ${stats.totals.failed}`,
      `loraserve_jobs_total{state="cancelled"} ${stats.totals.cancelled}`,
    ]);
    metric('loraserve_accepting', 'gauge', '1 while the server takes new jobs.', [`loraserve_accepting ${stats.accepting ? 1 : 0}`]);
    const byState = new Map<string, number>();
    for (const w of stats.workers) byState.set(w.state, (byState.get(w.state) ?? 0) + 1);
    metric(
      'loraserve_workers',
      'gauge',
      'Render workers by state.',
      ['starting', 'idle', 'busy', 'down'].map((s) => `loraserve_workers{state="${s}"} ${byState.get(s) ?? 0}`),
    );
    metric(
      'loraserve_worker_crashes_total',
      'counter',
      'Render threads that died (their job failed with WORKER_CRASHED; the thread was restarted).',
      stats.workers.map((w) => `loraserve_worker_crashes_total{worker="${escapeLabel(w.id)}"} ${w.crashes}`),
    );
    if (stats.affinity) {
      const a = stats.affinity;
      metric('loraserve_affinity_enabled', 'gauge', '1 when jobs are routed to a worker that has their LoRA set warm.', [`loraserve_affinity_enabled ${a.enabled ? 1 : 0}`]);
      metric('loraserve_affinity_jobs_total', 'counter', "Jobs with LoRAs submitted here, by where they were sent: a warm worker's own queue or the shared queue.", [
        `loraserve_affinity_jobs_total{queue="worker"} ${a.routed}`,
        `loraserve_affinity_jobs_total{queue="shared"} ${a.shared}`,
      ]);
      metric('loraserve_lora_set_warm_runs_total', 'counter', 'Finished jobs with LoRAs, by whether their LoRA set was already warm on the worker that ran them.', [
        `loraserve_lora_set_warm_runs_total{warm="true"} ${a.warmHits}`,
        `loraserve_lora_set_warm_runs_total{warm="false"} ${a.warmRuns - a.warmHits}`,
      ]);
    }
    const jobLines: string[] = [];
    for (const [state, h] of [...this.jobSeconds].sort()) jobLines.push(...h.lines('loraserve_job_duration_seconds', `state="${state}"`));
    metric('loraserve_job_duration_seconds', 'histogram', 'Run time of jobs from start to end, by final state.', jobLines);
    metric('loraserve_job_queue_wait_seconds', 'histogram', 'Time jobs waited for a worker.', this.queueWait.lines('loraserve_job_queue_wait_seconds'));
    metric('loraserve_step_duration_seconds', 'histogram', 'Time of one sampling step (UNet call(s) and sampler update).', this.stepSeconds.lines('loraserve_step_duration_seconds'));

    // LoRA cache: the provider's parsed-file cache and, when workers report one, the engine's cache.
    const cache = loras?.cacheStats?.();
    const workerCaches = stats.workers.filter((w) => w.loraCache);
    if (cache || workerCaches.length) {
      type Field = 'hits' | 'misses' | 'evictions' | 'entries' | 'bytes' | 'maxBytes' | 'mergedSessions' | 'mergedBuilds' | 'mergedHits';
      const rows: Array<[string, Partial<Record<Field, number>>]> = [];
      if (cache) rows.push(['library', cache]);
      for (const w of workerCaches) rows.push([`worker:${w.id}`, w.loraCache!]);
      const series = (field: Field, name: string) =>
        rows.filter(([, c]) => c[field] !== undefined).map(([where, c]) => `${name}{cache="${escapeLabel(where)}"} ${c[field]}`);
      metric('loraserve_lora_cache_hits_total', 'counter', 'LoRA cache hits.', series('hits', 'loraserve_lora_cache_hits_total'));
      metric('loraserve_lora_cache_misses_total', 'counter', 'LoRA cache misses.', series('misses', 'loraserve_lora_cache_misses_total'));
      metric('loraserve_lora_cache_evictions_total', 'counter', 'LoRA cache evictions.', series('evictions', 'loraserve_lora_cache_evictions_total'));
      metric('loraserve_lora_cache_entries', 'gauge', 'LoRAs held in the cache.', series('entries', 'loraserve_lora_cache_entries'));
      metric('loraserve_lora_cache_bytes', 'gauge', 'Bytes held by the LoRA cache.', series('bytes', 'loraserve_lora_cache_bytes'));
      metric('loraserve_lora_cache_max_bytes', 'gauge', 'Byte budget of the LoRA cache.', series('maxBytes', 'loraserve_lora_cache_max_bytes'));
      metric('loraserve_merged_unet_sessions', 'gauge', 'Merged-weights UNet sessions held for hot LoRA sets.', series('mergedSessions', 'loraserve_merged_unet_sessions'));
      metric('loraserve_merged_unet_builds_total', 'counter', 'Merged-weights UNet sessions built.', series('mergedBuilds', 'loraserve_merged_unet_builds_total'));
      metric('loraserve_merged_unet_hits_total', 'counter', 'Renders that ran on a merged-weights UNet.', series('mergedHits', 'loraserve_merged_unet_hits_total'));
    }

    metric(
      'loraserve_http_requests_total',
      'counter',
      'HTTP responses by method, route and status.',
      [...this.http].sort().map(([k, v]) => `loraserve_http_requests_total{${k}} ${v}`),
    );
    metric('loraserve_http_request_duration_seconds', 'histogram', 'Time from request to response.', this.httpSeconds.lines('loraserve_http_request_duration_seconds'));
    return `${out.join('\n')}\n`;
  }
}
