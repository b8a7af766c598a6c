/**
 * "Model hash" for the infotext. A1111 writes the first 10 hex digits of the checkpoint file's sha256.
 * An ONNX pipeline has no single checkpoint file; the UNet carries the identity of a fine-tune, so we hash
 * every file in unet/ (model.onnx and its external data) in name order, streamed (models are GBs).
 */
import { createHash } from 'node:crypto';
import { createReadStream, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

export async function hashUnetFolder(unetDir: string): Promise<{ sha256: string; short: string }> {
  const h = createHash('sha256');
  const files = readdirSync(unetDir)
    // Not our own derived graphs (`model.<tag>.onnx`, written beside the original when the cache cannot hard-link
    // the weights; see src/onnx/materialize.ts) nor their temp files: the hash names the export, not our rewrites.
    .filter((f) => !/^model\.[^.]+\.onnx(\..*\.tmp)?$/.test(f) && statSync(join(unetDir, f)).isFile())
    .sort();
  for (const f of files) {
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
