/** Configuration types shared across layers (parsed at the edge: CLI flags, env, HTTP). */

export type DeviceKind = 'cpu' | 'cuda' | 'webgpu';

export interface DeviceConfig {
  kind: DeviceKind;
  /** CUDA device ordinal (cuda only). */
  deviceId?: number;
  /** onnxruntime intra-op threads; 0/undefined = onnxruntime's default (all cores). */
  threads?: number;
}

export const DEFAULT_DEVICE: DeviceConfig = { kind: 'cpu' };

export function parseDeviceKind(s: string): DeviceKind | undefined {
  const v = s.trim().toLowerCase();
  return v === 'cpu' || v === 'cuda' || v === 'webgpu' ? v : undefined;
}

/**
 * What cancellation looks like to the render loop: anything with `aborted` (an AbortSignal, or a view of a
 * flag in shared memory that a worker thread reads between steps without waiting for its event loop).
 */
export interface CancelSignal {
  readonly aborted: boolean;
}

/**
 * Merged-weights UNet sessions for hot LoRA sets (src/engine/merged-unets.ts). `after`: renders of a set
 * (same LoRAs, weights and files; or no LoRAs) before the one that builds its session; 'off' = never.
 * `maxBytes`: what the sessions may take together, each counted at the UNet's size.
 */
export interface LoraMergeConfig {
  after: number | 'off';
  maxBytes?: number;
}

export const DEFAULT_LORA_MERGE_AFTER = 2;
