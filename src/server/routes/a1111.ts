/**
 * AUTOMATIC1111-compatible routes under /sdapi/v1, so existing A1111 clients work unchanged: txt2img with
 * A1111's field names, defaults and answer shape; progress with a live preview; interrupt and skip; options;
 * the model, sampler, schedule, LoRA and embedding lists; png-info. LoRAs come from `<lora:name:w>` tags in
 * the prompt, as in A1111.
 *
 * A1111 runs one generation at a time with one global state; here several clients share a queue, so
 * "the current generation" (progress, interrupt, skip) is the A1111 request whose job is running.
 */
import { Type } from '@fastify/type-provider-typebox';
import { isLoraserveError, LoraserveError } from '../../core/errors.js';
import { INFOTEXT_VERSION } from '../../core/version.js';
import { listSamplers, listSchedulers } from '../../diffusion/registry.js';
import type { JobImage, ModelInfo } from '../../jobs/queue.js';
import type { Plugin } from '../context.js';
import { applyOptions, checkpointTitle, defaultOptions, jobTimestamp, planTxt2Img, Txt2ImgBody, txt2imgInfo, type A1111Options } from '../edge/a1111.js';
import { checkRenderRequest, loadedModel } from '../edge/check.js';
import { a1111Parameters, readPngInfo, requirePng } from '../edge/png-info.js';
import { decodeBase64Image, toBase64 } from '../http.js';
import { renderAndWait } from '../render.js';
import { previewJson } from '../sse.js';
import { ImageBody } from './shared.js';

/** One A1111 txt2img call in progress (n_iter jobs, one after another). */
interface A1111Run {
  jobId?: string;
  iteration: number;
  iterations: number;
  startedAt: number;
  timestamp: string;
  interrupted: boolean;
  skipped: boolean;
}

const TAGS = ['a1111'];

export const a1111Routes: Plugin = async (app, { ctx }) => {
  const runs = new Set<A1111Run>();
  let options: A1111Options | undefined;
  let lastTimestamp = '0';

  const currentOptions = (model: ModelInfo | undefined): A1111Options => {
    options ??= defaultOptions(model);
    if (!options.sd_model_checkpoint && model) options.sd_model_checkpoint = checkpointTitle(model);
    return options;
  };

  /** Runs whose job is rendering now (what A1111's interrupt and skip act on). */
  const activeRuns = async (): Promise<A1111Run[]> => {
    const out: A1111Run[] = [];
    for (const run of runs) if (run.jobId && (await ctx.queue.get(run.jobId))?.state === 'running') out.push(run);
    return out;
  };

  app.post('/sdapi/v1/txt2img', { schema: { tags: TAGS, summary: 'A1111 txt2img', body: Txt2ImgBody } }, async (request, reply) => {
    const model = await loadedModel(ctx);
    const plan = planTxt2Img(request.body, currentOptions(model), model, ctx.config.previewEvery);
    if (plan.params.n_iter > ctx.config.limits.maxBatch) {
      throw new LoraserveError('INVALID_ARGUMENT', `n_iter ${plan.params.n_iter} is over the limit of ${ctx.config.limits.maxBatch}`, { field: 'n_iter' });
    }
    const sampling = await checkRenderRequest(ctx, plan.jobs[0]);
    const run: A1111Run = { iteration: 0, iterations: plan.jobs.length, startedAt: Date.now(), timestamp: jobTimestamp(), interrupted: false, skipped: false };
    lastTimestamp = run.timestamp;
    runs.add(run);
    const images: JobImage[] = [];
    try {
      for (const [k, job] of plan.jobs.entries()) {
        if (run.interrupted) break;
        run.iteration = k;
        try {
          const rec = await renderAndWait(ctx, request, reply, job, { labels: { api: 'a1111', iteration: String(k) }, onQueued: (id) => (run.jobId = id) });
          images.push(...(rec.images ?? []));
        } catch (e) {
          // Interrupt ends the call with what is done; skip moves on to the next iteration (A1111 semantics).
          if (isLoraserveError(e) && e.code === 'CANCELLED' && (run.interrupted || run.skipped)) {
            run.skipped = false;
            continue;
          }
          throw e;
        }
      }
    } finally {
      runs.delete(run);
    }
    const info = txt2imgInfo(plan, {
      samplerLabel: sampling.a1111Sampler,
      scheduleLabel: sampling.a1111Schedule,
      infotexts: images.map((i) => i.infotext),
      model,
      timestamp: run.timestamp,
      version: INFOTEXT_VERSION,
    });
    return { images: plan.params.send_images ? images.map((i) => toBase64(i.png)) : [], parameters: plan.params, info };
  });

  app.get(
    '/sdapi/v1/progress',
    {
      schema: {
        tags: TAGS,
        summary: 'Progress of the running A1111 generation, with a preview',
        querystring: Type.Object({ skip_current_image: Type.Optional(Type.Boolean({ default: false })) }),
      },
    },
    async (request) => {
      const running = await ctx.queue.list({ states: ['running'] });
      const mine = [...runs].find((r) => running.some((j) => j.id === r.jobId));
      const job = mine ? running.find((j) => j.id === mine.jobId) : running[0];
      const idle = {
        progress: 0,
        eta_relative: 0,
        state: { skipped: false, interrupted: false, stopping_generation: false, job: '', job_count: 0, job_timestamp: lastTimestamp, job_no: 0, sampling_step: 0, sampling_steps: 0 },
        current_image: null,
        textinfo: null,
      };
      if (!job) return idle;
      const step = job.progress?.step ?? 0;
      const total = job.progress?.total ?? job.request.steps;
      const jobCount = mine?.iterations ?? 1;
      const jobNo = mine?.iteration ?? 0;
      const progress = Math.min(1, (jobNo + (total > 0 ? step / total : 0)) / jobCount);
      // A1111 extrapolates from the time since the call began; a single job knows its own ETA.
      const since = (Date.now() - (mine?.startedAt ?? job.startedAt ?? Date.now())) / 1000;
      const eta = mine && progress > 0 ? since / progress - since : (job.progress?.etaMs ?? 0) / 1000;
      const rec = request.query.skip_current_image ? undefined : await ctx.queue.get(job.id);
      return {
        progress,
        eta_relative: Math.max(0, eta),
        state: {
          skipped: mine?.skipped ?? false,
          interrupted: mine?.interrupted ?? false,
          stopping_generation: false,
          job: mine ? 'scripts_txt2img' : `job ${job.id}`,
          job_count: jobCount,
          job_timestamp: mine?.timestamp ?? lastTimestamp,
          job_no: jobNo,
          sampling_step: step,
          sampling_steps: total,
        },
        current_image: rec?.preview ? (await previewJson(rec.preview)).png : null,
        textinfo: null,
      };
    },
  );

  app.post('/sdapi/v1/interrupt', { schema: { tags: TAGS, summary: 'Stop the running A1111 generation (returns what is done)' } }, async (request) => {
    for (const run of await activeRuns()) {
      run.interrupted = true;
      await ctx.queue.cancel(run.jobId!);
      request.log.info({ jobId: run.jobId }, 'A1111 interrupt');
    }
    return {};
  });

  app.post('/sdapi/v1/skip', { schema: { tags: TAGS, summary: 'Skip the running image batch and go on with the next n_iter iteration' } }, async (request, reply) => {
    for (const run of await activeRuns()) {
      run.skipped = true;
      await ctx.queue.cancel(run.jobId!);
      request.log.info({ jobId: run.jobId }, 'A1111 skip');
    }
    return reply.send(null);
  });

  app.get('/sdapi/v1/options', { schema: { tags: TAGS, summary: 'Settings this server understands' } }, async () => currentOptions((await ctx.queue.models())[0]));

  app.post(
    '/sdapi/v1/options',
    { schema: { tags: TAGS, summary: 'Change settings (unknown ones are ignored, as in A1111)', body: Type.Record(Type.String(), Type.Unknown()) } },
    async (request, reply) => {
      const model = (await ctx.queue.models())[0];
      const { options: next, ignored } = applyOptions(currentOptions(model), request.body, model);
      options = next;
      if (ignored.length) request.log.debug({ ignored }, 'A1111 options ignored');
      return reply.send(null);
    },
  );

  app.get('/sdapi/v1/sd-models', { schema: { tags: TAGS, summary: 'Loaded checkpoints' } }, async () =>
    (await ctx.queue.models()).map((m) => ({ title: checkpointTitle(m), model_name: m.name, hash: m.hash, sha256: m.sha256, filename: m.dir, config: null })),
  );

  app.get('/sdapi/v1/samplers', { schema: { tags: TAGS, summary: 'Samplers (A1111 names)' } }, async () =>
    listSamplers().map((s) => ({
      name: s.label,
      aliases: [s.id, ...s.aliases],
      options: s.a1111Automatic === 'karras' || s.a1111Automatic === 'exponential' ? { scheduler: s.a1111Automatic } : {},
    })),
  );

  app.get('/sdapi/v1/schedulers', { schema: { tags: TAGS, summary: 'Schedule types' } }, async () =>
    listSchedulers().map((s) => ({
      name: s.id,
      label: s.label,
      aliases: s.aliases.length ? s.aliases : null,
      default_rho: s.id === 'karras' ? 7 : s.id === 'polyexponential' ? 1 : -1,
      need_inner_model: s.id === 'uniform' || s.id === 'sgm_uniform' || s.id === 'simple',
    })),
  );

  app.get('/sdapi/v1/loras', { schema: { tags: TAGS, summary: 'LoRAs (use them with <lora:name:weight> in the prompt)' } }, async () =>
    ctx.loras ? (await ctx.loras.list()).map((l) => ({ name: l.name, alias: l.alias ?? l.name, path: l.path, metadata: l.metadata ?? {} })) : [],
  );

  app.post('/sdapi/v1/refresh-loras', { schema: { tags: TAGS, summary: 'Rescan the LoRA folder' } }, async (_request, reply) => {
    await ctx.loras?.refresh();
    return reply.send(null);
  });

  app.get('/sdapi/v1/embeddings', { schema: { tags: TAGS, summary: 'Textual-inversion embeddings' } }, async () => {
    const loaded: Record<string, unknown> = {};
    const skipped: Record<string, unknown> = {};
    for (const e of await ctx.embeddings.list()) {
      const item = { step: e.step ?? null, sd_checkpoint: e.sdCheckpoint ?? null, sd_checkpoint_name: e.sdCheckpointName ?? null, shape: e.shape, vectors: e.vectors };
      (e.compatible ? loaded : skipped)[e.name] = item;
    }
    return { loaded, skipped };
  });

  app.post('/sdapi/v1/png-info', { schema: { tags: TAGS, summary: 'Generation parameters stored in a PNG', body: ImageBody } }, async (request) => {
    const info = readPngInfo(requirePng(decodeBase64Image(request.body.image, 'image'), 'image'));
    return { info: info.parameters, items: info.other, parameters: a1111Parameters(info) };
  });

  // Lists some A1111 clients read at start-up; this server has none of these.
  for (const path of ['/sdapi/v1/sd-vae', '/sdapi/v1/upscalers', '/sdapi/v1/prompt-styles']) {
    app.get(path, { schema: { tags: TAGS, summary: 'Always empty on this server' } }, async () => []);
  }
};
