/** `loraserve synth`: write a synthetic random-weight SD pipeline (and LoRAs) in the diffusers ONNX layout. */
import { resolve } from 'node:path';
import { LoraserveError } from '../core/errors.js';
import { PRESETS, synthesize, type PresetName } from '../synth/index.js';
import { num, parseFlags, requireStr } from './args.js';

const HELP = `usage: loraserve synth --preset tiny|sd15|sd2|tiny-sd2 --out DIR [--seed N] [--loras N] [--lora-rank R] [--force]

  --preset NAME   tiny (tests, 64x64 in well under a second per step), sd15 (real SD1.5 sizes, ~4 GB),
                  sd2 (linear projections, v-prediction), tiny-sd2
  --out DIR       output folder (refused if it exists, unless --force)
  --seed N        weight seed (default 0); same preset + seed = same bytes
  --loras N       LoRA files to write into DIR/loras (default 5: kohya, LoCon, PEFT; named catears, idol, stage, ...)
  --lora-rank R   rank of every generated LoRA (default: the preset's)
`;

export async function synthCommand(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(HELP);
    return 0;
  }
  const { flags } = parseFlags(argv, {
    preset: { type: 'string' },
    out: { type: 'string' },
    seed: { type: 'string' },
    loras: { type: 'string' },
    'lora-rank': { type: 'string' },
    force: { type: 'boolean' },
  });
  const preset = requireStr(flags, 'preset');
  if (!(preset in PRESETS)) throw new LoraserveError('INVALID_ARGUMENT', `--preset must be one of ${Object.keys(PRESETS).join(', ')} (got '${preset}')`);
  const t0 = performance.now();
  const r = await synthesize({
    preset: preset as PresetName,
    outDir: resolve(requireStr(flags, 'out')),
    seed: num(flags, 'seed', 0, { integer: true, min: 0 }),
    loras: num(flags, 'loras', 5, { integer: true, min: 0, max: 100 }),
    loraRank: flags['lora-rank'] === undefined ? undefined : num(flags, 'lora-rank', 4, { integer: true, min: 1, max: 1024 }),
    overwrite: Boolean(flags.force),
    onProgress: (msg) => process.stderr.write(`${msg}\n`),
  });
  process.stderr.write(`wrote ${r.outDir} (${(r.bytes / 2 ** 20).toFixed(1)} MiB, ${r.loras.length} LoRAs) in ${((performance.now() - t0) / 1000).toFixed(1)} s — random weights, for tests and benchmarks\n`);
  process.stdout.write(`${r.outDir}\n`);
  return 0;
}
