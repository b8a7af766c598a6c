/**
 * Builds ONNX graphs that read like torch.onnx's export of a diffusers / transformers module tree.
 *
 * What "like torch" means here (copied from ../shared/fixtures/tiny-sd15, a torch 1.13 export):
 *   - a node is named `/<module path>/<OpType>`, with `_1`, `_2`, … for repeats of that op type in that
 *     module; the module path keeps ModuleList indices attached (`/down_blocks.0/attentions.0/…`);
 *   - a node's outputs are `<node name>_output_<i>`; constants are `Constant` nodes, not initializers;
 *   - parameters keep their torch names (`conv_in.weight`), except the ones the exporter constant-folds:
 *     a Linear's transposed weight `onnx::MatMul_<n>` ([in, out]) and GroupNorm's unsqueezed affine
 *     `onnx::Mul_<n>` / `onnx::Add_<n>` ([C, 1, 1]).
 * Weights are not stored here: each initializer carries a recipe, and its bytes are produced on demand
 * while the model is written (see onnx/proto.ts writeModel), so a billion-parameter UNet never sits in memory.
 */
import { DataType, onnx, valueInfo, type PendingInitializer } from '../onnx/proto.js';
import { fillUniform, streamSeed } from './prng.js';

export type Attr =
  | { i: number }
  | { f: number }
  | { ints: number[] }
  | { floats: number[] }
  | { s: string }
  | { t: onnx.ITensorProto };

export const ai = (i: number): Attr => ({ i });
export const af = (f: number): Attr => ({ f });
export const aints = (ints: number[]): Attr => ({ ints });
export const astr = (s: string): Attr => ({ s });

/** How an initializer's values are drawn: center + U(-bound, bound). */
export interface WeightInit {
  bound: number;
  center?: number;
}

/** A torch module path (`down_blocks.0.resnets.0.conv1`) as torch.onnx's scope (`/down_blocks.0/resnets.0/conv1`). */
export function scopeOf(modulePath: string): string {
  if (modulePath === '') return '';
  const segments: string[] = [];
  for (const part of modulePath.split('.')) {
    if (/^\d+$/.test(part) && segments.length > 0) segments[segments.length - 1] += `.${part}`;
    else segments.push(part);
  }
  return `/${segments.join('/')}`;
}

/** Joins module path parts, skipping empty ones: join('down_blocks.0', 'resnets.1') = 'down_blocks.0.resnets.1'. */
export function join(...parts: string[]): string {
  return parts.filter((p) => p !== '').join('.');
}

interface InitRecipe {
  name: string;
  dims: number[];
  init: WeightInit;
  seedKey: string;
}

export interface GraphBuilderOptions {
  seed: number;
  /** Component name, part of every weight's stream seed (`unet`, `text_encoder`, …). */
  component: string;
  /** First number used for anonymous `onnx::<Op>_<n>` initializers. */
  anonymousBase?: number;
}

export class GraphBuilder {
  readonly nodes: onnx.INodeProto[] = [];
  private readonly opCounts = new Map<string, number>();
  private readonly recipes: InitRecipe[] = [];
  private readonly inputs: onnx.IValueInfoProto[] = [];
  private readonly outputs: onnx.IValueInfoProto[] = [];
  private readonly renames = new Map<string, string>();
  private anonymous: number;

  constructor(readonly opts: GraphBuilderOptions) {
    this.anonymous = opts.anonymousBase ?? 1000;
  }

  /** Adds a node in the module `modulePath`; returns its output value names. */
  node(modulePath: string, opType: string, inputs: string[], attrs: Record<string, Attr> = {}, outputs = 1): string[] {
    const scope = scopeOf(modulePath);
    const key = `${scope}/${opType}`;
    const n = this.opCounts.get(key) ?? 0;
    this.opCounts.set(key, n + 1);
    const name = n === 0 ? key : `${key}_${n}`;
    const outNames = Array.from({ length: outputs }, (_, i) => `${name}_output_${i}`);
    this.nodes.push({
      name,
      opType,
      input: inputs,
      output: outNames,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outNames;
  }

  /** A single-output node. */
  op(modulePath: string, opType: string, inputs: string[], attrs: Record<string, Attr> = {}): string {
    return this.node(modulePath, opType, inputs, attrs, 1)[0];
  }

  /** A Constant node holding int64 values (shapes, axes, indices). dims [] = scalar. */
  i64(modulePath: string, values: number[], dims: number[] = [values.length]): string {
    const raw = new Uint8Array(values.length * 8);
    const view = new DataView(raw.buffer);
    values.forEach((v, i) => view.setBigInt64(i * 8, BigInt(v), true));
    return this.op(modulePath, 'Constant', [], { value: { t: { dims, dataType: DataType.INT64, rawData: raw } } });
  }

  /** A Constant node holding float values in the graph's float type. dims [] = scalar. */
  f32(modulePath: string, values: number[], dims: number[] = []): string {
    return this.op(modulePath, 'Constant', [], { value: { t: floatTensor(values, dims, DataType.FLOAT) } });
  }

  /** A torch-named parameter (`conv_in.weight`). */
  param(name: string, dims: number[], init: WeightInit): string {
    this.recipes.push({ name, dims, init, seedKey: name });
    return name;
  }

  /**
   * A parameter the exporter constant-folded into an anonymous initializer (`onnx::MatMul_<n>`). `seedKey`
   * is the torch parameter it stands for, so its values do not depend on the anonymous numbering.
   */
  anonymousParam(opType: string, seedKey: string, dims: number[], init: WeightInit): string {
    const name = `onnx::${opType}_${this.anonymous++}`;
    this.recipes.push({ name, dims, init, seedKey });
    return name;
  }

  input(name: string, elemType: number, dims: Array<number | string>): string {
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  /** Makes `value` a graph output called `name` (the producing node's output is renamed, as torch does). */
  output(value: string, name: string, elemType: number, dims: Array<number | string>): void {
    if (value !== name) this.renames.set(value, name);
    this.outputs.push(valueInfo(name, elemType, dims));
  }

  get parameterCount(): number {
    return this.recipes.reduce((a, r) => a + r.dims.reduce((x, y) => x * y, 1), 0);
  }

  /** The ModelProto (initializers as headers without data) and the initializers to stream into it. */
  build(meta: { docString?: string; metadata?: Record<string, string> } = {}): { model: onnx.IModelProto; initializers: PendingInitializer[] } {
    const rename = (v: string): string => this.renames.get(v) ?? v;
    const nodes = this.nodes.map((n) => ({ ...n, input: (n.input ?? []).map(rename), output: (n.output ?? []).map(rename) }));
    // float32 like diffusers' script without --fp16 (an fp16 export would also need fp16 inputs/constants).
    const dataType = DataType.FLOAT;
    const headers: onnx.ITensorProto[] = this.recipes.map((r) => ({ name: r.name, dims: r.dims, dataType }));
    const model: onnx.IModelProto = {
      irVersion: 7,
      producerName: 'loraserve-synth',
      producerVersion: '1',
      docString: meta.docString ?? '',
      opsetImport: [{ domain: '', version: 14 }],
      metadataProps: Object.entries(meta.metadata ?? {}).map(([key, value]) => ({ key, value })),
      graph: {
        name: 'torch_jit',
        node: nodes,
        initializer: headers,
        input: this.inputs,
        output: this.outputs,
      },
    };
    const { seed, component } = this.opts;
    const initializers: PendingInitializer[] = this.recipes.map((r) => ({
      name: r.name,
      dims: r.dims,
      dataType,
      produce: () => {
        const count = r.dims.reduce((a, b) => a * b, 1);
        const values = fillUniform(new Float32Array(count), streamSeed(seed, component, r.seedKey), r.init.bound, r.init.center ?? 0);
        return new Uint8Array(values.buffer);
      },
    }));
    return { model, initializers };
  }
}

function floatTensor(values: number[], dims: number[], dataType: number): onnx.ITensorProto {
  const raw = new Uint8Array(values.length * 4);
  const view = new DataView(raw.buffer);
  values.forEach((v, i) => view.setFloat32(i * 4, v, true));
  return { dims, dataType, rawData: raw };
}

function attribute(name: string, v: Attr): onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if ('i' in v) return { name, type: T.INT, i: v.i };
  if ('f' in v) return { name, type: T.FLOAT, f: v.f };
  if ('ints' in v) return { name, type: T.INTS, ints: v.ints };
  if ('floats' in v) return { name, type: T.FLOATS, floats: v.floats };
  if ('s' in v) return { name, type: T.STRING, s: new TextEncoder().encode(v.s) };
  return { name, type: T.TENSOR, t: v.t };
}

