/* sched-golden.c: see sched-golden.h. */
#include "config.h"

#include "sched-golden.h"

#include <math.h>
#include <string.h>

SgManifest *
sg_manifest_load (const char *dir)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = g_build_filename (dir, "manifest.json", NULL);
  JsonParser *parser = json_parser_new ();
  if (!json_parser_load_from_file (parser, path, &error))
    {
      g_test_message ("%s: %s", path, error->message);
      g_test_fail ();
      g_object_unref (parser);
      return NULL;
    }
  JsonNode *root = json_parser_get_root (parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_test_message ("%s: not a JSON object", path);
      g_test_fail ();
      g_object_unref (parser);
      return NULL;
    }
  SgManifest *m = g_new0 (SgManifest, 1);
  m->dir = g_strdup (dir);
  m->parser = parser;
  m->root = json_node_get_object (root);
  return m;
}

void
sg_manifest_free (SgManifest *m)
{
  if (m == NULL)
    return;
  g_free (m->dir);
  g_object_unref (m->parser);
  g_free (m);
}

GPtrArray *
sg_manifest_cases (SgManifest *m, const char *kind)
{
  GPtrArray *out = g_ptr_array_new ();
  JsonArray *cases = json_object_get_array_member (m->root, "cases");
  g_assert_nonnull (cases);
  for (guint i = 0; i < json_array_get_length (cases); i++)
    {
      JsonObject *c = json_array_get_object_element (cases, i);
      const char *k = sg_str (c, "kind");
      if (k != NULL && strcmp (k, kind) == 0)
        g_ptr_array_add (out, c);
    }
  return out;
}

SdSafetensors *
sg_open_case (SgManifest *m, JsonObject *c)
{
  g_autoptr (GError) error = NULL;
  g_autofree char *path = g_build_filename (m->dir, sg_str (c, "file"), NULL);
  SdSafetensors *st = sd_safetensors_open (path, &error);
  g_assert_no_error (error);
  g_assert_nonnull (st);
  return st;
}

gboolean
sg_has (SdSafetensors *st, const char *name)
{
  return sd_safetensors_lookup (st, name) != NULL;
}

int
sg_shape (SdSafetensors *st, const char *name, gint64 shape[8])
{
  const SdSafetensorsTensor *t = sd_safetensors_lookup (st, name);
  g_assert_nonnull (t);
  for (int i = 0; i < t->ndim; i++)
    shape[i] = t->shape[i];
  return t->ndim;
}

float *
sg_read (SdSafetensors *st, const char *name, gsize *n_out)
{
  g_autoptr (GError) error = NULL;
  const SdSafetensorsTensor *t = sd_safetensors_lookup (st, name);
  if (t == NULL)
    g_error ("%s: no tensor '%s'", sd_safetensors_get_path (st), name);
  gsize n = (gsize)t->n_elements;
  float *v = g_new (float, n ? n : 1);
  if (!sd_safetensors_read_f32 (st, name, v, n, &error))
    g_error ("%s: %s: %s", sd_safetensors_get_path (st), name, error->message);
  if (n_out)
    *n_out = n;
  return v;
}

JsonObject *
sg_obj (JsonObject *o, const char *member)
{
  if (o == NULL || !json_object_has_member (o, member))
    return NULL;
  JsonNode *n = json_object_get_member (o, member);
  return JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
}

const char *
sg_str (JsonObject *o, const char *member)
{
  if (o == NULL || !json_object_has_member (o, member))
    return NULL;
  JsonNode *n = json_object_get_member (o, member);
  if (!JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return NULL;
  return json_node_get_string (n);
}

double
sg_num (JsonObject *o, const char *member, double fallback)
{
  if (o == NULL || !json_object_has_member (o, member))
    return fallback;
  JsonNode *n = json_object_get_member (o, member);
  if (!JSON_NODE_HOLDS_VALUE (n))
    return fallback;
  GType t = json_node_get_value_type (n);
  if (t == G_TYPE_INT64)
    return (double)json_node_get_int (n);
  if (t == G_TYPE_DOUBLE)
    return json_node_get_double (n);
  if (t == G_TYPE_BOOLEAN)
    return json_node_get_boolean (n) ? 1.0 : 0.0;
  return fallback;
}

double
sg_tolerance (JsonObject *c, const char *output)
{
  JsonObject *tol = sg_obj (c, "tolerance");
  JsonObject *per = sg_obj (sg_obj (tol, "per_output"), output);
  if (per != NULL)
    return sg_num (per, "fp32", 0.0);
  return sg_num (tol, "fp32", 0.0);
}

void
sg_scheduler_config (JsonObject *o, SdSchedulerConfig *cfg)
{
  sd_scheduler_config_set_defaults (cfg);
  if (o == NULL)
    return;
  cfg->num_train_timesteps = (int)sg_num (o, "num_train_timesteps", cfg->num_train_timesteps);
  cfg->beta_start = sg_num (o, "beta_start", cfg->beta_start);
  cfg->beta_end = sg_num (o, "beta_end", cfg->beta_end);
  cfg->steps_offset = (int)sg_num (o, "steps_offset", cfg->steps_offset);
  if (sg_str (o, "beta_schedule"))
    g_strlcpy (cfg->beta_schedule, sg_str (o, "beta_schedule"), sizeof cfg->beta_schedule);
  if (sg_str (o, "timestep_spacing"))
    g_strlcpy (cfg->timestep_spacing, sg_str (o, "timestep_spacing"), sizeof cfg->timestep_spacing);
  const char *pred = sg_str (o, "prediction_type");
  if (pred != NULL)
    {
      cfg->prediction_known = TRUE;
      cfg->prediction
          = strcmp (pred, "v_prediction") == 0 ? SD_PREDICTION_V : SD_PREDICTION_EPSILON;
    }
}

void
sg_case_scheduler_config (SgManifest *m, JsonObject *c, SdSchedulerConfig *cfg)
{
  JsonObject *o = sg_obj (sg_obj (c, "params"), "scheduler_config");
  if (o == NULL)
    {
      const char *model = sg_str (c, "model");
      if (model != NULL)
        o = sg_obj (sg_obj (sg_obj (m->root, "models"), model), "scheduler_config");
    }
  sg_scheduler_config (o, cfg);
}

gsize
sg_bit_identical (const float *a, const float *b, gsize n)
{
  gsize same = 0;
  for (gsize i = 0; i < n; i++)
    same += memcmp (&a[i], &b[i], sizeof (float)) == 0;
  return same;
}

double
sg_max_abs (const float *a, const float *b, gsize n)
{
  double m = 0.0;
  for (gsize i = 0; i < n; i++)
    m = fmax (m, fabs ((double)a[i] - (double)b[i]));
  return m;
}
