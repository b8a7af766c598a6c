import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { test } from 'node:test';
import { checkPipelineFolder } from '../../../src/engine/pipeline-folder.js';
import { synthesize } from '../../../src/synth/index.js';
import { makeTiny, readText } from './support.js';

function fileHashes(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.set(relative(dir, p), createHash('sha256').update(readFileSync(p)).digest('hex'));
    }
  };
  walk(dir);
  return out;
}

test('tiny generates a complete diffusers ONNX folder in well under 10 s', async () => {
  const t0 = performance.now();
  const m = await makeTiny();
  const seconds = (performance.now() - t0) / 1000;
  try {
    // The budget; it takes ~0.2 s on a laptop core, so this only catches a pathological regression.
    assert.ok(seconds < 10, `tiny took ${seconds.toFixed(1)} s`);
    const files = checkPipelineFolder(m.outDir); // the project's own loader check
    assert.ok(files.vaeEncoder);
    for (const rel of ['unet/weights.pb', 'README.md', 'synth.json', 'loras/loras.json']) assert.ok(existsSync(join(m.outDir, rel)), rel);
    assert.deepEqual(
      m.loras.map((p) => relative(m.outDir, p)),
      ['catears', 'idol', 'stage', 'costume', 'lights'].map((n) => join('loras', `${n}.safetensors`)),
    );
    const index = JSON.parse(readText(join(m.outDir, 'model_index.json')));
    assert.equal(index._class_name, 'OnnxStableDiffusionPipeline');
    const sched = JSON.parse(readText(join(m.outDir, 'scheduler/scheduler_config.json')));
    assert.equal(sched.prediction_type, 'epsilon');
    const readme = readText(join(m.outDir, 'README.md'));
    assert.match(readme, /random weights/i);
    assert.match(readme, /mean/); // the vae_encoder deviation is documented
    const manifest = JSON.parse(readText(join(m.outDir, 'synth.json')));
    assert.equal(manifest.synthetic, true);
    assert.equal(manifest.preset, 'tiny');
    assert.equal(m.bytes, [...fileHashes(m.outDir).keys()].reduce((a, rel) => a + statSync(join(m.outDir, rel)).size, 0));
  } finally {
    m.cleanup();
  }
});

test('same seed gives byte-identical files; another seed changes the weights', async () => {
  const a = await makeTiny({ seed: 7 });
  const b = await makeTiny({ seed: 7 });
  const c = await makeTiny({ seed: 8 });
  try {
    const ha = fileHashes(a.outDir);
    const hb = fileHashes(b.outDir);
    const hc = fileHashes(c.outDir);
    assert.deepEqual([...ha.entries()], [...hb.entries()]);
    assert.notEqual(ha.get('unet/weights.pb'), hc.get('unet/weights.pb'));
    assert.notEqual(ha.get('loras/catears.safetensors'), hc.get('loras/catears.safetensors'));
    assert.equal(ha.get('tokenizer/vocab.json'), hc.get('tokenizer/vocab.json')); // the tokenizer does not depend on the seed
  } finally {
    a.cleanup();
    b.cleanup();
    c.cleanup();
  }
});

test('tiny-sd2: v-prediction scheduler, "!" padding, linear projections', async () => {
  const m = await makeTiny({ preset: 'tiny-sd2', loras: 1 });
  try {
    const sched = JSON.parse(readText(join(m.outDir, 'scheduler/scheduler_config.json')));
    assert.equal(sched.prediction_type, 'v_prediction');
    assert.equal(sched._class_name, 'DDIMScheduler');
    const tok = JSON.parse(readText(join(m.outDir, 'tokenizer/tokenizer_config.json')));
    assert.equal(tok.pad_token, '!');
    const lora = JSON.parse(readText(join(m.outDir, 'loras/loras.json')));
    assert.equal(lora.length, 1);
  } finally {
    m.cleanup();
  }
});

test('writes atomically: refuses an existing folder unless told to overwrite, leaves no temp folder', async () => {
  const root = mkdtempSync(join(tmpdir(), 'loraserve-synth-atomic-'));
  try {
    const outDir = join(root, 'model');
    await synthesize({ preset: 'tiny', outDir, loras: 0 });
    await assert.rejects(synthesize({ preset: 'tiny', outDir, loras: 0 }), (e: Error & { code?: string }) => e.code === 'INVALID_ARGUMENT');
    const r = await synthesize({ preset: 'tiny', outDir, loras: 1, overwrite: true });
    assert.equal(r.loras.length, 1);
    assert.deepEqual(readdirSync(root), ['model']);
    await assert.rejects(synthesize({ preset: 'huge' as never, outDir: join(root, 'x') }), /unknown synth preset/);
    await assert.rejects(synthesize({ preset: 'tiny', outDir: join(root, 'x'), seed: -1 }), /seed/);
    assert.deepEqual(readdirSync(root), ['model']);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
