/**
 * The one place that imports onnxruntime-node (STYLE.md: one chokepoint, after transformers.js
 * `backends/onnx.js`). Everything above this file sees HostTensor and OnnxSession only.
 *
 * - Execution provider chosen by config; one that cannot load falls back to CPU with a warning
 *   that says why (CUDA is not bundled in the npm package; WebGPU needs a Vulkan adapter).
 * - A run validates its feeds first and lists every missing / mis-typed / mis-shaped input in one error.
 * - An onnxruntime failure becomes INFERENCE_FAILED naming each input's dtype and dims.
 *
 * Note (measured with onnxruntime-node 1.30): `session.run()` blocks the JS thread for the whole run,
 * so callers run sessions inside a worker thread (src/jobs/render-worker.ts).
 */
import * as ort from 'onnxruntime-node';
import { LoraserveError } from '../core/errors.js';
import type { DeviceConfig, DeviceKind } from '../core/config.js';
import type { Logger } from '../core/logger.js';
import { silentLogger } from '../core/logger.js';
import type { HostDtype, HostTensor } from '../tensor/host-tensor.js';
import { describeTensor, numel } from '../tensor/host-tensor.js';

// ORT's own logging bypasses pino and goes to stderr; failures reach callers as LoraserveErrors carrying
// ORT's message (and provider fallbacks as one warning), so only fatal ORT messages are let through.
ort.env.logLevel = 'fatal';

export interface IoInfo {
  name: string;
  type: HostDtype | string;
  /** number = fixed dim, string = symbolic, -1 = unknown */
  shape: Array<number | string>;
}

export interface SessionCreateOptions {
  device: DeviceConfig;
  logger?: Logger;
  /** Human name used in errors and logs ("unet", "text_encoder"). */
  label?: string;
  /** onnxruntime's memory-pattern planner; off by default (see create()). */
  enableMemPattern?: boolean;
  graphOptimization?: 'disabled' | 'basic' | 'extended' | 'all';
}

export interface ProviderSupport {
  name: DeviceKind | string;
  bundled: boolean;
}

export function listProviders(): ProviderSupport[] {
  const list = (ort as unknown as { listSupportedBackends?: () => ProviderSupport[] }).listSupportedBackends;
  return list ? list() : [{ name: 'cpu', bundled: true }];
}

export function runtimeVersion(): string {
  return ort.env.versions?.node ?? ort.env.versions?.common ?? 'unknown';
}

function providerOption(device: DeviceConfig): ort.InferenceSession.ExecutionProviderConfig {
  if (device.kind === 'cuda') return { name: 'cuda', deviceId: device.deviceId ?? 0 } as ort.InferenceSession.ExecutionProviderConfig;
  return device.kind;
}

export class OnnxSession {
  readonly label: string;
  readonly path: string;
  readonly provider: DeviceKind;
  readonly inputs: IoInfo[];
  readonly outputs: IoInfo[];
  private readonly inputNames: ReadonlySet<string>;
  /** Feeds already validated (per input name) and their onnxruntime tensors, reused across runs. */
  private readonly checked = new WeakMap<HostTensor, string>();
  private static readonly ortTensors = new WeakMap<HostTensor, ort.Tensor>();
  private session: ort.InferenceSession | null;

  private constructor(label: string, path: string, provider: DeviceKind, session: ort.InferenceSession) {
    this.label = label;
    this.path = path;
    this.provider = provider;
    this.session = session;
    this.inputs = session.inputMetadata.map(toIoInfo);
    this.outputs = session.outputMetadata.map(toIoInfo);
    this.inputNames = new Set(this.inputs.map((i) => i.name));
  }

  /**
   * Creates a session on the configured provider; if that provider cannot load, logs why and uses CPU.
   * `source` is a file path (external data resolved relative to its folder) or the model bytes.
   */
  static async create(source: string | Uint8Array, opts: SessionCreateOptions): Promise<OnnxSession> {
    const logger = opts.logger ?? silentLogger;
    const label = opts.label ?? (typeof source === 'string' ? source : 'model');
    const base: ort.InferenceSession.SessionOptions = {
      graphOptimizationLevel: opts.graphOptimization ?? 'all',
      // Measured on an SD1.5-shaped UNet: no slow second call at a new shape, and 6.9 GB peak RSS instead of 10.4 GB.
      enableMemPattern: opts.enableMemPattern ?? false,
      logSeverityLevel: 3,
      // No busy-waiting between runs: onnxruntime's pool threads otherwise spin after every run and take the
      // cores from the HTTP thread and from the next step's setup (measured as noisy request latencies).
      extra: { session: { intra_op: { allow_spinning: '0' }, inter_op: { allow_spinning: '0' } } },
      ...(opts.device.threads ? { intraOpNumThreads: opts.device.threads } : {}),
    };
    const wanted = opts.device.kind;
    if (wanted !== 'cpu') {
      const support = listProviders().find((p) => p.name === wanted);
      let reason: string | undefined;
      if (!support) reason = `onnxruntime-node does not know the '${wanted}' execution provider`;
      else {
        try {
          // ORT logs a failed provider load as an error on stderr; we report it ourselves, once, as a warning.
          const s = await createRaw(source, { ...base, logSeverityLevel: 4, executionProviders: [providerOption(opts.device)] });
          return new OnnxSession(label, pathOf(source), wanted, s);
        } catch (e) {
          reason = providerFailureReason(wanted, e, support.bundled);
        }
      }
      logger.warn({ component: label, requested: wanted, fallback: 'cpu', reason }, `execution provider '${wanted}' unavailable for ${label}; falling back to CPU`);
    }
    try {
      const s = await createRaw(source, { ...base, executionProviders: ['cpu'] });
      return new OnnxSession(label, pathOf(source), 'cpu', s);
    } catch (e) {
      throw new LoraserveError('MODEL_INVALID', `onnxruntime cannot load ${label}: ${firstLine(e)}`, { component: label, path: pathOf(source) }, { cause: e });
    }
  }

  input(name: string): IoInfo | undefined {
    return this.inputs.find((i) => i.name === name);
  }

  /**
   * Checks feeds against the session's inputs; returns every problem found (empty = fine). A HostTensor is
   * treated as immutable once fed: one that passed for an input is not checked again (LoRA feeds are reused
   * for every step, and there are hundreds of them).
   */
  validateFeeds(feeds: Record<string, HostTensor>): string[] {
    const problems: string[] = [];
    for (const inp of this.inputs) {
      const t = feeds[inp.name];
      if (!t) {
        problems.push(`missing input '${inp.name}' (${inp.type}[${inp.shape.join(',')}])`);
        continue;
      }
      if (this.checked.get(t) === inp.name) continue;
      const before = problems.length;
      if (t.type !== inp.type) problems.push(`input '${inp.name}' is ${t.type}, the model wants ${inp.type}`);
      if (t.dims.length !== inp.shape.length) {
        problems.push(`input '${inp.name}' has rank ${t.dims.length} [${t.dims.join(',')}], the model wants rank ${inp.shape.length} [${inp.shape.join(',')}]`);
      } else {
        inp.shape.forEach((d, i) => {
          if (typeof d === 'number' && d >= 0 && t.dims[i] !== d) {
            problems.push(`input '${inp.name}' dim ${i} is ${t.dims[i]}, the model wants ${d}`);
          }
        });
      }
      if (t.data.length !== numel(t.dims)) problems.push(`input '${inp.name}' has ${t.data.length} values for dims [${t.dims.join(',')}]`);
      if (problems.length === before) this.checked.set(t, inp.name);
    }
    for (const name of Object.keys(feeds)) {
      if (!this.inputNames.has(name)) problems.push(`unexpected input '${name}' (model inputs: ${this.inputs.slice(0, 8).map((i) => i.name).join(', ')}${this.inputs.length > 8 ? ', …' : ''})`);
    }
    return problems;
  }

  async run(feeds: Record<string, HostTensor>, outputNames?: string[]): Promise<Record<string, HostTensor>> {
    const session = this.session;
    if (!session) throw new LoraserveError('INTERNAL', `${this.label} session was released`);
    const problems = this.validateFeeds(feeds);
    if (problems.length > 0) {
      const shown = problems.slice(0, 8).join('; ') + (problems.length > 8 ? `; … and ${problems.length - 8} more` : '');
      throw new LoraserveError('INFERENCE_FAILED', `${this.label}: invalid inputs: ${shown}`, { component: this.label, problems });
    }
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const [name, t] of Object.entries(feeds)) {
      let o = OnnxSession.ortTensors.get(t);
      if (!o) {
        o = new ort.Tensor(t.type, t.data, t.dims);
        OnnxSession.ortTensors.set(t, o);
      }
      ortFeeds[name] = o;
    }
    let result: ort.InferenceSession.OnnxValueMapType;
    try {
      result = outputNames ? await session.run(ortFeeds, outputNames) : await session.run(ortFeeds);
    } catch (e) {
      const shapes = Object.entries(feeds).map(([n, t]) => `${n}: ${describeTensor(t)}`).join(', ');
      throw new LoraserveError('INFERENCE_FAILED', `${this.label} failed on ${shapes}: ${firstLine(e)}`, {
        component: this.label,
        inputs: Object.fromEntries(Object.entries(feeds).map(([n, t]) => [n, { type: t.type, dims: t.dims }])),
      }, { cause: e });
    }
    const out: Record<string, HostTensor> = {};
    for (const [name, v] of Object.entries(result)) {
      const t = v as ort.Tensor;
      out[name] = { type: t.type as HostDtype, data: t.data as HostTensor['data'], dims: [...t.dims] };
    }
    return out;
  }

  async release(): Promise<void> {
    const s = this.session;
    this.session = null;
    if (s) await s.release();
  }
}

function createRaw(source: string | Uint8Array, options: ort.InferenceSession.SessionOptions): Promise<ort.InferenceSession> {
  return typeof source === 'string' ? ort.InferenceSession.create(source, options) : ort.InferenceSession.create(source, options);
}

function pathOf(source: string | Uint8Array): string {
  return typeof source === 'string' ? source : '<bytes>';
}

function toIoInfo(m: ort.InferenceSession.ValueMetadata): IoInfo {
  if (!m.isTensor) return { name: m.name, type: 'non-tensor', shape: [] };
  return { name: m.name, type: m.type as HostDtype, shape: [...m.shape] };
}

function firstLine(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0].slice(0, 500);
}

function providerFailureReason(kind: DeviceKind, e: unknown, bundled: boolean): string {
  const msg = firstLine(e);
  if (kind === 'cuda' && !bundled) {
    return `CUDA libraries are not installed (onnxruntime-node bundles only cpu and webgpu; run the CUDA install step in DEVELOPERS.md): ${msg}`;
  }
  if (kind === 'webgpu' && /adapter/i.test(msg)) {
    return `no WebGPU adapter (needs a Vulkan driver: a GPU driver or Mesa's lavapipe): ${msg}`;
  }
  return msg;
}
