import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkPipelineFolder } from '../../../src/engine/pipeline-folder.js';
import { LoraserveError } from '../../../src/core/errors.js';

function folder(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), 'ls-folder-'));
  for (const [rel, body] of Object.entries(files)) {
    mkdirSync(join(dir, rel, '..'), { recursive: true });
    writeFileSync(join(dir, rel), body);
  }
  return dir;
}

test('a missing folder is MODEL_INVALID', () => {
  assert.throws(() => checkPipelineFolder('/nonexistent/loraserve-model'), (e: LoraserveError) => e.code === 'MODEL_INVALID' && /does not exist/.test(e.message));
});

test('every missing or unreadable file is named in one error', () => {
  const dir = folder({ 'model_index.json': '{not json', 'unet/model.onnx': 'x', 'scheduler/scheduler_config.json': '[]' });
  try {
    assert.throws(
      () => checkPipelineFolder(dir),
      (e: LoraserveError) => {
        const problems = (e.details?.problems as string[]) ?? [];
        const expectMissing = ['text_encoder/model.onnx', 'vae_decoder/model.onnx', 'tokenizer/vocab.json', 'tokenizer/merges.txt', 'tokenizer/tokenizer_config.json', 'tokenizer/special_tokens_map.json'];
        for (const m of expectMissing) assert.ok(problems.includes(`${m}: missing`), `names ${m}: ${problems.join(' | ')}`);
        assert.ok(problems.some((p) => p.startsWith('model_index.json: invalid JSON')));
        assert.ok(problems.some((p) => p.startsWith('scheduler/scheduler_config.json: not a JSON object')));
        assert.ok(!problems.some((p) => p.startsWith('unet/model.onnx')));
        return e.code === 'MODEL_INVALID';
      },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a complete folder passes and the optional vae_encoder is picked up', () => {
  const files: Record<string, string> = {
    'model_index.json': '{}',
    'text_encoder/model.onnx': 'x',
    'unet/model.onnx': 'x',
    'vae_decoder/model.onnx': 'x',
    'vae_decoder/config.json': '{"scaling_factor": 0.13025}',
    'tokenizer/vocab.json': '{}',
    'tokenizer/merges.txt': '',
    'tokenizer/tokenizer_config.json': '{}',
    'tokenizer/special_tokens_map.json': '{}',
    'scheduler/scheduler_config.json': '{}',
  };
  const dir = folder(files);
  try {
    const f = checkPipelineFolder(dir);
    assert.equal(f.vaeEncoder, undefined);
    assert.equal(f.vaeConfig?.scaling_factor, 0.13025);
    mkdirSync(join(dir, 'vae_encoder'));
    writeFileSync(join(dir, 'vae_encoder/model.onnx'), 'x');
    assert.equal(checkPipelineFolder(dir).vaeEncoder, join(dir, 'vae_encoder/model.onnx'));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
