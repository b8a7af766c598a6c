/**
 * Pre-touched memory for LoRA feed factors. Building the stacked factors of a never-seen LoRA set writes
 * ~130 MiB on SD1.5 shapes (three LoRAs); in freshly allocated memory nearly all of that time is the kernel
 * faulting pages in (measured here: 404 MiB took 224 ms to fill the first time, 22 ms the second). So the
 * resolver carves its factors out of chunks that were touched once, while the worker was idle, and gives
 * ranges back when the factor cache drops them.
 *
 * A plain first-fit allocator with coalescing free lists, one per chunk. A request that does not fit is the
 * caller's to allocate normally (slower, never wrong). Ranges are 64-byte aligned.
 */
export interface ArenaRange {
  chunk: number;
  offset: number;
  bytes: number;
}

interface Chunk {
  buffer: ArrayBuffer;
  /** Free ranges [offset, end), sorted by offset, never adjacent (coalesced). */
  free: Array<{ offset: number; end: number }>;
}

const ALIGN = 64;
const align = (n: number) => Math.ceil(n / ALIGN) * ALIGN;

export class FeedArena {
  private readonly chunks: Chunk[] = [];
  private used = 0;

  constructor(readonly chunkBytes = 32 * 2 ** 20) {}

  /** Bytes of touched memory held (whether in use or free). */
  get reservedBytes(): number {
    return this.chunks.length * this.chunkBytes;
  }

  get usedBytes(): number {
    return this.used;
  }

  /** Grows the arena to at least `bytes`, touching every page now (call while nothing waits). */
  reserve(bytes: number): void {
    while (this.reservedBytes < bytes) {
      const buffer = new ArrayBuffer(this.chunkBytes);
      new Uint8Array(buffer).fill(1).fill(0);
      this.chunks.push({ buffer, free: [{ offset: 0, end: this.chunkBytes }] });
    }
  }

  /** A range of `bytes` (rounded up to 64), or undefined when no free range is large enough. */
  alloc(bytes: number): { range: ArenaRange; buffer: ArrayBuffer } | undefined {
    const want = align(Math.max(bytes, 1));
    for (let c = 0; c < this.chunks.length; c++) {
      const free = this.chunks[c].free;
      for (let i = 0; i < free.length; i++) {
        const f = free[i];
        if (f.end - f.offset < want) continue;
        const offset = f.offset;
        f.offset += want;
        if (f.offset === f.end) free.splice(i, 1);
        this.used += want;
        return { range: { chunk: c, offset, bytes: want }, buffer: this.chunks[c].buffer };
      }
    }
    return undefined;
  }

  /** Gives a range back. The caller guarantees nothing reads or writes it any more. */
  release(r: ArenaRange): void {
    const free = this.chunks[r.chunk].free;
    const end = r.offset + r.bytes;
    let i = 0;
    while (i < free.length && free[i].offset < r.offset) i++;
    const prev = free[i - 1];
    const next = free[i];
    if ((prev && prev.end > r.offset) || (next && next.offset < end)) throw new Error(`arena range ${r.chunk}:${r.offset}+${r.bytes} released twice or overlaps a free range`);
    this.used -= r.bytes;
    if (prev && prev.end === r.offset && next && next.offset === end) {
      prev.end = next.end;
      free.splice(i, 1);
    } else if (prev && prev.end === r.offset) prev.end = end;
    else if (next && next.offset === end) next.offset = r.offset;
    else free.splice(i, 0, { offset: r.offset, end });
  }
}
