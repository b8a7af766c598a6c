/** Shared by the synth tests: a generated tiny pipeline in a temp folder, and a minimal safetensors reader. */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { synthesize, type SynthesizeResult } from '../../../src/synth/index.js';

export async function makeTiny(opts: { seed?: number; preset?: 'tiny' | 'tiny-sd2'; loras?: number } = {}): Promise<SynthesizeResult & { cleanup: () => void }> {
  const root = mkdtempSync(join(tmpdir(), 'loraserve-synth-test-'));
  const r = await synthesize({ preset: opts.preset ?? 'tiny', outDir: join(root, 'model'), seed: opts.seed ?? 0, loras: opts.loras });
  return { ...r, cleanup: () => rmSync(root, { recursive: true, force: true }) };
}

export interface SafetensorsEntry {
  dtype: string;
  shape: number[];
  data: Buffer;
}

/** Reads a .safetensors file: u64 LE header length, JSON header, data section. Checks offsets and padding. */
export function readSafetensors(path: string): { headerBytes: Buffer; header: Record<string, unknown>; tensors: Map<string, SafetensorsEntry>; metadata: Record<string, string> } {
  const buf = readFileSync(path);
  const n = Number(buf.readBigUInt64LE(0));
  const headerBytes = buf.subarray(8, 8 + n);
  const header = JSON.parse(headerBytes.toString('utf8')) as Record<string, unknown>;
  const base = 8 + n;
  const tensors = new Map<string, SafetensorsEntry>();
  let expectedOffset = 0;
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const { dtype, shape, data_offsets: [a, b] } = v as { dtype: string; shape: number[]; data_offsets: [number, number] };
    if (a !== expectedOffset) throw new Error(`${name}: data not contiguous (${a} vs ${expectedOffset})`);
    expectedOffset = b;
    tensors.set(name, { dtype, shape, data: buf.subarray(base + a, base + b) });
  }
  if (base + expectedOffset !== buf.byteLength) throw new Error(`file has ${buf.byteLength - base - expectedOffset} trailing bytes`);
  return { headerBytes, header, tensors, metadata: (header.__metadata__ ?? {}) as Record<string, string> };
}

export function float32(e: SafetensorsEntry): Float32Array {
  if (e.dtype === 'F32') return new Float32Array(e.data.buffer.slice(e.data.byteOffset, e.data.byteOffset + e.data.byteLength));
  if (e.dtype !== 'F16') throw new Error(`unexpected dtype ${e.dtype}`);
  const out = new Float32Array(e.data.byteLength / 2);
  for (let i = 0; i < out.length; i++) {
    const h = e.data.readUInt16LE(2 * i);
    const s = h & 0x8000 ? -1 : 1;
    const ex = (h >> 10) & 31;
    const m = h & 1023;
    out[i] = ex === 0 ? s * m * 2 ** -24 : ex === 31 ? (m ? NaN : s * Infinity) : s * (1 + m / 1024) * 2 ** (ex - 15);
  }
  return out;
}

export function readText(path: string): string {
  return readFileSync(path, 'utf8');
}
