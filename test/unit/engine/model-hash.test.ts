import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { hashUnetFolder } from '../../../src/engine/model-hash.js';

test('the model hash covers the export (model.onnx + weights), not a derived graph written beside it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ls-hash-'));
  try {
    writeFileSync(join(dir, 'model.onnx'), 'graph');
    writeFileSync(join(dir, 'weights.pb'), 'weights');
    const a = await hashUnetFolder(dir);
    assert.equal(a.short, a.sha256.slice(0, 10));
    writeFileSync(join(dir, 'model.lora.onnx'), 'rewritten graph');
    writeFileSync(join(dir, 'model.lora.onnx.123.tmp'), 'partial');
    assert.equal((await hashUnetFolder(dir)).sha256, a.sha256);
    writeFileSync(join(dir, 'weights.pb'), 'other weights');
    assert.notEqual((await hashUnetFolder(dir)).sha256, a.sha256);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
