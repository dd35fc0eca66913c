/** sd3-ts: Stable Diffusion 3 Medium in TypeScript. */
export { TextToImage, ImageToImage, Inpaint, fromPreset } from './presets/tasks.js';
export { SD3Task, type ImageShape, VERSION } from './pipelines/task.js';
export { SD3Backbone, type BackboneOptions, type SD3Weights } from './pipelines/backbone.js';
export { SD3Preprocessor, type TokenIds } from './pipelines/preprocessor.js';
export type { GenerateOptions, StrengthOptions, PromptInput, ImagePromptInput, InpaintInput, ImageLike, MaskLike } from './pipelines/inputs.js';
export type { StepInfo, Conditioning, PromptEmbedding } from './pipelines/denoise.js';
export { loadPreset, PRESETS, type PresetOptions, type LoadedPreset } from './presets/index.js';
export { openCheckpoint, openDiffusers } from './loaders/checkpoint.js';
export { RGBImage, readImage, decodeImage, readPNGText } from './image/image.js';
export { type Device, type DeviceChoice, DEVICES, resolveDevice } from './runtime/ort.js';
export { SD3Error, AbortError, FileFormatError } from './core/errors.js';
export { type Tensor, type DType, tensor } from './core/tensor.js';
export { SafetensorsFile, writeSafetensors } from './core/safetensors.js';
export { sigmaSchedule, startIndex } from './sampler/flow-match.js';
export { SAMPLERS, type SamplerName } from './sampler/steppers.js';
export { SD3_5_MEDIUM_SLG, type SkipLayerGuidance } from './sampler/skip-layer-guidance.js';
export { type SamplingDefaults, samplingDefaults } from './pipelines/model-defaults.js';
export { MODEL_PRESETS } from './presets/models.js';
export * as hub from './hub/index.js';
export * as tokenizers from './tokenizers/index.js';
export * as models from './models/index.js';
export { toInfotext, parseInfotext, generationParameters, type ParsedInfotext } from './pipelines/infotext.js';
export { fitLatentPreview, projectLatent, type LatentProjection } from './pipelines/preview.js';
export { startServer, type ServerOptions, type ServerHandle, type LoadedModel } from './server/index.js';
export { type LoraSpec, type LoraReport, LoraManager, readLoraFile, parseLoraTags, promptLoras, resolveLoraName, type LoraTag } from './lora/index.js';
export { type TextOptions, type LongPrompts, LONG_PROMPTS, A1111_TEXT_OPTIONS } from './pipelines/text-windows.js';
export { promptAttention, type WeightedText } from './tokenizers/prompt-words.js';

