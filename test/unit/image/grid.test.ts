import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gridShape, makeGrid } from '../../../src/image/grid.js';
import type { RgbImage } from '../../../src/image/pixels.js';

function solid(width: number, height: number, c: [number, number, number]): RgbImage {
  const rgb = new Uint8Array(width * height * 3);
  for (let i = 0; i < width * height; i++) rgb.set(c, i * 3);
  return { rgb, width, height };
}

const px = (img: RgbImage, x: number, y: number) => [...img.rgb.subarray((y * img.width + x) * 3, (y * img.width + x) * 3 + 3)];

test("gridShape follows A1111's autodetect: rows = round(√n), cols = ⌈n/rows⌉", () => {
  const table: Array<[number, number, number]> = [
    [1, 1, 1],
    [2, 1, 2],
    [3, 2, 2],
    [4, 2, 2],
    [5, 2, 3],
    [6, 2, 3],
    [7, 3, 3],
    [9, 3, 3],
    [12, 3, 4],
    [13, 4, 4],
  ];
  for (const [n, rows, cols] of table) assert.deepEqual(gridShape(n), { rows, cols }, `n=${n}`);
  assert.deepEqual(gridShape(4, 1), { rows: 1, cols: 4 });
  assert.deepEqual(gridShape(5, undefined, 5), { rows: 1, cols: 5 });
  assert.deepEqual(gridShape(3, 9), { rows: 3, cols: 1 }); // rows capped at n
  assert.throws(() => gridShape(5, 2, 2), /cannot hold 5/);
});

test('makeGrid places images left to right, top to bottom, on black, cells sized to the largest image', async () => {
  const red = solid(4, 4, [255, 0, 0]);
  const green = solid(4, 4, [0, 255, 0]);
  const small = solid(2, 3, [0, 0, 255]);
  const g = await makeGrid([red, green, small]);
  assert.equal(g.width, 8);
  assert.equal(g.height, 8);
  assert.equal(g.rgb.length, 8 * 8 * 3);
  assert.deepEqual(px(g, 0, 0), [255, 0, 0]);
  assert.deepEqual(px(g, 7, 3), [0, 255, 0]);
  assert.deepEqual(px(g, 1, 6), [0, 0, 255]);
  assert.deepEqual(px(g, 3, 6), [0, 0, 0]); // right of the smaller image: background
  assert.deepEqual(px(g, 6, 6), [0, 0, 0]); // empty fourth cell
});

test('makeGrid gap and background', async () => {
  const g = await makeGrid([solid(2, 2, [9, 9, 9]), solid(2, 2, [9, 9, 9])], { gap: 1, background: { r: 200, g: 100, b: 50 } });
  assert.equal(g.width, 2 * 2 + 3);
  assert.equal(g.height, 2 + 2);
  assert.deepEqual(px(g, 0, 0), [200, 100, 50]);
  assert.deepEqual(px(g, 1, 1), [9, 9, 9]);
  assert.deepEqual(px(g, 3, 1), [200, 100, 50]);
  assert.deepEqual(px(g, 4, 1), [9, 9, 9]);
});

test('labels add a strip under each image and leave the images untouched', async () => {
  const imgs = [solid(32, 16, [255, 0, 0]), solid(32, 16, [0, 255, 0])];
  const g = await makeGrid(imgs, { labels: ['seed 1 & <b>', 'two\nlines'], fontSize: 10, cols: 2 });
  const lineHeight = Math.ceil(10 * 1.25);
  const strip = 2 * lineHeight + 5;
  assert.equal(g.width, 64);
  assert.equal(g.height, 16 + strip);
  for (let y = 0; y < 16; y++) {
    assert.deepEqual(px(g, 5, y), [255, 0, 0]);
    assert.deepEqual(px(g, 40, y), [0, 255, 0]);
  }
  // Something was drawn in the strip (where fonts exist; a font-less machine would leave it black).
  let lit = 0;
  for (let y = 16; y < g.height; y++) for (let x = 0; x < g.width; x++) if (px(g, x, y)[0] > 0) lit++;
  assert.ok(lit > 0, 'label text rendered');
});

test('makeGrid rejects inconsistent input', async () => {
  await assert.rejects(makeGrid([]), /no images/);
  await assert.rejects(makeGrid([{ rgb: new Uint8Array(5), width: 2, height: 1 }]), /has 5 bytes/);
});
