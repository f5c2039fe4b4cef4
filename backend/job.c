/* job.c: parameters -> SdJob -> composited images -> PNG bytes (see job.h). */
#define _GNU_SOURCE /* dl_iterate_phdr (sanitizer builds) */
#include "config.h"

#include <math.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#include <dlfcn.h>
#include <link.h>
#endif

#include "imp-core.h"
#include "job.h"
#include "models.h"
#include "sd-error.h"

void
imp_job_params_init (ImpJobParams *p)
{
  memset (p, 0, sizeof *p);
  p->mode = SD_MODE_TXT2IMG;
  p->width = p->height = 512;
  p->steps = 20;
  p->cfg_scale = 7.0;
  p->sampler = SD_SAMPLER_EULER_A;
  p->batch = 1;
  p->n_iter = 1;
  p->strength = 0.75;
  p->mask_blur = 4;
  p->full_res_padding = 32;
}

void
imp_job_params_clear (ImpJobParams *p)
{
  g_free (p->prompt);
  g_free (p->negative);
  sd_image_free (p->init);
  g_free (p->mask);
  imp_job_params_init (p);
}

void
imp_job_limits_init (ImpJobLimits *l)
{
  l->max_side = 4096;
  l->max_pixels = (guint64) 4096 * 4096;
  l->max_steps = 1000;
  l->max_batch = 64;
  l->max_images = 64;
}

static gboolean invalid (GError **error, const char *format, ...) G_GNUC_PRINTF (2, 3);

static gboolean
invalid (GError **error, const char *format, ...)
{
  va_list ap;
  va_start (ap, format);
  g_autofree char *msg = g_strdup_vprintf (format, ap);
  va_end (ap);
  g_set_error_literal (error, SD_ERROR, SD_ERROR_INVALID_ARG, msg);
  return FALSE;
}

gboolean
imp_job_params_validate (const ImpJobParams *p, const ImpJobLimits *limits, GError **error)
{
  ImpJobLimits def;
  if (!limits)
    {
      imp_job_limits_init (&def);
      limits = &def;
    }
  if (p->width <= 0 || p->height <= 0 || p->width % 8 || p->height % 8)
    return invalid (error, "width and height must be positive multiples of 8 (got %dx%d)", p->width,
                    p->height);
  if (p->width > limits->max_side || p->height > limits->max_side)
    return invalid (error, "%dx%d is too large: at most %d pixels a side", p->width, p->height,
                    limits->max_side);
  if ((guint64) p->width * (guint64) p->height > limits->max_pixels)
    return invalid (error, "%dx%d is too large: at most %" G_GUINT64_FORMAT " pixels", p->width,
                    p->height, limits->max_pixels);
  if (p->steps < 1 || p->steps > limits->max_steps)
    return invalid (error, "steps must be between 1 and %d (got %d)", limits->max_steps, p->steps);
  if (!isfinite (p->cfg_scale) || p->cfg_scale < 0 || p->cfg_scale > 100)
    return invalid (error, "guidance scale (CFG) must be between 0 and 100 (got %g)", p->cfg_scale);
  if (p->batch < 1 || p->batch > limits->max_batch)
    return invalid (error, "batch size must be between 1 and %d (got %d)", limits->max_batch,
                    p->batch);
  if (p->n_iter < 1 || (gint64) p->batch * p->n_iter > limits->max_images)
    return invalid (error, "batch size x iterations must be between 1 and %d (got %d x %d)",
                    limits->max_images, p->batch, p->n_iter);
  if (p->clip_skip < 0 || p->clip_skip > 12)
    return invalid (error, "clip skip must be between 0 and 12 (got %d)", p->clip_skip);
  if (p->sampler < 0 || p->sampler >= SD_SAMPLER_N_KINDS)
    return invalid (error, "unknown sampler");
  if (p->karras && (p->sampler == SD_SAMPLER_DDIM || p->sampler == SD_SAMPLER_LCM))
    return invalid (error, "the Karras schedule is not available with the %s sampler",
                    sd_sampler_display_name (p->sampler));
  if (p->mode == SD_MODE_TXT2IMG)
    return TRUE;

  if (!isfinite (p->strength) || p->strength <= 0 || p->strength > 1)
    return invalid (error, "strength (denoising strength) must be in (0, 1] (got %g)", p->strength);
  /* diffusers' get_timesteps: int(steps * strength) steps run (in double) */
  if ((int) ((double) p->steps * (double) (float) p->strength) < 1)
    return invalid (error,
                    "with %d steps a strength of %g runs no step: raise --steps or the "
                    "strength to at least %g",
                    p->steps, p->strength, 1.0 / p->steps);
  if (!p->init)
    return invalid (error, "%s needs an init image",
                    p->mode == SD_MODE_INPAINT ? "inpainting" : "img2img");
  if (p->init->channels != 3)
    return invalid (error, "the init image must be RGB");
  if (p->mode == SD_MODE_INPAINT && !p->mask)
    return invalid (error, "inpainting needs a mask");
  if (p->mask_blur < 0 || p->mask_blur > 256)
    return invalid (error, "mask blur must be between 0 and 256 px (got %d)", p->mask_blur);
  if (p->full_res_padding < 0 || p->full_res_padding > 4096)
    return invalid (error, "the masked-area padding must be between 0 and 4096 px (got %d)",
                    p->full_res_padding);
  gboolean cropped = p->full_res && p->mask;
  if (!cropped && !p->resize_init && (p->init->width != p->width || p->init->height != p->height))
    return invalid (error,
                    "the init image is %dx%d but the requested size is %dx%d: give the "
                    "image's size (or none to use it) or resize the image first",
                    p->init->width, p->init->height, p->width, p->height);
  return TRUE;
}

float *
imp_mask_from_image (const SdImage *img)
{
  const gsize n = (gsize) img->width * img->height;
  float *mask = g_new (float, n);
  if (img->channels == 4 || img->channels == 2)
    {
      const int a = img->channels - 1;
      gboolean opaque = TRUE;
      for (int y = 0; y < img->height && opaque; y++)
        {
          const guint8 *row = sd_image_row (img, y);
          for (int x = 0; x < img->width; x++)
            if (row[(gsize) x * img->channels + a] != 255)
              {
                opaque = FALSE;
                break;
              }
        }
      if (!opaque)
        {
          sd_image_to_mask (img, a, mask);
          return mask;
        }
    }
  if (img->channels == 1)
    {
      sd_image_to_mask (img, 0, mask);
      return mask;
    }
  g_autoptr (SdImage) gray = sd_image_convert (img, 1, NULL);
  if (!gray)
    {
      g_free (mask);
      return NULL;
    }
  sd_image_to_mask (gray, 0, mask);
  return mask;
}

gboolean
imp_round_size (int width, int height, int multiple, int *out_w, int *out_h)
{
  *out_w = MAX (width / multiple * multiple, multiple);
  *out_h = MAX (height / multiple * multiple, multiple);
  return *out_w != width || *out_h != height;
}

void
imp_job_result_clear (ImpJobResult *r)
{
  if (r->png)
    g_ptr_array_unref (r->png);
  if (r->infotexts)
    g_ptr_array_unref (r->infotexts);
  if (r->seeds)
    g_array_unref (r->seeds);
  g_free (r->model_name);
  g_free (r->notes);
  memset (r, 0, sizeof *r);
}

char *
imp_job_infotext (const ImpJobParams *p, const char *model_name, guint64 seed)
{
  SdGenParams g;
  sd_gen_params_init (&g);
  g.prompt = p->prompt ? p->prompt : "";
  g.negative_prompt = p->negative;
  g.steps = p->steps;
  g.sampler = sd_sampler_display_name (p->sampler);
  if (p->karras && p->sampler != SD_SAMPLER_DPMPP_2M_KARRAS)
    g.schedule = "Karras";
  g.cfg_scale = p->cfg_scale;
  g.has_seed = TRUE;
  g.seed = seed;
  g.width = p->width;
  g.height = p->height;
  g.model = model_name;
  if (p->mode != SD_MODE_TXT2IMG)
    g.denoising_strength = p->strength;
  g.clip_skip = p->clip_skip;
  if (p->mask)
    g.mask_blur = p->mask_blur;
  return sd_format_parameters (&g);
}

/* ---- inpaint geometry -------------------------------------------------------------- */

/* The bounding box of mask > 0, or an empty rectangle. */
static ImpRect
mask_bounds (const float *mask, int w, int h)
{
  int x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (int y = 0; y < h; y++)
    {
      const float *row = mask + (gsize) y * w;
      for (int x = 0; x < w; x++)
        if (row[x] > 0.0f)
          {
            x0 = MIN (x0, x);
            x1 = MAX (x1, x);
            y0 = MIN (y0, y);
            y1 = MAX (y1, y);
          }
    }
  ImpRect r = { 0, 0, 0, 0 };
  if (x1 >= 0)
    {
      r.x = x0;
      r.y = y0;
      r.width = x1 - x0 + 1;
      r.height = y1 - y0 + 1;
    }
  return r;
}

/* Grow [*a, *a + *len) to `want` around its centre inside [0, limit). */
static void
grow_span (int *a, int *len, int want, int limit)
{
  want = MIN (want, limit);
  if (want <= *len)
    return;
  int diff = want - *len;
  int start = *a - diff / 2;
  start = CLAMP (start, 0, limit - want);
  *a = start;
  *len = want;
}

/* A1111's inpaint_full_res crop: the mask's bounds grown by `padding` on every
 * side and clipped to the image, then widened (or heightened) toward the
 * processing aspect ratio tw:th, as far as the image allows, so the crop is
 * scaled without distortion where possible. */
static ImpRect
full_res_crop (const float *mask, int w, int h, int padding, int tw, int th)
{
  ImpRect image = { 0, 0, w, h };
  ImpRect r = mask_bounds (mask, w, h);
  if (imp_rect_is_empty (r))
    return image;
  ImpRect grown = { r.x - padding, r.y - padding, r.width + 2 * padding, r.height + 2 * padding };
  r = imp_rect_intersect (grown, image);
  /* compare r.w / r.h with tw / th in integers */
  if ((gint64) r.width * th > (gint64) r.height * tw)
    {
      int want = (int) (((gint64) r.width * th + tw - 1) / tw);
      grow_span (&r.y, &r.height, want, h);
    }
  else
    {
      int want = (int) (((gint64) r.height * tw + th - 1) / th);
      grow_span (&r.x, &r.width, want, w);
    }
  return r;
}

static float *
crop_mask (const float *mask, int w, ImpRect r)
{
  float *out = g_new (float, (gsize) r.width *r.height);
  for (int y = 0; y < r.height; y++)
    memcpy (out + (gsize) y * r.width, mask + (gsize) (r.y + y) * w + r.x,
            sizeof (float) * r.width);
  return out;
}

/* Resample a mask (bilinear) and clamp to [0, 1]. */
static float *
resize_mask (const float *mask, int w, int h, int dw, int dh, GError **error)
{
  float *out = g_new (float, (gsize) dw *dh);
  if (!sd_resample_f32 (mask, w, h, 1, out, dw, dh, SD_RESAMPLE_BILINEAR, error))
    {
      g_free (out);
      return NULL;
    }
  for (gsize k = 0; k < (gsize) dw * dh; k++)
    out[k] = CLAMP (out[k], 0.0f, 1.0f);
  return out;
}

/* A copy without the text chunks: outputs carry only their own parameters,
 * never those of the image they were made from. */
static SdImage *
pixels_copy (const SdImage *img)
{
  SdImage *c = sd_image_copy (img);
  while (sd_image_get_n_texts (c) > 0)
    {
      g_autofree char *key = g_strdup (sd_image_get_text_key (c, 0));
      sd_image_set_text (c, key, NULL, NULL);
    }
  return c;
}

/* ---- running ----------------------------------------------------------------------- */

typedef struct
{
  ImpJobProgressFn fn;
  gpointer data;
  int iteration, n_iter;
  int first; /* the first step number the pipeline reported in this run */
} ProgressRelay;

static gboolean
relay_progress (gpointer data, int step, int total, const float *latents, gsize n)
{
  ProgressRelay *r = data;
  if (r->first <= 0)
    r->first = step;
  ImpJobProgress p = {
    .iteration = r->iteration,
    .n_iter = r->n_iter,
    .step = step - r->first + 1,
    .total = total - r->first + 1,
    .latents = latents,
  };
  double in_run = p.total > 0 ? (double) p.step / p.total : 1.0;
  p.fraction = (r->iteration + in_run) / r->n_iter;
  return r->fn ? r->fn (r->data, &p) : TRUE;
}

const char *
imp_job_apply_defaults (SdPipeline *pipeline, ImpJobParams *params)
{
  SdModelDefaults d;
  sd_pipeline_get_defaults (pipeline, &d);
  params->spacing = d.spacing;
  if (!params->unset)
    return NULL;
  if (params->unset & IMP_UNSET_SIZE)
    {
      params->width = d.width;
      params->height = d.height;
    }
  if (params->unset & IMP_UNSET_STEPS)
    params->steps = d.steps;
  if (params->unset & IMP_UNSET_CFG)
    params->cfg_scale = d.cfg_scale;
  if (params->unset & IMP_UNSET_SAMPLER)
    params->sampler = d.sampler;
  params->unset = 0;
  return d.why;
}

gboolean
imp_job_run (SdPipeline *pipeline, const char *model_path, ImpJobParams *params,
             ImpJobProgressFn progress, gpointer progress_data, ImpJobResult *result,
             GError **error)
{
  memset (result, 0, sizeof *result);
  const char *defaults = imp_job_apply_defaults (pipeline, params);
  if (!imp_job_params_validate (params, NULL, error))
    {
      if (defaults)
        g_prefix_error (error, "with this model's defaults (%s): ", defaults);
      return FALSE;
    }
  const int W = params->width, H = params->height;
  g_autofree char *model_name = imp_model_display_name (model_path);

  /* what the model sees: work_image (W x H) and work_mask, plus how the
   * result goes back (crop in the init image, soft mask) */
  g_autoptr (SdImage) work_image = NULL;
  g_autofree float *work_mask = NULL; /* [H][W] blurred, for the model and the blend */
  g_autoptr (SdImage) base = NULL;    /* the image results are composited into */
  g_autofree float *base_mask = NULL; /* blurred mask over `crop` of base */
  ImpRect crop = { 0, 0, W, H };
  gboolean cropped = FALSE;
  if (params->mode != SD_MODE_TXT2IMG)
    {
      const SdImage *init = params->init;
      const int iw = init->width, ih = init->height;
      g_autofree float *mask = NULL;
      if (params->mask)
        {
          mask = g_memdup2 (params->mask, sizeof (float) * iw * ih);
          if (params->mask_invert)
            for (gsize k = 0; k < (gsize) iw * ih; k++)
              mask[k] = 1.0f - mask[k];
          /* A1111 mask_blur is a gaussian's sigma; imp_mask_feather takes
           * GIMP's radius = 3.5 sigma */
          if (params->mask_blur > 0)
            imp_mask_feather (mask, iw, ih, 3.5 * params->mask_blur);
        }
      if (mask && params->full_res)
        {
          cropped = TRUE;
          crop = full_res_crop (mask, iw, ih, params->full_res_padding, W, H);
          g_autoptr (SdImage) part
              = sd_image_crop (init, crop.x, crop.y, crop.width, crop.height, error);
          if (!part)
            return FALSE;
          work_image = sd_image_resample (part, W, H, SD_RESAMPLE_LANCZOS3, error);
          base_mask = crop_mask (mask, iw, crop);
          work_mask = resize_mask (base_mask, crop.width, crop.height, W, H, error);
          if (!work_image || !work_mask)
            return FALSE;
          base = pixels_copy (init);
        }
      else if (iw != W || ih != H)
        {
          work_image = sd_image_resample (init, W, H, SD_RESAMPLE_LANCZOS3, error);
          if (!work_image)
            return FALSE;
          if (mask && !(work_mask = resize_mask (mask, iw, ih, W, H, error)))
            return FALSE;
        }
      else
        {
          work_image = pixels_copy (init);
          work_mask = g_steal_pointer (&mask);
        }
    }

  g_autofree float *init_tensor = NULL;
  if (work_image)
    {
      init_tensor = g_new (float, (gsize) 3 * W * H);
      sd_image_to_tensor (work_image, init_tensor);
    }

  result->png = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  result->infotexts = g_ptr_array_new_with_free_func (g_free);
  result->seeds = g_array_new (FALSE, FALSE, sizeof (guint64));
  result->width = cropped ? params->init->width : W;
  result->height = cropped ? params->init->height : H;
  result->model_name = g_strdup (model_name);
  result->defaults = defaults;

  for (int it = 0; it < params->n_iter; it++)
    {
      ProgressRelay relay = { progress, progress_data, it, params->n_iter, 0 };
      SdJob job;
      sd_job_init (&job);
      job.mode = params->mode;
      job.prompt = params->prompt ? params->prompt : "";
      job.negative = params->negative;
      job.width = W;
      job.height = H;
      job.steps = params->steps;
      job.cfg_scale = (float) params->cfg_scale;
      job.sampler = params->sampler;
      job.schedule.karras = params->karras && params->sampler != SD_SAMPLER_DPMPP_2M_KARRAS;
      job.schedule.spacing = params->spacing;
      job.seed = params->seed + (guint64) it * params->batch;
      job.batch = params->batch;
      job.clip_skip = params->clip_skip;
      job.strength = (float) params->strength;
      job.init_image = init_tensor;
      job.mask = params->mode == SD_MODE_INPAINT ? work_mask : NULL;
      job.progress = relay_progress;
      job.progress_data = &relay;

      SdResult res;
      if (!sd_pipeline_run (pipeline, &job, &res, error))
        {
          imp_job_result_clear (result);
          return FALSE;
        }
      if (res.notes && !result->notes)
        result->notes = g_strdup (res.notes);
      for (int i = 0; i < res.batch; i++)
        {
          const guint64 seed = job.seed + (guint64) i;
          g_autoptr (SdImage) gen = sd_image_new (W, H, 3, error);
          if (!gen)
            {
              sd_result_clear (&res);
              imp_job_result_clear (result);
              return FALSE;
            }
          sd_image_from_tensor (gen, res.images + (gsize) i * 3 * W * H);
          g_autoptr (SdImage) out = NULL;
          if (params->uncomposited)
            {
              /* as generated, at the size of the region that was generated */
              if (cropped)
                {
                  out = sd_image_resample (gen, crop.width, crop.height, SD_RESAMPLE_LANCZOS3, error);
                  if (!out)
                    {
                      sd_result_clear (&res);
                      imp_job_result_clear (result);
                      return FALSE;
                    }
                }
              else
                out = g_steal_pointer (&gen);
            }
          else if (work_mask && params->mode == SD_MODE_INPAINT && cropped)
            {
              /* back to the crop's size, then through the blurred mask into
               * the whole image */
              g_autoptr (SdImage) back
                  = sd_image_resample (gen, crop.width, crop.height, SD_RESAMPLE_LANCZOS3, error);
              if (!back)
                {
                  sd_result_clear (&res);
                  imp_job_result_clear (result);
                  return FALSE;
                }
              out = pixels_copy (base);
              imp_composite (out, back, base_mask, crop.x, crop.y);
            }
          else if (work_mask && params->mode == SD_MODE_INPAINT)
            {
              out = pixels_copy (work_image);
              imp_blend (out, work_image, gen, work_mask);
            }
          else
            out = g_steal_pointer (&gen);
          g_autofree char *info = imp_job_infotext (params, model_name, seed);
          GBytes *png = NULL;
          if (!sd_image_set_text (out, "parameters", info, error)
              || !(png = sd_image_save_png_to_bytes (out, -1, error)))
            {
              sd_result_clear (&res);
              imp_job_result_clear (result);
              return FALSE;
            }
          g_ptr_array_add (result->png, png);
          g_ptr_array_add (result->infotexts, g_steal_pointer (&info));
          g_array_append_val (result->seeds, seed);
        }
      sd_result_clear (&res);
    }
  return TRUE;
}

#if defined(__SANITIZE_ADDRESS__)
static int
pin_one (struct dl_phdr_info *info, size_t size, void *data)
{
  if (info->dlpi_name && info->dlpi_name[0] == '/')
    dlopen (info->dlpi_name, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
  return 0;
}
#endif

void
imp_pin_loaded_libraries (void)
{
#if defined(__SANITIZE_ADDRESS__)
  dl_iterate_phdr (pin_one, NULL);
#endif
}
