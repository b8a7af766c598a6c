/**
 * The LoRA files a render needs, by name and sha256, as the API process knows them: what a render worker
 * without a shared disk must hold before it starts the job (src/jobs/file-sync.ts `ensure`).
 *
 * Names come from the request's list and from the prompt's `<lora:…>` tags (the same parser the render uses,
 * src/text/extra-networks.ts; tags in the negative prompt stay text, as in lora-list.ts), each resolved by the
 * library as the render will resolve it (stem, case, alias). A name the library does not know is left out: the
 * server's edge refuses it, or the render reports UNKNOWN_LORA — this list never decides that.
 * Embeddings are not listed: every worker holds all of them (prompts name them implicitly).
 */
import { basename } from 'node:path';
import { parseExtraNetworks } from '../text/extra-networks.js';
import type { RenderRequest } from './request.js';

export interface JobFile {
  kind: 'lora';
  /** The library's own name (file stem), whatever spelling or alias the request used. */
  name: string;
  /** File name in the LoRA folder. */
  file: string;
  sha256: string;
}

/** What jobFiles needs of a LoraLibrary (src/lora/library.ts). */
export interface LoraHashLookup {
  get(name: string): { name: string; file: string } | undefined;
  hashes(name: string): Promise<{ sha256: string }>;
}

export async function jobFiles(request: Pick<RenderRequest, 'prompt' | 'loras'>, library: LoraHashLookup): Promise<JobFile[]> {
  const names = [...(request.loras ?? []).map((l) => l.name), ...parseExtraNetworks(request.prompt).loras.map((t) => t.name)];
  const out = new Map<string, JobFile>();
  for (const asked of names) {
    let entry: ReturnType<LoraHashLookup['get']>;
    try {
      entry = library.get(asked);
    } catch {
      continue; // an invalid name names nothing
    }
    if (!entry || out.has(entry.name)) continue;
    const { sha256 } = await library.hashes(entry.name);
    out.set(entry.name, { kind: 'lora', name: entry.name, file: basename(entry.file), sha256 });
  }
  return [...out.values()];
}
