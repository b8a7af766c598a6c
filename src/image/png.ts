/**
 * PNG encode/decode with text metadata, the way AUTOMATIC1111 stores its infotext.
 *
 * A1111 (`modules/images.py` save_image_with_geninfo) saves through PIL's `PngInfo.add_text(key, value)`, which
 * writes a `tEXt` chunk when the key and value encode as Latin-1 and an uncompressed `iTXt` (UTF-8, empty language
 * tag and translated keyword) otherwise; its "PNG Info" tab reads `image.info['parameters']`. We write the same.
 *
 * sharp (libvips) encodes the pixels but cannot write text chunks, and on reading it only reports text chunks
 * placed before IDAT, so the chunks are spliced in right after IHDR (allowed: the PNG spec lets tEXt/zTXt/iTXt
 * go anywhere between IHDR and IEND).
 *
 * Chunk layout (PNG spec §5.3): uint32 BE length, 4-byte type, data, uint32 BE CRC-32 over type + data.
 */
import { inflateSync } from 'node:zlib';
import sharp from 'sharp';
import { LoraserveError } from '../core/errors.js';
import type { RgbImage } from './pixels.js';

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/**
 * PIL refuses to decompress a text chunk past 1 MiB (PngImagePlugin MAX_TEXT_CHUNK = ImageFile.SAFEBLOCK);
 * the same bound here keeps a crafted zTXt from inflating into gigabytes.
 */
export const MAX_TEXT_CHUNK = 1024 * 1024;

// CRC-32 (ISO 3309, reflected, polynomial 0xEDB88320) as in PNG spec Annex D. Node's zlib.crc32 only
// exists from 20.15, so the table lives here.
const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

export function crc32(bytes: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

function makeChunk(type: string, data: Buffer): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

function isLatin1(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) return false;
  return true;
}

/** One text chunk the way PIL's PngInfo.add_text (zip=False) builds it. */
export function textChunk(key: string, value: string): Buffer {
  // PNG keywords are 1-79 Latin-1 bytes with no NUL; PIL does not check, but a reader could not split it back.
  if (key.length < 1 || key.length > 79 || !isLatin1(key) || key.includes('\0')) {
    throw new LoraserveError('INVALID_ARGUMENT', `PNG text keyword must be 1-79 Latin-1 characters without NUL: ${JSON.stringify(key)}`);
  }
  const keyBytes = Buffer.from(key, 'latin1');
  if (isLatin1(value)) {
    return makeChunk('tEXt', Buffer.concat([keyBytes, Buffer.from([0]), Buffer.from(value, 'latin1')]));
  }
  // iTXt: keyword \0, compression flag 0, method 0, language tag "" \0, translated keyword "" \0, UTF-8 text
  return makeChunk('iTXt', Buffer.concat([keyBytes, Buffer.from([0, 0, 0, 0, 0]), Buffer.from(value, 'utf8')]));
}

interface Chunk {
  type: string;
  data: Buffer;
  offset: number; // of the length field
}

function malformed(message: string, details?: Record<string, unknown>): LoraserveError {
  return new LoraserveError('INVALID_FILE', `PNG: ${message}`, details);
}

/** Walks every chunk, checking the signature, bounds and each CRC; stops after IEND. */
function readChunks(buf: Uint8Array): Chunk[] {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < 8 || !b.subarray(0, 8).equals(SIGNATURE)) throw malformed('not a PNG file (bad signature)');
  const chunks: Chunk[] = [];
  let pos = 8;
  for (;;) {
    if (pos + 12 > b.length) throw malformed('truncated: missing IEND', { offset: pos });
    const len = b.readUInt32BE(pos);
    if (len > 0x7fffffff || pos + 12 + len > b.length) throw malformed('chunk runs past the end of the file', { offset: pos, length: len });
    const type = b.toString('latin1', pos + 4, pos + 8);
    if (!/^[A-Za-z]{4}$/.test(type)) throw malformed('bad chunk type', { offset: pos });
    const stored = b.readUInt32BE(pos + 8 + len);
    if (crc32(b.subarray(pos + 4, pos + 8 + len)) !== stored) throw malformed(`CRC mismatch in ${type} chunk`, { offset: pos, type });
    if (chunks.length === 0 && type !== 'IHDR') throw malformed('first chunk is not IHDR', { type });
    chunks.push({ type, data: b.subarray(pos + 8, pos + 8 + len), offset: pos });
    pos += 12 + len;
    if (type === 'IEND') return chunks;
  }
}

function inflateText(data: Buffer, type: string): Buffer {
  try {
    return inflateSync(data, { maxOutputLength: MAX_TEXT_CHUNK });
  } catch (e) {
    throw new LoraserveError('INVALID_FILE', `PNG: cannot decompress ${type} chunk (corrupt or over ${MAX_TEXT_CHUNK} bytes)`, { type }, { cause: e });
  }
}

/** Decodes one tEXt / zTXt / iTXt chunk into [keyword, text] the way PIL's PngStream does. */
function decodeTextChunk(c: Chunk): [string, string] {
  const nul = c.data.indexOf(0);
  if (nul < 1) throw malformed(`${c.type} chunk has no keyword`, { offset: c.offset });
  const key = c.data.toString('latin1', 0, nul);
  const rest = c.data.subarray(nul + 1);
  if (c.type === 'tEXt') return [key, rest.toString('latin1')];
  if (c.type === 'zTXt') {
    if (rest.length < 1 || rest[0] !== 0) throw malformed('zTXt chunk with unknown compression method', { offset: c.offset });
    return [key, inflateText(rest.subarray(1), 'zTXt').toString('latin1')];
  }
  // iTXt: compression flag, method, language tag \0, translated keyword \0, text
  if (rest.length < 2) throw malformed('truncated iTXt chunk', { offset: c.offset });
  const compressed = rest[0];
  const method = rest[1];
  const langEnd = rest.indexOf(0, 2);
  const tkeyEnd = langEnd < 0 ? -1 : rest.indexOf(0, langEnd + 1);
  if (tkeyEnd < 0) throw malformed('truncated iTXt chunk', { offset: c.offset });
  let text = rest.subarray(tkeyEnd + 1);
  if (compressed === 1) {
    if (method !== 0) throw malformed('iTXt chunk with unknown compression method', { offset: c.offset });
    text = inflateText(text, 'iTXt');
  } else if (compressed !== 0) {
    throw malformed('iTXt chunk with bad compression flag', { offset: c.offset });
  }
  return [key, new TextDecoder('utf-8', { fatal: false }).decode(text)];
}

/**
 * Every tEXt, zTXt and iTXt chunk of a PNG as keyword → text. When a keyword repeats, the last one wins
 * (as in PIL's `image.info`). A1111's infotext is under 'parameters'. Throws INVALID_FILE on a malformed file.
 */
export function readPngText(buf: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {};
  for (const c of readChunks(buf)) {
    if (c.type === 'tEXt' || c.type === 'zTXt' || c.type === 'iTXt') {
      const [k, v] = decodeTextChunk(c);
      out[k] = v;
    }
  }
  return out;
}

/** Splices one text chunk per entry (in insertion order) right after IHDR. The input must be a valid PNG. */
export function insertPngText(png: Uint8Array, text: Record<string, string>): Buffer {
  const chunks = readChunks(png);
  const src = Buffer.from(png.buffer, png.byteOffset, png.byteLength);
  const afterIhdr = chunks[0].offset + 12 + chunks[0].data.length;
  const added = Object.entries(text).map(([k, v]) => textChunk(k, v));
  return Buffer.concat([src.subarray(0, afterIhdr), ...added, src.subarray(afterIhdr)]);
}

export interface EncodePngOptions {
  /** zlib level 0-9; default 6 (PIL's and libpng's default). */
  compressionLevel?: number;
}

/**
 * RGB bytes (HWC) → PNG, with `text` (e.g. `{ parameters: infotext }`) as tEXt/iTXt chunks right after IHDR.
 */
export async function encodePng(
  rgb: Uint8Array,
  width: number,
  height: number,
  text?: Record<string, string>,
  opts: EncodePngOptions = {},
): Promise<Buffer> {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width <= 0 || height <= 0 || rgb.length !== width * height * 3) {
    throw new LoraserveError('INVALID_ARGUMENT', `encodePng: ${rgb.length} bytes is not ${width}x${height} RGB`);
  }
  const png = await sharp(rgb, { raw: { width, height, channels: 3 } })
    .png({ compressionLevel: opts.compressionLevel ?? 6 })
    .toBuffer();
  return text && Object.keys(text).length > 0 ? insertPngText(png, text) : png;
}

/**
 * Any image sharp can read (PNG, JPEG, WebP, …) → 8-bit RGB. Alpha is dropped without compositing (as PIL's
 * convert('RGB') does in A1111's img2img), grey and palette images are expanded, 16-bit is reduced to 8-bit.
 */
export async function decodePng(buf: Uint8Array): Promise<RgbImage> {
  try {
    const { data, info } = await sharp(buf)
      .removeAlpha()
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3) throw new Error(`decoded to ${info.channels} channels`);
    return { rgb: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width: info.width, height: info.height };
  } catch (e) {
    if (e instanceof LoraserveError) throw e;
    throw new LoraserveError('INVALID_FILE', `cannot decode image: ${e instanceof Error ? e.message : String(e)}`, undefined, { cause: e });
  }
}
