/**
 * The server's LoRA and embedding providers (src/server/providers.ts) on this process's folders: LoRAs from
 * src/lora's LoraLibrary, embeddings from their safetensors headers. `loraserve serve` wires them; the render
 * workers keep their own library of the same folder (and watch it), so an upload or delete reaches them too.
 */
import { existsSync } from 'node:fs';
import { readdir, readFile, rename, rm } from 'node:fs/promises';
import { extname, join } from 'node:path';
import { LoraserveError, toLoraserveError } from '../core/errors.js';
import { loraInfoFromHeader, parseLora, readSafetensorsHeader, type LoraFileEntry, type LoraLibrary, type LoraTarget } from '../lora/index.js';
import type { EmbeddingListing, EmbeddingProvider, LoraListing, LoraProvider } from '../server/providers.js';

function listing(e: LoraFileEntry, metadata?: Record<string, string>): LoraListing {
  return {
    name: e.name,
    alias: e.alias,
    path: e.file,
    sizeBytes: e.size,
    format: e.info.format,
    ranks: e.info.ranks,
    baseModel: e.info.baseModel,
    triggerWords: e.info.triggerWords,
    metadata,
  };
}

export class LibraryLoraProvider implements LoraProvider {
  /**
   * `targets` gives the loaded model's LoRA-targetable layers (from the render worker's model info), so an
   * upload is checked against the model's shapes before it enters the library; undefined while none is loaded.
   */
  constructor(
    private readonly lib: LoraLibrary,
    private readonly targets: () => Promise<readonly LoraTarget[] | undefined> = async () => undefined,
  ) {}

  get uploadDir(): string {
    return this.lib.dir;
  }

  async list(): Promise<LoraListing[]> {
    return this.lib.list().map((e) => listing(e));
  }

  async find(name: string): Promise<LoraListing | undefined> {
    try {
      const e = this.lib.get(name);
      return e && listing(e);
    } catch {
      return undefined; // an invalid name names nothing
    }
  }

  async suggest(name: string): Promise<string[]> {
    return this.lib.closest(name);
  }

  /**
   * Header-level check: a strict safetensors parse, LoRA keys of a known format, no refused network type.
   * Matching the layers of the loaded model happens in the render worker on first use (LORA_MISMATCH then).
   */
  async validateFile(path: string, name: string): Promise<void> {
    let info;
    try {
      info = loraInfoFromHeader(await readSafetensorsHeader(path, `${name}.safetensors`));
    } catch (e) {
      throw toLoraserveError(e, 'LORA_INVALID');
    }
    if (info.unsupported) throw new LoraserveError('LORA_UNSUPPORTED', `${name}: ${info.unsupported} networks are not supported`, { name, network: info.unsupported });
    if (!info.format) throw new LoraserveError('LORA_INVALID', `${name}: no LoRA weights found (no key of a known LoRA format)`, { name, tensors: info.tensors });
    if (info.baseModel === 'sdxl') throw new LoraserveError('LORA_MISMATCH', `${name} is an SDXL LoRA; this server runs SD 1.x/2.x models`, { name, baseModel: info.baseModel });
    const targets = await this.targets();
    if (!targets) throw new LoraserveError('MODEL_NOT_LOADED', 'the model is still loading; an upload is checked against it, retry shortly', { retryAfterSeconds: 5 });
    // Every tensor decoded and every layer matched against the model's shapes (LORA_INVALID / LORA_MISMATCH).
    parseLora(name, await readFile(path), targets);
  }

  async install(tempPath: string, name: string, options: { overwrite: boolean }): Promise<LoraListing> {
    const dest = join(this.lib.dir, `${name}.safetensors`);
    if (!options.overwrite && existsSync(dest)) throw new LoraserveError('INVALID_ARGUMENT', `a LoRA named '${name}' exists`, { name, reason: 'exists' });
    await rename(tempPath, dest);
    await this.lib.scan();
    const e = this.lib.get(name);
    if (!e) throw new LoraserveError('LORA_INVALID', `${name} was installed but the library could not read it`, { name });
    return listing(e);
  }

  async remove(name: string): Promise<boolean> {
    const e = this.lib.get(name);
    if (!e || e.name !== name) return false;
    await rm(e.file, { force: true });
    await this.lib.scan();
    return true;
  }

  async refresh(): Promise<void> {
    await this.lib.scan();
  }
}

/**
 * Embeddings from a folder: `*.safetensors` textual inversions (`emb_params` [vectors, width], or one 2-D
 * tensor). Other files (.pt/.bin pickles) are not read.
 */
export class FolderEmbeddingProvider implements EmbeddingProvider {
  constructor(private readonly dir: string) {}

  async list(): Promise<EmbeddingListing[]> {
    let names: string[];
    try {
      names = (await readdir(this.dir)).filter((n) => extname(n).toLowerCase() === '.safetensors').sort();
    } catch {
      return [];
    }
    const out: EmbeddingListing[] = [];
    for (const file of names) {
      try {
        const h = await readSafetensorsHeader(join(this.dir, file));
        const t = h.tensors.get('emb_params') ?? (h.tensors.size === 1 ? [...h.tensors.values()][0] : undefined);
        if (!t || t.shape.length !== 2) continue;
        out.push({ name: file.slice(0, -'.safetensors'.length), vectors: t.shape[0], shape: t.shape[1], compatible: true });
      } catch {
        // an unreadable file is simply not offered
      }
    }
    return out;
  }
}
