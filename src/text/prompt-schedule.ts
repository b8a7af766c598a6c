/**
 * A1111 prompt editing: `[from:to:when]`, `[to:when]`, `[from::when]`, alternation `[a|b]`, nested — a prompt
 * becomes a list of (until step, prompt text) pairs.
 *
 * Port of AUTOMATIC1111/stable-diffusion-webui v1.9.4 `modules/prompt_parser.py`
 * `get_learned_conditioning_prompt_schedules`, whose lark grammar is:
 *
 *   !start: (prompt | /[][():]/+)*
 *   prompt: (emphasized | scheduled | alternate | plain | WHITESPACE)*
 *   !emphasized: "(" prompt ")" | "(" prompt ":" prompt ")" | "[" prompt "]"
 *   scheduled: "[" [prompt ":"] prompt ":" [WHITESPACE] NUMBER [WHITESPACE] "]"
 *   alternate: "[" prompt ("|" [prompt])+ "]"
 *   WHITESPACE: /\s+/
 *   plain: /([^\\\[\]():|]|\\.)+/
 *   %import common.SIGNED_NUMBER -> NUMBER
 *
 * We parse it by recursive descent instead of lark's Earley parser. Inside `prompt` there is no stray bracket, so a
 * bracketed construct is well nested and its kind is fixed by what it holds (`|` → alternate, `:` + number →
 * scheduled); only at the top level may a bracket or colon also be a stray character. There lark's grammar is
 * ambiguous ("[a:1]:" is `scheduled` + ':' or five stray/plain pieces) and lark resolves the ambiguity by the
 * iteration order of a Python set of forest nodes, which follows string hashing: **A1111 itself gives different
 * schedules for "[a:1]:" from one process start to the next** (try PYTHONHASHSEED=0 vs 2). We always take the
 * construct (scheduled/alternate) over stray characters, one of the outcomes A1111 produces and the one its
 * doctests show. A prompt the grammar cannot parse at all (a `|` outside an alternation, a trailing backslash)
 * stays as written, one entry: A1111 catches the LarkError and does the same.
 *
 * Step numbers: `when` with a '.' is a fraction of the steps ((when - 0) × steps, truncated), anything else
 * (`3`, `1e1`) is a step; each is capped at `steps`. The text for step s takes `from` while s ≤ when.
 * Departure: a `when` so large that Python's int() raises OverflowError (`1e999`) counts as `steps` here.
 */
import { PY_SPACE } from './python-regex.js';

export interface ScheduledPrompt {
  /** Last step (1-based, A1111's end_at_step) at which this text applies. */
  untilStep: number;
  prompt: string;
}

export interface ScheduleOptions {
  /** A1111's hires_steps: when set, `when` counts in the hires pass (int − base steps, fraction − 1). */
  hiresSteps?: number;
  /** A1111's "use_old_scheduling" option: when < 1 is a fraction, anything else a step. */
  useOldScheduling?: boolean;
}

type Node =
  | { kind: 'text'; text: string }
  | { kind: 'scheduled'; before: Node[] | null; after: Node[]; number: string; when: number }
  | { kind: 'alternate'; options: Array<Node[] | null> };

class ParseError extends Error {}

/** lark's SIGNED_NUMBER as it compiles it (first alternative wins, as Python's re does). */
const NUMBER = /^[+-]?(?:\d+[eE][+-]?\d+|(?:\d+\.(?:\d+)?|\.\d+)(?:[eE][+-]?\d+)?|\d+)/;
const WHITESPACE = new RegExp(`^${PY_SPACE}+`, 'u');

class Parser {
  constructor(private readonly s: string) {}

  /** start: (prompt | stray)* — a construct where one parses, else a stray character. */
  parseStart(): Node[] {
    const out: Node[] = [];
    let pos = 0;
    while (pos < this.s.length) {
      const c = this.s[pos];
      if (c === '(' || c === '[') {
        const r = this.tryConstruct(pos);
        if (r) {
          out.push(...r.nodes);
          pos = r.end;
          continue;
        }
        out.push({ kind: 'text', text: c });
        pos++;
      } else if (c === ')' || c === ']' || c === ':') {
        out.push({ kind: 'text', text: c });
        pos++;
      } else if (c === '|') {
        throw new ParseError('| outside an alternation');
      } else {
        pos = this.plain(pos, out);
      }
    }
    return out;
  }

  /** prompt: items up to the first character a prompt cannot hold here; null when a construct fails. */
  private parsePrompt(pos: number): { nodes: Node[]; end: number } | null {
    const out: Node[] = [];
    while (pos < this.s.length) {
      const c = this.s[pos];
      if (c === '(' || c === '[') {
        const r = this.tryConstruct(pos);
        if (!r) return null;
        out.push(...r.nodes);
        pos = r.end;
      } else if (c === ')' || c === ']' || c === ':' || c === '|') {
        break;
      } else {
        pos = this.plain(pos, out);
      }
    }
    return { nodes: out, end: pos };
  }

  /** plain / WHITESPACE: a run of ordinary characters and backslash escapes (kept as written). */
  private plain(pos: number, out: Node[]): number {
    const start = pos;
    while (pos < this.s.length) {
      const c = this.s[pos];
      if (c === '\\') {
        // `\\.`: '.' is any character but '\n'; a backslash with nothing valid after it cannot be parsed.
        if (pos + 1 >= this.s.length || this.s[pos + 1] === '\n') throw new ParseError('dangling backslash');
        pos += 2;
        // keep a surrogate pair whole
        if (isHighSurrogate(this.s.charCodeAt(pos - 1)) && pos < this.s.length && isLowSurrogate(this.s.charCodeAt(pos))) pos++;
      } else if (c === '(' || c === ')' || c === '[' || c === ']' || c === ':' || c === '|') break;
      else pos++;
    }
    out.push({ kind: 'text', text: this.s.slice(start, pos) });
    return pos;
  }

  /** emphasized | scheduled | alternate starting at `pos` ('(' or '['), or null when none parses. */
  private tryConstruct(pos: number): { nodes: Node[]; end: number } | null {
    const open = this.s[pos];
    const p1 = this.parsePrompt(pos + 1);
    if (!p1) return null;
    let at = p1.end;
    const next = this.s[at];
    if (open === '(') {
      // "(" prompt ")" | "(" prompt ":" prompt ")": kept verbatim (the rule is `!emphasized`).
      if (next === ')') return { nodes: [text('('), ...p1.nodes, text(')')], end: at + 1 };
      if (next !== ':') return null;
      const p2 = this.parsePrompt(at + 1);
      if (!p2 || this.s[p2.end] !== ')') return null;
      return { nodes: [text('('), ...p1.nodes, text(':'), ...p2.nodes, text(')')], end: p2.end + 1 };
    }
    if (next === ']') return { nodes: [text('['), ...p1.nodes, text(']')], end: at + 1 };
    if (next === '|') {
      const options: Array<Node[] | null> = [p1.nodes];
      while (this.s[at] === '|') {
        const p = this.parsePrompt(at + 1);
        if (!p) return null;
        // `[prompt]` after "|": lark gives None for an empty one (maybe_placeholders), which at_step turns into "".
        options.push(p.end === at + 1 ? null : p.nodes);
        at = p.end;
      }
      if (this.s[at] !== ']') return null;
      return { nodes: [{ kind: 'alternate', options }], end: at + 1 };
    }
    if (next !== ':') return null;
    // "[" prompt ":" NUMBER "]"  (to:when)
    const whenOnly = this.whenAndClose(at + 1);
    if (whenOnly) {
      return { nodes: [{ kind: 'scheduled', before: null, after: p1.nodes, number: whenOnly.number, when: 0 }], end: whenOnly.end };
    }
    // "[" prompt ":" prompt ":" NUMBER "]"  (from:to:when)
    const p2 = this.parsePrompt(at + 1);
    if (!p2 || this.s[p2.end] !== ':') return null;
    const w = this.whenAndClose(p2.end + 1);
    if (!w) return null;
    // `[prompt ":"]` present: lark hands the (possibly empty) prompt tree over, which is truthy even when empty.
    return { nodes: [{ kind: 'scheduled', before: p1.nodes, after: p2.nodes, number: w.number, when: 0 }], end: w.end };
  }

  /** [WHITESPACE] NUMBER [WHITESPACE] "]" at `pos`. */
  private whenAndClose(pos: number): { number: string; end: number } | null {
    const rest = this.s.slice(pos);
    let off = WHITESPACE.exec(rest)?.[0].length ?? 0;
    const num = NUMBER.exec(rest.slice(off));
    if (!num) return null;
    off += num[0].length;
    off += WHITESPACE.exec(rest.slice(off))?.[0].length ?? 0;
    if (rest[off] !== ']') return null;
    return { number: num[0], end: pos + off + 1 };
  }
}

const text = (t: string): Node => ({ kind: 'text', text: t });
const isHighSurrogate = (c: number): boolean => c >= 0xd800 && c <= 0xdbff;
const isLowSurrogate = (c: number): boolean => c >= 0xdc00 && c <= 0xdfff;

/** Python's int() of a float: truncation toward zero; ±inf (an OverflowError there) saturates. */
function pyInt(v: number, steps: number): number {
  if (v === Infinity) return steps;
  if (v === -Infinity) return -1;
  return Math.trunc(v);
}

/** collect_steps: fixes each `when` (in place) and returns the sorted distinct step boundaries. */
function collectSteps(nodes: Node[], steps: number, intOffset: number, fltOffset: number, old: boolean): number[] {
  const res = new Set<number>([steps]);
  const visit = (list: Node[] | null): void => {
    if (!list) return;
    for (const n of list) {
      if (n.kind === 'scheduled') {
        let v = Number(n.number);
        if (old) v = v < 1 ? v * steps : v;
        else if (n.number.includes('.')) v = (v - fltOffset) * steps;
        else v = v - intOffset;
        n.when = Math.min(steps, pyInt(v, steps));
        if (n.when >= 1) res.add(n.when);
        visit(n.before);
        visit(n.after);
      } else if (n.kind === 'alternate') {
        for (let s = 1; s <= steps; s++) res.add(s);
        n.options.forEach(visit);
      }
    }
  };
  visit(nodes);
  return [...res].sort((a, b) => a - b);
}

/** at_step: the prompt text at step `step`. */
function textAt(nodes: Node[] | null, step: number): string {
  if (!nodes) return '';
  let out = '';
  for (const n of nodes) {
    if (n.kind === 'text') out += n.text;
    else if (n.kind === 'scheduled') out += step <= n.when ? textAt(n.before, step) : textAt(n.after, step);
    else out += textAt(n.options[(step - 1) % n.options.length], step);
  }
  return out;
}

/**
 * The prompt schedule of `prompt` for `steps` sampling steps (A1111's total_steps: the number of denoiser calls,
 * twice the steps for second-order samplers). Examples (A1111's doctests, steps = 10):
 *   "a [b:3]"            → [[3, 'a '], [10, 'a b']]
 *   "a [b : c : 1] d"    → [[1, 'a b  d'], [10, 'a  c  d']]
 *   "[fe|]male"          → [[1, 'female'], [2, 'male'], …, [10, 'male']]
 */
export function promptSchedule(prompt: string, steps: number, opts: ScheduleOptions = {}): ScheduledPrompt[] {
  const hires = opts.hiresSteps !== undefined && !opts.useOldScheduling;
  const intOffset = hires ? steps : 0;
  const fltOffset = hires ? 1.0 : 0;
  const total = hires ? opts.hiresSteps! : steps;
  let tree: Node[];
  try {
    tree = new Parser(prompt).parseStart();
  } catch (e) {
    if (e instanceof ParseError) return [{ untilStep: total, prompt }];
    throw e;
  }
  return collectSteps(tree, total, intOffset, fltOffset, opts.useOldScheduling ?? false).map((s) => ({ untilStep: s, prompt: textAt(tree, s) }));
}
