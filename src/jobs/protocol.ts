/** Messages between the render worker thread and its host. Plain data only (structured clone). */
import type { DeviceConfig } from '../core/config.js';
import type { RenderProgress, RenderRequest, RenderResult } from '../engine/request.js';

export interface ModelInfo {
  name: string;
  dir: string;
  hash: string;
  sha256: string;
  provider: string;
  sizeMultiple: number;
  precision: 'float32' | 'float16';
  predictionType: string;
}

export type HostToWorker =
  | { type: 'load'; modelDir: string; device: DeviceConfig; loraDir?: string; embeddingsDir?: string }
  | { type: 'render'; id: string; request: RenderRequest; cancelFlag: Int32Array }
  | { type: 'shutdown' };

export interface ErrorJson {
  code: string;
  message: string;
  details?: Record<string, unknown>;
}

export type WorkerToHost =
  | { type: 'loaded'; info: ModelInfo }
  | { type: 'load-failed'; error: ErrorJson }
  | { type: 'log'; level: 'debug' | 'info' | 'warn' | 'error'; obj: Record<string, unknown>; msg: string }
  | { type: 'progress'; id: string; progress: RenderProgress }
  | { type: 'result'; id: string; result: RenderResult }
  | { type: 'failed'; id: string; error: ErrorJson };
