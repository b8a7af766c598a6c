import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cleanWhitespace, fixText, unescapeHtml } from '../../../src/text/text-normalize.js';

// Golden examples from rspeer/python-ftfy 6.3.1: docstrings of ftfy/__init__.py `fix_text` and ftfy/fixes.py,
// and tests/test_entities.py. Each row is ftfy.fix_text(input) → expected.
const FTFY_FIX_TEXT: Array<[string, string, string]> = [
  // [what, input, expected]
  ['entities, then curly quote, ligatures', 'Broken text&hellip; it&#x2019;s ﬂubberiﬁc!', "Broken text\u2026 it's flubberific!"],
  ['fullwidth letters and ideographic space', 'ＬＯＵＤ　ＮＯＩＳＥＳ', 'LOUD NOISES'],
  ['halfwidth katakana (then NFC)', 'Ｕﾀｰﾝ', 'Uターン'],
  ['latin ligatures', 'ﬂuﬃeﬆ', 'fluffiest'],
  ['legacy digraph', 'Ǆ', 'DŽ'],
  ['curly quotes', '\u201chere\u2019s a test\u201d', '"here\'s a test"'],
  ['terminal escapes', "\x1b[36;44mI'm blue, da ba dee da ba doo...\x1b[0m", "I'm blue, da ba dee da ba doo..."],
  ['CRLF and CR', 'Content-type: text/plain\r\n\r\nHi.\rBye', 'Content-type: text/plain\n\nHi.\nBye'],
  ['unicode line separators', 'two things:\u20291. Unicode\u20282. Spite', 'two things:\n1. Unicode\n2. Spite'],
  ['C1 control read as Windows-1252', 'What is this \x85 I don\x92t even', "What is this \u2026 I don't even"],
  ['entity stops being unescaped from the first line with "<"', '&amp;\n<html>\n&amp;', '&\n<html>\n&amp;'],
  ['entities decoded until nothing changes', '&amp;amp;amp;', '&'],
  ['named entities', '&lt;&gt;', '<>'],
  ['C1 numeric reference kept when Windows-1252 has no character', 'broken&#x81;', 'broken\x81'],
  ['semicolon required', 'this is just informal english &not html', 'this is just informal english &not html'],
  ['upper-cased entity names', 'P&EACUTE;REZ', 'PÉREZ'],
  ['upper-cased sharp s', 'BUNDESSTRA&SZLIG;E', 'BUNDESSTRASSE'],
  ['entity case rules', '&ntilde; &Ntilde; &NTILDE; &nTILDE;', 'ñ Ñ Ñ &nTILDE;'],
  ['control characters vanish and join words', 'cat\x00ears\x07 and\x1ftail\x7f', 'catears andtail'],
  ['byte order mark, annotation marks', '\ufeffhi\ufff9there\ufffc', 'hithere'],
  ['NFC', 'cafe\u0301', 'café'],
  ['lone surrogate', 'a\ud83db', 'a\ufffdb'],
  ['emoji and CJK untouched', '猫耳娘 catgirl 🐱', '猫耳娘 catgirl 🐱'],
  ['plain ASCII untouched', 'masterpiece, (best quality:1.2), <lora:x:0.8>', 'masterpiece, (best quality:1.2), <lora:x:0.8>'],
  ['"<" in the line keeps entities', '<lora:catgirl:0.8> &amp;', '<lora:catgirl:0.8> &amp;'],
  ['tab and form feed are whitespace, kept', 'a\tb\fc', 'a\tb\fc'],
];

test('fixText matches ftfy.fix_text on its own examples', () => {
  for (const [what, input, expected] of FTFY_FIX_TEXT) {
    assert.equal(fixText(input), expected, what);
  }
});

// Documented gaps (text-normalize.ts): ftfy's mojibake repair and HTML5-only entity names are not ported.
// Each row: input, what we return, what ftfy returns.
const KNOWN_GAPS: Array<[string, string, string]> = [
  ['cafÃ©', 'cafÃ©', 'café'],
  ['jednocze&sacute;nie', 'jednocze&sacute;nie', 'jednocześnie'],
];

test('fixText known gaps against ftfy stay as documented', () => {
  for (const [input, ours, ftfy] of KNOWN_GAPS) {
    assert.equal(fixText(input), ours, `${input} (ftfy gives ${ftfy})`);
  }
});

test('unescapeHtml numeric references follow html.unescape', () => {
  // ftfy tests/test_entities.py
  assert.equal(unescapeHtml('euro &#x80;'), 'euro €');
  assert.equal(unescapeHtml('EURO &EURO;'), 'EURO €');
  assert.equal(unescapeHtml('not an entity &#20x6;'), 'not an entity &#20x6;');
  assert.equal(unescapeHtml('V&SCARON;ICHNI'), 'VŠICHNI');
  assert.equal(unescapeHtml('&#xffff;'), '');
  assert.equal(unescapeHtml('&#xffffffff;'), '\ufffd');
  // Python html.unescape's table
  assert.equal(unescapeHtml('&#39;&#x27;&#65;&#X42;'), "''AB");
  assert.equal(unescapeHtml('&#0;&#13;&#x1f;&#xD800;'), '\ufffd\r\ufffd');
  assert.equal(unescapeHtml('&#128512;'), '😀');
  assert.equal(unescapeHtml('&quot;&apos;&nbsp;&copy;'), '"\'\u00a0©');
});

test('cleanWhitespace collapses every whitespace run to one space and trims', () => {
  assert.equal(cleanWhitespace('  a   photo  of\n\na\ncat   \n'), 'a photo of a cat');
  assert.equal(cleanWhitespace('a\t\u00a0\u2003\u3000b'), 'a b');
  assert.equal(cleanWhitespace(' \n\t '), '');
  assert.equal(cleanWhitespace(''), '');
  assert.equal(cleanWhitespace('x'), 'x');
});
