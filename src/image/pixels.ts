/**
 * Pixel conversions between the VAE's float tensors and 8-bit RGB images.
 *
 * Decoding follows diffusers `image_processor.py` (VaeImageProcessor.postprocess → denormalize → pt_to_numpy →
 * numpy_to_pil): x·0.5 + 0.5, clamp to [0, 1], ×255, **round** (numpy rounds half to even), cast to uint8 — all in
 * float32. AUTOMATIC1111 (`modules/processing.py` process_images_inner, `modules/sd_samplers_common.py`
 * single_sample_to_image) does the same but **truncates** (`(255. * x).astype(np.uint8)`), so A1111 images are on
 * average half a level darker; `rounding: 'truncate'` reproduces it. NaN (a diverged VAE) becomes 0, the value
 * numpy's float→uint8 cast gives on x86; ±Infinity clamps like any other value.
 *
 * Encoding (img2img) follows diffusers pil_to_numpy + normalize and A1111 `StableDiffusionProcessingImg2Img.init`:
 * float32(v / 255) · 2 − 1.
 */
import { LoraserveError } from '../core/errors.js';

/** An 8-bit RGB image, HWC interleaved (r, g, b, r, g, b, …), row-major from the top-left. */
export interface RgbImage {
  rgb: Uint8Array;
  width: number;
  height: number;
}

export type Rounding = 'round' | 'truncate';

export interface ToRgbOptions {
  /** 'round' (diffusers, default) or 'truncate' (A1111). */
  rounding?: Rounding;
}

const f32 = Math.fround;

/** A value in [0, 1] (clamped here) → byte, with float32 arithmetic exactly as numpy does it. */
export function unitToByte(v: number, rounding: Rounding = 'round'): number {
  if (!(v > 0)) return 0; // also NaN
  if (v >= 1) return 255;
  const s = f32(v * 255); // float32 array × python int stays float32 in numpy
  if (rounding === 'truncate') return Math.trunc(s);
  // numpy.round: half to even
  const fl = Math.floor(s);
  const diff = s - fl;
  if (diff > 0.5) return fl + 1;
  if (diff < 0.5) return fl;
  return fl % 2 === 0 ? fl : fl + 1;
}

/** A VAE output value in [-1, 1] → byte: clamp(x·0.5 + 0.5) then unitToByte. */
export function signedToByte(x: number, rounding: Rounding = 'round'): number {
  return unitToByte(f32(x * 0.5 + 0.5), rounding);
}

function checkDims(dims: readonly number[], length: number, channels: number, what: string): [number, number, number] {
  if (dims.length !== 4 || dims[1] !== channels || dims.some((d) => !Number.isInteger(d) || d <= 0)) {
    throw new LoraserveError('INVALID_ARGUMENT', `${what}: expected [batch, ${channels}, height, width], got [${dims.join(', ')}]`);
  }
  const [b, , h, w] = dims;
  if (b * channels * h * w !== length) {
    throw new LoraserveError('INVALID_ARGUMENT', `${what}: ${length} values do not fill [${dims.join(', ')}]`);
  }
  return [b, h, w];
}

/** VAE decoder output, float32 NCHW [B, 3, H, W] in [-1, 1] → one RGB image per batch entry. */
export function vaeOutputToRgb(data: Float32Array, dims: readonly number[], opts: ToRgbOptions = {}): RgbImage[] {
  const [batch, height, width] = checkDims(dims, data.length, 3, 'vaeOutputToRgb');
  const rounding = opts.rounding ?? 'round';
  const plane = height * width;
  const images: RgbImage[] = [];
  for (let b = 0; b < batch; b++) {
    const rgb = new Uint8Array(plane * 3);
    const base = b * 3 * plane;
    for (let c = 0; c < 3; c++) {
      const src = base + c * plane;
      for (let i = 0; i < plane; i++) rgb[i * 3 + c] = signedToByte(data[src + i], rounding);
    }
    images.push({ rgb, width, height });
  }
  return images;
}

/** Float HWC RGB in [0, 1] (diffusers output_type='np') → bytes. */
export function unitHwcToRgb(data: ArrayLike<number>, opts: ToRgbOptions = {}): Uint8Array {
  const rounding = opts.rounding ?? 'round';
  const out = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = unitToByte(data[i], rounding);
  return out;
}

/** A float HWC RGB image with values in [0, 1]; the float form of RgbImage. */
export interface FloatRgbImage {
  rgb: Float32Array;
  width: number;
  height: number;
}

/**
 * RGB images (all the same size; uint8, or float in [0, 1]) → VAE encoder input, float32 NCHW [B, 3, H, W] in [-1, 1].
 * uint8 values become float32(v/255)·2−1, exactly as diffusers and A1111 compute it.
 */
export function rgbToVaeInput(images: ReadonlyArray<RgbImage | FloatRgbImage>): { data: Float32Array; dims: [number, 3, number, number] } {
  if (images.length === 0) throw new LoraserveError('INVALID_ARGUMENT', 'rgbToVaeInput: no images');
  const { width, height } = images[0];
  const plane = width * height;
  const data = new Float32Array(images.length * 3 * plane);
  images.forEach((img, b) => {
    if (img.width !== width || img.height !== height || img.rgb.length !== plane * 3) {
      throw new LoraserveError('INVALID_ARGUMENT', `rgbToVaeInput: image ${b} is ${img.width}x${img.height} with ${img.rgb.length} values, expected ${width}x${height}x3`);
    }
    const isBytes = img.rgb instanceof Uint8Array;
    const base = b * 3 * plane;
    for (let i = 0; i < plane; i++) {
      for (let c = 0; c < 3; c++) {
        const v = img.rgb[i * 3 + c];
        const unit = isBytes ? f32(v / 255) : Math.min(1, Math.max(0, v));
        data[base + c * plane + i] = f32(2 * unit - 1);
      }
    }
  });
  return { data, dims: [images.length, 3, height, width] };
}

/**
 * Latent → RGB linear map used by A1111's "Approx cheap" live preview (`modules/sd_vae_approx.py`
 * cheap_approximation, after https://discuss.huggingface.co/t/decoding-latents-to-rgb-without-upscaling/23204/2).
 * Row l is latent channel l's contribution to (R, G, B); the result is treated as a [-1, 1] image.
 * It takes the sampler's latent as is (before the 1/0.18215 VAE scaling).
 */
export const LATENT_RGB_FACTORS = {
  sd15: [
    [0.298, 0.207, 0.208],
    [0.187, 0.286, 0.173],
    [-0.158, 0.189, 0.264],
    [-0.184, -0.271, -0.473],
  ],
  sdxl: [
    [0.3448, 0.4168, 0.4395],
    [-0.1953, -0.029, 0.025],
    [0.1074, 0.0886, -0.0163],
    [-0.373, -0.2499, -0.2088],
  ],
} as const;

export interface PreviewOptions extends ToRgbOptions {
  /** Which image of the batch; default 0. */
  index?: number;
  /** Coefficient set; default 'sd15'. */
  family?: keyof typeof LATENT_RGB_FACTORS;
}

/** Cheap progress preview: latent [B, 4, h, w] → one RGB image at latent resolution (h × w, i.e. 1/8 size). */
export function latentPreviewRgb(latent: Float32Array, dims: readonly number[], opts: PreviewOptions = {}): RgbImage {
  const [batch, height, width] = checkDims(dims, latent.length, 4, 'latentPreviewRgb');
  const index = opts.index ?? 0;
  if (!Number.isInteger(index) || index < 0 || index >= batch) {
    throw new LoraserveError('INVALID_ARGUMENT', `latentPreviewRgb: index ${index} outside batch of ${batch}`);
  }
  const factors = LATENT_RGB_FACTORS[opts.family ?? 'sd15'];
  const rounding = opts.rounding ?? 'round';
  const plane = height * width;
  const base = index * 4 * plane;
  const rgb = new Uint8Array(plane * 3);
  for (let i = 0; i < plane; i++) {
    const l0 = latent[base + i];
    const l1 = latent[base + plane + i];
    const l2 = latent[base + 2 * plane + i];
    const l3 = latent[base + 3 * plane + i];
    for (let c = 0; c < 3; c++) {
      const x = l0 * factors[0][c] + l1 * factors[1][c] + l2 * factors[2][c] + l3 * factors[3][c];
      rgb[i * 3 + c] = signedToByte(x, rounding);
    }
  }
  return { rgb, width, height };
}
