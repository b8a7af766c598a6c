/**
 * What the HTTP server is configured with (parsed from flags/env by `loraserve serve`), and the defaults a
 * native request gets for fields it leaves out. A1111 routes use A1111's own defaults (a1111-request.ts).
 */
import { DEFAULT_NATIVE, type NativeDefaults } from '../engine/native-request.js';

/** The native defaults live with the native field conversion (src/engine/native-request.ts), shared with the CLI. */
export { DEFAULT_NATIVE, type NativeDefaults };

export interface ServerLimits {
  maxSteps: number;
  /** Largest width × height of one image. */
  maxPixels: number;
  maxWidth: number;
  maxHeight: number;
  /** Images per job (batch_size, OpenAI n, A1111 batch_size and n_iter each). */
  maxBatch: number;
  /** Characters in a prompt or negative prompt (a cheap stand-in for 75-token chunks, counted at the edge). */
  maxPromptChars: number;
  /** LoRAs named in one request. */
  maxLoras: number;
  /** Bytes of a LoRA upload. */
  maxUploadBytes: number;
  /** Bytes of a JSON body (png-info carries a base64 image). */
  bodyLimitBytes: number;
}

export interface ServerConfig {
  limits: ServerLimits;
  defaults: NativeDefaults;
  /** Running-time limit of one job (queue wait not included). */
  jobTimeoutMs: number;
  /** Preview every N steps for SSE / A1111 progress (0 = none); a request may ask for its own. */
  previewEvery: number;
  /** Bearer token every route but health and docs requires; undefined = open. */
  apiKey?: string;
  /** CORS: allowed origins, ['*'] for any; empty = no CORS headers. */
  corsOrigins: string[];
  /** Serve the OpenAPI document and UI at /docs. */
  docs: boolean;
}

export const DEFAULT_LIMITS: ServerLimits = {
  maxSteps: 150,
  maxPixels: 1024 * 1024,
  maxWidth: 2048,
  maxHeight: 2048,
  maxBatch: 8,
  maxPromptChars: 20_000,
  maxLoras: 16,
  maxUploadBytes: 1024 * 1024 * 1024,
  bodyLimitBytes: 16 * 1024 * 1024,
};

export function serverConfig(over: Partial<Omit<ServerConfig, 'limits' | 'defaults'>> & { limits?: Partial<ServerLimits>; defaults?: Partial<NativeDefaults> } = {}): ServerConfig {
  return {
    jobTimeoutMs: 10 * 60_000,
    previewEvery: 5,
    corsOrigins: [],
    docs: true,
    ...over,
    limits: { ...DEFAULT_LIMITS, ...over.limits },
    defaults: { ...DEFAULT_NATIVE, ...over.defaults },
  };
}
