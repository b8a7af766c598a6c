/**
 * Who listens to which job, for both queues (local-queue.ts, bullmq-queue.ts): per-job listeners and
 * listeners to every job, each event delivered in a microtask (never inside the emitter's call stack), in
 * order, and a throwing listener logged rather than allowed to break the queue. A per-job listener hears
 * nothing after its job's final event. A listener whose replay is still being read (BullMQ reads the job from
 * Redis first) collects live events in `buffer` until the replay is delivered.
 */
import type { Logger } from '../core/logger.js';
import { isFinalEvent, type JobEvent, type JobListener, type Unsubscribe } from './queue.js';

export interface Subscriber {
  listener: JobListener;
  active: boolean;
  /** Live events that arrived while the replay was being read; undefined once it is delivered. */
  buffer?: JobEvent[];
}

export class JobSubscribers {
  private readonly byJob = new Map<string, Set<Subscriber>>();
  private readonly all = new Set<Subscriber>();

  constructor(private readonly logger: Logger) {}

  /** A listener for one job; `buffered` holds live events back until `flush` (the replay is being read). */
  add(id: string, listener: JobListener, buffered = false): { sub: Subscriber; drop: Unsubscribe } {
    const sub: Subscriber = { listener, active: true, ...(buffered ? { buffer: [] } : {}) };
    let set = this.byJob.get(id);
    if (!set) this.byJob.set(id, (set = new Set()));
    set.add(sub);
    const drop = () => {
      sub.active = false;
      const s = this.byJob.get(id);
      s?.delete(sub);
      if (s?.size === 0) this.byJob.delete(id);
    };
    return { sub, drop };
  }

  /** A listener that hears only `replay` (a job already ended: nothing live will follow). */
  replayOnly(listener: JobListener, replay: readonly JobEvent[]): Unsubscribe {
    const sub: Subscriber = { listener, active: true };
    this.flush(sub, replay);
    return () => {
      sub.active = false;
    };
  }

  /** A listener for every job. */
  addAll(listener: JobListener): Unsubscribe {
    const sub: Subscriber = { listener, active: true };
    this.all.add(sub);
    return () => {
      sub.active = false;
      this.all.delete(sub);
    };
  }

  /** Delivers a replay (in a microtask), then the live events buffered meanwhile that `keep` lets through. */
  flush(sub: Subscriber, replay: readonly JobEvent[], keep: (e: JobEvent) => boolean = () => true): void {
    const buffered = (sub.buffer ?? []).filter(keep);
    sub.buffer = undefined;
    const events = [...replay, ...buffered];
    queueMicrotask(() => {
      for (const e of events) this.deliver(sub, e);
    });
  }

  emit(e: JobEvent): void {
    const targets = [...(this.byJob.get(e.id) ?? []), ...this.all];
    if (isFinalEvent(e)) this.byJob.delete(e.id);
    for (const s of targets) {
      if (s.buffer) s.buffer.push(e);
      else queueMicrotask(() => this.deliver(s, e));
    }
  }

  private deliver(s: Subscriber, e: JobEvent): void {
    if (!s.active) return;
    if (isFinalEvent(e) && !this.all.has(s)) s.active = false;
    try {
      s.listener(e);
    } catch (err) {
      this.logger.error({ jobId: e.id, event: e.type, err: String(err) }, 'job event listener threw');
    }
  }
}
