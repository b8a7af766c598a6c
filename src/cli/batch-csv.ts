/**
 * CSV input for `loraserve batch`: RFC 4180 records (comma-separated, `"…"` quoting with `""` for a quote, line
 * breaks allowed inside quotes, LF or CRLF) with a header row naming native fields. Cells become typed values
 * through NATIVE_FIELDS; an empty cell leaves its field out. The `loras` cell is `name:weight;name2:weight`
 * (`name` alone = weight 1, `name:te:unet` = separate strengths) or a JSON array as in JSONL.
 */
import { LoraserveError } from '../core/errors.js';
import { NATIVE_FIELDS, type NativeLora } from '../engine/native-request.js';

export interface CsvRecord {
  /** 1-based line on which the record starts. */
  line: number;
  cells: string[];
  /** Which cells were quoted (a quoted cell keeps its blanks). */
  quoted: boolean[];
}

export interface CsvError {
  line: number;
  message: string;
}

/** Splits text into records. A quote left open at the end is one error at the line where its record began. */
export function readCsvRecords(text: string): { records: CsvRecord[]; errors: CsvError[] } {
  const records: CsvRecord[] = [];
  const errors: CsvError[] = [];
  let line = 1;
  let i = text.charCodeAt(0) === 0xfeff ? 1 : 0;
  while (i < text.length) {
    const start = line;
    const cells: string[] = [];
    const quoted: boolean[] = [];
    let cell = '';
    let isQuoted = false;
    let inQuotes = false;
    let endOfRecord = false;
    while (i < text.length && !endOfRecord) {
      const ch = text[i];
      if (inQuotes) {
        if (ch === '"') {
          if (text[i + 1] === '"') {
            cell += '"';
            i += 2;
            continue;
          }
          inQuotes = false;
        } else {
          if (ch === '\n') line++;
          cell += ch;
        }
        i++;
        continue;
      }
      if (ch === '"' && cell.trim() === '' && !isQuoted) {
        // A quote opens a quoted cell only at its start (blanks before it are dropped).
        cell = '';
        isQuoted = true;
        inQuotes = true;
      } else if (ch === ',') {
        cells.push(cell);
        quoted.push(isQuoted);
        cell = '';
        isQuoted = false;
      } else if (ch === '\n' || ch === '\r') {
        if (ch === '\r' && text[i + 1] === '\n') i++;
        line++;
        endOfRecord = true;
      } else {
        // Text after a closing quote, or a stray quote in an unquoted cell, is kept as written.
        cell += ch;
      }
      i++;
    }
    if (inQuotes) {
      errors.push({ line: start, message: 'a quoted cell is not closed (missing ")' });
      break;
    }
    cells.push(cell);
    quoted.push(isQuoted);
    const blank = cells.length === 1 && !isQuoted && cell.trim() === '';
    if (!blank) records.push({ line: start, cells, quoted });
  }
  return { records, errors };
}

/** `name:weight;name2:weight` (also `name` and `name:te:unet`), or a JSON array of {name, weight, …}. */
export function parseLoraList(cell: string): NativeLora[] {
  const s = cell.trim();
  if (s.startsWith('[')) {
    try {
      return JSON.parse(s) as NativeLora[];
    } catch (e) {
      throw new LoraserveError('INVALID_ARGUMENT', `loras: not valid JSON (${(e as Error).message})`);
    }
  }
  return s
    .split(';')
    .map((p) => p.trim())
    .filter((p) => p !== '')
    .map((p) => {
      const parts = p.split(':').map((x) => x.trim());
      const nums = parts.slice(1).map(Number);
      if (!parts[0] || parts.length > 3 || parts.slice(1).some((x, k) => x === '' || !Number.isFinite(nums[k]))) {
        throw new LoraserveError('INVALID_ARGUMENT', `loras: '${p}' is not NAME, NAME:WEIGHT or NAME:TE:UNET`);
      }
      if (nums.length === 2) return { name: parts[0], weight: nums[1], te: nums[0], unet: nums[1] };
      return nums.length === 1 ? { name: parts[0], weight: nums[0] } : { name: parts[0] };
    });
}

/** A cell's text → the JSON value of a native field (by NATIVE_FIELDS), or undefined for an empty cell. */
export function nativeFieldValue(field: string, text: string, quoted = false): unknown {
  const kind = NATIVE_FIELDS[field as keyof typeof NATIVE_FIELDS];
  const t = quoted ? text : text.trim();
  if (t === '' && kind !== 'string') return undefined;
  if (t === '' && !quoted) return undefined;
  switch (kind) {
    case 'integer':
    case 'number': {
      const v = Number(t.trim());
      if (t.trim() === '' || !Number.isFinite(v)) throw new LoraserveError('INVALID_ARGUMENT', `${field}: '${t}' is not a number`, { field });
      return v;
    }
    case 'loras':
      return parseLoraList(t);
    case 'string':
      return t;
    default:
      throw new LoraserveError('INVALID_ARGUMENT', `'${field}' is not a known field`, { field });
  }
}

export interface CsvRow {
  line: number;
  body: Record<string, unknown>;
}

/** A whole CSV file → one body per data row; header problems make every row an error. */
export function parseCsv(text: string): { rows: CsvRow[]; errors: CsvError[] } {
  const { records, errors } = readCsvRecords(text);
  const rows: CsvRow[] = [];
  const [header, ...data] = records;
  if (!header) return { rows, errors: errors.length ? errors : [{ line: 1, message: 'the file has no header row' }] };
  const names = header.cells.map((c) => c.trim());
  const headerProblems: string[] = [];
  names.forEach((n, k) => {
    if (n === '') headerProblems.push(`column ${k + 1} has no name`);
    else if (!(n in NATIVE_FIELDS)) headerProblems.push(`column '${n}' is not a native field (${Object.keys(NATIVE_FIELDS).join(', ')})`);
    else if (names.indexOf(n) !== k) headerProblems.push(`column '${n}' appears twice`);
  });
  if (!names.includes('prompt')) headerProblems.push("the header has no 'prompt' column");
  if (headerProblems.length) return { rows, errors: [{ line: header.line, message: `header: ${headerProblems.join('; ')}` }, ...errors] };
  for (const r of data) {
    if (r.cells.length !== names.length) {
      errors.push({ line: r.line, message: `${r.cells.length} cells, but the header has ${names.length} columns` });
      continue;
    }
    const body: Record<string, unknown> = {};
    const problems: string[] = [];
    names.forEach((n, k) => {
      try {
        const v = nativeFieldValue(n, r.cells[k], r.quoted[k]);
        if (v !== undefined) body[n] = v;
      } catch (e) {
        problems.push((e as Error).message);
      }
    });
    if (body.prompt === undefined) body.prompt = '';
    if (problems.length) errors.push({ line: r.line, message: problems.join('; ') });
    else rows.push({ line: r.line, body });
  }
  errors.sort((a, b) => a.line - b.line);
  return { rows, errors };
}
