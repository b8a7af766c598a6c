/**
 * The entries of a ZIP archive held in memory: what torch.save writes since torch 1.6 (PyTorchStreamWriter,
 * miniz: stored entries, data aligned to 64 bytes with padding in the extra field, zip64 records when large).
 *
 * Format: PKWARE APPNOTE.TXT — end of central directory (EOCD, signature PK\5\6) at the end, optionally preceded
 * by a zip64 EOCD locator (PK\6\7) pointing at a zip64 EOCD (PK\6\6); the central directory (PK\1\2 per entry)
 * gives each entry's local header offset (PK\3\4) and sizes (zip64 extra field 0x0001 when they overflow 32 bits).
 * Stored (method 0) and deflated (method 8) entries are read; encryption and other methods are refused.
 */
import { inflateRawSync } from 'node:zlib';
import { LoraserveError } from '../../core/errors.js';

export interface ZipEntry {
  name: string;
  /** The entry's uncompressed bytes (a view into the archive when stored). */
  read(): Uint8Array;
}

const EOCD = 0x06054b50;
const EOCD64_LOCATOR = 0x07064b50;
const EOCD64 = 0x06064b50;
const CENTRAL = 0x02014b50;
const LOCAL = 0x04034b50;

/** Lists the entries of `bytes`; throws EMBEDDING_INVALID (naming `file`) when it is not a readable ZIP. */
export function zipEntries(bytes: Uint8Array, file: string): Map<string, ZipEntry> {
  const bad = (why: string): LoraserveError => new LoraserveError('EMBEDDING_INVALID', `${file}: not a readable torch zip archive (${why})`, { file });
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u16 = (at: number): number => view.getUint16(at, true);
  const u32 = (at: number): number => view.getUint32(at, true);
  const u64 = (at: number): number => Number(view.getBigUint64(at, true));

  // The EOCD record is 22 bytes plus a comment of up to 65535 bytes.
  let eocd = -1;
  for (let at = bytes.byteLength - 22; at >= Math.max(0, bytes.byteLength - 22 - 0xffff); at--) {
    if (u32(at) === EOCD) {
      eocd = at;
      break;
    }
  }
  if (eocd < 0) throw bad('no end-of-central-directory record');
  let count = u16(eocd + 10);
  let cdOffset = u32(eocd + 16);
  if ((count === 0xffff || cdOffset === 0xffffffff) && eocd >= 20 && u32(eocd - 20) === EOCD64_LOCATOR) {
    const rec = u64(eocd - 20 + 8);
    if (rec + 56 > bytes.byteLength || u32(rec) !== EOCD64) throw bad('broken zip64 end-of-central-directory record');
    count = u64(rec + 32);
    cdOffset = u64(rec + 48);
  }

  const entries = new Map<string, ZipEntry>();
  let at = cdOffset;
  for (let i = 0; i < count; i++) {
    if (at + 46 > bytes.byteLength || u32(at) !== CENTRAL) throw bad(`central directory entry ${i} is missing`);
    const flags = u16(at + 8);
    const method = u16(at + 10);
    let compressed = u32(at + 20);
    let size = u32(at + 24);
    const nameLen = u16(at + 28);
    const extraLen = u16(at + 30);
    const commentLen = u16(at + 32);
    let localOffset = u32(at + 42);
    const name = new TextDecoder().decode(bytes.subarray(at + 46, at + 46 + nameLen));
    // zip64 extra field: the 64-bit values of whichever 32-bit fields are 0xffffffff, in this order.
    let x = at + 46 + nameLen;
    const xEnd = x + extraLen;
    while (x + 4 <= xEnd) {
      const id = u16(x);
      const len = u16(x + 2);
      if (id === 0x0001) {
        let p = x + 4;
        if (size === 0xffffffff) (size = u64(p)), (p += 8);
        if (compressed === 0xffffffff) (compressed = u64(p)), (p += 8);
        if (localOffset === 0xffffffff) localOffset = u64(p);
      }
      x += 4 + len;
    }
    at = xEnd + commentLen;
    if (flags & 1) throw bad(`entry ${name} is encrypted`);
    if (method !== 0 && method !== 8) throw bad(`entry ${name} uses compression method ${method}`);
    if (localOffset + 30 > bytes.byteLength || u32(localOffset) !== LOCAL) throw bad(`entry ${name} has no local header`);
    const dataStart = localOffset + 30 + u16(localOffset + 26) + u16(localOffset + 28);
    if (dataStart + compressed > bytes.byteLength) throw bad(`entry ${name} runs past the end of the file`);
    const raw = bytes.subarray(dataStart, dataStart + compressed);
    entries.set(name, {
      name,
      read: () => {
        if (method === 0) {
          if (compressed !== size) throw bad(`stored entry ${name} has two sizes`);
          return raw;
        }
        let out: Uint8Array;
        try {
          out = inflateRawSync(raw, { maxOutputLength: Math.max(1, size) });
        } catch (e) {
          throw bad(`entry ${name} does not inflate to its ${size} bytes: ${(e as Error).message}`);
        }
        if (out.byteLength !== size) throw bad(`entry ${name} inflates to ${out.byteLength} bytes, not ${size}`);
        return out;
      },
    });
  }
  return entries;
}
