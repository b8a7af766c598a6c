/**
 * Redis work on the API side with a deadline. Redis being away is a 503 the client may retry —
 * QUEUE_UNAVAILABLE with a Retry-After — answered at once when the connection is known to be down, and after
 * at most DEADLINE_MS otherwise, instead of a request hanging on a reconnecting client.
 */
import type { Redis } from 'ioredis';
import { isLoraserveError, LoraserveError } from '../core/errors.js';

const DEADLINE_MS = 5000;

export function unavailable(what: string, why: string): LoraserveError {
  return new LoraserveError('QUEUE_UNAVAILABLE', `the job queue (Redis) is unavailable; ${what} failed (${why})`, { reason: 'queue-unavailable', retryAfterSeconds: 5 });
}

/** Runs `f`; LoraserveErrors pass through, anything else (and the deadline) becomes QUEUE_UNAVAILABLE. */
export async function withDeadline<T>(redis: Redis, closed: boolean, what: string, f: () => Promise<T>): Promise<T> {
  if (redis.status !== 'ready' && !closed) throw unavailable(what, redis.status);
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([f(), new Promise<never>((_, reject) => (timer = setTimeout(() => reject(unavailable(what, 'timeout')), DEADLINE_MS)))]);
  } catch (e) {
    if (isLoraserveError(e)) throw e;
    throw unavailable(what, e instanceof Error ? e.message : String(e));
  } finally {
    clearTimeout(timer);
  }
}
