/**
 * Golden infotexts written by hand from AUTOMATIC1111 v1.9.4 `modules/processing.py` create_infotext,
 * `modules/infotext_utils.py` quote()/parse_generation_parameters and the Lora / TI hash writers
 * (see src/image/infotext.ts for the exact references).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatInfotext, parseInfotext, pythonNumber, quoteValue, type InfotextParams } from '../../../src/image/infotext.js';

const base = { steps: 20, sampler: 'Euler a', cfgScale: 7, seed: 1, width: 512, height: 512 };

interface Golden {
  name: string;
  params: InfotextParams;
  text: string;
  /** What parse_generation_parameters's re_param loop yields for the last line (values unquoted). */
  parsed: Record<string, string>;
}

const GOLDEN: Golden[] = [
  {
    name: "A1111's own docstring example",
    params: {
      ...base,
      prompt: "girl with an artist's beret, determined, blue eyes",
      negativePrompt: 'ugly, fat',
      seed: 965400086,
      modelHash: '45dee52b',
    },
    text:
      "girl with an artist's beret, determined, blue eyes\nNegative prompt: ugly, fat\n" +
      'Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 965400086, Size: 512x512, Model hash: 45dee52b',
    parsed: { Steps: '20', Sampler: 'Euler a', 'CFG scale': '7', Seed: '965400086', Size: '512x512', 'Model hash': '45dee52b' },
  },
  {
    name: 'v1.9 txt2img with schedule type, model, clip skip, LoRA and TI hashes, version',
    params: {
      prompt: 'masterpiece, 1girl, cat ears, <lora:catears:0.8>',
      negativePrompt: 'worst quality, low quality',
      steps: 28,
      sampler: 'DPM++ 2M',
      scheduleType: 'Karras',
      cfgScale: 7.5,
      seed: 1234,
      width: 512,
      height: 768,
      modelHash: '6ce0161689',
      modelName: 'v1-5-pruned-emaonly',
      clipSkip: 2,
      loraHashes: [{ name: 'catears', hash: 'a1b2c3d4e5f6' }],
      tiHashes: [{ name: 'easynegative', hash: 'c74b4e810b03' }],
      version: 'v1.9.4',
    },
    text:
      'masterpiece, 1girl, cat ears, <lora:catears:0.8>\nNegative prompt: worst quality, low quality\n' +
      'Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 1234, Size: 512x768, ' +
      'Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Clip skip: 2, Lora hashes: "catears: a1b2c3d4e5f6", ' +
      'TI hashes: "easynegative: c74b4e810b03", Version: v1.9.4',
    parsed: {
      Steps: '28',
      Sampler: 'DPM++ 2M',
      'Schedule type': 'Karras',
      'CFG scale': '7.5',
      Seed: '1234',
      Size: '512x768',
      'Model hash': '6ce0161689',
      Model: 'v1-5-pruned-emaonly',
      'Clip skip': '2',
      'Lora hashes': 'catears: a1b2c3d4e5f6',
      'TI hashes': 'easynegative: c74b4e810b03',
      Version: 'v1.9.4',
    },
  },
  {
    name: 'empty negative prompt omits the line; clip skip 1 omitted; LoRA names lose ":" and ","',
    params: {
      ...base,
      prompt: 'a photo of a cat',
      negativePrompt: '',
      sampler: 'Euler',
      scheduleType: 'Automatic',
      seed: 42,
      width: 64,
      height: 64,
      clipSkip: 1,
      loraHashes: [
        { name: 'style:v2,final', hash: '0123456789ab' },
        { name: 'catears', hash: 'a1b2c3d4e5f6' },
      ],
    },
    text:
      'a photo of a cat\nSteps: 20, Sampler: Euler, Schedule type: Automatic, CFG scale: 7, Seed: 42, Size: 64x64, ' +
      'Lora hashes: "stylev2final: 0123456789ab, catears: a1b2c3d4e5f6"',
    parsed: {
      Steps: '20',
      Sampler: 'Euler',
      'Schedule type': 'Automatic',
      'CFG scale': '7',
      Seed: '42',
      Size: '64x64',
      'Lora hashes': 'stylev2final: 0123456789ab, catears: a1b2c3d4e5f6',
    },
  },
  {
    name: 'multi-line unicode prompt and negative prompt; non-ASCII value with ":" quoted without escaping',
    params: {
      ...base,
      prompt: '猫耳の少女, 笑顔\nBREAK\nステージ',
      negativePrompt: 'lowres\nbad hands',
      steps: 8,
      seed: 4294967295,
      modelName: 'アニメ:v3',
    },
    text:
      '猫耳の少女, 笑顔\nBREAK\nステージ\nNegative prompt: lowres\nbad hands\n' +
      'Steps: 8, Sampler: Euler a, CFG scale: 7, Seed: 4294967295, Size: 512x512, Model: "アニメ:v3"',
    parsed: { Steps: '8', Sampler: 'Euler a', 'CFG scale': '7', Seed: '4294967295', Size: '512x512', Model: 'アニメ:v3' },
  },
  {
    name: 'quoting: "," → JSON with escaped quotes, a lone \'"\' stays raw, "\\n" → \\n escape',
    params: {
      ...base,
      prompt: 'p',
      negativePrompt: 'n',
      modelName: 'my "best", model',
      vaeName: 'vae "ft"',
      extra: { 'Hires prompt': 'line1\nline2' },
    },
    text:
      'p\nNegative prompt: n\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512, ' +
      'Model: "my \\"best\\", model", VAE: vae "ft", Hires prompt: "line1\\nline2"',
    parsed: {
      Steps: '20',
      Sampler: 'Euler a',
      'CFG scale': '7',
      Seed: '1',
      Size: '512x512',
      Model: 'my "best", model',
      VAE: 'vae "ft"',
      'Hires prompt': 'line1\nline2',
    },
  },
  {
    name: 'fixed-field order, Python float repr, extras merged like a Python dict, "k if k == v"',
    params: {
      prompt: 'a castle',
      negativePrompt: '',
      steps: 30,
      sampler: 'DPM++ SDE',
      scheduleType: 'Karras',
      cfgScale: 5.5,
      seed: 100,
      width: 768,
      height: 512,
      modelHash: 'abcdef1234',
      variationSeed: 200,
      variationSeedStrength: 0.00001,
      seedResizeFrom: { width: 512, height: 512 },
      denoisingStrength: 0.75,
      ensd: 31337,
      rng: 'CPU',
      tiling: true,
      extra: {
        'Hires upscale': 2,
        'Hires upscaler': 'Latent',
        'Denoising strength': 0.5, // replaces the fixed field's value, keeps its position
        ADetailer: undefined,
        'Mask blur': 4,
        'Some flag': 'Some flag',
        Flag: true,
      },
      version: 'v1.9.4',
    },
    text:
      'a castle\nSteps: 30, Sampler: DPM++ SDE, Schedule type: Karras, CFG scale: 5.5, Seed: 100, Size: 768x512, ' +
      'Model hash: abcdef1234, Variation seed: 200, Variation seed strength: 1e-05, Seed resize from: 512x512, ' +
      'Denoising strength: 0.5, ENSD: 31337, RNG: CPU, Tiling: True, Hires upscale: 2, Hires upscaler: Latent, ' +
      'Mask blur: 4, Some flag, Flag: True, Version: v1.9.4',
    parsed: {
      Steps: '30',
      Sampler: 'DPM++ SDE',
      'Schedule type': 'Karras',
      'CFG scale': '5.5',
      Seed: '100',
      Size: '768x512',
      'Model hash': 'abcdef1234',
      'Variation seed': '200',
      'Variation seed strength': '1e-05',
      'Seed resize from': '512x512',
      'Denoising strength': '0.5',
      ENSD: '31337',
      RNG: 'CPU',
      Tiling: 'True',
      'Hires upscale': '2',
      'Hires upscaler': 'Latent',
      'Mask blur': '4',
      // a bare "Some flag" has no ':' and is not read back (as in A1111)
      Flag: 'True',
      Version: 'v1.9.4',
    },
  },
  {
    name: 'defaults A1111 leaves out: variation strength 0, RNG GPU, ENSD 0, no tiling, empty prompts',
    params: {
      ...base,
      prompt: '',
      negativePrompt: '',
      variationSeed: 5,
      variationSeedStrength: 0,
      rng: 'GPU',
      ensd: 0,
      tiling: false,
      seedResizeFrom: { width: 0, height: 0 },
    },
    text: 'Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 1, Size: 512x512',
    parsed: { Steps: '20', Sampler: 'Euler a', 'CFG scale': '7', Seed: '1', Size: '512x512' },
  },
];

for (const g of GOLDEN) {
  test(`format: ${g.name}`, () => {
    assert.equal(formatInfotext(g.params), g.text);
  });
  test(`parse: ${g.name}`, () => {
    const r = parseInfotext(g.text);
    assert.equal(r.prompt, g.params.prompt);
    assert.equal(r.negativePrompt, g.params.negativePrompt);
    assert.deepEqual(r.params, g.parsed);
    assert.deepEqual(Object.keys(r.params), Object.keys(g.parsed), 'order of appearance');
  });
}

test('pythonNumber prints like Python str()', () => {
  const cases: Array<[number, string]> = [
    [7, '7'],
    [7.5, '7.5'],
    [0.1, '0.1'],
    [0.0001, '0.0001'],
    [0.00015, '0.00015'],
    [0.00001, '1e-05'],
    [1.5e-7, '1.5e-07'],
    [-2.5e-10, '-2.5e-10'],
    [1e-100, '1e-100'],
    [123456789.125, '123456789.125'],
    [-0.75, '-0.75'],
    [2 ** 60, '1152921504606846976'],
    [NaN, 'nan'],
    [Infinity, 'inf'],
  ];
  for (const [n, s] of cases) assert.equal(pythonNumber(n), s, String(n));
});

test('quoteValue only quotes ",", ":" and newlines', () => {
  assert.equal(quoteValue('plain "x"'), 'plain "x"');
  assert.equal(quoteValue('a,b'), '"a,b"');
  assert.equal(quoteValue('a:b'), '"a:b"');
  assert.equal(quoteValue('tab\there, "q" \\ é'), '"tab\\there, \\"q\\" \\\\ é"');
  assert.equal(quoteValue('ctl\u0001,'), '"ctl\\u0001,"');
});

test('parse: a text without a parameter line is all prompt', () => {
  const r = parseInfotext('just a prompt, with: colons\nand a second line');
  assert.equal(r.prompt, 'just a prompt, with: colons\nand a second line');
  assert.equal(r.negativePrompt, '');
  assert.deepEqual(r.params, {});
});

test('parse: lines are trimmed, an empty value is dropped, bad JSON stays as written, unicode keys', () => {
  const r = parseInfotext(
    '  spaced prompt  \n  Negative prompt:   neg  \nSteps: 20, Model: , Seed: 1, Size: 5x5, VAE: "bad \\q", Ñame: x, Note: "a, b"',
  );
  assert.equal(r.prompt, 'spaced prompt');
  assert.equal(r.negativePrompt, 'neg');
  assert.deepEqual(r.params, { Steps: '20', Seed: '1', Size: '5x5', VAE: '"bad \\q"', Ñame: 'x', Note: 'a, b' });
});

test('round trip of arbitrary prompts through format → parse', () => {
  const prompts = ['(best:1.2), [bad], <lora:x:0.5>', 'émoji 🐱 prompt', 'a "quoted" prompt', 'Steps: 5, Sampler: x, Seed: 1'];
  for (const prompt of prompts) {
    const text = formatInfotext({ ...base, prompt, negativePrompt: `${prompt} neg`, modelName: prompt });
    const r = parseInfotext(text);
    assert.equal(r.prompt, prompt);
    assert.equal(r.negativePrompt, `${prompt} neg`);
    assert.equal(r.params.Model, prompt);
  }
});
