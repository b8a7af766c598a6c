/** The OpenAPI document (built from the routes' TypeBox schemas) at /docs/json and its UI at /docs. */
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import { VERSION } from '../../core/version.js';
import { global, type Plugin } from '../context.js';
import { ErrorResponse } from '../routes/shared.js';

/** Registered before the routes, so that @fastify/swagger sees each of them as it is added. */
export const openApiPlugin: Plugin = global(async (app, { ctx }) => {
  await app.register(swagger, {
    openapi: {
      openapi: '3.0.3',
      info: {
        title: 'loraserve',
        version: VERSION,
        description:
          'Stable Diffusion with request-time LoRAs. Native API under /v1, AUTOMATIC1111-compatible routes under /sdapi/v1, ' +
          'OpenAI-compatible /v1/images/generations. Errors: {"error": {"code", "message", "details"}}.',
      },
      tags: [
        { name: 'native', description: 'Native API' },
        { name: 'loras', description: 'LoRA files' },
        { name: 'a1111', description: 'AUTOMATIC1111-compatible' },
        { name: 'openai', description: 'OpenAI-compatible' },
        { name: 'ops', description: 'Health and metrics' },
      ],
      components: {
        schemas: { Error: ErrorResponse as unknown as Record<string, unknown> },
        ...(ctx.config.apiKey ? { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } } : {}),
      },
      ...(ctx.config.apiKey ? { security: [{ bearer: [] }] } : {}),
    },
  });
});

export const docsUiPlugin: Plugin = async (app) => {
  await app.register(swaggerUi, { routePrefix: '/docs', staticCSP: true });
};
