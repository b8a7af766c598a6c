/**
 * Finding textual-inversion embedding names in a prompt's token ids.
 *
 * Port of AUTOMATIC1111/stable-diffusion-webui v1.9.4 `modules/textual_inversion/textual_inversion.py`
 * `EmbeddingDatabase.register_embedding_by_name` and `find_embedding_at_position`: each name is tokenized (so
 * "EasyNegativeV2" and "easynegativev2" are the same ids: CLIP's tokenizer lower-cases), grouped by its first id,
 * and the group is sorted longest first (a stable sort, so among equally long names the one registered first
 * wins). At a position, the first name of the group whose ids follow there matches: the longest match.
 */

/** What the lookup needs of an embedding. `problem`, when set, says why it cannot be used (see prompt-chunks.ts). */
export interface EmbeddingInfo {
  name: string;
  vectorCount: number;
  problem?: string;
}

export interface EmbeddingMatch<T extends EmbeddingInfo> {
  embedding: T;
  /** How many prompt tokens the name covers. */
  length: number;
}

export interface NameTokenizer {
  encode(text: string): number[];
}

export class EmbeddingLookup<T extends EmbeddingInfo = EmbeddingInfo> {
  private readonly byFirstId = new Map<number, Array<{ ids: number[]; embedding: T }>>();
  readonly size: number;

  /** Registers `embeddings` in order; a later one with the same name replaces the earlier, as in A1111. */
  constructor(tokenizer: NameTokenizer, embeddings: Iterable<T>) {
    const byName = new Map<string, { ids: number[]; embedding: T }>();
    for (const embedding of embeddings) {
      const ids = tokenizer.encode(embedding.name);
      if (ids.length === 0) continue; // a name of nothing but whitespace can never be written in a prompt
      byName.delete(embedding.name);
      byName.set(embedding.name, { ids, embedding });
    }
    for (const entry of byName.values()) {
      const group = this.byFirstId.get(entry.ids[0]) ?? [];
      group.push(entry);
      this.byFirstId.set(entry.ids[0], group);
    }
    for (const group of this.byFirstId.values()) group.sort((a, b) => b.ids.length - a.ids.length);
    this.size = byName.size;
  }

  /** The embedding whose name's ids start at `tokens[offset]`, longest first; undefined when none does. */
  findAt(tokens: readonly number[], offset: number): EmbeddingMatch<T> | undefined {
    const group = this.byFirstId.get(tokens[offset]);
    if (!group) return undefined;
    for (const { ids, embedding } of group) {
      if (offset + ids.length > tokens.length) continue;
      let same = true;
      for (let i = 1; i < ids.length && same; i++) same = tokens[offset + i] === ids[i];
      if (same) return { embedding, length: ids.length };
    }
    return undefined;
  }
}
