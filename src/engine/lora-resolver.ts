/**
 * Per request: LoRA names and weights → the feeds of the load-time low-rank branches.
 *
 * Parsed adapters are cached by the library (bounded by bytes; keyed by file identity and the model's
 * targets); the stacked down factors of a LoRA combination and its scaled up factors by LoraFactorCache
 * (keyed by the layer objects, so a changed file never reuses stale data): a repeated request builds nothing,
 * new weights for a seen set rebuild only the up factors.
 * Nothing is mutated in place, so renders with different LoRA sets never see each other's state.
 */
import type { Logger } from '../core/logger.js';
import { silentLogger } from '../core/logger.js';
import { LoraserveError } from '../core/errors.js';
import { planLoraScales, unetLayoutFromModules, type LoraAdapter, type LoraLibrary, type LoraTarget, type UnetLayout } from '../lora/index.js';
import { feedsForPlan, LoraFactorCache, warmUpStacking, type LoraFeeds } from './lora-feeds.js';
import type { LoadedModel } from './model.js';
import type { MergedUnets } from './merged-unets.js';
import type { LoraSpec } from './request.js';
import type { OnnxSession } from '../onnx/runtime.js';

export interface ResolvedLoras {
  feeds: LoraFeeds;
  /** For the infotext's `Lora hashes` (A1111's short hash of each file, in request order). */
  hashes: Array<{ name: string; hash: string }>;
  /** Milliseconds spent resolving (parse on a cache miss + feed build, or a merged-session build), for metrics. */
  ms: number;
  /**
   * A UNet session with this set merged into its weights (src/engine/merged-unets.ts): run it without the
   * branch feeds. Undefined: run the branched UNet with `feeds.unet`.
   */
  unet?: OnnxSession;
  /** The render is over: the factor memory its feeds use may be reused (see FeedLease). */
  release?: () => void;
}

/** A render without LoRAs: every branch at rank 0. */
export function noLoras(model: LoadedModel): ResolvedLoras {
  return { feeds: { unet: model.lora.unet.empty, te: model.lora.te.empty, signature: '' }, hashes: [], ms: 0 };
}

/**
 * Total rank the pre-touched factor memory is sized for at first, on every branch (three rank-16 LoRAs, or one
 * of rank 32 on a LoCon's every layer); it then grows to the largest set built so far.
 */
const HEADROOM_RANK = 32;

export class LoraResolver {
  /** Text-encoder then UNet targets, one array for the resolver's life (the library keys its cache by it). */
  readonly targets: readonly LoraTarget[];
  private readonly layout: UnetLayout;
  private readonly factors: LoraFactorCache;
  /** Adapters resolved before (a new object after a library eviction or a file change counts as a miss). */
  private readonly seen = new WeakSet<LoraAdapter>();
  private readonly seenNames = new Set<string>();
  /** Cache counters for metrics: see LoraCacheStats in src/jobs/protocol.ts. */
  readonly counters = { hits: 0, misses: 0, evictions: 0 };
  private readonly logger: Logger;
  private readonly merged: MergedUnets | undefined;
  private readonly headroom: number;
  /** Bytes of new factors the most demanding resolve so far built. */
  private largestSet = 0;

  constructor(
    private readonly model: LoadedModel,
    private readonly library: LoraLibrary | undefined,
    opts: { maxStackBytes?: number; logger?: Logger; merged?: MergedUnets } = {},
  ) {
    this.merged = opts.merged;
    this.targets = [...model.lora.te.targets, ...model.lora.unet.targets];
    this.layout = unetLayoutFromModules(model.lora.unet.targets.map((t) => t.module));
    this.factors = new LoraFactorCache(opts.maxStackBytes);
    const perRank = [...model.lora.unet.plan.branches, ...model.lora.te.plan.branches].reduce(
      (n, b) => n + (b.inFeatures * b.kernel[0] * b.kernel[1] + b.outFeatures) * (b.dtype === 'float16' ? 2 : 4),
      0,
    );
    this.headroom = perRank * HEADROOM_RANK;
    this.logger = opts.logger ?? silentLogger;
  }

  /**
   * Touches, now, the factor memory the next never-seen LoRA set will need (src/engine/feed-arena.ts): as much
   * as the largest set built so far, at least HEADROOM_RANK on every branch, within the factor cache's budget.
   * Call while no render waits (at load and after each render); a set that does not fit is built in fresh
   * memory, only slower.
   */
  prepare(): void {
    warmUpStacking();
    this.factors.topUp(Math.min(this.factors.maxBytes, Math.max(this.headroom, this.largestSet)));
  }

  /** Bytes of pre-touched factor memory (in use or free). */
  get arenaBytes(): number {
    return this.factors.arena.reservedBytes;
  }

  /** Bytes held by stacked and scaled factors (a single LoRA's down factor is fed without a copy). */
  get stackedBytes(): number {
    return this.factors.bytes;
  }

  async resolve(specs: readonly LoraSpec[] | undefined): Promise<ResolvedLoras> {
    const t0 = performance.now();
    if (!specs || specs.length === 0) {
      const none = noLoras(this.model);
      const unet = await this.merged?.sessionFor('', none.feeds.unet);
      return { ...none, unet, ms: performance.now() - t0 };
    }
    const library = this.library;
    if (!library) throw new LoraserveError('UNKNOWN_LORA', `unknown LoRA '${specs[0].name}': no LoRA folder is configured`, { name: specs[0].name });
    const adapters = new Map<string, LoraAdapter>();
    let missed = false;
    for (const s of specs) {
      // A file uploaded a moment ago may not have reached the folder watcher yet: rescan once before failing.
      if (!library.get(s.name)) await library.scan();
      const adapter = await library.load(s.name, this.targets);
      if (!this.seen.has(adapter)) {
        missed = true;
        this.counters.misses++;
        if (this.seenNames.has(s.name)) this.counters.evictions++;
        this.seenNames.add(s.name);
        this.seen.add(adapter);
      }
      adapters.set(s.name, adapter);
    }
    if (!missed) this.counters.hits++;
    const plan = planLoraScales(specs, adapters, { layout: this.layout });
    const full = await Promise.all(specs.map(async (s) => ({ name: s.name, hashes: await library.hashes(s.name) })));
    const hashes = full.map((h) => ({ name: h.name, hash: h.hashes.short }));

    const lease = this.factors.lease();
    const built = this.factors.builtBytes;
    const feeds = feedsForPlan(plan, this.model.lora.unet.plan, this.model.lora.te.plan, { unet: this.model.lora.unet.empty, te: this.model.lora.te.empty }, this.factors, lease);
    this.largestSet = Math.max(this.largestSet, this.factors.builtBytes - built);
    // Same signature and same file contents ⇒ the same merged weights.
    const key = `${plan.signature}|${full.map((h) => `${h.name}=${h.hashes.sha256}`).sort().join(',')}`;
    const unet = await this.merged?.sessionFor(key, feeds.unet);
    const ms = performance.now() - t0;
    this.logger.debug({ loras: specs.map((s) => s.name), ms: Math.round(ms), maxRank: plan.maxRank, merged: unet !== undefined }, 'LoRA feeds built');
    return { feeds, hashes, ms, unet, release: () => lease.release() };
  }
}
