/**
 * "Keep what wins" (issue #4): hot LoRA sets get a UNet session of their own with the LoRAs merged into its
 * weights, so their steps cost what the unmodified model costs; everything else renders through the
 * branched graph, whose switching is instant but whose steps pay for the branches (bench/lora.ts).
 *
 * Policy, per key (the LoRA set with its exact weights and file hashes; '' = no LoRAs):
 *   - a render whose key already has a merged session uses it;
 *   - the render that is the key's (after + 1)-th use builds one first (it waits for the build: a session
 *     creation blocks the render thread, tiny ~0.5 s, SD1.5-shaped fp32 CPU ~10 s), then uses it;
 *   - sessions are kept least-recently-used first out, as many as `maxBytes` holds at the UNet's weight size.
 * `after` undefined turns merging off (every render on the branches: results stable to the last bit
 * between a set's first and later renders; merged and branched agree to ~1e-6 relative, not bit for bit).
 */
import { dirname } from 'node:path';
import type { Logger } from '../core/logger.js';
import { silentLogger } from '../core/logger.js';
import type { OnnxSession } from '../onnx/runtime.js';
import { openMergedModel, type LayerDelta } from '../onnx/weight-merge.js';
import type { FeedSet } from './lora-feeds.js';
import { unetExportBytes } from './model-hash.js';
import type { LoadedModel } from './model.js';

export interface MergeOptions {
  /** Renders of a key before the one that builds its merged session; undefined = never merge. */
  after?: number;
  /** Bytes all merged sessions may take together; each counts as the UNet's weights. */
  maxBytes?: number;
  cacheRoot?: string;
  logger?: Logger;
}

export interface MergeStats {
  sessions: number;
  capacity: number;
  builds: number;
  hits: number;
  buildMs: number;
}

/** How many renders of each key were seen (bounded: a long-running server sees endless weight tweaks). */
const MAX_TRACKED_KEYS = 1024;

export class MergedUnets {
  private readonly uses = new Map<string, number>();
  private readonly sessions = new Map<string, OnnxSession>();
  private readonly logger: Logger;
  readonly capacity: number;
  private readonly counters = { builds: 0, hits: 0, buildMs: 0 };
  private readonly failed = new Set<string>();

  constructor(
    private readonly model: LoadedModel,
    private readonly opts: MergeOptions = {},
  ) {
    this.logger = opts.logger ?? silentLogger;
    this.unetBytes = unetExportBytes(dirname(model.files.unet));
    this.capacity = opts.after === undefined ? 0 : Math.min(16, Math.floor((opts.maxBytes ?? 0) / Math.max(1, this.unetBytes)));
  }

  /** What one merged session is counted as: the export's UNet files (model.onnx and its external data). */
  readonly unetBytes: number;

  stats(): MergeStats {
    return { sessions: this.sessions.size, capacity: this.capacity, ...this.counters };
  }

  /** Keys with a merged session now, most recently used last. */
  get keys(): string[] {
    return [...this.sessions.keys()];
  }

  /**
   * The session a render of `key` should use, building it when this use earns one; undefined = the
   * branched graph with `feeds`. `feeds` are the UNet branch feeds of the same set (the merge source).
   */
  async sessionFor(key: string, feeds: FeedSet): Promise<OnnxSession | undefined> {
    if (this.capacity < 1) return undefined;
    const held = this.sessions.get(key);
    if (held) {
      this.sessions.delete(key);
      this.sessions.set(key, held);
      this.counters.hits++;
      return held;
    }
    const n = (this.uses.get(key) ?? 0) + 1;
    this.uses.delete(key);
    this.uses.set(key, n);
    if (this.uses.size > MAX_TRACKED_KEYS) this.uses.delete(this.uses.keys().next().value!);
    if (n <= this.opts.after! || this.failed.has(key)) return undefined;
    try {
      return await this.build(key, feeds);
    } catch (e) {
      // The branches still render this set correctly: a failed build (disk full for the merged weights, device
      // memory) costs speed, not the request. Not retried for this key.
      this.failed.add(key);
      if (this.failed.size > MAX_TRACKED_KEYS) this.failed.delete(this.failed.values().next().value!);
      this.logger.warn({ error: (e as Error).message }, 'could not build a merged-weights UNet; this LoRA set stays on the branched graph');
      return undefined;
    }
  }

  private deltas(feeds: FeedSet): LayerDelta[] {
    const out: LayerDelta[] = [];
    const graph = this.model.lora.unet;
    for (const b of graph.plan.branches) {
      const down = feeds[b.downInput];
      const up = feeds[b.upInput];
      // Untouched branches: zero-size feeds, or rank-1 zeros on providers that need them (model.ts).
      if (!down || !up || down.dims[0] === 0 || down === graph.empty[b.downInput]) continue;
      const layer = graph.layers.get(b.module)!;
      out.push({ weightName: layer.weightName, layout: layer.layout, down, up });
    }
    return out;
  }

  private async build(key: string, feeds: FeedSet): Promise<OnnxSession> {
    while (this.sessions.size >= this.capacity) {
      const [oldKey, old] = this.sessions.entries().next().value!;
      this.sessions.delete(oldKey);
      await old.release();
    }
    const t0 = performance.now();
    const deltas = this.deltas(feeds);
    const session = await openMergedModel(this.model.files.unet, deltas, {
      device: this.model.device,
      logger: this.logger,
      label: 'unet(merged)',
      cacheRoot: this.opts.cacheRoot,
    });
    const ms = performance.now() - t0;
    this.counters.builds++;
    this.counters.buildMs += ms;
    this.sessions.set(key, session);
    this.logger.info({ layers: deltas.length, ms: Math.round(ms), sessions: this.sessions.size }, deltas.length ? 'built a merged-weights UNet for a hot LoRA set' : 'opened the plain UNet for LoRA-free renders');
    return session;
  }

  async release(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(all.map((s) => s.release()));
  }
}
