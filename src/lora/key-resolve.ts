/**
 * Which of the model's layers a parsed LoRA key names.
 *
 * kohya names are the module path with `.` → `_`, which is not reversible (`down_blocks_0_attentions_0_proj_in`
 * could be `down_blocks.0.attentions.0.proj_in` or `down_blocks.0.attentions.0_proj.in`, and SD has modules like
 * `time_emb_proj`, `to_out.0`, `ff.net.0.proj`). diffusers guesses with string replacements; we instead index the
 * model's own modules by their kohya name (A1111 does the same: networks.py assign_network_names_to_compvis_modules)
 * and look the key up. Two modules with the same kohya name would be ambiguous; that is reported, not guessed.
 */
import { type ParsedKey, kohyaName } from './key-formats.js';
import { diffusersToLdm, unetLayoutFromModules, type UnetLayout } from './ldm-names.js';
import type { LoraTarget } from './types.js';

export type Resolution =
  | { kind: 'target'; target: LoraTarget; naming: 'diffusers' | 'ldm' | 'path' }
  | { kind: 'ambiguous'; candidates: LoraTarget[] }
  | { kind: 'none' };

type LoraKey = Extract<ParsedKey, { kind: 'lora' }>;

function add(map: Map<string, LoraTarget[]>, key: string, t: LoraTarget): void {
  const list = map.get(key);
  if (!list) map.set(key, [t]);
  else if (!list.some((x) => x.module === t.module)) list.push(t);
}

function pick(list: LoraTarget[] | undefined, naming: 'diffusers' | 'ldm' | 'path'): Resolution {
  if (!list || list.length === 0) return { kind: 'none' };
  if (list.length > 1) return { kind: 'ambiguous', candidates: list };
  return { kind: 'target', target: list[0], naming };
}

export class TargetIndex {
  readonly layout: UnetLayout;
  readonly targets: readonly LoraTarget[];
  private readonly byKohya = new Map<string, LoraTarget[]>();
  private readonly byLdm = new Map<string, LoraTarget[]>();
  private readonly byPath = new Map<string, LoraTarget[]>();

  constructor(targets: readonly LoraTarget[]) {
    this.targets = targets;
    this.layout = unetLayoutFromModules(targets.filter((t) => t.part === 'unet').map((t) => t.module));
    for (const t of targets) {
      add(this.byPath, `${t.part}|${t.module}`, t);
      add(this.byKohya, `${t.part}|${kohyaName(t.module)}`, t);
      if (t.part === 'unet') {
        const ldm = diffusersToLdm(t.module, this.layout);
        if (ldm) add(this.byLdm, kohyaName(ldm), t);
      }
    }
  }

  /** The targets of one part, by module path. */
  get(part: LoraTarget['part'], module: string): LoraTarget | undefined {
    return this.byPath.get(`${part}|${module}`)?.[0];
  }

  resolve(key: LoraKey): Resolution {
    if (key.part === 'te2' || key.part === 'other') return { kind: 'none' };
    if (key.naming === 'kohya') {
      const part = key.part ?? 'unet';
      const direct = pick(this.byKohya.get(`${part}|${key.name}`), 'diffusers');
      if (direct.kind !== 'none' || part !== 'unet') return direct;
      // ldm-named UNet keys; SDXL-era tools sometimes keep the `diffusion_model_` of the ldm state dict.
      const ldmName = key.name.startsWith('diffusion_model_') ? key.name.slice('diffusion_model_'.length) : key.name;
      return pick(this.byLdm.get(ldmName), 'ldm');
    }
    if (key.part) return pick(this.byPath.get(`${key.part}|${key.name}`), 'path');
    const unet = this.byPath.get(`unet|${key.name}`) ?? [];
    const te = this.byPath.get(`te|${key.name}`) ?? [];
    return pick([...unet, ...te], 'path');
  }
}
