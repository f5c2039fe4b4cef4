/* sd-pipeline.c: text-to-image, image-to-image and inpainting over the
 * networks, as the diffusers pipelines (StableDiffusion[XL]Pipeline,
 * ...Img2ImgPipeline, ...InpaintPipeline) compute them. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "sd-error.h"
#include "sd-noise.h"
#include "sd-pipeline.h"
#include "sd-prompt.h"
#include "sd-tokenizer.h"

struct _SdPipeline
{
  IvkContext *ctx;   /* owned */
  SdModel *model;    /* owned */
  SdModelConfig cfg;
  SdPipelineOptions opts;
  char *tokenizer_dir;
  char *name;
  gboolean fp16;
  SdTokenizer *tok[2];
  SdClip *clip[2];
  SdUNet *unet;
  SdVae *vae;
};

void
sd_job_init (SdJob *job)
{
  memset (job, 0, sizeof *job);
  job->mode = SD_MODE_TXT2IMG;
  job->width = job->height = 512;
  job->steps = 20;
  job->cfg_scale = 7.0f;
  job->sampler = SD_SAMPLER_EULER_A;
  job->batch = 1;
  job->strength = 0.75f;
}

void
sd_result_clear (SdResult *r)
{
  g_clear_pointer (&r->images, g_free);
  g_clear_pointer (&r->latents, g_free);
  g_clear_pointer (&r->notes, g_free);
}

SdPipeline *
sd_pipeline_new (IvkContext *ctx, const char *model_path, const SdPipelineOptions *options,
                 GError **error)
{
  SdPipelineOptions defaults = { 0 };
  if (!options)
    options = &defaults;
  SdOpenOptions oo = {
    .force_prediction = options->force_prediction,
    .prediction = options->prediction,
    .unet_config_json = options->unet_config_json,
    .text_encoder_config_json = options->text_encoder_config_json,
    .text_encoder_2_config_json = options->text_encoder_2_config_json,
  };
  SdModel *model = sd_model_open (model_path, &oo, error);
  if (!model)
    return NULL;
  SdPipeline *p = g_new0 (SdPipeline, 1);
  p->ctx = ivk_context_ref (ctx);
  p->model = model;
  p->cfg = *sd_model_get_config (model);
  p->opts = *options;
  p->opts.unet_config_json = NULL;
  p->opts.text_encoder_config_json = NULL;
  p->opts.text_encoder_2_config_json = NULL;
  p->tokenizer_dir = g_strdup (options->tokenizer_dir);
  p->opts.tokenizer_dir = NULL;
  p->fp16 = !options->no_fp16;
  /* Memory: when all weights together would take more than 3/4 of the
   * device's memory, the text encoders are released after each encoding so
   * the UNet and the VAE have the room (SDXL on an 8 GB GPU: 1.6 GB of text
   * encoders against 5.1 GB of UNet, fp16). */
  if (!p->opts.low_memory)
    {
      const IvkDeviceInfo *info = ivk_context_get_info (ctx);
      gsize es = p->fp16 && info->use_fp16 ? 2 : 4;
      gint64 all = sd_model_weight_bytes (model, "unet", es) + sd_model_weight_bytes (model, "vae", es)
                   + sd_model_weight_bytes (model, "text_encoder", es)
                   + sd_model_weight_bytes (model, "text_encoder_2", es);
      if (!info->is_cpu && (guint64) all > info->device_local_bytes / 4 * 3)
        p->opts.low_memory = TRUE;
    }
  /* the display name: the file name without extension, or the folder's name
   * (its parent's for a folder called just "diffusers") */
  g_autofree char *trimmed = g_strdup (model_path);
  while (strlen (trimmed) > 1 && g_str_has_suffix (trimmed, G_DIR_SEPARATOR_S))
    trimmed[strlen (trimmed) - 1] = '\0';
  g_autofree char *base = g_path_get_basename (trimmed);
  if (g_file_test (trimmed, G_FILE_TEST_IS_DIR) && g_ascii_strcasecmp (base, "diffusers") == 0)
    {
      g_autofree char *parent = g_path_get_dirname (trimmed);
      g_free (base);
      base = g_path_get_basename (parent);
    }
  else
    {
      char *dot = strrchr (base, '.');
      if (dot && dot != base && !g_file_test (trimmed, G_FILE_TEST_IS_DIR))
        *dot = '\0';
    }
  p->name = g_strdup (base);
  return p;
}

void
sd_pipeline_free (SdPipeline *p)
{
  if (!p)
    return;
  for (int i = 0; i < 2; i++)
    {
      sd_clip_free (p->clip[i]);
      sd_tokenizer_free (p->tok[i]);
    }
  sd_unet_free (p->unet);
  sd_vae_free (p->vae);
  sd_model_free (p->model);
  ivk_context_unref (p->ctx);
  g_free (p->tokenizer_dir);
  g_free (p->name);
  g_free (p);
}

SdModel *
sd_pipeline_get_model (SdPipeline *p)
{
  return p->model;
}

const SdModelConfig *
sd_pipeline_get_config (SdPipeline *p)
{
  return &p->cfg;
}

const char *
sd_pipeline_get_name (SdPipeline *p)
{
  return p->name;
}

SdClip *
sd_pipeline_get_clip (SdPipeline *p, int index, GError **error)
{
  g_return_val_if_fail (index == 0 || index == 1, NULL);
  if (!p->clip[index])
    p->clip[index] = sd_clip_new (p->ctx, p->model, index, p->fp16, error);
  return p->clip[index];
}

SdUNet *
sd_pipeline_get_unet (SdPipeline *p, GError **error)
{
  if (!p->unet)
    p->unet = sd_unet_new (p->ctx, p->model, p->fp16, error);
  return p->unet;
}

SdVae *
sd_pipeline_get_vae (SdPipeline *p, GError **error)
{
  if (!p->vae)
    p->vae = sd_vae_new (p->ctx, p->model, p->fp16, error);
  return p->vae;
}

IvkContext *
sd_pipeline_get_context (SdPipeline *p)
{
  return p->ctx;
}

guint64
sd_pipeline_get_weight_bytes (SdPipeline *p)
{
  guint64 b = 0;
  if (p->unet)
    b += sd_unet_get_weight_bytes (p->unet);
  if (p->vae)
    b += sd_vae_get_weight_bytes (p->vae);
  for (int i = 0; i < 2; i++)
    if (p->clip[i])
      b += sd_clip_get_weight_bytes (p->clip[i]);
  return b;
}

/* Few-step distilled models cannot be told from their weights (SDXL-Turbo has
 * SDXL's exact architecture): the file or folder name decides, as the model
 * cards name them ("sd_xl_turbo", "sdxl-lightning", "lcm-..."). */
static gboolean
name_has (SdPipeline *p, const char *word)
{
  g_autofree char *lower = g_ascii_strdown (sd_model_get_path (p->model), -1);
  g_autofree char *base = g_path_get_basename (lower);
  return strstr (base, word) != NULL;
}

void
sd_pipeline_get_defaults (SdPipeline *p, SdModelDefaults *d)
{
  const SdModelConfig *c = &p->cfg;
  int native = c->native_resolution > 0 ? c->native_resolution : 512;
  *d = (SdModelDefaults) {
    .width = native, .height = native, .steps = 20, .cfg_scale = 7.0f,
    .sampler = SD_SAMPLER_EULER_A, .spacing = SD_SPACING_CONFIG,
    .why = "Stable Diffusion 1.x defaults",
  };
  gboolean xl = c->arch == SD_ARCH_SDXL || c->arch == SD_ARCH_SDXL_REFINER;
  if (c->arch == SD_ARCH_SD2)
    d->why = c->scheduler.prediction == SD_PREDICTION_V ? "SD 2.x v-prediction (768)" : "SD 2.x";
  if (xl)
    {
      d->steps = 25;
      d->cfg_scale = 6.0f;
      d->why = c->arch == SD_ARCH_SDXL ? "SDXL base" : "SDXL refiner";
    }
  if (name_has (p, "turbo"))
    {
      /* SD-Turbo / SDXL-Turbo: 512 px, 1-4 steps, no guidance, trailing spacing */
      d->width = d->height = 512;
      d->steps = 4;
      d->cfg_scale = 0.0f;
      d->sampler = SD_SAMPLER_EULER_A;
      d->spacing = SD_SPACING_TRAILING;
      d->why = xl ? "SDXL-Turbo (name): 512 px, 4 steps, guidance off, trailing spacing"
                  : "SD-Turbo (name): 512 px, 4 steps, guidance off, trailing spacing";
    }
  else if (name_has (p, "lightning") || name_has (p, "hyper"))
    {
      d->steps = 4;
      d->cfg_scale = 0.0f;
      d->sampler = SD_SAMPLER_EULER;
      d->spacing = SD_SPACING_TRAILING;
      d->why = "few-step distilled model (name): 4 steps, guidance off, trailing spacing";
    }
  else if (name_has (p, "lcm"))
    {
      d->steps = 4;
      d->cfg_scale = 1.0f;
      d->sampler = SD_SAMPLER_LCM;
      d->why = "LCM model (name): LCM sampler, 4 steps, guidance off";
    }
}

/* ---- text ---- */

/* Which encoders condition the UNet: SD1/SD2 use text_encoder; SDXL both; a
 * refiner only its OpenCLIP encoder (whichever slot the loader put it in). */
static int
encoders (SdPipeline *p, int *idx)
{
  int n = 0;
  if (p->cfg.arch == SD_ARCH_SDXL)
    {
      idx[n++] = 0;
      idx[n++] = 1;
    }
  else if (p->cfg.arch == SD_ARCH_SDXL_REFINER)
    idx[n++] = p->cfg.text_encoder_2.present ? 1 : 0;
  else
    idx[n++] = 0;
  return n;
}

static const SdTextEncoderConfig *
enc_cfg (SdPipeline *p, int i)
{
  return i == 0 ? &p->cfg.text_encoder : &p->cfg.text_encoder_2;
}

static SdTokenizer *
get_tokenizer (SdPipeline *p, int i, GError **error)
{
  if (p->tok[i])
    return p->tok[i];
  g_autofree char *dir = NULL;
  if (p->tokenizer_dir)
    dir = g_strdup (p->tokenizer_dir);
  else
    dir = sd_model_find_tokenizer_dir (p->model, i);
  if (!dir && i == 1)
    dir = sd_model_find_tokenizer_dir (p->model, 0); /* SDXL shares the vocabulary */
  if (!dir)
    dir = sd_tokenizer_find_dir (sd_model_get_path (p->model), error);
  if (!dir)
    return NULL;
  p->tok[i] = sd_tokenizer_new_from_dir (dir, error);
  if (p->tok[i] && sd_tokenizer_get_vocab_size (p->tok[i]) > enc_cfg (p, i)->vocab_size)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_UNSUPPORTED,
                   "the vocabulary in %s has %d entries but the text encoder only %d: they do not "
                   "belong together", dir, sd_tokenizer_get_vocab_size (p->tok[i]),
                   enc_cfg (p, i)->vocab_size);
      g_clear_pointer (&p->tok[i], sd_tokenizer_free);
    }
  return p->tok[i];
}


/* Hidden state layer and final LayerNorm for an encoder, A1111 clip_skip style. */
static void
layer_choice (SdPipeline *p, int clip_skip, int *skip, gboolean *final_ln)
{
  int extra = clip_skip > 1 ? clip_skip - 1 : 0;
  if (p->cfg.arch == SD_ARCH_SDXL || p->cfg.arch == SD_ARCH_SDXL_REFINER)
    {
      /* diffusers encode_prompt: hidden_states[-2] without final LN */
      *skip = 1 + extra;
      *final_ln = FALSE;
      return;
    }
  /* SD 1.x: the last layer with the final LayerNorm. SD 2.x conditions on
   * OpenCLIP's penultimate layer (ldm FrozenOpenCLIPEmbedder
   * layer="penultimate"); the loader drops the last layer of single files as
   * diffusers' conversion does, so both forms use their last layer here. */
  *final_ln = TRUE;
  *skip = extra;
}

/* Encode a prompt with encoder i: hidden [n_chunks, 77, C] with A1111
 * emphasis applied, and optionally the pooled output of the first chunk. */
static gboolean
encode_one (SdPipeline *p, int i, const char *prompt, int clip_skip, float **hidden, int *n_chunks,
            float **pooled, GError **error)
{
  const SdTextEncoderConfig *ec = enc_cfg (p, i);
  SdTokenizer *tok = get_tokenizer (p, i, error);
  if (!tok)
    return FALSE;
  SdClip *clip = sd_pipeline_get_clip (p, i, error);
  if (!clip)
    return FALSE;
  /* CLIP-style encoders pad with <|endoftext|>: the vocabulary's own id
   * (49407 in OpenAI's; small vocabularies such as the demo model's differ) */
  gint32 pad = ec->pad_id == 0 ? 0 : sd_tokenizer_get_eos_id (tok);
  g_autoptr (SdPromptTokens) tokens = sd_prompt_encode (tok, prompt ? prompt : "", pad, error);
  if (!tokens)
    return FALSE;
  const int n = tokens->n_chunks, T = 77, C = ec->hidden;
  float *z = g_new (float, (gsize) n * T * C);
  int P = ec->projection_dim > 0 ? ec->projection_dim : C;
  g_autofree float *pool = pooled ? g_new (float, (gsize) n * P) : NULL;
  SdClipRequest req = { .hidden = z, .pooled = pool };
  layer_choice (p, clip_skip, &req.skip, &req.final_ln);
  if (!sd_clip_encode (clip, tokens->ids, n, &req, error))
    {
      g_free (z);
      return FALSE;
    }
  /* emphasis (A1111 prompt_parser): scale each token's vector by its weight,
   * then restore the chunk's original mean */
  for (int c = 0; c < n; c++)
    {
      const float *wt = tokens->weights + (gsize) c * T;
      gboolean plain = TRUE;
      for (int t = 0; t < T; t++)
        plain &= wt[t] == 1.0f;
      if (plain)
        continue;
      float *zc = z + (gsize) c * T * C;
      double before = 0, after = 0;
      for (gsize k = 0; k < (gsize) T * C; k++)
        before += zc[k];
      for (int t = 0; t < T; t++)
        for (int d = 0; d < C; d++)
          zc[(gsize) t * C + d] *= wt[t];
      for (gsize k = 0; k < (gsize) T * C; k++)
        after += zc[k];
      if (after != 0.0)
        {
          float f = (float) (before / after);
          for (gsize k = 0; k < (gsize) T * C; k++)
            zc[k] *= f;
        }
    }
  if (p->opts.low_memory)
    g_clear_pointer (&p->clip[i], sd_clip_free);
  *hidden = z;
  *n_chunks = n;
  if (pooled)
    *pooled = g_memdup2 (pool, sizeof (float) * P);
  return TRUE;
}

/* The UNet context for a prompt: [n_chunks*77, D] (D = the encoders' widths
 * concatenated), plus the pooled embedding for SDXL. */
gboolean
sd_pipeline_encode_prompt (SdPipeline *p, const char *prompt, int clip_skip, float **context,
                           int *n_tokens, float **pooled, GError **error)
{
  int idx[2];
  int ne = encoders (p, idx);
  float *h[2] = { NULL, NULL };
  int nc[2] = { 0, 0 };
  gboolean want_pooled = p->cfg.unet.addition_time_embed_dim > 0;
  float *pool = NULL;
  gboolean ok = TRUE;
  for (int e = 0; e < ne && ok; e++)
    ok = encode_one (p, idx[e], prompt, clip_skip, &h[e], &nc[e],
                     (want_pooled && e == ne - 1) ? &pool : NULL, error);
  if (!ok)
    {
      g_free (h[0]);
      g_free (h[1]);
      g_free (pool);
      return FALSE;
    }
  /* both tokenizers split the same text the same way; guard anyway */
  int n = nc[0];
  for (int e = 1; e < ne; e++)
    n = MIN (n, nc[e]);
  int D = 0;
  for (int e = 0; e < ne; e++)
    D += enc_cfg (p, idx[e])->hidden;
  float *ctx = g_new (float, (gsize) n * 77 * D);
  for (gsize r = 0; r < (gsize) n * 77; r++)
    {
      int off = 0;
      for (int e = 0; e < ne; e++)
        {
          int C = enc_cfg (p, idx[e])->hidden;
          memcpy (ctx + r * D + off, h[e] + r * C, sizeof (float) * C);
          off += C;
        }
    }
  g_free (h[0]);
  g_free (h[1]);
  *context = ctx;
  *n_tokens = n * 77;
  if (pooled)
    *pooled = pool;
  else
    g_free (pool);
  return TRUE;
}

/* ---- the sampling loop ---- */

typedef struct
{
  SdPipeline *p;
  const SdJob *job;
  int B;          /* images */
  int h, w;       /* latent size */
  gboolean cfg;   /* classifier-free guidance: UNet batch 2B */
  int T, D;       /* context tokens and width */
  float *context; /* [UB, T, D] */
  float *text_embeds; /* [UB, P] (SDXL) */
  float *time_ids;    /* [UB, n_ids] (SDXL) */
  float *unet_in;     /* [UB, Cin, h, w] */
  float *unet_out;    /* [UB, 4, h, w] */
  float *timesteps;   /* [UB] */
  /* inpainting */
  float *mask_latents;   /* [B, 1, h, w] */
  float *masked_latents; /* [B, 4, h, w] (9-channel) */
  float *image_latents;  /* [B, 4, h, w] */
  float *noise;          /* [B, 4, h, w] initial noise (4-channel blending) */
  int t_start;           /* first schedule index run */
  SdNoise **gens;        /* per image, when no noise_fn */
  SdSchedule *schedule;
} Loop;

static gboolean
draw (Loop *L, SdNoisePurpose purpose, int step, float *out, GError **error)
{
  gsize n = (gsize) 4 * L->h * L->w;
  for (int i = 0; i < L->B; i++)
    {
      if (L->job->noise_fn)
        {
          if (!L->job->noise_fn (L->job->noise_data, purpose, i, step, out + i * n, n, error))
            return FALSE;
        }
      else
        sd_noise_randn (L->gens[i], out + i * n, n);
    }
  return TRUE;
}

static gboolean
step_noise (gpointer data, int index, float *out, gsize n, GError **error)
{
  return draw (data, SD_NOISE_STEP, index, out, error);
}

static void
trace (Loop *L, const char *what, int step, const float *v, gsize n)
{
  if (L->job->trace)
    L->job->trace (L->job->trace_data, what, step, v, n);
}

static gboolean
denoise (gpointer data, const float *x, float timestep, int index, float *out, GError **error)
{
  Loop *L = data;
  const SdUNetConfig *uc = &L->p->cfg.unet;
  const gsize plane = (gsize) L->h * L->w;
  const int UB = L->cfg ? 2 * L->B : L->B;
  const int cin = uc->in_channels;
  for (int u = 0; u < UB; u++)
    {
      int i = u % L->B;
      float *dst = L->unet_in + (gsize) u * cin * plane;
      memcpy (dst, x + (gsize) i * 4 * plane, sizeof (float) * 4 * plane);
      if (cin == 9)
        {
          memcpy (dst + 4 * plane, L->mask_latents + (gsize) i * plane, sizeof (float) * plane);
          memcpy (dst + 5 * plane, L->masked_latents + (gsize) i * 4 * plane, sizeof (float) * 4 * plane);
        }
      L->timesteps[u] = timestep;
    }
  SdUNetCall call = {
    .batch = UB,
    .height = L->h,
    .width = L->w,
    .context_len = L->T,
    .sample = L->unet_in,
    .timesteps = L->timesteps,
    .context = L->context,
    .text_embeds = L->text_embeds,
    .time_ids = L->time_ids,
    .out = L->unet_out,
  };
  if (!sd_unet_forward (L->p->unet, &call, error))
    return FALSE;
  const gsize n = (gsize) L->B * 4 * plane;
  if (L->cfg)
    {
      /* [uncond; cond]: guided = u + s (c - u) */
      const float s = L->job->cfg_scale;
      for (gsize k = 0; k < n; k++)
        {
          float uo = L->unet_out[k], co = L->unet_out[n + k];
          out[k] = uo + s * (co - uo);
        }
    }
  else
    memcpy (out, L->unet_out, sizeof (float) * n);
  trace (L, "step_eps", index, out, n);
  return TRUE;
}

static gboolean
step_hook (gpointer data, int index, float *x, const float *denoised, gsize n)
{
  Loop *L = data;
  const SdUNetConfig *uc = &L->p->cfg.unet;
  if (L->job->mode == SD_MODE_INPAINT && uc->in_channels == 4)
    sd_schedule_inpaint_blend (L->schedule, index, x, L->image_latents, L->noise, L->mask_latents,
                               L->B, 4, (gsize) L->h * L->w);
  trace (L, "step_latents", index, x, n);
  if (denoised)
    trace (L, "step_denoised", index, denoised, n);
  if (L->job->progress)
    {
      /* steps actually run: img2img starts at t_start */
      int total = sd_schedule_get_n_steps (L->schedule) - L->t_start;
      return L->job->progress (L->job->progress_data, index + 1 - L->t_start, total, x, n);
    }
  return TRUE;
}

static gboolean
check_job (SdPipeline *p, const SdJob *job, GError **error)
{
  if (job->width <= 0 || job->height <= 0 || job->width % 8 || job->height % 8)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "width and height must be positive multiples "
                   "of 8 (got %dx%d)", job->width, job->height);
      return FALSE;
    }
  if ((gint64) job->width * job->height > (gint64) 4096 * 4096)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "%dx%d is larger than the 4096x4096 limit",
                   job->width, job->height);
      return FALSE;
    }
  if (job->steps <= 0 || job->steps > 1000)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "steps must be between 1 and 1000 (got %d)",
                   job->steps);
      return FALSE;
    }
  if (!isfinite (job->cfg_scale) || job->cfg_scale < 0 || job->cfg_scale > 100)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "guidance scale must be between 0 and 100 (got %g)",
                   job->cfg_scale);
      return FALSE;
    }
  if (job->batch < 1 || job->batch > 64)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "batch size must be between 1 and 64 (got %d)",
                   job->batch);
      return FALSE;
    }
  if (job->mode != SD_MODE_TXT2IMG)
    {
      if (!isfinite (job->strength) || job->strength <= 0 || job->strength > 1)
        {
          g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "strength must be in (0, 1] (got %g)",
                       job->strength);
          return FALSE;
        }
      if (!job->init_image)
        {
          g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "this mode needs an init image");
          return FALSE;
        }
    }
  if (job->mode == SD_MODE_INPAINT && !job->mask)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "inpainting needs a mask");
      return FALSE;
    }
  if (job->mode != SD_MODE_INPAINT && p->cfg.unet.in_channels == 9)
    {
      /* an inpainting model without a mask: repaint everything (A1111 does
       * the same: masked image = zeros, mask = ones) */
    }
  return TRUE;
}

static void
loop_clear (Loop *L)
{
  g_free (L->context);
  g_free (L->text_embeds);
  g_free (L->time_ids);
  g_free (L->unet_in);
  g_free (L->unet_out);
  g_free (L->timesteps);
  g_free (L->mask_latents);
  g_free (L->masked_latents);
  g_free (L->image_latents);
  g_free (L->noise);
  if (L->gens)
    for (int i = 0; i < L->B; i++)
      sd_noise_free (L->gens[i]);
  g_free (L->gens);
  sd_schedule_free (L->schedule);
}

/* cond and uncond contexts with equal token counts, stacked [uncond x B; cond x B] */
static gboolean
prepare_conditioning (SdPipeline *p, const SdJob *job, Loop *L, GString *notes, GError **error)
{
  const SdUNetConfig *uc = &p->cfg.unet;
  const gboolean xl = uc->addition_time_embed_dim > 0;
  const int P = uc->pooled_dim;
  g_autofree float *c = NULL, *u = NULL, *cp = NULL, *up = NULL;
  int tc = 0, tu = 0;
  const int D = uc->context_dim;
  if (job->cond)
    {
      tc = tu = job->cond_len;
      c = g_memdup2 (job->cond, sizeof (float) * tc * D);
      if (L->cfg)
        u = g_memdup2 (job->uncond, sizeof (float) * tu * D);
      if (xl)
        {
          cp = g_memdup2 (job->cond_pooled, sizeof (float) * P);
          if (L->cfg)
            up = g_memdup2 (job->uncond_pooled, sizeof (float) * P);
        }
    }
  else
    {
      if (!sd_pipeline_encode_prompt (p, job->prompt, job->clip_skip, &c, &tc, xl ? &cp : NULL, error))
        return FALSE;
      if (L->cfg)
        {
          /* SDXL base (force_zeros_for_empty_prompt): no negative prompt means
           * zero context and pooled embedding, not the encoding of "" */
          if (xl && p->cfg.force_zeros_for_empty_prompt && job->negative == NULL)
            {
              tu = tc;
              u = g_new0 (float, (gsize) tu * D);
              up = g_new0 (float, P);
            }
          else if (!sd_pipeline_encode_prompt (p, job->negative ? job->negative : "", job->clip_skip,
                                               &u, &tu, xl ? &up : NULL, error))
            return FALSE;
        }
    }
  if (L->cfg && tu != tc)
    {
      /* pad the shorter with chunks of the empty prompt (A1111) */
      g_autofree float *empty = NULL;
      int te = 0;
      if (!sd_pipeline_encode_prompt (p, "", job->clip_skip, &empty, &te, NULL, error))
        return FALSE;
      float **shorter = tc < tu ? &c : &u;
      int *ts = tc < tu ? &tc : &tu;
      int target = MAX (tc, tu);
      float *grown = g_new (float, (gsize) target * D);
      memcpy (grown, *shorter, sizeof (float) * (*ts) * D);
      for (int t = *ts; t < target; t += 77)
        memcpy (grown + (gsize) t * D, empty, sizeof (float) * 77 * D);
      g_free (*shorter);
      *shorter = grown;
      *ts = target;
      if (notes)
        g_string_append (notes, "negative and positive prompts padded to the same length; ");
    }
  const int B = L->B, UB = L->cfg ? 2 * B : B;
  L->T = tc;
  L->D = D;
  L->context = g_new (float, (gsize) UB * tc * D);
  for (int k = 0; k < UB; k++)
    {
      const float *src = (L->cfg && k < B) ? u : c;
      memcpy (L->context + (gsize) k * tc * D, src, sizeof (float) * tc * D);
    }
  if (xl)
    {
      const int nid = uc->n_time_ids;
      L->text_embeds = g_new (float, (gsize) UB * P);
      L->time_ids = g_new (float, (gsize) UB * nid);
      float tid_c[8] = { 0 }, tid_u[8] = { 0 };
      float oh = job->original_height > 0 ? job->original_height : job->height;
      float ow = job->original_width > 0 ? job->original_width : job->width;
      tid_c[0] = tid_u[0] = oh;
      tid_c[1] = tid_u[1] = ow;
      tid_c[2] = tid_u[2] = job->crop_top;
      tid_c[3] = tid_u[3] = job->crop_left;
      if (nid == 6)
        {
          tid_c[4] = tid_u[4] = job->height;
          tid_c[5] = tid_u[5] = job->width;
        }
      else if (nid == 5)
        {
          tid_c[4] = job->aesthetic_score > 0 ? job->aesthetic_score : 6.0f;
          tid_u[4] = job->negative_aesthetic_score > 0 ? job->negative_aesthetic_score : 2.5f;
        }
      if (job->cond_time_ids)
        memcpy (tid_c, job->cond_time_ids, sizeof (float) * nid);
      if (job->uncond_time_ids)
        memcpy (tid_u, job->uncond_time_ids, sizeof (float) * nid);
      for (int k = 0; k < UB; k++)
        {
          gboolean un = L->cfg && k < B;
          memcpy (L->text_embeds + (gsize) k * P, un ? up : cp, sizeof (float) * P);
          memcpy (L->time_ids + (gsize) k * nid, un ? tid_u : tid_c, sizeof (float) * nid);
        }
    }
  return TRUE;
}

/* posterior sample: sf * (mean + exp(0.5 logvar) * eps), per image */
static gboolean
encode_latents (SdPipeline *p, Loop *L, const float *image, SdNoisePurpose purpose, float *out,
                GError **error)
{
  const int H = L->h * 8, W = L->w * 8;
  const gsize n = (gsize) 4 * L->h * L->w;
  g_autofree float *mean = g_new (float, n);
  g_autofree float *logvar = g_new (float, n);
  if (!sd_vae_encode (p->vae, 1, H, W, image, mean, logvar, NULL, error))
    return FALSE;
  if (!draw (L, purpose, -1, out, error))
    return FALSE;
  const float sf = p->cfg.vae.scaling_factor;
  for (int i = 0; i < L->B; i++)
    for (gsize k = 0; k < n; k++)
      out[i * n + k] = sf * (mean[k] + expf (0.5f * logvar[k]) * out[i * n + k]);
  return TRUE;
}

gboolean
sd_pipeline_run (SdPipeline *p, const SdJob *job, SdResult *result, GError **error)
{
  memset (result, 0, sizeof *result);
  if (!check_job (p, job, error))
    return FALSE;
  const SdUNetConfig *uc = &p->cfg.unet;
  if (uc->out_channels != 4 || p->cfg.vae.latent_channels != 4)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_UNSUPPORTED, "only 4-channel latents are supported");
      return FALSE;
    }
  if (!sd_pipeline_get_unet (p, error) || !sd_pipeline_get_vae (p, error))
    return FALSE;

  g_autoptr (GString) notes = g_string_new (NULL);
  Loop L = { .p = p, .job = job, .B = job->batch, .h = job->height / 8, .w = job->width / 8 };
  L.cfg = job->cfg_scale > 1.0f;
  const int B = L.B, UB = L.cfg ? 2 * B : B;
  const gsize plane = (gsize) L.h * L.w, n = (gsize) B * 4 * plane;
  gboolean ok = FALSE;

  L.schedule = sd_schedule_new (&p->cfg.scheduler, job->sampler, job->steps, &job->schedule, error);
  if (!L.schedule)
    goto out;
  int N = sd_schedule_get_n_steps (L.schedule);
  trace (&L, "timesteps", -1, sd_schedule_get_timesteps (L.schedule), N);
  trace (&L, "sigmas", -1, sd_schedule_get_sigmas (L.schedule), N + 1);
  int t_start = 0;
  gboolean partial = job->mode == SD_MODE_IMG2IMG || (job->mode == SD_MODE_INPAINT && job->strength < 1.0f);
  if (partial && !sd_schedule_img2img_start (L.schedule, job->strength, &t_start, error))
    goto out;
  L.t_start = t_start;
  if (!job->noise_fn)
    {
      L.gens = g_new0 (SdNoise *, B);
      for (int i = 0; i < B; i++)
        L.gens[i] = sd_noise_new (job->seed + (guint64) i);
    }
  if (!prepare_conditioning (p, job, &L, notes, error))
    goto out;
  L.unet_in = g_new (float, (gsize) UB * uc->in_channels * plane);
  L.unet_out = g_new (float, (gsize) UB * uc->out_channels * plane);
  L.timesteps = g_new (float, UB);

  /* init image latents, masks */
  const int H = job->height, W = job->width;
  gboolean need_image_latents = job->mode == SD_MODE_IMG2IMG
                                || (job->mode == SD_MODE_INPAINT && (uc->in_channels == 4 || partial));
  if (need_image_latents)
    {
      L.image_latents = g_new (float, n);
      if (!encode_latents (p, &L, job->init_image, SD_NOISE_POSTERIOR, L.image_latents, error))
        goto out;
      trace (&L, "image_latents", -1, L.image_latents, n);
    }
  if (uc->in_channels == 9 || job->mode == SD_MODE_INPAINT)
    {
      /* mask: binarised at 0.5 unless soft (diffusers mask_processor); latent
       * mask by nearest downsampling mask[8i, 8j] (F.interpolate 'nearest') */
      g_autofree float *mask = g_new (float, (gsize) H * W);
      for (gsize k = 0; k < (gsize) H * W; k++)
        {
          float m = job->mask ? job->mask[k] : 1.0f;
          mask[k] = job->soft_mask ? m : (m < 0.5f ? 0.0f : 1.0f);
        }
      L.mask_latents = g_new (float, (gsize) B * plane);
      for (int i = 0; i < B; i++)
        for (int y = 0; y < L.h; y++)
          for (int x = 0; x < L.w; x++)
            L.mask_latents[i * plane + (gsize) y * L.w + x] = mask[(gsize) (8 * y) * W + 8 * x];
      trace (&L, "mask_latents", -1, L.mask_latents, (gsize) B * plane);
      if (uc->in_channels == 9)
        {
          /* masked_image = image * (mask < 0.5) */
          g_autofree float *masked = g_new (float, (gsize) 3 * H * W);
          for (int c = 0; c < 3; c++)
            for (gsize k = 0; k < (gsize) H * W; k++)
              masked[c * (gsize) H * W + k] = job->init_image && mask[k] < 0.5f
                                                ? job->init_image[c * (gsize) H * W + k] : 0.0f;
          L.masked_latents = g_new (float, n);
          if (!encode_latents (p, &L, masked, SD_NOISE_POSTERIOR_MASKED, L.masked_latents, error))
            goto out;
          trace (&L, "masked_image_latents", -1, L.masked_latents, n);
        }
    }

  /* starting latents */
  L.noise = g_new (float, n);
  if (!draw (&L, SD_NOISE_INITIAL, -1, L.noise, error))
    goto out;
  result->latents = g_new (float, n);
  sd_schedule_prepare_latents (L.schedule, L.noise, partial ? L.image_latents : NULL, t_start,
                               result->latents, n);
  trace (&L, partial ? "start_latents" : "init_latents", -1, result->latents, n);
  if (!partial)
    trace (&L, "start_latents", -1, result->latents, n);

  if (!sd_sample (L.schedule, result->latents, n, t_start, denoise, &L, step_noise, &L, step_hook, &L, error))
    goto out;
  trace (&L, "final_latents", -1, result->latents, n);

  result->batch = B;
  result->width = W;
  result->height = H;
  if (!job->skip_decode)
    {
      /* one image at a time: the decoder's activations dwarf everything else */
      result->images = g_new (float, (gsize) B * 3 * H * W);
      for (int i = 0; i < B; i++)
        if (!sd_vae_decode (p->vae, 1, L.h, L.w, result->latents + i * 4 * plane,
                            result->images + (gsize) i * 3 * H * W, NULL, error))
          goto out;
    }
  ok = TRUE;
out:
  loop_clear (&L);
  if (!ok)
    sd_result_clear (result);
  else if (notes->len)
    result->notes = g_strdup (notes->str);
  return ok;
}
