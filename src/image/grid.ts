/**
 * Image grid / contact sheet: N RGB images laid out in rows × cols, optionally with a text label under each.
 *
 * Layout defaults follow A1111 `modules/images.py` image_grid (the n_rows = -1 "autodetect" branch):
 * rows = round(√n) capped at n, cols = ⌈n / rows⌉, images pasted left to right, top to bottom on black.
 * Unlike A1111 (which assumes all images share the first one's size) each cell is as large as the largest image,
 * with smaller images in its top-left corner. Labels are drawn by compositing an SVG (rendered by sharp's librsvg,
 * fonts through fontconfig) — on a machine with no fonts at all the text simply does not show.
 */
import sharp, { type OverlayOptions } from 'sharp';
import { LoraserveError } from '../core/errors.js';
import type { RgbImage } from './pixels.js';

export interface Rgb {
  r: number;
  g: number;
  b: number;
}

export interface GridOptions {
  /** Default: round(√n), at most n. */
  rows?: number;
  /** Default: ⌈n / rows⌉. */
  cols?: number;
  /** One label per image (may contain '\n' for several lines); '' or a missing entry leaves the strip empty. */
  labels?: ReadonlyArray<string | undefined>;
  /** Label font size in px; default 16. */
  fontSize?: number;
  /** Pixels between cells and around the sheet; default 0 (as A1111). */
  gap?: number;
  /** Default black, as A1111. */
  background?: Rgb;
  /** Default white. */
  textColor?: Rgb;
}

/** A1111's autodetected layout for n images. */
export function gridShape(n: number, rows?: number, cols?: number): { rows: number; cols: number } {
  if (n <= 0) return { rows: 0, cols: 0 };
  if (rows === undefined && cols !== undefined) rows = Math.ceil(n / cols);
  let r = rows ?? Math.round(Math.sqrt(n)); // √n is never exactly k+0.5 for integer n, so rounding mode is moot
  r = Math.max(1, Math.min(r, n));
  const c = cols ?? Math.ceil(n / r);
  if (r * c < n) throw new LoraserveError('INVALID_ARGUMENT', `grid of ${r}x${c} cannot hold ${n} images`);
  return { rows: r, cols: c };
}

function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

const css = (c: Rgb): string => `rgb(${c.r},${c.g},${c.b})`;

/** Composes the images into one RGB image. */
export async function makeGrid(images: ReadonlyArray<RgbImage>, opts: GridOptions = {}): Promise<RgbImage> {
  if (images.length === 0) throw new LoraserveError('INVALID_ARGUMENT', 'makeGrid: no images');
  for (const [i, img] of images.entries()) {
    if (img.rgb.length !== img.width * img.height * 3) {
      throw new LoraserveError('INVALID_ARGUMENT', `makeGrid: image ${i} has ${img.rgb.length} bytes, not ${img.width}x${img.height}x3`);
    }
  }
  const { rows, cols } = gridShape(images.length, opts.rows, opts.cols);
  const gap = opts.gap ?? 0;
  const fontSize = opts.fontSize ?? 16;
  const labels = opts.labels ?? [];
  const labelLines = images.map((_, i) => (labels[i] ? labels[i]!.split('\n') : []));
  const maxLines = Math.max(0, ...labelLines.map((l) => l.length));
  const lineHeight = Math.ceil(fontSize * 1.25);
  const labelHeight = maxLines > 0 ? maxLines * lineHeight + Math.ceil(fontSize / 2) : 0;

  const cellW = Math.max(...images.map((im) => im.width));
  const imageH = Math.max(...images.map((im) => im.height));
  const cellH = imageH + labelHeight;
  const width = cols * cellW + (cols + 1) * gap;
  const height = rows * cellH + (rows + 1) * gap;
  const origin = (i: number) => ({
    left: gap + (i % cols) * (cellW + gap),
    top: gap + Math.floor(i / cols) * (cellH + gap),
  });

  const layers: OverlayOptions[] = images.map((img, i) => ({
    input: Buffer.from(img.rgb.buffer, img.rgb.byteOffset, img.rgb.byteLength),
    raw: { width: img.width, height: img.height, channels: 3 },
    ...origin(i),
  }));

  if (maxLines > 0) {
    const parts: string[] = [];
    labelLines.forEach((lines, i) => {
      if (lines.length === 0) return;
      const { left, top } = origin(i);
      const y0 = top + imageH;
      // Each label is clipped to its own cell so a long one cannot spill into the neighbour.
      parts.push(`<clipPath id="c${i}"><rect x="${left}" y="${y0}" width="${cellW}" height="${labelHeight}"/></clipPath>`);
      lines.forEach((line, j) => {
        const y = y0 + Math.ceil(fontSize / 4) + j * lineHeight + fontSize;
        parts.push(
          `<text x="${left + cellW / 2}" y="${y}" clip-path="url(#c${i})" text-anchor="middle">${escapeXml(line)}</text>`,
        );
      });
    });
    const fill = css(opts.textColor ?? { r: 255, g: 255, b: 255 });
    const svg =
      `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">` +
      `<g font-family="DejaVu Sans, sans-serif" font-size="${fontSize}" fill="${fill}">${parts.join('')}</g></svg>`;
    layers.push({ input: Buffer.from(svg), top: 0, left: 0 });
  }

  const bg = opts.background ?? { r: 0, g: 0, b: 0 };
  const { data, info } = await sharp({ create: { width, height, channels: 3, background: bg } })
    .composite(layers)
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  if (info.channels !== 3 || info.width !== width || info.height !== height) {
    throw new LoraserveError('INTERNAL', `makeGrid: sharp returned ${info.width}x${info.height}x${info.channels}`);
  }
  return { rgb: new Uint8Array(data.buffer, data.byteOffset, data.byteLength), width, height };
}
