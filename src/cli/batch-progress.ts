/**
 * What a batch shows while it runs, on stderr: on a terminal one bar redrawn in place (done/total, percent,
 * ETA, the item and step in progress) with messages printed above it; elsewhere (a pipe, a log file, CI) one
 * plain line per finished or failed item. The ETA is the mean time of the items rendered in this run times
 * the items left, divided by the renders in flight, less the part of the current items already done.
 */
import type { LoraserveError } from '../core/errors.js';
import type { PlanItem } from './batch-plan.js';
import type { RunEvents } from './batch-runner.js';

export interface ProgressOptions {
  total: number;
  /** Finished before this run (resume); counted as done, not in the ETA. */
  skipped: number;
  concurrency: number;
  /** true: redraw a bar; false: plain lines. */
  tty: boolean;
  /** Bar width in columns (default: the terminal's, else 80). */
  columns?: number;
  quiet?: boolean;
  write?: (s: string) => void;
  now?: () => number;
}

/** 83 s → "1:23", 3725 s → "1:02:05". */
export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return '--:--';
  const s = Math.round(ms / 1000);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${sec}` : `${m}:${sec}`;
}

export class BatchProgress implements RunEvents {
  private doneCount = 0;
  private failedCount = 0;
  private renderedMs = 0;
  private rendered = 0;
  private readonly running = new Map<string, { item: PlanItem; step: number; total: number; startedAt: number }>();
  private lastDraw = 0;
  private readonly write: (s: string) => void;
  private readonly now: () => number;

  constructor(private readonly opts: ProgressOptions) {
    this.write = opts.write ?? ((s) => process.stderr.write(s));
    this.now = opts.now ?? (() => performance.now());
    this.doneCount = opts.skipped;
  }

  private get finished(): number {
    return this.doneCount + this.failedCount;
  }

  /** Estimated time left, or NaN before any item of this run finished. */
  etaMs(): number {
    if (this.rendered === 0) return NaN;
    const mean = this.renderedMs / this.rendered;
    const left = this.opts.total - this.finished;
    let inFlightDone = 0;
    for (const r of this.running.values()) inFlightDone += r.total > 0 ? r.step / r.total : Math.min(1, (this.now() - r.startedAt) / mean);
    return (Math.max(0, left - inFlightDone) * mean) / Math.max(1, this.opts.concurrency);
  }

  /** The bar line (no newline): the bar and counts always, the items in progress as far as the width allows. */
  barLine(): string {
    const { total } = this.opts;
    const pct = total ? Math.floor((100 * this.finished) / total) : 100;
    const cols = Math.max(40, this.opts.columns ?? 80);
    const stats = ` ${this.finished}/${total} ${String(pct).padStart(3)}% eta ${formatDuration(this.etaMs())}${this.failedCount ? ` · ${this.failedCount} failed` : ''}`;
    const barW = Math.max(10, Math.min(30, cols - stats.length - 4));
    const filled = total ? Math.round((barW * this.finished) / total) : barW;
    const head = `[${'#'.repeat(filled)}${'-'.repeat(barW - filled)}]${stats}`;
    const current = [...this.running.values()].map((r) => (r.total ? `${r.item.key} ${r.step}/${r.total}` : r.item.key)).join(', ');
    const room = cols - 1 - head.length - 3;
    if (!current || room < 8) return head;
    return `${head} · ${current.length > room ? `…${current.slice(current.length - room + 1)}` : current}`;
  }

  private draw(force = false): void {
    if (!this.opts.tty || this.opts.quiet) return;
    const t = this.now();
    if (!force && t - this.lastDraw < 100) return;
    this.lastDraw = t;
    this.write(`\r\x1b[2K${this.barLine()}`);
  }

  /** A message line: above the bar on a terminal, plain elsewhere. */
  note(message: string): void {
    if (this.opts.tty) this.write(`\r\x1b[2K${message}\n`);
    else this.write(`${message}\n`);
    this.draw(true);
  }

  begin(): void {
    this.draw(true);
  }

  started(item: PlanItem): void {
    this.running.set(item.key, { item, step: 0, total: 0, startedAt: this.now() });
    this.draw(true);
  }

  step(item: PlanItem, step: number, total: number): void {
    const r = this.running.get(item.key);
    if (r) Object.assign(r, { step, total });
    this.draw();
  }

  done(item: PlanItem, ms: number): void {
    this.running.delete(item.key);
    this.doneCount++;
    this.rendered++;
    this.renderedMs += ms;
    if (this.opts.quiet) return;
    if (this.opts.tty) this.draw(true);
    else this.write(`[${this.finished}/${this.opts.total}] done ${item.files.join(', ')} (${(ms / 1000).toFixed(1)} s, eta ${formatDuration(this.etaMs())})\n`);
  }

  failed(item: PlanItem, error: LoraserveError): void {
    this.running.delete(item.key);
    this.failedCount++;
    const msg = `[${this.finished}/${this.opts.total}] FAILED ${item.key} (line ${item.line}): ${error.message} [${error.code}]`;
    if (this.opts.tty && !this.opts.quiet) this.note(msg);
    else this.write(`${msg}\n`);
  }

  /** Leaves the bar's last state on its own line. */
  end(): void {
    if (this.opts.tty && !this.opts.quiet) this.write(`\r\x1b[2K${this.barLine()}\n`);
  }
}
