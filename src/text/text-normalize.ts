/**
 * Text cleaning that CLIP's tokenizer applies before it splits a prompt into words.
 *
 * diffusers' SD pipelines tokenize with transformers' slow `CLIPTokenizer`, whose `_tokenize` runs
 * `whitespace_clean(ftfy.fix_text(text)).lower()` when ftfy is installed (huggingface/transformers
 * `src/transformers/models/clip/tokenization_clip.py`). We cannot run ftfy, so `fixText` ports the parts of
 * ftfy 6.3.1's `fix_text` (rspeer/python-ftfy `ftfy/__init__.py` `fix_text` / `fix_and_explain`, fixers in
 * `ftfy/fixes.py`, tables in `ftfy/chardata.py`) that can change a prompt typed or pasted by a person:
 *
 *   unescape_html (only when the line and all lines before it have no '<'), fix_c1_controls, fix_latin_ligatures,
 *   fix_character_width, uncurl_quotes, fix_line_breaks, fix_surrogates, remove_terminal_escapes,
 *   remove_control_chars, NFC — repeated until the text stops changing, line by line, exactly in ftfy's order.
 *
 * Not ported: `fix_encoding`, ftfy's mojibake repair ("cafÃ©" → "café"). It needs ftfy's badness heuristic and
 * eight legacy codecs; it never fires on ASCII or on text that does not look like mojibake (ftfy's own first test),
 * so only prompts that contain mojibake tokenize differently from diffusers here (we keep the characters as typed,
 * as transformers' fast tokenizer and the no-ftfy slow tokenizer also do). Of the HTML entities only the HTML 4.01
 * names are known (see html-entities.ts).
 */
import { HTML_ENTITIES } from './html-entities.js';

/** ftfy.fix_text, less `fix_encoding` (see the file comment). */
export function fixText(text: string): string {
  // Printable ASCII without '&' (plus tab and newline) is a fixed point of every fixer below; nearly all prompts are.
  if (!NEEDS_FIXING.test(text)) return text;
  // ftfy fixes text line by line (each segment keeps its '\n'). A '<' means "this is HTML, keep entities as they
  // are"; ftfy stores that decision in its config, so it also holds for every later line.
  let unescape = true;
  let out = '';
  let pos = 0;
  while (pos < text.length) {
    let end = text.indexOf('\n', pos) + 1;
    if (end === 0) end = text.length;
    const segment = text.slice(pos, end);
    if (unescape && segment.includes('<')) unescape = false;
    out += fixSegment(segment, unescape);
    pos = end;
  }
  return out;
}

/**
 * transformers' `whitespace_clean`: every run of whitespace becomes one space, ends trimmed. Its input has passed
 * `fixText`, which already removed the characters on which Python's and Unicode's ideas of whitespace differ
 * (U+1C..U+1F, U+85, U+FEFF), so the Unicode White_Space property is exact here.
 */
export function cleanWhitespace(text: string): string {
  const collapsed = text.replace(WHITESPACE_RUN, ' ');
  const start = collapsed.startsWith(' ') ? 1 : 0;
  const end = collapsed.endsWith(' ') ? collapsed.length - 1 : collapsed.length;
  return start >= end ? '' : collapsed.slice(start, end);
}

const NEEDS_FIXING = /[^\t\n\x20-\x25\x27-\x7e]/;
const WHITESPACE_RUN = /\p{White_Space}+/gu;

/** ftfy's `fix_and_explain` loop for one segment: apply every fixer in order until nothing changes. */
function fixSegment(segment: string, unescape: boolean): string {
  let text = segment;
  for (;;) {
    const before = text;
    if (unescape) text = unescapeHtml(text);
    text = fixC1Controls(text);
    text = fixLatinLigatures(text);
    text = fixCharacterWidth(text);
    text = uncurlQuotes(text);
    text = fixLineBreaks(text);
    text = fixSurrogates(text);
    text = removeTerminalEscapes(text);
    text = removeControlChars(text);
    text = text.normalize('NFC');
    if (text === before) return text;
  }
}

// --- unescape_html -------------------------------------------------------------------------------------------

/** ftfy's HTML_ENTITY_RE: the semicolon is required, so "this&not that" is left alone. */
const HTML_ENTITY = /&#?[0-9A-Za-z]{1,24};/g;
const DECIMAL_REF = /^&#([0-9]+);$/;
const HEX_REF = /^&#[xX]([0-9a-fA-F]+);$/;

export function unescapeHtml(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(HTML_ENTITY, (entity) => {
    if (entity[1] !== '#') return HTML_ENTITIES.get(entity.slice(1, -1)) ?? entity;
    // ftfy hands "&#…;" to Python's html.unescape and keeps the result only if the whole reference was consumed.
    const dec = DECIMAL_REF.exec(entity);
    const hex = dec ? null : HEX_REF.exec(entity);
    if (!dec && !hex) return entity;
    return charFromReference(dec ? parseInt(dec[1], 10) : parseInt(hex![1], 16));
  });
}

/** Python's `html._replace_charref` for a numeric reference (CPython Lib/html/__init__.py). */
function charFromReference(num: number): string {
  if (num === 0) return '\uFFFD';
  if (num === 0x0d) return '\r';
  if (num >= 0x80 && num <= 0x9f) return WINDOWS_1252_C1[num - 0x80];
  if ((num >= 0xd800 && num <= 0xdfff) || num > 0x10ffff) return '\uFFFD';
  // html5's "invalid code points" vanish: C0 controls but whitespace, DEL, noncharacters.
  if (
    (num >= 0x01 && num <= 0x08) ||
    num === 0x0b ||
    (num >= 0x0e && num <= 0x1f) ||
    num === 0x7f ||
    (num >= 0xfdd0 && num <= 0xfdef) ||
    (num & 0xfffe) === 0xfffe
  ) {
    return '';
  }
  return String.fromCodePoint(num);
}

// --- fix_c1_controls -----------------------------------------------------------------------------------------

/**
 * U+80..U+9F read as Windows-1252 bytes, "sloppy" variant: the five bytes Windows-1252 leaves undefined
 * (81, 8D, 8F, 90, 9D) stay as they are. Also Python's html.unescape table for "&#128;".."&#159;".
 */
const WINDOWS_1252_C1 = [
  '\u20AC', '\u0081', '\u201A', '\u0192', '\u201E', '\u2026', '\u2020', '\u2021',
  '\u02C6', '\u2030', '\u0160', '\u2039', '\u0152', '\u008D', '\u017D', '\u008F',
  '\u0090', '\u2018', '\u2019', '\u201C', '\u201D', '\u2022', '\u2013', '\u2014',
  '\u02DC', '\u2122', '\u0161', '\u203A', '\u0153', '\u009D', '\u017E', '\u0178',
];
const C1_CONTROL = /[\x80-\x9f]/g;

function fixC1Controls(text: string): string {
  return text.replace(C1_CONTROL, (c) => WINDOWS_1252_C1[c.charCodeAt(0) - 0x80]);
}

// --- fix_latin_ligatures --------------------------------------------------------------------------------------

/** ftfy's LIGATURES: Latin typographic ligatures and legacy digraphs; 'æ' and friends are kept on purpose. */
const LIGATURES: ReadonlyMap<string, string> = new Map([
  ['\u0132', 'IJ'], ['\u0133', 'ij'], ['\u0149', '\u02BCn'],
  ['\u01F1', 'DZ'], ['\u01F2', 'Dz'], ['\u01F3', 'dz'],
  ['\u01C4', 'D\u017D'], ['\u01C5', 'D\u017E'], ['\u01C6', 'd\u017E'],
  ['\u01C7', 'LJ'], ['\u01C8', 'Lj'], ['\u01C9', 'lj'],
  ['\u01CA', 'NJ'], ['\u01CB', 'Nj'], ['\u01CC', 'nj'],
  ['\uFB00', 'ff'], ['\uFB01', 'fi'], ['\uFB02', 'fl'], ['\uFB03', 'ffi'], ['\uFB04', 'ffl'],
  ['\uFB05', '\u017Ft'], ['\uFB06', 'st'],
]);
const LIGATURE = new RegExp(`[${[...LIGATURES.keys()].join('')}]`, 'g');

function fixLatinLigatures(text: string): string {
  return text.replace(LIGATURE, (c) => LIGATURES.get(c)!);
}

// --- fix_character_width --------------------------------------------------------------------------------------

/** ftfy's WIDTH_MAP: U+3000 → ' ', and each of U+FF01..U+FFEF whose NFKC form differs → that form. */
const WIDTH_MAP: ReadonlyMap<string, string> = (() => {
  const map = new Map<string, string>([['\u3000', ' ']]);
  for (let cp = 0xff01; cp < 0xfff0; cp++) {
    const c = String.fromCharCode(cp);
    const alt = c.normalize('NFKC');
    if (alt !== c) map.set(c, alt);
  }
  return map;
})();
const WIDE_OR_HALFWIDTH = /[\u3000\uff01-\uffef]/g;

function fixCharacterWidth(text: string): string {
  return text.replace(WIDE_OR_HALFWIDTH, (c) => WIDTH_MAP.get(c) ?? c);
}

// --- uncurl_quotes, fix_line_breaks, fix_surrogates ------------------------------------------------------------

const SINGLE_QUOTE = /[\u02bc\u2018-\u201b]/g;
const DOUBLE_QUOTE = /[\u201c-\u201f]/g;

function uncurlQuotes(text: string): string {
  return text.replace(DOUBLE_QUOTE, '"').replace(SINGLE_QUOTE, "'");
}

function fixLineBreaks(text: string): string {
  return text
    .replaceAll('\r\n', '\n')
    .replaceAll('\r', '\n')
    .replaceAll('\u2028', '\n')
    .replaceAll('\u2029', '\n')
    .replaceAll('\u0085', '\n');
}

/** A JS string already pairs its surrogates; what is left to fix is a lone half, which ftfy turns into U+FFFD. */
const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g;

function fixSurrogates(text: string): string {
  return text.replace(LONE_SURROGATE, '\uFFFD');
}

// --- remove_terminal_escapes, remove_control_chars -------------------------------------------------------------

/** ftfy's ANSI_RE; Python's `\d` on str matches any decimal digit, hence \p{Nd}. */
const ANSI_ESCAPE = /\x1b\[[\p{Nd};]*[a-zA-Z]/gu;

function removeTerminalEscapes(text: string): string {
  return text.replace(ANSI_ESCAPE, '');
}

/**
 * ftfy's CONTROL_CHARS: C0 controls except tab, LF, FF, CR; DEL; deprecated Arabic format controls;
 * interlinear annotation marks and U+FFFC; the BOM. Deleting them joins the words on either side, as ftfy does.
 */
const CONTROL_CHAR = /[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g;

function removeControlChars(text: string): string {
  return text.replace(CONTROL_CHAR, '');
}
