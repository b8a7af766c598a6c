import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LoraserveError } from '../../../src/core/errors.js';
import { parseSchedulerConfig } from '../../../src/diffusion/scheduler-config.js';
import { SD15_SCHEDULER_JSON, sd15 } from './sd15.js';

test('SD1.5 PNDM config: fields as written, defaults of PNDMScheduler for the rest', () => {
  assert.deepEqual(sd15, {
    className: 'PNDMScheduler',
    numTrainTimesteps: 1000,
    betaStart: 0.00085,
    betaEnd: 0.012,
    betaSchedule: 'scaled_linear',
    trainedBetas: null,
    predictionType: 'epsilon',
    timestepSpacing: 'leading',
    stepsOffset: 1,
    setAlphaToOne: false,
    clipSample: false,
    clipSampleRange: 1,
    useKarrasSigmas: false,
  });
});

// Defaults per class (diffusers v0.21.4 schedulers/scheduling_*.py constructors).
const DEFAULTS: [cls: string | undefined, spacing: string, betas: [number, number], setAlphaToOne: boolean, clip: boolean][] = [
  [undefined, 'linspace', [0.0001, 0.02], true, false],
  ['PNDMScheduler', 'leading', [0.0001, 0.02], false, false],
  ['DDIMScheduler', 'leading', [0.0001, 0.02], true, true],
  ['EulerDiscreteScheduler', 'linspace', [0.0001, 0.02], true, false],
  ['DPMSolverMultistepScheduler', 'linspace', [0.0001, 0.02], true, false],
  ['HeunDiscreteScheduler', 'linspace', [0.00085, 0.012], true, false],
  ['SomeFutureScheduler', 'linspace', [0.0001, 0.02], true, false],
];
for (const [cls, spacing, [b0, b1], setAlphaToOne, clip] of DEFAULTS) {
  test(`defaults for ${cls ?? 'no _class_name'}`, () => {
    const c = parseSchedulerConfig(cls ? { _class_name: cls } : {});
    assert.equal(c.timestepSpacing, spacing);
    assert.deepEqual([c.betaStart, c.betaEnd, c.betaSchedule, c.predictionType, c.stepsOffset], [b0, b1, 'linear', 'epsilon', 0]);
    assert.equal(c.setAlphaToOne, setAlphaToOne);
    assert.equal(c.clipSample, clip);
  });
}

test('v_prediction, trailing spacing and trained_betas are read', () => {
  const betas = Array.from({ length: 10 }, (_, i) => 0.001 * (i + 1));
  const c = parseSchedulerConfig({ num_train_timesteps: 10, prediction_type: 'v_prediction', timestep_spacing: 'trailing', trained_betas: betas });
  assert.equal(c.predictionType, 'v_prediction');
  assert.equal(c.timestepSpacing, 'trailing');
  assert.deepEqual(Array.from(c.trainedBetas!), betas);
});

const BAD: [json: unknown, field: string | null][] = [
  [null, null],
  [[1, 2], null],
  [{ ...SD15_SCHEDULER_JSON, prediction_type: 'sample' }, 'prediction_type'],
  [{ ...SD15_SCHEDULER_JSON, prediction_type: 'eps' }, 'prediction_type'],
  [{ ...SD15_SCHEDULER_JSON, beta_schedule: 'cosine' }, 'beta_schedule'],
  [{ ...SD15_SCHEDULER_JSON, beta_start: '0.00085' }, 'beta_start'],
  [{ ...SD15_SCHEDULER_JSON, beta_end: 1.5 }, 'beta_end'],
  [{ ...SD15_SCHEDULER_JSON, num_train_timesteps: 999.5 }, 'num_train_timesteps'],
  [{ ...SD15_SCHEDULER_JSON, steps_offset: -1 }, 'steps_offset'],
  [{ ...SD15_SCHEDULER_JSON, timestep_spacing: 'uniform' }, 'timestep_spacing'],
  [{ ...SD15_SCHEDULER_JSON, set_alpha_to_one: 'false' }, 'set_alpha_to_one'],
  [{ ...SD15_SCHEDULER_JSON, trained_betas: [0.1, 0.2] }, 'trained_betas'],
  [{ ...SD15_SCHEDULER_JSON, rescale_betas_zero_snr: true }, 'rescale_betas_zero_snr'],
  [{ ...SD15_SCHEDULER_JSON, thresholding: true }, 'thresholding'],
];
for (const [json, field] of BAD) {
  test(`rejects ${field ?? JSON.stringify(json)} with MODEL_INVALID naming the field`, () => {
    assert.throws(
      () => parseSchedulerConfig(json),
      (e: unknown) => e instanceof LoraserveError && e.code === 'MODEL_INVALID' && (field === null || (e.message.includes(field) && e.details?.field === field)),
    );
  });
}

test('"sample" prediction is refused with a reason', () => {
  assert.throws(() => parseSchedulerConfig({ prediction_type: 'sample' }), /x0-prediction.*not support/);
});
