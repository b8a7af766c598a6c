/**
 * The LoRAs a render applies: the prompt's `<lora:name:w>` / `<lora:name:te:unet>` tags merged with the
 * request's explicit list (src/text/extra-networks.ts mergeLoraLists). On a conflict the request's entry wins:
 * an API caller's list is the deliberate setting, the prompt is often pasted. Tags in the negative prompt stay
 * text, as in A1111.
 */
import { LoraserveError } from '../core/errors.js';
import { mergeLoraLists, parseExtraNetworks } from '../text/extra-networks.js';
import type { LoraSpec } from './request.js';

export function lorasForRequest(prompt: string, requested: readonly LoraSpec[] = []): LoraSpec[] {
  const tags = parseExtraNetworks(prompt).loras;
  const byName = new Map(requested.map((r) => [r.name, r]));
  const uses = mergeLoraLists(
    tags,
    requested.map((r) => ({ name: r.name, te: r.te ?? r.weight, unet: r.unet ?? r.weight })),
  );
  return uses.map((u) => {
    if (u.from === 'request') return byName.get(u.name)!;
    if (u.dyn !== undefined) {
      // A1111's dyn= truncates a LoRA's rank at run time; applying the full rank instead would be a different image.
      throw new LoraserveError('INVALID_PROMPT', `<lora:${u.name}:…:dyn=${u.dyn}> asks for a dynamic rank, which is not supported; remove dyn=`, { lora: u.name });
    }
    return { name: u.name, weight: u.unet, te: u.te, unet: u.unet };
  });
}
