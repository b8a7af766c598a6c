/**
 * The input file of `loraserve batch`, in any of its three formats, → native request bodies with their line
 * numbers. Parsing never stops at a bad line: each one becomes an error naming its line, the rest go on.
 *
 *  - JSONL: one JSON object per line with the fields of `POST /v1/images` (blank lines skipped);
 *  - CSV: a header row of native field names, one request per record (batch-csv.ts);
 *  - A1111 "prompts from file" lines (batch-a1111.ts).
 */
import { extname } from 'node:path';
import { LoraserveError } from '../core/errors.js';
import { parseA1111Line } from './batch-a1111.js';
import { parseCsv } from './batch-csv.js';

export type InputFormat = 'jsonl' | 'csv' | 'a1111';
export const INPUT_FORMATS: readonly InputFormat[] = ['jsonl', 'csv', 'a1111'];

export interface InputLine {
  /** 1-based line number in the file (for CSV: where the record starts). */
  line: number;
  /** Native fields, not yet checked (the plan checks them with the --set defaults applied). */
  body: Record<string, unknown>;
  /** Renders of this line (A1111's n_iter); 1 elsewhere. */
  nIter: number;
}

export interface LineNote {
  line: number;
  message: string;
}

export interface ParsedInput {
  format: InputFormat;
  lines: InputLine[];
  errors: LineNote[];
  warnings: LineNote[];
}

/** By extension (.jsonl/.ndjson, .csv); otherwise JSONL when the first non-blank line starts with '{', else A1111. */
export function detectFormat(path: string, text: string): InputFormat {
  const ext = extname(path).toLowerCase();
  if (ext === '.jsonl' || ext === '.ndjson') return 'jsonl';
  if (ext === '.csv') return 'csv';
  const first = text.replace(/^\ufeff/, '').split('\n').find((l) => l.trim() !== '');
  return first?.trimStart().startsWith('{') ? 'jsonl' : 'a1111';
}

function splitLines(text: string): string[] {
  return text.replace(/^\ufeff/, '').split(/\r?\n/);
}

function parseJsonl(text: string): ParsedInput {
  const out: ParsedInput = { format: 'jsonl', lines: [], errors: [], warnings: [] };
  splitLines(text).forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === '') return;
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch (e) {
      out.errors.push({ line, message: `not valid JSON: ${(e as Error).message}` });
      return;
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) {
      out.errors.push({ line, message: 'each line must be a JSON object with the fields of POST /v1/images' });
      return;
    }
    out.lines.push({ line, body: v as Record<string, unknown>, nIter: 1 });
  });
  return out;
}

function parseA1111(text: string): ParsedInput {
  const out: ParsedInput = { format: 'a1111', lines: [], errors: [], warnings: [] };
  splitLines(text).forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === '') return;
    try {
      const p = parseA1111Line(raw);
      out.lines.push({ line, body: p.body, nIter: p.nIter });
      for (const w of p.warnings) out.warnings.push({ line, message: w });
    } catch (e) {
      out.errors.push({ line, message: (e as Error).message });
    }
  });
  return out;
}

export function parseInput(text: string, format: InputFormat): ParsedInput {
  switch (format) {
    case 'jsonl':
      return parseJsonl(text);
    case 'a1111':
      return parseA1111(text);
    case 'csv': {
      const { rows, errors } = parseCsv(text);
      return { format, lines: rows.map((r) => ({ line: r.line, body: r.body, nIter: 1 })), errors, warnings: [] };
    }
    default:
      throw new LoraserveError('INVALID_ARGUMENT', `unknown input format '${String(format)}' (${INPUT_FORMATS.join(', ')})`);
  }
}
