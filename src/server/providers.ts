/**
 * What the server needs from the LoRA folder and the embeddings folder, as small interfaces: the routes are
 * written against these, and `loraserve serve` wires implementations (src/lora's LoraLibrary for LoRAs).
 * The server never reads LoRA or embedding files itself, except streaming an upload to a temp file.
 */
import type { Readable } from 'node:stream';
import type { FileEntry } from '../jobs/file-wire.js';
import type { LoraCacheStats } from '../jobs/queue.js';

export interface LoraListing {
  /** File stem: the name requests and `<lora:name:w>` tags use. */
  name: string;
  /** kohya `ss_output_name`, offered by A1111 as an alias. */
  alias: string | null;
  /** Absolute path (A1111's `path`). */
  path: string;
  sizeBytes: number;
  /** e.g. kohya, locon, peft; null when unknown. */
  format?: string | null;
  ranks?: number[];
  baseModel?: string;
  triggerWords?: string[];
  /** The file's safetensors `__metadata__` (A1111's `metadata`). */
  metadata?: Record<string, string>;
}

export interface LoraProvider {
  list(): Promise<LoraListing[]>;
  /** Finds a LoRA by a name from a request; undefined when unknown (the server then answers UNKNOWN_LORA). */
  find(name: string): Promise<LoraListing | undefined>;
  /** Up to a few names close to an unknown one, for the error message. */
  suggest?(name: string): Promise<string[]>;
  /** Folder an upload is streamed into before validation (same filesystem as the library: install is a rename). */
  readonly uploadDir: string;
  /**
   * Checks that a file is a LoRA this server can apply (format, shapes against the loaded model). Throws a
   * LoraserveError (LORA_INVALID, LORA_MISMATCH, LORA_UNSUPPORTED, INVALID_FILE) when not.
   */
  validateFile(path: string, name: string): Promise<void>;
  /** Moves a validated temp file into the library as `<name>.safetensors` (atomic rename) and rescans. */
  install(tempPath: string, name: string, options: { overwrite: boolean }): Promise<LoraListing>;
  /** Deletes `<name>.safetensors`; false when there was none. */
  remove(name: string): Promise<boolean>;
  /** Rescans the folder (A1111 refresh-loras). */
  refresh(): Promise<void>;
  /** Parsed-LoRA cache figures for /metrics, when the implementation keeps such a cache. */
  cacheStats?(): Partial<LoraCacheStats> & { maxBytes?: number };
}

export interface EmbeddingListing {
  name: string;
  /** Tokens the embedding takes in a prompt. */
  vectors: number;
  /** Width of each vector (768 for SD1, 1024 for SD2). */
  shape: number;
  step?: number | null;
  sdCheckpoint?: string | null;
  sdCheckpointName?: string | null;
  /** False when it does not fit the loaded model (A1111 lists it under `skipped`). */
  compatible: boolean;
}

export interface EmbeddingProvider {
  list(): Promise<EmbeddingListing[]>;
}

/**
 * The LoRA and embedding files render workers may fetch by sha256 (`/internal/v1/files`, used by workers
 * without a shared disk; src/jobs/file-sync.ts). Only files of the libraries are ever served.
 */
export interface FileProvider {
  /** Every LoRA and embedding with its hash (the manifest). */
  list(): Promise<FileEntry[]>;
  /** The bytes of the library file with this hash; undefined when no library file has it. */
  open(sha256: string): Promise<{ entry: FileEntry; stream: Readable } | undefined>;
}

/** Stand-ins when nothing is wired: no LoRAs, no embeddings. */
export const NO_EMBEDDINGS: EmbeddingProvider = { list: async () => [] };
