import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import * as ort from 'onnxruntime-node';
import {
  DataType,
  externalDataOf,
  initializerBytes,
  initializerFloat32,
  onnx,
  readModel,
  resolveExternalLocation,
  writeModel,
  type PendingInitializer,
} from '../../../src/onnx/proto.js';

ort.env.logLevel = 'error';
const dir = mkdtempSync(join(tmpdir(), 'loraserve-proto-test-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const f32bytes = (values: number[]): Uint8Array => new Uint8Array(Float32Array.from(values).buffer);

test('initializer bytes from raw_data, float_data, int32_data (fp16 bits) and int64_data', () => {
  assert.deepEqual(initializerBytes({ name: 'r', dims: [2], dataType: DataType.FLOAT, rawData: f32bytes([1, -2]) }, dir), f32bytes([1, -2]));
  assert.deepEqual(initializerBytes({ name: 'f', dims: [2], dataType: DataType.FLOAT, floatData: [1, -2] }, dir), f32bytes([1, -2]));
  assert.deepEqual(initializerBytes({ name: 'h', dims: [2], dataType: DataType.FLOAT16, int32Data: [0x3c00, 0xc000] }, dir), Uint8Array.of(0x00, 0x3c, 0x00, 0xc0));
  const i64 = initializerBytes({ name: 'i', dims: [1], dataType: DataType.INT64, int64Data: [-3] }, dir);
  assert.equal(new DataView(i64.buffer).getBigInt64(0, true), -3n);
  assert.deepEqual(initializerFloat32({ name: 'f', dims: [2], dataType: DataType.FLOAT, floatData: [0.5, 4] }, dir), Float32Array.of(0.5, 4));
  assert.throws(() => initializerBytes({ name: 'short', dims: [3], dataType: DataType.FLOAT, rawData: f32bytes([1, 2]) }, dir), /has 8 bytes, its shape needs 12/);
  assert.throws(() => initializerBytes({ name: 'empty', dims: [3], dataType: DataType.FLOAT }, dir), /has no data/);
});

test('external data: offset/length relative to the model folder; paths leaving it are refused', () => {
  writeFileSync(join(dir, 'blob.bin'), Buffer.concat([Buffer.alloc(16, 7), Buffer.from(f32bytes([3, 4, 5]))]));
  const ext = (location: string, offset: number, length?: number): onnx.ITensorProto => ({
    name: 'w',
    dims: [3],
    dataType: DataType.FLOAT,
    dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
    externalData: [
      { key: 'location', value: location },
      { key: 'offset', value: String(offset) },
      ...(length === undefined ? [] : [{ key: 'length', value: String(length) }]),
    ],
  });
  assert.deepEqual(externalDataOf(ext('blob.bin', 16, 12)), { location: 'blob.bin', offset: 16, length: 12 });
  assert.deepEqual(initializerBytes(ext('blob.bin', 16, 12), dir), f32bytes([3, 4, 5]));
  assert.deepEqual(initializerBytes(ext('blob.bin', 16), dir), f32bytes([3, 4, 5])); // length from the shape
  assert.throws(() => initializerBytes(ext('blob.bin', 20, 12), dir), /runs past the end/);
  for (const bad of ['../blob.bin', 'sub/../../blob.bin', '/etc/passwd']) {
    assert.throws(() => initializerBytes(ext(bad, 0, 12), dir), (e: Error & { code?: string }) => e.code === 'MODEL_INVALID', bad);
  }
  assert.equal(resolveExternalLocation(dir, 'sub/w.pb'), join(dir, 'sub/w.pb'));
  assert.throws(() => initializerBytes(ext('missing.bin', 0, 12), dir), (e: Error & { code?: string }) => e.code === 'IO_FAILED');
});

test('writeModel streams initializers (inline and external) and onnxruntime runs the result', async () => {
  // y = x @ W + b with W [64, 32] external (8 KiB) and b [32] inline (128 B < 1024).
  const w = Float32Array.from({ length: 64 * 32 }, (_, i) => ((i % 17) - 8) / 16);
  const b = Float32Array.from({ length: 32 }, (_, i) => i / 10);
  const produced: string[] = [];
  const pending: PendingInitializer[] = [
    { name: 'onnx::MatMul_1', dims: [64, 32], dataType: DataType.FLOAT, produce: () => (produced.push('W'), new Uint8Array(w.buffer)) },
    { name: 'lin.bias', dims: [32], dataType: DataType.FLOAT, produce: () => (produced.push('b'), new Uint8Array(b.buffer)) },
  ];
  const model: onnx.IModelProto = {
    irVersion: 7,
    opsetImport: [{ domain: '', version: 14 }],
    graph: {
      name: 'g',
      // A header-only entry for W (what the synth builder emits) is replaced by the pending one of the same name.
      initializer: [{ name: 'onnx::MatMul_1', dims: [64, 32], dataType: DataType.FLOAT }],
      node: [
        { name: '/lin/MatMul', opType: 'MatMul', input: ['x', 'onnx::MatMul_1'], output: ['m'] },
        { name: '/lin/Add', opType: 'Add', input: ['lin.bias', 'm'], output: ['y'] },
      ],
      input: [{ name: 'x', type: { tensorType: { elemType: DataType.FLOAT, shape: { dim: [{ dimParam: 'n' }, { dimValue: 64 }] } } } }],
      output: [{ name: 'y', type: { tensorType: { elemType: DataType.FLOAT, shape: { dim: [{ dimParam: 'n' }, { dimValue: 32 }] } } } }],
    },
  };
  const path = join(dir, 'm', 'model.onnx');
  const r = writeModel(path, model, pending, { externalData: { location: 'weights.pb' } });
  assert.deepEqual(produced, ['W', 'b']);
  assert.equal(r.externalBytes, 64 * 32 * 4);
  assert.equal(statSync(join(dir, 'm', 'weights.pb')).size, 64 * 32 * 4);
  assert.equal(r.modelBytes, statSync(path).size);

  const back = await readModel(path);
  const inits = new Map(back.model.graph!.initializer!.map((t) => [t.name, t]));
  assert.equal(inits.size, 2);
  assert.ok(externalDataOf(inits.get('onnx::MatMul_1')!));
  assert.equal(externalDataOf(inits.get('lin.bias')!), undefined);
  assert.deepEqual(initializerFloat32(inits.get('onnx::MatMul_1')!, back.dir), w);
  assert.deepEqual(initializerFloat32(inits.get('lin.bias')!, back.dir), b);
  assert.equal(back.model.graph!.node!.length, 2);

  const session = await ort.InferenceSession.create(path, { logSeverityLevel: 3 });
  const x = Float32Array.from({ length: 64 }, (_, i) => (i % 5) - 2);
  const y = (await session.run({ x: new ort.Tensor('float32', x, [1, 64]) })).y.data as Float32Array;
  for (let o = 0; o < 32; o++) {
    let s = b[o];
    for (let i = 0; i < 64; i++) s += x[i] * w[i * 32 + o];
    assert.ok(Math.abs(y[o] - s) < 1e-4, `y[${o}] = ${y[o]}, want ${s}`);
  }
  await session.release();

  // Without externalData everything is inline, and the file decodes to the same tensors.
  const inlinePath = join(dir, 'inline', 'model.onnx');
  writeModel(inlinePath, model, pending);
  const inline = await readModel(inlinePath);
  assert.ok(inline.model.graph!.initializer!.every((t) => externalDataOf(t) === undefined));
  assert.deepEqual(
    readFileSync(inlinePath).byteLength,
    onnx.ModelProto.encode({ ...model, graph: { ...model.graph, initializer: [
      { name: 'onnx::MatMul_1', dims: [64, 32], dataType: DataType.FLOAT, rawData: new Uint8Array(w.buffer) },
      { name: 'lin.bias', dims: [32], dataType: DataType.FLOAT, rawData: new Uint8Array(b.buffer) },
    ] } }).finish().byteLength,
  );
});
