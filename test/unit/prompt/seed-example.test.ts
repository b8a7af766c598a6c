/**
 * The seed example (../shared/SEED-EXAMPLE.md, prompts verbatim) end to end on a generated demo-like model:
 * three LoRAs at 0.6 / 0.8 / 0.4 as `<lora:>` tags, and again in the request list, give identical pixels;
 * the negative prompt's textual-inversion names (EasyNegativeV2 16 vectors, ng_deepnegative_v1_75t 75,
 * badhandv4 6) are embeddings, reported in `TI hashes`; clip skip 2 changes the image.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { RenderHost } from '../../../src/jobs/render-host.js';
import type { RenderRequest } from '../../../src/engine/request.js';
import { writeSafetensors } from '../../../src/synth/safetensors-writer.js';
import { makeTinyModel, type TinyModel } from '../../helpers/tiny-model.js';

const PROMPT =
  '//quality, (masterpiece:1.3), (detailed), ((,best quality,)),//,cute,1girl,//,brown cat ears,animal ear fluff,(light_brown hair:1.3),(red hair: 1.1),(red inner hair: 1.4), (straight bangs: 1.4),(,long_hair,single braid :1.4),(Ahoge),(detailed eyes,blue_eyes:1.4),medium chest,//, (yellow hairpin,crescent-shaped hairpin:1.4),off_shoulders,large red ribbon,(idol costume:1.4),thigh strap,frilled skirt,gloves,//,blush,smiling,upper_teeth,looking_down,//,hand_up,(holding microphone:1.3),(standing on stage),//,indoors,crowd of audience,Glow stick,scenery,colorful light particles,(colorful lights:1.3),(laser light:1.4),glow_in_the_dark,cowboy_shot,dynamic angle';
const NEGATIVE =
  'NSFW,text,(worst quality:1.331), (low quality:1.331), (normal quality:1.331), large head, extra digits, bad eye, extra fingers, fewer fingers, strange fingers, ((bad hands)), Strange eyes, Many hands, (Many arms), EasyNegativeV2, ng_deepnegative_v1_75t, pregnancy, badhandv4, six fingers, fused fingers, unclear eyes,poorly drawn,cloned face,bad face,';

let tiny: TinyModel;
let host: RenderHost;
before(async () => {
  tiny = await makeTinyModel({ loras: 3 });
  const emb = join(tiny.root, 'embeddings');
  mkdirSync(emb);
  const width = 32; // the tiny text encoder's hidden size
  for (const [name, vectors, seed] of [['EasyNegativeV2', 16, 1], ['ng_deepnegative_v1_75t', 75, 2], ['badhandv4', 6, 3]] as const) {
    const v = Float32Array.from({ length: vectors * width }, (_, i) => Math.sin(i * 0.37 + seed) * 0.5);
    writeSafetensors(join(emb, `${name}.safetensors`), [{ name: 'emb_params', dtype: 'F32', shape: [vectors, width], data: new Uint8Array(v.buffer) }]);
  }
  host = await RenderHost.start(tiny.modelDir, { kind: 'cpu' }, undefined, { loraDir: join(tiny.modelDir, 'loras'), embeddingsDir: emb });
});
after(async () => {
  await host?.close();
  tiny?.cleanup();
});

const base: RenderRequest = {
  prompt: PROMPT,
  negativePrompt: NEGATIVE,
  steps: 4,
  cfgScale: 7,
  sampler: 'DPM++ 2M',
  scheduler: 'Karras',
  flavor: 'a1111',
  seed: 1234,
  rng: 'cpu',
  width: 64,
  height: 64,
  batchSize: 1,
};

test('LoRAs as <lora:> tags and in the request list give identical pixels', async () => {
  const tagged = await host.render({ ...base, prompt: `${PROMPT} <lora:catears:0.6> <lora:idol:0.8> <lora:stage:0.4>` });
  const listed = await host.render({ ...base, loras: [{ name: 'catears', weight: 0.6 }, { name: 'idol', weight: 0.8 }, { name: 'stage', weight: 0.4 }] });
  const none = await host.render(base);
  const pixels = async (png: Uint8Array) => (await import('sharp')).default(png).raw().toBuffer();
  assert.deepEqual(await pixels(tagged.images[0].png), await pixels(listed.images[0].png));
  assert.notDeepEqual(await pixels(none.images[0].png), await pixels(listed.images[0].png));
  const info = listed.images[0].infotext;
  assert.match(info, /Lora hashes: "catears: [0-9a-f]{12}, idol: [0-9a-f]{12}, stage: [0-9a-f]{12}"/);
  assert.match(info, /TI hashes: "EasyNegativeV2: [0-9a-f]{12}, ng_deepnegative_v1_75t: [0-9a-f]{12}, badhandv4: [0-9a-f]{12}"/);
});

test('the request list wins over a tag naming the same LoRA', async () => {
  const a = await host.render({ ...base, prompt: `${PROMPT} <lora:catears:0.1>`, loras: [{ name: 'catears', weight: 0.6 }] });
  const b = await host.render({ ...base, loras: [{ name: 'catears', weight: 0.6 }] });
  const pixels = async (png: Uint8Array) => (await import('sharp')).default(png).raw().toBuffer();
  assert.deepEqual(await pixels(a.images[0].png), await pixels(b.images[0].png));
});

test('clip skip 2 changes the image and is written in the infotext', async () => {
  const one = await host.render(base);
  const two = await host.render({ ...base, clipSkip: 2 });
  const pixels = async (png: Uint8Array) => (await import('sharp')).default(png).raw().toBuffer();
  assert.notDeepEqual(await pixels(one.images[0].png), await pixels(two.images[0].png));
  assert.match(two.images[0].infotext, /Clip skip: 2/);
});

test('an unknown LoRA tag names the closest known LoRAs', async () => {
  await assert.rejects(host.render({ ...base, prompt: 'cat <lora:catear:1>' }), (e: Error & { code?: string }) => e.code === 'UNKNOWN_LORA' && /did you mean catears/.test(e.message));
});
