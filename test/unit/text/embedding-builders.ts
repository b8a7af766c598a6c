/**
 * Builders for embedding files in tests: .safetensors, and torch.save zip archives whose data.pkl is written
 * opcode by opcode the way CPython's pickler (protocol 2) writes torch's embedding dicts — what
 * torch/serialization.py _save produces for A1111's `{'string_to_param': {'*': tensor}, …}`.
 */
import { crc32 } from 'node:zlib';

// ---------------------------------------------------------------- safetensors

export function safetensors(tensors: Record<string, { dtype: 'F32' | 'F16' | 'BF16' | 'I32'; shape: number[]; data: Uint8Array }>, metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  while ((8 + json.length) % 8) json += ' ';
  const h = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + h.byteLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(h.byteLength), true);
  out.set(h, 8);
  let at = 8 + h.byteLength;
  for (const t of Object.values(tensors)) {
    out.set(t.data, at);
    at += t.data.byteLength;
  }
  return out;
}

export const f32bytes = (v: ArrayLike<number>): Uint8Array => new Uint8Array(Float32Array.from(v).buffer);

// ---------------------------------------------------------------- pickle (protocol 2)

export class Pickle {
  private parts: number[] = [];
  private memo = 0;
  op(...bytes: number[]): this {
    this.parts.push(...bytes);
    return this;
  }
  proto(): this {
    return this.op(0x80, 2);
  }
  /** BINPUT of the next memo slot (CPython memoizes every container and string). */
  put(): this {
    return this.op(0x71, this.memo++ & 0xff);
  }
  str(s: string): this {
    const b = new TextEncoder().encode(s);
    return this.op(0x58, ...u32(b.length), ...b); // BINUNICODE (SHORT_BINUNICODE is protocol 4)
  }
  int(n: number): this {
    if (n >= 0 && n < 256) return this.op(0x4b, n);
    if (n >= 0 && n < 65536) return this.op(0x4d, n & 0xff, n >> 8);
    return this.op(0x4a, ...u32(n >>> 0));
  }
  global(module: string, name: string): this {
    return this.op(0x63, ...new TextEncoder().encode(`${module}\n${name}\n`));
  }
  mark(): this {
    return this.op(0x28);
  }
  /**
   * torch's tensor reduce: _rebuild_tensor_v2((storage pid), offset, size, stride, requires_grad, OrderedDict()).
   * `storageType` e.g. 'FloatStorage'; `key` the archive entry data/<key>.
   */
  tensor(t: { storageType: string; key: string; numel: number; offset: number; shape: number[]; stride: number[]; requiresGrad?: boolean }): this {
    this.global('torch._utils', '_rebuild_tensor_v2').put();
    this.mark(); // the argument tuple
    this.mark(); // the persistent id tuple
    this.str('storage').put().global('torch', t.storageType).put().str(t.key).put().str('cpu').put().int(t.numel).op(0x74).put().op(0x51); // TUPLE, BINPERSID
    this.int(t.offset);
    this.tuple(t.shape);
    this.tuple(t.stride);
    this.op(t.requiresGrad ? 0x88 : 0x89);
    this.global('collections', 'OrderedDict').put().op(0x29).op(0x52).put(); // EMPTY_TUPLE, REDUCE
    return this.op(0x74).put().op(0x52).put(); // TUPLE, REDUCE
  }
  private tuple(v: number[]): this {
    if (v.length === 1) return this.int(v[0]).op(0x85).put();
    if (v.length === 2) return this.int(v[0]).int(v[1]).op(0x86).put();
    this.mark();
    for (const x of v) this.int(x);
    return this.op(0x74).put();
  }
  bytes(): Uint8Array {
    return Uint8Array.from([...this.parts, 0x2e]); // STOP
  }
}

function u32(n: number): number[] {
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, (n >>> 24) & 0xff];
}

/** A1111's Embedding.save dict: string_to_token, string_to_param {'*': tensor}, name, step, checkpoint. */
export function a1111EmbeddingPickle(t: Parameters<Pickle['tensor']>[0], name = 'x', step = 1500): Uint8Array {
  const p = new Pickle().proto().op(0x7d).put().mark(); // EMPTY_DICT, MARK
  p.str('string_to_token').put().op(0x7d).put().str('*').put().int(265).op(0x73); // {'*': 265}
  p.str('string_to_param').put().op(0x7d).put().str('*').put().tensor(t).op(0x73);
  p.str('name').put().str(name).put();
  p.str('step').put().int(step);
  p.str('sd_checkpoint').put().str('a9263745').put();
  p.str('sd_checkpoint_name').put().str('v1-5-pruned-emaonly').put();
  return p.op(0x75).bytes(); // SETITEMS
}

// ---------------------------------------------------------------- zip (stored, as torch's miniz writer)

export function zip(entries: Record<string, Uint8Array>): Uint8Array {
  const chunks: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const [name, data] of Object.entries(entries)) {
    const n = new TextEncoder().encode(name);
    const crc = crc32(data);
    const local = new Uint8Array(30 + n.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, data.byteLength, true);
    lv.setUint32(22, data.byteLength, true);
    lv.setUint16(26, n.length, true);
    local.set(n, 30);
    const c = new Uint8Array(46 + n.length);
    const cv = new DataView(c.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, 20, true);
    cv.setUint16(6, 20, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, data.byteLength, true);
    cv.setUint32(24, data.byteLength, true);
    cv.setUint16(28, n.length, true);
    cv.setUint32(42, offset, true);
    c.set(n, 46);
    chunks.push(local, data);
    central.push(c);
    offset += local.byteLength + data.byteLength;
  }
  const cdSize = central.reduce((a, c) => a + c.byteLength, 0);
  const eocd = new Uint8Array(22);
  const ev = new DataView(eocd.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, central.length, true);
  ev.setUint16(10, central.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  const all = [...chunks, ...central, eocd];
  const out = new Uint8Array(all.reduce((a, c) => a + c.byteLength, 0));
  let at = 0;
  for (const c of all) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/** A torch.save archive: <archive>/data.pkl, <archive>/data/<key>…, byteorder, version. */
export function torchArchive(pkl: Uint8Array, storages: Record<string, Uint8Array>, archive = 'archive'): Uint8Array {
  const entries: Record<string, Uint8Array> = { [`${archive}/data.pkl`]: pkl, [`${archive}/byteorder`]: new TextEncoder().encode('little') };
  for (const [k, v] of Object.entries(storages)) entries[`${archive}/data/${k}`] = v;
  entries[`${archive}/version`] = new TextEncoder().encode('3\n');
  return zip(entries);
}
