import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ClipTokenizer } from '../../../src/text/clip-tokenizer.js';
import { buildTokenizerFiles, bytesToUnicode, learnMerges, pretokenize, TOKENIZER_CORPUS } from '../../../src/synth/tokenizer.js';

const root = mkdtempSync(join(tmpdir(), 'loraserve-synth-tok-'));
after(() => rmSync(root, { recursive: true, force: true }));

function writeFolder(padToken: string): { dir: string; vocab: Record<string, number> } {
  const { files } = buildTokenizerFiles({ padToken });
  const dir = mkdtempSync(join(root, 'tok-'));
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return { dir, vocab: JSON.parse(files['vocab.json']) };
}

test("bytes_to_unicode: CLIP's table (printable bytes first, the rest from U+0100)", () => {
  const { byteToChar, vocabOrder } = bytesToUnicode();
  assert.equal(new Set(byteToChar).size, 256);
  assert.equal(byteToChar[0x21], '!');
  assert.equal(byteToChar[0x20], 'Ġ'); // space → U+0120, as in GPT-2 / CLIP
  assert.equal(byteToChar[0x0a], 'Ċ');
  assert.deepEqual(vocabOrder.slice(0, 3), ['!', '"', '#']);
  assert.equal(vocabOrder[255], 'Ń'); // the real vocab.json's id 255
});

test('vocab.json / merges.txt have CLIP layout: bytes, bytes</w>, merges, then the two specials last', () => {
  const { files, vocabSize } = buildTokenizerFiles({ padToken: '<|endoftext|>' });
  const vocab = JSON.parse(files['vocab.json']) as Record<string, number>;
  const byId = Object.entries(vocab).sort((a, b) => a[1] - b[1]);
  assert.equal(byId.length, vocabSize);
  assert.deepEqual(byId.map(([, id]) => id), byId.map((_, i) => i)); // contiguous ids
  const { vocabOrder } = bytesToUnicode();
  assert.deepEqual(byId.slice(0, 256).map(([t]) => t), vocabOrder);
  assert.deepEqual(byId.slice(256, 512).map(([t]) => t), vocabOrder.map((c) => `${c}</w>`));
  assert.deepEqual(byId.slice(-2).map(([t]) => t), ['<|startoftext|>', '<|endoftext|>']);
  const lines = files['merges.txt'].trimEnd().split('\n');
  assert.equal(lines[0], '#version: 0.2');
  for (const line of lines.slice(1)) {
    const [l, r] = line.split(' ');
    assert.ok(vocab[l + r] !== undefined, `merge result ${l}${r} not in vocab`);
  }
  assert.ok(lines.length - 1 > 300 && lines.length - 1 < 48894);
  const cfg = JSON.parse(files['tokenizer_config.json']);
  assert.equal(cfg.tokenizer_class, 'CLIPTokenizer');
  assert.equal(cfg.model_max_length, 77);
  assert.equal(cfg.bos_token.content, '<|startoftext|>');
  assert.deepEqual(Object.keys(JSON.parse(files['special_tokens_map.json'])).sort(), ['bos_token', 'eos_token', 'pad_token', 'unk_token']);
  // Deterministic.
  assert.equal(buildTokenizerFiles({ padToken: '<|endoftext|>' }).files['merges.txt'], files['merges.txt']);
});

test('learnMerges: plain BPE, ties broken lexicographically, until every word is one symbol', () => {
  assert.deepEqual(learnMerges(['ab ab ac']), [['a', 'b</w>'], ['a', 'c</w>']]);
  assert.deepEqual(pretokenize("Cat's  EARS,(1girl:1.3)"), ['cat', "'s", 'ears', ',(', '1', 'girl', ':', '1', '.', '3', ')']);
});

test('the folder loads through ClipTokenizer; prompt words are whole tokens; any text round-trips', async () => {
  const { dir, vocab } = writeFolder('<|endoftext|>');
  const tok = await ClipTokenizer.fromFolder(dir);
  for (const word of ['masterpiece', 'microphone', 'costume', 'stage', 'cat', 'ears', 'quality']) {
    assert.deepEqual(tok.encode(word), [vocab[`${word}</w>`]], word);
  }
  const seedWords = pretokenize(TOKENIZER_CORPUS.join(' '));
  const ids = tok.encode(TOKENIZER_CORPUS.join(' '));
  assert.equal(ids.length, seedWords.length); // one token per pre-tokenized word
  for (const text of ['cute 1girl, brown cat ears', 'zebra café 😀 ü', 'EasyNegativeV2']) {
    assert.equal(tok.decode(tok.encode(text)), pretokenize(text).join(' '), text); // words survive, down to bytes
    assert.ok(tok.encode(text).every((id) => id >= 0 && id < tok.vocabSize));
  }
  const forModel = tok.encodeForModel('cat ears');
  assert.equal(forModel[0], vocab['<|startoftext|>']);
  assert.equal(forModel[3], vocab['<|endoftext|>']);
  assert.equal(forModel[76], vocab['<|endoftext|>']); // SD1 pads with the end token
  assert.equal(Math.max(...forModel), vocab['<|endoftext|>']); // the pooler's argmax finds the end token
});

test('SD2 folder pads with "!" (id 0)', async () => {
  const { dir } = writeFolder('!');
  const tok = await ClipTokenizer.fromFolder(dir);
  assert.equal(tok.padId, 0);
  assert.equal(tok.encodeForModel('cat')[76], 0);
});
