/**
 * The parity components this project implements: the one list that each component's work extends.
 * `npm test` runs the parity runner over these; a fixture folder of any other component is reported as failed.
 */
import type { Checker } from './lib.js';
import { checkSafetensorsDtypes } from './check-safetensors-dtypes.js';
import { checkCLIP } from './check-clip.js';
import { checkConditioning } from './check-conditioning.js';
import { checkT5 } from './check-t5.js';
import { checkMMDiT } from './check-mmdit.js';
import { checkVAE } from './check-vae.js';
import { checkInpaint, checkSampler } from './check-sampler.js';
import { checkTokenizer } from './check-tokenizer.js';
import { checkDiffusersLayout } from './check-diffusers-layout.js';
import { checkLora } from './check-lora.js';

export const COMPONENTS = [
  'tokenizer', 'clip_l', 'clip_g', 't5xxl', 'conditioning', 'mmdit', 'vae', 'sampler', 'inpaint_kerashub',
  'diffusers_layout', 'safetensors_dtypes', 'lora',
] as const;
export type Component = (typeof COMPONENTS)[number];

export const CHECKERS: Partial<Record<Component, Checker>> = {
  safetensors_dtypes: checkSafetensorsDtypes,
  clip_l: checkCLIP,
  clip_g: checkCLIP,
  t5xxl: checkT5,
  conditioning: checkConditioning,
  mmdit: checkMMDiT,
  vae: checkVAE,
  sampler: checkSampler,
  inpaint_kerashub: checkInpaint,
  tokenizer: checkTokenizer,
  diffusers_layout: checkDiffusersLayout,
  lora: checkLora,
};
