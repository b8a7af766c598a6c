/**
 * Contact sheets of a swept batch, one per prompt line (and per A1111 iteration): the first sweep along X, the
 * second along Y, one sheet per combination of the others (A1111's X/Y/Z plot, `scripts/xyz_grid.py`, lays its
 * grids out the same way). Cells are the item's images (several side by side for batch_size > 1), each labelled
 * with its sweep values; the column and row headers name the X and Y values, a title names the line and the
 * sheet's other values. The cells come from src/image/grid.ts; the margins with the axis headers are composed
 * here. A sheet is a plain PNG without infotext (it shows many settings, not one), written atomically.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { writeFileAtomic } from '../core/fs-atomic.js';
import { makeGrid } from '../image/grid.js';
import type { RgbImage } from '../image/pixels.js';
import { decodePng, encodePng } from '../image/png.js';
import type { PlanGroup, PlanItem } from './batch-plan.js';
import { itemName, sweepPoints, type Sweep } from './batch-sweep.js';

export interface SheetPage {
  /** File name, e.g. `sheet-0003.png` or `sheet-0003-seed=1.png`. */
  file: string;
  group: PlanGroup;
  /** Value index per sweep beyond the second. */
  page: number[];
  title: string;
  /** cells[y][x]; undefined where the plan has no item (a bad sweep value). */
  cells: Array<Array<PlanItem | undefined>>;
}

const shortKey = (k: string): string => (k.startsWith('lora.') ? k.slice(5) : k);

/** The sheets of a plan (no sweeps: none). */
export function sheetPages(groups: readonly PlanGroup[], sweeps: readonly Sweep[], lineDigits: number): SheetPage[] {
  if (sweeps.length === 0) return [];
  const xs = sweeps[0].values.length;
  const ys = sweeps.length > 1 ? sweeps[1].values.length : 1;
  const rest = sweeps.slice(2);
  const pages: SheetPage[] = [];
  for (const group of groups) {
    const byPoint = new Map(group.items.map((it) => [it.point.join(','), it]));
    for (const page of sweepPoints(rest)) {
      const pageLabels = rest.map((s, i) => `${s.key}=${s.values[page[i]].label}`);
      const cells = Array.from({ length: ys }, (_, y) =>
        Array.from({ length: xs }, (_, x) => byPoint.get([x, ...(sweeps.length > 1 ? [y] : []), ...page].join(','))),
      );
      if (!cells.flat().some(Boolean)) continue;
      const iteration = group.nIter > 1 ? group.iteration : undefined;
      const prompt = group.prompt.length > 100 ? `${group.prompt.slice(0, 99)}…` : group.prompt;
      pages.push({
        file: `sheet-${itemName(group.line, lineDigits, iteration, pageLabels)}.png`,
        group,
        page,
        title: [`line ${group.line}${iteration !== undefined ? ` (iteration ${iteration + 1})` : ''}`, ...pageLabels, prompt].join(' · '),
        cells,
      });
    }
  }
  return pages;
}

async function loadCell(item: PlanItem | undefined, outDir: string): Promise<RgbImage | undefined> {
  if (!item) return undefined;
  const images: RgbImage[] = [];
  for (const f of item.files) {
    const p = join(outDir, f);
    if (!existsSync(p)) return undefined;
    images.push(await decodePng(readFileSync(p)));
  }
  return images.length === 1 ? images[0] : makeGrid(images, { rows: 1 });
}

function blank(width: number, height: number): RgbImage {
  return { rgb: new Uint8Array(width * height * 3).fill(40), width, height };
}

function escapeXml(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

/** Renders one sheet to PNG bytes; undefined when none of its images is on disk. */
export async function renderSheet(page: SheetPage, sweeps: readonly Sweep[], outDir: string): Promise<Uint8Array | undefined> {
  const ys = page.cells.length;
  const xs = page.cells[0].length;
  const loaded = await Promise.all(page.cells.flat().map((it) => loadCell(it, outDir)));
  const present = loaded.filter((c): c is RgbImage => c !== undefined);
  if (present.length === 0) return undefined;
  const cellW = Math.max(...present.map((c) => c.width));
  const cellH = Math.max(...present.map((c) => c.height));
  const fontSize = Math.max(9, Math.min(20, Math.floor(cellW / 7)));
  const labels = page.cells.flat().map((it, i) => {
    if (!it) return '(not planned)';
    // The X and Y values; the others are the same across the sheet and stand in its title.
    const values = it.labels.slice(0, 2).map((l) => shortKey(l)).join('\n');
    return loaded[i] ? values : `${values}\n(failed)`;
  });
  const gap = Math.max(2, Math.round(fontSize / 3));
  const grid = await makeGrid(
    loaded.map((c) => c ?? blank(cellW, cellH)),
    { rows: ys, cols: xs, labels, fontSize, gap },
  );

  // Margins: a title line and the X headers on top, the Y headers on the left.
  const lineH = Math.ceil(fontSize * 1.4);
  const charW = fontSize * 0.62;
  const xHeaders = sweeps[0].values.map((v) => `${shortKey(sweeps[0].key)}=${v.label}`);
  const yHeaders = sweeps.length > 1 ? sweeps[1].values.map((v) => `${shortKey(sweeps[1].key)}=${v.label}`) : [];
  const left = yHeaders.length ? Math.ceil(Math.max(...yHeaders.map((h) => h.length)) * charW) + 2 * gap : 0;
  const top = 2 * lineH + gap;
  const width = left + grid.width;
  const height = top + grid.height;
  const colW = (grid.width - (xs + 1) * gap) / xs;
  const rowH = (grid.height - (ys + 1) * gap) / ys;
  const texts: string[] = [];
  texts.push(`<text x="${gap}" y="${lineH - Math.ceil(fontSize * 0.3)}">${escapeXml(page.title)}</text>`);
  xHeaders.forEach((h, x) => {
    const x0 = left + gap + x * (colW + gap);
    texts.push(`<clipPath id="x${x}"><rect x="${x0}" y="${lineH}" width="${colW}" height="${lineH + gap}"/></clipPath>`);
    texts.push(`<text x="${x0 + colW / 2}" y="${2 * lineH - Math.ceil(fontSize * 0.3)}" text-anchor="middle" clip-path="url(#x${x})">${escapeXml(h)}</text>`);
  });
  yHeaders.forEach((h, y) => {
    const yMid = top + gap + y * (rowH + gap) + rowH / 2;
    texts.push(`<text x="${left - gap}" y="${yMid + fontSize / 3}" text-anchor="end">${escapeXml(h)}</text>`);
  });
  const svg =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">` +
    `<g font-family="DejaVu Sans, sans-serif" font-size="${fontSize}" fill="rgb(255,255,255)">${texts.join('')}</g></svg>`;
  const { data, info } = await sharp({ create: { width, height, channels: 3, background: { r: 0, g: 0, b: 0 } } })
    .composite([
      { input: Buffer.from(grid.rgb.buffer, grid.rgb.byteOffset, grid.rgb.byteLength), raw: { width: grid.width, height: grid.height, channels: 3 }, left, top },
      { input: Buffer.from(svg), left: 0, top: 0 },
    ])
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  return encodePng(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), info.width, info.height);
}

/** Writes every sheet of the plan that has images; returns the files written. */
export async function writeSheets(pages: readonly SheetPage[], sweeps: readonly Sweep[], outDir: string): Promise<string[]> {
  const written: string[] = [];
  for (const page of pages) {
    const png = await renderSheet(page, sweeps, outDir);
    if (!png) continue;
    writeFileAtomic(join(outDir, page.file), png);
    written.push(page.file);
  }
  return written;
}
