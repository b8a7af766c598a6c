/**
 * One error shape for every route: `{ error: { code, message, details } }` with the stable codes of
 * src/core/errors.ts and their HTTP status. Fastify's own errors (schema validation, body parsing, limits,
 * unknown routes) are translated into those codes here, so a client never sees two shapes.
 */
import { type FastifyError, type FastifyReply, type FastifyRequest } from 'fastify';
import { ERROR_CODES, isLoraserveError, LoraserveError } from '../../core/errors.js';
import { global, type Plugin } from '../context.js';

export interface ErrorBody {
  error: { code: string; message: string; details?: Record<string, unknown> };
}

interface AjvProblem {
  instancePath?: string;
  keyword?: string;
  message?: string;
  params?: Record<string, unknown>;
}

/** Ajv's problems as `{ path, message }`, the path naming the field (`body.steps`, `body.loras[0].name`). */
function validationDetails(err: FastifyError & { validation?: AjvProblem[]; validationContext?: string }): Record<string, unknown> {
  const where = err.validationContext ?? 'body';
  const problems = (err.validation ?? []).map((v) => {
    let path = (v.instancePath ?? '').replace(/\/(\d+)(?=\/|$)/g, '[$1]').replace(/\//g, '.');
    if (v.keyword === 'required' && typeof v.params?.missingProperty === 'string') path += `.${v.params.missingProperty}`;
    if (v.keyword === 'additionalProperties' && typeof v.params?.additionalProperty === 'string') path += `.${v.params.additionalProperty}`;
    const field = `${where}${path}`;
    const message = v.keyword === 'additionalProperties' ? 'is not a known field' : v.message ?? 'is invalid';
    return { field, message: `${field} ${message}` };
  });
  return { problems };
}

/** Maps anything thrown in a route or by Fastify to a LoraserveError. */
export function toHttpError(err: unknown): LoraserveError {
  if (isLoraserveError(err)) return err;
  const e = err as FastifyError & { validation?: AjvProblem[]; validationContext?: string };
  if (e?.validation) {
    const details = validationDetails(e);
    const msgs = (details.problems as Array<{ message: string }>).map((p) => p.message);
    return new LoraserveError('INVALID_ARGUMENT', msgs.join('; ') || e.message, details);
  }
  switch (e?.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
    case 'FST_REQ_FILE_TOO_LARGE':
    case 'FST_FILES_LIMIT':
    case 'FST_PARTS_LIMIT':
    case 'FST_FIELDS_LIMIT':
      return new LoraserveError('PAYLOAD_TOO_LARGE', e.message);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new LoraserveError('INVALID_ARGUMENT', `unsupported content type: ${e.message}`, { reason: 'media_type' });
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
    case 'FST_INVALID_MULTIPART_CONTENT_TYPE':
      return new LoraserveError('INVALID_ARGUMENT', e.message);
  }
  const status = typeof e?.statusCode === 'number' ? e.statusCode : 500;
  if (status === 404) return new LoraserveError('NOT_FOUND', e.message);
  if (status === 413) return new LoraserveError('PAYLOAD_TOO_LARGE', e.message);
  if (status >= 400 && status < 500) return new LoraserveError('INVALID_ARGUMENT', e?.message ?? 'bad request');
  return new LoraserveError('INTERNAL', 'internal server error', undefined, { cause: err });
}

/** 503s a client should retry: they carry Retry-After and are not logged as server errors. */
const RETRYABLE = new Set<string>(['QUEUE_FULL', 'QUEUE_UNAVAILABLE', 'SHUTTING_DOWN', 'MODEL_NOT_LOADED']);

export function sendError(reply: FastifyReply, err: LoraserveError): FastifyReply {
  const body: ErrorBody = { error: err.toJSON() };
  if (RETRYABLE.has(err.code)) {
    const retry = Number(err.details?.retryAfterSeconds ?? (err.code === 'QUEUE_FULL' || err.code === 'QUEUE_UNAVAILABLE' ? 5 : 10));
    reply.header('retry-after', String(Math.max(1, Math.ceil(retry))));
  }
  if (err.code === 'UNAUTHORIZED') reply.header('www-authenticate', 'Bearer');
  return reply.status(ERROR_CODES[err.code]).type('application/json; charset=utf-8').send(body);
}

export const errorsPlugin: Plugin = global(async (app) => {
  app.setErrorHandler((err: unknown, request: FastifyRequest, reply: FastifyReply) => {
    const e = toHttpError(err);
    if (e.status >= 500 && !RETRYABLE.has(e.code)) {
      request.log.error({ err, code: e.code }, e.message);
    } else {
      request.log.info({ code: e.code, status: e.status }, e.message);
    }
    if (reply.raw.headersSent || reply.raw.destroyed) return;
    return sendError(reply, e);
  });
  app.setNotFoundHandler((request, reply) => {
    sendError(reply, new LoraserveError('NOT_FOUND', `no route ${request.method} ${request.url.split('?')[0]}`, { method: request.method, path: request.url.split('?')[0] }));
  });
});
