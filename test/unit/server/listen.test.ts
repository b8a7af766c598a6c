/**
 * On a real listening port: Server-Sent Events of a job, a client that hangs up cancelling its synchronous
 * job, /healthz answering fast while a render runs, and A1111's progress preview and interrupt.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import { tinyServer, type TinyServer } from './support.js';

let s: TinyServer;
let base: string;
before(async () => {
  s = await tinyServer({ previewEvery: 0 });
  await s.app.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${(s.app.server.address() as AddressInfo).port}`;
});
after(() => s.close());

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const json = async (r: Response | Promise<Response>): Promise<any> => (await r).json();

const post = async (path: string, body: object, headers: Record<string, string> = {}) =>
  fetch(base + path, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });

async function untilRunning(id: string): Promise<void> {
  for (;;) {
    const j = await json(fetch(`${base}/v1/jobs/${id}`));
    if (j.state === 'running' && j.progress) return;
    if (j.state !== 'queued' && j.state !== 'running') throw new Error(`job ${id} ended: ${j.state}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function asyncJob(body: object): Promise<string> {
  const res = await post('/v1/images', body, { prefer: 'respond-async' });
  assert.equal(res.status, 202);
  return (await json(res)).id;
}

interface Sse {
  event: string;
  data: Record<string, unknown>;
}

async function readEvents(url: string): Promise<Sse[]> {
  const res = await fetch(url, { headers: { accept: 'text/event-stream' } });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type') ?? '', /^text\/event-stream/);
  const text = await res.text(); // the stream ends after the final event
  const out: Sse[] = [];
  for (const block of text.split('\n\n')) {
    const event = /^event: (.+)$/m.exec(block)?.[1];
    const data = /^data: (.+)$/m.exec(block)?.[1];
    if (event && data) out.push({ event, data: JSON.parse(data) });
  }
  return out;
}

test('job events stream as SSE: queued with position, started, progress with previews, done with images', async () => {
  const blocker = await asyncJob({ prompt: 'wait', steps: 150 });
  const id = await asyncJob({ prompt: 'cat', steps: 6, preview_every: 2, seed: 4 });
  const events = readEvents(`${base}/v1/jobs/${id}/events`);
  await untilRunning(blocker);
  await fetch(`${base}/v1/jobs/${blocker}`, { method: 'DELETE' });
  const seen = await events;
  const types = seen.map((e) => e.event);
  assert.equal(types[0], 'queued');
  assert.equal(seen[0].data.position, 1);
  assert.equal(types.at(-1), 'done');
  const progress = seen.filter((e) => e.event === 'progress');
  assert.deepEqual(progress.map((e) => e.data.step), [1, 2, 3, 4, 5, 6]);
  assert.deepEqual(progress.filter((e) => e.data.preview).map((e) => e.data.step), [2, 4]);
  const preview = progress[1].data.preview as { png: string; width: number };
  assert.equal(preview.width, 8);
  assert.deepEqual([...Buffer.from(preview.png, 'base64').subarray(1, 4)], [0x50, 0x4e, 0x47]);
  const done = seen.at(-1)!.data;
  assert.deepEqual(done.seeds, [4]);
  assert.equal((done.images as string[]).length, 1);
  assert.ok(types.indexOf('started') > 0);
  // A stream opened after the end hears just the end.
  assert.deepEqual((await readEvents(`${base}/v1/jobs/${id}/events`)).map((e) => e.event), ['done']);
});

test('a client that disconnects from a synchronous request cancels its job', async () => {
  const req = httpRequest(`${base}/v1/images`, { method: 'POST', headers: { 'content-type': 'application/json' } });
  req.on('error', () => {});
  req.end(JSON.stringify({ prompt: 'long', steps: 150 }));
  let id: string | undefined;
  for (let i = 0; i < 400 && !id; i++) {
    const running = await json(fetch(`${base}/v1/jobs?state=running`));
    id = running.jobs[0]?.id;
    if (!id) await new Promise((r) => setTimeout(r, 5));
  }
  assert.ok(id, 'the job never started');
  req.destroy();
  let state = 'running';
  for (let i = 0; i < 400 && state === 'running'; i++) {
    await new Promise((r) => setTimeout(r, 10));
    state = (await json(fetch(`${base}/v1/jobs/${id}`))).state;
  }
  assert.equal(state, 'cancelled');
});

test('/healthz answers within 50 ms while a render runs', async () => {
  const id = await asyncJob({ prompt: 'busy', steps: 150, width: 128, height: 128 });
  await untilRunning(id);
  const times: number[] = [];
  for (let i = 0; i < 20; i++) {
    const t0 = performance.now();
    const res = await fetch(`${base}/healthz`);
    await res.json();
    times.push(performance.now() - t0);
    assert.equal(res.status, 200);
  }
  const job = await json(fetch(`${base}/v1/jobs/${id}`));
  assert.equal(job.state, 'running', 'the render should still be running while /healthz was timed');
  await fetch(`${base}/v1/jobs/${id}`, { method: 'DELETE' });
  times.sort((a, b) => a - b);
  assert.ok(times[times.length - 1] < 50, `slowest /healthz took ${times.at(-1)!.toFixed(1)} ms (median ${times[10].toFixed(1)} ms)`);
});

test('A1111 progress shows the running job with a preview; interrupt ends the call with what is done', async () => {
  await post('/sdapi/v1/options', { show_progress_every_n_steps: 1 });
  const call = post('/sdapi/v1/txt2img', { prompt: 'cat', width: 64, height: 64, steps: 150, n_iter: 3, batch_size: 1 });
  let progress: Record<string, unknown> = {};
  for (let i = 0; i < 400; i++) {
    progress = await json(fetch(`${base}/sdapi/v1/progress`));
    if (progress.current_image) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  const state = progress.state as Record<string, number>;
  assert.equal(state.job_count, 3);
  assert.equal(state.job_no, 0);
  assert.ok(state.sampling_step >= 1);
  assert.equal(state.sampling_steps, 150);
  assert.ok((progress.progress as number) > 0 && (progress.progress as number) < 1 / 3);
  assert.deepEqual([...Buffer.from(progress.current_image as string, 'base64').subarray(1, 4)], [0x50, 0x4e, 0x47]);
  const skipped = await json(fetch(`${base}/sdapi/v1/progress?skip_current_image=true`));
  assert.equal(skipped.current_image, null);
  assert.equal((await post('/sdapi/v1/interrupt', {})).status, 200);
  const res = await call;
  assert.equal(res.status, 200);
  const body = await json(res);
  assert.deepEqual(body.images, []); // interrupted during the first of three iterations
  await post('/sdapi/v1/options', { show_progress_every_n_steps: 10 });
});

test('A1111 skip drops the running iteration and goes on with the next', async () => {
  const call = post('/sdapi/v1/txt2img', { prompt: 'cat', width: 64, height: 64, steps: 60, n_iter: 2, seed: 50 });
  for (let i = 0; i < 400; i++) {
    const p = await json(fetch(`${base}/sdapi/v1/progress?skip_current_image=true`));
    if (p.state.job_count === 2 && p.state.sampling_step > 0) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  assert.equal((await post('/sdapi/v1/skip', {})).status, 200);
  const body = await json(call);
  assert.equal(body.images.length, 1);
  const info = JSON.parse(body.info);
  assert.match(info.infotexts[0], /Seed: 51/); // the second iteration's image
});
