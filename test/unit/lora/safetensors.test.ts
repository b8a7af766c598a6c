import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { decodeFactor, decodeFloat32, decodeScalar, factorToFloat32, parseSafetensors, readSafetensorsHeader } from '../../../src/lora/safetensors.js';
import { bf16, f16, f32, f64, file, rawFile, rejectsCode, throwsCode } from './support.js';

const dir = mkdtempSync(join(tmpdir(), 'loraserve-st-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('reads header, metadata and F32/F16/BF16 tensors (widened exactly)', () => {
  const bytes = file(
    [
      { name: 'a', dtype: 'F32', shape: [2, 2], data: f32([1, -2, 0.5, 3]) },
      { name: 'b', dtype: 'F32', shape: [3], data: f32([0.25, -0.125, 7]) },
    ],
    { ss_output_name: 'x', note: 'ünïcode' },
  );
  const st = parseSafetensors(bytes, 'x.safetensors');
  assert.deepEqual(st.header.metadata, { ss_output_name: 'x', note: 'ünïcode' });
  assert.deepEqual([...st.header.tensors.keys()], ['a', 'b']);
  assert.deepEqual(st.header.tensors.get('a')?.shape, [2, 2]);
  assert.deepEqual([...decodeFloat32(st, 'a')], [1, -2, 0.5, 3]);
  assert.deepEqual([...decodeFloat32(st, 'b')], [0.25, -0.125, 7]);

  const half = parseSafetensors(file([{ name: 'h', dtype: 'F16', shape: [4], data: f16([1, -0.5, 65504, 2 ** -24]) }]));
  assert.deepEqual([...decodeFloat32(half, 'h')], [1, -0.5, 65504, 2 ** -24]);
  const brain = parseSafetensors(file([{ name: 'b', dtype: 'BF16', shape: [3], data: bf16([1, -3.5, 2 ** 100]) }]));
  assert.deepEqual([...decodeFloat32(brain, 'b')], [1, -3.5, 2 ** 100]);
});

test('decodes tensors at any byte offset (header lengths that are not multiples of 4)', () => {
  // Unpadded header: the data section starts at an offset that is not a multiple of 4; decoding must copy.
  const json = JSON.stringify({ t: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } });
  const pad = ' '.repeat((((2 - 8 - json.length) % 4) + 4) % 4);
  const bytes = rawFile(json + pad, f32([1.5, -2]));
  assert.equal((8 + json.length + pad.length) % 4, 2);
  assert.deepEqual([...decodeFloat32(parseSafetensors(bytes), 't')], [1.5, -2]);
});

test('scalars of any numeric dtype; F64 weights are refused as LORA_UNSUPPORTED', () => {
  const st = parseSafetensors(
    file([
      { name: 'a64', dtype: 'F64', shape: [], data: f64([4]) },
      { name: 'i64', dtype: 'I64', shape: [1], data: new Uint8Array(new BigInt64Array([16n]).buffer) },
      { name: 'w64', dtype: 'F64', shape: [2], data: f64([1, 2]) },
    ]),
  );
  assert.equal(decodeScalar(st, 'a64'), 4);
  assert.equal(decodeScalar(st, 'i64'), 16);
  throwsCode(() => decodeFloat32(st, 'w64'), 'LORA_UNSUPPORTED', /w64.*F64.*F32, F16 or BF16/);
  throwsCode(() => decodeScalar(st, 'w64'), 'LORA_INVALID', /one value/);
});

// Every malformed file is LORA_INVALID with details.problem naming the defect.
const t4 = { dtype: 'F32', shape: [1], data_offsets: [0, 4] };
const MALFORMED: Array<[string, () => Uint8Array, string, RegExp]> = [
  ['fewer than 8 bytes', () => new Uint8Array(5), 'truncated', /truncated file \(5 bytes\)/],
  ['header length past the end', () => rawFile({ a: t4 }, f32([1]), { headerLength: 10_000n }), 'header-past-end', /header length 10000 runs past the end/],
  ['absurd header length', () => rawFile({}, new Uint8Array(0), { headerLength: 2n ** 63n }), 'header-past-end', /runs past the end/],
  ['header garbage', () => rawFile('\u00ff\u00fe'), 'header-not-json', /not JSON/],
  ['header not JSON', () => rawFile('{"a": '), 'header-not-json', /not JSON/],
  ['header an array', () => rawFile([1, 2]), 'header-not-object', /an array, not a JSON object/],
  ['header null', () => rawFile('null'), 'header-not-object', /null, not a JSON object/],
  ['metadata not strings', () => rawFile({ __metadata__: { n: 3 } }), 'bad-metadata', /__metadata__\.n is a number/],
  ['entry not an object', () => rawFile({ a: 5 }), 'bad-entry', /"a" is not an object/],
  ['unknown dtype', () => rawFile({ a: { dtype: 'F12', shape: [1], data_offsets: [0, 4] } }, f32([1])), 'unknown-dtype', /unknown dtype "F12"/],
  ['negative dimension', () => rawFile({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }, f32([1])), 'bad-shape', /invalid shape/],
  ['offsets reversed', () => rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, f32([1])), 'bad-offsets', /invalid data_offsets/],
  ['shape/bytes mismatch', () => rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 4] } }, f32([1])), 'size-mismatch', /needs 8 bytes but data_offsets \[0, 4\] hold 4/],
  ['truncated data', () => rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, f32([1])), 'out-of-range', /ends at data byte 8 but the file has only 4 data bytes/],
  [
    'misaligned',
    () => rawFile({ a: { dtype: 'U8', shape: [2], data_offsets: [0, 2] }, b: { dtype: 'F32', shape: [1], data_offsets: [2, 6] } }, new Uint8Array(6)),
    'misaligned',
    /"b" \(F32\) starts at data byte 2/,
  ],
  [
    'overlapping tensors',
    () => rawFile({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, new Uint8Array(8)),
    'overlap',
    /"a" and "b" overlap/,
  ],
  ['hole between tensors', () => rawFile({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, new Uint8Array(8)), 'gap', /4 unindexed data bytes before tensor "a"/],
  ['trailing bytes', () => rawFile({ a: t4 }, new Uint8Array(12)), 'trailing-bytes', /8 bytes after the last tensor/],
];

for (const [what, make, problem, message] of MALFORMED) {
  test(`malformed: ${what} → LORA_INVALID (${problem})`, () => {
    throwsCode(() => parseSafetensors(make(), 'bad.safetensors'), 'LORA_INVALID', message, problem);
  });
}

test('malformed: header not UTF-8 (invalid byte sequence) → header-not-utf8', () => {
  const json = Buffer.concat([Buffer.from('{"a":"'), Buffer.from([0xc3, 0x28]), Buffer.from('"}')]);
  const bytes = new Uint8Array(8 + json.byteLength);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(json.byteLength), true);
  bytes.set(json, 8);
  throwsCode(() => parseSafetensors(bytes), 'LORA_INVALID', /not valid UTF-8/, 'header-not-utf8');
});

test('decodeFactor keeps F16 as its bits (a copy), widens BF16, and rejects non-finite F16', () => {
  const half = parseSafetensors(file([{ name: 'h', dtype: 'F16', shape: [4], data: f16([1, -0.5, 65504, 2 ** -24]) }]));
  const h = decodeFactor(half, 'h');
  assert.ok(h instanceof Uint16Array);
  assert.notEqual(h.buffer, half.bytes.buffer);
  assert.deepEqual([...factorToFloat32(h)], [1, -0.5, 65504, 2 ** -24]);
  const brain = parseSafetensors(file([{ name: 'b', dtype: 'BF16', shape: [1], data: new Uint8Array([0x60, 0xc0]) }]));
  assert.deepEqual([...decodeFactor(brain, 'b')], [-3.5]);
  const nan = parseSafetensors(file([{ name: 'w', dtype: 'F16', shape: [2], data: f16([1, NaN]) }]));
  throwsCode(() => decodeFactor(nan, 'w'), 'LORA_INVALID', /first at index 1: NaN/, 'non-finite');
  const inf = parseSafetensors(file([{ name: 'w', dtype: 'F16', shape: [1], data: f16([-Infinity]) }]));
  throwsCode(() => decodeFactor(inf, 'w'), 'LORA_INVALID', /first at index 0: -Infinity/, 'non-finite');
});

test('non-finite weights (NaN in F32, Inf in F16, NaN in BF16) are LORA_INVALID naming the tensor', () => {
  const nanF32 = parseSafetensors(file([{ name: 'w', dtype: 'F32', shape: [3], data: f32([1, NaN, 2]) }]), 'n.safetensors');
  throwsCode(() => decodeFloat32(nanF32, 'w'), 'LORA_INVALID', /"w" has 1 non-finite value\(s\) \(first at index 1: NaN\)/, 'non-finite');
  const infF16 = parseSafetensors(file([{ name: 'w', dtype: 'F16', shape: [2], data: f16([Infinity, 1]) }]));
  throwsCode(() => decodeFloat32(infF16, 'w'), 'LORA_INVALID', /first at index 0: Infinity/, 'non-finite');
  const nanBf16 = parseSafetensors(file([{ name: 'w', dtype: 'BF16', shape: [1], data: new Uint8Array([0xc0, 0x7f]) }]));
  throwsCode(() => decodeFloat32(nanBf16, 'w'), 'LORA_INVALID', /non-finite/, 'non-finite');
  const infAlpha = parseSafetensors(file([{ name: 'a', dtype: 'F64', shape: [], data: f64([Infinity]) }]));
  throwsCode(() => decodeScalar(infAlpha, 'a'), 'LORA_INVALID', /"a" is Infinity/, 'non-finite');
});

test('header-only read from a file handle; a truncated file on disk is refused', async () => {
  const bytes = file([{ name: 'w', dtype: 'F32', shape: [1024], data: f32(new Float32Array(1024)) }], { ss_output_name: 'hdr' });
  const good = join(dir, 'good.safetensors');
  writeFileSync(good, bytes);
  const h = await readSafetensorsHeader(good, 'good.safetensors');
  assert.equal(h.metadata.ss_output_name, 'hdr');
  assert.equal(h.fileSize, bytes.byteLength);
  assert.equal(h.dataLength, 4096);

  const partial = join(dir, 'partial.safetensors');
  writeFileSync(partial, bytes.subarray(0, bytes.byteLength - 100));
  const e = await rejectsCode(readSafetensorsHeader(partial, 'partial.safetensors'), 'LORA_INVALID', /truncated\?/);
  assert.equal(e.details?.problem, 'out-of-range');

  const stub = join(dir, 'stub.safetensors');
  writeFileSync(stub, bytes.subarray(0, 20));
  await rejectsCode(readSafetensorsHeader(stub), 'LORA_INVALID', /runs past the end/);
  const tiny = join(dir, 'tiny.safetensors');
  writeFileSync(tiny, new Uint8Array(3));
  await rejectsCode(readSafetensorsHeader(tiny), 'LORA_INVALID', /truncated file \(3 bytes\)/);
});

test('a metadata key named __proto__ stays plain data', () => {
  const st = parseSafetensors(rawFile('{"__metadata__":{"__proto__":"x","a":"b"}}'));
  assert.equal(Object.getPrototypeOf(st.header.metadata), Object.prototype);
  assert.deepEqual(Object.keys(st.header.metadata), ['__proto__', 'a']);
  assert.equal(st.header.metadata.a, 'b');
});
