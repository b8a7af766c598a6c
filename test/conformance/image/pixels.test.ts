/**
 * The reference pipelines' float images (clamped [0,1] HxWx3, diffusers output_type='np' and the A1111-semantics
 * k-diffusion runs) converted with our rounding must equal their image.png pixel for pixel — image.png was written
 * with numpy's round(image * 255) — and the truncating A1111 mode must not.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { kdiffRefs, tinySd15Refs, type RefSet } from '../../helpers/fixtures.js';
import { unitHwcToRgb } from '../../../src/image/pixels.js';
import { decodePng, readPngText } from '../../../src/image/png.js';

async function checkSet(refs: RefSet) {
  const runs = Object.keys(refs.index.tensors)
    .filter((k) => k.endsWith('/image'))
    .map((k) => k.slice(0, -'/image'.length));
  assert.ok(runs.length > 0, `no image references in ${refs.dir}`);
  for (const run of runs) {
    const { data, shape } = refs.f32(`${run}/image`);
    const [height, width] = shape;
    const png = readFileSync(join(refs.dir, run, 'image.png'));
    readPngText(png); // signature, chunk bounds and every CRC check out
    const decoded = await decodePng(png);
    assert.equal(decoded.width, width, run);
    assert.equal(decoded.height, height, run);
    const ours = unitHwcToRgb(data);
    let mismatches = 0;
    for (let i = 0; i < ours.length; i++) if (ours[i] !== decoded.rgb[i]) mismatches++;
    assert.equal(mismatches, 0, `${run}: ${mismatches} of ${ours.length} bytes differ`);
    const truncated = unitHwcToRgb(data, { rounding: 'truncate' });
    assert.notDeepEqual(truncated, decoded.rgb, `${run}: truncation should differ from numpy's rounding`);
  }
}

test('diffusers pipeline images: round(x·255) equals image.png exactly', async () => {
  await checkSet(tinySd15Refs());
});

test('A1111-semantics k-diffusion images: round(x·255) equals image.png exactly', async () => {
  await checkSet(kdiffRefs());
});
