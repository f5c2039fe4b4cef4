/* test-samplers: the sampler math without a UNet.
 *
 * Golden: for every sampler / img2img / inpaint case of both manifests, the
 * golden step_eps[i] is the model output at step i and step_noise[i] the
 * ancestral (LCM) noise; starting from the golden noise (and image latents),
 * every intermediate and final latent is compared with the case's fp32 bound.
 * Without data: a perfect denoiser (it knows x0) must lead every sampler, with
 * epsilon and v prediction, to x0; cancellation and errors. */
#include "config.h"

#include "sched-golden.h"
#include "sd-error.h"
#include "sd-noise.h"
#include "sd-sampler.h"
#include "test-util.h"

#include <math.h>
#include <string.h>

/* ---- golden replay ------------------------------------------------------- */

typedef struct
{
  const char *id;
  JsonObject *c;
  SdSchedule *s;
  int t_start;
  gsize n; /* latents per step (whole batch) */
  int steps_run;
  const float *step_eps;   /* [steps_run, n] */
  const float *step_noise; /* [n_noise, n] or NULL */
  gsize n_noise;
  const float *step_latents;  /* [steps_run, n] */
  const float *step_denoised; /* [steps_run, n] or NULL */
  const float *timesteps;     /* golden timesteps passed to the UNet, or NULL */
  /* 4-channel inpainting: blend after each step */
  gboolean blend;
  const float *image_latents, *noise, *mask;
  int batch, channels;
  gsize plane;
  double err_steps, err_denoised;
  GString *per_step; /* each step's error, for the log */
  gboolean failed;
} Replay;

static gboolean
replay_denoise (gpointer data, const float *model_input, float timestep, int index,
                float *model_output, GError **error)
{
  Replay *r = data;
  int k = index - r->t_start;
  g_assert_cmpint (k, >=, 0);
  g_assert_cmpint (k, <, r->steps_run);
  if (r->timesteps != NULL && timestep != r->timesteps[k])
    {
      g_test_message ("%s: step %d: UNet timestep %.9g, golden %.9g", r->id, k, timestep,
                      r->timesteps[k]);
      r->failed = TRUE;
    }
  memcpy (model_output, r->step_eps + (gsize)k * r->n, r->n * sizeof (float));
  return TRUE;
}

static gboolean
replay_noise (gpointer data, int index, float *out, gsize n, GError **error)
{
  Replay *r = data;
  gsize k = (gsize)(index - r->t_start);
  if (r->step_noise == NULL || k >= r->n_noise)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_FAILED, "no golden step_noise for step %d", index);
      return FALSE;
    }
  memcpy (out, r->step_noise + k * r->n, n * sizeof (float));
  return TRUE;
}

static gboolean
replay_hook (gpointer data, int index, float *x, const float *denoised, gsize n)
{
  Replay *r = data;
  int k = index - r->t_start;
  if (r->blend)
    sd_schedule_inpaint_blend (r->s, index, x, r->image_latents, r->noise, r->mask, r->batch,
                               r->channels, r->plane);
  double e = test_max_err_over_rms (x, r->step_latents + (gsize)k * n, n);
  g_string_append_printf (r->per_step, " %.2g", e);
  r->err_steps = MAX (r->err_steps, e);
  if (r->step_denoised != NULL)
    r->err_denoised = MAX (r->err_denoised,
                           test_max_err_over_rms (denoised, r->step_denoised + (gsize)k * n, n));
  return TRUE;
}

static void
report (Replay *r, const char *output, double err)
{
  double bound = sg_tolerance (r->c, output);
  gboolean ok = err <= bound;
  g_test_message ("%s %s: err %.3g / bound %.3g%s", r->id, output, err, bound,
                  ok ? "" : "  FAILED");
  if (!ok)
    r->failed = TRUE;
}

static void
replay_case (SgManifest *m, JsonObject *c)
{
  const char *id = sg_str (c, "id");
  const char *case_kind = sg_str (c, "kind");
  JsonObject *params = sg_obj (c, "params");
  g_autoptr (GError) error = NULL;
  g_autoptr (SdSafetensors) st = sg_open_case (m, c);

  /* scheduler from params */
  SdSamplerKind kind;
  if (!sd_sampler_from_name (sg_str (params, "scheduler"), &kind, &error))
    {
      g_test_message ("%s: %s", id, error->message);
      g_test_fail ();
      return;
    }
  SdSchedulerConfig cfg;
  sg_case_scheduler_config (m, c, &cfg);
  SdScheduleOptions opts = { 0 };
  JsonObject *ov = sg_obj (params, "scheduler_overrides");
  if (ov != NULL)
    {
      GList *members = json_object_get_members (ov);
      for (GList *l = members; l; l = l->next)
        {
          const char *key = l->data;
          if (strcmp (key, "use_karras_sigmas") == 0)
            opts.karras = sg_num (ov, key, 0) != 0;
          else if (strcmp (key, "timestep_spacing") == 0)
            g_assert_true (sd_timestep_spacing_from_name (sg_str (ov, key), &opts.spacing, NULL));
          else
            {
              g_test_message ("%s: unhandled scheduler override '%s'", id, key);
              g_test_fail ();
            }
        }
      g_list_free (members);
    }
  const char *pred = sg_str (params, "prediction_type");
  if (pred != NULL)
    {
      opts.force_prediction = TRUE;
      opts.prediction
          = strcmp (pred, "v_prediction") == 0 ? SD_PREDICTION_V : SD_PREDICTION_EPSILON;
    }
  int steps = (int)sg_num (params, "steps", 0);
  g_autoptr (SdSchedule) s = sd_schedule_new (&cfg, kind, steps, &opts, &error);
  g_assert_no_error (error);

  /* start index and latents */
  double strength = sg_num (params, "strength", 1.0);
  int t_start = 0;
  g_assert_true (sd_schedule_img2img_start (s, strength, &t_start, &error));
  g_assert_no_error (error);
  if (json_object_has_member (params, "t_start"))
    g_assert_cmpint (t_start, ==, (int)sg_num (params, "t_start", -1));

  gsize n = 0;
  g_autofree float *noise = sg_read (st, "noise", &n);
  gint64 shape[8];
  g_assert_cmpint (sg_shape (st, "noise", shape), ==, 4);

  /* img2img always noises the image latents; inpainting only below strength 1
   * (diffusers' is_strength_max starts from pure noise). */
  gboolean from_image = strcmp (case_kind, "img2img") == 0 || strength < 1.0;
  g_autofree float *image_latents
      = sg_has (st, "image_latents") ? sg_read (st, "image_latents", NULL) : NULL;
  if (from_image && image_latents == NULL)
    {
      g_test_message ("%s: needs image_latents", id);
      g_test_fail ();
      return;
    }
  g_autofree float *x = g_new (float, n);
  sd_schedule_prepare_latents (s, noise, from_image ? image_latents : NULL, t_start, x, n);

  Replay r = { .id = id, .c = c, .s = s, .t_start = t_start, .n = n };
  g_autoptr (GString) per_step = r.per_step = g_string_new (NULL);
  const char *start_name = sg_has (st, "init_latents") ? "init_latents" : "start_latents";
  {
    g_autofree float *e = sg_read (st, start_name, NULL);
    report (&r, start_name, test_max_err_over_rms (x, e, n));
  }

  /* schedule outputs of the case */
  g_autofree float *g_timesteps = NULL;
  if (sg_has (st, "timesteps"))
    {
      gsize nt;
      g_timesteps = sg_read (st, "timesteps", &nt);
      g_assert_cmpuint (nt, ==, (gsize)(steps - t_start));
      gboolean same
          = memcmp (g_timesteps, sd_schedule_get_timesteps (s) + t_start, nt * sizeof (float)) == 0;
      g_test_message ("%s timesteps: %s", id, same ? "identical" : "DIFFERENT");
      r.failed |= !same;
      r.timesteps = g_timesteps;
    }
  if (sg_has (st, "sigmas"))
    {
      gsize ns;
      g_autofree float *sig = sg_read (st, "sigmas", &ns);
      g_assert_cmpuint (ns, ==, (gsize)steps + 1);
      report (&r, "sigmas", test_max_err_over_rms (sd_schedule_get_sigmas (s), sig, ns));
    }

  gsize n_eps;
  g_autofree float *step_eps = sg_read (st, "step_eps", &n_eps);
  g_autofree float *step_latents = sg_read (st, "step_latents", NULL);
  g_autofree float *step_noise = NULL;
  g_autofree float *step_denoised = NULL;
  g_autofree float *mask = NULL;
  r.steps_run = (int)(n_eps / n);
  g_assert_cmpint (r.steps_run, ==, steps - t_start);
  r.step_eps = step_eps;
  r.step_latents = step_latents;
  if (sg_has (st, "step_noise"))
    {
      gsize nn;
      step_noise = sg_read (st, "step_noise", &nn);
      r.step_noise = step_noise;
      r.n_noise = nn / n;
    }
  if (sg_has (st, "step_denoised"))
    r.step_denoised = step_denoised = sg_read (st, "step_denoised", NULL);
  if (strcmp (case_kind, "inpaint") == 0 && sg_num (params, "unet_in_channels", 0) == 4)
    {
      gsize nm;
      mask = sg_read (st, "mask_latents", &nm);
      g_assert_nonnull (image_latents);
      r.blend = TRUE;
      r.image_latents = image_latents;
      r.noise = noise;
      r.mask = mask;
      r.batch = (int)shape[0];
      r.channels = (int)shape[1];
      r.plane = (gsize)(shape[2] * shape[3]);
      g_assert_cmpuint (nm, ==, r.batch * r.plane);
    }

  gboolean ok
      = sd_sample (s, x, n, t_start, replay_denoise, &r, replay_noise, &r, replay_hook, &r, &error);
  g_assert_no_error (error);
  g_assert_true (ok);

  report (&r, "step_latents", r.err_steps);
  g_test_message ("%s step_latents per step:%s", id, r.per_step->str);
  if (r.step_denoised != NULL)
    report (&r, "step_denoised", r.err_denoised);
  {
    g_autofree float *e = sg_read (st, "final_latents", NULL);
    report (&r, "final_latents", test_max_err_over_rms (x, e, n));
  }
  g_test_message ("%s: %s%s, %d steps from %d, prediction %s%s%s", id, sd_sampler_name (kind),
                  sd_schedule_get_karras (s) ? " (Karras)" : "", steps, t_start,
                  sd_schedule_get_prediction (s) == SD_PREDICTION_V ? "v" : "epsilon",
                  r.blend ? ", latent blending" : "", r.failed ? "  -- FAILED" : "");
  if (r.failed)
    g_test_fail ();
}

static void
replay_manifest (const char *dir)
{
  g_autoptr (SgManifest) m = sg_manifest_load (dir);
  if (m == NULL)
    return;
  static const char *kinds[] = { "sampler", "img2img", "inpaint" };
  guint total = 0;
  for (guint k = 0; k < G_N_ELEMENTS (kinds); k++)
    {
      g_autoptr (GPtrArray) cases = sg_manifest_cases (m, kinds[k]);
      for (guint i = 0; i < cases->len; i++)
        replay_case (m, cases->pdata[i]);
      total += cases->len;
    }
  g_test_message ("%s: %u cases replayed", dir, total);
  g_assert_cmpuint (total, >, 0);
}

static void
test_golden_sd1 (void)
{
  const char *dir = test_require_golden ();
  if (dir != NULL)
    replay_manifest (dir);
}

static void
test_golden_sdxl (void)
{
  const char *dir = test_golden_sdxl_dir ();
  if (dir == NULL)
    {
      g_test_skip ("SDXL golden data not found: set IMPASTO_GOLDEN_SDXL_DIR or put it at "
                   "../shared/golden-sdxl");
      return;
    }
  replay_manifest (dir);
}

/* ---- a perfect denoiser -------------------------------------------------- */

typedef struct
{
  const SdSchedule *s;
  const float *x0; /* the clean latents the "model" knows */
  double worst_denoised;
  int calls;
  float *trajectory; /* [steps, 64] latents after each step, or NULL */
} Oracle;

/* The input's noise level in variance-preserving form: input = alpha x0 + sigma eps. */
static void
oracle_level (const SdSchedule *s, int index, double *alpha, double *sigma)
{
  SdSamplerKind kind = sd_schedule_get_kind (s);
  if (kind == SD_SAMPLER_DDIM || kind == SD_SAMPLER_LCM)
    {
      const float *ac = sd_schedule_get_alphas_cumprod (s, NULL);
      double a = ac[(int)sd_schedule_get_timesteps (s)[index]];
      *alpha = sqrt (a);
      *sigma = sqrt (1.0 - a);
    }
  else
    {
      /* Euler's scaled input and DPM-Solver's latents are VP with this alpha. */
      double sg = sd_schedule_get_sigmas (s)[index];
      *alpha = 1.0 / sqrt (sg * sg + 1.0);
      *sigma = sg * *alpha;
    }
}

static gboolean
oracle_denoise (gpointer data, const float *z, float timestep, int index, float *out,
                GError **error)
{
  Oracle *o = data;
  double alpha, sigma;
  oracle_level (o->s, index, &alpha, &sigma);
  gboolean v = sd_schedule_get_prediction (o->s) == SD_PREDICTION_V;
  for (gsize j = 0; j < 64; j++)
    {
      double eps = (z[j] - alpha * o->x0[j]) / sigma;
      out[j] = (float)(v ? alpha * eps - sigma * o->x0[j] : eps);
    }
  o->calls++;
  return TRUE;
}

static gboolean
oracle_hook (gpointer data, int index, float *x, const float *denoised, gsize n)
{
  Oracle *o = data;
  /* LCM's "denoised" includes c_skip * x; exact x0 elsewhere */
  if (sd_schedule_get_kind (o->s) != SD_SAMPLER_LCM)
    o->worst_denoised = MAX (o->worst_denoised, test_max_err_over_rms (denoised, o->x0, n));
  if (o->trajectory != NULL)
    memcpy (o->trajectory + (gsize)index * n, x, n * sizeof (float));
  return TRUE;
}

/* With a perfect denoiser, every sampler's denoised estimate is x0 at every
 * step and the result is x0; and since epsilon and v describe the same model,
 * both predictions must follow the same trajectory step by step (this checks
 * the v-prediction formulas against the epsilon ones, which the golden cases
 * check against diffusers). */
static void
test_oracle (void)
{
  SdSchedulerConfig cfg;
  sd_scheduler_config_set_defaults (&cfg);
  float x0[64], noise[64], x[64];
  test_fill_random (x0, 64, 1, -1.5f, 1.5f);
  g_autoptr (SdNoise) gen = sd_noise_new (1234);
  float traj[2][20 * 64];

  for (int kind = 0; kind < SD_SAMPLER_N_KINDS; kind++)
    for (int spacing = SD_SPACING_LEADING; spacing <= SD_SPACING_LINSPACE; spacing++)
      for (int karras = 0; karras < 2; karras++)
        {
          if (karras && (kind == SD_SAMPLER_DDIM || kind == SD_SAMPLER_LCM))
            continue;
          int steps = kind == SD_SAMPLER_LCM ? 4 : 20;
          for (int pred = 0; pred < 2; pred++)
            {
              /* set_alpha_to_one: DDIM's last step then lands on x0 exactly (with
               * ac[0] it keeps sqrt (1 - ac[0]) of the noise, as diffusers does). */
              SdScheduleOptions opts
                  = { .spacing = spacing,
                      .force_prediction = TRUE,
                      .prediction = pred ? SD_PREDICTION_V : SD_PREDICTION_EPSILON,
                      .set_alpha_to_one = TRUE,
                      .karras = karras };
              g_autoptr (GError) error = NULL;
              g_autoptr (SdSchedule) s = sd_schedule_new (&cfg, kind, steps, &opts, &error);
              g_assert_no_error (error);
              sd_noise_seed (gen, 99);
              sd_noise_randn (gen, noise, 64);
              sd_schedule_prepare_latents (s, noise, NULL, 0, x, 64);
              Oracle o = { .s = s, .x0 = x0, .trajectory = traj[pred] };
              g_assert_true (sd_sample (s, x, 64, 0, oracle_denoise, &o, sd_noise_step_fn, gen,
                                        oracle_hook, &o, &error));
              g_assert_no_error (error);
              g_assert_cmpint (o.calls, ==, steps);
              double final = test_max_err_over_rms (x, x0, 64);
              if (!(final < 2e-5 && o.worst_denoised < 2e-5))
                {
                  g_test_message ("%s, %s, spacing %d, karras %d: final err %.3g, worst "
                                  "denoised err %.3g",
                                  sd_sampler_name (kind), pred ? "v" : "epsilon", spacing, karras,
                                  final, o.worst_denoised);
                  g_test_fail ();
                }
            }
          for (int i = 0; i < steps; i++)
            {
              double e = test_max_err_over_rms (traj[1] + i * 64, traj[0] + i * 64, 64);
              if (!(e < 1e-5))
                {
                  g_test_message ("%s, spacing %d, karras %d: v and epsilon differ at step %d: "
                                  "%.3g",
                                  sd_sampler_name (kind), spacing, karras, i, e);
                  g_test_fail ();
                  break;
                }
            }
        }
}

/* img2img with a perfect denoiser from every start index also lands on x0. */
static void
test_oracle_img2img (void)
{
  SdSchedulerConfig cfg;
  sd_scheduler_config_set_defaults (&cfg);
  float x0[64], img[64], noise[64], x[64];
  test_fill_random (x0, 64, 2, -1.0f, 1.0f);
  test_fill_random (img, 64, 3, -1.0f, 1.0f);
  test_fill_random (noise, 64, 4, -2.0f, 2.0f);
  g_autoptr (SdNoise) gen = sd_noise_new (5);
  for (int kind = 0; kind < SD_SAMPLER_N_KINDS; kind++)
    {
      SdScheduleOptions opts = { .set_alpha_to_one = TRUE };
      g_autoptr (SdSchedule) s = sd_schedule_new (&cfg, kind, 8, &opts, NULL);
      g_assert_nonnull (s);
      for (int t_start = 0; t_start < 8; t_start++)
        {
          sd_schedule_prepare_latents (s, noise, img, t_start, x, 64);
          Oracle o = { .s = s, .x0 = x0 };
          g_autoptr (GError) error = NULL;
          g_assert_true (sd_sample (s, x, 64, t_start, oracle_denoise, &o, sd_noise_step_fn, gen,
                                    NULL, NULL, &error));
          g_assert_cmpint (o.calls, ==, 8 - t_start);
          g_assert_cmpfloat (test_max_err_over_rms (x, x0, 64), <, 2e-5);
        }
    }
}

static gboolean
cancel_at_2 (gpointer data, int index, float *x, const float *denoised, gsize n)
{
  return index < 2;
}

static gboolean
failing_denoise (gpointer data, const float *z, float t, int index, float *out, GError **error)
{
  if (index == 1)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_FAILED, "device lost");
      return FALSE;
    }
  memset (out, 0, 64 * sizeof (float));
  return TRUE;
}

static void
test_errors (void)
{
  SdSchedulerConfig cfg;
  sd_scheduler_config_set_defaults (&cfg);
  float x0[64] = { 0 }, x[64] = { 0 };
  g_autoptr (SdSchedule) s = sd_schedule_new (&cfg, SD_SAMPLER_EULER, 6, NULL, NULL);
  Oracle o = { .s = s, .x0 = x0 };

  g_autoptr (GError) e1 = NULL;
  g_assert_false (sd_sample (s, x, 64, 0, oracle_denoise, &o, NULL, NULL, cancel_at_2, NULL, &e1));
  g_assert_error (e1, SD_ERROR, SD_ERROR_CANCELLED);
  g_assert_cmpint (o.calls, ==, 3);

  g_autoptr (GError) e2 = NULL;
  g_assert_false (sd_sample (s, x, 64, 0, failing_denoise, NULL, NULL, NULL, NULL, NULL, &e2));
  g_assert_error (e2, SD_ERROR, SD_ERROR_FAILED);
  g_assert_nonnull (strstr (e2->message, "step 2 of 6"));
  g_assert_nonnull (strstr (e2->message, "device lost"));

  g_autoptr (SdSchedule) a = sd_schedule_new (&cfg, SD_SAMPLER_EULER_A, 6, NULL, NULL);
  g_autoptr (GError) e3 = NULL;
  g_assert_false (sd_sample (a, x, 64, 0, oracle_denoise, &o, NULL, NULL, NULL, NULL, &e3));
  g_assert_error (e3, SD_ERROR, SD_ERROR_INVALID_ARG);
}

/* Blending: keep (m = 0) gets image + noise * sigma_next, then the image itself
 * after the last step; repaint (m = 1) is untouched. */
static void
test_blend (void)
{
  SdSchedulerConfig cfg;
  sd_scheduler_config_set_defaults (&cfg);
  g_autoptr (SdSchedule) s = sd_schedule_new (&cfg, SD_SAMPLER_EULER, 6, NULL, NULL);
  float img[8], noise[8], x[8], mask[4] = { 0, 1, 0, 1 };
  test_fill_random (img, 8, 7, -1, 1);
  test_fill_random (noise, 8, 8, -1, 1);
  for (int i = 0; i < 8; i++)
    x[i] = 100.0f + i;
  sd_schedule_inpaint_blend (s, 2, x, img, noise, mask, 1, 2, 4);
  float sig = sd_schedule_get_sigmas (s)[3];
  for (int c = 0; c < 2; c++)
    for (int p = 0; p < 4; p++)
      {
        int i = c * 4 + p;
        g_assert_cmpfloat (x[i], ==, mask[p] ? 100.0f + i : img[i] + noise[i] * sig);
      }
  sd_schedule_inpaint_blend (s, 5, x, img, noise, mask, 1, 2, 4);
  for (int c = 0; c < 2; c++)
    for (int p = 0; p < 4; p++)
      if (!mask[p])
        g_assert_cmpfloat (x[c * 4 + p], ==, img[c * 4 + p]);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/samplers/oracle", test_oracle);
  g_test_add_func ("/samplers/oracle-img2img", test_oracle_img2img);
  g_test_add_func ("/samplers/errors", test_errors);
  g_test_add_func ("/samplers/blend", test_blend);
  g_test_add_func ("/samplers/golden/sd1", test_golden_sd1);
  g_test_add_func ("/samplers/golden/sdxl", test_golden_sdxl);
  return g_test_run ();
}
