/** Small HTTP details the routes share: content negotiation, `Prefer`, base64 images, timestamps. */
import { LoraserveError } from '../core/errors.js';

/** The quality (0..1) an Accept header gives a media type, by the most specific matching range (RFC 9110 §12.5.1). */
export function acceptQuality(accept: string | undefined, type: string): number {
  if (!accept) return type === 'application/json' ? 1 : 0;
  const [major] = type.split('/');
  let best = -1;
  let q = 0;
  for (const part of accept.split(',')) {
    const [range, ...params] = part.trim().toLowerCase().split(';').map((s) => s.trim());
    if (!range) continue;
    let specificity = -1;
    if (range === type) specificity = 2;
    else if (range === `${major}/*`) specificity = 1;
    else if (range === '*/*') specificity = 0;
    if (specificity <= best) continue;
    best = specificity;
    const qp = params.find((p) => p.startsWith('q='));
    const v = qp ? Number(qp.slice(2)) : 1;
    q = Number.isFinite(v) ? Math.min(1, Math.max(0, v)) : 1;
  }
  return best < 0 ? 0 : q;
}

/** True when the client prefers a PNG body over JSON (strictly higher quality). */
export function prefersPng(accept: string | undefined): boolean {
  return acceptQuality(accept, 'image/png') > acceptQuality(accept, 'application/json');
}

/** `Prefer: respond-async` (RFC 7240), possibly among other preferences. */
export function prefersAsync(prefer: string | string[] | undefined): boolean {
  const all = Array.isArray(prefer) ? prefer.join(',') : prefer ?? '';
  return all.split(',').some((p) => p.trim().split(';')[0].trim().toLowerCase() === 'respond-async');
}

/** Decodes a base64 image, with or without a `data:image/...;base64,` prefix (A1111 clients send both). */
export function decodeBase64Image(s: string, field: string): Buffer {
  const comma = s.startsWith('data:') ? s.indexOf(',') : -1;
  const b64 = (comma >= 0 ? s.slice(comma + 1) : s).replace(/\s+/g, '');
  if (b64.length === 0 || !/^[A-Za-z0-9+/_-]*={0,2}$/.test(b64)) {
    throw new LoraserveError('INVALID_ARGUMENT', `${field} is not base64 image data`, { field });
  }
  return Buffer.from(b64, 'base64');
}

export function toBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('base64');
}

export function isoTime(ms: number | undefined): string | undefined {
  return ms === undefined ? undefined : new Date(ms).toISOString();
}
