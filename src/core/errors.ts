/**
 * Named errors with a stable code and an HTTP status. Every failure that reaches a user (HTTP, CLI)
 * is a LoraserveError; the code is part of the public contract and never changes meaning.
 */

/** Stable error codes → HTTP status. Add new codes at the end of their group; never rename one. */
export const ERROR_CODES = {
  // input
  INVALID_ARGUMENT: 400,
  INVALID_SIZE: 400,
  INVALID_SAMPLER: 400,
  INVALID_SCHEDULER: 400,
  INVALID_PROMPT: 400,
  INVALID_FILE: 400,
  UNKNOWN_LORA: 400,
  LORA_INVALID: 400,
  LORA_MISMATCH: 400,
  LORA_UNSUPPORTED: 400,
  EMBEDDING_INVALID: 400,
  NOT_FOUND: 404,
  PAYLOAD_TOO_LARGE: 413,
  UNAUTHORIZED: 401,
  // model / runtime
  MODEL_INVALID: 422,
  MODEL_NOT_LOADED: 503,
  PROVIDER_UNAVAILABLE: 500,
  INFERENCE_FAILED: 500,
  CANCELLED: 499,
  TIMEOUT: 504,
  QUEUE_FULL: 503,
  /** The job queue's store (Redis) cannot be reached; retry later. */
  QUEUE_UNAVAILABLE: 503,
  WORKER_CRASHED: 500,
  SHUTTING_DOWN: 503,
  IO_FAILED: 500,
  INTERNAL: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class LoraserveError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'LoraserveError';
    this.code = code;
    this.status = ERROR_CODES[code];
    this.details = details;
  }

  toJSON(): { code: ErrorCode; message: string; details?: Record<string, unknown> } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details };
  }
}

export function isLoraserveError(e: unknown): e is LoraserveError {
  return e instanceof LoraserveError;
}

/** Rebuilds a LoraserveError from its JSON form (after a worker-thread or process boundary). */
export function errorFromJSON(j: { code?: string; message?: string; details?: Record<string, unknown> }): LoraserveError {
  const code = (j.code && j.code in ERROR_CODES ? j.code : 'INTERNAL') as ErrorCode;
  return new LoraserveError(code, j.message ?? 'unknown error', j.details);
}

/** Wraps anything thrown into a LoraserveError, keeping one that already is. */
export function toLoraserveError(e: unknown, fallback: ErrorCode = 'INTERNAL'): LoraserveError {
  if (e instanceof LoraserveError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new LoraserveError(fallback, message, undefined, { cause: e });
}
