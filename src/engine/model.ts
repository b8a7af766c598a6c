/**
 * A loaded pipeline: sessions, tokenizer, scheduler config and the facts read off the graphs that the
 * render loop needs (input names and dtypes, latent channels, context width, accepted sizes).
 */
import { dirname } from 'node:path';
import type { DeviceConfig } from '../core/config.js';
import { LoraserveError } from '../core/errors.js';
import type { Logger } from '../core/logger.js';
import { silentLogger } from '../core/logger.js';
import { parseSchedulerConfig, type SchedulerConfig } from '../diffusion/scheduler-config.js';
import type { LoraTarget } from '../lora/index.js';
import { inspectSpatialConstraint, inspectVaeScaleFactor } from '../onnx/graph-inspect.js';
import { discoverTargetLayers, type TargetLayer } from '../onnx/graph-modules.js';
import { addLoraBranches, type LoraBranchPlan } from '../onnx/lora-branches.js';
import { materializeModel } from '../onnx/materialize.js';
import { readModel } from '../onnx/proto.js';
import { rewriteTextEncoder, type TextEncoderRewrite } from '../onnx/text-encoder-rewrite.js';
import { OnnxSession, type IoInfo } from '../onnx/runtime.js';
import { ClipTokenizer } from '../text/clip-tokenizer.js';
import type { HostDtype } from '../tensor/host-tensor.js';
import { emptyFeeds, type FeedSet } from './lora-feeds.js';
import { hashUnetFolder } from './model-hash.js';
import { checkPipelineFolder, type PipelineFiles } from './pipeline-folder.js';

export interface UnetSignature {
  sample: string;
  timestep: string;
  context: string;
  output: string;
  /** float32 or float16 (fp16 exports) for sample and context. */
  floatType: 'float32' | 'float16';
  /** float32, float16 or int64 — diffusers' script exports float32 [batch]; older exports int64. */
  timestepType: HostDtype;
  /** Rank of the timestep input: 1 = one per batch row, 0 = a scalar. */
  timestepRank: number;
  latentChannels: number;
  contextDim: number;
  /** Latent height/width must be multiples of this (see graph-inspect.ts). */
  latentMultipleOf: number;
}

/** The LoRA side of one rewritten graph: its branches, its targets as src/lora sees them, zero-rank feeds. */
export interface LoraGraph {
  plan: LoraBranchPlan;
  targets: LoraTarget[];
  /** The graph's own view of each targeted layer (its weight initializer and layout), by module. */
  layers: ReadonlyMap<string, TargetLayer>;
  empty: FeedSet;
}

export interface LoadedModel {
  files: PipelineFiles;
  /** The device the sessions were asked for (a session may have fallen back to CPU; see its provider). */
  device: DeviceConfig;
  name: string;
  hash: { sha256: string; short: string };
  tokenizer: ClipTokenizer;
  scheduler: SchedulerConfig;
  textEncoder: OnnxSession;
  unet: OnnxSession;
  vaeDecoder: OnnxSession;
  vaeEncoder?: OnnxSession;
  unetSig: UnetSignature;
  /** Latent → pixel factor (8 for SD). */
  vaeScaleFactor: number;
  /** Latents are divided by this before the VAE decoder (0.18215 for SD1/SD2). */
  vaeScalingFactor: number;
  /** Name of the text encoder's id input and its dtype (int32 in diffusers' export). */
  textInput: { name: string; type: HostDtype };
  /** Low-rank branch inputs added at load (see src/onnx/lora-branches.ts). */
  lora: { unet: LoraGraph; te: LoraGraph };
  /** The text encoder's added inputs/outputs: textual-inversion rows and clip-skip hidden states. */
  te: TextEncoderRewrite;
  release(): Promise<void>;
}

export interface LoadOptions {
  device: DeviceConfig;
  logger?: Logger;
  /** Where rewritten graphs are written (default: a per-user folder in the OS temp dir). */
  cacheDir?: string;
}

function dimOf(info: IoInfo | undefined, axis: number): number | undefined {
  const d = info?.shape[axis];
  return typeof d === 'number' && d > 0 ? d : undefined;
}

function pickInput(session: OnnxSession, names: string[], role: string): IoInfo {
  for (const n of names) {
    const i = session.input(n);
    if (i) return i;
  }
  throw new LoraserveError('MODEL_INVALID', `${session.label} has no ${role} input (looked for ${names.join(', ')}; it has ${session.inputs.map((i) => i.name).join(', ')})`);
}

function unetSignature(unet: OnnxSession, multipleOf: number): UnetSignature {
  const sample = pickInput(unet, ['sample'], 'latent sample');
  const timestep = pickInput(unet, ['timestep', 'timesteps', 't'], 'timestep');
  const context = pickInput(unet, ['encoder_hidden_states', 'context'], 'text context');
  const problems: string[] = [];
  if (sample.type !== 'float32' && sample.type !== 'float16') problems.push(`sample is ${sample.type}`);
  if (!['float32', 'float16', 'int64', 'int32'].includes(String(timestep.type))) problems.push(`timestep is ${timestep.type}`);
  if (context.type !== sample.type) problems.push(`encoder_hidden_states is ${context.type} but sample is ${sample.type}`);
  const contextDim = dimOf(context, 2);
  if (!contextDim) problems.push('encoder_hidden_states has no fixed width');
  if (problems.length) throw new LoraserveError('MODEL_INVALID', `unet inputs not understood: ${problems.join('; ')}`, { problems });
  const out = unet.outputs[0];
  return {
    sample: sample.name,
    timestep: timestep.name,
    context: context.name,
    output: out.name,
    floatType: sample.type as 'float32' | 'float16',
    timestepType: timestep.type as HostDtype,
    timestepRank: timestep.shape.length,
    latentChannels: dimOf(sample, 1) ?? dimOf(out, 1) ?? 4,
    contextDim: contextDim!,
    latentMultipleOf: multipleOf,
  };
}

export async function loadModel(dir: string, opts: LoadOptions): Promise<LoadedModel> {
  const logger = opts.logger ?? silentLogger;
  const files = checkPipelineFolder(dir);
  const t0 = performance.now();
  const scheduler = parseSchedulerConfig(files.schedulerConfig);
  const [tokenizer, hash] = await Promise.all([ClipTokenizer.fromFolder(files.tokenizerDir), hashUnetFolder(dirname(files.unet))]);
  const spatial = inspectSpatialConstraint(files.unet);
  const vaeScaleFactor = inspectVaeScaleFactor(files.vaeDecoder);

  const sessions: OnnxSession[] = [];
  const open = async (path: string | Uint8Array, label: string) => {
    const s = await OnnxSession.create(path, { device: opts.device, logger, label });
    sessions.push(s);
    return s;
  };
  /**
   * Opens a graph rewritten with a LoRA branch on every targetable layer; the text encoder first gains its
   * textual-inversion input and clip-skip outputs (src/onnx/text-encoder-rewrite.ts).
   */
  let teRewrite: TextEncoderRewrite | undefined;
  const openWithBranches = async (path: string, label: string, part: 'unet' | 'te'): Promise<{ session: OnnxSession; graph: LoraGraph }> => {
    const t = performance.now();
    const { model: proto, dir } = await readModel(path);
    if (part === 'te') teRewrite = rewriteTextEncoder(proto);
    const layers = discoverTargetLayers(proto);
    const plan = addLoraBranches(proto, layers);
    const mat = materializeModel(proto, { modelDir: dir, tag: 'lora', cacheRoot: opts.cacheDir, logger });
    const session = await open(mat.kind === 'file' ? mat.path : mat.bytes, label);
    const targets: LoraTarget[] = layers.map((l) => ({
      part,
      module: l.module,
      kind: l.op === 'Conv' ? 'conv' : 'linear',
      inFeatures: l.inFeatures,
      outFeatures: l.outFeatures,
      ...(l.kernel ? { kernel: l.kernel } : {}),
    }));
    logger.debug({ component: label, branches: plan.branches.length, materialized: mat.kind === 'file' ? mat.how : 'bytes', ms: Math.round(performance.now() - t) }, `${label}: LoRA branches added`);
    // WebGPU cannot take the zero-size factors of untouched branches (the process crashes): rank-1 zeros there.
    const empty = emptyFeeds(plan, session.provider === 'webgpu' ? 1 : 0);
    return { session, graph: { plan, targets, layers: new Map(layers.map((l) => [l.module, l])), empty } };
  };
  try {
    const te = await openWithBranches(files.textEncoder, 'text_encoder', 'te');
    const textEncoder = te.session;
    const un = await openWithBranches(files.unet, 'unet', 'unet');
    const unet = un.session;
    const vaeDecoder = await open(files.vaeDecoder, 'vae_decoder');
    const vaeEncoder = files.vaeEncoder ? await open(files.vaeEncoder, 'vae_encoder') : undefined;
    const unetSig = unetSignature(unet, spatial.multipleOf);
    const textIn = pickInput(textEncoder, [teRewrite!.idsInput], 'token ids');
    const rawScaling = files.vaeConfig?.['scaling_factor'];
    const vaeScalingFactor = typeof rawScaling === 'number' && rawScaling > 0 ? rawScaling : 0.18215;
    logger.info(
      {
        model: files.name,
        dir: files.dir,
        provider: unet.provider,
        hash: hash.short,
        latentMultipleOf: unetSig.latentMultipleOf,
        precision: unetSig.floatType,
        ms: Math.round(performance.now() - t0),
      },
      `loaded model ${files.name}`,
    );
    return {
      files,
      device: opts.device,
      name: files.name,
      hash,
      tokenizer,
      scheduler,
      textEncoder,
      unet,
      vaeDecoder,
      vaeEncoder,
      unetSig,
      vaeScaleFactor,
      vaeScalingFactor,
      textInput: { name: textIn.name, type: textIn.type as HostDtype },
      lora: { unet: un.graph, te: te.graph },
      te: teRewrite!,
      async release() {
        await Promise.all(sessions.map((s) => s.release()));
      },
    };
  } catch (e) {
    await Promise.all(sessions.map((s) => s.release().catch(() => {})));
    throw e;
  }
}
