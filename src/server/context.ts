/** What every route plugin gets: the queue, the configuration and the providers, plus the typed app type. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import type { FastifyBaseLogger, FastifyInstance, FastifyPluginAsync, RawServerDefault } from 'fastify';
import type { JobQueue } from '../jobs/queue.js';
import type { ServerConfig } from './config.js';
import type { Metrics } from './metrics.js';
import type { EmbeddingProvider, FileProvider, LoraProvider } from './providers.js';

export interface ServerContext {
  queue: JobQueue;
  config: ServerConfig;
  loras?: LoraProvider;
  embeddings: EmbeddingProvider;
  /** Library files for render workers by sha256 (BullMQ roles); absent = the internal file routes answer 404. */
  files?: FileProvider;
  metrics: Metrics;
}

export type App = FastifyInstance<RawServerDefault, IncomingMessage, ServerResponse, FastifyBaseLogger, TypeBoxTypeProvider>;

export type Plugin = FastifyPluginAsync<{ ctx: ServerContext }, RawServerDefault, TypeBoxTypeProvider>;

/**
 * Marks a plugin as not encapsulated (what the fastify-plugin package does), so hooks and handlers it adds
 * apply to the whole app — used for the error handler, auth and metrics hooks.
 */
export function global<T extends Plugin>(plugin: T): T {
  (plugin as unknown as Record<symbol, boolean>)[Symbol.for('skip-override')] = true;
  return plugin;
}
