/**
 * Merged weights, the other half of request-time LoRA (docs/ARCHITECTURE.md, "Two ways to apply a LoRA set"):
 * a copy of the ORIGINAL graph (no branches) whose touched layers hold W' = W + ΔW, opened as a session of
 * its own. Its step costs exactly what the unmodified model costs; building it costs a session creation.
 *
 * ΔW comes from the very factors the branches are fed (src/engine/lora-feeds.ts), A [R, in(, kh, kw)] with
 * the scales folded in and B [out, R(, 1, 1)], so both ways compute the same delta:
 *
 *   in_out (MatMul, Gemm transB=0)  W [in, out]      W' = W + Aᵀ · Bᵀ
 *   out_in (Gemm transB=1)           W [out, in]      W' = W + B · A
 *   conv                             W [out, in·kh·kw] W' = W + B · A   (a 1×1 up conv after any down kernel)
 *
 * The products run as one onnxruntime Gemm per layer on the CPU (sgemm; a JS loop would take seconds on the
 * SD1.5 shapes). fp16 weights are merged in float32 and rounded once.
 *
 * Where the merged weights go: a model without external data is re-encoded with them inline and opened from
 * memory; a model with external data gets a private folder (materialize.ts) whose model.onnx points at the
 * original weights for untouched layers (hard links, nothing copied) and at one new file for the merged ones.
 * The folder is removed once the session is open: onnxruntime has read or mapped what it needs by then.
 */
import type { DeviceConfig } from '../core/config.js';
import { LoraserveError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import type { HostTensor } from '../tensor/host-tensor.js';
import { numel } from '../tensor/host-tensor.js';
import type { TargetLayer } from './graph-modules.js';
import { materializeVariant } from './materialize.js';
import { DataType, dataTypeName, encodeModel, externalDataOf, initializerBytes, onnx, readModel, tensorDims, valueInfo } from './proto.js';
import { OnnxSession } from './runtime.js';

export interface LayerDelta {
  weightName: string;
  layout: TargetLayer['layout'];
  /** A: [R, in(, kh, kw)], scales folded in or not — the product is what counts. */
  down: HostTensor;
  /** B: [out, R(, 1, 1)]. */
  up: HostTensor;
}

export interface MergedModelOptions {
  device: DeviceConfig;
  logger?: Logger;
  label?: string;
  cacheRoot?: string;
}

type Variant = 'transposed' | 'plain';

/** Y = Gemm(X, Y, C): transposed = Xᵀ·Yᵀ + C (in_out layout), plain = X·Y + C; fp16 through float32. */
function mergeGraph(variant: Variant, elemType: number): Uint8Array {
  const t = variant === 'transposed' ? 1 : 0;
  const half = elemType === DataType.FLOAT16;
  const nodes: onnx.INodeProto[] = [];
  const f = (n: string) => (half ? `${n}_f` : n);
  if (half) for (const n of ['x', 'y', 'c']) nodes.push({ opType: 'Cast', input: [n], output: [f(n)], attribute: [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: DataType.FLOAT }] });
  nodes.push({
    opType: 'Gemm',
    input: [f('x'), f('y'), f('c')],
    output: [half ? 'out_f' : 'out'],
    attribute: [
      { name: 'transA', type: onnx.AttributeProto.AttributeType.INT, i: t },
      { name: 'transB', type: onnx.AttributeProto.AttributeType.INT, i: t },
    ],
  });
  if (half) nodes.push({ opType: 'Cast', input: ['out_f'], output: ['out'], attribute: [{ name: 'to', type: onnx.AttributeProto.AttributeType.INT, i: DataType.FLOAT16 }] });
  return encodeModel({
    irVersion: 7,
    opsetImport: [{ domain: '', version: 13 }],
    producerName: 'loraserve-weight-merge',
    graph: {
      name: 'merge',
      node: nodes,
      input: t ? [valueInfo('x', elemType, ['r', 'm']), valueInfo('y', elemType, ['n', 'r']), valueInfo('c', elemType, ['m', 'n'])] : [valueInfo('x', elemType, ['m', 'r']), valueInfo('y', elemType, ['r', 'n']), valueInfo('c', elemType, ['m', 'n'])],
      output: [valueInfo('out', elemType, ['m', 'n'])],
    },
  });
}

const mergers = new Map<string, Promise<OnnxSession>>();

function merger(variant: Variant, elemType: number): Promise<OnnxSession> {
  const key = `${variant}|${elemType}`;
  let s = mergers.get(key);
  if (!s) {
    s = OnnxSession.create(mergeGraph(variant, elemType), { device: { kind: 'cpu' }, label: `weight-merge(${variant})` });
    mergers.set(key, s);
    s.catch(() => mergers.delete(key));
  }
  return s;
}

function typedOf(bytes: Uint8Array, elemType: number): Float32Array | Uint16Array {
  const own = new Uint8Array(bytes.byteLength);
  own.set(bytes);
  return elemType === DataType.FLOAT16 ? new Uint16Array(own.buffer) : new Float32Array(own.buffer);
}

function as2d(t: HostTensor, rows: number): HostTensor {
  return { ...t, dims: [rows, numel(t.dims) / rows] };
}

/** W + ΔW for one initializer, as little-endian bytes in the initializer's own dtype and layout. */
async function mergeOne(w: onnx.ITensorProto, modelDir: string, d: LayerDelta): Promise<Uint8Array> {
  const dims = tensorDims(w);
  const elemType = w.dataType ?? 0;
  const type = elemType === DataType.FLOAT ? 'float32' : elemType === DataType.FLOAT16 ? 'float16' : undefined;
  if (!type) throw new LoraserveError('MODEL_INVALID', `weight ${w.name} is ${dataTypeName(elemType)}; LoRA merging needs float32 or float16`, { tensor: w.name });
  if (d.down.type !== type || d.up.type !== type) {
    throw new LoraserveError('INTERNAL', `LoRA factors for ${w.name} are ${d.down.type}/${d.up.type}, the weight is ${type}`);
  }
  const R = d.down.dims[0];
  const data = typedOf(initializerBytes(w, modelDir), elemType);
  let feeds: Record<string, HostTensor>;
  if (d.layout === 'in_out') {
    if (dims.length !== 2) throw new LoraserveError('INTERNAL', `weight ${w.name} has dims [${dims}], expected [in, out]`);
    feeds = { x: as2d(d.down, R), y: as2d(d.up, dims[1]), c: { type, data, dims } };
  } else {
    const rows = dims[0];
    feeds = { x: as2d(d.up, rows), y: as2d(d.down, R), c: { type, data, dims: [rows, numel(dims) / rows] } };
  }
  const session = await merger(d.layout === 'in_out' ? 'transposed' : 'plain', elemType);
  const out = (await session.run(feeds, ['out'])).out;
  if (numel(out.dims) !== numel(dims)) throw new LoraserveError('INTERNAL', `merged ${w.name} has dims [${out.dims}], expected [${dims}]`);
  return new Uint8Array(out.data.buffer, out.data.byteOffset, out.data.byteLength);
}

/**
 * Opens the original graph at `modelPath` with `deltas` merged into its weights, on `opts.device`. No deltas:
 * the original model as it is (the LoRA-free session).
 */
export async function openMergedModel(modelPath: string, deltas: readonly LayerDelta[], opts: MergedModelOptions): Promise<OnnxSession> {
  const create = (source: string | Uint8Array) => OnnxSession.create(source, { device: opts.device, logger: opts.logger, label: opts.label ?? 'unet(merged)' });
  if (deltas.length === 0) return create(modelPath);
  const { model, dir } = await readModel(modelPath);
  const byName = new Map((model.graph?.initializer ?? []).map((t) => [t.name ?? '', t]));
  const replacements = new Map<string, Uint8Array>();
  for (const d of deltas) {
    const w = byName.get(d.weightName);
    if (!w) throw new LoraserveError('INTERNAL', `LoRA merge: ${modelPath} has no initializer ${d.weightName}`);
    replacements.set(d.weightName, await mergeOne(w, dir, d));
  }
  const external = [...byName.values()].some((t) => externalDataOf(t));
  if (!external) {
    for (const [name, bytes] of replacements) {
      const t = byName.get(name)!;
      t.rawData = bytes;
      t.floatData = [];
      t.int32Data = [];
    }
    return create(encodeModel(model));
  }
  const variant = materializeVariant(model, { modelDir: dir, replacements, cacheRoot: opts.cacheRoot, logger: opts.logger });
  try {
    return await create(variant.path);
  } finally {
    variant.remove();
  }
}
