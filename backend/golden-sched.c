/* golden-sched.c: check-golden handlers for schedules, noise, and the full
 * sampling pipelines (sampler, img2img, inpaint).
 *
 * The pipeline cases run the real sd_pipeline_run with the case's inputs
 * injected: conditioning tensors instead of prompts, and the case's noise
 * tensors through the pipeline's noise-source hook; intermediate values come
 * back through its trace hook. */
#include "config.h"

#include <math.h>
#include <string.h>

#include "golden-nets.h"
#include "sd-error.h"
#include "sd-noise.h"
#include "sd-pipeline.h"
#include "sd-sampler.h"

/* scheduler config: params.scheduler_config, else the model's */
static void
scheduler_config (ImpGoldenCase *gc, SdSchedulerConfig *cfg)
{
  sd_scheduler_config_set_defaults (cfg);
  JsonObject *o = imp_json_object (gc->params, "scheduler_config");
  if (!o && gc->model)
    o = imp_json_object (gc->model, "scheduler_config");
  if (!o)
    return;
  cfg->num_train_timesteps = imp_json_int (o, "num_train_timesteps", cfg->num_train_timesteps);
  cfg->beta_start = imp_json_double (o, "beta_start", cfg->beta_start);
  cfg->beta_end = imp_json_double (o, "beta_end", cfg->beta_end);
  g_strlcpy (cfg->beta_schedule, imp_json_string (o, "beta_schedule", cfg->beta_schedule),
             sizeof cfg->beta_schedule);
  cfg->steps_offset = imp_json_int (o, "steps_offset", cfg->steps_offset);
  g_strlcpy (cfg->timestep_spacing, imp_json_string (o, "timestep_spacing", cfg->timestep_spacing),
             sizeof cfg->timestep_spacing);
  const char *pred = imp_json_string (o, "prediction_type", "epsilon");
  cfg->prediction = g_strcmp0 (pred, "v_prediction") == 0 ? SD_PREDICTION_V : SD_PREDICTION_EPSILON;
  cfg->prediction_known = TRUE;
}

/* "euler", "dpmpp_2m_karras", "euler_trailing" ... -> kind + options */
static gboolean
parse_sched_key (const char *key, SdSamplerKind *kind, SdScheduleOptions *opts, GError **error)
{
  memset (opts, 0, sizeof *opts);
  g_autofree char *k = g_strdup (key);
  static const struct
  {
    const char *suffix;
    SdTimestepSpacing spacing;
  } sfx[] = { { "_trailing", SD_SPACING_TRAILING }, { "_leading", SD_SPACING_LEADING },
              { "_linspace", SD_SPACING_LINSPACE } };
  for (gsize i = 0; i < G_N_ELEMENTS (sfx); i++)
    if (g_str_has_suffix (k, sfx[i].suffix))
      {
        k[strlen (k) - strlen (sfx[i].suffix)] = '\0';
        opts->spacing = sfx[i].spacing;
      }
  return sd_sampler_from_name (k, kind, error);
}

gboolean
imp_golden_schedules (ImpGoldenCase *gc, GError **error)
{
  SdSchedulerConfig cfg;
  scheduler_config (gc, &cfg);
  g_autoptr (SdSchedule) base = sd_schedule_new (&cfg, SD_SAMPLER_EULER, 10, NULL, error);
  if (!base)
    return FALSE;
  int ntrain = 0;
  const float *ac = sd_schedule_get_alphas_cumprod (base, &ntrain);
  imp_golden_put_f32 (gc, "alphas_cumprod", ac, ntrain);
  const float *st = sd_schedule_get_train_sigmas (base, &ntrain);
  imp_golden_put_f32 (gc, "sigmas_train", st, ntrain);
  guint n = sd_safetensors_get_n_tensors (gc->file);
  for (guint i = 0; i < n; i++)
    {
      const SdSafetensorsTensor *t = sd_safetensors_get_nth (gc->file, i);
      g_auto (GStrv) parts = g_strsplit (t->name, ".", 3);
      if (g_strv_length (parts) != 3)
        continue;
      SdSamplerKind kind;
      SdScheduleOptions opts;
      if (!parse_sched_key (parts[0], &kind, &opts, error))
        return FALSE;
      int steps = (int) g_ascii_strtoll (parts[1], NULL, 10);
      g_autoptr (SdSchedule) s = sd_schedule_new (&cfg, kind, steps, &opts, error);
      if (!s)
        return FALSE;
      if (g_str_equal (parts[2], "timesteps"))
        imp_golden_put_f32 (gc, t->name, sd_schedule_get_timesteps (s), sd_schedule_get_n_steps (s));
      else if (g_str_equal (parts[2], "sigmas"))
        imp_golden_put_f32 (gc, t->name, sd_schedule_get_sigmas (s), sd_schedule_get_n_steps (s) + 1);
    }
  return TRUE;
}

gboolean
imp_golden_noise (ImpGoldenCase *gc, GError **error)
{
  gint64 seed = imp_json_int (gc->params, "seed", -1);
  if (seed < 0)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "params.seed is missing");
      return FALSE;
    }
  JsonArray *shapes = imp_json_array (gc->params, "shapes");
  g_autoptr (SdNoise) seq = sd_noise_new ((guint64) seed);
  int next_draw = 0;
  guint n = sd_safetensors_get_n_tensors (gc->file);
  /* outputs in the case's order: draw<k> continue one stream, randn_* are fresh */
  JsonArray *outs = imp_json_array (gc->case_json, "outputs");
  for (guint i = 0; outs && i < json_array_get_length (outs); i++)
    {
      JsonObject *o = json_array_get_object_element (outs, i);
      const char *name = imp_json_string (o, "name", "");
      const SdSafetensorsTensor *t = imp_golden_lookup (gc, name);
      if (!t)
        continue;
      g_autofree float *v = g_new (float, MAX (t->n_elements, 1));
      if (g_str_has_prefix (name, "draw"))
        {
          int k = (int) g_ascii_strtoll (name + 4, NULL, 10);
          if (k != next_draw || !shapes || (guint) k >= json_array_get_length (shapes))
            {
              g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "draws out of order at %s", name);
              return FALSE;
            }
          next_draw++;
          sd_noise_randn (seq, v, t->n_elements);
        }
      else
        {
          g_autoptr (SdNoise) g = sd_noise_new ((guint64) seed);
          sd_noise_randn (g, v, t->n_elements);
        }
      imp_golden_put_f32 (gc, name, v, t->n_elements);
    }
  (void) n;
  return TRUE;
}

/* ---- pipeline cases ---- */

typedef struct
{
  ImpGoldenCase *gc;
  float *noise, *posterior, *step_noise;
  gsize n_noise, n_step_noise;
  int step_draws;
  int t_start;
  GHashTable *traces; /* name -> GArray of float, steps appended in order */
} Injection;

static gboolean
noise_source (gpointer data, SdNoisePurpose purpose, int image, int step, float *out, gsize n,
              GError **error)
{
  Injection *in = data;
  const float *src = NULL;
  gsize avail = 0;
  switch (purpose)
    {
    case SD_NOISE_INITIAL:
      src = in->noise;
      avail = in->n_noise;
      break;
    case SD_NOISE_POSTERIOR:
    case SD_NOISE_POSTERIOR_MASKED:
      src = in->posterior;
      avail = in->n_noise;
      break;
    case SD_NOISE_STEP:
      if (in->step_noise && (gsize) (in->step_draws + 1) * n <= in->n_step_noise)
        {
          src = in->step_noise + (gsize) in->step_draws * n;
          avail = n;
        }
      in->step_draws++;
      break;
    }
  if (!src || avail < n || image != 0)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_MISSING, "the case has no noise for this draw (purpose %d, step %d)",
                   purpose, step);
      return FALSE;
    }
  memcpy (out, src, n * sizeof (float));
  return TRUE;
}

static void
tracer (gpointer data, const char *what, int step, const float *v, gsize n)
{
  Injection *in = data;
  GArray *a = g_hash_table_lookup (in->traces, what);
  if (!a)
    {
      a = g_array_new (FALSE, FALSE, sizeof (float));
      g_hash_table_insert (in->traces, g_strdup (what), a);
    }
  if (step < 0)
    g_array_set_size (a, 0); /* non-step values: the last one counts */
  g_array_append_vals (a, v, n);
}

static float *
maybe_read (ImpGoldenCase *gc, const char *name, gsize *n, GError **error)
{
  const SdSafetensorsTensor *t = imp_golden_lookup (gc, name);
  if (!t)
    return NULL;
  if (n)
    *n = t->n_elements;
  return imp_golden_read_f32 (gc, name, NULL, error);
}

static void
put_trace (ImpGoldenCase *gc, Injection *in, const char *trace, const char *out, gsize skip_front)
{
  GArray *a = g_hash_table_lookup (in->traces, trace);
  const SdSafetensorsTensor *t = imp_golden_lookup (gc, out);
  if (!a || !t)
    return;
  gsize n = t->n_elements;
  if (a->len >= skip_front + n)
    imp_golden_put_f32 (gc, out, (const float *) a->data + skip_front, n);
  else
    imp_golden_put_f32 (gc, out, (const float *) a->data, MIN (n, a->len));
}

static gboolean
run_pipeline_case (ImpGoldenCase *gc, SdMode mode, GError **error)
{
  SdPipeline *p = imp_golden_pipeline (gc, error);
  if (!p)
    return FALSE;
  const SdModelConfig *mc = sd_pipeline_get_config (p);
  Injection in = { .gc = gc };
  in.traces = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify) g_array_unref);
  gboolean ok = FALSE;
  g_autofree float *cond = NULL, *uncond = NULL, *te = NULL, *ute = NULL, *tid = NULL, *utid = NULL;
  g_autofree float *init = NULL, *mask = NULL;
  SdJob job;
  SdResult res = { 0 };
  sd_job_init (&job);

  const SdSafetensorsTensor *nt = imp_golden_lookup (gc, "noise");
  const SdSafetensorsTensor *ct = imp_golden_lookup (gc, "cond");
  if (!nt || !ct || nt->ndim != 4)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "the case needs noise [1,4,h,w] and cond inputs");
      goto out;
    }
  if (nt->shape[0] != 1)
    {
      imp_golden_set_skip (error, "batch %" G_GINT64_FORMAT " cases are not supported", nt->shape[0]);
      goto out;
    }
  if (!(in.noise = imp_golden_read_f32 (gc, "noise", NULL, error)))
    goto out;
  in.n_noise = nt->n_elements;
  GError *e2 = NULL;
  in.posterior = maybe_read (gc, "posterior_noise", NULL, &e2);
  in.step_noise = maybe_read (gc, "step_noise", &in.n_step_noise, &e2);
  cond = maybe_read (gc, "cond", NULL, &e2);
  uncond = maybe_read (gc, "uncond", NULL, &e2);
  te = maybe_read (gc, "text_embeds", NULL, &e2);
  ute = maybe_read (gc, "uncond_text_embeds", NULL, &e2);
  tid = maybe_read (gc, "time_ids", NULL, &e2);
  utid = maybe_read (gc, "uncond_time_ids", NULL, &e2);
  init = maybe_read (gc, "init_image", NULL, &e2);
  mask = maybe_read (gc, "mask", NULL, &e2);
  if (e2)
    {
      g_propagate_error (error, e2);
      goto out;
    }

  job.mode = mode;
  job.height = (int) nt->shape[2] * 8;
  job.width = (int) nt->shape[3] * 8;
  job.steps = (int) imp_json_int (gc->params, "steps", 0);
  job.cfg_scale = (float) imp_json_double (gc->params, "guidance_scale", 1.0);
  job.strength = (float) imp_json_double (gc->params, "strength", 1.0);
  job.soft_mask = !imp_json_int (gc->params, "mask_binarized", TRUE)
                  && json_object_has_member (gc->params, "mask_binarized");
  {
    JsonNode *mb = json_object_get_member (gc->params, "mask_binarized");
    if (mb && JSON_NODE_HOLDS_VALUE (mb))
      job.soft_mask = !json_node_get_boolean (mb);
  }
  if (!sd_sampler_from_name (imp_json_string (gc->params, "scheduler", ""), &job.sampler, error))
    goto out;
  JsonObject *ov = imp_json_object (gc->params, "scheduler_overrides");
  if (ov)
    {
      JsonNode *k = json_object_get_member (ov, "use_karras_sigmas");
      if (k && JSON_NODE_HOLDS_VALUE (k) && json_node_get_boolean (k))
        job.schedule.karras = TRUE;
      const char *sp = imp_json_string (ov, "timestep_spacing", NULL);
      if (sp && !sd_timestep_spacing_from_name (sp, &job.schedule.spacing, error))
        goto out;
    }
  if (job.sampler == SD_SAMPLER_DPMPP_2M && job.schedule.karras)
    job.sampler = SD_SAMPLER_DPMPP_2M_KARRAS;
  job.cond = cond;
  job.uncond = uncond;
  job.cond_len = (int) ct->shape[1];
  job.cond_pooled = te;
  job.uncond_pooled = ute;
  job.cond_time_ids = tid;
  job.uncond_time_ids = utid;
  job.init_image = init;
  job.mask = mask;
  job.noise_fn = noise_source;
  job.noise_data = &in;
  job.trace = tracer;
  job.trace_data = &in;
  gboolean want_image = imp_golden_lookup (gc, "image") || imp_golden_lookup (gc, "image_out");
  job.skip_decode = !want_image;
  if (job.cfg_scale > 1.0f && !uncond)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "guidance needs an uncond input");
      goto out;
    }
  if (mc->unet.addition_time_embed_dim > 0 && (!te || !tid))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "an SDXL case needs text_embeds and time_ids");
      goto out;
    }
  if (!sd_pipeline_run (p, &job, &res, error))
    goto out;

  /* timesteps: img2img cases list only the steps run */
  {
    GArray *ts = g_hash_table_lookup (in.traces, "timesteps");
    const SdSafetensorsTensor *tt = imp_golden_lookup (gc, "timesteps");
    if (ts && tt)
      put_trace (gc, &in, "timesteps", "timesteps", ts->len - tt->n_elements);
  }
  put_trace (gc, &in, "sigmas", "sigmas", 0);
  put_trace (gc, &in, "init_latents", "init_latents", 0);
  put_trace (gc, &in, "start_latents", "start_latents", 0);
  put_trace (gc, &in, "image_latents", "image_latents", 0);
  put_trace (gc, &in, "mask_latents", "mask_latents", 0);
  put_trace (gc, &in, "masked_image_latents", "masked_image_latents", 0);
  put_trace (gc, &in, "step_eps", "step_eps", 0);
  put_trace (gc, &in, "step_latents", "step_latents", 0);
  put_trace (gc, &in, "step_denoised", "step_denoised", 0);
  put_trace (gc, &in, "final_latents", "final_latents", 0);
  if (res.images)
    {
      gsize n = (gsize) 3 * job.width * job.height;
      if (imp_golden_lookup (gc, "image"))
        imp_golden_put_f32 (gc, "image", res.images, n);
      if (imp_golden_lookup (gc, "image_out"))
        imp_golden_put_f32 (gc, "image_out", res.images, n);
    }
  ok = TRUE;
out:
  sd_result_clear (&res);
  g_free (in.noise);
  g_free (in.posterior);
  g_free (in.step_noise);
  g_hash_table_destroy (in.traces);
  return ok;
}

gboolean
imp_golden_sampler (ImpGoldenCase *gc, GError **error)
{
  return run_pipeline_case (gc, SD_MODE_TXT2IMG, error);
}

gboolean
imp_golden_img2img (ImpGoldenCase *gc, GError **error)
{
  return run_pipeline_case (gc, SD_MODE_IMG2IMG, error);
}

gboolean
imp_golden_inpaint (ImpGoldenCase *gc, GError **error)
{
  return run_pipeline_case (gc, SD_MODE_INPAINT, error);
}
