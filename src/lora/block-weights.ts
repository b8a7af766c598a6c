/**
 * Per-block LoRA weights in the naming of A1111's "LoRA Block Weight" extension (hako-mikan
 * sd-webui-lora-block-weight, `scripts/lora_block_weight.py`): BASE (the text encoder), IN00…IN11, M00,
 * OUT00…OUT11 — the indices of the original SD UNet's input_blocks / middle_block / output_blocks.
 *
 * Upstream rules kept here:
 *   - BLOCKID26 / BLOCKID17 lists and `to26`: a 17-value vector gives the 17 blocks a plain LoRA touches and
 *     sets the other 9 to 0;
 *   - `ratiodealer`: a key is scaled by the block whose ldm prefix it contains; text-encoder keys use BASE;
 *     a UNet key in no block (time_embed, out.2 = conv_out) keeps ratio 1.
 * Our addition: group keys `in`, `mid`, `out` scale every IN / M / OUT block; a block's own id wins over its
 * group. Block ids of a diffusers module come from ldm-names.ts (diffusers → ldm path).
 */
import { LoraserveError } from '../core/errors.js';
import { diffusersToLdm, ldmBlock, SD_UNET_LAYOUT, type UnetLayout } from './ldm-names.js';
import type { LoraPart } from './types.js';

const pad2 = (n: number): string => String(n).padStart(2, '0');

export const BLOCK_IDS_26: readonly string[] = [
  'BASE',
  ...Array.from({ length: 12 }, (_, i) => `IN${pad2(i)}`),
  'M00',
  ...Array.from({ length: 12 }, (_, i) => `OUT${pad2(i)}`),
];

export const BLOCK_IDS_17: readonly string[] = ['BASE', 'IN01', 'IN02', 'IN04', 'IN05', 'IN07', 'IN08', 'M00', 'OUT03', 'OUT04', 'OUT05', 'OUT06', 'OUT07', 'OUT08', 'OUT09', 'OUT10', 'OUT11'];

export const BLOCK_GROUPS = ['in', 'mid', 'out'] as const;
export type BlockGroup = (typeof BLOCK_GROUPS)[number];

/** The block id of a layer: 'BASE' for the text encoder, IN/M/OUT for UNet blocks, undefined outside them. */
export function blockIdOf(part: LoraPart, module: string, layout: UnetLayout = SD_UNET_LAYOUT): string | undefined {
  if (part === 'te') return 'BASE';
  const ldm = diffusersToLdm(module, layout);
  const b = ldm === undefined ? undefined : ldmBlock(ldm);
  if (!b) return undefined;
  return b.kind === 'in' ? `IN${pad2(b.index)}` : b.kind === 'mid' ? 'M00' : `OUT${pad2(b.index)}`;
}

function groupOf(id: string): BlockGroup | undefined {
  if (id.startsWith('IN')) return 'in';
  if (id === 'M00') return 'mid';
  if (id.startsWith('OUT')) return 'out';
  return undefined;
}

/** LBW's `lbw=` vector (17 or 26 numbers) → block weights; the 17-form sets the 9 blocks it omits to 0 (`to26`). */
export function blockWeightsFromVector(values: readonly number[]): Record<string, number> {
  const ids = values.length === 26 ? BLOCK_IDS_26 : values.length === 17 ? BLOCK_IDS_17 : undefined;
  if (!ids) throw new LoraserveError('INVALID_ARGUMENT', `block weights need 17 or 26 values (LoRA Block Weight), got ${values.length}`);
  const out: Record<string, number> = Object.fromEntries(BLOCK_IDS_26.map((id) => [id, 0]));
  ids.forEach((id, i) => {
    if (!Number.isFinite(values[i])) throw new LoraserveError('INVALID_ARGUMENT', `block weight ${id} is not a finite number`);
    out[id] = values[i];
  });
  return out;
}

/** Validated block weights of one request entry. */
export interface BlockWeights {
  ids: ReadonlyMap<string, number>;
  groups: ReadonlyMap<BlockGroup, number>;
}

const ID_PATTERN = /^(BASE|M00|IN\d{2}|OUT\d{2})$/;

/** Checks keys (case-insensitive ids, lower-case groups) and values; unknown keys are INVALID_ARGUMENT. */
export function normalizeBlockWeights(blocks: Readonly<Record<string, number>> | undefined, lora: string): BlockWeights {
  const ids = new Map<string, number>();
  const groups = new Map<BlockGroup, number>();
  for (const [rawKey, value] of Object.entries(blocks ?? {})) {
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      throw new LoraserveError('INVALID_ARGUMENT', `LoRA '${lora}': block weight ${rawKey} must be a finite number`, { lora, block: rawKey });
    }
    const lower = rawKey.toLowerCase();
    if ((BLOCK_GROUPS as readonly string[]).includes(lower)) {
      groups.set(lower as BlockGroup, value);
      continue;
    }
    const id = rawKey.toUpperCase();
    if (!ID_PATTERN.test(id)) {
      throw new LoraserveError(
        'INVALID_ARGUMENT',
        `LoRA '${lora}': unknown block "${rawKey}"; use in, mid, out or BASE, IN00…IN11, M00, OUT00…OUT11`,
        { lora, block: rawKey },
      );
    }
    ids.set(id, value);
  }
  return { ids, groups };
}

/** The weight of a block id (undefined id = a layer outside every block: 1, as LBW leaves it). */
export function blockWeight(w: BlockWeights, id: string | undefined): number {
  if (id === undefined) return 1;
  const own = w.ids.get(id);
  if (own !== undefined) return own;
  const g = groupOf(id);
  return (g && w.groups.get(g)) ?? 1;
}
