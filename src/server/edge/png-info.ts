/** Reading generation parameters back out of a PNG (native and A1111 png-info routes). */
import { LoraserveError } from '../../core/errors.js';
import { parseInfotext, type ParsedInfotext } from '../../image/infotext.js';
import { readPngText } from '../../image/png.js';

export interface PngInfo {
  /** The `parameters` text chunk (A1111 infotext), or '' when there is none. */
  parameters: string;
  /** Every other text chunk. */
  other: Record<string, string>;
  parsed: ParsedInfotext | undefined;
}

export function readPngInfo(png: Buffer): PngInfo {
  const text = readPngText(png);
  const { parameters, ...other } = text;
  return { parameters: parameters ?? '', other, parsed: parameters ? parseInfotext(parameters) : undefined };
}

/**
 * A1111's png-info `parameters` dict (modules/infotext_utils.py parse_generation_parameters): Prompt,
 * Negative prompt, every "Key: value", and Size split into Size-1 / Size-2. Values stay strings, as there.
 */
export function a1111Parameters(info: PngInfo): Record<string, string> {
  if (!info.parsed) return {};
  const out: Record<string, string> = { Prompt: info.parsed.prompt, 'Negative prompt': info.parsed.negativePrompt };
  for (const [k, v] of Object.entries(info.parsed.params)) {
    const m = /^(\d+)x(\d+)$/.exec(v);
    if (m) {
      out[`${k}-1`] = m[1];
      out[`${k}-2`] = m[2];
    } else out[k] = v;
  }
  return out;
}

export function requirePng(bytes: Buffer, field: string): Buffer {
  if (bytes.length < 8 || bytes.readUInt32BE(0) !== 0x89504e47) {
    throw new LoraserveError('INVALID_FILE', `${field} is not a PNG image (only PNG files carry A1111 infotext)`, { field });
  }
  return bytes;
}
