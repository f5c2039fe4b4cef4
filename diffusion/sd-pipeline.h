/* sd-pipeline.h: the jobs users run: text-to-image, image-to-image and
 * inpainting, with classifier-free guidance, negative prompts, batches.
 *
 * A pipeline owns a model and its networks (text encoders, UNet, VAE), which
 * stay loaded between jobs: the backend keeps one pipeline per model.
 *
 * Noise and seeds (the stream is part of the interface: the same seed gives
 * the same image on every run and device):
 *   - image i of a batch uses its own generator, seeded with seed + i, so any
 *     image can be reproduced alone at batch size 1 with its own seed
 *     (AUTOMATIC1111 does the same);
 *   - the generator is PyTorch's CPU torch.randn (MT19937 + Box-Muller, see
 *     sd-noise.h), so a seed reproduces diffusers / ComfyUI CPU-noise results;
 *   - each generator draws, in this order: the VAE posterior noise of the init
 *     image (img2img, inpainting), the posterior noise of the masked image
 *     (9-channel inpainting), the initial latent noise, then one tensor per
 *     step for ancestral samplers (Euler a, LCM). All draws are [1, 4, h, w].
 */
#pragma once

#include "ivk.h"
#include "sd-model.h"
#include "sd-nets.h"
#include "sd-sampler.h"

G_BEGIN_DECLS

typedef struct _SdPipeline SdPipeline;

typedef struct
{
  gboolean no_fp16;           /* compute in fp32 even where fp16 is available */
  gboolean force_prediction;  /* override the model's prediction type */
  SdPrediction prediction;
  const char *unet_config_json; /* see SdOpenOptions */
  const char *text_encoder_config_json;
  const char *text_encoder_2_config_json;
  const char *tokenizer_dir;  /* override where the vocabulary is found */
  /* Release the text encoders after each encoding (less memory, slower). */
  gboolean low_memory;
} SdPipelineOptions;

SdPipeline *sd_pipeline_new (IvkContext *ctx, const char *model_path, const SdPipelineOptions *options,
                             GError **error);
void sd_pipeline_free (SdPipeline *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SdPipeline, sd_pipeline_free)

SdModel *sd_pipeline_get_model (SdPipeline *p);
const SdModelConfig *sd_pipeline_get_config (SdPipeline *p);
/* The file name without extension, as A1111 shows it. */
const char *sd_pipeline_get_name (SdPipeline *p);
/* The networks, created on first use (borrowed; NULL with an error). */
SdClip *sd_pipeline_get_clip (SdPipeline *p, int index, GError **error);
SdUNet *sd_pipeline_get_unet (SdPipeline *p, GError **error);
SdVae *sd_pipeline_get_vae (SdPipeline *p, GError **error);
IvkContext *sd_pipeline_get_context (SdPipeline *p);

/* Bytes of weights on the device right now. */
guint64 sd_pipeline_get_weight_bytes (SdPipeline *p);

/* What a user of this model should get when they do not say: size, steps,
 * guidance and sampler per detected model family. `why` says what was
 * recognised (printed by the CLI, returned by the API). */
typedef struct
{
  int width, height;
  int steps;
  float cfg_scale;
  SdSamplerKind sampler;
  SdTimestepSpacing spacing;
  const char *why; /* static string */
} SdModelDefaults;

void sd_pipeline_get_defaults (SdPipeline *p, SdModelDefaults *d);

typedef enum
{
  SD_MODE_TXT2IMG,
  SD_MODE_IMG2IMG,
  SD_MODE_INPAINT,
} SdMode;

typedef enum
{
  SD_NOISE_POSTERIOR,        /* VAE posterior sample of the init image */
  SD_NOISE_POSTERIOR_MASKED, /* of the masked image (9-channel inpainting) */
  SD_NOISE_INITIAL,          /* the starting latent noise */
  SD_NOISE_STEP,             /* ancestral noise of a step */
} SdNoisePurpose;

/* Fill out[n] with standard normal noise for image `image` of the batch. */
typedef gboolean (*SdNoiseSourceFn) (gpointer data, SdNoisePurpose purpose, int image, int step,
                                     float *out, gsize n, GError **error);
/* Progress after each step (step counts from 1 to total). Return FALSE to cancel. */
typedef gboolean (*SdProgressFn) (gpointer data, int step, int total, const float *latents,
                                  gsize n);
/* Intermediate values, for tests and debugging: what is one of "timesteps",
 * "sigmas", "image_latents", "masked_image_latents", "mask_latents",
 * "init_latents", "start_latents", "step_eps", "step_latents",
 * "step_denoised", "final_latents". step is -1 for non-step values. */
typedef void (*SdTraceFn) (gpointer data, const char *what, int step, const float *values, gsize n);

typedef struct
{
  SdMode mode;
  const char *prompt;
  const char *negative;      /* NULL: none given (SDXL then uses zeros) */
  int width, height;         /* pixels; multiples of 8 (of 8 * 2^(levels-1) for the UNet) */
  int steps;
  float cfg_scale;           /* <= 1: no unconditional pass */
  SdSamplerKind sampler;
  SdScheduleOptions schedule;
  guint64 seed;
  int batch;                 /* images per job, >= 1 */
  int clip_skip;             /* 0 or 1: the model's default; 2: one layer earlier, ... */
  float strength;            /* img2img / inpaint: 0 < strength <= 1 */
  const float *init_image;   /* [3, H, W] in [-1, 1] (img2img, inpaint) */
  const float *mask;         /* [H, W] in [0, 1], 1 = repaint (inpaint) */
  gboolean soft_mask;        /* keep mask values instead of binarising at 0.5 */
  /* SDXL micro-conditioning; 0 = defaults (original = target size, crop 0,
   * aesthetic 6.0 / 2.5 for refiners) */
  int original_width, original_height, crop_left, crop_top;
  float aesthetic_score, negative_aesthetic_score;
  /* Conditioning given directly instead of prompts (tests): [batch?1, T, D] */
  const float *cond, *uncond;
  int cond_len;
  const float *cond_pooled, *uncond_pooled;
  const float *cond_time_ids, *uncond_time_ids;
  /* hooks (NULL = defaults) */
  SdNoiseSourceFn noise_fn;
  gpointer noise_data;
  SdProgressFn progress;
  gpointer progress_data;
  SdTraceFn trace;
  gpointer trace_data;
  gboolean skip_decode;      /* stop at the final latents */
} SdJob;

void sd_job_init (SdJob *job);

typedef struct
{
  int batch, width, height;
  float *images;   /* [batch, 3, H, W], raw decoder output (nominally [-1, 1]); NULL if skip_decode */
  float *latents;  /* [batch, 4, H/8, W/8] final scaled latents */
  char *notes;     /* defaults the pipeline chose, for the user; may be NULL */
} SdResult;

void sd_result_clear (SdResult *r);

/* Run a job. Cancellation (progress returning FALSE) is SD_ERROR_CANCELLED. */
gboolean sd_pipeline_run (SdPipeline *p, const SdJob *job, SdResult *result, GError **error);

/* Encode a prompt as the pipeline's UNet wants it (for tests and the API):
 * context [1, T, D] with T = 77 * chunks, and for SDXL the pooled embedding. */
gboolean sd_pipeline_encode_prompt (SdPipeline *p, const char *prompt, int clip_skip,
                                    float **context, int *n_tokens, float **pooled, GError **error);

G_END_DECLS
