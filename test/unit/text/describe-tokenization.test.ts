import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeTokenization } from '../../../src/text/describe-tokenization.js';
import { EmbeddingLookup } from '../../../src/text/embedding-lookup.js';
import { tinyTokenizer } from './support.js';

const tok = tinyTokenizer();

test('describeTokenization: tags out, token strings and weights per chunk, embedding slots named', () => {
  const lookup = new EmbeddingLookup(tok, [{ name: 'q', vectorCount: 2 }]);
  const d = describeTokenization(tok, 'a (b:1.5) q <lora:catears:0.6>', { embeddings: lookup });
  assert.equal(d.prompt, 'a (b:1.5) q ');
  assert.deepEqual(d.loras.map((l) => l.name), ['catears']);
  assert.equal(d.texts.length, 1);
  assert.equal(d.texts[0].tokenCount, 4);
  assert.deepEqual(d.texts[0].chunks[0].tokens.slice(0, 6).map((t) => [t.text, t.weight]), [
    ['<|startoftext|>', 1],
    ['a</w>', 1],
    ['b</w>', 1.5],
    ['<q#0>', 1],
    ['<q#1>', 1],
    ['<|endoftext|>', 1],
  ]);
  assert.deepEqual(d.texts[0].chunks[0].tokens[3].embedding, { name: 'q', index: 0 });
});

test('describeTokenization: schedules give one entry per distinct text; negative prompts keep tags', () => {
  const d = describeTokenization(tok, '[a|b] c', { steps: 4 });
  assert.deepEqual(d.texts.map((t) => [t.text, t.untilSteps]), [['a c', [1, 3]], ['b c', [2, 4]]]);
  const n = describeTokenization(tok, '<lora:x:1> a', { negative: true });
  assert.deepEqual(n.loras, []);
  assert.equal(n.texts[0].text, '<lora:x:1> a');
});
