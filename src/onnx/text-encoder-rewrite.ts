/**
 * Two load-time rewrites of a CLIP text-encoder graph (diffusers' ONNX export of transformers' CLIPTextModel),
 * so that A1111's textual inversion and clip skip run inside one session:
 *
 * (a) Textual inversion. The token-embedding `Gather(table [V, D], ids)` becomes
 *     `Gather(Concat(table, extra_token_embeddings), ids)` with a new graph input `extra_token_embeddings`
 *     [n_extra, D] (the table's dtype). An id V + r then reads row r of the extra input: the prompt chunker
 *     (src/text/prompt-chunks.ts) writes such placeholder ids where A1111's EmbeddingsWithFixes
 *     (modules/sd_hijack.py) would splice the embedding's vectors in. With no embeddings, feed a [0, D] tensor.
 *
 * (b) Clip skip. A1111 (modules/sd_hijack_clip.py FrozenCLIPEmbedderWithCustomWords.encode_with_transformers)
 *     takes, for CLIP_stop_at_last_layers = k > 1, `final_layer_norm(hidden_states[-k])`. We add outputs
 *     `hidden_state_skip_<k>` (k = 2..L) computed by a copy of the graph's final layer norm (same weights, same
 *     ops) applied to the residual stream k-1 layers before the encoder's output.
 *
 * Finding the pieces by structure, not by node names (exporters name nodes differently):
 *  - the final layer norm: the nodes between `last_hidden_state` and the nearest layer-norm input behind it —
 *    either a LayerNormalization node or the opset < 17 decomposition `ReduceMean(x)`, `Sub(x, mean)`, … ;
 *  - the residual stream: from that input X, walk back through `Add` nodes, following the input that is itself a
 *    layer-norm input. Each encoder layer is `h = x + attn(ln1(x)); out = h + mlp(ln2(h))`, so the walk visits
 *    out_{L-1}, h_{L-1}, out_{L-2}, …, out_0, h_0, embeddings: 2L + 1 tensors, and hidden_states[-k] (transformers'
 *    indexing: hidden_states[0] = embeddings, hidden_states[i] = output of layer i-1) is the (2(k-1))-th.
 * Checked on ../shared/fixtures/tiny-sd15/text_encoder/model.onnx (test/conformance/onnx/text-encoder-rewrite.test.ts):
 * unchanged outputs bit for bit, and the skip outputs equal a reference layer norm of the layer outputs.
 *
 * Mutates the model in place (like addLoraBranches) and returns what a caller needs to feed and read it.
 */
import { LoraserveError } from '../core/errors.js';
import { float32ToFloat16Array } from '../tensor/float16.js';
import type { HostTensor } from '../tensor/host-tensor.js';
import { DataType, onnx, tensorDims, valueInfo } from './proto.js';

export const EXTRA_EMBEDDINGS_INPUT = 'extra_token_embeddings';
export const skipOutputName = (k: number): string => `hidden_state_skip_${k}`;

export interface TextEncoderRewrite {
  /** The token-ids input. */
  idsInput: string;
  idsType: 'int32' | 'int64';
  /** Rows of the original token table: placeholder ids start here. */
  tableRows: number;
  hiddenSize: number;
  extraInput: string;
  extraType: 'float32' | 'float16';
  /** The output clip skip 1 reads. */
  lastHiddenState: string;
  /** Encoder layers L. */
  layers: number;
  /** k → output name, for k = 2..L. */
  skipOutputs: Record<number, string>;
}

interface GraphIndex {
  producer: Map<string, onnx.INodeProto>;
  consumers: Map<string, onnx.INodeProto[]>;
  inits: Map<string, onnx.ITensorProto>;
  identitySource: Map<string, string>;
}

function indexGraph(graph: onnx.IGraphProto): GraphIndex {
  const producer = new Map<string, onnx.INodeProto>();
  const consumers = new Map<string, onnx.INodeProto[]>();
  for (const node of graph.node ?? []) {
    for (const o of node.output ?? []) producer.set(o, node);
    for (const i of node.input ?? []) {
      if (!i) continue;
      const list = consumers.get(i) ?? [];
      list.push(node);
      consumers.set(i, list);
    }
  }
  const inits = new Map<string, onnx.ITensorProto>();
  for (const t of graph.initializer ?? []) if (t.name) inits.set(t.name, t);
  // torch's exporter shares equal initializers through Identity nodes (the fixture's LN weights are such).
  const identitySource = new Map<string, string>();
  for (const node of graph.node ?? []) {
    if (node.opType === 'Identity' && node.input?.[0] && node.output?.[0]) identitySource.set(node.output[0], node.input[0]);
  }
  return { producer, consumers, inits, identitySource };
}

function initializerOf(ix: GraphIndex, name: string): onnx.ITensorProto | undefined {
  let n = name;
  for (let i = 0; i < 8 && !ix.inits.has(n) && ix.identitySource.has(n); i++) n = ix.identitySource.get(n)!;
  return ix.inits.get(n);
}

/**
 * Every tensor computed from `source` (forward closure). With `valuesOnly`, paths through Shape/Size are cut:
 * the position ids are computed from the ids' *shape*, and they must not count as computed from the ids.
 */
function descendants(ix: GraphIndex, source: string, valuesOnly = false): Set<string> {
  const seen = new Set<string>([source]);
  const queue = [source];
  while (queue.length) {
    const t = queue.pop()!;
    for (const node of ix.consumers.get(t) ?? []) {
      if (valuesOnly && (node.opType === 'Shape' || node.opType === 'Size')) continue;
      for (const o of node.output ?? []) {
        if (!seen.has(o)) {
          seen.add(o);
          queue.push(o);
        }
      }
    }
  }
  return seen;
}

/** Every tensor `target` is computed from (backward closure), stopping at `stop`. */
function ancestors(ix: GraphIndex, target: string, stop: string): Set<string> {
  const seen = new Set<string>([target]);
  const queue = [target];
  while (queue.length) {
    const t = queue.pop()!;
    if (t === stop) continue;
    for (const i of ix.producer.get(t)?.input ?? []) {
      if (i && !seen.has(i)) {
        seen.add(i);
        queue.push(i);
      }
    }
  }
  return seen;
}

/** Is `t` the input of a layer norm (LayerNormalization, or ReduceMean(t) followed by Sub(t, mean))? */
function isLayerNormInput(ix: GraphIndex, t: string): boolean {
  for (const node of ix.consumers.get(t) ?? []) {
    if (node.opType === 'LayerNormalization' && node.input?.[0] === t) return true;
    if (node.opType === 'ReduceMean' && node.input?.[0] === t) {
      const mean = node.output?.[0];
      if ((ix.consumers.get(mean ?? '') ?? []).some((n) => n.opType === 'Sub' && n.input?.[0] === t && n.input?.[1] === mean)) return true;
    }
  }
  return false;
}

function elemTypeName(t: number): 'float32' | 'float16' {
  if (t === DataType.FLOAT) return 'float32';
  if (t === DataType.FLOAT16) return 'float16';
  throw new LoraserveError('MODEL_INVALID', `text encoder token table is ${t}, not float32/float16`);
}


/**
 * The copied layer norm reads the same tensor as the next encoder layer's layer_norm1. Were its ReduceMean(x)
 * identical to that layer's, onnxruntime's common-subexpression elimination (a basic-level pass) would merge
 * the two, and the merged nodes, now with two consumers, would no longer be fused into LayerNormalization for
 * that layer: the encoder's own output would change in the last bits. Writing the same reduction axis the other
 * way round (-1 ↔ 2 on the [batch, sequence, hidden] tensor) keeps the nodes apart.
 */
function distinctReduceMean(node: onnx.INodeProto, graph: onnx.IGraphProto): onnx.INodeProto {
  const flip = (axes: number[]): number[] => axes.map((a) => (a === -1 ? 2 : a === 2 ? -1 : a));
  const attr = node.attribute?.find((a) => a.name === 'axes');
  if (attr) {
    return { ...node, attribute: node.attribute!.map((a) => (a === attr ? { ...a, ints: flip((a.ints ?? []).map(Number)) } : a)) };
  }
  if (node.input?.[1]) {
    // opset 18: axes is an input; give the copy its own constant.
    const init = (graph.initializer ?? []).find((t) => t.name === node.input![1]);
    const values = init ? readInt64s(init) : undefined;
    if (values) {
      const name = `${node.name}/axes`;
      graph.initializer = [...(graph.initializer ?? []), { name, dataType: DataType.INT64, dims: [values.length], int64Data: flip(values) }];
      return { ...node, input: [node.input[0], name, ...node.input.slice(2)] };
    }
  }
  return node;
}

function readInt64s(t: onnx.ITensorProto): number[] | undefined {
  if (t.dataType !== DataType.INT64) return undefined;
  if (t.int64Data && t.int64Data.length) return t.int64Data.map((v) => Number(v));
  if (t.rawData && t.rawData.length % 8 === 0) {
    const view = new DataView(t.rawData.buffer, t.rawData.byteOffset, t.rawData.byteLength);
    return Array.from({ length: t.rawData.length / 8 }, (_, i) => Number(view.getBigInt64(i * 8, true)));
  }
  return undefined;
}

/** Applies both rewrites to a text-encoder model. Throws MODEL_INVALID when the graph is not CLIP-shaped. */
export function rewriteTextEncoder(model: onnx.IModelProto): TextEncoderRewrite {
  const graph = model.graph;
  if (!graph) throw new LoraserveError('MODEL_INVALID', 'text encoder model has no graph');
  const notClip = (why: string): LoraserveError => new LoraserveError('MODEL_INVALID', `text encoder graph not understood: ${why}`);
  const ix = indexGraph(graph);

  // --- inputs / outputs
  const ids = (graph.input ?? []).find((i) => {
    const t = i.type?.tensorType?.elemType;
    return (t === DataType.INT32 || t === DataType.INT64) && !ix.inits.has(i.name ?? '');
  });
  if (!ids?.name) throw notClip('no integer token-ids input');
  const idsType = ids.type!.tensorType!.elemType === DataType.INT64 ? 'int64' : 'int32';
  const lastOut = (graph.output ?? []).find((o) => o.name === 'last_hidden_state') ?? (graph.output ?? []).find((o) => (o.type?.tensorType?.shape?.dim?.length ?? 0) === 3);
  if (!lastOut?.name) throw notClip('no [batch, sequence, hidden] output');
  const last = lastOut.name;
  if ((graph.input ?? []).some((i) => i.name === EXTRA_EMBEDDINGS_INPUT)) throw notClip(`it already has an input ${EXTRA_EMBEDDINGS_INPUT} (rewritten twice?)`);

  // --- (a) token-embedding Gather
  const fromIds = descendants(ix, ids.name, true);
  const gathers = (graph.node ?? []).filter((n) => {
    if (n.opType !== 'Gather' || !fromIds.has(n.input?.[1] ?? '')) return false;
    const table = initializerOf(ix, n.input?.[0] ?? '');
    return table !== undefined && tensorDims(table).length === 2 && (table.dataType === DataType.FLOAT || table.dataType === DataType.FLOAT16);
  });
  if (gathers.length !== 1) throw notClip(`expected one token-embedding Gather fed by ${ids.name}, found ${gathers.length}`);
  const gather = gathers[0];
  const tableName = gather.input![0];
  const table = initializerOf(ix, tableName)!;
  const [tableRows, hiddenSize] = tensorDims(table);
  const tableElem = table.dataType!;
  const extended = `${tableName}/with_${EXTRA_EMBEDDINGS_INPUT}`;
  const concat: onnx.INodeProto = {
    name: '/text_model/embeddings/token_embedding/extra/Concat',
    opType: 'Concat',
    input: [tableName, EXTRA_EMBEDDINGS_INPUT],
    output: [extended],
    attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 0 }],
  };

  // --- (b) final layer norm and residual stream
  const behind = ancestors(ix, last, '');
  let lnInput: string | undefined;
  {
    // Nearest layer-norm input behind the output: breadth-first from the output.
    const queue = [last];
    const seen = new Set(queue);
    while (queue.length && !lnInput) {
      const t = queue.shift()!;
      if (t !== last && isLayerNormInput(ix, t)) {
        lnInput = t;
        break;
      }
      for (const i of ix.producer.get(t)?.input ?? []) if (i && !seen.has(i) && behind.has(i)) (seen.add(i), queue.push(i));
    }
  }
  if (!lnInput) throw notClip(`no layer norm before ${last}`);
  const lnTensors = descendants(ix, lnInput);
  const lnBehind = ancestors(ix, last, lnInput);
  const lnNodes = (graph.node ?? []).filter((n) => (n.output ?? []).some((o) => o !== lnInput && lnTensors.has(o) && lnBehind.has(o)));
  for (const n of lnNodes) {
    for (const i of n.input ?? []) {
      if (i && i !== lnInput && fromIds.has(i) && !lnTensors.has(i)) throw notClip(`the final layer norm reads ${i}, computed from the token ids`);
    }
  }

  const stream: string[] = [lnInput];
  for (;;) {
    const p = ix.producer.get(stream[stream.length - 1]);
    if (!p || p.opType !== 'Add') break;
    const next = (p.input ?? []).filter((i) => i && isLayerNormInput(ix, i));
    if (next.length !== 1) break;
    stream.push(next[0]);
  }
  if (stream.length < 3 || stream.length % 2 !== 1) throw notClip(`the residual stream has ${stream.length} tensors, not 2 × layers + 1`);
  const layers = (stream.length - 1) / 2;

  // --- apply
  const nodes = [...(graph.node ?? [])];
  nodes.splice(nodes.indexOf(gather), 0, concat);
  const gatherIndex = nodes.indexOf(gather);
  nodes[gatherIndex] = { ...gather, input: [extended, ...gather.input!.slice(1)] };
  graph.input = [...(graph.input ?? []), valueInfo(EXTRA_EMBEDDINGS_INPUT, tableElem, ['n_extra', hiddenSize])];

  const lastType = lastOut.type?.tensorType;
  const outDims = (lastType?.shape?.dim ?? []).map((d, i) => (d.dimValue != null && Number(d.dimValue) > 0 ? Number(d.dimValue) : ['batch', 'sequence', 'hidden'][i] ?? `d${i}`));
  const skipOutputs: Record<number, string> = {};
  const outputs = [...(graph.output ?? [])];
  for (let k = 2; k <= layers; k++) {
    const source = stream[2 * (k - 1)];
    const outName = skipOutputName(k);
    const rename = (t: string): string => (t === lnInput ? source : t === last ? outName : lnTensors.has(t) && lnBehind.has(t) ? `${t}/skip_${k}` : t);
    for (const n of lnNodes) {
      const copy: onnx.INodeProto = { ...n, name: `${n.name ?? n.opType}/skip_${k}`, input: (n.input ?? []).map(rename), output: (n.output ?? []).map(rename) };
      nodes.push(n.opType === 'ReduceMean' && n.input?.[0] === lnInput ? distinctReduceMean(copy, graph) : copy);
    }
    outputs.push(valueInfo(outName, lastType?.elemType ?? DataType.FLOAT, outDims));
    skipOutputs[k] = outName;
  }
  graph.node = nodes;
  graph.output = outputs;

  return {
    idsInput: ids.name,
    idsType,
    tableRows,
    hiddenSize,
    extraInput: EXTRA_EMBEDDINGS_INPUT,
    extraType: elemTypeName(tableElem),
    lastHiddenState: last,
    layers,
    skipOutputs,
  };
}

/**
 * Feeds and the output to read for one run of a rewritten text encoder: `ids` [n, 77] (placeholder ids ≥
 * tableRows for textual-inversion slots), `extra` [m, D] float32 (converted to the table's dtype), `clipSkip`
 * 1 = `last_hidden_state`, k ≥ 2 = `hidden_state_skip_<k>`. Other inputs (LoRA branch feeds) are the caller's.
 */
export function textEncoderFeeds(info: TextEncoderRewrite, ids: Int32Array, extra: Float32Array, clipSkip: number): { feeds: Record<string, HostTensor>; output: string } {
  const seq = 77;
  if (ids.length % seq !== 0) throw new LoraserveError('INVALID_ARGUMENT', `token ids: ${ids.length} values are not rows of ${seq}`);
  if (extra.length % info.hiddenSize !== 0) throw new LoraserveError('INVALID_ARGUMENT', `extra embeddings: ${extra.length} values are not rows of ${info.hiddenSize}`);
  const output = clipSkip <= 1 ? info.lastHiddenState : info.skipOutputs[clipSkip];
  if (!output) throw new LoraserveError('INVALID_ARGUMENT', `clip skip ${clipSkip} is beyond this text encoder's ${info.layers} layers`);
  const n = ids.length / seq;
  const m = extra.length / info.hiddenSize;
  const idsTensor: HostTensor = info.idsType === 'int64' ? { type: 'int64', data: BigInt64Array.from(ids, (v) => BigInt(v)), dims: [n, seq] } : { type: 'int32', data: ids, dims: [n, seq] };
  const extraTensor: HostTensor =
    info.extraType === 'float16' ? { type: 'float16', data: float32ToFloat16Array(extra), dims: [m, info.hiddenSize] } : { type: 'float32', data: extra, dims: [m, info.hiddenSize] };
  return { feeds: { [info.idsInput]: idsTensor, [info.extraInput]: extraTensor }, output };
}
