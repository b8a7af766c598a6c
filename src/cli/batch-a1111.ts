/**
 * A1111's "Prompts from file or textbox" lines: `--prompt "…" --negative_prompt "…" --steps 20 --seed 5 …`, or a
 * plain line that is just a prompt.
 *
 * Ports AUTOMATIC1111/stable-diffusion-webui `scripts/prompts_from_file.py` (v1.7+): `cmdargs` (Python's
 * `shlex.split`, then `--tag value` pairs; `--prompt`/`--negative_prompt` take every following token up to the
 * next one that starts with `--`, joined by single spaces), the `prompt_tags` table with its int/float/bool
 * converters, and `run`'s line handling (lines stripped, empty ones dropped, a line with no `--` is a prompt).
 * `splitShellWords` ports `shlex.split(line)` (posix mode, whitespace_split, no comments) from CPython's
 * Lib/shlex.py `read_token`.
 *
 * Where A1111 differs on purpose: A1111 renders a line that fails to parse as a plain prompt (after printing
 * the error); here a line that starts with `--` and fails is reported with its line number and not rendered,
 * since rendering `--stpes 20 …` as a prompt is never what was meant. A line that does not start with `--`
 * is a prompt, as in A1111 (where it fails `cmdargs` and falls back to being one).
 */
import { LoraserveError } from '../core/errors.js';

/** Python's `shlex.split(s)` (posix, whitespace_split, comments off). Throws like Python on bad quoting. */
export function splitShellWords(s: string): string[] {
  const WHITESPACE = ' \t\r\n';
  const QUOTES = `'"`;
  const ESCAPED_QUOTES = '"'; // inside "…" a backslash escapes only " and \
  const out: string[] = [];
  let state: string = ' '; // ' ' between words, 'a' in a word, a quote char, or '\\' after a backslash
  let escapedState = ' ';
  let token = '';
  let quoted = false;
  const emit = () => {
    if (token !== '' || quoted) out.push(token);
    token = '';
    quoted = false;
  };
  for (let i = 0; i <= s.length; i++) {
    const ch = i < s.length ? s[i] : ''; // '' = end of input, as Python's read(1)
    if (state === ' ' || state === 'a') {
      if (ch === '') {
        emit();
        break;
      }
      if (WHITESPACE.includes(ch)) {
        if (state === 'a') emit();
        state = ' ';
      } else if (ch === '\\') {
        escapedState = 'a';
        state = '\\';
      } else if (QUOTES.includes(ch)) {
        state = ch;
      } else {
        token += ch;
        state = 'a';
      }
    } else if (QUOTES.includes(state)) {
      quoted = true;
      if (ch === '') throw new LoraserveError('INVALID_ARGUMENT', 'No closing quotation');
      if (ch === state) state = 'a';
      else if (ch === '\\' && ESCAPED_QUOTES.includes(state)) {
        escapedState = state;
        state = '\\';
      } else token += ch;
    } else {
      // after a backslash
      if (ch === '') throw new LoraserveError('INVALID_ARGUMENT', 'No escaped character');
      // In posix shells only the quote itself or the escape character may be escaped within quotes.
      if (QUOTES.includes(escapedState) && ch !== '\\' && ch !== escapedState) token += '\\';
      token += ch;
      state = escapedState;
    }
  }
  return out;
}

type TagKind = 'string' | 'int' | 'float' | 'bool' | 'model';

/** `prompt_tags` of prompts_from_file.py. */
export const A1111_PROMPT_TAGS: Readonly<Record<string, TagKind>> = {
  sd_model: 'model',
  outpath_samples: 'string',
  outpath_grids: 'string',
  prompt_for_display: 'string',
  prompt: 'string',
  negative_prompt: 'string',
  styles: 'string',
  seed: 'int',
  subseed_strength: 'float',
  subseed: 'int',
  seed_resize_from_h: 'int',
  seed_resize_from_w: 'int',
  sampler_index: 'int',
  sampler_name: 'string',
  batch_size: 'int',
  n_iter: 'int',
  steps: 'int',
  cfg_scale: 'float',
  width: 'int',
  height: 'int',
  restore_faces: 'bool',
  tiling: 'bool',
  do_not_save_samples: 'bool',
  do_not_save_grid: 'bool',
};

export type A1111Value = string | number | boolean;

/** Python's int(str): optional sign, ASCII digits with single underscores between them, blanks around. */
function pyInt(s: string, tag: string): number {
  if (!/^\s*[+-]?\d+(?:_\d+)*\s*$/.test(s)) throw new LoraserveError('INVALID_ARGUMENT', `--${tag}: invalid literal for int() with base 10: '${s}'`);
  return Number(s.replace(/_/g, ''));
}

/** Python's float(str) for finite values (inf and nan parse in Python but are refused here). */
function pyFloat(s: string, tag: string): number {
  const t = s.trim();
  const ok = /^[+-]?(?:\d+(?:_\d+)*(?:\.(?:\d+(?:_\d+)*)?)?|\.\d+(?:_\d+)*)(?:[eE][+-]?\d+(?:_\d+)*)?$/.test(t);
  if (!ok) {
    if (/^[+-]?(inf|infinity|nan)$/i.test(t)) throw new LoraserveError('INVALID_ARGUMENT', `--${tag}: '${s}' is not a finite number`);
    throw new LoraserveError('INVALID_ARGUMENT', `--${tag}: could not convert string to float: '${s}'`);
  }
  return Number(t.replace(/_/g, ''));
}

/**
 * `cmdargs(line)`: the tags of one command-line style line with their converted values. `sampler_name` stays
 * the name as written (A1111 maps it through its sampler table; ours resolves A1111 names at render time).
 */
export function a1111CommandArgs(line: string): Record<string, A1111Value> {
  const args = splitShellWords(line);
  const res: Record<string, A1111Value> = {};
  let pos = 0;
  while (pos < args.length) {
    const arg = args[pos];
    if (!arg.startsWith('--')) throw new LoraserveError('INVALID_ARGUMENT', `must start with "--": ${arg}`);
    if (pos + 1 >= args.length) throw new LoraserveError('INVALID_ARGUMENT', `missing argument for command line option ${arg}`);
    const tag = arg.slice(2);
    if (tag === 'prompt' || tag === 'negative_prompt') {
      pos += 1;
      let prompt = args[pos];
      pos += 1;
      while (pos < args.length && !args[pos].startsWith('--')) prompt += ' ' + args[pos++];
      res[tag] = prompt;
      continue;
    }
    const kind = A1111_PROMPT_TAGS[tag];
    if (!kind) throw new LoraserveError('INVALID_ARGUMENT', `unknown commandline option: ${arg}`);
    const val = args[pos + 1];
    res[tag] = kind === 'int' ? pyInt(val, tag) : kind === 'float' ? pyFloat(val, tag) : kind === 'bool' ? val === 'true' : val;
    pos += 2;
  }
  return res;
}

/** A1111 tags that map onto a native field of the same meaning. */
const NATIVE_OF: Readonly<Record<string, string>> = {
  prompt: 'prompt',
  negative_prompt: 'negative_prompt',
  seed: 'seed',
  sampler_name: 'sampler',
  batch_size: 'batch_size',
  steps: 'steps',
  cfg_scale: 'cfg_scale',
  width: 'width',
  height: 'height',
};

/** Tags whose value does not change the image here (where to save, what to show); dropped without a word. */
const QUIETLY_DROPPED = new Set(['outpath_samples', 'outpath_grids', 'prompt_for_display', 'do_not_save_samples', 'do_not_save_grid']);

export interface A1111Line {
  /** Native fields (always `flavor: 'a1111'`, so schedules and names behave as in A1111). */
  body: Record<string, unknown>;
  /** A1111's n_iter: how many batches the line renders (default 1). */
  nIter: number;
  /** Tags that loraserve does not support and ignored. */
  warnings: string[];
}

/** One stripped, non-empty line of a prompts file → native fields. Throws INVALID_ARGUMENT on a bad line. */
export function parseA1111Line(line: string): A1111Line {
  const text = line.trim();
  if (!text.startsWith('--')) return { body: { prompt: text, flavor: 'a1111' }, nIter: 1, warnings: [] };
  const args = a1111CommandArgs(text);
  const body: Record<string, unknown> = { flavor: 'a1111' };
  const warnings: string[] = [];
  let nIter = 1;
  for (const [tag, v] of Object.entries(args)) {
    if (NATIVE_OF[tag]) body[NATIVE_OF[tag]] = v;
    else if (tag === 'n_iter') {
      if (typeof v !== 'number' || v < 1) throw new LoraserveError('INVALID_ARGUMENT', `--n_iter must be at least 1 (got ${String(v)})`);
      nIter = v;
    } else if (!QUIETLY_DROPPED.has(tag)) {
      warnings.push(
        tag === 'sd_model'
          ? `--sd_model ignored: a batch renders on the one model it was given`
          : `--${tag} is not supported by loraserve and was ignored`,
      );
    }
  }
  // A1111 leaves p.prompt unchanged when a line sets only other tags; our requests need one.
  if (body.prompt === undefined) body.prompt = '';
  return { body, nIter, warnings };
}
