/**
 * The WebGPU execution provider (bundled in onnxruntime-node, Dawn over Vulkan) against CPU on the fixture UNet.
 * Needs a Vulkan driver: CI installs Mesa's lavapipe (.ci/install-vulkan.sh) and sets LORASERVE_TEST_WEBGPU=1.
 * Without that variable the test is skipped and says why (a developer machine may have no Vulkan at all).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { OnnxSession } from '../../../src/onnx/runtime.js';
import { compare, requireFixtures, tinySd15Refs } from '../../helpers/fixtures.js';

const enabled = process.env.LORASERVE_TEST_WEBGPU === '1';

test('webgpu UNet output equals CPU within 1e-4 relative', { skip: enabled ? false : 'set LORASERVE_TEST_WEBGPU=1 on a machine with Vulkan (CI installs lavapipe)', timeout: 300_000 }, async () => {
  const path = join(requireFixtures('tiny-sd15'), 'unet/model.onnx');
  const warnings: string[] = [];
  const logger = { debug() {}, info() {}, error() {}, warn: (_o: object | string, m?: string) => warnings.push(m ?? String(_o)) };
  const gpu = await OnnxSession.create(path, { device: { kind: 'webgpu' }, logger, label: 'unet' });
  assert.equal(gpu.provider, 'webgpu', `webgpu did not load: ${warnings.join('; ')}`);
  const cpu = await OnnxSession.create(path, { device: { kind: 'cpu' }, label: 'unet' });
  const refs = tinySd15Refs();
  const s = refs.f32('unet/sample');
  const e = refs.f32('unet/encoder_hidden_states');
  const t = refs.f32('unet/timestep_t500');
  const feeds = {
    sample: { type: 'float32' as const, data: s.data, dims: s.shape },
    timestep: { type: 'float32' as const, data: t.data, dims: t.shape },
    encoder_hidden_states: { type: 'float32' as const, data: e.data, dims: e.shape },
  };
  const a = (await gpu.run(feeds)).out_sample.data as Float32Array;
  const b = (await cpu.run(feeds)).out_sample.data as Float32Array;
  const c = compare(a, b);
  assert.ok(c.relL2 < 1e-4, `webgpu vs cpu relL2 ${c.relL2}, max abs ${c.maxAbs}`);
  const r = compare(a, refs.f32('unet/out_t500_nolora').data);
  assert.ok(r.relL2 < 1e-4, `webgpu vs diffusers relL2 ${r.relL2}`);
  await gpu.release();
  await cpu.release();
});
