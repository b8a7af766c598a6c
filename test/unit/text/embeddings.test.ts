/**
 * Textual-inversion files (A1111 v1.9.4 textual_inversion.py create_embedding_from_data) written by the tests:
 * .safetensors and torch.save zip archives with hand-built protocol-2 pickles (embedding-builders.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, mkdir, rm, writeFile, utimes } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { LoraserveError } from '../../../src/core/errors.js';
import { float32ToFloat16Array } from '../../../src/tensor/float16.js';
import { embeddingNameOf, hashEmbeddingFile, parseEmbeddingFile } from '../../../src/text/embeddings/embedding-file.js';
import { EmbeddingLibrary } from '../../../src/text/embeddings/library.js';
import { readTorchPickle } from '../../../src/text/embeddings/torch-pickle.js';
import { a1111EmbeddingPickle, f32bytes, Pickle, safetensors, torchArchive } from './embedding-builders.js';
import { tinyTokenizer } from './support.js';

const N = 3;
const W = 8;
const VALUES = Array.from({ length: N * W }, (_, i) => ((i * 7 + 3) % 11) / 8 - 0.5);
const invalid = (re: RegExp) => (e: unknown) => e instanceof LoraserveError && e.code === 'EMBEDDING_INVALID' && re.test(e.message);

test('A1111 .pt: string_to_param {"*": tensor[N, W]} with requires_grad and OrderedDict hooks', () => {
  const pkl = a1111EmbeddingPickle({ storageType: 'FloatStorage', key: '0', numel: N * W, offset: 0, shape: [N, W], stride: [W, 1], requiresGrad: true });
  const e = parseEmbeddingFile(torchArchive(pkl, { '0': f32bytes(VALUES) }), 'x.pt');
  assert.equal(e.vectorCount, N);
  assert.equal(e.width, W);
  assert.equal(e.sdxl, false);
  assert.equal(e.step, 1500);
  assert.equal(e.sdCheckpointName, 'v1-5-pruned-emaonly');
  assert.deepEqual(Array.from(e.vectors), VALUES);
});

test('torch views: offsets, strides (a transposed view), half storage, archive named by stem, .bin', () => {
  // [W, N] view with stride (1, W) of a half storage: element [i][j] = storage[i + W j]
  const pkl = a1111EmbeddingPickle({ storageType: 'HalfStorage', key: '7', numel: N * W, offset: 0, shape: [W, N], stride: [1, W] });
  const e = parseEmbeddingFile(torchArchive(pkl, { '7': new Uint8Array(float32ToFloat16Array(VALUES).buffer) }, 'my_embedding'), 'T.PT');
  assert.equal(e.vectorCount, W);
  assert.equal(e.width, N);
  assert.deepEqual(Array.from(e.vectors.subarray(0, 3)), [VALUES[0], VALUES[W], VALUES[2 * W]]);
  // diffusers learned_embeds.bin: {'<cat-toy>': tensor[W]} (one 1-D tensor = one vector), a view at offset W
  const p = new Pickle().proto().op(0x7d).put().str('<cat-toy>').put();
  p.tensor({ storageType: 'FloatStorage', key: '0', numel: N * W, offset: W, shape: [W], stride: [1] }).op(0x73);
  const bin = parseEmbeddingFile(torchArchive(p.bytes(), { '0': f32bytes(VALUES) }), 'learned_embeds.bin');
  assert.equal(bin.vectorCount, 1);
  assert.deepEqual(Array.from(bin.vectors), VALUES.slice(W, 2 * W));
  // rinongal/textual_inversion: string_to_param is an nn.ParameterDict (NEWOBJ + BUILD with its __dict__)
  const pd = new Pickle().proto().op(0x7d).put().str('string_to_param').put();
  pd.global('torch.nn.modules.container', 'ParameterDict').put().op(0x29).op(0x81).put(); // EMPTY_TUPLE, NEWOBJ
  pd.op(0x7d).put().str('training').op(0x88).op(0x73); // state = {'training': True, …}
  pd.str('_parameters').global('collections', 'OrderedDict').op(0x29).op(0x52).put().str('*');
  pd.tensor({ storageType: 'FloatStorage', key: '0', numel: N * W, offset: 0, shape: [N, W], stride: [W, 1], requiresGrad: true });
  pd.op(0x73).op(0x73).op(0x62).op(0x73); // SETITEM (OrderedDict), SETITEM (state), BUILD, SETITEM (root)
  const old = parseEmbeddingFile(torchArchive(pd.bytes(), { '0': f32bytes(VALUES) }), 'old-style.pt');
  assert.deepEqual([old.vectorCount, old.width], [N, W]);
  assert.deepEqual(Array.from(old.vectors), VALUES);
});

test('the pickle reader executes nothing: any other global is refused by name', () => {
  const evil = new Pickle().proto().global('posix', 'system').str('echo pwned').op(0x85).op(0x52).bytes();
  assert.throws(() => readTorchPickle(evil, 'evil.pt'), invalid(/global posix\.system is not allowed/));
  const evilZip = torchArchive(evil, {});
  assert.throws(() => parseEmbeddingFile(evilZip, 'evil.pt'), invalid(/evil\.pt: refused pickle content/));
  // builtins.eval through STACK_GLOBAL, an unknown opcode (INST), a truncated stream
  const stackGlobal = new Pickle().proto().str('builtins').str('eval').op(0x93).bytes();
  assert.throws(() => readTorchPickle(stackGlobal, 'a.pt'), invalid(/builtins\.eval is not allowed/));
  assert.throws(() => readTorchPickle(Uint8Array.of(0x80, 2, 0x69), 'a.pt'), invalid(/opcode 0x69/));
  assert.throws(() => readTorchPickle(Uint8Array.of(0x80, 2, 0x8c, 9, 0x61), 'a.pt'), invalid(/truncated/));
  // a storage that is not a float storage
  const longStorage = new Pickle().proto().tensor({ storageType: 'LongStorage', key: '0', numel: 1, offset: 0, shape: [1], stride: [1] }).bytes();
  assert.throws(() => readTorchPickle(longStorage, 'a.pt'), invalid(/LongStorage is not allowed/));
});

test('.safetensors: emb_params, a lone clip_l, a 1-D tensor, F16/BF16', () => {
  const one = (name: string, t: Parameters<typeof safetensors>[0][string]) => parseEmbeddingFile(safetensors({ [name]: t }), `${name}.safetensors`);
  let e = one('emb_params', { dtype: 'F32', shape: [N, W], data: f32bytes(VALUES) });
  assert.deepEqual([e.vectorCount, e.width, e.sdxl], [N, W, false]);
  assert.deepEqual(Array.from(e.vectors), VALUES);
  e = one('clip_l', { dtype: 'F16', shape: [N, W], data: new Uint8Array(float32ToFloat16Array(VALUES).buffer) });
  assert.deepEqual(Array.from(e.vectors), VALUES); // these values are exact in float16
  e = one('token', { dtype: 'F32', shape: [W], data: f32bytes(VALUES.slice(0, W)) });
  assert.deepEqual([e.vectorCount, e.width], [1, W]);
  const bf16 = new Uint8Array(2 * W);
  for (let i = 0; i < W; i++) new DataView(bf16.buffer).setUint16(2 * i, new Uint32Array(Float32Array.of(VALUES[i]).buffer)[0] >>> 16, true);
  e = one('x', { dtype: 'BF16', shape: [1, W], data: bf16 });
  assert.deepEqual(Array.from(e.vectors), VALUES.slice(0, W));
});

test('refusals: several terms, unknown layout, bad shapes, SDXL marked, other file kinds', () => {
  const t = { dtype: 'F32' as const, shape: [1, W], data: f32bytes(VALUES.slice(0, W)) };
  assert.throws(() => parseEmbeddingFile(safetensors({ a: t, b: t }), 'two.safetensors'), invalid(/two\.safetensors: embedding file has multiple terms/));
  assert.throws(() => parseEmbeddingFile(safetensors({ a: { dtype: 'I32', shape: [2], data: new Uint8Array(8) } }), 'int.safetensors'), invalid(/not a float type/));
  assert.throws(() => parseEmbeddingFile(safetensors({ a: { dtype: 'F32', shape: [1, 2, W], data: f32bytes(new Array(2 * W).fill(0)) } }), 's.safetensors'), invalid(/shape \[1, 2, 8\]/));
  assert.throws(() => parseEmbeddingFile(new Uint8Array(16), 'junk.safetensors'), invalid(/not a valid \.safetensors/));
  assert.throws(() => parseEmbeddingFile(Uint8Array.of(0x80, 2, 0x8a, 10), 'old.pt'), invalid(/legacy \(torch < 1\.6\)/));
  assert.throws(() => parseEmbeddingFile(new TextEncoder().encode('hello'), 'text.pt'), invalid(/not a torch\.save zip archive/));
  assert.throws(() => parseEmbeddingFile(new Uint8Array(4), 'x.png'), invalid(/\.pt, \.bin or \.safetensors/));
  const nan = f32bytes([NaN, ...VALUES.slice(1, W)]);
  assert.throws(() => parseEmbeddingFile(safetensors({ a: { dtype: 'F32', shape: [1, W], data: nan } }), 'nan.safetensors'), invalid(/non-finite/));
  // a dict of strings only
  const strings = torchArchive(new Pickle().proto().op(0x7d).str('name').str('x').op(0x73).bytes(), {});
  assert.throws(() => parseEmbeddingFile(strings, 'odd.pt'), invalid(/couldn't identify/));
  // SDXL: read, marked, width = clip_l + clip_g (refused by name when a prompt uses it, see below)
  const sdxl = parseEmbeddingFile(
    safetensors({ clip_g: { dtype: 'F32', shape: [2, 12], data: f32bytes(new Array(24).fill(0.5)) }, clip_l: { dtype: 'F32', shape: [2, W], data: f32bytes(VALUES.slice(0, 2 * W)) } }),
    'xl.safetensors',
  );
  assert.deepEqual([sdxl.sdxl, sdxl.vectorCount, sdxl.width], [true, 2, W + 12]);
});

test('names and hashes as A1111: file stem, sha256, short hash = first 12 hex digits', () => {
  assert.equal(embeddingNameOf('/x/y/EasyNegativeV2.safetensors'), 'EasyNegativeV2');
  assert.equal(embeddingNameOf('ng_deepnegative_v1_75t.pt'), 'ng_deepnegative_v1_75t');
  assert.equal(embeddingNameOf('a.b.pt'), 'a.b');
  const bytes = new TextEncoder().encode('abc');
  const h = hashEmbeddingFile(bytes);
  assert.equal(h.sha256, createHash('sha256').update(bytes).digest('hex'));
  assert.equal(h.sha256, 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  assert.equal(h.shortHash, 'ba7816bf8f01');
});

test('library: folder scan (subfolders, empty files, broken files), width check by name, refresh', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'loraserve-emb-'));
  try {
    const st = (w: number, n: number) => safetensors({ emb_params: { dtype: 'F32', shape: [n, w], data: f32bytes(new Array(n * w).fill(0.25)) } });
    await writeFile(join(dir, 'good.safetensors'), st(W, 2));
    await writeFile(join(dir, 'wide.safetensors'), st(2 * W, 1));
    await writeFile(join(dir, 'empty.pt'), new Uint8Array(0));
    await writeFile(join(dir, 'broken.pt'), new TextEncoder().encode('not a zip'));
    await writeFile(join(dir, 'notes.txt'), 'ignored');
    await mkdir(join(dir, 'sub'));
    const pkl = a1111EmbeddingPickle({ storageType: 'FloatStorage', key: '0', numel: N * W, offset: 0, shape: [N, W], stride: [W, 1] });
    await writeFile(join(dir, 'sub', 'Deep.PT'), torchArchive(pkl, { '0': f32bytes(VALUES) }));
    const lib = await EmbeddingLibrary.open(dir);
    assert.deepEqual(lib.all().map((e) => [e.name, e.vectorCount, e.problem === undefined]), [
      ['broken', 0, false],
      ['Deep', N, true],
      ['good', 2, true],
      ['wide', 1, true],
    ]);
    assert.match(lib.get('broken')!.problem!, /broken\.pt: not a torch\.save zip archive/);
    assert.equal(lib.get('Deep')!.file, join('sub', 'Deep.PT'));
    assert.equal(lib.get('good')!.shortHash.length, 12);

    const tok = tinyTokenizer();
    const lookup = lib.lookupFor(tok, W);
    const at = (text: string) => lookup.findAt(tok.encode(text), 0)?.embedding;
    assert.equal(at('deep')?.name, 'Deep'); // case-insensitive through the tokenizer
    assert.equal(at('good')?.problem, undefined);
    assert.match(at('wide')!.problem!, /width 16; this model's text encoder takes width 8/);
    assert.equal(lib.lookupFor(tok, W), lookup, 'cached until the next scan');

    assert.equal(await lib.refresh(), false);
    await writeFile(join(dir, 'new.safetensors'), st(W, 1));
    const later = new Date(Date.now() + 5000);
    await utimes(join(dir, 'new.safetensors'), later, later);
    assert.equal(await lib.refresh(), true);
    assert.equal(lib.get('new')?.vectorCount, 1);
    assert.notEqual(lib.lookupFor(tok, W), lookup);
    // a missing folder is an empty library
    assert.equal((await EmbeddingLibrary.open(join(dir, 'nope'))).size, 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
