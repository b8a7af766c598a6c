/**
 * Job-record helpers every JobQueue implementation shares: the summary a listing shows, the final event of an
 * ended job, and the events that bring a late subscriber up to date. Records are plain data (src/jobs/queue.ts).
 */
import type { JobEvent, JobRecord, JobSummary } from './queue.js';

/** A record without its image bytes and preview, with its nested objects copied. */
export function summarize(rec: JobRecord): JobSummary {
  const { images: _images, preview: _preview, ...rest } = rec;
  return { ...rest, labels: { ...rest.labels }, timings: { ...rest.timings }, progress: rest.progress && { ...rest.progress } };
}

/** The done / cancelled / failed event of an ended job. */
export function finalEvent(rec: JobRecord, at = rec.finishedAt ?? Date.now()): JobEvent {
  const base = { id: rec.id, at, timings: { ...rec.timings } };
  if (rec.state === 'done') return { type: 'done', ...base, seeds: rec.seeds ?? [], infotexts: rec.infotexts ?? [] };
  const error = rec.error ?? { code: 'INTERNAL', message: 'job ended without an error' };
  return rec.state === 'cancelled' ? { type: 'cancelled', ...base, error } : { type: 'failed', ...base, error };
}

/** The events that bring a new subscriber up to date with a job's current state. */
export function replayEvents(rec: JobRecord): JobEvent[] {
  const at = Date.now();
  switch (rec.state) {
    case 'queued':
      return [{ type: 'queued', id: rec.id, at, position: rec.position ?? 1 }];
    case 'running': {
      const out: JobEvent[] = [{ type: 'started', id: rec.id, at: rec.startedAt ?? at, worker: rec.worker ?? '' }];
      if (rec.progress) out.push({ type: 'progress', id: rec.id, at, ...rec.progress });
      return out;
    }
    default:
      return [finalEvent(rec, rec.finishedAt ?? at)];
  }
}
