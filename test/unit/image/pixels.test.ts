import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  LATENT_RGB_FACTORS,
  latentPreviewRgb,
  rgbToVaeInput,
  signedToByte,
  unitHwcToRgb,
  unitToByte,
  vaeOutputToRgb,
} from '../../../src/image/pixels.js';

// Golden: numpy 1.x/2.x float32, x = np.array(X, dtype=np.float32), u = (x*0.5+0.5).clip(0,1)
//   diffusers:  (u * 255).round().astype(np.uint8)      A1111: (255. * u).astype(np.uint8)
const X = [-1.5, -1, -0.99999, 0, 1e-7, -1e-7, 0.00392156, 0.5, 0.99999994, 1, 2, 0.0039215689, -0.9921568632125854, 0.25, 0.3, -0.3, 0.7777];
const ROUNDED = [0, 0, 0, 128, 128, 127, 128, 191, 255, 255, 255, 128, 1, 159, 166, 89, 227];
const TRUNCATED = [0, 0, 0, 127, 127, 127, 127, 191, 255, 255, 255, 128, 0, 159, 165, 89, 226];

test('VAE value → byte matches numpy (diffusers rounding and A1111 truncation)', () => {
  X.forEach((x, i) => {
    const xf = Math.fround(x);
    assert.equal(signedToByte(xf), ROUNDED[i], `round ${x}`);
    assert.equal(signedToByte(xf, 'truncate'), TRUNCATED[i], `truncate ${x}`);
  });
});

test('exact .5 ties round half to even, like numpy.round', () => {
  // float32((k + 0.5) / 255) * 255 is exactly k + 0.5 in float32 for every k (checked with numpy).
  for (let k = 0; k < 255; k++) {
    const v = Math.fround((k + 0.5) / 255);
    assert.equal(Math.fround(v * 255), k + 0.5);
    assert.equal(unitToByte(v), k % 2 === 0 ? k : k + 1, `k=${k}`);
    assert.equal(unitToByte(v, 'truncate'), k);
  }
});

test('NaN becomes 0 and infinities clamp', () => {
  assert.equal(signedToByte(NaN), 0);
  assert.equal(signedToByte(NaN, 'truncate'), 0);
  assert.equal(signedToByte(Infinity), 255);
  assert.equal(signedToByte(-Infinity), 0);
  assert.equal(unitToByte(NaN), 0);
});

test('vaeOutputToRgb: NCHW planes → interleaved HWC per batch entry', () => {
  // B=2, C=3, H=1, W=2; image b, channel c, pixel i holds a distinct value
  const dims = [2, 3, 1, 2];
  const data = new Float32Array(12);
  const val = (b: number, c: number, i: number) => Math.fround(-1 + (b * 6 + c * 2 + i) / 6);
  for (let b = 0; b < 2; b++) for (let c = 0; c < 3; c++) for (let i = 0; i < 2; i++) data[b * 6 + c * 2 + i] = val(b, c, i);
  const images = vaeOutputToRgb(data, dims);
  assert.equal(images.length, 2);
  for (let b = 0; b < 2; b++) {
    assert.equal(images[b].width, 2);
    assert.equal(images[b].height, 1);
    const want: number[] = [];
    for (let i = 0; i < 2; i++) for (let c = 0; c < 3; c++) want.push(signedToByte(val(b, c, i)));
    assert.deepEqual([...images[b].rgb], want);
  }
  assert.throws(() => vaeOutputToRgb(data, [2, 4, 1, 2]), /expected \[batch, 3/);
  assert.throws(() => vaeOutputToRgb(data, [1, 3, 1, 2]), /do not fill/);
});

test('unitHwcToRgb clamps and rounds', () => {
  assert.deepEqual([...unitHwcToRgb([0, 1, 0.5, -0.1, 1.2, NaN])], [0, 255, 128, 0, 255, 0]);
  assert.deepEqual([...unitHwcToRgb([0.5, 0.999], { rounding: 'truncate' })], [127, 254]);
});

test('rgbToVaeInput: float32(v/255)*2-1 in NCHW, and it round-trips every byte value', () => {
  const width = 256;
  const rgb = new Uint8Array(width * 3);
  for (let i = 0; i < width; i++) rgb.set([i, 255 - i, (i * 7) % 256], i * 3);
  const { data, dims } = rgbToVaeInput([{ rgb, width, height: 1 }]);
  assert.deepEqual(dims, [1, 3, 1, width]);
  assert.equal(data[0], -1); // R of pixel 0
  assert.equal(data[width], 1); // G of pixel 0
  assert.equal(data[128], Math.fround(2 * Math.fround(128 / 255) - 1));
  const [back] = vaeOutputToRgb(data, dims);
  assert.deepEqual(back.rgb, rgb);
});

test('rgbToVaeInput accepts float [0,1] images and stacks a batch; sizes must agree', () => {
  const a = { rgb: new Float32Array([0, 0.5, 1]), width: 1, height: 1 };
  const b = { rgb: new Uint8Array([255, 0, 0]), width: 1, height: 1 };
  const { data, dims } = rgbToVaeInput([a, b]);
  assert.deepEqual(dims, [2, 3, 1, 1]);
  assert.deepEqual([...data], [-1, 0, 1, 1, -1, -1]);
  assert.throws(() => rgbToVaeInput([a, { rgb: new Uint8Array(6), width: 2, height: 1 }]), /expected 1x1x3/);
  assert.throws(() => rgbToVaeInput([]), /no images/);
});

test('latentPreviewRgb applies A1111\'s cheap approximation factors per pixel', () => {
  // [B=2, 4, 1, 2]: image 1 pixel 0 is the unit latent of channel 0, pixel 1 is zero
  const latent = new Float32Array(16);
  latent[8] = 1;
  const img = latentPreviewRgb(latent, [2, 4, 1, 2], { index: 1 });
  assert.equal(img.width, 2);
  assert.equal(img.height, 1);
  const [r, g, b] = LATENT_RGB_FACTORS.sd15[0];
  assert.deepEqual([...img.rgb], [signedToByte(r), signedToByte(g), signedToByte(b), 128, 128, 128]);
  // channel 3 only: (-0.184, -0.271, -0.473)
  const l3 = new Float32Array([0, 0, 0, 2]);
  const p = latentPreviewRgb(l3, [1, 4, 1, 1]);
  assert.deepEqual([...p.rgb], [signedToByte(-0.368), signedToByte(-0.542), signedToByte(-0.946)]);
  assert.throws(() => latentPreviewRgb(latent, [2, 4, 1, 2], { index: 2 }), /outside batch/);
});
