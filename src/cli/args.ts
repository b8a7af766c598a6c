/** Flag parsing for the CLI: node's parseArgs, strict, with typed number/enum readers and one error style. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { DEFAULT_LORA_MERGE_AFTER, type LoraMergeConfig } from '../core/config.js';
import { LoraserveError } from '../core/errors.js';

export type Flags = Record<string, string | boolean | string[] | undefined>;

export function parseFlags(argv: string[], options: NonNullable<ParseArgsConfig['options']>, allowPositionals = false): { flags: Flags; positionals: string[] } {
  try {
    const r = parseArgs({ args: argv, options, strict: true, allowPositionals });
    return { flags: r.values as Flags, positionals: r.positionals };
  } catch (e) {
    throw new LoraserveError('INVALID_ARGUMENT', (e as Error).message.replace(/\. To specify a positional argument.*$/s, ''));
  }
}

export function str(flags: Flags, name: string, fallback?: string): string | undefined {
  const v = flags[name];
  return typeof v === 'string' ? v : fallback;
}

export function requireStr(flags: Flags, name: string): string {
  const v = str(flags, name);
  if (v === undefined || v === '') throw new LoraserveError('INVALID_ARGUMENT', `--${name} is required`);
  return v;
}

export function num(flags: Flags, name: string, fallback: number, opts: { integer?: boolean; min?: number; max?: number } = {}): number {
  const raw = flags[name];
  if (raw === undefined) return fallback;
  const s = String(raw).trim();
  const v = Number(s);
  if (s === '' || !Number.isFinite(v)) throw new LoraserveError('INVALID_ARGUMENT', `--${name} must be a number (got '${raw}')`);
  if (opts.integer && !Number.isInteger(v)) throw new LoraserveError('INVALID_ARGUMENT', `--${name} must be an integer (got '${raw}')`);
  if (opts.min !== undefined && v < opts.min) throw new LoraserveError('INVALID_ARGUMENT', `--${name} must be >= ${opts.min} (got ${v})`);
  if (opts.max !== undefined && v > opts.max) throw new LoraserveError('INVALID_ARGUMENT', `--${name} must be <= ${opts.max} (got ${v})`);
  return v;
}

export function oneOf<T extends string>(flags: Flags, name: string, allowed: readonly T[], fallback: T): T {
  const v = str(flags, name);
  if (v === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(v)) throw new LoraserveError('INVALID_ARGUMENT', `--${name} must be one of ${allowed.join(', ')} (got '${v}')`);
  return v as T;
}

/**
 * `--lora-merge-after N|off` and `--lora-merge-mb N` (serve, render, batch): when a hot LoRA set gets a
 * merged-weights UNet (src/engine/merged-unets.ts). Undefined when neither flag is given (the defaults).
 */
export function loraMergeFlags(flags: Flags): LoraMergeConfig | undefined {
  const after = str(flags, 'lora-merge-after');
  const mb = flags['lora-merge-mb'];
  if (after === undefined && mb === undefined) return undefined;
  const parsed = after === undefined ? DEFAULT_LORA_MERGE_AFTER : after.trim() === 'off' ? 'off' : num(flags, 'lora-merge-after', DEFAULT_LORA_MERGE_AFTER, { integer: true, min: 0 });
  return { after: parsed, ...(mb !== undefined ? { maxBytes: num(flags, 'lora-merge-mb', 0, { min: 0 }) * 2 ** 20 } : {}) };
}

export const LORA_MERGE_OPTIONS = {
  'lora-merge-after': { type: 'string' },
  'lora-merge-mb': { type: 'string' },
} as const;

export const LORA_MERGE_HELP = `  --lora-merge-after N   a LoRA set (same LoRAs and weights) rendered N times gets a UNet with the LoRAs
                         merged into its weights: its steps then cost what the plain model's cost, the
                         render that builds it waits for the build; 'off' = always the branched graph
                         (LORA_MERGE_AFTER; default ${DEFAULT_LORA_MERGE_AFTER}; also applies to renders without LoRAs)
  --lora-merge-mb N      memory each render worker's merged UNets may take together, each counted at the
                         UNet's size (LORA_MERGE_MB; default a quarter of the RAM)`;
