/**
 * `loraserve serve` as a process: flags over environment, finding a pipeline, and SIGTERM during a render —
 * running work is cancelled within the grace period, waiting work fails with SHUTTING_DOWN, exit code 0.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { findPipeline, withEnv } from '../../../src/cli/serve.js';
import { tinyModelDir } from '../../helpers/tiny-model.js';

test('flags win over environment variables; empty variables count as unset', () => {
  const f = withEnv({ port: '9000' }, { PORT: '7000', HOST: '0.0.0.0', API_KEY: '' });
  assert.equal(f.port, '9000');
  assert.equal(f.host, '0.0.0.0');
  assert.equal(f['api-key'], undefined);
});

test('the first folder with model_index.json under models/ is the default model', () => {
  const root = mkdtempSync(join(tmpdir(), 'loraserve-models-'));
  try {
    assert.equal(findPipeline(join(root, 'nothing-here')), undefined);
    mkdirSync(join(root, 'a-not-a-model'));
    mkdirSync(join(root, 'b-model'));
    writeFileSync(join(root, 'b-model', 'model_index.json'), '{}');
    mkdirSync(join(root, 'c-model'));
    writeFileSync(join(root, 'c-model', 'model_index.json'), '{}');
    assert.equal(findPipeline(root), join(root, 'b-model'));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('SIGTERM during a render: cancels within the grace period and exits 0', async () => {
  const model = await tinyModelDir();
  const loras = mkdtempSync(join(tmpdir(), 'loraserve-serve-loras-'));
  const child = spawn(process.execPath, ['bin/loraserve.js', 'serve', '--model', model, '--lora-dir', loras, '--port', '0', '--threads', '1', '--shutdown-grace', '0.2'], {
    env: { ...process.env, HOST: '127.0.0.1', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: Array<Record<string, unknown>> = [];
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  try {
    const ready = new Promise<string>((resolve, reject) => {
      let url = '';
      createInterface({ input: child.stdout }).on('line', (line) => {
        let entry: Record<string, unknown>;
        try {
          entry = JSON.parse(line);
        } catch {
          return;
        }
        logs.push(entry);
        if (typeof entry.url === 'string') url = entry.url;
        if (entry.msg === 'ready') resolve(url);
      });
      exited.then((code) => reject(new Error(`serve exited early (${code}): ${stderr}`)));
    });
    const base = await ready;
    const submit = async (steps: number) =>
      (await (await fetch(`${base}/v1/images`, { method: 'POST', headers: { 'content-type': 'application/json', prefer: 'respond-async' }, body: JSON.stringify({ prompt: 'cat', width: 64, height: 64, steps }) })).json()) as { id: string };
    const running = await submit(150);
    await submit(3);
    for (;;) {
      const j = (await (await fetch(`${base}/v1/jobs/${running.id}`)).json()) as { state: string; progress?: unknown };
      if (j.state === 'running' && j.progress) break;
      await new Promise((r) => setTimeout(r, 5));
    }
    const t0 = Date.now();
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
    assert.ok(Date.now() - t0 < 10_000);
    const jobLogs = logs.filter((l) => l.component === 'jobs' && typeof l.state === 'string');
    assert.deepEqual(jobLogs.map((l) => [l.state, l.code]).sort(), [['cancelled', undefined], ['failed', 'SHUTTING_DOWN']]);
    assert.ok(logs.some((l) => l.msg === 'stopped'));
    // Request logs carry request ids; job logs carry job ids.
    assert.ok(logs.some((l) => l.component === 'http' && typeof l.reqId === 'string' && typeof l.jobId === 'string'));
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(loras, { recursive: true, force: true });
  }
});
