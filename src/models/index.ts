/** The networks, usable on their own. */
export { CLIPTextEncoder, inferCLIPTextConfig, type CLIPTextConfig, CLIP_L_CONFIG, CLIP_G_CONFIG } from './clip.js';
export { T5Encoder, inferT5Config, type T5Config, T5_XXL_CONFIG } from './t5.js';
export { MMDiT, inferMMDiTConfig, type MMDiTConfig, type LayerSkip, SD3_MEDIUM_MMDIT, SD3_5_MEDIUM_MMDIT, SD3_5_LARGE_MMDIT, mmditVariant, describeMMDiT } from './mmdit.js';
export { VAE, inferVAEConfig, LATENT_SCALE, LATENT_SHIFT, toModelSpace, fromModelSpace } from './vae.js';
export { sd3Conditioning } from './conditioning.js';
