/**
 * Finds the layers of an exported graph that a LoRA can target, and the torch module each one came from.
 *
 * Why this works: torch.onnx (≥ 1.13) names every node after the module that emitted it,
 * `/<module path with '/' separators>/<OpType>[_N]`, e.g.
 * `/down_blocks.0/attentions.0/transformer_blocks.0/attn1/to_q/MatMul` ← `down_blocks.0.….attn1.to_q`.
 * A LoRA key names that module (kohya: `lora_unet_down_blocks_0_…_to_q`), so the node name is the bridge.
 * The weight is the node's input 1:
 *   - nn.Linear on 3-D activations → `MatMul(x, Wᵀ)`; Wᵀ is a constant-folded initializer with an anonymous
 *     name (`onnx::MatMul_9097`) and shape [in, out];
 *   - nn.Linear on 2-D activations (time embedding) → `Gemm(x, W, b, transB=1)`, torch name, [out, in];
 *   - nn.Conv2d → `Conv(x, W, b)`, torch name, [out, in, kh, kw].
 * Checked against ../shared/fixtures/tiny-sd15/onnx_lora_map.json (a real diffusers/torch export) in
 * test/conformance/synth/graph-modules.test.ts.
 */
import { dataTypeName, DataType, onnx, tensorDims, toNumber } from './proto.js';

export interface TargetLayer {
  /** torch module path, e.g. `down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q`. */
  module: string;
  op: 'MatMul' | 'Conv' | 'Gemm';
  nodeName: string;
  /** The initializer holding the weight (after following Identity nodes). */
  weightName: string;
  weightShape: number[];
  /** in_out: MatMul B (= torch Wᵀ) or Gemm transB=0; out_in: Gemm transB=1 (torch layout); conv: [out,in,kh,kw]. */
  layout: 'in_out' | 'out_in' | 'conv';
  inFeatures: number;
  outFeatures: number;
  kernel?: [number, number];
  dtype: 'float32' | 'float16';
}

/** `/a/b.0/c/MatMul_1` → `a.b.0.c`; undefined when the name carries no module path. */
export function modulePathFromNodeName(nodeName: string): string | undefined {
  if (!nodeName.startsWith('/')) return undefined;
  const parts = nodeName.slice(1).split('/');
  if (parts.length < 2) return undefined;
  parts.pop(); // the op name (`MatMul`, `Conv_2`, …)
  if (parts.some((p) => p.length === 0)) return undefined;
  return parts.join('.');
}

function intAttr(node: onnx.INodeProto, name: string, fallback: number): number {
  const a = node.attribute?.find((x) => x.name === name);
  return a ? toNumber(a.i) : fallback;
}

/**
 * Every MatMul / Gemm / Conv node whose weight input is a float32 or float16 initializer, with the torch
 * module it belongs to, in graph order. MatMuls between two activations (attention scores) have no
 * initializer input and are not layers.
 */
export function discoverTargetLayers(model: onnx.IModelProto): TargetLayer[] {
  const graph = model.graph;
  if (!graph) return [];
  const inits = new Map<string, onnx.ITensorProto>();
  for (const t of graph.initializer ?? []) if (t.name) inits.set(t.name, t);
  // The exporter sometimes deduplicates equal constants through Identity nodes; follow them.
  const identitySource = new Map<string, string>();
  for (const n of graph.node ?? []) {
    if (n.opType === 'Identity' && n.input?.[0] && n.output?.[0]) identitySource.set(n.output[0], n.input[0]);
  }
  const resolve = (name: string): onnx.ITensorProto | undefined => {
    let cur = name;
    for (let hops = 0; hops < 8; hops++) {
      const t = inits.get(cur);
      if (t) return t;
      const next = identitySource.get(cur);
      if (!next) return undefined;
      cur = next;
    }
    return undefined;
  };

  const out: TargetLayer[] = [];
  const seen = new Set<string>();
  for (const node of graph.node ?? []) {
    const op = node.opType;
    if (op !== 'MatMul' && op !== 'Gemm' && op !== 'Conv') continue;
    const weightInput = node.input?.[1];
    if (!weightInput) continue;
    const w = resolve(weightInput);
    if (!w || !w.name) continue;
    const dt = w.dataType ?? 0;
    if (dt !== DataType.FLOAT && dt !== DataType.FLOAT16) continue;
    const dims = tensorDims(w);
    const nodeName = node.name ?? '';
    // Nodes without a module path (other exporters): a torch-named `<module>.weight` still names the module.
    const module = modulePathFromNodeName(nodeName) ?? (w.name.endsWith('.weight') ? w.name.slice(0, -'.weight'.length) : undefined);
    if (!module) continue;

    let layer: TargetLayer | undefined;
    const dtype = dataTypeName(dt) as 'float32' | 'float16';
    if (op === 'MatMul' && dims.length === 2) {
      layer = { module, op, nodeName, weightName: w.name, weightShape: dims, layout: 'in_out', inFeatures: dims[0], outFeatures: dims[1], dtype };
    } else if (op === 'Gemm' && dims.length === 2) {
      const transB = intAttr(node, 'transB', 0) === 1;
      layer = transB
        ? { module, op, nodeName, weightName: w.name, weightShape: dims, layout: 'out_in', inFeatures: dims[1], outFeatures: dims[0], dtype }
        : { module, op, nodeName, weightName: w.name, weightShape: dims, layout: 'in_out', inFeatures: dims[0], outFeatures: dims[1], dtype };
    } else if (op === 'Conv' && dims.length === 4 && intAttr(node, 'group', 1) === 1) {
      // Grouped convolutions (none in SD) cannot take a dense low-rank delta; they are not targets.
      layer = {
        module,
        op,
        nodeName,
        weightName: w.name,
        weightShape: dims,
        layout: 'conv',
        inFeatures: dims[1],
        outFeatures: dims[0],
        kernel: [dims[2], dims[3]],
        dtype,
      };
    }
    if (!layer) continue;
    const key = `${layer.module}\u0000${layer.weightName}`;
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(layer);
  }
  return out;
}
