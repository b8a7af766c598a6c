import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mergeLoraLists, parseExtraNetworks } from '../../../src/text/extra-networks.js';
import { splitComposablePrompt } from '../../../src/text/prompt-composable.js';
import { LoraserveError } from '../../../src/core/errors.js';

const lora = (p: string) => parseExtraNetworks(p).loras.map(({ name, te, unet, dyn }) => (dyn === undefined ? { name, te, unet } : { name, te, unet, dyn }));

/**
 * extra_networks_lora.py activate(): te = positional[1] or 1, `te=` overrides; unet = positional[2] or te (after
 * the override), `unet=` overrides; dyn = positional[3] / `dyn=`.
 */
const TAGS: Array<[string, Array<{ name: string; te: number; unet: number; dyn?: number }>]> = [
  ['<lora:catears:0.6>', [{ name: 'catears', te: 0.6, unet: 0.6 }]],
  ['<lora:catears>', [{ name: 'catears', te: 1, unet: 1 }]],
  ['<lora:catears:0.5:0.8>', [{ name: 'catears', te: 0.5, unet: 0.8 }]],
  ['<lora:catears:0.5:0.8:4>', [{ name: 'catears', te: 0.5, unet: 0.8, dyn: 4 }]],
  ['<lora:catears:te=0.2>', [{ name: 'catears', te: 0.2, unet: 0.2 }]],
  ['<lora:catears:unet=0.3>', [{ name: 'catears', te: 1, unet: 0.3 }]],
  ['<lora:catears:0.7:unet=0.3>', [{ name: 'catears', te: 0.7, unet: 0.3 }]],
  ['<lora:catears:te=0.1:0.9>', [{ name: 'catears', te: 0.1, unet: 0.1 }]], // 0.9 is positional[1], then te= overrides it
  ['<lora:catears:0.4:te=0.1:unet=0.2:dyn=8>', [{ name: 'catears', te: 0.1, unet: 0.2, dyn: 8 }]],
  // Python float(): spaces, '_' between digits, exponents
  ['<lora:catears: 0.5 >', [{ name: 'catears', te: 0.5, unet: 0.5 }]],
  ['<lora:catears:1_0e-1>', [{ name: 'catears', te: 1, unet: 1 }]],
  // a named-looking first item is not the name: the first positional item is
  ['<lora:te=1:0.5>', [{ name: '0.5', te: 1, unet: 1 }]],
  ['<lyco:idol:0.8>', [{ name: 'idol', te: 0.8, unet: 0.8 }]],
  ['a <lora:catears:0.6>, b <lora:idol:0.8><lora:stage:0.4>', [
    { name: 'catears', te: 0.6, unet: 0.6 },
    { name: 'idol', te: 0.8, unet: 0.8 },
    { name: 'stage', te: 0.4, unet: 0.4 },
  ]],
];

test('<lora:…> tags read as A1111 reads them', () => {
  for (const [p, expected] of TAGS) assert.deepEqual(lora(p), expected, p);
});

test('tags come out of the text; everything else stays, spaces included', () => {
  const r = parseExtraNetworks('1girl, <lora:catears:0.6> cat ears,<lyco:idol:0.8> <foo:bar> end');
  assert.equal(r.prompt, '1girl,  cat ears,  end');
  assert.deepEqual(r.ignored.map((t) => t.kind), ['foo']);
  // not a tag: no ':' / no word / an empty argument list
  for (const p of ['<lora>', '< lora:x>', '<lora:>', 'a > b < c', '<lora-x:1>']) assert.equal(parseExtraNetworks(p).prompt, p, p);
  // a newline inside the arguments is allowed by [^>]+, as in A1111
  assert.equal(parseExtraNetworks('a<lora:x\n:1>b').prompt, 'ab');
});

test('refusals: hypernetworks, malformed LoRA tags', () => {
  const refused = (p: string, re: RegExp) =>
    assert.throws(() => parseExtraNetworks(p), (e: unknown) => e instanceof LoraserveError && e.code === 'INVALID_PROMPT' && re.test(e.message), p);
  refused('<hypernet:anime:1>', /hypernetworks are not supported/);
  refused('<lora:catears:abc>', /"abc" is not a finite number/);
  refused('<lora:catears:inf>', /not a finite number/);
  refused('<lora:te=1>', /first argument .* must be the LoRA's name/);
  // "a=b=c" splits into three parts, so it is positional (split('=', 2) has two parts only for one '='): float() fails
  refused('<lora:catears:1:te=0.5=1>', /"te=0.5=1" is not a finite number/);
  refused('<lora:catears:1:1:x>', /not an integer/);
});

test('merging tags with the request list: the request wins; repeated tags add up as A1111 applies them', () => {
  const tags = parseExtraNetworks('<lora:catears:0.6> <lora:idol:0.8> <lora:stage:0.4> <lora:stage:0.3>').loras;
  assert.deepEqual(mergeLoraLists(tags, [{ name: 'idol', te: 0.5, unet: 1 }]), [
    { name: 'idol', te: 0.5, unet: 1, from: 'request' },
    { name: 'catears', te: 0.6, unet: 0.6, from: 'prompt' },
    // A1111 appends the network twice and both carry the last multipliers: 2 × 0.3
    { name: 'stage', te: 0.6, unet: 0.6, from: 'prompt' },
  ]);
  assert.deepEqual(mergeLoraLists([], []), []);
});

test('AND and the trailing weight (get_multicond_prompt_list), checked against A1111', () => {
  assert.deepEqual(splitComposablePrompt('a cat'), [{ text: 'a cat', weight: 1 }]);
  assert.deepEqual(splitComposablePrompt('a cat :1.5 '), [{ text: 'a cat', weight: 1.5 }]);
  assert.deepEqual(splitComposablePrompt('a cat AND a dog:0.5'), [
    { text: 'a cat', weight: 1 },
    { text: ' a dog', weight: 0.5 },
  ]);
  // a weight in brackets is not a trailing weight; ANDY is not AND
  assert.deepEqual(splitComposablePrompt('(a cat:1.5)'), [{ text: '(a cat:1.5)', weight: 1 }]);
  assert.deepEqual(splitComposablePrompt('ANDY and ANDé'), [{ text: 'ANDY and ANDé', weight: 1 }]);
});
