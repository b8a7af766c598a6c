/**
 * One textual-inversion embedding file → its vectors [count, width].
 *
 * Port of AUTOMATIC1111/stable-diffusion-webui v1.9.4 `modules/textual_inversion/textual_inversion.py`
 * (`EmbeddingDatabase.load_from_file`, `create_embedding_from_data`, `Embedding.set_hash`):
 *  - `.pt` / `.bin` (torch.save zip) and `.safetensors`, extension case-insensitive; the name is the file stem;
 *  - a dict with `string_to_param` (A1111 / original textual_inversion: `{'*': tensor[N, W]}`, possibly an
 *    nn.ParameterDict) must hold exactly one tensor;
 *  - a dict with both `clip_g` and `clip_l` is an SDXL embedding (kept, marked `sdxl`, so a prompt naming it on an
 *    SD1/SD2 model is refused by name, as A1111 skips it there for its shape);
 *  - otherwise a dict whose first value is a tensor (diffusers' learned_embeds `{'<token>': tensor[W]}`,
 *    safetensors `emb_params`, a lone `clip_l`) must hold exactly one tensor; a 1-D tensor is one vector;
 *  - hash: sha256 of the whole file, short hash = its first 12 hex digits (Embedding.set_hash), as "TI hashes".
 * Anything else is EMBEDDING_INVALID naming the file. Embeddings stored in PNG/WebP images are not read.
 */
import { createHash } from 'node:crypto';
import { basename, extname } from 'node:path';
import { LoraserveError } from '../../core/errors.js';
import { decodeFloats, FLOAT_DTYPE_BYTES } from './float-data.js';
import { readSafetensorsFloats, type FloatTensor } from './safetensors-tensors.js';
import { readTorchPickle, type PyKey, type PyValue, type TorchTensor } from './torch-pickle.js';
import { zipEntries } from './zip-entries.js';

export const EMBEDDING_EXTENSIONS = ['.pt', '.bin', '.safetensors'] as const;

export interface EmbeddingData {
  /** Row-major [vectorCount, width]. For an SDXL file: its clip_l part. */
  vectors: Float32Array;
  vectorCount: number;
  width: number;
  /** True for an SDXL (clip_l + clip_g) embedding; `width` is then clip_l's + clip_g's, as A1111 reports it. */
  sdxl: boolean;
  /** Training step and checkpoint from an A1111 .pt file, when present. */
  step?: number;
  sdCheckpointName?: string;
}

export interface EmbeddingHash {
  sha256: string;
  shortHash: string;
}

/** The stem A1111 uses as the embedding's name ("EasyNegativeV2.safetensors" → "EasyNegativeV2"). */
export function embeddingNameOf(path: string): string {
  const file = basename(path);
  return file.slice(0, file.length - extname(file).length);
}

export function hashEmbeddingFile(bytes: Uint8Array): EmbeddingHash {
  const sha256 = createHash('sha256').update(bytes).digest('hex');
  return { sha256, shortHash: sha256.slice(0, 12) };
}

/** Parses an embedding file's bytes; `file` names it in errors. */
export function parseEmbeddingFile(bytes: Uint8Array, file: string): EmbeddingData {
  const ext = extname(file).toLowerCase();
  if (ext === '.safetensors') {
    const tensors = readSafetensorsFloats(bytes, file);
    const entries = new Map<PyKey, Tensorish>([...tensors].map(([k, t]) => [k, { shape: t.shape, read: () => t.data }]));
    return fromData(entries, file);
  }
  if (ext === '.pt' || ext === '.bin') return fromData(torchDict(bytes, file), file);
  throw new LoraserveError('EMBEDDING_INVALID', `${file}: embeddings are .pt, .bin or .safetensors files`, { file });
}

interface Tensorish {
  shape: number[];
  read(): Float32Array;
}

type DataDict = Map<PyKey, Tensorish | PyValue>;

/** torch.load of a zip archive, safely: the top-level dict with tensors resolved lazily. */
function torchDict(bytes: Uint8Array, file: string): DataDict {
  const invalid = (why: string): LoraserveError => new LoraserveError('EMBEDDING_INVALID', `${file}: ${why}`, { file });
  if (bytes.byteLength < 4 || bytes[0] !== 0x50 || bytes[1] !== 0x4b) {
    if (bytes[0] === 0x80) throw invalid('a legacy (torch < 1.6) serialized file; load and re-save it with a current torch, or convert it to .safetensors');
    throw invalid('not a torch.save zip archive');
  }
  const entries = zipEntries(bytes, file);
  // torch names every record "<archive>/<record>"; the archive folder's name varies ("archive", the file's stem).
  const pkls = [...entries.keys()].filter((n) => /^[^/]+\/data\.pkl$/.test(n));
  if (pkls.length !== 1) throw invalid(`expected one <archive>/data.pkl record, found ${pkls.length}`);
  const prefix = pkls[0].slice(0, -'data.pkl'.length);
  const order = entries.get(`${prefix}byteorder`);
  if (order && new TextDecoder().decode(order.read()) !== 'little') throw invalid('tensors are stored big-endian');
  const root = readTorchPickle(entries.get(pkls[0])!.read(), file);
  if (root === null || typeof root !== 'object' || root.kind !== 'dict') throw invalid(`holds a ${describe(root)}, not a dict`);

  const resolve = (t: TorchTensor): Tensorish => ({
    shape: t.shape,
    read: () => {
      const rec = entries.get(`${prefix}data/${t.storage.key}`);
      if (!rec) throw invalid(`storage ${t.storage.key} is missing from the archive`);
      const data = rec.read();
      if (data.byteLength < t.storage.numel * FLOAT_DTYPE_BYTES[t.storage.dtype]) throw invalid(`storage ${t.storage.key} is shorter than its ${t.storage.numel} elements`);
      return gather(data, t, file);
    },
  });
  const lift = (v: PyValue): Tensorish | PyValue => (v !== null && typeof v === 'object' && v.kind === 'tensor' ? resolve(v) : v);
  const out: DataDict = new Map();
  for (const [k, v] of root.entries) {
    if (v !== null && typeof v === 'object' && v.kind === 'dict') {
      out.set(k, { kind: 'dict', entries: new Map([...v.entries].map(([kk, vv]) => [kk, lift(vv) as PyValue])) });
    } else if (v !== null && typeof v === 'object' && v.kind === 'object') {
      // nn.ParameterDict: A1111 reads its `_parameters` (getattr(param_dict, '_parameters', param_dict)).
      const state = v.state;
      const params = state !== null && typeof state === 'object' && state.kind === 'dict' ? state.entries.get('_parameters') : undefined;
      if (!params || typeof params !== 'object' || params.kind !== 'dict') throw invalid(`${String(k)} is an object without parameters`);
      out.set(k, { kind: 'dict', entries: new Map([...params.entries].map(([kk, vv]) => [kk, lift(vv) as PyValue])) });
    } else out.set(k, lift(v));
  }
  return out;
}

/** A tensor view (offset, shape, stride) of a storage → contiguous float32. */
function gather(data: Uint8Array, t: TorchTensor, file: string): Float32Array {
  const n = t.shape.reduce((a, b) => a * b, 1);
  if (t.shape.length === 0) return decodeFloats(data, t.storage.dtype, t.offset, 1, 1, file, 'tensor');
  const out = new Float32Array(n);
  const inner = t.shape[t.shape.length - 1];
  const innerStride = t.stride[t.stride.length - 1];
  const rows = inner === 0 ? 0 : n / inner;
  const index = new Array<number>(t.shape.length - 1).fill(0);
  for (let r = 0; r < rows; r++) {
    let start = t.offset;
    for (let d = 0; d < index.length; d++) start += index[d] * t.stride[d];
    if (start + (inner - 1) * innerStride >= t.storage.numel) {
      throw new LoraserveError('EMBEDDING_INVALID', `${file}: tensor view reaches past its storage`, { file });
    }
    out.set(decodeFloats(data, t.storage.dtype, start, inner, innerStride, file, 'tensor'), r * inner);
    for (let d = index.length - 1; d >= 0; d--) {
      if (++index[d] < t.shape[d]) break;
      index[d] = 0;
    }
  }
  return out;
}

function isTensorish(v: unknown): v is Tensorish {
  return v !== null && typeof v === 'object' && 'read' in v && 'shape' in v;
}

function describe(v: unknown): string {
  if (v === null) return 'None';
  if (isTensorish(v)) return 'tensor';
  if (typeof v === 'object' && 'kind' in (v as object)) return (v as { kind: string }).kind;
  return typeof v;
}

/** create_embedding_from_data. */
function fromData(data: DataDict, file: string): EmbeddingData {
  const invalid = (why: string): LoraserveError => new LoraserveError('EMBEDDING_INVALID', `${file}: ${why}`, { file });
  const meta = {
    step: numberOrUndefined(data.get('step')),
    sdCheckpointName: stringOrUndefined(data.get('sd_checkpoint_name')),
  };
  const param = data.get('string_to_param');
  if (param !== undefined) {
    const dict = param as PyValue;
    if (dict === null || typeof dict !== 'object' || !('kind' in dict) || dict.kind !== 'dict') throw invalid('string_to_param is not a dict');
    if (dict.entries.size !== 1) throw invalid(`embedding file has multiple terms in it (${dict.entries.size} in string_to_param)`);
    const emb = [...dict.entries.values()][0] as unknown;
    if (!isTensorish(emb)) throw invalid('string_to_param holds no tensor');
    return { ...vectorsOf(emb, file), sdxl: false, ...definedOnly(meta) };
  }
  if (data.has('clip_g') && data.has('clip_l')) {
    const g = data.get('clip_g');
    const l = data.get('clip_l');
    if (!isTensorish(g) || !isTensorish(l)) throw invalid('clip_g / clip_l are not tensors');
    const lv = vectorsOf(l, file);
    const gWidth = g.shape[g.shape.length - 1] ?? 0;
    return { ...lv, width: lv.width + gWidth, sdxl: true, ...definedOnly(meta) };
  }
  const first = [...data.values()][0];
  if (isTensorish(first)) {
    if (data.size !== 1) throw invalid(`embedding file has multiple terms in it (${data.size} tensors: ${[...data.keys()].slice(0, 5).join(', ')})`);
    return { ...vectorsOf(first, file), sdxl: false, ...definedOnly(meta) };
  }
  throw invalid("couldn't identify it as a textual inversion embedding (string_to_param), an SDXL embedding (clip_l + clip_g) or a single-tensor embedding");
}

function vectorsOf(t: Tensorish | FloatTensor, file: string): { vectors: Float32Array; vectorCount: number; width: number } {
  const shape = t.shape;
  if (shape.length !== 1 && shape.length !== 2) {
    throw new LoraserveError('EMBEDDING_INVALID', `${file}: the embedding tensor has shape [${shape.join(', ')}]; expected [vectors, width] or [width]`, { file, shape });
  }
  const vectorCount = shape.length === 1 ? 1 : shape[0];
  const width = shape[shape.length - 1];
  if (vectorCount === 0 || width === 0) throw new LoraserveError('EMBEDDING_INVALID', `${file}: the embedding has no vectors (shape [${shape.join(', ')}])`, { file, shape });
  const vectors = 'read' in t ? t.read() : t.data;
  return { vectors, vectorCount, width };
}

function numberOrUndefined(v: unknown): number | undefined {
  return typeof v === 'number' ? v : undefined;
}
function stringOrUndefined(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}
function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
