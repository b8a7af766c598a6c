/**
 * Request-time LoRA as a graph rewrite, done once at load: every targeted layer y = f(x; W) gains a
 * low-rank branch whose factors are graph INPUTS, so each request feeds its own LoRA set and weights:
 *
 *   MatMul / Gemm:  y = f(x; W) + (x · Aᵀ) · Bᵀ                  A [R, in], B [out, R]
 *   Conv:           y = f(x; W) + conv(conv(x; A); B)             A [R, in, kh, kw] (W's pads/strides), B [out, R, 1, 1]
 *
 * A and B are the LoRA files' own down/up layouts, so several LoRAs stack along R by row copies (A) and
 * contiguous per-row runs (B), and a single LoRA's down is fed as is; the per-rank scale (user weight ×
 * block weight × alpha/rank) is folded into B by src/engine/lora-feeds.ts. R is a symbolic per-layer
 * dimension; R = 0 (zero-size feeds) when no LoRA touches a layer, and the branch then adds exactly zero.
 *
 * Why so few nodes: each node costs onnxruntime a fixed few microseconds per run whatever its size, and a
 * branch is added to ~350 layers (bench/lora.ts, tiny preset). The Transposes are written as plain ONNX and
 * onnxruntime's level-2 optimizer folds each Transpose + MatMul into one FusedMatMul (checked on the optimized
 * graph). Not used: com.microsoft FusedConv with the layer's output as its added input Z (up conv + Add in one
 * kernel) saved ~0.5 ms per tiny step but cost ~5 % of a 512² SD1.5-shaped step at rank 16.
 *
 * Why inputs and not initializers: feeding a value for an initializer that is also a graph input is
 * silently ignored by onnxruntime-node 1.30, so weights cannot be swapped per run. Merging W + ΔW needs a
 * session of its own (seconds to build per LoRA set and weights), so it is kept for hot sets only
 * (src/onnx/weight-merge.ts, src/engine/merged-unets.ts; docs/ARCHITECTURE.md has the measurements).
 */
import { LoraserveError } from '../core/errors.js';
import type { TargetLayer } from './graph-modules.js';
import { DataType, onnx, valueInfo } from './proto.js';

export interface LoraBranch {
  /** Position in the plan; feeds are named from it. */
  index: number;
  module: string;
  op: TargetLayer['op'];
  kind: 'linear' | 'conv';
  inFeatures: number;
  outFeatures: number;
  /** Conv kernel of the down factor (= the layer's kernel); [1, 1] for linear layers. */
  kernel: [number, number];
  dtype: 'float32' | 'float16';
  downInput: string;
  upInput: string;
}

export interface LoraBranchPlan {
  branches: LoraBranch[];
  byModule: Map<string, LoraBranch>;
}

export function branchInputNames(index: number): { down: string; up: string } {
  return { down: `lora.${index}.down`, up: `lora.${index}.up` };
}



const TRANSPOSE_2D: onnx.IAttributeProto = { name: 'perm', type: onnx.AttributeProto.AttributeType.INTS, ints: [1, 0] };

function copyConvAttributes(node: onnx.INodeProto): onnx.IAttributeProto[] {
  // Same spatial behaviour as the original conv; the kernel shape follows the down factor's dims.
  return (node.attribute ?? []).filter((a) => ['pads', 'strides', 'dilations', 'auto_pad'].includes(a.name ?? ''));
}

/**
 * Adds a low-rank branch to each layer in `targets` (layers found by discoverTargetLayers on this same
 * model). Mutates `model` in place and returns the plan that names every new input.
 */
export function addLoraBranches(model: onnx.IModelProto, targets: readonly TargetLayer[]): LoraBranchPlan {
  const graph = model.graph;
  if (!graph) throw new LoraserveError('MODEL_INVALID', 'model has no graph');
  const byNode = new Map<string, TargetLayer>();
  for (const t of targets) byNode.set(t.nodeName, t);
  const branches: LoraBranch[] = [];
  const byModule = new Map<string, LoraBranch>();
  const nodes: onnx.INodeProto[] = [];
  const inputs: onnx.IValueInfoProto[] = [...(graph.input ?? [])];

  for (const node of graph.node ?? []) {
    const target = node.name ? byNode.get(node.name) : undefined;
    if (!target || byModule.has(target.module)) {
      nodes.push(node);
      continue;
    }
    const index = branches.length;
    const { down, up } = branchInputNames(index);
    const elem = target.dtype === 'float16' ? DataType.FLOAT16 : DataType.FLOAT;
    const rank = `lora_rank_${index}`;
    const x = node.input![0];
    const y = node.output![0];
    const t = (s: string) => `${y}/lora_${s}`;
    const prefix = `/${target.module.replace(/\./g, '/')}/lora`;
    const isConv = target.op === 'Conv';
    const kernel: [number, number] = target.kernel ?? [1, 1];
    nodes.push({ ...node, output: [t('base'), ...node.output!.slice(1)] });
    if (isConv) {
      inputs.push(valueInfo(down, elem, [rank, target.inFeatures, kernel[0], kernel[1]]));
      inputs.push(valueInfo(up, elem, [target.outFeatures, rank, 1, 1]));
      nodes.push({ name: `${prefix}/down/Conv`, opType: 'Conv', input: [x, down], output: [t('mid')], attribute: copyConvAttributes(node) });
      nodes.push({ name: `${prefix}/up/Conv`, opType: 'Conv', input: [t('mid'), up], output: [t('delta')] });
    } else {
      inputs.push(valueInfo(down, elem, [rank, target.inFeatures]));
      inputs.push(valueInfo(up, elem, [target.outFeatures, rank]));
      nodes.push({ name: `${prefix}/down/Transpose`, opType: 'Transpose', input: [down], output: [t('down_t')], attribute: [TRANSPOSE_2D] });
      nodes.push({ name: `${prefix}/down/MatMul`, opType: 'MatMul', input: [x, t('down_t')], output: [t('mid')] });
      nodes.push({ name: `${prefix}/up/Transpose`, opType: 'Transpose', input: [up], output: [t('up_t')], attribute: [TRANSPOSE_2D] });
      nodes.push({ name: `${prefix}/up/MatMul`, opType: 'MatMul', input: [t('mid'), t('up_t')], output: [t('delta')] });
    }
    nodes.push({ name: `${prefix}/Add`, opType: 'Add', input: [t('base'), t('delta')], output: [y] });
    const b: LoraBranch = {
      index,
      module: target.module,
      op: target.op,
      kind: isConv ? 'conv' : 'linear',
      inFeatures: target.inFeatures,
      outFeatures: target.outFeatures,
      kernel,
      dtype: target.dtype,
      downInput: down,
      upInput: up,
    };
    branches.push(b);
    byModule.set(target.module, b);
  }
  const missing = targets.filter((t) => !byModule.has(t.module)).map((t) => t.nodeName);
  if (missing.length) throw new LoraserveError('MODEL_INVALID', `LoRA rewrite found no node for ${missing.slice(0, 5).join(', ')}`, { missing });
  graph.node = nodes;
  graph.input = inputs;
  return { branches, byModule };
}
