/* sd-nets.h: the Stable Diffusion networks on the GPU: CLIP text encoders,
 * UNet, VAE. Each is built from the model's detected configuration (nothing
 * about sizes is hard-coded), compiled once per input shape into a graph whose
 * activation memory is planned by tensor lifetimes, and replayed on every call.
 *
 * Host data in and out is float32; the device precision follows the device
 * (fp16 storage where supported, unless IMPASTO_NO_FP16=1 or fp16 = FALSE).
 * The VAE always keeps activations in fp32 (with fp16 weights when fp16 is on)
 * because its activations exceed the fp16 range on real models (the SDXL VAE
 * "black image" failure of other engines).
 */
#pragma once

#include "ivk.h"
#include "sd-model.h"

G_BEGIN_DECLS

/* Debug taps: when non-NULL, a net also returns the intermediate activations
 * named like the diffusers modules ("debug.down_blocks.0", ...), as
 * name -> GArray of float, row-major in the diffusers module's output shape. */
typedef GHashTable SdDebugTaps;
SdDebugTaps *sd_debug_taps_new (void);

/* ---- CLIP text encoder ---- */

typedef struct _SdClip SdClip;

/* index 0: text_encoder, 1: text_encoder_2 (SDXL bigG). */
SdClip *sd_clip_new (IvkContext *ctx, SdModel *model, int index, gboolean fp16, GError **error);
void sd_clip_free (SdClip *clip);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SdClip, sd_clip_free)
const SdTextEncoderConfig *sd_clip_get_config (SdClip *clip);
guint64 sd_clip_get_weight_bytes (SdClip *clip);

typedef struct
{
  /* which hidden state feeds `hidden`: 0 = last layer, 1 = penultimate
   * (A1111 "CLIP skip 2"), ... */
  int skip;
  /* apply the final LayerNorm to `hidden` (SD1/SD2: yes; SDXL: no) */
  gboolean final_ln;
  /* outputs (caller-allocated, NULL = not wanted) */
  float *hidden;      /* [B, 77, C] */
  float *last_ln;     /* [B, 77, C] final_layer_norm(last layer) */
  float *all_hidden;  /* [B, L + 1, 77, C]: embeddings then each layer's output */
  float *pooled;      /* [B, P]: last_ln at the first EOS (argmax id) @ projection^T;
                       * P = projection_dim, or C without a projection */
} SdClipRequest;

gboolean sd_clip_encode (SdClip *clip, const gint32 *ids, int batch, SdClipRequest *req,
                         GError **error);

/* ---- UNet ---- */

typedef struct _SdUNet SdUNet;

SdUNet *sd_unet_new (IvkContext *ctx, SdModel *model, gboolean fp16, GError **error);
void sd_unet_free (SdUNet *unet);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SdUNet, sd_unet_free)
const SdUNetConfig *sd_unet_get_config (SdUNet *unet);

typedef struct
{
  int batch;
  int height, width;     /* latent size */
  int context_len;       /* tokens of context (77 * chunks) */
  const float *sample;   /* [B, in_channels, H, W] */
  const float *timesteps;/* [B] */
  const float *context;  /* [B, T, context_dim] */
  const float *text_embeds; /* SDXL: [B, pooled_dim] */
  const float *time_ids;    /* SDXL: [B, n_time_ids] */
  float *out;            /* [B, out_channels, H, W] */
  SdDebugTaps *debug;    /* optional */
} SdUNetCall;

gboolean sd_unet_forward (SdUNet *unet, SdUNetCall *call, GError **error);

/* The memory plan of one call of this shape (activation arena, largest
 * binding, FLOPs) without allocating activations. With virtual weights
 * (sd_unet_new_virtual) nothing is uploaded or read either. */
gboolean sd_unet_plan (SdUNet *unet, int batch, int height, int width, int context_len,
                       IvkGraphStats *stats, GError **error);
/* A UNet whose weights are shapes only (the model may be header-only): for
 * memory plans of full-size models without their weights. */
SdUNet *sd_unet_new_virtual (IvkContext *ctx, SdModel *model, gboolean fp16, GError **error);
guint64 sd_unet_get_weight_bytes (SdUNet *unet);

/* ---- VAE ---- */

typedef struct _SdVae SdVae;

SdVae *sd_vae_new (IvkContext *ctx, SdModel *model, gboolean fp16, GError **error);
void sd_vae_free (SdVae *vae);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SdVae, sd_vae_free)
const SdVaeConfig *sd_vae_get_config (SdVae *vae);
guint64 sd_vae_get_weight_bytes (SdVae *vae);

/* image[B, 3, 8H, 8W] (raw decoder output, nominally [-1, 1]) from scaled
 * latents[B, 4, H, W] (divided by the scaling factor here). Tiles
 * automatically when the image would exceed the device's limits. */
gboolean sd_vae_decode (SdVae *vae, int batch, int height, int width, const float *latents,
                        float *image, SdDebugTaps *debug, GError **error);

/* Posterior of image[B, 3, H, W] in [-1, 1]: mean and logvar [B, 4, H/8, W/8]
 * (logvar clamped to [-30, 20]). Not scaled. */
gboolean sd_vae_encode (SdVae *vae, int batch, int height, int width, const float *image,
                        float *mean, float *logvar, SdDebugTaps *debug, GError **error);

/* Shapes-only VAE and the plan of one decode of a latent of this size
 * (without tiling: largest_tensor_bytes says whether one pass would fit). */
SdVae *sd_vae_new_virtual (IvkContext *ctx, SdModel *model, gboolean fp16, GError **error);
gboolean sd_vae_plan_decode (SdVae *vae, int batch, int height, int width, IvkGraphStats *stats,
                             GError **error);
/* Whether a decode of this latent size tiles, and with which tile (latent px). */
gboolean sd_vae_decode_tiles (SdVae *vae, int batch, int height, int width, int *tile);

/* Force tiling (tile = latent tile side, overlap in latent pixels); 0 = auto. */
void sd_vae_set_tiling (SdVae *vae, int tile, int overlap);

G_END_DECLS
