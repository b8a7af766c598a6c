/**
 * Sampler and schedule names → functions, for our API and for A1111's.
 *
 * A "DPM++ 2M Karras" is the sampler dpmpp_2m walking the karras schedule (as stable-diffusion.cpp and A1111
 * ≥ 1.9 split them). Names are matched case-insensitively against our ids, A1111's labels and aliases, and
 * ComfyUI's names; A1111's legacy combined names ("DPM++ 2M Karras", "LMS Karras") are split the way A1111's
 * modules/sd_samplers.py get_sampler_and_scheduler does: a trailing schedule name wins over the scheduler
 * argument.
 *
 * "automatic" depends on the flavour:
 *  - native: diffusers' own discrete schedule from the model's scheduler_config (what a diffusers pipeline
 *    with that config runs), on diffusers' float32 noise table;
 *  - a1111: what A1111 v1.9.4 runs (modules/sd_samplers_kdiffusion.py samplers_k_diffusion 'scheduler'
 *    options): Karras for DPM++ 2M / DPM++ SDE / DPM++ 2S a / DPM2 / DPM2 a, Exponential for DPM++ 2M SDE,
 *    model.get_sigmas (= Uniform) for Euler, Euler a, LMS, Heun; DDIM walks A1111's own timesteps and ignores
 *    the schedule (modules/sd_samplers_timesteps.py). DPM2, DPM2 a and DPM++ 3M SDE drop the next-to-last σ
 *    as A1111 does. LCM's Automatic is SGM Uniform (A1111's own LCM denoiser grid is not reproduced). The
 *    a1111 flavour uses ldm's noise table.
 * A1111 samplers not provided: DPM fast, DPM adaptive, Restart, PLMS, UniPC (→ INVALID_SAMPLER).
 */
import { LoraserveError } from '../core/errors.js';
import { buildNoiseTable, type NoiseTableFlavor } from './noise-table.js';
import type { SchedulerConfig } from './scheduler-config.js';
import { sampleDdim } from './samplers/ddim.js';
import { sampleDpm2 } from './samplers/dpm2.js';
import { sampleDpm2Ancestral } from './samplers/dpm2-ancestral.js';
import { sampleDpmpp2m } from './samplers/dpmpp-2m.js';
import { sampleDpmpp2mSde, sampleDpmpp2mSdeHeun } from './samplers/dpmpp-2m-sde.js';
import { sampleDpmpp2sAncestral } from './samplers/dpmpp-2s-ancestral.js';
import { sampleDpmpp3mSde } from './samplers/dpmpp-3m-sde.js';
import { sampleDpmppSde } from './samplers/dpmpp-sde.js';
import { sampleEuler } from './samplers/euler.js';
import { sampleEulerAncestral } from './samplers/euler-ancestral.js';
import { sampleHeun } from './samplers/heun.js';
import { sampleLcm } from './samplers/lcm.js';
import { sampleLms } from './samplers/lms.js';
import { a1111DdimSchedule } from './schedules/a1111-ddim.js';
import { discreteSchedule } from './schedules/discrete.js';
import { exponentialSchedule, polyexponentialSchedule } from './schedules/exponential.js';
import { karrasSchedule } from './schedules/karras.js';
import { discardPenultimateSigma } from './schedules/plan.js';
import { sgmUniformSchedule } from './schedules/sgm-uniform.js';
import { simpleSchedule } from './schedules/simple.js';
import { uniformSchedule } from './schedules/uniform.js';
import type { Sampler, ScheduleContext, SigmaPlan } from './types.js';

export type SamplingFlavor = 'native' | 'a1111';

export type ScheduleId = 'discrete' | 'uniform' | 'karras' | 'exponential' | 'polyexponential' | 'sgm_uniform' | 'simple';
/** The schedule a request resolves to; 'a1111_ddim' is A1111's fixed DDIM timesteps (not selectable by name). */
export type ResolvedScheduleId = ScheduleId | 'a1111_ddim';

interface SamplerEntry {
  readonly id: string;
  /** A1111's name (also the infotext "Sampler:" value). */
  readonly label: string;
  /** A1111's aliases (k_…) and ComfyUI's name. */
  readonly aliases: readonly string[];
  readonly run: Sampler;
  /** What "Automatic" runs on A1111 routes. */
  readonly a1111Automatic: ResolvedScheduleId;
  /** A1111's own default schedule option (written into the infotext); absent = "Automatic". */
  readonly a1111Default?: ScheduleId;
  /** A1111 runs one extra step and drops the next-to-last σ (its 'discard_next_to_last_sigma' option). */
  readonly discardPenultimate?: boolean;
  /** Walks diffusers' DDIM endpoints on the discrete schedule. */
  readonly ddim?: boolean;
  /** Noise the sampler draws from nextNoise per step (0, 1 or 2): informative, for GET /samplers. */
  readonly noisePerStep: 0 | 1 | 2;
  /**
   * Two model calls per step: A1111 (sd_samplers_kdiffusion.py, `second_order` option) counts prompt-editing
   * steps in model calls, so its schedules run over 2 × steps for these samplers.
   */
  readonly secondOrder?: boolean;
}

interface ScheduleEntry {
  readonly id: ScheduleId;
  readonly label: string;
  readonly aliases: readonly string[];
  readonly build: (ctx: ScheduleContext, sampler: SamplerEntry) => SigmaPlan;
}

const SAMPLERS: readonly SamplerEntry[] = [
  { id: 'euler', label: 'Euler', aliases: ['k_euler'], run: sampleEuler, a1111Automatic: 'uniform', noisePerStep: 0 },
  { id: 'euler_a', label: 'Euler a', aliases: ['k_euler_a', 'k_euler_ancestral', 'euler_ancestral'], run: sampleEulerAncestral, a1111Automatic: 'uniform', noisePerStep: 1 },
  { id: 'heun', label: 'Heun', aliases: ['k_heun'], run: sampleHeun, a1111Automatic: 'uniform', noisePerStep: 0, secondOrder: true },
  { id: 'lms', label: 'LMS', aliases: ['k_lms'], run: sampleLms, a1111Automatic: 'uniform', noisePerStep: 0 },
  { id: 'dpm2', label: 'DPM2', aliases: ['k_dpm_2', 'dpm_2'], run: sampleDpm2, a1111Automatic: 'karras', a1111Default: 'karras', discardPenultimate: true, noisePerStep: 0, secondOrder: true },
  { id: 'dpm2_a', label: 'DPM2 a', aliases: ['k_dpm_2_a', 'dpm_2_ancestral'], run: sampleDpm2Ancestral, a1111Automatic: 'karras', a1111Default: 'karras', discardPenultimate: true, noisePerStep: 1, secondOrder: true },
  { id: 'dpmpp_2s_a', label: 'DPM++ 2S a', aliases: ['k_dpmpp_2s_a', 'dpmpp_2s_ancestral'], run: sampleDpmpp2sAncestral, a1111Automatic: 'karras', a1111Default: 'karras', noisePerStep: 1, secondOrder: true },
  { id: 'dpmpp_2m', label: 'DPM++ 2M', aliases: ['k_dpmpp_2m'], run: sampleDpmpp2m, a1111Automatic: 'karras', a1111Default: 'karras', noisePerStep: 0 },
  { id: 'dpmpp_sde', label: 'DPM++ SDE', aliases: ['k_dpmpp_sde'], run: sampleDpmppSde, a1111Automatic: 'karras', a1111Default: 'karras', noisePerStep: 2, secondOrder: true },
  { id: 'dpmpp_2m_sde', label: 'DPM++ 2M SDE', aliases: ['k_dpmpp_2m_sde'], run: sampleDpmpp2mSde, a1111Automatic: 'exponential', a1111Default: 'exponential', noisePerStep: 1 },
  { id: 'dpmpp_2m_sde_heun', label: 'DPM++ 2M SDE Heun', aliases: ['k_dpmpp_2m_sde_heun'], run: sampleDpmpp2mSdeHeun, a1111Automatic: 'exponential', a1111Default: 'exponential', noisePerStep: 1 },
  { id: 'dpmpp_3m_sde', label: 'DPM++ 3M SDE', aliases: ['k_dpmpp_3m_sde'], run: sampleDpmpp3mSde, a1111Automatic: 'exponential', a1111Default: 'exponential', discardPenultimate: true, noisePerStep: 1 },
  { id: 'ddim', label: 'DDIM', aliases: [], run: sampleDdim, a1111Automatic: 'a1111_ddim', ddim: true, noisePerStep: 0 },
  { id: 'lcm', label: 'LCM', aliases: ['k_lcm'], run: sampleLcm, a1111Automatic: 'sgm_uniform', noisePerStep: 1 },
];

const SCHEDULES: readonly ScheduleEntry[] = [
  { id: 'discrete', label: 'Discrete', aliases: ['diffusers'], build: (ctx, s) => discreteSchedule(ctx, s.ddim ? 'ddim' : 'euler') },
  { id: 'uniform', label: 'Uniform', aliases: [], build: uniformSchedule },
  { id: 'karras', label: 'Karras', aliases: [], build: karrasSchedule },
  { id: 'exponential', label: 'Exponential', aliases: [], build: exponentialSchedule },
  { id: 'polyexponential', label: 'Polyexponential', aliases: [], build: polyexponentialSchedule },
  { id: 'sgm_uniform', label: 'SGM Uniform', aliases: ['SGMUniform'], build: sgmUniformSchedule },
  { id: 'simple', label: 'Simple', aliases: [], build: simpleSchedule },
];

const AUTOMATIC = { id: 'automatic', label: 'Automatic' } as const;

function norm(s: string): string {
  return s.trim().replace(/\s+/g, ' ').toLowerCase();
}

function namesOf(e: { id: string; label: string; aliases: readonly string[] }): string[] {
  return [e.id, e.label, ...e.aliases].map(norm);
}

const samplerByName = new Map<string, SamplerEntry>();
for (const s of SAMPLERS) for (const n of namesOf(s)) samplerByName.set(n, s);
const scheduleByName = new Map<string, ScheduleEntry | typeof AUTOMATIC>();
scheduleByName.set('automatic', AUTOMATIC);
for (const s of SCHEDULES) for (const n of namesOf(s)) scheduleByName.set(n, s);

/** For GET /samplers: our id, A1111's name, aliases, and what Automatic means on A1111 routes. */
export function listSamplers(): { id: string; label: string; aliases: string[]; a1111Automatic: ResolvedScheduleId; noisePerStep: number }[] {
  return SAMPLERS.map((s) => ({ id: s.id, label: s.label, aliases: [...s.aliases], a1111Automatic: s.a1111Automatic, noisePerStep: s.noisePerStep }));
}

/** For GET /schedulers: "automatic" first, then every schedule. */
export function listSchedulers(): { id: string; label: string; aliases: string[] }[] {
  return [{ id: AUTOMATIC.id, label: AUTOMATIC.label, aliases: [] }, ...SCHEDULES.map((s) => ({ id: s.id, label: s.label, aliases: [...s.aliases] }))];
}

export interface SamplingRequest {
  sampler: string;
  /** Schedule name; empty or absent = "automatic". */
  scheduler?: string;
  flavor: SamplingFlavor;
}

export interface ResolvedSampling {
  readonly flavor: SamplingFlavor;
  readonly samplerId: string;
  /** The schedule actually walked (never "automatic"). */
  readonly scheduleId: ResolvedScheduleId;
  /** The schedule as asked for after name resolution ("automatic" or an id). */
  readonly requestedSchedule: ScheduleId | 'automatic';
  /** The noise table the plan is built on: diffusers' (native) or ldm's (a1111). */
  readonly tableFlavor: NoiseTableFlavor;
  readonly sampler: Sampler;
  /** Model calls per step are 2 (Heun, DPM2, DPM2 a, DPM++ 2S a, DPM++ SDE): prompt schedules count calls. */
  readonly secondOrder: boolean;
  /** Builds this request's plan for a model's scheduler config (pure; cheap: one 1000-entry table). */
  schedule(config: SchedulerConfig, steps: number): SigmaPlan;
  /** Infotext "Sampler:" (A1111's name). */
  readonly a1111Sampler: string;
  /**
   * Infotext "Schedule type:" as A1111 writes it: the selected schedule's label; for Automatic the sampler's
   * own default ("Karras" for DPM++ 2M) or "Automatic" when it has none (Euler, Euler a, LMS, Heun, DDIM);
   * "Discrete" for the native flavour's automatic.
   */
  readonly a1111Schedule: string;
}

function unknownSampler(name: string): LoraserveError {
  const valid = SAMPLERS.map((s) => s.label);
  return new LoraserveError('INVALID_SAMPLER', `unknown sampler "${name}"; valid: ${valid.join(', ')} (or ${SAMPLERS.map((s) => s.id).join(', ')})`, { sampler: name, valid });
}

function unknownScheduler(name: string): LoraserveError {
  const valid = listSchedulers().map((s) => s.label);
  return new LoraserveError('INVALID_SCHEDULER', `unknown schedule "${name}"; valid: ${valid.join(', ')}`, { scheduler: name, valid });
}

/** Splits a legacy combined name ("DPM++ 2M Karras", "dpmpp_2m_karras") into sampler and schedule. */
function splitCombined(name: string): { sampler: SamplerEntry; schedule: ScheduleEntry | typeof AUTOMATIC } | undefined {
  for (const [scheduleName, schedule] of scheduleByName) {
    for (const sep of [' ', '_']) {
      if (!name.endsWith(sep + scheduleName)) continue;
      const sampler = samplerByName.get(name.slice(0, -(scheduleName.length + 1)));
      if (sampler) return { sampler, schedule };
    }
  }
  return undefined;
}

export function resolveSampling(req: SamplingRequest): ResolvedSampling {
  const samplerName = norm(req.sampler ?? '');
  const scheduleName = norm(req.scheduler ?? '');
  let schedule: ScheduleEntry | typeof AUTOMATIC = AUTOMATIC;
  if (scheduleName !== '') {
    const s = scheduleByName.get(scheduleName);
    if (!s) throw unknownScheduler(req.scheduler ?? '');
    schedule = s;
  }
  let sampler = samplerByName.get(samplerName);
  if (!sampler) {
    const split = splitCombined(samplerName);
    if (!split) throw unknownSampler(req.sampler ?? '');
    sampler = split.sampler;
    schedule = split.schedule;
  }

  const flavor = req.flavor;
  const tableFlavor: NoiseTableFlavor = flavor === 'a1111' ? 'ldm' : 'diffusers';
  let resolved: ResolvedScheduleId;
  let a1111Schedule: string;
  if (flavor === 'a1111' && sampler.a1111Automatic === 'a1111_ddim') {
    // A1111's DDIM ignores the Schedule type but writes whatever was selected into the infotext.
    resolved = 'a1111_ddim';
    a1111Schedule = schedule.label;
  } else if (schedule === AUTOMATIC) {
    resolved = flavor === 'a1111' ? sampler.a1111Automatic : 'discrete';
    // A1111 writes its default's label (DPM++ 2M: "Karras"); samplers without one stay "Automatic".
    a1111Schedule = flavor === 'a1111' ? (sampler.a1111Default ? labelOf(sampler.a1111Default) : 'Automatic') : labelOf(resolved);
  } else {
    resolved = (schedule as ScheduleEntry).id;
    a1111Schedule = schedule.label;
  }

  const entry = sampler;
  const discard = flavor === 'a1111' && entry.discardPenultimate === true;
  const build = (ctx: ScheduleContext): SigmaPlan => {
    if (resolved === 'a1111_ddim') return a1111DdimSchedule(ctx);
    const schedule = SCHEDULES.find((s) => s.id === resolved)!;
    return discard ? discardPenultimateSigma(schedule.build({ ...ctx, steps: ctx.steps + 1 }, entry)) : schedule.build(ctx, entry);
  };
  return {
    flavor,
    samplerId: sampler.id,
    scheduleId: resolved,
    requestedSchedule: schedule === AUTOMATIC ? 'automatic' : schedule.id,
    tableFlavor,
    sampler: sampler.run,
    secondOrder: sampler.secondOrder === true,
    schedule: (config, steps) => build({ config, steps, table: buildNoiseTable(config, tableFlavor) }),
    a1111Sampler: sampler.label,
    a1111Schedule,
  };
}

function labelOf(id: ResolvedScheduleId): string {
  return id === 'a1111_ddim' ? 'Automatic' : SCHEDULES.find((s) => s.id === id)!.label;
}
