/**
 * Facts read off a graph's structure before any session runs (no onnxruntime here, onnx-proto only):
 * which spatial sizes an exported UNet accepts and the VAE's scale factor.
 *
 * Why: diffusers' ONNX export traces the UNet at one latent size. When that size needs no explicit
 * upsample target (`forward_upsample_size` False in UNet2DConditionModel.forward), every upsampler is a
 * plain ×2 nearest Resize driven by constant `scales`, and the skip-connection Concat then only lines up
 * for latent sizes that are multiples of 2^(number of upsamplers). With a `sizes` input the graph takes
 * its target from the skip tensor and any size works (downsampling convs round up).
 */
import { readFileSync } from 'node:fs';
import pkg from 'onnx-proto';
import { LoraserveError } from '../core/errors.js';

const { onnx } = pkg;

export interface SpatialConstraint {
  /** Number of 2× upsampling Resize nodes found. */
  upsamplers: number;
  /** Height and width (of this graph's spatial input) must be multiples of this. */
  multipleOf: number;
}

function loadGraph(modelPath: string): InstanceType<typeof onnx.ModelProto> {
  try {
    return onnx.ModelProto.decode(readFileSync(modelPath));
  } catch (e) {
    throw new LoraserveError('MODEL_INVALID', `cannot parse ONNX model ${modelPath}: ${(e as Error).message}`, { path: modelPath });
  }
}

export function inspectSpatialConstraint(modelPath: string): SpatialConstraint {
  const graph = loadGraph(modelPath).graph;
  const resizes = (graph?.node ?? []).filter((n) => n.opType === 'Resize' || n.opType === 'Upsample');
  const fixedScale = resizes.filter((n) => !((n.input?.length ?? 0) >= 4 && n.input?.[3] !== ''));
  return { upsamplers: resizes.length, multipleOf: 2 ** fixedScale.length };
}

/** VAE decoder scale factor = 2^(number of upsamplers), 8 for every SD VAE. */
export function inspectVaeScaleFactor(decoderPath: string): number {
  return 2 ** inspectSpatialConstraint(decoderPath).upsamplers;
}
