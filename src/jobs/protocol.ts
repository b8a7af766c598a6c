/** Messages between the render worker thread and its host. Plain data only (structured clone). */
import type { DeviceConfig, LoraMergeConfig } from '../core/config.js';
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
  /** The layers a LoRA may target (as src/lora's LoraTarget), so a LoRA file can be checked without a render. */
  loraTargets: Array<{ part: 'unet' | 'te'; module: string; kind: 'linear' | 'conv'; inFeatures: number; outFeatures: number; kernel?: [number, number] }>;
}

/** LoRA cache figures a worker reports with each result. */
export interface LoraCacheStats {
  /** Requests whose LoRAs were all parsed and prepared already. */
  hits: number;
  /** LoRA files parsed and put into feed layout (first use, changed file, or after eviction). */
  misses: number;
  /** Misses for a name seen before: its parsed form had been evicted (or the file changed). */
  evictions: number;
  entries: number;
  bytes: number;
  /** LoRA names whose parsed, prepared form the worker holds now. */
  cached?: string[];
  /** Merged-weights UNet sessions (src/engine/merged-unets.ts): held now, built so far, renders that used one. */
  mergedSessions?: number;
  mergedBuilds?: number;
  mergedHits?: number;
}

export type HostToWorker =
  | { type: 'load'; modelDir: string; device: DeviceConfig; loraDir?: string; embeddingsDir?: string; loraCacheBytes?: number; loraMerge?: LoraMergeConfig }
  | { type: 'render'; id: string; request: RenderRequest; cancelFlag: Int32Array; rescanLoras?: boolean }
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
  | { type: 'result'; id: string; result: RenderResult; loraCache?: LoraCacheStats }
  | { type: 'failed'; id: string; error: ErrorJson };
