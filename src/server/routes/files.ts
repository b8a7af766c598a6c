/**
 * Library files for render workers that have no shared disk (src/jobs/file-sync.ts):
 * `GET /internal/v1/files` (the manifest: every LoRA and embedding with its sha256) and
 * `GET /internal/v1/files/:sha256` (the bytes, streamed). Only files of the libraries are served, by hash —
 * never a path. The same API key as every other route guards them.
 */
import { Type } from '@fastify/type-provider-typebox';
import { LoraserveError } from '../../core/errors.js';
import type { Plugin, ServerContext } from '../context.js';
import type { FileProvider } from '../providers.js';

const FileJson = Type.Object({
  kind: Type.Union([Type.Literal('lora'), Type.Literal('embedding')]),
  name: Type.String(),
  file: Type.String(),
  sha256: Type.String(),
  bytes: Type.Integer(),
});

function provider(ctx: ServerContext): FileProvider {
  if (!ctx.files) throw new LoraserveError('NOT_FOUND', 'this server does not serve library files to workers');
  return ctx.files;
}

export const fileRoutes: Plugin = async (app, { ctx }) => {
  app.get(
    '/internal/v1/files',
    {
      schema: { tags: ['internal'], summary: 'Manifest of the LoRA and embedding files render workers may fetch', response: { 200: Type.Object({ files: Type.Array(FileJson) }) } },
      logLevel: 'warn',
    },
    async () => ({ files: await provider(ctx).list() }),
  );

  app.get(
    '/internal/v1/files/:sha256',
    {
      schema: {
        tags: ['internal'],
        summary: 'The bytes of a library file, by sha256',
        params: Type.Object({ sha256: Type.String({ pattern: '^[0-9a-f]{64}$' }) }),
      },
    },
    async (request, reply) => {
      const { sha256 } = request.params;
      const found = await provider(ctx).open(sha256);
      if (!found) throw new LoraserveError('NOT_FOUND', `no LoRA or embedding file has sha256 ${sha256}`, { sha256 });
      const { entry, stream } = found;
      request.log.info({ kind: entry.kind, name: entry.name, bytes: entry.bytes }, 'file sent to a worker');
      return reply
        .type('application/octet-stream')
        .header('content-length', entry.bytes)
        .header('x-file-kind', entry.kind)
        .header('x-file-name', encodeURIComponent(entry.file))
        .send(stream);
    },
  );
};
