/**
 * `loraserve batch FILE`: every request of a prompt file (JSONL, CSV or A1111 prompts-from-file lines), times the
 * cartesian product of `--sweep` values, rendered in this process or on a server into an output folder with
 * deterministic names, a manifest that makes a rerun resume, and a contact sheet per prompt line.
 *
 * The pieces: batch-input (formats) → batch-plan (items, names, defaults) with batch-sweep (sweeps) →
 * batch-manifest (seeds for -1, what is already done) → batch-runner (in-process or --server, the loop) with
 * batch-progress (bar or lines) → batch-sheet (contact sheets).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { parseDeviceKind, type DeviceConfig } from '../core/config.js';
import { LoraserveError, toLoraserveError } from '../core/errors.js';
import { consoleLogger } from '../core/logger.js';
import { NATIVE_FIELDS } from '../engine/native-request.js';
import { type Flags, LORA_MERGE_HELP, LORA_MERGE_OPTIONS, loraMergeFlags, num, parseFlags, str } from './args.js';
import { nativeFieldValue } from './batch-csv.js';
import { detectFormat, INPUT_FORMATS, type InputFormat, parseInput } from './batch-input.js';
import { Manifest } from './batch-manifest.js';
import { buildPlan, type Plan } from './batch-plan.js';
import { BatchProgress } from './batch-progress.js';
import { InProcessRenderer, type ItemRenderer, runItems, type RunOutcome, ServerRenderer } from './batch-runner.js';
import { sheetPages, writeSheets } from './batch-sheet.js';
import { checkSweeps, parseSweep, type Sweep } from './batch-sweep.js';

const HELP = `usage: loraserve batch FILE --out DIR (--model DIR | --server URL) [options]

input
  FILE                   JSONL (one request per line, the JSON fields of POST /v1/images), CSV with a header
                         row of those field names (loras as name:weight;name2:weight), or A1111 "prompts from
                         file" lines (--prompt "…" --negative_prompt "…" --steps 20 --seed 5 …; a plain line is
                         a prompt)
  --format F             jsonl, csv or a1111 (default: .jsonl/.ndjson and .csv by extension; otherwise JSONL
                         when the first line starts with '{', else a1111)
  --default FIELD=VALUE  value of FIELD for lines that leave it out (repeatable), e.g. --default steps=30
  --sweep KEY=V1,V2,...  render every line once per value (repeatable: the cartesian product of all sweeps).
                         KEY: lora.NAME (that LoRA's weight, added when the line lacks it), seed, cfg_scale,
                         steps, sampler, scheduler, width, height, clip_skip. A value with commas goes in
                         double quotes: --sweep 'sampler="DPM++ 2M Karras",Euler a'

rendering
  --model DIR            render in this process on a diffusers ONNX pipeline folder
  --lora-dir DIR         its LoRA folder (default ./loras)
${LORA_MERGE_HELP}
  --device cpu|cuda|webgpu  execution provider (default cpu); --device-id N
  --server URL           render on a loraserve server instead (POST URL/v1/images)
  --api-key KEY          the server's API key (default: $LORASERVE_API_KEY)
  --concurrency N        requests in flight on the server (default 1)

output
  --out DIR              one PNG per image (with infotext), manifest.jsonl, contact sheets. Run again to
                         resume: finished images (file present, sha256 as in the manifest) are skipped
  --no-sheets            no contact sheets (sheet-LINE[-Z].png: first sweep on X, second on Y, others per sheet)
  --dry-run              print the plan (file names and requests) and exit
  --quiet                only failures and the summary

exit status: 0 all rendered; 1 an item failed; 2 bad usage, or bad lines in FILE (the good ones still render);
130 interrupted (Ctrl-C finishes nothing half-way; run again to resume)
`;

interface Where {
  out?: string;
  model?: string;
  server?: string;
}

function parseDefaults(specs: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const spec of specs) {
    const eq = spec.indexOf('=');
    const field = eq > 0 ? spec.slice(0, eq).trim() : '';
    if (!(field in NATIVE_FIELDS) || field === 'prompt') {
      throw new LoraserveError('INVALID_ARGUMENT', `--default ${spec}: expected FIELD=VALUE with FIELD one of ${Object.keys(NATIVE_FIELDS).filter((f) => f !== 'prompt').join(', ')}`);
    }
    try {
      out[field] = nativeFieldValue(field, spec.slice(eq + 1), true);
    } catch (e) {
      throw new LoraserveError('INVALID_ARGUMENT', `--default ${spec}: ${(e as Error).message}`);
    }
  }
  return out;
}

function printPlan(plan: Plan, sheets: string[]): void {
  for (const it of plan.items) process.stdout.write(`${it.files.join(' ')}\t${JSON.stringify(it.body)}\n`);
  for (const s of sheets) process.stdout.write(`${s}\t(contact sheet)\n`);
}

export async function batchCommand(argv: string[]): Promise<number> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(HELP);
    return 0;
  }
  const { flags, positionals } = parseFlags(
    argv,
    {
      format: { type: 'string' },
      default: { type: 'string', multiple: true },
      sweep: { type: 'string', multiple: true },
      model: { type: 'string' },
      'lora-dir': { type: 'string' },
      ...LORA_MERGE_OPTIONS,
      device: { type: 'string' },
      'device-id': { type: 'string' },
      server: { type: 'string' },
      'api-key': { type: 'string' },
      concurrency: { type: 'string' },
      out: { type: 'string' },
      'no-sheets': { type: 'boolean' },
      'dry-run': { type: 'boolean' },
      quiet: { type: 'boolean' },
    },
    true,
  );
  if (positionals.length !== 1) throw new LoraserveError('INVALID_ARGUMENT', `expected one input FILE (got ${positionals.length}); see loraserve batch --help`);
  const file = resolve(positionals[0]);
  const dryRun = Boolean(flags['dry-run']);
  const quiet = Boolean(flags.quiet);
  const where: Where = { out: str(flags, 'out'), model: str(flags, 'model'), server: str(flags, 'server') };
  if (!dryRun) {
    if (!where.out) throw new LoraserveError('INVALID_ARGUMENT', '--out DIR is required');
    if (Boolean(where.model) === Boolean(where.server)) throw new LoraserveError('INVALID_ARGUMENT', 'give one of --model DIR (render here) or --server URL');
  }
  const concurrency = num(flags, 'concurrency', 1, { integer: true, min: 1, max: 64 });
  if (flags.concurrency !== undefined && !where.server) throw new LoraserveError('INVALID_ARGUMENT', '--concurrency applies to --server only (in-process renders one at a time)');

  const sweeps: Sweep[] = ((flags.sweep as string[] | undefined) ?? []).map(parseSweep);
  checkSweeps(sweeps);
  const defaults = parseDefaults((flags.default as string[] | undefined) ?? []);

  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new LoraserveError('INVALID_FILE', `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  const formatFlag = str(flags, 'format');
  if (formatFlag !== undefined && !(INPUT_FORMATS as readonly string[]).includes(formatFlag)) {
    throw new LoraserveError('INVALID_ARGUMENT', `--format must be one of ${INPUT_FORMATS.join(', ')} (got '${formatFlag}')`);
  }
  const format = (formatFlag as InputFormat | undefined) ?? detectFormat(file, text);
  const input = parseInput(text, format);
  const plan = buildPlan(input, sweeps, defaults);
  for (const w of input.warnings) process.stderr.write(`${positionals[0]}:${w.line}: warning: ${w.message}\n`);
  for (const e of plan.errors) process.stderr.write(`${positionals[0]}:${e.line}: ${e.message}\n`);
  const inputExit = plan.errors.length ? 2 : 0;
  if (plan.items.length === 0) {
    process.stderr.write(`loraserve batch: nothing to render in ${positionals[0]} (${format}: ${input.lines.length} line(s), ${plan.errors.length} bad)\n`);
    return 2;
  }
  const pages = flags['no-sheets'] ? [] : sheetPages(plan.groups, sweeps, plan.lineDigits);
  if (dryRun) {
    printPlan(plan, pages.map((p) => p.file));
    return inputExit;
  }

  const startRenderer = rendererFactory(flags, where, concurrency, quiet);
  const outDir = resolve(where.out!);
  if (existsSync(outDir) && !statSync(outDir).isDirectory()) throw new LoraserveError('INVALID_ARGUMENT', `--out ${outDir} is not a folder`);
  mkdirSync(outDir, { recursive: true });
  removeStaleTemps(outDir);
  const manifest = Manifest.read(outDir);
  if (manifest.badLines) process.stderr.write(`loraserve batch: ${manifest.badLines} unreadable line(s) in ${manifest.path} ignored\n`);
  const picked = manifest.resolveSeeds(plan.items);
  const pending = plan.items.filter((it) => !manifest.isFinished(it, outDir));
  const skipped = plan.items.length - pending.length;

  const progress = new BatchProgress({ total: plan.items.length, skipped, concurrency: where.server ? concurrency : 1, tty: Boolean(process.stderr.isTTY), columns: process.stderr.columns, quiet });
  const ac = new AbortController();
  let interrupts = 0;
  const onSignal = () => {
    if (++interrupts > 1) process.exit(130);
    ac.abort();
    progress.note('interrupted: stopping after the render in progress is cancelled (again to quit at once)');
  };
  let renderer: ItemRenderer | undefined;
  let outcome: RunOutcome = { done: [], failed: [], notRun: [] };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    manifest.openForAppend();
    if (Object.keys(picked).length) manifest.append({ status: 'seeded', seeds: picked, at: new Date().toISOString() });
    if (pending.length) {
      renderer = await startRenderer();
      if (!quiet) progress.note(`batch: ${plan.items.length} item(s) from ${positionals[0]} (${format}), ${skipped} already done; rendering on ${renderer.description}`);
      progress.begin();
      outcome = await runItems(pending, renderer, manifest, outDir, progress, ac.signal);
      progress.end();
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    manifest.close();
    await renderer?.close();
  }

  let sheets: string[] = [];
  let sheetsFailed = false;
  if (!ac.signal.aborted) {
    try {
      sheets = await writeSheets(pages, sweeps, outDir);
    } catch (e) {
      const err = toLoraserveError(e);
      process.stderr.write(`loraserve batch: contact sheets failed: ${err.message} [${err.code}]\n`);
      sheetsFailed = true;
    }
  }
  const summary = [
    `batch: ${plan.items.length} item(s): ${outcome.done.length} rendered, ${skipped} already done, ${outcome.failed.length} failed` +
      (outcome.notRun.length ? `, ${outcome.notRun.length} not run (interrupted)` : '') +
      (sheets.length ? `; ${sheets.length} contact sheet(s)` : '') +
      (plan.errors.length ? `; ${plan.errors.length} bad input line(s) skipped` : '') +
      ` → ${outDir}`,
    ...outcome.failed.map((f) => `  FAILED ${f.item.key} (line ${f.item.line}): ${f.error.message} [${f.error.code}]`),
  ];
  process.stderr.write(summary.join('\n') + '\n');
  if (ac.signal.aborted) return 130;
  if (inputExit) return inputExit;
  return outcome.failed.length || sheetsFailed ? 1 : 0;
}

/** Checks the rendering flags now; the renderer itself starts only when something is left to render. */
function rendererFactory(flags: Flags, where: Where, concurrency: number, quiet: boolean): () => Promise<ItemRenderer> {
  if (where.server) {
    const apiKey = str(flags, 'api-key') ?? (process.env.LORASERVE_API_KEY || undefined);
    const server = where.server;
    if (!/^https?:\/\//i.test(server)) throw new LoraserveError('INVALID_ARGUMENT', `--server must be an http:// or https:// URL (got '${server}')`);
    return async () => {
      const r = new ServerRenderer(server, concurrency, apiKey);
      await r.check();
      return r;
    };
  }
  const loraDirFlag = str(flags, 'lora-dir');
  const loraDir = resolve(loraDirFlag ?? 'loras');
  if (loraDirFlag !== undefined && !existsSync(loraDir)) throw new LoraserveError('INVALID_ARGUMENT', `--lora-dir: folder ${loraDir} does not exist`);
  const deviceName = str(flags, 'device', 'cpu')!;
  const kind = parseDeviceKind(deviceName);
  if (!kind) throw new LoraserveError('INVALID_ARGUMENT', `--device must be cpu, cuda or webgpu (got '${deviceName}')`);
  const device: DeviceConfig = { kind, deviceId: num(flags, 'device-id', 0, { integer: true, min: 0 }) };
  const modelDir = resolve(where.model!);
  const loraMerge = loraMergeFlags(flags);
  return () => InProcessRenderer.start(modelDir, device, consoleLogger(quiet ? 'error' : 'warn'), { loraDir: existsSync(loraDir) ? loraDir : undefined, loraMerge });
}

/**
 * A run killed between writing a temporary file and renaming it (src/core/fs-atomic.ts) leaves
 * `.NAME.PID.HEX.tmp` behind; those of processes that no longer run are removed.
 */
function removeStaleTemps(dir: string): void {
  for (const name of readdirSync(dir)) {
    const m = /^\..+\.(\d+)\.[0-9a-f]{8}\.tmp$/.exec(name);
    if (!m || Number(m[1]) === process.pid || processRuns(Number(m[1]))) continue;
    rmSync(join(dir, name), { force: true });
  }
}

function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}
