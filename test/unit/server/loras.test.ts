/**
 * LoRA management routes on a real LoRA folder: list, multipart upload (streamed, size-limited, validated, then
 * atomically renamed in), refusal of bad files, oversize files and path-like names with nothing left behind,
 * delete — and rendering with an uploaded LoRA.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { encodeSafetensors } from '../../../src/synth/safetensors-writer.js';
import { tinyServer, type TinyServer } from './support.js';

let s: TinyServer;
let idolBytes: Buffer;
before(async () => {
  s = await tinyServer({ limits: { maxUploadBytes: 600_000 } });
  idolBytes = readFileSync(join(s.loraDir, 'idol.safetensors'));
});
after(() => s.close());

function multipart(file: Buffer, filename: string, fields: Record<string, string> = {}): { payload: Buffer; headers: Record<string, string> } {
  const boundary = '----loraserve-test-boundary';
  const parts: Buffer[] = [];
  for (const [k, v] of Object.entries(fields)) {
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="${k}"\r\n\r\n${v}\r\n`));
  }
  parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\nContent-Type: application/octet-stream\r\n\r\n`));
  parts.push(file, Buffer.from(`\r\n--${boundary}--\r\n`));
  return { payload: Buffer.concat(parts), headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}

const upload = (file: Buffer, filename: string, query = '', fields: Record<string, string> = {}) => {
  const m = multipart(file, filename, fields);
  return s.app.inject({ method: 'POST', url: `/v1/loras${query}`, payload: m.payload, headers: m.headers });
};

/** Files in the LoRA folder, temp files included (a failed upload must leave none). */
const folder = () => readdirSync(s.loraDir).sort();

test('GET /v1/loras lists the folder with format, ranks and trigger words', async () => {
  const list = (await s.app.inject({ method: 'GET', url: '/v1/loras' })).json().loras;
  assert.deepEqual(list.map((l: { name: string }) => l.name), ['catears', 'costume', 'idol', 'lights', 'stage']);
  const catears = list[0];
  assert.equal(catears.format, 'kohya');
  assert.ok(catears.ranks.length > 0);
  assert.ok(catears.size_bytes > 0);
});

test('an upload is validated, renamed into the folder, listed, and usable in a render', async () => {
  const res = await upload(idolBytes, 'my idol.safetensors', '?name=idol2');
  assert.equal(res.statusCode, 201, res.body);
  assert.equal(res.json().lora.name, 'idol2');
  assert.equal(res.headers.location, '/v1/loras/idol2');
  assert.ok(folder().includes('idol2.safetensors'));
  assert.deepEqual(readFileSync(join(s.loraDir, 'idol2.safetensors')), idolBytes);
  // The render worker watches the folder (debounced): retry while it has not seen the new file yet.
  let body;
  for (let i = 0; i < 50; i++) {
    const r = await s.app.inject({ method: 'POST', url: '/v1/images', payload: { prompt: 'cat', loras: [{ name: 'idol2', weight: 0.7 }] } });
    body = r.json();
    if (r.statusCode === 200 || body.error?.code !== 'UNKNOWN_LORA') break;
    await new Promise((r2) => setTimeout(r2, 100));
  }
  assert.equal(body.images?.length, 1, JSON.stringify(body));
});

test('the name comes from the query, else a form field before the file, else the file name', async () => {
  assert.equal((await upload(idolBytes, 'x.safetensors', '', { name: 'fromfield' })).json().lora.name, 'fromfield');
  assert.equal((await upload(idolBytes, 'fromfile.safetensors')).json().lora.name, 'fromfile');
});

test('an existing name needs ?overwrite=true', async () => {
  const again = await upload(idolBytes, 'catears.safetensors');
  assert.equal(again.statusCode, 400);
  assert.equal(again.json().error.details.reason, 'exists');
  assert.equal((await upload(idolBytes, 'catears.safetensors', '?overwrite=true')).statusCode, 201);
});

test('bad files, oversize files and path-like names are refused and leave nothing behind', async () => {
  const before = folder();
  const notLora = await upload(Buffer.from('this is not a safetensors file at all'), 'junk.safetensors');
  assert.equal(notLora.statusCode, 400);
  assert.match(notLora.json().error.code, /^(LORA_INVALID|INVALID_FILE)$/);
  const header = Buffer.from(JSON.stringify({ 'some.weight': { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  const noLoraKeys = await upload(Buffer.concat([len, header, Buffer.alloc(4)]), 'plain.safetensors');
  assert.equal(noLoraKeys.json().error.code, 'LORA_INVALID');
  // A well-formed kohya LoRA made for another base model (1024-wide cross-attention, like SD2) is checked against
  // the loaded model's layers and refused, naming the mismatch.
  const other = encodeSafetensors([
    { name: 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight', dtype: 'F32', shape: [4, 1024], data: new Uint8Array(4 * 1024 * 4) },
    { name: 'lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight', dtype: 'F32', shape: [32, 4], data: new Uint8Array(32 * 4 * 4) },
  ]);
  const mismatch = await upload(other, 'sd2thing.safetensors');
  assert.equal(mismatch.statusCode, 400);
  assert.equal(mismatch.json().error.code, 'LORA_MISMATCH');
  assert.match(mismatch.json().error.message, /attn2.to_k|attn2_to_k/);
  const big = await upload(Buffer.alloc(700_000, 1), 'big.safetensors');
  assert.equal(big.statusCode, 413);
  assert.equal(big.json().error.code, 'PAYLOAD_TOO_LARGE');
  for (const name of ['../evil', 'a/b', 'a\\b', '.hidden']) {
    const r = await upload(idolBytes, 'x.safetensors', `?name=${encodeURIComponent(name)}`);
    assert.equal(r.statusCode, 400, name);
    assert.equal(r.json().error.code, 'INVALID_ARGUMENT');
  }
  assert.equal((await upload(idolBytes, 'model.ckpt')).json().error.code, 'INVALID_FILE');
  assert.equal((await s.app.inject({ method: 'POST', url: '/v1/loras', payload: { file: 'x' } })).statusCode, 400);
  assert.deepEqual(folder(), before);
});

test('DELETE removes a LoRA; an unknown one is 404; a path is refused', async () => {
  await upload(idolBytes, 'todelete.safetensors');
  const del = await s.app.inject({ method: 'DELETE', url: '/v1/loras/todelete' });
  assert.equal(del.statusCode, 200);
  assert.ok(!folder().includes('todelete.safetensors'));
  assert.equal((await s.app.inject({ method: 'DELETE', url: '/v1/loras/todelete' })).json().error.code, 'NOT_FOUND');
  assert.equal((await s.app.inject({ method: 'DELETE', url: `/v1/loras/${encodeURIComponent('../idol')}` })).json().error.code, 'INVALID_ARGUMENT');
  assert.ok(folder().includes('idol.safetensors'));
});
