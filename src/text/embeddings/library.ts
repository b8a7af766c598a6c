/**
 * The textual-inversion embeddings of a folder (default `models/embeddings`), as A1111's EmbeddingDatabase keeps
 * them (modules/textual_inversion/textual_inversion.py `load_from_dir`, `load_textual_inversion_embeddings`):
 *  - every `.pt` / `.bin` / `.safetensors` file below the folder (subfolders and symlinks followed, empty files
 *    skipped), named by its file stem;
 *  - the folder is walked top-down, each folder's files in name order before its subfolders; a later file with
 *    an already-seen name replaces the earlier one, as A1111's register_embedding does (A1111's own order is
 *    the file system's listing order, so which of two same-named files wins there is not defined);
 *  - a file that cannot be read stays listed with its `problem`, so that a prompt naming it is refused by name
 *    (EMBEDDING_INVALID) instead of its name being silently encoded as words; A1111 prints the error at load.
 * `refresh()` rescans when any file was added, removed or changed (A1111 checks the folder's mtime before each
 * render); `reload()` always rescans.
 */
import { readdir, readFile, realpath, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { LoraserveError, isLoraserveError } from '../../core/errors.js';
import { EmbeddingLookup, type NameTokenizer } from '../embedding-lookup.js';
import { EMBEDDING_EXTENSIONS, embeddingNameOf, hashEmbeddingFile, parseEmbeddingFile } from './embedding-file.js';

export const DEFAULT_EMBEDDINGS_DIR = 'models/embeddings';
/** Real embeddings are a few KB to a few hundred KB; anything far larger is not one. */
const MAX_EMBEDDING_FILE_BYTES = 64 * 1024 * 1024;

/** One embedding file as loaded: usable when `problem` is undefined. */
export interface TextualInversion {
  name: string;
  /** Path relative to the library folder. */
  file: string;
  vectorCount: number;
  width: number;
  /** Row-major [vectorCount, width]; empty when `problem` is set. */
  vectors: Float32Array;
  sdxl: boolean;
  sha256: string;
  /** A1111's Embedding.shorthash: the first 12 hex digits of the file's sha256 ("TI hashes"). */
  shortHash: string;
  problem?: string;
}

interface FileStamp {
  path: string;
  size: number;
  mtimeMs: number;
}

export class EmbeddingLibrary {
  private byName = new Map<string, TextualInversion>();
  private stamps = '';
  private version = 0;
  private lookups = new WeakMap<object, { version: number; width: number | undefined; lookup: EmbeddingLookup<TextualInversion> }>();

  constructor(readonly dir: string) {}

  /** A library scanned once. A folder that does not exist is an empty library (as in A1111). */
  static async open(dir: string = DEFAULT_EMBEDDINGS_DIR): Promise<EmbeddingLibrary> {
    const lib = new EmbeddingLibrary(dir);
    await lib.reload();
    return lib;
  }

  /** Every embedding by name (usable or not), sorted by name case-insensitively as A1111 lists them. */
  all(): TextualInversion[] {
    return [...this.byName.values()].sort((a, b) => a.name.toLowerCase().localeCompare(b.name.toLowerCase()));
  }

  get(name: string): TextualInversion | undefined {
    return this.byName.get(name);
  }

  get size(): number {
    return this.byName.size;
  }

  /** Rescans when the folder's files changed since the last scan; true when it rescanned. */
  async refresh(): Promise<boolean> {
    const files = await this.listFiles();
    if (stampKey(files) === this.stamps) return false;
    await this.load(files);
    return true;
  }

  /** Rescans the folder. */
  async reload(): Promise<void> {
    await this.load(await this.listFiles());
  }

  /**
   * The name lookup for a model: `tokenizer` turns names into ids; embeddings whose width is not the text
   * encoder's `width` (SDXL files, SD2 files on SD1, …) are kept but carry a problem naming both widths
   * (no width check when `width` is undefined, e.g. for `loraserve tokenize` without a model).
   * Cached per tokenizer until the next rescan.
   */
  lookupFor(tokenizer: NameTokenizer & object, width?: number): EmbeddingLookup<TextualInversion> {
    const cached = this.lookups.get(tokenizer);
    if (cached && cached.version === this.version && cached.width === width) return cached.lookup;
    const entries = [...this.byName.values()].map((e) => withWidthCheck(e, width));
    const lookup = new EmbeddingLookup(tokenizer, entries);
    this.lookups.set(tokenizer, { version: this.version, width, lookup });
    return lookup;
  }

  private async load(files: FileStamp[]): Promise<void> {
    const byName = new Map<string, TextualInversion>();
    for (const f of files) {
      const entry = await loadOne(this.dir, f);
      byName.delete(entry.name);
      byName.set(entry.name, entry);
    }
    this.byName = byName;
    this.stamps = stampKey(files);
    this.version++;
  }

  /** The embedding files below the folder, in A1111's walk order (top-down, files before subfolders). */
  private async listFiles(): Promise<FileStamp[]> {
    let top;
    try {
      top = await stat(this.dir);
    } catch {
      return [];
    }
    if (!top.isDirectory()) throw new LoraserveError('IO_FAILED', `embeddings folder ${this.dir} is not a folder`, { dir: this.dir });
    const out: FileStamp[] = [];
    const seen = new Set<string>();
    const walk = async (dir: string): Promise<void> => {
      const real = await realpath(dir).catch(() => dir);
      if (seen.has(real)) return; // a symlink loop
      seen.add(real);
      const names = (await readdir(dir)).sort();
      const subdirs: string[] = [];
      for (const name of names) {
        const path = join(dir, name);
        const st = await stat(path).catch(() => undefined);
        if (!st) continue;
        if (st.isDirectory()) subdirs.push(path);
        else if (st.isFile() && st.size > 0 && (EMBEDDING_EXTENSIONS as readonly string[]).includes(extOf(name))) {
          out.push({ path, size: st.size, mtimeMs: st.mtimeMs });
        }
      }
      for (const sub of subdirs) await walk(sub);
    };
    await walk(this.dir);
    return out;
  }
}

function extOf(name: string): string {
  const dot = name.lastIndexOf('.');
  return dot <= 0 ? '' : name.slice(dot).toLowerCase();
}

function stampKey(files: FileStamp[]): string {
  return files.map((f) => `${f.path}\0${f.size}\0${f.mtimeMs}`).join('\n');
}

async function loadOne(dir: string, f: FileStamp): Promise<TextualInversion> {
  const file = relative(dir, f.path) || f.path;
  const name = embeddingNameOf(f.path);
  const failed = (problem: string, hash = { sha256: '', shortHash: '' }): TextualInversion => ({
    name,
    file,
    vectorCount: 0,
    width: 0,
    vectors: new Float32Array(0),
    sdxl: false,
    ...hash,
    problem,
  });
  if (f.size > MAX_EMBEDDING_FILE_BYTES) return failed(`${file} is ${f.size} bytes, too large for an embedding`);
  let bytes: Uint8Array;
  try {
    bytes = await readFile(f.path);
  } catch (e) {
    return failed(`${file} cannot be read: ${(e as Error).message}`);
  }
  const hash = hashEmbeddingFile(bytes);
  try {
    const data = parseEmbeddingFile(bytes, file);
    return { name, file, vectorCount: data.vectorCount, width: data.width, vectors: data.vectors, sdxl: data.sdxl, ...hash };
  } catch (e) {
    if (isLoraserveError(e)) return failed(e.message, hash);
    throw e;
  }
}

/** The entry as this model sees it: a width other than the encoder's is a problem naming both. */
function withWidthCheck(e: TextualInversion, width: number | undefined): TextualInversion {
  if (e.problem !== undefined || width === undefined) return e;
  if (e.sdxl) {
    return { ...e, problem: `${e.file} is an SDXL embedding (clip_l + clip_g, width ${e.width}); this model's text encoder takes width ${width}` };
  }
  if (e.width !== width) {
    return { ...e, problem: `${e.file} holds vectors of width ${e.width}; this model's text encoder takes width ${width} (an embedding for another model family)` };
  }
  return e;
}
