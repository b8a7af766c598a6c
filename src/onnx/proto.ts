/**
 * Reading and writing ONNX ModelProto files with onnx-proto (protobufjs), without onnxruntime.
 *
 * - `readModel` decodes a model.onnx; `initializerBytes` resolves one initializer's little-endian bytes
 *   wherever they live: `raw_data`, the typed repeated fields (`float_data`, `int32_data`, …), or an
 *   external-data file beside the model (ONNX external data: `location` / `offset` / `length` keys).
 * - `writeModel` writes a model and, optionally, its external-data file. Initializers are given as
 *   headers plus a `produce()` callback, and the protobuf bytes are written field by field, so a model
 *   far larger than memory (a 3.4 GB UNet) is never held whole: at most one tensor is in memory at a time.
 *
 * onnx-proto is generated from ONNX v1.10 (IR 8): fields newer than that are dropped on decode, so models
 * written here stay at opset ≤ 17 / IR ≤ 8.
 */
import { closeSync, fstatSync, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize, sep } from 'node:path';
import pkg from 'onnx-proto';
import { LoraserveError } from '../core/errors.js';

export import onnx = pkg.onnx;

/** onnx.TensorProto.DataType values this project handles. */
export const DataType = {
  FLOAT: 1,
  UINT8: 2,
  INT8: 3,
  UINT16: 4,
  INT16: 5,
  INT32: 6,
  INT64: 7,
  BOOL: 9,
  FLOAT16: 10,
  DOUBLE: 11,
  UINT32: 12,
  UINT64: 13,
  BFLOAT16: 16,
} as const;

const ELEMENT_SIZE: Record<number, number> = {
  1: 4, 2: 1, 3: 1, 4: 2, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2,
};

const DTYPE_NAMES: Record<number, string> = {
  1: 'float32', 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 6: 'int32', 7: 'int64', 9: 'bool',
  10: 'float16', 11: 'float64', 12: 'uint32', 13: 'uint64', 16: 'bfloat16',
};

/** A readable name for an ONNX element type (`float32`, `float16`, `int64`, …). */
export function dataTypeName(dataType: number): string {
  return DTYPE_NAMES[dataType] ?? `onnx-type-${dataType}`;
}

export function elementSize(dataType: number): number {
  const s = ELEMENT_SIZE[dataType];
  if (s === undefined) throw new LoraserveError('MODEL_INVALID', `unsupported ONNX tensor element type ${dataType}`);
  return s;
}

/** protobufjs decodes int64 fields as Long objects; everything here fits in a double. */
export function toNumber(v: number | { toNumber(): number } | null | undefined): number {
  if (v === null || v === undefined) return 0;
  return typeof v === 'number' ? v : v.toNumber();
}

export function tensorDims(t: onnx.ITensorProto): number[] {
  return (t.dims ?? []).map((d) => toNumber(d));
}

export function tensorByteLength(t: onnx.ITensorProto): number {
  return tensorDims(t).reduce((a, b) => a * b, 1) * elementSize(t.dataType ?? 0);
}

/** A graph input/output declaration: numbers are fixed dims, strings symbolic ones. */
export function valueInfo(name: string, elemType: number, dims: ReadonlyArray<number | string>): onnx.IValueInfoProto {
  return {
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  };
}

export interface LoadedModelProto {
  model: onnx.ModelProto;
  /** Folder of model.onnx: external-data locations are relative to it. */
  dir: string;
  path: string;
}

export async function readModel(path: string): Promise<LoadedModelProto> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (e) {
    throw new LoraserveError('IO_FAILED', `cannot read ONNX model ${path}: ${(e as Error).message}`, { path });
  }
  try {
    return { model: onnx.ModelProto.decode(bytes), dir: dirname(path), path };
  } catch (e) {
    throw new LoraserveError('MODEL_INVALID', `cannot parse ONNX model ${path}: ${(e as Error).message}`, { path });
  }
}

export interface ExternalDataRef {
  location: string;
  offset: number;
  length?: number;
}

/** The external-data reference of an initializer, or undefined when its bytes are inline. */
export function externalDataOf(t: onnx.ITensorProto): ExternalDataRef | undefined {
  if (t.dataLocation !== onnx.TensorProto.DataLocation.EXTERNAL) return undefined;
  const kv = new Map((t.externalData ?? []).map((e) => [e.key ?? '', e.value ?? '']));
  const location = kv.get('location');
  if (!location) throw new LoraserveError('MODEL_INVALID', `initializer ${t.name} is external but has no location`, { tensor: t.name });
  const offset = kv.has('offset') ? Number(kv.get('offset')) : 0;
  const length = kv.has('length') ? Number(kv.get('length')) : undefined;
  if (!Number.isSafeInteger(offset) || offset < 0 || (length !== undefined && (!Number.isSafeInteger(length) || length < 0))) {
    throw new LoraserveError('MODEL_INVALID', `initializer ${t.name} has a bad external-data offset/length`, { tensor: t.name });
  }
  return { location, offset, length };
}

/**
 * Resolves an external-data location against the model's folder. Only plain relative paths inside the
 * folder are accepted: a model file must not be able to make us read /etc/passwd or ../../secrets.
 */
export function resolveExternalLocation(modelDir: string, location: string): string {
  const norm = normalize(location);
  if (isAbsolute(location) || isAbsolute(norm) || norm === '..' || norm.startsWith(`..${sep}`) || norm.split(/[\\/]/).includes('..')) {
    throw new LoraserveError('MODEL_INVALID', `external data location "${location}" leaves the model folder`, { location });
  }
  return join(modelDir, norm);
}

function readRange(path: string, offset: number, length: number, tensor: string): Uint8Array {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new LoraserveError('IO_FAILED', `cannot open external data ${path} for ${tensor}: ${(e as Error).message}`, { path, tensor });
  }
  try {
    const size = fstatSync(fd).size;
    if (offset + length > size) {
      throw new LoraserveError('MODEL_INVALID', `external data for ${tensor} (${offset}+${length}) runs past the end of ${path} (${size} bytes)`, {
        path,
        tensor,
      });
    }
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = readSync(fd, out, done, length - done, offset + done);
      if (n === 0) break;
      done += n;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

function typedFieldBytes(t: onnx.ITensorProto, count: number): Uint8Array | undefined {
  const dt = t.dataType ?? 0;
  const out = new Uint8Array(count * elementSize(dt));
  const view = new DataView(out.buffer);
  if (t.floatData && t.floatData.length) {
    t.floatData.forEach((v, i) => view.setFloat32(i * 4, v, true));
    return out;
  }
  if (t.doubleData && t.doubleData.length) {
    t.doubleData.forEach((v, i) => view.setFloat64(i * 8, v, true));
    return out;
  }
  if (t.int64Data && t.int64Data.length) {
    t.int64Data.forEach((v, i) => view.setBigInt64(i * 8, BigInt(String(v)), true));
    return out;
  }
  if (t.uint64Data && t.uint64Data.length) {
    t.uint64Data.forEach((v, i) => view.setBigUint64(i * 8, BigInt(String(v)), true));
    return out;
  }
  if (t.int32Data && t.int32Data.length) {
    // ONNX stores every ≤32-bit type (int8…int32, bool, float16/bfloat16 bit patterns) in int32_data.
    const size = elementSize(dt);
    t.int32Data.forEach((v, i) => {
      if (size === 4) view.setInt32(i * 4, v, true);
      else if (size === 2) view.setUint16(i * 2, v & 0xffff, true);
      else view.setUint8(i, v & 0xff);
    });
    return out;
  }
  return undefined;
}

/**
 * The little-endian bytes of an initializer, read from wherever the model keeps them. The result has
 * exactly dims × element-size bytes (checked).
 */
export function initializerBytes(t: onnx.ITensorProto, modelDir: string): Uint8Array {
  const name = t.name ?? '?';
  const expected = tensorByteLength(t);
  const ext = externalDataOf(t);
  let bytes: Uint8Array | undefined;
  if (ext) {
    const length = ext.length ?? expected;
    bytes = readRange(resolveExternalLocation(modelDir, ext.location), ext.offset, length, name);
  } else if (t.rawData && t.rawData.length > 0) {
    bytes = t.rawData;
  } else {
    const count = tensorDims(t).reduce((a, b) => a * b, 1);
    bytes = count === 0 ? new Uint8Array(0) : typedFieldBytes(t, count);
  }
  if (!bytes) throw new LoraserveError('MODEL_INVALID', `initializer ${name} has no data`, { tensor: name });
  if (bytes.byteLength !== expected) {
    throw new LoraserveError('MODEL_INVALID', `initializer ${name} has ${bytes.byteLength} bytes, its shape needs ${expected}`, {
      tensor: name,
      dims: tensorDims(t),
    });
  }
  return bytes;
}

/** Float32 view of a float32 initializer (copied, so the result is aligned and owned by the caller). */
export function initializerFloat32(t: onnx.ITensorProto, modelDir: string): Float32Array {
  if (t.dataType !== DataType.FLOAT) {
    throw new LoraserveError('MODEL_INVALID', `initializer ${t.name} is ${dataTypeName(t.dataType ?? 0)}, not float32`, { tensor: t.name });
  }
  const b = initializerBytes(t, modelDir);
  const copy = new Uint8Array(b.byteLength);
  copy.set(b);
  return new Float32Array(copy.buffer);
}

// ---------------------------------------------------------------------------------------------------------
// Writing

/** An initializer to write: its header (name, dims, dataType) and a callback producing its bytes on demand. */
export interface PendingInitializer {
  name: string;
  dims: number[];
  dataType: number;
  /** Called exactly once, when the writer reaches this tensor; must return dims × element-size bytes. */
  produce(): Uint8Array;
}

export interface WriteModelOptions {
  /**
   * Move initializers of at least `threshold` bytes (default 1024, onnx.save_model's size_threshold) to one
   * external-data file named `location` beside the model, as `onnx.save_model(..., save_as_external_data=True,
   * all_tensors_to_one_file=True)` does. Omitted: every initializer is inline (a model.onnx must stay < 2 GB).
   */
  externalData?: { location: string; threshold?: number };
  /** Called after each initializer is written (bytes written so far). */
  onTensor?: (name: string, bytesSoFar: number) => void;
}

export interface WriteModelResult {
  modelBytes: number;
  externalBytes: number;
}

const PROTOBUF_LIMIT = 2 ** 31 - 1;

// Protobuf wire-format bits needed to splice initializers into an encoded ModelProto.
const MODEL_GRAPH_TAG = (7 << 3) | 2; // ModelProto.graph
const GRAPH_INITIALIZER_TAG = (5 << 3) | 2; // GraphProto.initializer
const TENSOR_RAW_DATA_TAG = (9 << 3) | 2; // TensorProto.raw_data

function varint(n: number): Uint8Array {
  const out: number[] = [];
  let v = n;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
  return Uint8Array.from(out);
}

class FileSink {
  private fd: number;
  bytes = 0;
  constructor(readonly path: string) {
    try {
      this.fd = openSync(path, 'w');
    } catch (e) {
      throw new LoraserveError('IO_FAILED', `cannot create ${path}: ${(e as Error).message}`, { path });
    }
  }
  write(b: Uint8Array): void {
    let off = 0;
    while (off < b.byteLength) off += writeSync(this.fd, b, off, b.byteLength - off);
    this.bytes += b.byteLength;
  }
  close(): void {
    closeSync(this.fd);
  }
}

/**
 * Writes `model` to `modelPath` with the given initializers. Initializers already in model.graph.initializer
 * are written first, except those a given PendingInitializer replaces (same name: a header-only entry, or a
 * weight being swapped). Protobuf fields may appear in any order and a repeated field's elements may be
 * split up, so the encoded model is: every ModelProto field but the graph, then the graph field whose
 * body is the encoded graph (without initializers) followed by one `initializer` field per tensor — the
 * graph's length is known up front from the headers, and each tensor's bytes are produced, written and
 * dropped in turn.
 */
export function writeModel(
  modelPath: string,
  model: onnx.IModelProto,
  initializers: Iterable<PendingInitializer> = [],
  options: WriteModelOptions = {},
): WriteModelResult {
  mkdirSync(dirname(modelPath), { recursive: true });
  const graph = model.graph ?? {};
  const given = [...initializers];
  const replaced = new Set(given.map((p) => p.name));
  const pending: PendingInitializer[] = [];
  for (const t of graph.initializer ?? []) {
    if (replaced.has(t.name ?? '')) continue;
    const inline = t.rawData && t.rawData.length ? t.rawData : initializerBytesOrThrowExternal(t);
    pending.push({ name: t.name ?? '', dims: tensorDims(t), dataType: t.dataType ?? 0, produce: () => inline });
  }
  pending.push(...given);

  const ext = options.externalData;
  const threshold = ext?.threshold ?? 1024;
  if (ext) resolveExternalLocation(dirname(modelPath), ext.location); // same rule as for reading
  const headers: Array<{ header: Uint8Array; external: boolean }> = [];
  let externalOffset = 0;
  let graphBodyLength = 0;
  const graphSansInit = onnx.GraphProto.encode({ ...graph, initializer: [] }).finish();
  graphBodyLength += graphSansInit.byteLength;
  for (const p of pending) {
    const length = p.dims.reduce((a, b) => a * b, 1) * elementSize(p.dataType);
    const external = ext !== undefined && length >= threshold;
    const headerProto: onnx.ITensorProto = { dims: p.dims, dataType: p.dataType, name: p.name };
    if (external) {
      headerProto.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
      headerProto.externalData = [
        { key: 'location', value: ext!.location },
        { key: 'offset', value: String(externalOffset) },
        { key: 'length', value: String(length) },
      ];
      externalOffset += length;
    }
    const header = onnx.TensorProto.encode(headerProto).finish();
    const tensorLength = header.byteLength + (external ? 0 : 1 + varint(length).byteLength + length);
    graphBodyLength += 1 + varint(tensorLength).byteLength + tensorLength;
    headers.push({ header, external });
  }

  const modelSansGraph = onnx.ModelProto.encode({ ...model, graph: undefined }).finish();
  const total = modelSansGraph.byteLength + 1 + varint(graphBodyLength).byteLength + graphBodyLength;
  if (total > PROTOBUF_LIMIT) {
    // protobuf (and so onnxruntime) cannot parse a message of 2 GiB or more: such models need external data.
    throw new LoraserveError('INVALID_ARGUMENT', `${modelPath} would be ${total} bytes, over protobuf's 2 GiB limit; write it with externalData`, {
      bytes: total,
    });
  }
  const sink = new FileSink(modelPath);
  const extSink = ext ? new FileSink(join(dirname(modelPath), normalize(ext.location))) : undefined;
  try {
    sink.write(modelSansGraph);
    sink.write(Uint8Array.of(MODEL_GRAPH_TAG));
    sink.write(varint(graphBodyLength));
    sink.write(graphSansInit);
    for (let i = 0; i < pending.length; i++) {
      const p = pending[i];
      const h = headers[i];
      const data = p.produce();
      const want = p.dims.reduce((a, b) => a * b, 1) * elementSize(p.dataType);
      if (data.byteLength !== want) {
        throw new LoraserveError('INTERNAL', `initializer ${p.name} produced ${data.byteLength} bytes, its shape needs ${want}`);
      }
      const tensorLength = h.header.byteLength + (h.external ? 0 : 1 + varint(want).byteLength + want);
      sink.write(Uint8Array.of(GRAPH_INITIALIZER_TAG));
      sink.write(varint(tensorLength));
      sink.write(h.header);
      if (h.external) {
        extSink!.write(data);
      } else {
        sink.write(Uint8Array.of(TENSOR_RAW_DATA_TAG));
        sink.write(varint(want));
        sink.write(data);
      }
      options.onTensor?.(p.name, sink.bytes + (extSink?.bytes ?? 0));
    }
  } finally {
    sink.close();
    extSink?.close();
  }
  return { modelBytes: sink.bytes, externalBytes: extSink?.bytes ?? 0 };
}

function initializerBytesOrThrowExternal(t: onnx.ITensorProto): Uint8Array {
  if (externalDataOf(t)) {
    throw new LoraserveError('INTERNAL', `writeModel: initializer ${t.name} refers to external data; pass its bytes as a PendingInitializer`);
  }
  return initializerBytes(t, '.');
}

/** Encodes a model held entirely in memory (small models, tests). */
export function encodeModel(model: onnx.IModelProto): Uint8Array {
  return onnx.ModelProto.encode(model).finish();
}
