/**
 * The Fastify app: one plugin per concern (errors, auth, CORS, docs, metrics, and the route groups), built
 * around a JobQueue it does not own. `buildApp` never listens and never closes the queue; the caller
 * (`loraserve serve`, tests) does both. This is the only module tree that imports fastify.
 */
import { randomUUID } from 'node:crypto';
import cors from '@fastify/cors';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyBaseLogger } from 'fastify';
import { LoraserveError } from '../core/errors.js';
import type { JobQueue } from '../jobs/queue.js';
import { serverConfig, type ServerConfig } from './config.js';
import type { App, ServerContext } from './context.js';
import { Metrics } from './metrics.js';
import { authPlugin } from './plugins/auth.js';
import { docsUiPlugin, openApiPlugin } from './plugins/docs.js';
import { errorsPlugin } from './plugins/errors.js';
import { NO_EMBEDDINGS, type EmbeddingProvider, type FileProvider, type LoraProvider } from './providers.js';
import { a1111Routes } from './routes/a1111.js';
import { catalogRoutes } from './routes/catalog.js';
import { fileRoutes } from './routes/files.js';
import { loraRoutes } from './routes/loras.js';
import { nativeRoutes } from './routes/native.js';
import { openaiRoutes } from './routes/openai.js';
import { opsRoutes } from './routes/ops.js';

export interface BuildAppOptions {
  queue: JobQueue;
  config?: ServerConfig;
  /** A pino logger (request logs carry `reqId`); none = silent. */
  logger?: FastifyBaseLogger;
  loras?: LoraProvider;
  embeddings?: EmbeddingProvider;
  /** Library files served to render workers by sha256 (`/internal/v1/files`). */
  files?: FileProvider;
}

export interface LoraserveApp {
  app: App;
  /** Refuse new requests with 503 SHUTTING_DOWN (in-flight ones finish); call before app.close(). */
  stopAccepting(): void;
}

const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;

export async function buildApp(opts: BuildAppOptions): Promise<LoraserveApp> {
  const config = opts.config ?? serverConfig();
  const ctx: ServerContext = {
    queue: opts.queue,
    config,
    loras: opts.loras,
    embeddings: opts.embeddings ?? NO_EMBEDDINGS,
    files: opts.files,
    metrics: new Metrics(),
  };
  const app = Fastify({
    ...(opts.logger ? { loggerInstance: opts.logger } : { logger: false }),
    bodyLimit: config.limits.bodyLimitBytes,
    // A client's own request id is kept (so logs join up across services), a bad one replaced.
    genReqId: (req) => {
      const given = req.headers['x-request-id'];
      return typeof given === 'string' && REQUEST_ID.test(given) ? given : randomUUID();
    },
    // Shutdown is ours: new requests get SHUTTING_DOWN in our error shape (below), not Fastify's own 503.
    return503OnClosing: false,
    ajv: { customOptions: { removeAdditional: false, allErrors: true, coerceTypes: 'array', useDefaults: true } },
  }).withTypeProvider<TypeBoxTypeProvider>() as unknown as App;

  let accepting = true;
  ctx.metrics.attach(ctx.queue);
  app.addHook('onClose', async () => ctx.metrics.detach());

  await app.register(errorsPlugin, { ctx });
  app.addHook('onRequest', async (request, reply) => {
    reply.header('x-request-id', request.id);
    if (!accepting) throw new LoraserveError('SHUTTING_DOWN', 'the server is shutting down');
  });
  app.addHook('onResponse', async (request, reply) => {
    ctx.metrics.onHttpResponse(request.method, request.routeOptions.url ?? 'unmatched', reply.statusCode, reply.elapsedTime / 1000);
  });
  await app.register(authPlugin, { ctx });
  if (config.corsOrigins.length) {
    await app.register(cors, {
      origin: config.corsOrigins.includes('*') ? true : config.corsOrigins,
      methods: ['GET', 'POST', 'DELETE', 'OPTIONS'],
      allowedHeaders: ['Authorization', 'Content-Type', 'Accept', 'Prefer', 'X-Request-Id'],
      exposedHeaders: ['Location', 'Retry-After', 'X-Request-Id', 'X-Job-Id', 'X-Seed', 'Preference-Applied'],
    });
  }
  if (config.docs) await app.register(openApiPlugin, { ctx });

  await app.register(opsRoutes, { ctx });
  await app.register(nativeRoutes, { ctx });
  await app.register(catalogRoutes, { ctx });
  await app.register(loraRoutes, { ctx });
  await app.register(fileRoutes, { ctx });
  await app.register(openaiRoutes, { ctx });
  await app.register(a1111Routes, { ctx });
  if (config.docs) await app.register(docsUiPlugin, { ctx });

  await app.ready();
  return {
    app,
    stopAccepting: () => {
      accepting = false;
    },
  };
}
