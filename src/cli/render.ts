/** `loraserve render`: one prompt → PNG file(s), rendered in a worker thread. */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, extname, join, resolve } from 'node:path';
import { parseDeviceKind, type DeviceConfig } from '../core/config.js';
import { LoraserveError } from '../core/errors.js';
import { writeFilesAtomic } from '../core/fs-atomic.js';
import { consoleLogger } from '../core/logger.js';
import { parseSeed, randomSeed } from '../diffusion/rng/index.js';
import type { LoraSpec, RenderRequest } from '../engine/request.js';
import { RenderHost } from '../jobs/render-host.js';
import { readNpy, writeNpy } from '../tensor/npy.js';
import { LORA_MERGE_HELP, LORA_MERGE_OPTIONS, loraMergeFlags, num, oneOf, parseFlags, requireStr, str } from './args.js';

const HELP = `usage: loraserve render --model DIR --prompt TEXT --out FILE.png [options]

  --model DIR            diffusers ONNX pipeline folder
  --prompt TEXT          positive prompt
  --negative-prompt TEXT negative prompt (default empty)
  --steps N              sampling steps (default 20)
  --cfg-scale X          classifier-free guidance scale (default 7)
  --sampler NAME         euler, euler_a, dpmpp_2m, ddim, lms, ... or A1111 names ("Euler a", "DPM++ 2M Karras")
  --scheduler NAME       automatic (= discrete, as diffusers), discrete, uniform, karras, exponential, ...
  --seed N               seed; -1 picks one (default -1); image k of a batch uses seed+k
  --rng cpu|nv           torch CPU generator (default) or A1111's "NV" philox generator
  --width W --height H   image size (default 512x512; multiples of the model's size step)
  --batch-size N         images per run (default 1)
  --out FILE.png         output file; a batch writes FILE-0.png, FILE-1.png, ...
  --latents FILE.npy     initial noise [batch,4,h,w], unscaled (diffusers' latents=)
  --save-latents FILE.npy  write the final latents (before the VAE scaling factor is divided out)
  --lora NAME:WEIGHT     apply a LoRA from the LoRA folder (repeatable; NAME alone = weight 1;
                         NAME:TE:UNET sets separate text-encoder and UNet weights)
  --lora-dir DIR         LoRA folder (default ./loras); prompts may also name LoRAs as <lora:NAME:WEIGHT>
  --embeddings-dir DIR   textual-inversion embeddings (default models/embeddings)
${LORA_MERGE_HELP}
  --clip-skip N          A1111's "Clip skip" (1 = last layer, default)
  --device cpu|cuda|webgpu  execution provider (default cpu; falls back to cpu with a warning)
  --device-id N          CUDA device ordinal
  --quiet                no progress lines
`;

export async function renderCommand(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(HELP);
    return 0;
  }
  const { flags } = parseFlags(argv, {
    model: { type: 'string' },
    prompt: { type: 'string' },
    'negative-prompt': { type: 'string' },
    steps: { type: 'string' },
    'cfg-scale': { type: 'string' },
    sampler: { type: 'string' },
    scheduler: { type: 'string' },
    seed: { type: 'string' },
    rng: { type: 'string' },
    width: { type: 'string' },
    height: { type: 'string' },
    'batch-size': { type: 'string' },
    out: { type: 'string' },
    latents: { type: 'string' },
    'save-latents': { type: 'string' },
    device: { type: 'string' },
    'device-id': { type: 'string' },
    quiet: { type: 'boolean' },
    lora: { type: 'string', multiple: true },
    'lora-dir': { type: 'string' },
    ...LORA_MERGE_OPTIONS,
    'embeddings-dir': { type: 'string' },
    'clip-skip': { type: 'string' },
  });
  const embeddingsDir = resolve(str(flags, 'embeddings-dir', join('models', 'embeddings'))!);
  if (flags['embeddings-dir'] !== undefined && !existsSync(embeddingsDir)) throw new LoraserveError('INVALID_ARGUMENT', `--embeddings-dir: folder ${embeddingsDir} does not exist`);
  const loras = ((flags.lora as string[] | undefined) ?? []).map(parseLoraFlag);
  const loraDir = resolve(str(flags, 'lora-dir', 'loras')!);
  if (flags['lora-dir'] !== undefined && !existsSync(loraDir)) throw new LoraserveError('INVALID_ARGUMENT', `--lora-dir: folder ${loraDir} does not exist`);

  const modelDir = resolve(requireStr(flags, 'model'));
  const out = resolve(requireStr(flags, 'out'));
  if (extname(out).toLowerCase() !== '.png') throw new LoraserveError('INVALID_ARGUMENT', `--out must name a .png file (got ${out})`);
  checkWritableDir(out, 'out');
  const saveLatents = str(flags, 'save-latents');
  if (saveLatents) checkWritableDir(resolve(saveLatents), 'save-latents');
  const width = num(flags, 'width', 512, { integer: true, min: 8, max: 8192 });
  const height = num(flags, 'height', 512, { integer: true, min: 8, max: 8192 });
  for (const [k, v] of [['width', width], ['height', height]] as const) {
    if (v % 8 !== 0) throw new LoraserveError('INVALID_SIZE', `--${k} ${v} is not divisible by 8`);
  }
  const batchSize = num(flags, 'batch-size', 1, { integer: true, min: 1, max: 64 });
  const seedIn = parseSeed(str(flags, 'seed', '-1')!.trim() === '' ? -1 : Number(str(flags, 'seed', '-1')));
  const deviceName = str(flags, 'device', 'cpu')!;
  const kind = parseDeviceKind(deviceName);
  if (!kind) throw new LoraserveError('INVALID_ARGUMENT', `--device must be cpu, cuda or webgpu (got '${deviceName}')`);
  const device: DeviceConfig = { kind, deviceId: num(flags, 'device-id', 0, { integer: true, min: 0 }) };

  let initialNoise: Float32Array | undefined;
  const latentsPath = str(flags, 'latents');
  if (latentsPath) {
    let npy;
    try {
      npy = readNpy(readFileSync(latentsPath));
    } catch (e) {
      throw new LoraserveError('INVALID_FILE', `--latents ${latentsPath}: ${(e as Error).message}`);
    }
    const dims = npy.shape;
    if (dims.length !== 4 || dims[0] !== batchSize || dims[2] * 8 !== height || dims[3] * 8 !== width) {
      throw new LoraserveError('INVALID_ARGUMENT', `--latents ${latentsPath} has shape [${dims.join(',')}]; this render needs [${batchSize},4,${height / 8},${width / 8}]`);
    }
    initialNoise = Float32Array.from(npy.data as ArrayLike<number>);
  }

  const request: RenderRequest = {
    prompt: str(flags, 'prompt', '')!,
    negativePrompt: str(flags, 'negative-prompt', '')!,
    steps: num(flags, 'steps', 20, { integer: true, min: 1, max: 1000 }),
    cfgScale: num(flags, 'cfg-scale', 7, { min: 0, max: 100 }),
    sampler: str(flags, 'sampler', 'euler_a')!,
    scheduler: str(flags, 'scheduler', 'automatic')!,
    flavor: 'native',
    seed: seedIn === -1 ? randomSeed() : seedIn,
    rng: oneOf(flags, 'rng', ['cpu', 'nv'] as const, 'cpu'),
    width,
    height,
    batchSize,
    initialNoise,
    returnLatents: Boolean(saveLatents),
    loras,
    clipSkip: num(flags, 'clip-skip', 1, { integer: true, min: 1, max: 48 }),
  };

  const quiet = Boolean(flags.quiet);
  const logger = consoleLogger(quiet ? 'warn' : 'info');
  const host = await RenderHost.start(modelDir, device, logger, { loraDir: existsSync(loraDir) ? loraDir : undefined, embeddingsDir: existsSync(embeddingsDir) ? embeddingsDir : undefined, loraMerge: loraMergeFlags(flags) });
  try {
    const result = await host.render(request, {
      onProgress: quiet ? undefined : (p) => process.stderr.write(`step ${p.step}/${p.total}  eta ${(p.etaMs / 1000).toFixed(1)}s\n`),
    });
    const files: Array<{ path: string; data: Uint8Array }> = result.images.map((img, k) => ({
      path: batchSize === 1 ? out : out.replace(/\.png$/i, `-${k}.png`),
      data: img.png,
    }));
    if (saveLatents && result.latents) files.push({ path: resolve(saveLatents), data: writeNpy(result.latents.data, result.latents.dims) });
    writeFilesAtomic(files);
    for (const f of files) process.stdout.write(`${f.path}\n`);
    if (!quiet) {
      const t = result.timings;
      logger.info({ seeds: result.seeds, totalMs: Math.round(t.totalMs), ortMs: Math.round(t.ortMs), unetCalls: t.unetCalls, loraMs: Math.round(t.loraMs), mergedUnet: t.mergedUnet }, 'render done');
    }
    return 0;
  } finally {
    await host.close();
  }
}

function checkWritableDir(file: string, flag: string): void {
  const dir = dirname(file);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new LoraserveError('INVALID_ARGUMENT', `--${flag}: folder ${dir} does not exist`);
}

/** `name`, `name:weight` or `name:te:unet` (numbers may be negative or > 1). */
function parseLoraFlag(v: string): LoraSpec {
  const parts = v.split(':');
  const name = parts[0];
  const nums = parts.slice(1).map((p) => Number(p));
  if (!name || parts.length > 3 || nums.some((n, i) => parts[i + 1].trim() === '' || !Number.isFinite(n))) {
    throw new LoraserveError('INVALID_ARGUMENT', `--lora must be NAME, NAME:WEIGHT or NAME:TE:UNET (got '${v}')`);
  }
  if (nums.length === 2) return { name, weight: nums[1], te: nums[0], unet: nums[1] };
  return { name, weight: nums.length ? nums[0] : 1 };
}
