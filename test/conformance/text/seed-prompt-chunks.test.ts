/**
 * The seed example's prompts (../shared/SEED-EXAMPLE.md) through A1111's tokenize_line on the real CLIP vocabulary
 * (../shared/fixtures/clip-tokenizer), with textual-inversion embeddings of 16, 75 and 6 vectors named
 * EasyNegativeV2, ng_deepnegative_v1_75t and badhandv4. The expected chunks below were worked out by hand from
 * AUTOMATIC1111 v1.9.4 modules/sd_hijack_clip.py (tokenize_line) and prompt_parser.py (parse_prompt_attention);
 * the comments walk through it. Each run of text is tokenized on its own (A1111 calls the tokenizer per run),
 * so the expected ids are written as runs of text with their weight, tokenized here; the boundaries, the
 * padding, the weights and the embedding slots are the hand-worked part.
 *
 * (While porting, the same two prompts were also run through A1111's own tokenize_line and EmbeddingDatabase
 * code under CPython with torch stubbed out and these tokenizer ids: identical chunks, weights and token counts.)
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ClipTokenizer } from '../../../src/text/clip-tokenizer.js';
import { describeTokenization } from '../../../src/text/describe-tokenization.js';
import { EmbeddingLookup, type EmbeddingInfo } from '../../../src/text/embedding-lookup.js';
import { EmbeddingRows, tokenizeLine, type PromptChunk } from '../../../src/text/prompt-chunks.js';
import { requireFixtures } from '../../helpers/fixtures.js';

const POSITIVE =
  '//quality, (masterpiece:1.3), (detailed), ((,best quality,)),//,cute,1girl,//,brown cat ears,animal ear fluff,(light_brown hair:1.3),(red hair: 1.1),(red inner hair: 1.4), (straight bangs: 1.4),(,long_hair,single braid :1.4),(Ahoge),(detailed eyes,blue_eyes:1.4),medium chest,//, (yellow hairpin,crescent-shaped hairpin:1.4),off_shoulders,large red ribbon,(idol costume:1.4),thigh strap,frilled skirt,gloves,//,blush,smiling,upper_teeth,looking_down,//,hand_up,(holding microphone:1.3),(standing on stage),//,indoors,crowd of audience,Glow stick,scenery,colorful light particles,(colorful lights:1.3),(laser light:1.4),glow_in_the_dark,cowboy_shot,dynamic angle';
const NEGATIVE =
  'NSFW,text,(worst quality:1.331), (low quality:1.331), (normal quality:1.331), large head, extra digits, bad eye, extra fingers, fewer fingers, strange fingers, ((bad hands)), Strange eyes, Many hands, (Many arms), EasyNegativeV2, ng_deepnegative_v1_75t, pregnancy, badhandv4, six fingers, fused fingers, unclear eyes,poorly drawn,cloned face,bad face,';

const BOS = 49406;
const EOS = 49407;
const VOCAB = 49408; // placeholder ids start here: id = 49408 + row of the extra embedding table
const W11 = 1.1;
const W121 = 1.2100000000000002; // ((x)): 1.1 × 1.1 in float64, as Python computes it

type Piece = [text: string, weight: number] | { embedding: string; vectors: number; firstId: number };

let tok: ClipTokenizer;
const tokenizer = async (): Promise<ClipTokenizer> => (tok ??= await ClipTokenizer.fromFolder(requireFixtures('clip-tokenizer')));

/** The expected 77 ids and weights of a chunk: BOS, the pieces, EOS up to 76, EOS. */
function expectChunk(pieces: Piece[]): { tokens: number[]; multipliers: number[]; promptTokens: number } {
  const tokens = [BOS];
  const multipliers = [1];
  for (const p of pieces) {
    if (Array.isArray(p)) {
      for (const id of tok.encode(p[0])) {
        tokens.push(id);
        multipliers.push(p[1]);
      }
    } else {
      for (let i = 0; i < p.vectors; i++) {
        tokens.push(p.firstId + i);
        multipliers.push(1);
      }
    }
  }
  const promptTokens = tokens.length - 1;
  while (tokens.length < 77) {
    tokens.push(EOS);
    multipliers.push(1);
  }
  return { tokens, multipliers, promptTokens };
}

function assertChunk(actual: PromptChunk, pieces: Piece[], promptTokens: number, label: string): void {
  const e = expectChunk(pieces);
  assert.equal(e.promptTokens, promptTokens, `${label}: hand count of prompt tokens`);
  assert.equal(actual.tokens.length, 77, label);
  assert.deepEqual(actual.tokens, e.tokens, `${label}: ids`);
  assert.deepEqual(actual.multipliers, e.multipliers, `${label}: weights`);
}

const EMBEDDINGS: EmbeddingInfo[] = [
  { name: 'EasyNegativeV2', vectorCount: 16 },
  { name: 'ng_deepnegative_v1_75t', vectorCount: 75 },
  { name: 'badhandv4', vectorCount: 6 },
];

test('seed positive prompt: 3 chunks, comma backtrack inside "(yellow hairpin,crescent-shaped hairpin:1.4)"', async () => {
  await tokenizer();
  const rows = new EmbeddingRows(VOCAB);
  const { chunks, tokenCount } = tokenizeLine(tok, POSITIVE, { embeddings: new EmbeddingLookup(tok, EMBEDDINGS), rows });
  assert.equal(chunks.length, 3);
  // parse_prompt_attention splits the line into 33 weighted runs; each is tokenized on its own.
  // Chunk 1 fills up in the middle of the 1.4-weighted run "yellow hairpin,crescent-shaped hairpin": after
  // "yellow hair pin ," (the comma is chunk token 71, index 70) come "crescent - shaped hair" (tokens 72–75); the
  // chunk is then full and the next token "pin" is not a comma. The last comma is 75 − 70 = 5 ≤ 20 tokens back,
  // so the comma backtrack fires: the 4 tokens after it move to chunk 2 (weight 1.4 kept) and chunk 1 is closed
  // with 71 prompt tokens + 4 EOS of padding.
  assertChunk(
    chunks[0],
    [
      ['//quality, ', 1],
      ['masterpiece', 1.3],
      [', ', 1],
      ['detailed', W11],
      [', ', 1],
      [',best quality,', W121],
      [',//,cute,1girl,//,brown cat ears,animal ear fluff,', 1],
      ['light_brown hair', 1.3],
      [',', 1],
      ['red hair', 1.1], // "(red hair: 1.1)": spaces around the weight are allowed
      [',', 1],
      ['red inner hair', 1.4],
      [', ', 1],
      ['straight bangs', 1.4],
      [',', 1],
      [',long_hair,single braid ', 1.4],
      [',', 1],
      ['Ahoge', W11],
      [',', 1],
      ['detailed eyes,blue_eyes', 1.4],
      [',medium chest,//, ', 1],
      ['yellow hairpin,', 1.4],
    ],
    71,
    'positive chunk 1',
  );
  // Chunk 2 takes the 4 moved tokens and fills exactly to 75 with "laser light" (1.4). The next token is the
  // "," of ",glow_in_the_dark": a comma never triggers the backtrack (it only records its position), so chunk 2
  // closes as it is, full, and the comma opens chunk 3.
  assertChunk(
    chunks[1],
    [
      ['crescent-shaped hairpin', 1.4],
      [',off_shoulders,large red ribbon,', 1],
      ['idol costume', 1.4],
      [',thigh strap,frilled skirt,gloves,//,blush,smiling,upper_teeth,looking_down,//,hand_up,', 1],
      ['holding microphone', 1.3],
      [',', 1],
      ['standing on stage', W11],
      [',//,indoors,crowd of audience,Glow stick,scenery,colorful light particles,', 1],
      ['colorful lights', 1.3],
      [',', 1],
      ['laser light', 1.4],
    ],
    75,
    'positive chunk 2',
  );
  assertChunk(chunks[2], [[',glow_in_the_dark,cowboy_shot,dynamic angle', 1]], 15, 'positive chunk 3');
  // token_count: 75 for each closed chunk, the rest for the last
  assert.equal(tokenCount, 75 + 75 + 15);
  assert.equal(rows.rowCount, 0);
  // a few ids pinned outright: masterpiece</w> = 12066, ",</w>" = 267
  assert.equal(chunks[0].tokens[4], 12066);
  assert.equal(chunks[0].multipliers[4], 1.3);
  assert.equal(chunks[0].tokens[71], 267);
  assert.deepEqual(chunks[0].tokens.slice(72), [EOS, EOS, EOS, EOS, EOS]);
});

test('seed negative prompt: the 75-vector embedding moves to a chunk of its own', async () => {
  await tokenizer();
  const rows = new EmbeddingRows(VOCAB);
  const { chunks, tokenCount } = tokenizeLine(tok, NEGATIVE, { embeddings: new EmbeddingLookup(tok, EMBEDDINGS), rows });
  assert.equal(chunks.length, 3);
  // Rows of the extra table in order of first use: EasyNegativeV2 0–15, ng_deepnegative_v1_75t 16–90,
  // badhandv4 91–96; a slot's id is 49408 + row.
  assert.deepEqual(rows.entries().map((e) => [e.embedding.name, e.row]), [['EasyNegativeV2', 0], ['ng_deepnegative_v1_75t', 16], ['badhandv4', 91]]);
  // Chunk 1: 43 tokens up to "Many arms ,", then EasyNegativeV2 (16 slots, tokens 44–59: 43 + 16 ≤ 75 fits) and
  // "," (token 60). Then ng_deepnegative_v1_75t: 60 + 75 > 75, so the chunk is closed first, padded with 15 EOS.
  assertChunk(
    chunks[0],
    [
      ['NSFW,text,', 1],
      ['worst quality', 1.331],
      [', ', 1],
      ['low quality', 1.331],
      [', ', 1],
      ['normal quality', 1.331],
      [', large head, extra digits, bad eye, extra fingers, fewer fingers, strange fingers, ', 1],
      ['bad hands', W121],
      [', Strange eyes, Many hands, ', 1],
      ['Many arms', W11],
      [', ', 1],
      { embedding: 'EasyNegativeV2', vectors: 16, firstId: VOCAB + 0 },
      [', ', 1],
    ],
    60,
    'negative chunk 1',
  );
  // Chunk 2: the 75 vectors exactly; the "," after them is a comma, so no backtrack: chunk 2 closes full.
  assertChunk(chunks[1], [{ embedding: 'ng_deepnegative_v1_75t', vectors: 75, firstId: VOCAB + 16 }], 75, 'negative chunk 2');
  assertChunk(
    chunks[2],
    [
      [', pregnancy, ', 1],
      { embedding: 'badhandv4', vectors: 6, firstId: VOCAB + 91 },
      [', six fingers, fused fingers, unclear eyes,poorly drawn,cloned face,bad face,', 1],
    ],
    29,
    'negative chunk 3',
  );
  assert.equal(tokenCount, 75 + 75 + 29);
  // PromptChunkFix offsets (+1 for BOS): where EmbeddingsWithFixes puts the vectors
  assert.deepEqual(chunks.map((c) => c.fixes.map((f) => [f.offset, f.embedding.name])), [[[44, 'EasyNegativeV2']], [[1, 'ng_deepnegative_v1_75t']], [[4, 'badhandv4']]]);
});

test('without the embeddings the names are words: the negative prompt is 2 chunks', async () => {
  await tokenizer();
  const { chunks, tokenCount } = tokenizeLine(tok, NEGATIVE);
  assert.equal(chunks.length, 2);
  assert.ok(tokenCount > 75 && tokenCount <= 150);
});

test('loraserve tokenize description of the seed prompts', async () => {
  await tokenizer();
  const lookup = new EmbeddingLookup(tok, EMBEDDINGS);
  const d = describeTokenization(tok, `${POSITIVE} <lora:catears:0.6><lora:idol:0.8> <lora:stage:0.4>`, { embeddings: lookup });
  assert.deepEqual(d.loras.map((l) => [l.name, l.te, l.unet]), [['catears', 0.6, 0.6], ['idol', 0.8, 0.8], ['stage', 0.4, 0.4]]);
  assert.equal(d.texts.length, 1);
  assert.equal(d.texts[0].chunks.length, 3);
  assert.deepEqual(d.texts[0].chunks[0].tokens.slice(0, 5).map((t) => [t.text, t.weight]), [['<|startoftext|>', 1], ['//</w>', 1], ['quality</w>', 1], [',</w>', 1], ['masterpiece</w>', 1.3]]);
  const n = describeTokenization(tok, NEGATIVE, { embeddings: lookup, negative: true });
  const slots = n.texts[0].chunks[1].tokens.filter((t) => t.embedding);
  assert.equal(slots.length, 75);
  assert.equal(slots[0].text, '<ng_deepnegative_v1_75t#0>');
});
