/**
 * LoRA management: `GET /v1/loras`, `POST /v1/loras` (multipart upload), `DELETE /v1/loras/:name`.
 *
 * An upload is streamed (never buffered whole) to a temp file in the provider's upload folder under a name the
 * library ignores, cut off at the size limit, validated by the provider, and only then renamed into place
 * (an atomic rename on one filesystem). Any failure removes the temp file: a bad upload leaves nothing.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { basename, extname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import multipart from '@fastify/multipart';
import { Type } from '@fastify/type-provider-typebox';
import { LoraserveError } from '../../core/errors.js';
import type { Plugin, ServerContext } from '../context.js';
import { checkLoraName } from '../edge/check.js';
import type { LoraListing, LoraProvider } from '../providers.js';

const NAME_RULES = 'a LoRA name is 1-200 characters, does not start with "." and has no "/", "\\", ".." or control characters';

export function checkUploadName(name: string): string {
  checkLoraName(name);
  // eslint-disable-next-line no-control-regex
  if (name.length > 200 || name.startsWith('.') || /[\u0000-\u001f\u007f]/.test(name)) {
    throw new LoraserveError('INVALID_ARGUMENT', `invalid LoRA name '${name}': ${NAME_RULES}`, { field: 'name', name });
  }
  return name;
}

function provider(ctx: ServerContext): LoraProvider {
  if (!ctx.loras) throw new LoraserveError('NOT_FOUND', 'this server has no LoRA folder configured');
  return ctx.loras;
}

export function loraJson(l: LoraListing): Record<string, unknown> {
  return {
    name: l.name,
    alias: l.alias,
    size_bytes: l.sizeBytes,
    format: l.format ?? null,
    ranks: l.ranks ?? [],
    base_model: l.baseModel ?? null,
    trigger_words: l.triggerWords ?? [],
  };
}

export const loraRoutes: Plugin = async (app, { ctx }) => {
  const maxBytes = ctx.config.limits.maxUploadBytes;
  await app.register(multipart, { limits: { fileSize: maxBytes, files: 1, fields: 4, parts: 6, fieldSize: 1024, headerPairs: 100 } });

  app.get('/v1/loras', { schema: { tags: ['loras'], summary: 'LoRAs in the LoRA folder' } }, async () => ({
    loras: ctx.loras ? (await ctx.loras.list()).map(loraJson) : [],
  }));

  app.post(
    '/v1/loras',
    {
      schema: {
        tags: ['loras'],
        summary: 'Upload a LoRA (.safetensors) as multipart/form-data field "file"',
        description: `The name is the query parameter \`name\`, else a form field \`name\` sent before the file, else the file name's stem; ${NAME_RULES}. Size limit: ${maxBytes} bytes.`,
        consumes: ['multipart/form-data'],
        querystring: Type.Object({
          name: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
          overwrite: Type.Optional(Type.Boolean({ default: false })),
        }),
      },
    },
    async (request, reply) => {
      const lib = provider(ctx);
      if (!request.isMultipart()) throw new LoraserveError('INVALID_ARGUMENT', 'send the LoRA as multipart/form-data with a field "file"');
      const part = await request.file();
      if (!part) throw new LoraserveError('INVALID_ARGUMENT', 'the upload has no file part');
      const fieldName = (part.fields.name as { value?: unknown } | undefined)?.value;
      const fileName = basename(part.filename ?? '');
      if (extname(fileName).toLowerCase() !== '.safetensors') {
        part.file.resume();
        throw new LoraserveError('INVALID_FILE', `only .safetensors LoRA files are accepted (got '${fileName}')`, { filename: fileName });
      }
      const name = checkUploadName(request.query.name ?? (typeof fieldName === 'string' && fieldName ? fieldName : fileName.slice(0, -'.safetensors'.length)));
      const overwrite = request.query.overwrite ?? false;
      if (!overwrite && (await lib.find(name))?.name === name) {
        part.file.resume();
        throw new LoraserveError('INVALID_ARGUMENT', `a LoRA named '${name}' exists; pass ?overwrite=true to replace it`, { name, reason: 'exists' });
      }
      const tmp = join(lib.uploadDir, `.upload-${randomBytes(6).toString('hex')}.part`);
      const t0 = performance.now();
      try {
        try {
          await pipeline(part.file, createWriteStream(tmp, { flags: 'wx' }));
        } catch (e) {
          if ((e as { code?: string }).code === 'FST_REQ_FILE_TOO_LARGE') {
            throw new LoraserveError('PAYLOAD_TOO_LARGE', `the LoRA file is larger than the ${maxBytes}-byte upload limit`, { maxBytes });
          }
          throw e;
        }
        if (part.file.truncated) throw new LoraserveError('PAYLOAD_TOO_LARGE', `the LoRA file is larger than the ${maxBytes}-byte upload limit`, { maxBytes });
        await lib.validateFile(tmp, name);
        const installed = await lib.install(tmp, name, { overwrite });
        request.log.info({ lora: name, bytes: installed.sizeBytes, ms: Math.round(performance.now() - t0) }, 'LoRA uploaded');
        return reply.status(201).header('location', `/v1/loras/${encodeURIComponent(name)}`).send({ lora: loraJson(installed) });
      } finally {
        await rm(tmp, { force: true });
      }
    },
  );

  app.delete(
    '/v1/loras/:name',
    { schema: { tags: ['loras'], summary: 'Delete a LoRA file', params: Type.Object({ name: Type.String({ minLength: 1, maxLength: 255 }) }) } },
    async (request) => {
      const name = checkLoraName(request.params.name);
      const removed = await provider(ctx).remove(name);
      if (!removed) throw new LoraserveError('NOT_FOUND', `no LoRA named '${name}'`, { name });
      request.log.info({ lora: name }, 'LoRA deleted');
      return { deleted: name };
    },
  );
};
