/** The batch progress display: durations, the bar and its ETA, plain lines when stderr is not a terminal. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LoraserveError } from '../../../src/core/errors.js';
import type { PlanItem } from '../../../src/cli/batch-plan.js';
import { BatchProgress, formatDuration } from '../../../src/cli/batch-progress.js';

const item = (key: string): PlanItem => ({ key, line: 1, iteration: 0, point: [], labels: [], body: {}, seedGroup: '0001', seedOffset: 0, batchSize: 1, files: [`${key}.png`] });

test('formatDuration', () => {
  assert.equal(formatDuration(0), '0:00');
  assert.equal(formatDuration(83_000), '1:23');
  assert.equal(formatDuration(3_725_000), '1:02:05');
  assert.equal(formatDuration(NaN), '--:--');
});

test('terminal: one bar redrawn in place, ETA from the mean item time and the current step', () => {
  let out = '';
  let now = 0;
  const p = new BatchProgress({ total: 10, skipped: 2, concurrency: 1, tty: true, columns: 100, write: (s) => (out += s), now: () => now });
  p.begin();
  assert.match(out, /^\r\x1b\[2K\[#{6}-{24}\] 2\/10  20% eta --:--$/);
  const a = item('0003');
  p.started(a);
  now = 2000;
  p.done(a, 2000);
  assert.match(p.barLine(), /3\/10  30% eta 0:14$/);
  const b = item('0004-seed=2');
  p.started(b);
  p.step(b, 1, 2);
  assert.match(p.barLine(), / 3\/10  30% eta 0:13 · 0004-seed=2 1\/2$/);
  out = '';
  p.failed(b, new LoraserveError('UNKNOWN_LORA', "unknown LoRA 'x'"));
  assert.match(out, /^\r\x1b\[2K\[4\/10\] FAILED 0004-seed=2 \(line 1\): unknown LoRA 'x' \[UNKNOWN_LORA\]\n\r\x1b\[2K\[/);
  assert.match(p.barLine(), /4\/10  40% eta 0:12 · 1 failed$/);
});

test('not a terminal: one plain line per finished or failed item', () => {
  const lines: string[] = [];
  const p = new BatchProgress({ total: 2, skipped: 0, concurrency: 1, tty: false, write: (s) => lines.push(s), now: () => 0 });
  p.begin();
  p.started(item('0001'));
  p.done(item('0001'), 1500);
  p.failed(item('0002'), new LoraserveError('INFERENCE_FAILED', 'boom'));
  assert.deepEqual(lines, ['[1/2] done 0001.png (1.5 s, eta 0:02)\n', '[2/2] FAILED 0002 (line 1): boom [INFERENCE_FAILED]\n']);
});
