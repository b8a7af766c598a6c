/** Flag parsing for the CLI: node's parseArgs, strict, with typed number/enum readers and one error style. */
import { parseArgs, type ParseArgsConfig } from 'node:util';
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
