import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loraMergeFlags, parseFlags, LORA_MERGE_OPTIONS } from '../../../src/cli/args.js';
import { LoraserveError } from '../../../src/core/errors.js';

const parse = (...argv: string[]) => loraMergeFlags(parseFlags(argv, { ...LORA_MERGE_OPTIONS }).flags);

test('--lora-merge-after / --lora-merge-mb: defaults when absent, off, counts, megabytes', () => {
  assert.equal(parse(), undefined);
  assert.deepEqual(parse('--lora-merge-after', 'off'), { after: 'off' });
  assert.deepEqual(parse('--lora-merge-after', '0'), { after: 0 });
  assert.deepEqual(parse('--lora-merge-after', '5', '--lora-merge-mb', '2048'), { after: 5, maxBytes: 2048 * 2 ** 20 });
  assert.deepEqual(parse('--lora-merge-mb', '0'), { after: 2, maxBytes: 0 });
});

test('--lora-merge-after refuses what is not a count or off, with INVALID_ARGUMENT', () => {
  for (const bad of ['-1', '1.5', 'never', '']) {
    assert.throws(() => parse('--lora-merge-after', bad), (e: unknown) => e instanceof LoraserveError && e.code === 'INVALID_ARGUMENT' && /lora-merge-after/.test(e.message), bad);
  }
  assert.throws(() => parse('--lora-merge-mb', 'lots'), (e: unknown) => e instanceof LoraserveError && e.code === 'INVALID_ARGUMENT');
});
