import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { crc32, decodePng, encodePng, insertPngText, readPngText } from '../../../src/image/png.js';
import { LoraserveError } from '../../../src/core/errors.js';

/** Bit-at-a-time CRC-32 (PNG spec Annex D), independent of the table-driven one under test. */
function referenceCrc(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const byte of bytes) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0xedb88320 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

interface RawChunk {
  type: string;
  data: Buffer;
  crcOk: boolean;
}

function chunksOf(png: Buffer): RawChunk[] {
  const out: RawChunk[] = [];
  for (let p = 8; p < png.length; ) {
    const len = png.readUInt32BE(p);
    const type = png.toString('latin1', p + 4, p + 8);
    const crcOk = referenceCrc(png.subarray(p + 4, p + 8 + len)) === png.readUInt32BE(p + 8 + len);
    out.push({ type, data: png.subarray(p + 8, p + 8 + len), crcOk });
    p += 12 + len;
  }
  return out;
}

function chunk(type: string, data: Buffer): Buffer {
  const b = Buffer.alloc(12 + data.length);
  b.writeUInt32BE(data.length, 0);
  b.write(type, 4, 'latin1');
  data.copy(b, 8);
  b.writeUInt32BE(referenceCrc(b.subarray(4, 8 + data.length)), 8 + data.length);
  return b;
}

/** Inserts raw chunks right after IHDR (offset 8 + 25). */
function withChunks(png: Buffer, ...extra: Buffer[]): Buffer {
  return Buffer.concat([png.subarray(0, 33), ...extra, png.subarray(33)]);
}

const W = 5;
const H = 3;
const RGB = new Uint8Array(W * H * 3).map((_, i) => (i * 37) % 256);

function isInvalidFile(re: RegExp) {
  return (e: unknown) => e instanceof LoraserveError && e.code === 'INVALID_FILE' && re.test(e.message);
}

test('crc32 matches the spec example and a bitwise reference', () => {
  assert.equal(crc32(Buffer.from('IEND')), 0xae426082);
  const data = Buffer.from('123456789');
  assert.equal(crc32(data), 0xcbf43926);
  const rnd = new Uint8Array(1000).map((_, i) => (i * 7919) % 251);
  assert.equal(crc32(rnd), referenceCrc(rnd));
});

test('encodePng: pixels survive, text chunks sit right after IHDR with valid CRCs, sharp and our reader see them', async () => {
  const parameters = 'a cat, best quality\nNegative prompt: lowres\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 5x3';
  const png = await encodePng(RGB, W, H, { parameters, Software: 'loraserve café' });
  const chunks = chunksOf(png);
  assert.deepEqual(chunks.slice(0, 3).map((c) => c.type), ['IHDR', 'tEXt', 'tEXt']);
  assert.equal(chunks.at(-1)!.type, 'IEND');
  assert.ok(chunks.every((c) => c.crcOk), 'every CRC verifies');
  // Latin-1 stays Latin-1 in tEXt (é is one byte 0xE9), as PIL writes it
  assert.deepEqual(chunks[2].data, Buffer.from('Software\0loraserve caf\xe9', 'latin1'));

  assert.deepEqual(readPngText(png), { parameters, Software: 'loraserve café' });
  // libvips decodes tEXt as UTF-8 (the spec and PIL say Latin-1), so sharp garbles the é: read text with readPngText.
  const meta = await sharp(png).metadata();
  assert.deepEqual(meta.comments?.[0], { keyword: 'parameters', text: parameters });
  assert.equal(meta.comments?.[1].keyword, 'Software');
  const back = await decodePng(png);
  assert.equal(back.width, W);
  assert.equal(back.height, H);
  assert.deepEqual(back.rgb, RGB);
});

test('non-Latin-1 text goes to an uncompressed iTXt chunk (UTF-8)', async () => {
  const parameters = '猫耳, 1girl\nSteps: 20, Sampler: Euler a, CFG scale: 7';
  const png = await encodePng(RGB, W, H, { parameters });
  const [, itxt] = chunksOf(png);
  assert.equal(itxt.type, 'iTXt');
  assert.ok(itxt.crcOk);
  // keyword \0, compression flag 0, method 0, empty language \0, empty translated keyword \0, text
  assert.deepEqual(itxt.data, Buffer.concat([Buffer.from('parameters\0\0\0\0\0', 'latin1'), Buffer.from(parameters, 'utf8')]));
  assert.deepEqual(readPngText(png), { parameters });
  assert.deepEqual((await sharp(png).metadata()).comments, [{ keyword: 'parameters', text: parameters }]);
});

test('readPngText reads zTXt and compressed iTXt, last duplicate wins', async () => {
  const plain = await encodePng(RGB, W, H);
  assert.deepEqual(readPngText(plain), {});
  const png = withChunks(
    plain,
    chunk('zTXt', Buffer.concat([Buffer.from('Comment\0\0', 'latin1'), deflateSync(Buffer.from('zipped caf\xe9', 'latin1'))])),
    chunk('iTXt', Buffer.concat([Buffer.from('parameters\0\x01\x00ja\0パラメータ\0', 'utf8'), deflateSync(Buffer.from('圧縮 text', 'utf8'))])),
    chunk('tEXt', Buffer.from('Comment\0second', 'latin1')),
  );
  assert.deepEqual(readPngText(png), { Comment: 'second', parameters: '圧縮 text' });
});

test('insertPngText keeps the image decodable and adds to existing chunks', async () => {
  const png = insertPngText(await encodePng(RGB, W, H, { a: '1' }), { b: '2' });
  assert.deepEqual(readPngText(png), { b: '2', a: '1' });
  assert.deepEqual((await decodePng(png)).rgb, RGB);
});

test('bad keywords are refused when writing', async () => {
  await assert.rejects(encodePng(RGB, W, H, { '': 'x' }), /keyword/);
  await assert.rejects(encodePng(RGB, W, H, { ['k'.repeat(80)]: 'x' }), /keyword/);
  await assert.rejects(encodePng(RGB, W, H, { 'パラメータ': 'x' }), /keyword/);
  await assert.rejects(encodePng(RGB, W, H - 1), /not 5x2 RGB/);
});

test('malformed PNGs are INVALID_FILE', async () => {
  const png = await encodePng(RGB, W, H, { parameters: 'x' });
  assert.throws(() => readPngText(Buffer.from('GIF89a not a png')), isInvalidFile(/signature/));
  const flipped = Buffer.from(png);
  flipped[45] ^= 0x01; // inside the tEXt chunk's data
  assert.throws(() => readPngText(flipped), isInvalidFile(/CRC mismatch in tEXt/));
  assert.throws(() => readPngText(png.subarray(0, png.length - 12)), isInvalidFile(/missing IEND/));
  assert.throws(() => readPngText(png.subarray(0, 60)), isInvalidFile(/past the end|missing IEND/));
  const badZ = withChunks(png, chunk('zTXt', Buffer.from('k\0\0not zlib data', 'latin1')));
  assert.throws(() => readPngText(badZ), isInvalidFile(/decompress zTXt/));
  const noKey = withChunks(png, chunk('tEXt', Buffer.from('\0value', 'latin1')));
  assert.throws(() => readPngText(noKey), isInvalidFile(/no keyword/));
  const bomb = withChunks(png, chunk('zTXt', Buffer.concat([Buffer.from('k\0\0'), deflateSync(Buffer.alloc(2 * 1024 * 1024))])));
  assert.throws(() => readPngText(bomb), isInvalidFile(/over 1048576/));
  await assert.rejects(decodePng(Buffer.from('definitely not an image')), isInvalidFile(/cannot decode/));
});

test('decodePng drops alpha and expands grey to RGB', async () => {
  const rgba = await sharp(Buffer.from([10, 20, 30, 0, 40, 50, 60, 255]), { raw: { width: 2, height: 1, channels: 4 } }).png().toBuffer();
  assert.deepEqual([...(await decodePng(rgba)).rgb], [10, 20, 30, 40, 50, 60]);
  const grey = await sharp(Buffer.from([0, 128, 255]), { raw: { width: 3, height: 1, channels: 1 } }).png().toBuffer();
  const g = await decodePng(grey);
  assert.deepEqual([...g.rgb], [0, 0, 0, 128, 128, 128, 255, 255, 255]);
});
