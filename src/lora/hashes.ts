/**
 * LoRA file hashes as A1111 shows them, and the "Lora hashes" infotext value.
 *
 * - `addnet`: A1111 `modules/hashes.py` addnet_hash_safetensors (from kohya-ss sd-scripts
 *   `library/train_util.py`): sha256 of the bytes after the 8-byte length and the JSON header, i.e. of the
 *   tensor data only, so editing a LoRA's metadata keeps its hash. A1111's Lora extension
 *   (`extensions-builtin/Lora/network.py`, NetworkOnDisk.set_hash) keeps `shorthash = hash[0:12]`, which is
 *   what "Lora hashes" in the infotext carries.
 * - `sha256`: the whole file (civitai's "SHA256", A1111's `calculate_sha256`).
 * Both are computed in one streamed pass; LoRAs can be hundreds of MB.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { LoraserveError } from '../core/errors.js';

export interface LoraHashes {
  /** sha256 of the whole file, hex. */
  sha256: string;
  /** sha256 of the data after the header (A1111 addnet hash), hex. */
  addnet: string;
  /** First 12 hex digits of `addnet`: A1111's short hash for LoRAs. */
  short: string;
}

export const SHORT_HASH_LENGTH = 12;

function headerEnd(first8: Uint8Array, size: number, path: string): number {
  if (size < 8) throw new LoraserveError('LORA_INVALID', `${path}: truncated file (${size} bytes)`, { file: path, problem: 'truncated' });
  const n = new DataView(first8.buffer, first8.byteOffset, 8).getBigUint64(0, true);
  // A1111 seeks to 8 + n even past the end (hashing nothing); we keep its answer rather than refuse here.
  return Number(n > BigInt(size) ? BigInt(size) : n) + 8;
}

/** Both hashes of a file, streamed. */
export async function computeLoraHashes(path: string): Promise<LoraHashes> {
  const fh = await open(path, 'r');
  let skip: number;
  try {
    const { size } = await fh.stat();
    const first8 = new Uint8Array(8);
    if (size >= 8) await fh.read(first8, 0, 8, 0);
    skip = headerEnd(first8, size, path);
  } finally {
    await fh.close();
  }
  const whole = createHash('sha256');
  const data = createHash('sha256');
  let pos = 0;
  await new Promise<void>((resolve, reject) => {
    const s = createReadStream(path, { highWaterMark: 4 << 20 });
    s.on('data', (chunk) => {
      const buf = chunk as Buffer;
      whole.update(buf);
      const from = Math.max(0, skip - pos);
      if (from < buf.byteLength) data.update(from === 0 ? buf : buf.subarray(from));
      pos += buf.byteLength;
    });
    s.on('error', reject);
    s.on('end', () => resolve());
  });
  const addnet = data.digest('hex');
  return { sha256: whole.digest('hex'), addnet, short: addnet.slice(0, SHORT_HASH_LENGTH) };
}

/** Both hashes of a file already in memory. */
export function loraHashesOfBytes(bytes: Uint8Array, source = 'safetensors'): LoraHashes {
  const skip = headerEnd(bytes.subarray(0, 8), bytes.byteLength, source);
  const addnet = createHash('sha256').update(bytes.subarray(Math.min(skip, bytes.byteLength))).digest('hex');
  return { sha256: createHash('sha256').update(bytes).digest('hex'), addnet, short: addnet.slice(0, SHORT_HASH_LENGTH) };
}

/**
 * The infotext value of "Lora hashes": `name: hash, name2: hash2`. As A1111's
 * `extensions-builtin/Lora/extra_networks_lora.py` writes it, each name is the one the prompt used (stem or
 * alias) with ':' and ',' removed, so the list stays parseable. (The infotext writer quotes the whole value.)
 */
export function loraHashesInfotext(items: ReadonlyArray<{ name: string; hash: string }>): string {
  return items
    .filter((i) => i.hash !== '' && i.name !== '')
    .map(({ name, hash }) => `${name.replaceAll(':', '').replaceAll(',', '')}: ${hash}`)
    .join(', ');
}
