/**
 * The worker role's own port (`serve --role worker`): GET /metrics in Prometheus text for this process's render
 * workers (state, jobs ended, crashes, LoRA cache, RSS) and GET /health — on fake workers, no Redis or model.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startWorkerHealth } from '../../../src/cli/serve-roles.js';
import { type MetricsWorker, renderWorkerMetrics, type WorkerMetricsSnapshot } from '../../../src/cli/worker-metrics.js';
import { escapeLabel, formatValue, metricFamily } from '../../../src/core/prometheus.js';

const busy: WorkerMetricsSnapshot = {
  id: 'cuda:0@ab12',
  device: 'cuda:0',
  state: 'busy',
  jobId: 'j1',
  crashes: 1,
  jobs: { done: 7, failed: 2, cancelled: 1 },
  loraCache: { hits: 5, misses: 3, evictions: 1, entries: 2, bytes: 4096 },
};
const idle: WorkerMetricsSnapshot = { id: 'cuda:1@cd34', device: 'cuda:1', state: 'idle', crashes: 0, jobs: { done: 0, failed: 0, cancelled: 0 } };

/** Every sample line as `name{labels}` → value. */
function samples(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.trim().split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-z_]+(?:\{[^}]*\})?) (-?[0-9.e+-]+|[+-]Inf|NaN)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    out.set(m[1], Number(m[2]));
  }
  return out;
}

test('exposition helpers: escaping, numbers, one family', () => {
  assert.equal(escapeLabel('a"b\\c\nd'), 'a\\"b\\\\c\\nd');
  assert.equal(formatValue(3), '3');
  assert.equal(formatValue(0.1 + 0.2), '0.3');
  assert.equal(formatValue(Infinity), '+Inf');
  assert.deepEqual(metricFamily('x_total', 'counter', 'X.', [{ value: 1 }, { labels: { a: 'b', n: 2 }, value: 2 }]), ['# HELP x_total X.', '# TYPE x_total counter', 'x_total 1', 'x_total{a="b",n="2"} 2']);
});

test('worker metrics: state, jobs, crashes and LoRA cache per worker, under the API server\'s names', () => {
  const text = renderWorkerMetrics([busy, idle], { rssBytes: 123_456_789, startTimeSeconds: 1_700_000_000 });
  const s = samples(text);
  assert.equal(s.get('loraserve_workers{state="busy"}'), 1);
  assert.equal(s.get('loraserve_workers{state="idle"}'), 1);
  assert.equal(s.get('loraserve_worker_state{worker="cuda:0@ab12",device="cuda:0",state="busy"}'), 1);
  assert.equal(s.get('loraserve_worker_state{worker="cuda:0@ab12",device="cuda:0",state="idle"}'), 0);
  assert.equal(s.get('loraserve_worker_state{worker="cuda:1@cd34",device="cuda:1",state="idle"}'), 1);
  assert.equal(s.get('loraserve_worker_jobs_total{worker="cuda:0@ab12",device="cuda:0",state="done"}'), 7);
  assert.equal(s.get('loraserve_worker_jobs_total{worker="cuda:0@ab12",device="cuda:0",state="failed"}'), 2);
  assert.equal(s.get('loraserve_worker_jobs_total{worker="cuda:0@ab12",device="cuda:0",state="cancelled"}'), 1);
  assert.equal(s.get('loraserve_worker_crashes_total{worker="cuda:0@ab12"}'), 1);
  assert.equal(s.get('loraserve_worker_crashes_total{worker="cuda:1@cd34"}'), 0);
  // The LoRA cache series are the API server's (src/server/metrics.ts), with the same cache="worker:<id>" label.
  assert.equal(s.get('loraserve_lora_cache_hits_total{cache="worker:cuda:0@ab12"}'), 5);
  assert.equal(s.get('loraserve_lora_cache_misses_total{cache="worker:cuda:0@ab12"}'), 3);
  assert.equal(s.get('loraserve_lora_cache_evictions_total{cache="worker:cuda:0@ab12"}'), 1);
  assert.equal(s.get('loraserve_lora_cache_entries{cache="worker:cuda:0@ab12"}'), 2);
  assert.equal(s.get('loraserve_lora_cache_bytes{cache="worker:cuda:0@ab12"}'), 4096);
  assert.ok(![...s.keys()].some((k) => k.includes('worker:cuda:1@cd34')), 'no cache series for a worker that reports no cache');
  assert.equal(s.get('process_resident_memory_bytes'), 123_456_789);
  assert.match(text, /^# TYPE loraserve_worker_jobs_total counter$/m);
  assert.match(text, /^# TYPE loraserve_worker_state gauge$/m);
  // Each family's HELP and TYPE come once.
  const types = text.split('\n').filter((l) => l.startsWith('# TYPE '));
  assert.equal(new Set(types).size, types.length);
});

test('a worker that reports only id and device shows up in loraserve_worker_info, with no invented figures', () => {
  const s = samples(renderWorkerMetrics([{ id: 'cpu@1', device: 'cpu' }], { rssBytes: 1, startTimeSeconds: 2 }));
  assert.equal(s.get('loraserve_worker_info{worker="cpu@1",device="cpu"}'), 1);
  assert.ok(![...s.keys()].some((k) => k.startsWith('loraserve_worker_state') || k.startsWith('loraserve_worker_jobs_total') || k.startsWith('loraserve_workers{')));
});

test('the worker role\'s port: GET /metrics (Prometheus text), GET /health (200 while up, 503 stopping), 404 otherwise', async () => {
  let snapshot: WorkerMetricsSnapshot = { ...idle };
  const worker: MetricsWorker = { id: idle.id, device: idle.device, stats: () => snapshot };
  let up = true;
  const { server, url } = await startWorkerHealth([worker], '127.0.0.1', 0, () => up);
  try {
    const m = await fetch(`${url}/metrics`);
    assert.equal(m.status, 200);
    assert.match(String(m.headers.get('content-type')), /^text\/plain; version=0\.0\.4/);
    const text = await m.text();
    assert.equal(samples(text).get('loraserve_worker_state{worker="cuda:1@cd34",device="cuda:1",state="idle"}'), 1);
    assert.ok((samples(text).get('process_resident_memory_bytes') ?? 0) > 1e6, 'the real RSS of this process');

    snapshot = { ...idle, state: 'busy', jobId: 'j9', jobs: { done: 1, failed: 0, cancelled: 0 } };
    assert.equal(samples(await (await fetch(`${url}/metrics`)).text()).get('loraserve_worker_state{worker="cuda:1@cd34",device="cuda:1",state="busy"}'), 1);
    const h = await fetch(`${url}/health`);
    assert.equal(h.status, 200);
    assert.deepEqual(await h.json(), { status: 'ok', role: 'worker', workers: [{ id: idle.id, device: 'cuda:1', state: 'busy', jobId: 'j9' }] });

    up = false;
    assert.equal((await fetch(`${url}/health`)).status, 503);
    assert.equal((await fetch(`${url}/nope`)).status, 404);
    assert.equal((await fetch(`${url}/metrics`, { method: 'POST' })).status, 404);
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
});
