import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BYTE_TO_CHAR, CHAR_TO_BYTE, bpeMerge, byteDecode, byteEncode, mergeKey } from '../../../src/text/byte-level-bpe.js';

test('bytes_to_unicode: printable bytes stand for themselves, the rest shift to U+0100.. in byte order', () => {
  // GPT-2 / CLIP table values (openai/CLIP clip/simple_tokenizer.py bytes_to_unicode)
  const golden: Array<[number, string]> = [
    [0x21, '!'], [0x41, 'A'], [0x7e, '~'], [0xa1, '¡'], [0xac, '¬'], [0xae, '®'], [0xff, 'ÿ'],
    [0x00, '\u0100'], [0x0a, 'Ċ'], [0x20, 'Ġ'], [0x7f, '\u0121'], [0xa0, '\u0142'], [0xad, 'Ń'],
  ];
  for (const [byte, char] of golden) assert.equal(BYTE_TO_CHAR[byte], char, `byte 0x${byte.toString(16)}`);
  assert.equal(new Set(BYTE_TO_CHAR).size, 256);
  for (let b = 0; b < 256; b++) assert.equal(CHAR_TO_BYTE.get(BYTE_TO_CHAR[b].charCodeAt(0)), b);
});

test('byteEncode spells UTF-8 bytes with stand-ins; byteDecode inverts it', () => {
  assert.equal(byteEncode('cat'), 'cat');
  assert.equal(byteEncode('a b'), 'aĠb');
  // 😀 = F0 9F 98 80; CLIP's vocabulary has "ðŁĺ" (id 668) for its first three bytes
  assert.equal(byteEncode('😀'), 'ðŁĺĢ');
  assert.equal(byteEncode('猫'), 'çĮ«');
  for (const s of ['cat', 'a b\n', '😀 猫耳娘', 'café']) assert.equal(byteDecode(byteEncode(s)), s);
  // a cut multi-byte sequence decodes to U+FFFD instead of throwing
  assert.equal(byteDecode('ðŁĺ'), '\ufffd');
});

function ranksOf(merges: string[]): Map<string, number> {
  return new Map(merges.map((m, i) => {
    const [l, r] = m.split(' ');
    return [mergeKey(l, r), i];
  }));
}

test('bpeMerge: lowest rank first, all occurrences left to right, </w> on the last symbol', () => {
  const cases: Array<[string, string[], string[]]> = [
    // [word, merges (rank order), symbols]
    ['a', [], ['a</w>']],
    ['abc', [], ['a', 'b', 'c</w>']],
    ['abc', ['b c</w>', 'a b'], ['a', 'bc</w>']],
    ['abc', ['a b', 'b c</w>'], ['ab', 'c</w>']],
    ['abc', ['a b', 'b c</w>', 'ab c</w>'], ['abc</w>']],
    // "c" alone at the end is "c</w>": a merge of plain "c" does not apply there
    ['abc', ['b c'], ['a', 'b', 'c</w>']],
    // non-overlapping, left to right
    ['aaaa', ['a a'], ['aa', 'a', 'a</w>']],
    ['aaaa', ['a a', 'a a</w>'], ['aa', 'aa</w>']],
    ['aaaa', ['a a', 'a a</w>', 'aa aa</w>'], ['aaaa</w>']],
  ];
  for (const [word, merges, expected] of cases) {
    assert.deepEqual(bpeMerge(word, ranksOf(merges)), expected, `${word} with [${merges.join(', ')}]`);
  }
  assert.deepEqual(bpeMerge('', new Map()), []);
});
