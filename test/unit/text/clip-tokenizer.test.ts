import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BYTE_TO_CHAR } from '../../../src/text/byte-level-bpe.js';
import { ClipTokenizer, type ClipTokenizerOptions } from '../../../src/text/clip-tokenizer.js';
import { LoraserveError } from '../../../src/core/errors.js';

/**
 * A miniature CLIP vocabulary built the way openai/CLIP's SimpleTokenizer builds the real one: the 256 byte
 * stand-ins in GPT-2 table order ("!" = 0), the same with "</w>", one entry per merge, then the two specials.
 */
const MERGES = [
  'c a', 'ca t</w>', 'ca t', 'ca ts</w>', 't s</w>',
  'g i', 'r l</w>', 'gi rl</w>',
  'e a', 'r s</w>', 'ea rs</w>',
  '! !', '! !</w>',
  'a a',
  "' s</w>", "' t</w>",
];

function tinyVocab(): Record<string, number> {
  const vocab: Record<string, number> = {};
  let id = 0;
  const standIns = [...BYTE_TO_CHAR].sort((a, b) => a.charCodeAt(0) - b.charCodeAt(0));
  for (const c of standIns) vocab[c] = id++;
  for (const c of standIns) vocab[`${c}</w>`] = id++;
  for (const m of MERGES) vocab[m.replace(' ', '')] ??= id++;
  vocab['<|startoftext|>'] = id++;
  vocab['<|endoftext|>'] = id++;
  return vocab;
}

const VOCAB = tinyVocab();
const BOS = VOCAB['<|startoftext|>'];
const EOS = VOCAB['<|endoftext|>'];
const sd1 = (opts: ClipTokenizerOptions = {}) => ClipTokenizer.fromData(VOCAB, MERGES, opts);
const sd2 = (opts: ClipTokenizerOptions = {}) => ClipTokenizer.fromData(VOCAB, MERGES, { ...opts, specials: { pad: '!' } });

/** encode → vocabulary strings, for readable tables. */
function tokens(tok: ClipTokenizer, text: string): string[] {
  return tok.encode(text).map((id) => tok.tokenToString(id) ?? `#${id}`);
}

test('tiny vocabulary is CLIP-shaped', () => {
  const tok = sd1();
  assert.equal(tok.idOf('!'), 0);
  assert.equal(tok.idOf('!</w>'), 256);
  assert.equal(tok.bosId, BOS);
  assert.equal(tok.eosId, EOS);
  assert.equal(tok.padId, EOS);
  assert.equal(tok.unkId, EOS);
  assert.equal(tok.maxLength, 77);
  assert.equal(tok.vocabSize, Object.keys(VOCAB).length);
});

test('encode: BPE merges, </w>, lowercasing, whitespace, word splitting', () => {
  const tok = sd1();
  const cases: Array<[string, string[]]> = [
    // [prompt, tokens]
    ['cat', ['cat</w>']],
    // (ca,t) ranks before (t,s</w>), so "ca ts</w>" never gets a chance: the lowest rank wins
    ['cats', ['cat', 's</w>']],
    // "cat" not at a word end keeps no </w>; what follows is its own word
    ['catgirl', ['cat', 'girl</w>']],
    ['ears', ['ears</w>']],
    // every (a,a) left to right without overlap; the last "a" is "a</w>", which 'a a' does not match
    ['aaaa', ['aa', 'a', 'a</w>']],
    ['', []],
    // lowercasing and whitespace cleaning
    ['CAT Ears', ['cat</w>', 'ears</w>']],
    ['  cat \n\t cat\u00a0\u3000', ['cat</w>', 'cat</w>']],
    // letters, single digits, symbol runs, contractions are separate words
    ['1girl', ['1</w>', 'girl</w>']],
    ['123', ['1</w>', '2</w>', '3</w>']],
    // ",(" is one word: only its last symbol carries </w>
    ['cat,(girl:1.3)', ['cat</w>', ',', '(</w>', 'girl</w>', ':</w>', '1</w>', '.</w>', '3</w>', ')</w>']],
    ["cat's", ['cat</w>', "'s</w>"]],
    ["don't", ['d', 'o', 'n</w>', "'t</w>"]],
    ['!!', ['!!</w>']],
    ['! !! !!!', ['!</w>', '!!</w>', '!!', '!</w>']],
    // ftfy-style cleaning runs before splitting (fullwidth, curly quote, entity, control character)
    ['ＣＡＴ', ['cat</w>']],
    ['cat\u2019s', ['cat</w>', "'s</w>"]],
    ['cat&amp;girl', ['cat</w>', '&</w>', 'girl</w>']],
    ['ca\x00t', ['cat</w>']],
  ];
  for (const [prompt, expected] of cases) assert.deepEqual(tokens(tok, prompt), expected, JSON.stringify(prompt));
});

test('encode: repeated words come from the cache with the same ids', () => {
  const tok = sd1();
  const once = tok.encode('cat girl ears');
  assert.deepEqual(tok.encode('cat girl ears cat girl ears'), [...once, ...once]);
});

test('lowerCase: false keeps case (and needs uppercase tokens)', () => {
  const tok = sd1({ lowerCase: false });
  assert.deepEqual(tokens(tok, 'Cat'), ['C', 'a', 't</w>']);
  assert.deepEqual(tokens(tok, "CAT'S"), ['C', 'A', 'T</w>', "'", 'S</w>']);
});

test('special tokens in the text become their ids, split before cleaning (case-sensitive, then lowercased)', () => {
  const tok = sd1();
  assert.deepEqual(tok.encode('<|startoftext|>cat<|endoftext|>'), [BOS, VOCAB['cat</w>'], EOS]);
  assert.deepEqual(tok.encode('cat <|endoftext|> cat'), [VOCAB['cat</w>'], EOS, VOCAB['cat</w>']]);
  // another case is lowercased into CLIP's pattern, which maps it to the same id
  assert.deepEqual(tok.encode('cat<|EndOfText|>'), [VOCAB['cat</w>'], EOS]);
  // entities are unescaped per piece: the '<' of a special does not switch unescaping off for its neighbours
  assert.deepEqual(tokens(tok, '&amp;<|endoftext|>'), ['&</w>', '<|endoftext|>']);
});

test('SD2-style pad "!" is a special token: every "!" becomes the pad id (huggingface/diffusers#4153)', () => {
  const tok = sd2();
  assert.equal(tok.padId, 0);
  assert.deepEqual(tok.encode('! !! !!!'), [0, 0, 0, 0, 0, 0]);
  assert.deepEqual(tokens(tok, 'cat!girl'), ['cat</w>', '!', 'girl</w>']);
  assert.deepEqual(tokens(sd1(), 'cat!girl'), ['cat</w>', '!</w>', 'girl</w>']);
});

test('encodeForModel: [BOS, ids, EOS, pad…] with the pad token of the folder', () => {
  const cat = VOCAB['cat</w>'];
  const ears = VOCAB['ears</w>'];
  const one = sd1({ maxLength: 8 });
  assert.deepEqual([...one.encodeForModel('cat ears')], [BOS, cat, ears, EOS, EOS, EOS, EOS, EOS]);
  assert.deepEqual([...one.encodeForModel('')], [BOS, EOS, EOS, EOS, EOS, EOS, EOS, EOS]);
  const two = sd2({ maxLength: 8 });
  assert.deepEqual([...two.encodeForModel('cat ears')], [BOS, cat, ears, EOS, 0, 0, 0, 0]);
  assert.equal(sd1().encodeForModel('cat').length, 77);
  assert.ok(sd1().encodeForModel('cat') instanceof Int32Array);
});

test('encodeForModel: truncation keeps the first maxLength-2 ids and EOS last', () => {
  const tok = sd1({ maxLength: 6 });
  const ids = tok.encode('cat girl ears cat girl ears');
  assert.equal(ids.length, 6);
  assert.deepEqual([...tok.encodeForModel('cat girl ears cat girl ears')], [BOS, ...ids.slice(0, 4), EOS]);
  // exactly full: no pad
  assert.deepEqual([...tok.encodeForModel('cat girl ears cat')], [BOS, ...ids.slice(0, 4), EOS]);
  // minimum length holds only the two specials
  assert.deepEqual([...sd1({ maxLength: 2 }).encodeForModel('cat')], [BOS, EOS]);
});

test('decode and tokenToString are best-effort inverses for debugging', () => {
  const tok = sd1();
  assert.equal(tok.decode(tok.encode('A cat, 1girl!!  猫 🐱')), 'a cat , 1 girl !! 猫 🐱');
  assert.equal(tok.decode([...tok.encodeForModel('cat')].slice(0, 4)), '<|startoftext|>cat <|endoftext|><|endoftext|>');
  assert.equal(tok.tokenToString(VOCAB['cat</w>']), 'cat</w>');
  assert.equal(tok.tokenToString(-1), undefined);
  assert.equal(tok.tokenToString(1e9), undefined);
  assert.equal(tok.idOf('nope</w>'), undefined);
  assert.throws(() => tok.decode([1e9]), (e: unknown) => e instanceof LoraserveError && e.code === 'INVALID_ARGUMENT');
});

test('fromData: #version line and blank lines are skipped; malformed data is MODEL_INVALID', () => {
  const withHeader = ClipTokenizer.fromData(VOCAB, ['#version: 0.2', ...MERGES, '']);
  assert.deepEqual(withHeader.encode('cat girl'), sd1().encode('cat girl'));
  const invalid = (fn: () => unknown, re: RegExp) =>
    assert.throws(fn, (e: unknown) => e instanceof LoraserveError && e.code === 'MODEL_INVALID' && re.test(e.message));
  invalid(() => ClipTokenizer.fromData(VOCAB, ['c a', 'c a t']), /merges\[1\].*two symbols/);
  invalid(() => ClipTokenizer.fromData({ ...VOCAB, bad: -1 }, MERGES), /"bad" has id -1/);
  invalid(() => ClipTokenizer.fromData({}, MERGES), /empty/);
  invalid(() => ClipTokenizer.fromData(VOCAB, MERGES, { specials: { pad: '<pad>' } }), /pad token "<pad>" is not in vocab/);
  invalid(() => ClipTokenizer.fromData(VOCAB, MERGES, { maxLength: 1 }), /maxLength/);
});

// --- folders ---------------------------------------------------------------------------------------------------

async function withFolder(files: Record<string, string>, fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'clip-tok-'));
  try {
    for (const [name, content] of Object.entries(files)) await writeFile(join(dir, name), content);
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const VOCAB_JSON = JSON.stringify(VOCAB);
const MERGES_TXT = `#version: 0.2\n${MERGES.join('\n')}\n`;
const added = (content: string) => ({ content, lstrip: false, normalized: true, rstrip: false, single_word: false });

async function modelInvalid(dir: string, ...patterns: RegExp[]): Promise<void> {
  await assert.rejects(ClipTokenizer.fromFolder(dir), (e: unknown) => {
    assert.ok(e instanceof LoraserveError, String(e));
    assert.equal(e.code, 'MODEL_INVALID');
    for (const re of patterns) assert.match(e.message, re);
    return true;
  });
}

test('fromFolder: vocab + merges only → CLIP defaults', async () => {
  await withFolder({ 'vocab.json': VOCAB_JSON, 'merges.txt': MERGES_TXT }, async (dir) => {
    const tok = await ClipTokenizer.fromFolder(dir);
    assert.deepEqual([tok.bosId, tok.eosId, tok.padId, tok.maxLength], [BOS, EOS, EOS, 77]);
    assert.deepEqual(tok.encode('Cat Girl'), sd1().encode('cat girl'));
  });
});

test('fromFolder: SD2-style configs (AddedToken objects, pad "!"); special_tokens_map wins', async () => {
  const config = {
    bos_token: added('<|startoftext|>'), eos_token: added('<|endoftext|>'), unk_token: added('<|endoftext|>'),
    pad_token: '<|endoftext|>', model_max_length: 16, do_lower_case: true, tokenizer_class: 'CLIPTokenizer',
  };
  const specialsMap = { bos_token: added('<|startoftext|>'), eos_token: added('<|endoftext|>'), pad_token: '!' };
  await withFolder(
    { 'vocab.json': VOCAB_JSON, 'merges.txt': MERGES_TXT, 'tokenizer_config.json': JSON.stringify(config), 'special_tokens_map.json': JSON.stringify(specialsMap) },
    async (dir) => {
      const tok = await ClipTokenizer.fromFolder(dir);
      assert.equal(tok.padId, 0);
      assert.equal(tok.maxLength, 16);
      assert.deepEqual([...tok.encodeForModel('cat!')], [BOS, VOCAB['cat</w>'], 0, EOS, ...new Array(12).fill(0)]);
    },
  );
});

test('fromFolder: model_max_length "unset" (1e30) means 77; do_lower_case false is honoured', async () => {
  const config = '{"model_max_length": 1000000000000000019884624838656, "do_lower_case": false}';
  await withFolder({ 'vocab.json': VOCAB_JSON, 'merges.txt': MERGES_TXT, 'tokenizer_config.json': config }, async (dir) => {
    const tok = await ClipTokenizer.fromFolder(dir);
    assert.equal(tok.maxLength, 77);
    assert.deepEqual(tokens(tok, 'Cat'), ['C', 'a', 't</w>']);
  });
});

test('fromFolder: every missing or broken file is named in one MODEL_INVALID', async () => {
  await withFolder({}, (dir) => modelInvalid(dir, /vocab\.json: missing/, /merges\.txt: missing/));
  await withFolder(
    { 'vocab.json': '{"a": 0,', 'merges.txt': MERGES_TXT, 'tokenizer_config.json': '[1]', 'special_tokens_map.json': '{"pad_token": 5}' },
    (dir) => modelInvalid(dir, /vocab\.json: not valid JSON/, /tokenizer_config\.json: expected a JSON object/, /special_tokens_map\.json: pad_token must be a string/),
  );
  await withFolder({ 'vocab.json': VOCAB_JSON, 'merges.txt': '#version: 0.2\n\n' }, (dir) => modelInvalid(dir, /merges\.txt: no merges/));
  await withFolder(
    { 'vocab.json': VOCAB_JSON, 'merges.txt': MERGES_TXT, 'tokenizer_config.json': '{"model_max_length": "77", "do_lower_case": "yes"}' },
    (dir) => modelInvalid(dir, /model_max_length "77"/, /do_lower_case "yes"/),
  );
  await withFolder({ 'vocab.json': VOCAB_JSON, 'merges.txt': '#version: 0.2\nc a\nc a t\n' }, (dir) => modelInvalid(dir, /merges\.txt line 3: expected two symbols/));
  await withFolder({ 'vocab.json': '{"a": 0, "b": 1.5}', 'merges.txt': MERGES_TXT }, (dir) => modelInvalid(dir, /vocab\.json: token "b" has id 1\.5/));
  await withFolder({ 'vocab.json': '{"a</w>": 0}', 'merges.txt': 'a b\n' }, (dir) => modelInvalid(dir, /bos token "<\|startoftext\|>" is not in .*vocab\.json/));
});
