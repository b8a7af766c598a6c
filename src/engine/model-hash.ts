/**
 * "Model hash" for the infotext. A1111 writes the first 10 hex digits of the checkpoint file's sha256.
 * An ONNX pipeline has no single checkpoint file; the UNet carries the identity of a fine-tune, so we hash
 * every file in unet/ (model.onnx and its external data) in name order, streamed (models are GBs).
 */
import { createHash } from 'node:crypto';
import { createReadStream, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The export's own files in unet/ (model.onnx and its external data), in name order. Not our own derived graphs
 * (`model.<tag>.onnx`, written beside the original when the cache cannot hard-link the weights; see
 * src/onnx/materialize.ts) nor their temp files.
 */
export function unetExportFiles(unetDir: string): string[] {
  return readdirSync(unetDir)
    .filter((f) => !/^model\.[^.]+\.onnx(\..*\.tmp)?$/.test(f) && statSync(join(unetDir, f)).isFile())
    .sort();
}

/** Bytes of the export's UNet files: what one more UNet session holds, about. */
export function unetExportBytes(unetDir: string): number {
  return unetExportFiles(unetDir).reduce((n, f) => n + statSync(join(unetDir, f)).size, 0);
}

export async function hashUnetFolder(unetDir: string): Promise<{ sha256: string; short: string }> {
  const h = createHash('sha256');
  // The hash names the export, not our rewrites.
  for (const f of unetExportFiles(unetDir)) {
    await new Promise<void>((resolve, reject) => {
      const s = createReadStream(join(unetDir, f), { highWaterMark: 4 << 20 });
      s.on('data', (chunk) => h.update(chunk));
      s.on('error', reject);
      s.on('end', () => resolve());
    });
  }
  const sha256 = h.digest('hex');
  return { sha256, short: sha256.slice(0, 10) };
}
