/** The released models: their hub repositories, files and variants (what the keys must say). */

export interface ModelPreset {
  readonly repo: string;
  /** The diffusers folders and, for SD3.5, this single file (MMDiT + VAE) plus text_encoders/ in the same repo. */
  readonly singleFile?: string;
  readonly variant: 'sd3_medium' | 'sd3.5_medium' | 'sd3.5_large';
  readonly turbo?: boolean;
}

export const MODEL_PRESETS = {
  stable_diffusion_3_medium: { repo: 'stabilityai/stable-diffusion-3-medium-diffusers', variant: 'sd3_medium' },
  'stable_diffusion_3.5_medium': { repo: 'stabilityai/stable-diffusion-3.5-medium', singleFile: 'sd3.5_medium.safetensors', variant: 'sd3.5_medium' },
  'stable_diffusion_3.5_large': { repo: 'stabilityai/stable-diffusion-3.5-large', singleFile: 'sd3.5_large.safetensors', variant: 'sd3.5_large' },
  'stable_diffusion_3.5_large_turbo': { repo: 'stabilityai/stable-diffusion-3.5-large-turbo', singleFile: 'sd3.5_large_turbo.safetensors', variant: 'sd3.5_large', turbo: true },
} as const satisfies Record<string, ModelPreset>;
export type ModelPresetName = keyof typeof MODEL_PRESETS;

/** The SD3.5 repositories' separate text encoders (their single files hold none). */
export const SD35_TEXT_ENCODERS = {
  clipL: 'text_encoders/clip_l.safetensors',
  clipG: 'text_encoders/clip_g.safetensors',
  t5: ['text_encoders/t5xxl_fp16.safetensors', 'text_encoders/t5xxl_fp8_e4m3fn.safetensors'],
} as const;

