/**
 * Optional API key: with one configured, every request but health checks, the docs and CORS preflights must
 * carry `Authorization: Bearer <key>`. Keys are compared through their SHA-256 in constant time, so neither
 * the comparison's duration nor the key's length leaks.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { LoraserveError } from '../../core/errors.js';
import { global, type Plugin } from '../context.js';

const OPEN_PATHS = ['/healthz', '/readyz'];

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

export function isOpenPath(path: string): boolean {
  return OPEN_PATHS.includes(path) || path === '/docs' || path.startsWith('/docs/');
}

export const authPlugin: Plugin = global(async (app, { ctx }) => {
  const key = ctx.config.apiKey;
  if (!key) return;
  const expected = digest(key);
  app.addHook('onRequest', async (request) => {
    if (request.method === 'OPTIONS') return;
    const path = request.url.split('?')[0];
    if (isOpenPath(path)) return;
    const header = request.headers.authorization ?? '';
    const m = /^Bearer\s+(.+)$/i.exec(header.trim());
    if (!m) throw new LoraserveError('UNAUTHORIZED', 'this server requires an API key: send Authorization: Bearer <key>');
    if (!timingSafeEqual(digest(m[1]), expected)) throw new LoraserveError('UNAUTHORIZED', 'the API key is not valid');
  });
});
