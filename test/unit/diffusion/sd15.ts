/** Stable Diffusion 1.5's public scheduler_config.json (runwayml/stable-diffusion-v1-5), for unit tests. */
import { parseSchedulerConfig } from '../../../src/diffusion/scheduler-config.js';

export const SD15_SCHEDULER_JSON = {
  _class_name: 'PNDMScheduler',
  _diffusers_version: '0.6.0',
  beta_end: 0.012,
  beta_schedule: 'scaled_linear',
  beta_start: 0.00085,
  num_train_timesteps: 1000,
  set_alpha_to_one: false,
  skip_prk_steps: true,
  steps_offset: 1,
  trained_betas: null,
  clip_sample: false,
};

export const sd15 = parseSchedulerConfig(SD15_SCHEDULER_JSON);

export function sd15With(overrides: Record<string, unknown>) {
  return parseSchedulerConfig({ ...SD15_SCHEDULER_JSON, ...overrides });
}
