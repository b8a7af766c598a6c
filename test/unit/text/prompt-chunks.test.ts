/**
 * tokenize_line (A1111 v1.9.4 modules/sd_hijack_clip.py) on a miniature tokenizer where every letter is one
 * token, so chunk boundaries can be counted by hand. The seed prompts on the real CLIP vocabulary are in
 * test/conformance/text/seed-prompt-chunks.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EmbeddingLookup, type EmbeddingInfo } from '../../../src/text/embedding-lookup.js';
import { EmbeddingRows, emptyChunk, tokenizeLine, type PromptChunk } from '../../../src/text/prompt-chunks.js';
import { LoraserveError } from '../../../src/core/errors.js';
import { tinyTokenizer, words } from './support.js';

const tok = tinyTokenizer();
const BOS = tok.bosId;
const EOS = tok.eosId;
const A = tok.idOf('a</w>')!;
const B = tok.idOf('b</w>')!;
const COMMA = tok.idOf(',</w>')!;
const BASE = 100_000; // placeholder ids start here in these tests

/** Chunk → compact strings: 'a', ',', 'BOS', 'EOS', '<q#0>' (embedding slot), '!' (id 0) …, with weights. */
function show(c: PromptChunk, rows?: EmbeddingRows): string[] {
  return c.tokens.map((id) => {
    if (id === BOS) return 'BOS';
    if (id === EOS) return 'EOS';
    const slot = rows?.slotOf(id);
    if (slot) return `<${slot.embedding.name}#${slot.index}>`;
    return (tok.tokenToString(id) ?? `#${id}`).replace('</w>', '');
  });
}
const eos = (n: number): string[] => new Array<string>(n).fill('EOS');
const rep = (n: number, s: string): string[] => new Array<string>(n).fill(s);

test('a short prompt: one chunk [BOS, tokens, EOS…], weights 1, token count', () => {
  const { chunks, tokenCount } = tokenizeLine(tok, 'a b');
  assert.equal(chunks.length, 1);
  assert.deepEqual(chunks[0].tokens, [BOS, A, B, ...new Array(74).fill(EOS)]);
  assert.deepEqual(chunks[0].multipliers, new Array(77).fill(1));
  assert.deepEqual(chunks[0].fixes, []);
  assert.equal(tokenCount, 2);
});

test('empty prompt: one empty chunk, same as empty_chunk()', () => {
  const { chunks, tokenCount } = tokenizeLine(tok, '');
  assert.deepEqual(chunks, [emptyChunk(tok)]);
  assert.equal(tokenCount, 0);
});

test('75 tokens fill one chunk; the 76th opens a second; token count 75 per closed chunk + the rest', () => {
  assert.equal(tokenizeLine(tok, words(75)).chunks.length, 1);
  const two = tokenizeLine(tok, words(76));
  assert.equal(two.chunks.length, 2);
  assert.deepEqual(show(two.chunks[1]), ['BOS', 'a', ...eos(75)]);
  assert.equal(two.tokenCount, 76);
  assert.equal(tokenizeLine(tok, words(150)).chunks.length, 2);
});

test('weights follow parse_prompt_attention; BOS, EOS and padding keep 1', () => {
  const { chunks } = tokenizeLine(tok, '(a) [b] (a b:1.5)');
  assert.deepEqual(chunks[0].multipliers.slice(0, 6), [1, 1.1, 1 / 1.1, 1.5, 1.5, 1]);
  // emphasis mode "None": brackets are text, all weights 1
  const none = tokenizeLine(tok, '(a)', { parseAttention: false });
  assert.deepEqual(show(none.chunks[0]).slice(0, 5), ['BOS', '(', 'a', ')', 'EOS']);
  assert.deepEqual(none.chunks[0].multipliers, new Array(77).fill(1));
});

test('BREAK closes the chunk; a lone BREAK gives one padded chunk', () => {
  const { chunks, tokenCount } = tokenizeLine(tok, 'a BREAK b');
  assert.deepEqual(chunks.map((c) => show(c)), [
    ['BOS', 'a', ...eos(75)],
    ['BOS', 'b', ...eos(75)],
  ]);
  assert.equal(tokenCount, 76);
  const lone = tokenizeLine(tok, 'BREAK');
  assert.deepEqual(lone.chunks.map((c) => show(c)), [['BOS', ...eos(76)]]);
  assert.equal(lone.tokenCount, 75);
  // a weighted BREAK is the word
  assert.equal(tokenizeLine(tok, '(BREAK:1.2)').chunks.length, 1);
});

test('comma backtrack: words after the last comma move on when it is ≤ 20 tokens back', () => {
  // 70 a, ',' at 70, then 10 b: at the 76th token the comma is 5 back → b×4 move with their weights
  const line = `${words(70)}, (${words(10, 'b')}:1.2)`;
  const { chunks } = tokenizeLine(tok, line);
  assert.deepEqual(show(chunks[0]), ['BOS', ...rep(70, 'a'), ',', ...eos(4), 'EOS']);
  assert.deepEqual(show(chunks[1]), ['BOS', ...rep(10, 'b'), ...eos(65), 'EOS']);
  assert.deepEqual(chunks[1].multipliers.slice(1, 12), [...rep(10, '1.2').map(Number), 1]);
  assert.equal(chunks[0].tokens[71], COMMA);
  // 21 back: no backtrack, a plain cut at 75
  const far = tokenizeLine(tok, `${words(54)}, ${words(30, 'b')}`).chunks;
  assert.deepEqual(show(far[0]), ['BOS', ...rep(54, 'a'), ',', ...rep(20, 'b'), 'EOS']);
  // exactly 20 back still moves
  const twenty = tokenizeLine(tok, `${words(55)}, ${words(30, 'b')}`).chunks;
  assert.deepEqual(show(twenty[0]), ['BOS', ...rep(55, 'a'), ',', ...eos(19), 'EOS']);
  // the option off (0): a plain cut
  const off = tokenizeLine(tok, line, { commaPaddingBacktrack: 0 }).chunks;
  assert.deepEqual(show(off[0]), ['BOS', ...rep(70, 'a'), ',', ...rep(4, 'b'), 'EOS']);
});

const emb = (name: string, vectorCount: number, problem?: string): EmbeddingInfo => (problem ? { name, vectorCount, problem } : { name, vectorCount });

test('embeddings: slots with placeholder ids, longest match, case-insensitive, weights, fixes', () => {
  const q = emb('q', 2);
  const qr = emb('Q R', 4);
  const lookup = new EmbeddingLookup(tok, [q, qr]);
  const rows = new EmbeddingRows(BASE);
  const { chunks } = tokenizeLine(tok, 'a q b (q r:1.2) Q', { embeddings: lookup, rows });
  assert.deepEqual(show(chunks[0], rows).slice(0, 12), ['BOS', 'a', '<q#0>', '<q#1>', 'b', '<Q R#0>', '<Q R#1>', '<Q R#2>', '<Q R#3>', '<q#0>', '<q#1>', 'EOS']);
  assert.deepEqual(chunks[0].multipliers.slice(0, 12), [1, 1, 1, 1, 1, 1.2, 1.2, 1.2, 1.2, 1, 1, 1]);
  assert.deepEqual(chunks[0].fixes.map((f) => [f.offset, f.embedding.name]), [[2, 'q'], [5, 'Q R'], [9, 'q']]);
  // rows: q first (2 rows), then Q R; the same embedding reuses its rows
  assert.deepEqual(rows.entries().map((e) => [e.embedding.name, e.row]), [['q', 0], ['Q R', 2]]);
  assert.equal(chunks[0].tokens[2], BASE);
  assert.equal(rows.rowCount, 6);
});

test('embeddings that do not fit move to the next chunk; a 75-vector one fills a chunk of its own', () => {
  const lookup = new EmbeddingLookup(tok, [emb('five', 5), emb('big', 75)]);
  let rows = new EmbeddingRows(BASE);
  let { chunks } = tokenizeLine(tok, `${words(73)} five`, { embeddings: lookup, rows });
  assert.deepEqual(show(chunks[0], rows), ['BOS', ...rep(73, 'a'), 'EOS', 'EOS', 'EOS']);
  assert.deepEqual(show(chunks[1], rows), ['BOS', ...[0, 1, 2, 3, 4].map((i) => `<five#${i}>`), ...eos(71)]);
  assert.deepEqual(chunks[1].fixes.map((f) => f.offset), [1]);

  rows = new EmbeddingRows(BASE);
  ({ chunks } = tokenizeLine(tok, `${words(10)} big a`, { embeddings: lookup, rows }));
  assert.equal(chunks.length, 3);
  assert.deepEqual(show(chunks[1], rows), ['BOS', ...Array.from({ length: 75 }, (_, i) => `<big#${i}>`), 'EOS']);
  assert.deepEqual(show(chunks[2], rows).slice(0, 3), ['BOS', 'a', 'EOS']);
});

test('bug-compatible: a moved embedding keeps its vectors in the closed chunk (over EOS, weight 1), id 0 moves on', () => {
  // 58 a + ',' = 59 tokens, a 16-vector embedding ends at 75, then "b" triggers the backtrack (comma 16 back)
  const lookup = new EmbeddingLookup(tok, [emb('sixteen', 16)]);
  const rows = new EmbeddingRows(BASE);
  const { chunks } = tokenizeLine(tok, `${words(58)}, (sixteen:1.3) b`, { embeddings: lookup, rows });
  const slots = Array.from({ length: 16 }, (_, i) => `<sixteen#${i}>`);
  assert.deepEqual(show(chunks[0], rows), ['BOS', ...rep(58, 'a'), ',', ...slots, 'EOS']);
  assert.deepEqual(chunks[0].multipliers.slice(60, 76), new Array(16).fill(1));
  assert.deepEqual(show(chunks[1], rows).slice(0, 19), ['BOS', ...rep(16, '!'), 'b', 'EOS']);
  assert.deepEqual(chunks[1].multipliers.slice(1, 18), [...new Array(16).fill(1.3), 1]);
  assert.deepEqual(chunks[1].fixes, []);
});

test('unusable embeddings are refused by name; more than 75 vectors cannot fit', () => {
  const rows = new EmbeddingRows(BASE);
  const bad = new EmbeddingLookup(tok, [emb('wide', 2, 'wide.pt holds vectors of width 1280; this model takes 768')]);
  assert.throws(
    () => tokenizeLine(tok, 'a wide', { embeddings: bad, rows }),
    (e: unknown) => e instanceof LoraserveError && e.code === 'EMBEDDING_INVALID' && /"wide".*1280.*768/.test(e.message),
  );
  const huge = new EmbeddingLookup(tok, [emb('huge', 76)]);
  assert.throws(() => tokenizeLine(tok, 'huge', { embeddings: huge, rows }), /76 vectors; at most 75/);
  // names only match whole tokens of a run: "wider" is other tokens
  assert.equal(tokenizeLine(tok, 'wider', { embeddings: bad, rows }).chunks.length, 1);
});

test('SD2 tokenizer: every id after the first EOS is the pad id', () => {
  const sd2 = tinyTokenizer({ sd2: true });
  const { chunks } = tokenizeLine(sd2, 'a b');
  assert.deepEqual(chunks[0].tokens.slice(0, 5), [sd2.bosId, A, B, sd2.eosId, 0]);
  assert.deepEqual(chunks[0].tokens.slice(4), new Array(73).fill(0));
  assert.deepEqual(emptyChunk(sd2).tokens.slice(0, 3), [sd2.bosId, sd2.eosId, 0]);
});
