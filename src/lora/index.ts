/**
 * The lora layer: LoRA files (safetensors, formats, key mapping onto the model's layers), their metadata,
 * hashes, the folder library, and the per-request scale plan. No ONNX here; the engine applies the layers.
 */
export * from './types.js';
export { parseLora, type ParseLoraOptions, type LoraShapeMismatch } from './adapter.js';
export { loraInfoFromHeader, detectFormat, baseModelOf, tagFrequency, TRIGGER_WORDS } from './info.js';
export { parseKey, kohyaName, type ParsedKey, type UnsupportedNetwork } from './key-formats.js';
export { TargetIndex } from './key-resolve.js';
export { diffusersToLdm, ldmBlock, unetLayoutFromModules, SD_UNET_LAYOUT, type UnetLayout } from './ldm-names.js';
export { BLOCK_IDS_17, BLOCK_IDS_26, blockIdOf, blockWeightsFromVector, normalizeBlockWeights, blockWeight } from './block-weights.js';
export { planLoraScales, type ScalePlan, type ScaledLayer, type ScalePlanOptions, type AdapterLookup } from './scale-plan.js';
export { computeLoraHashes, loraHashesOfBytes, loraHashesInfotext, SHORT_HASH_LENGTH, type LoraHashes } from './hashes.js';
export { LoraLibrary, type LoraFileEntry, type LoraLibraryFailure, type LibraryChange, type LoraLibraryOptions } from './library.js';
export { validateLoraName, closestNames, editDistance } from './names.js';
export {
  parseSafetensors,
  readSafetensorsHeader,
  parseHeader,
  decodeFloat32,
  decodeFactor,
  factorToFloat32,
  decodeScalar,
  tensorBytes,
  type SafetensorsFile,
  type SafetensorsHeader,
  type SafetensorsDtype,
  type TensorEntry,
} from './safetensors.js';
