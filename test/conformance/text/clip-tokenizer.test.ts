/**
 * The CLIP tokenizer against reference tokenizations (../shared/fixtures/clip-tokenizer/README.md) and against the
 * input_ids diffusers fed the tiny SD1.5 text encoder (../shared/fixtures/tiny-sd15/refs).
 *
 * We follow transformers' slow CLIPTokenizer with ftfy installed ("hf-slow"), which is what diffusers users get.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ClipTokenizer } from '../../../src/text/clip-tokenizer.js';
import { requireFixtures, tinySd15Refs } from '../../helpers/fixtures.js';

interface ReferenceTokens {
  prompt: string;
  ids: number[];
  source: string;
  sources: string[];
}

const CHOSEN_SOURCE = 'hf-slow';

/**
 * Prompts on which the reference tokenizers disagree, which of them we match, and why the others differ.
 * A new divergent prompt in the fixture fails the test until it is added here with its reason.
 */
const DIVERGENT: Array<{ prompt: string; match: string; differ: string; why: string }> = [
  {
    prompt: '猫耳娘 catgirl 🐱',
    match: 'openai-clip+hf-slow+hf-fast',
    differ: 'hf-slow-noftfy',
    why: 'without ftfy, transformers runs BERT\'s BasicTokenizer, which makes each CJK character its own word',
  },
  {
    prompt: '&amp; fish',
    match: 'openai-clip+hf-slow',
    differ: 'hf-slow-noftfy+hf-fast',
    why: 'ftfy unescapes HTML entities in a line without "<"; the fast and the no-ftfy tokenizers keep "&amp;"',
  },
];

const dir = requireFixtures('clip-tokenizer');
const tokenizer = await ClipTokenizer.fromFolder(dir);
const references: ReferenceTokens[] = JSON.parse(readFileSync(join(dir, 'reference-tokens.json'), 'utf8'));

test('loads the 49408-entry CLIP vocabulary with SD1 specials', () => {
  assert.equal(tokenizer.vocabSize, 49408);
  assert.deepEqual([tokenizer.bosId, tokenizer.eosId, tokenizer.padId, tokenizer.maxLength], [49406, 49407, 49407, 77]);
  // sample ids from the fixture README
  const samples: Array<[string, number]> = [
    ['a</w>', 320], ['photo</w>', 1125], ['of</w>', 539], ['cat</w>', 2368], ['girl</w>', 1611], ['ears</w>', 9861],
    ['masterpiece</w>', 12066], ['!!', 1443], ['!</w>', 256], ['ðŁĺ', 668], ['<|startoftext|>', 49406], ['<|endoftext|>', 49407],
  ];
  for (const [token, id] of samples) {
    assert.equal(tokenizer.idOf(token), id, token);
    assert.equal(tokenizer.tokenToString(id), token);
  }
});

test(`reference-tokens.json: ids equal the ${CHOSEN_SOURCE} tokenizer on every prompt`, (t) => {
  const prompts = [...new Set(references.map((r) => r.prompt))];
  const allSources = [...new Set(references.flatMap((r) => r.sources))].sort();
  const matched = new Map(allSources.map((s) => [s, 0]));
  const present = new Map(allSources.map((s) => [s, 0]));
  const failures: string[] = [];
  for (const prompt of prompts) {
    const ours = tokenizer.encode(prompt);
    const entries = references.filter((r) => r.prompt === prompt);
    const hit = entries.find((r) => r.ids.length === ours.length && r.ids.every((id, i) => id === ours[i]));
    for (const e of entries) for (const s of e.sources) present.set(s, present.get(s)! + 1);
    if (hit) for (const s of hit.sources) matched.set(s, matched.get(s)! + 1);
    if (!hit?.sources.includes(CHOSEN_SOURCE)) {
      failures.push(`${JSON.stringify(prompt)}: ours ${JSON.stringify(ours)} matches ${hit ? hit.source : 'no source'}`);
    }
    if (entries.length > 1) {
      const documented = DIVERGENT.find((d) => d.prompt === prompt);
      if (!documented) failures.push(`${JSON.stringify(prompt)}: divergent prompt missing from DIVERGENT`);
      else assert.equal(hit?.source, documented.match, `${prompt}: expected to match ${documented.match} (${documented.why})`);
    }
  }
  t.diagnostic(`${prompts.length} prompts; matched per source: ${allSources.map((s) => `${s} ${matched.get(s)}/${present.get(s)}`).join(', ')}`);
  assert.deepEqual(failures, []);
  assert.equal(matched.get(CHOSEN_SOURCE), prompts.length);
});

test('the 234-token prompt from the fixture README tokenizes to 234 ids', () => {
  assert.ok(references.some((r) => r.ids.length === 234 && tokenizer.encode(r.prompt).length === 234));
});

test('tiny-sd15 te/input_ids: encodeForModel equals diffusers CLIPTokenizer(max_length padding, truncation)', async () => {
  const refs = tinySd15Refs();
  const entry = refs.entry('te/input_ids') as unknown as { prompts: string[]; shape: number[]; pad_token_id: number };
  const { data, shape } = refs.i32('te/input_ids');
  const sd15 = await ClipTokenizer.fromFolder(join(requireFixtures('tiny-sd15'), 'tokenizer'));
  assert.equal(sd15.padId, entry.pad_token_id);
  assert.deepEqual(shape, [entry.prompts.length, sd15.maxLength]);
  entry.prompts.forEach((prompt, row) => {
    const expected = [...data.subarray(row * shape[1], (row + 1) * shape[1])];
    assert.deepEqual([...sd15.encodeForModel(prompt)], expected, `row ${row}: ${JSON.stringify(prompt).slice(0, 60)}`);
  });
  // the long prompt really was truncated, with EOS kept last
  assert.ok(entry.prompts.some((p) => sd15.encode(p).length > sd15.maxLength - 2));
});

test('tiny-sd15 pipe/*/input_ids: [negative, positive] rows equal encodeForModel', async () => {
  const refs = tinySd15Refs();
  const runs = refs.index.pipeline_runs as Record<string, { prompt: string; negative_prompt: string }>;
  const sd15 = await ClipTokenizer.fromFolder(join(requireFixtures('tiny-sd15'), 'tokenizer'));
  assert.ok(Object.keys(runs).length > 0);
  for (const [name, run] of Object.entries(runs)) {
    const { data, shape } = refs.i32(`pipe/${name}/input_ids`);
    assert.deepEqual(shape, [2, 77]);
    assert.deepEqual([...data.subarray(0, 77)], [...sd15.encodeForModel(run.negative_prompt)], `${name} negative`);
    assert.deepEqual([...data.subarray(77, 154)], [...sd15.encodeForModel(run.prompt)], `${name} positive`);
  }
});

test('SD2-style pad "!" reproduces huggingface/diffusers#4153; SD1 matches open_clip there', () => {
  // The issue prints diffusers' SD2/SDXL tokenizer_2 and open_clip ids for the prompt "! !! !!!".
  const vocab = JSON.parse(readFileSync(join(dir, 'vocab.json'), 'utf8'));
  const merges = readFileSync(join(dir, 'merges.txt'), 'utf8').split('\n');
  const sd2 = ClipTokenizer.fromData(vocab, merges, { specials: { pad: '!' } });
  assert.deepEqual([...sd2.encodeForModel('! !! !!!')], [49406, 0, 0, 0, 0, 0, 0, 49407, ...new Array(69).fill(0)]);
  assert.deepEqual(tokenizer.encode('! !! !!!'), [256, 748, 995]);
});
