/* test-schedules: noise schedules and set_timesteps against the golden
 * `schedules` cases (every tensor), plus data-independent checks. */
#include "config.h"

#include "sched-golden.h"
#include "sd-error.h"
#include "sd-sampler.h"
#include "test-util.h"

#include <math.h>
#include <string.h>

/* ---- without golden data ------------------------------------------------- */

static void
test_names (void)
{
  static const struct
  {
    const char *name;
    SdSamplerKind kind;
  } table[] = {
    { "euler", SD_SAMPLER_EULER },
    { "Euler", SD_SAMPLER_EULER },
    { "euler_a", SD_SAMPLER_EULER_A },
    { "Euler a", SD_SAMPLER_EULER_A },
    { "ddim", SD_SAMPLER_DDIM },
    { "DDIM", SD_SAMPLER_DDIM },
    { "dpmpp_2m", SD_SAMPLER_DPMPP_2M },
    { "DPM++ 2M", SD_SAMPLER_DPMPP_2M },
    { "dpmpp_2m_karras", SD_SAMPLER_DPMPP_2M_KARRAS },
    { "DPM++ 2M Karras", SD_SAMPLER_DPMPP_2M_KARRAS },
    { "lcm", SD_SAMPLER_LCM },
    { "LCM", SD_SAMPLER_LCM },
    { "EulerAncestralDiscreteScheduler", SD_SAMPLER_EULER_A },
    { "DPMSolverMultistepScheduler", SD_SAMPLER_DPMPP_2M },
  };
  for (guint i = 0; i < G_N_ELEMENTS (table); i++)
    {
      g_autoptr (GError) error = NULL;
      SdSamplerKind k = SD_SAMPLER_N_KINDS;
      g_assert_true (sd_sampler_from_name (table[i].name, &k, &error));
      g_assert_no_error (error);
      g_assert_cmpint (k, ==, table[i].kind);
    }
  for (int k = 0; k < SD_SAMPLER_N_KINDS; k++)
    {
      SdSamplerKind back;
      g_assert_true (sd_sampler_from_name (sd_sampler_name (k), &back, NULL));
      g_assert_cmpint (back, ==, k);
      g_assert_true (sd_sampler_from_name (sd_sampler_display_name (k), &back, NULL));
      g_assert_cmpint (back, ==, k);
    }

  g_autoptr (GError) error = NULL;
  SdSamplerKind k;
  g_assert_false (sd_sampler_from_name ("heun", &k, &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_assert_nonnull (strstr (error->message, "'heun'"));
  g_assert_nonnull (strstr (error->message, "dpmpp_2m_karras"));
  g_assert_nonnull (strstr (error->message, "\"Euler a\""));
}

static SdSchedule *
make (SdSamplerKind kind, int steps, SdTimestepSpacing spacing)
{
  SdSchedulerConfig cfg;
  sd_scheduler_config_set_defaults (&cfg);
  SdScheduleOptions opts = { .spacing = spacing };
  g_autoptr (GError) error = NULL;
  SdSchedule *s = sd_schedule_new (&cfg, kind, steps, &opts, &error);
  g_assert_no_error (error);
  return s;
}

static void
assert_timesteps (SdSchedule *s, const float *expected, int n)
{
  g_assert_cmpint (sd_schedule_get_n_steps (s), ==, n);
  const float *ts = sd_schedule_get_timesteps (s);
  for (int i = 0; i < n; i++)
    g_assert_cmpfloat (ts[i], ==, expected[i]);
}

/* The examples the golden README states in words. */
static void
test_known_values (void)
{
  g_autoptr (SdSchedule) e6 = make (SD_SAMPLER_EULER, 6, SD_SPACING_CONFIG);
  assert_timesteps (e6, (const float[]){ 831, 665, 499, 333, 167, 1 }, 6);
  g_assert_false (sd_schedule_has_integer_timesteps (e6));
  g_assert_cmpfloat (sd_schedule_get_sigmas (e6)[6], ==, 0.0f);
  g_assert_cmpfloat_with_epsilon (sd_schedule_get_init_noise_sigma (e6), 5.990506172180176, 1e-6);

  g_autoptr (SdSchedule) d6 = make (SD_SAMPLER_DPMPP_2M, 6, SD_SPACING_CONFIG);
  assert_timesteps (d6, (const float[]){ 853, 711, 569, 427, 285, 143 }, 6);
  g_assert_true (sd_schedule_has_integer_timesteps (d6));
  g_assert_cmpfloat (sd_schedule_get_init_noise_sigma (d6), ==, 1.0f);

  g_autoptr (SdSchedule) l4 = make (SD_SAMPLER_LCM, 4, SD_SPACING_CONFIG);
  assert_timesteps (l4, (const float[]){ 999, 759, 499, 259 }, 4);

  g_autoptr (SdSchedule) t4 = make (SD_SAMPLER_EULER_A, 4, SD_SPACING_TRAILING);
  assert_timesteps (t4, (const float[]){ 999, 749, 499, 249 }, 4);
  /* trailing: init_noise_sigma = sigma_max itself */
  g_assert_cmpfloat (sd_schedule_get_init_noise_sigma (t4), ==, sd_schedule_get_sigmas (t4)[0]);
  g_assert_cmpfloat_with_epsilon (sd_schedule_get_init_noise_sigma (t4), 14.614645004272461, 1e-5);

  /* NumPy's arange gives 62 elements for 61 trailing steps; we keep 61. */
  g_autoptr (SdSchedule) t61 = make (SD_SAMPLER_EULER, 61, SD_SPACING_TRAILING);
  g_assert_cmpint (sd_schedule_get_n_steps (t61), ==, 61);
  g_assert_cmpfloat (sd_schedule_get_timesteps (t61)[60], >=, 0.0f);

  g_autoptr (SdSchedule) lin = make (SD_SAMPLER_DDIM, 4, SD_SPACING_LINSPACE);
  assert_timesteps (lin, (const float[]){ 999, 666, 333, 0 }, 4);

  /* img2img: int (6 * 0.6) = 3 (the product is 3.5999...) */
  int t_start = -1;
  g_assert_true (sd_schedule_img2img_start (e6, 0.6, &t_start, NULL));
  g_assert_cmpint (t_start, ==, 3);
  g_assert_true (sd_schedule_img2img_start (e6, 1.0, &t_start, NULL));
  g_assert_cmpint (t_start, ==, 0);
  g_autoptr (GError) error = NULL;
  g_assert_false (sd_schedule_img2img_start (e6, 0.1, &t_start, &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
}

static void
test_invalid (void)
{
  SdSchedulerConfig cfg;
  sd_scheduler_config_set_defaults (&cfg);
  g_autoptr (GError) e1 = NULL, e2 = NULL, e3 = NULL, e4 = NULL, e5 = NULL;

  g_assert_null (sd_schedule_new (&cfg, SD_SAMPLER_EULER, 0, NULL, &e1));
  g_assert_error (e1, SD_ERROR, SD_ERROR_INVALID_ARG);

  SdScheduleOptions karras = { .karras = TRUE };
  g_assert_null (sd_schedule_new (&cfg, SD_SAMPLER_DDIM, 10, &karras, &e2));
  g_assert_error (e2, SD_ERROR, SD_ERROR_INVALID_ARG);

  g_assert_null (sd_schedule_new (&cfg, SD_SAMPLER_LCM, 51, NULL, &e3));
  g_assert_error (e3, SD_ERROR, SD_ERROR_INVALID_ARG);

  SdSchedulerConfig bad = cfg;
  g_strlcpy (bad.beta_schedule, "squaredcos_cap_v3", sizeof bad.beta_schedule);
  g_assert_null (sd_schedule_new (&bad, SD_SAMPLER_EULER, 10, NULL, &e4));
  g_assert_error (e4, SD_ERROR, SD_ERROR_UNSUPPORTED);

  bad = cfg;
  g_strlcpy (bad.timestep_spacing, "sideways", sizeof bad.timestep_spacing);
  g_assert_null (sd_schedule_new (&bad, SD_SAMPLER_EULER, 10, NULL, &e5));
  g_assert_error (e5, SD_ERROR, SD_ERROR_INVALID_ARG);
}

/* ---- golden -------------------------------------------------------------- */

/* "euler", "dpmpp_2m_karras", "euler_trailing" -> kind + options. */
static gboolean
parse_key (const char *key, SdSamplerKind *kind, SdScheduleOptions *opts)
{
  memset (opts, 0, sizeof *opts);
  if (sd_sampler_from_name (key, kind, NULL))
    return TRUE;
  static const struct
  {
    const char *suffix;
    SdTimestepSpacing spacing;
  } sfx[] = { { "_trailing", SD_SPACING_TRAILING },
              { "_leading", SD_SPACING_LEADING },
              { "_linspace", SD_SPACING_LINSPACE } };
  for (guint i = 0; i < G_N_ELEMENTS (sfx); i++)
    if (g_str_has_suffix (key, sfx[i].suffix))
      {
        g_autofree char *base = g_strndup (key, strlen (key) - strlen (sfx[i].suffix));
        opts->spacing = sfx[i].spacing;
        return sd_sampler_from_name (base, kind, NULL);
      }
  return FALSE;
}

static void
run_schedules_case (SgManifest *m, JsonObject *c)
{
  const char *id = sg_str (c, "id");
  g_autoptr (SdSafetensors) st = sg_open_case (m, c);
  SdSchedulerConfig cfg;
  sg_case_scheduler_config (m, c, &cfg);
  JsonObject *params = sg_obj (c, "params");
  g_autoptr (GHashTable) cache
      = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, (GDestroyNotify)sd_schedule_free);
  g_autoptr (GError) error = NULL;
  g_autoptr (SdSchedule) base = sd_schedule_new (&cfg, SD_SAMPLER_EULER, 1, NULL, &error);
  g_assert_no_error (error);

  double worst = 0.0, worst_bound = 0.0;
  const char *worst_name = "";
  gsize n_checked = 0, n_values = 0, n_exact = 0;
  for (guint i = 0; i < sd_safetensors_get_n_tensors (st); i++)
    {
      const char *name = sd_safetensors_get_nth (st, i)->name;
      gsize n = 0;
      g_autofree float *expected = sg_read (st, name, &n);
      const float *actual = NULL;
      gsize n_actual = 0;
      gboolean exact = FALSE;
      double bound = sg_tolerance (c, name);

      if (strcmp (name, "alphas_cumprod") == 0 || strcmp (name, "sigmas_train") == 0)
        {
          int n_train;
          actual = name[0] == 'a' ? sd_schedule_get_alphas_cumprod (base, &n_train)
                                  : sd_schedule_get_train_sigmas (base, &n_train);
          n_actual = n_train;
        }
      else
        {
          g_auto (GStrv) parts = g_strsplit (name, ".", -1);
          if (g_strv_length (parts) != 3)
            {
              g_test_message ("%s: unexpected tensor name '%s'", id, name);
              g_test_fail ();
              continue;
            }
          SdSamplerKind kind;
          SdScheduleOptions opts;
          if (!parse_key (parts[0], &kind, &opts))
            {
              g_test_message ("%s: unknown scheduler key '%s'", id, parts[0]);
              g_test_fail ();
              continue;
            }
          g_autofree char *ck = g_strdup_printf ("%s.%s", parts[0], parts[1]);
          SdSchedule *s = g_hash_table_lookup (cache, ck);
          if (s == NULL)
            {
              s = sd_schedule_new (&cfg, kind, atoi (parts[1]), &opts, &error);
              g_assert_no_error (error);
              g_hash_table_insert (cache, g_steal_pointer (&ck), s);
            }
          if (strcmp (parts[2], "timesteps") == 0)
            {
              actual = sd_schedule_get_timesteps (s);
              n_actual = sd_schedule_get_n_steps (s);
              exact = TRUE;
              /* The golden dtype says how diffusers passes them (I64 or F32). */
              g_assert_cmpint (sd_schedule_has_integer_timesteps (s), ==,
                               sd_safetensors_lookup (st, name)->dtype == SD_DTYPE_I64);
            }
          else if (strcmp (parts[2], "sigmas") == 0)
            {
              actual = sd_schedule_get_sigmas (s);
              n_actual = sd_schedule_get_n_steps (s) + 1;
            }
          else
            {
              g_test_message ("%s: unknown output '%s'", id, name);
              g_test_fail ();
              continue;
            }
        }

      if (n_actual != n)
        {
          g_test_message ("%s: %s has %" G_GSIZE_FORMAT " values, expected %" G_GSIZE_FORMAT, id,
                          name, n_actual, n);
          g_test_fail ();
          continue;
        }
      double err = test_max_err_over_rms (actual, expected, n);
      gsize same = sg_bit_identical (actual, expected, n);
      n_checked++;
      n_values += n;
      n_exact += same;
      if ((exact && same != n) || !(err <= bound))
        {
          GString *msg = g_string_new (NULL);
          for (gsize k = 0; k < n && k < 12; k++)
            g_string_append_printf (msg, " %.9g/%.9g", actual[k], expected[k]);
          g_test_message ("%s: %s: err %.3g (bound %.3g), %" G_GSIZE_FORMAT "/%" G_GSIZE_FORMAT
                          " identical; actual/expected:%s",
                          id, name, err, bound, same, n, msg->str);
          g_string_free (msg, TRUE);
          g_test_fail ();
        }
      if (err > worst || worst_name[0] == '\0')
        {
          worst = err;
          worst_bound = bound;
          worst_name = sd_safetensors_get_nth (st, i)->name;
        }
    }

  /* params.<key>_init_noise_sigma: {"N": value} */
  gsize n_sigma0 = 0;
  GList *members = params ? json_object_get_members (params) : NULL;
  for (GList *l = members; l; l = l->next)
    {
      const char *member = l->data;
      if (!g_str_has_suffix (member, "_init_noise_sigma"))
        continue;
      g_autofree char *key = g_strndup (member, strlen (member) - strlen ("_init_noise_sigma"));
      SdSamplerKind kind;
      SdScheduleOptions opts;
      g_assert_true (parse_key (key, &kind, &opts));
      JsonObject *map = sg_obj (params, member);
      GList *steps = json_object_get_members (map);
      for (GList *s = steps; s; s = s->next)
        {
          g_autoptr (SdSchedule) sch = sd_schedule_new (&cfg, kind, atoi (s->data), &opts, &error);
          g_assert_no_error (error);
          double want = sg_num (map, s->data, NAN);
          float got = sd_schedule_get_init_noise_sigma (sch);
          if ((float)want != got)
            {
              g_test_message ("%s: %s init_noise_sigma for %s steps: %.9g, expected %.9g", id, key,
                              (const char *)s->data, got, want);
              g_test_fail ();
            }
          n_sigma0++;
        }
      g_list_free (steps);
    }
  g_list_free (members);

  g_test_message ("%s: %" G_GSIZE_FORMAT " tensors, %" G_GSIZE_FORMAT "/%" G_GSIZE_FORMAT
                  " values bit-identical, worst %s err %.3g (bound %.3g); %" G_GSIZE_FORMAT
                  " init_noise_sigma values checked",
                  id, n_checked, n_exact, n_values, worst_name, worst, worst_bound, n_sigma0);
  g_assert_cmpuint (n_checked, ==, sd_safetensors_get_n_tensors (st));
}

static void
run_manifest (const char *dir)
{
  g_autoptr (SgManifest) m = sg_manifest_load (dir);
  if (m == NULL)
    return;
  g_autoptr (GPtrArray) cases = sg_manifest_cases (m, "schedules");
  if (cases->len == 0)
    {
      g_test_message ("%s: no schedules cases", dir);
      g_test_fail ();
    }
  for (guint i = 0; i < cases->len; i++)
    run_schedules_case (m, cases->pdata[i]);
}

static void
test_golden_sd1 (void)
{
  const char *dir = test_require_golden ();
  if (dir == NULL)
    return;
  run_manifest (dir);
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
  run_manifest (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/schedules/names", test_names);
  g_test_add_func ("/schedules/known-values", test_known_values);
  g_test_add_func ("/schedules/invalid", test_invalid);
  g_test_add_func ("/schedules/golden/sd1", test_golden_sd1);
  g_test_add_func ("/schedules/golden/sdxl", test_golden_sdxl);
  return g_test_run ();
}
