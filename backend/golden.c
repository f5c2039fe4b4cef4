/* golden.c: the check-golden framework (see golden.h): manifest, registry,
 * comparison, report. */
#include "config.h"

#include "golden.h"

#include <math.h>
#include <string.h>

#include "sd-error.h"

G_DEFINE_QUARK (imp-golden-error-quark, imp_golden_error)

typedef struct
{
  const char *kind;
  ImpGoldenHandler run;
} KindEntry;

#define IMP_GOLDEN_ENTRY(kind, fn) { kind, fn },
static const KindEntry kinds[] = { IMP_GOLDEN_KINDS (IMP_GOLDEN_ENTRY) };

typedef struct
{
  gboolean is_int;
  gsize n;
  float *f;   /* owned, when !is_int */
  gint64 *i;  /* owned, when is_int */
} Actual;

struct _ImpGoldenRun
{
  GHashTable *outputs;  /* name (owned) -> Actual (owned) */
  GHashTable *declined; /* name (owned) -> reason (owned) */
};

static void
actual_free (gpointer p)
{
  Actual *a = p;
  g_free (a->f);
  g_free (a->i);
  g_free (a);
}

/* ---- JSON helpers ---------------------------------------------------------- */

static JsonNode *
member (JsonObject *o, const char *name)
{
  if (o == NULL || !json_object_has_member (o, name))
    return NULL;
  return json_object_get_member (o, name);
}

const char *
imp_json_string (JsonObject *o, const char *name, const char *def)
{
  JsonNode *n = member (o, name);
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_STRING)
    return def;
  return json_node_get_string (n);
}

gint64
imp_json_int (JsonObject *o, const char *name, gint64 def)
{
  JsonNode *n = member (o, name);
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n) || json_node_get_value_type (n) != G_TYPE_INT64)
    return def;
  return json_node_get_int (n);
}

double
imp_json_double (JsonObject *o, const char *name, double def)
{
  JsonNode *n = member (o, name);
  if (n == NULL || !JSON_NODE_HOLDS_VALUE (n))
    return def;
  GType t = json_node_get_value_type (n);
  if (t == G_TYPE_DOUBLE)
    return json_node_get_double (n);
  if (t == G_TYPE_INT64)
    return (double) json_node_get_int (n);
  return def;
}

JsonObject *
imp_json_object (JsonObject *o, const char *name)
{
  JsonNode *n = member (o, name);
  return n != NULL && JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
}

JsonArray *
imp_json_array (JsonObject *o, const char *name)
{
  JsonNode *n = member (o, name);
  return n != NULL && JSON_NODE_HOLDS_ARRAY (n) ? json_node_get_array (n) : NULL;
}

/* ---- for handlers ---------------------------------------------------------- */

void
imp_golden_set_skip (GError **error, const char *format, ...)
{
  va_list ap;
  va_start (ap, format);
  char *msg = g_strdup_vprintf (format, ap);
  va_end (ap);
  g_set_error_literal (error, IMP_GOLDEN_ERROR, IMP_GOLDEN_ERROR_SKIP, msg);
  g_free (msg);
}

const SdSafetensorsTensor *
imp_golden_lookup (ImpGoldenCase *gc, const char *name)
{
  return sd_safetensors_lookup (gc->file, name);
}

static const SdSafetensorsTensor *
lookup_input (ImpGoldenCase *gc, const char *name, GError **error)
{
  const SdSafetensorsTensor *t = sd_safetensors_lookup (gc->file, name);
  if (t == NULL)
    g_set_error (error, SD_ERROR, SD_ERROR_MISSING, "case file %s has no tensor '%s'",
                 sd_safetensors_get_path (gc->file), name);
  return t;
}

float *
imp_golden_read_f32 (ImpGoldenCase *gc, const char *name, const SdSafetensorsTensor **info,
                     GError **error)
{
  const SdSafetensorsTensor *t = lookup_input (gc, name, error);
  if (t == NULL)
    return NULL;
  float *d = g_new (float, MAX (t->n_elements, 1));
  if (!sd_safetensors_read_f32 (gc->file, name, d, t->n_elements, error))
    {
      g_free (d);
      return NULL;
    }
  if (info)
    *info = t;
  return d;
}

gint64 *
imp_golden_read_i64 (ImpGoldenCase *gc, const char *name, const SdSafetensorsTensor **info,
                     GError **error)
{
  const SdSafetensorsTensor *t = lookup_input (gc, name, error);
  if (t == NULL)
    return NULL;
  gint64 *d = g_new (gint64, MAX (t->n_elements, 1));
  if (!sd_safetensors_read_i64 (gc->file, name, d, t->n_elements, error))
    {
      g_free (d);
      return NULL;
    }
  if (info)
    *info = t;
  return d;
}

char *
imp_golden_model_path (ImpGoldenCase *gc, const char *form, const char *sub, GError **error)
{
  if (gc->model == NULL)
    {
      imp_golden_set_skip (error, "case has no model");
      return NULL;
    }
  const char *rel = imp_json_string (imp_json_object (gc->model, "forms"), form, NULL);
  if (rel == NULL)
    {
      imp_golden_set_skip (error, "model '%s' has no '%s' form", gc->model_name, form);
      return NULL;
    }
  char *path = g_build_filename (gc->manifest_dir, rel, sub, NULL);
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    {
      imp_golden_set_skip (error, "model files missing: %s", path);
      g_free (path);
      return NULL;
    }
  return path;
}

void
imp_golden_put_f32 (ImpGoldenCase *gc, const char *name, const float *data, gsize n)
{
  Actual *a = g_new0 (Actual, 1);
  a->n = n;
  a->f = g_memdup2 (data, MAX (n, 1) * sizeof (float));
  g_hash_table_replace (gc->run->outputs, g_strdup (name), a);
}

void
imp_golden_put_i64 (ImpGoldenCase *gc, const char *name, const gint64 *data, gsize n)
{
  Actual *a = g_new0 (Actual, 1);
  a->is_int = TRUE;
  a->n = n;
  a->i = g_memdup2 (data, MAX (n, 1) * sizeof (gint64));
  g_hash_table_replace (gc->run->outputs, g_strdup (name), a);
}

void
imp_golden_decline_output (ImpGoldenCase *gc, const char *name, const char *reason)
{
  g_hash_table_replace (gc->run->declined, g_strdup (name), g_strdup (reason));
}

/* ---- comparison -------------------------------------------------------------- */

static gboolean
dtype_is_int (SdDType d)
{
  return d == SD_DTYPE_I64 || d == SD_DTYPE_I32 || d == SD_DTYPE_I16 || d == SD_DTYPE_I8
         || d == SD_DTYPE_U8 || d == SD_DTYPE_BOOL;
}

static double
actual_at (const Actual *a, gsize i)
{
  return a->is_int ? (double) a->i[i] : (double) a->f[i];
}

/* max |a - e| / rms (e) with NaN/Inf parity (see golden.h) */
static double
err_over_rms (const Actual *a, const float *e, gsize n)
{
  double max_err = 0.0, sum_sq = 0.0;
  for (gsize i = 0; i < n; i++)
    {
      double x = actual_at (a, i), y = e[i];
      gboolean fx = isfinite (x), fy = isfinite (y);
      if (fx != fy)
        return INFINITY;
      if (!fy)
        {
          if (isnan (x) != isnan (y) || (!isnan (y) && (x > 0) != (y > 0)))
            return INFINITY;
          continue;
        }
      double d = fabs (x - y);
      if (d > max_err)
        max_err = d;
      sum_sq += y * y;
    }
  double rms = n ? sqrt (sum_sq / n) : 0.0;
  return rms > 0.0 ? max_err / rms : max_err;
}

static double
err_exact_f32 (const Actual *a, const float *e, gsize n)
{
  double m = 0.0;
  for (gsize i = 0; i < n; i++)
    {
      double x = actual_at (a, i), y = e[i];
      if (isnan (x) || isnan (y) || isinf (x) || isinf (y))
        {
          if (!(x == y || (isnan (x) && isnan (y))))
            return INFINITY;
          continue;
        }
      m = MAX (m, fabs (x - y));
    }
  return m;
}

static double
err_exact_i64 (const Actual *a, const gint64 *e, gsize n)
{
  double m = 0.0;
  for (gsize i = 0; i < n; i++)
    {
      double d = a->is_int ? fabs ((double) a->i[i] - (double) e[i])
                           : (isfinite (a->f[i]) ? fabs ((double) a->f[i] - (double) e[i]) : INFINITY);
      m = MAX (m, d);
    }
  return m;
}

static const char *
precision_key (ImpGoldenPrecision p)
{
  return p == IMP_GOLDEN_FP16 ? "fp16" : "fp32";
}

static gboolean
bound_for (JsonObject *tol, const char *name, ImpGoldenPrecision prec, double *bound)
{
  const char *key = precision_key (prec);
  JsonObject *per = imp_json_object (imp_json_object (tol, "per_output"), name);
  double b = imp_json_double (per, key, NAN);
  if (isnan (b))
    b = imp_json_double (tol, key, NAN);
  if (isnan (b) || b < 0)
    return FALSE;
  *bound = b;
  return TRUE;
}

typedef struct
{
  const char *name; /* borrowed */
  double err, bound;
} OutErr;

static double
ratio (const OutErr *o)
{
  if (o->bound > 0)
    return o->err / o->bound;
  return o->err > 0 ? INFINITY : 0.0;
}

static char *
fmt_num (double v)
{
  if (isinf (v))
    return g_strdup ("inf");
  return g_strdup_printf ("%.3g", v);
}

typedef enum
{
  CASE_PASS,
  CASE_FAIL,
  CASE_SKIP,
} CaseResult;

/* Compare and print; returns the result. */
static CaseResult
compare_outputs (ImpGoldenCase *gc, gboolean verbose, FILE *out)
{
  JsonObject *tol = imp_json_object (gc->case_json, "tolerance");
  gboolean exact = g_strcmp0 (imp_json_string (tol, "metric", NULL), "exact") == 0;
  JsonArray *outs = imp_json_array (gc->case_json, "outputs");
  GArray *errs = g_array_new (FALSE, FALSE, sizeof (OutErr));
  GString *notes = g_string_new (NULL);
  char *error_msg = NULL;

  for (guint k = 0; outs != NULL && k < json_array_get_length (outs) && error_msg == NULL; k++)
    {
      JsonNode *node = json_array_get_element (outs, k);
      const char *name = JSON_NODE_HOLDS_OBJECT (node)
                             ? imp_json_string (json_node_get_object (node), "name", NULL)
                             : NULL;
      if (name == NULL)
        continue;
      const SdSafetensorsTensor *t = sd_safetensors_lookup (gc->file, name);
      const Actual *a = g_hash_table_lookup (gc->run->outputs, name);
      const char *declined = g_hash_table_lookup (gc->run->declined, name);
      if (t == NULL)
        {
          g_string_append_printf (notes, "  %s: not in the case file\n", name);
          continue;
        }
      if (a == NULL)
        {
          if (declined)
            g_string_append_printf (notes, "  %s: not produced (%s)\n", name, declined);
          else if (g_str_has_prefix (name, "debug."))
            g_string_append_printf (notes, "  %s: not produced (debug output)\n", name);
          else
            error_msg = g_strdup_printf ("output '%s' not produced", name);
          continue;
        }
      if ((guint64) a->n != (guint64) t->n_elements)
        {
          error_msg = g_strdup_printf ("output '%s' has %" G_GSIZE_FORMAT " elements, expected %"
                                       G_GINT64_FORMAT, name, a->n, t->n_elements);
          continue;
        }
      OutErr oe = { name, 0.0, 0.0 };
      GError *local = NULL;
      if (dtype_is_int (t->dtype))
        {
          gint64 *e = g_new (gint64, MAX (t->n_elements, 1));
          if (sd_safetensors_read_i64 (gc->file, name, e, t->n_elements, &local))
            oe.err = err_exact_i64 (a, e, a->n);
          g_free (e);
        }
      else
        {
          float *e = g_new (float, MAX (t->n_elements, 1));
          if (sd_safetensors_read_f32 (gc->file, name, e, t->n_elements, &local))
            oe.err = exact ? err_exact_f32 (a, e, a->n) : err_over_rms (a, e, a->n);
          g_free (e);
        }
      if (local != NULL)
        {
          error_msg = g_strdup_printf ("reading expected '%s': %s", name, local->message);
          g_error_free (local);
          continue;
        }
      if (exact || dtype_is_int (t->dtype))
        oe.bound = 0.0;
      else if (!bound_for (tol, name, gc->precision, &oe.bound))
        {
          error_msg = g_strdup_printf ("no %s tolerance for output '%s' in the manifest",
                                       precision_key (gc->precision), name);
          continue;
        }
      g_array_append_val (errs, oe);
    }

  CaseResult res;
  if (error_msg != NULL)
    {
      fprintf (out, "FAIL %s error: %s\n", gc->id, error_msg);
      res = CASE_FAIL;
    }
  else if (errs->len == 0)
    {
      fprintf (out, "SKIP %s no output to compare\n", gc->id);
      res = CASE_SKIP;
    }
  else
    {
      guint worst = 0;
      for (guint i = 1; i < errs->len; i++)
        if (ratio (&g_array_index (errs, OutErr, i)) > ratio (&g_array_index (errs, OutErr, worst)))
          worst = i;
      OutErr *w = &g_array_index (errs, OutErr, worst);
      g_autofree char *es = fmt_num (w->err), *bs = fmt_num (w->bound);
      if (w->err <= w->bound)
        {
          fprintf (out, "PASS %s %s <= %s\n", gc->id, es, bs);
          res = CASE_PASS;
        }
      else
        {
          fprintf (out, "FAIL %s %s > %s (%s)\n", gc->id, es, bs, w->name);
          res = CASE_FAIL;
        }
    }
  if (verbose)
    {
      for (guint i = 0; i < errs->len; i++)
        {
          OutErr *o = &g_array_index (errs, OutErr, i);
          g_autofree char *es = fmt_num (o->err), *bs = fmt_num (o->bound);
          fprintf (out, "  %s: %s %s %s\n", o->name, es, o->err <= o->bound ? "<=" : ">", bs);
        }
      fputs (notes->str, out);
    }
  g_free (error_msg);
  g_string_free (notes, TRUE);
  g_array_unref (errs);
  return res;
}

/* ---- running --------------------------------------------------------------- */

static GHashTable *extra_kinds; /* kind (owned) -> handler */

void
imp_golden_register_kind (const char *kind, ImpGoldenHandler handler)
{
  if (extra_kinds == NULL)
    extra_kinds = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_hash_table_replace (extra_kinds, g_strdup (kind), handler);
}

static ImpGoldenHandler
find_handler (const char *kind)
{
  ImpGoldenHandler h = extra_kinds ? g_hash_table_lookup (extra_kinds, kind) : NULL;
  if (h != NULL)
    return h;
  for (gsize i = 0; i < G_N_ELEMENTS (kinds); i++)
    if (strcmp (kinds[i].kind, kind) == 0)
      return kinds[i].run;
  return NULL;
}

static CaseResult
run_case (JsonObject *c, JsonObject *models, const char *manifest_dir,
          ImpGoldenPrecision precision, gboolean verbose, FILE *out)
{
  const char *id = imp_json_string (c, "id", NULL);
  const char *kind = imp_json_string (c, "kind", NULL);
  ImpGoldenHandler handler = find_handler (kind);
  if (handler == NULL)
    {
      fprintf (out, "SKIP %s kind '%s' not implemented\n", id, kind);
      return CASE_SKIP;
    }

  ImpGoldenCase gc = { 0 };
  gc.id = id;
  gc.kind = kind;
  gc.manifest_dir = manifest_dir;
  gc.case_json = c;
  g_autoptr (JsonObject) empty_params = json_object_new ();
  gc.params = imp_json_object (c, "params");
  if (gc.params == NULL)
    gc.params = empty_params;
  gc.models = models;
  gc.model_name = imp_json_string (c, "model", NULL);
  gc.model = gc.model_name ? imp_json_object (models, gc.model_name) : NULL;
  gc.precision = precision;
  if (gc.model_name != NULL && gc.model == NULL)
    {
      fprintf (out, "FAIL %s error: model '%s' is not in the manifest's models\n", id,
               gc.model_name);
      return CASE_FAIL;
    }

  const char *rel = imp_json_string (c, "file", NULL);
  if (rel == NULL)
    {
      fprintf (out, "FAIL %s error: the case has no \"file\"\n", id);
      return CASE_FAIL;
    }
  g_autofree char *path = g_build_filename (manifest_dir, rel, NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (SdSafetensors) file = sd_safetensors_open (path, &error);
  if (file == NULL)
    {
      fprintf (out, "FAIL %s error: %s\n", id, error->message);
      return CASE_FAIL;
    }
  gc.file = file;

  ImpGoldenRun run = { g_hash_table_new_full (g_str_hash, g_str_equal, g_free, actual_free),
                       g_hash_table_new_full (g_str_hash, g_str_equal, g_free, g_free) };
  gc.run = &run;
  CaseResult res;
  if (!handler (&gc, &error))
    {
      if (error == NULL)
        g_set_error_literal (&error, SD_ERROR, SD_ERROR_FAILED, "handler failed without a message");
      if (g_error_matches (error, IMP_GOLDEN_ERROR, IMP_GOLDEN_ERROR_SKIP))
        {
          fprintf (out, "SKIP %s %s\n", id, error->message);
          res = CASE_SKIP;
        }
      else
        {
          fprintf (out, "FAIL %s error: %s\n", id, error->message);
          res = CASE_FAIL;
        }
    }
  else
    res = compare_outputs (&gc, verbose, out);
  g_hash_table_unref (run.outputs);
  g_hash_table_unref (run.declined);
  return res;
}

gboolean
imp_golden_run_manifest (const char *manifest_path, const char *const *case_ids,
                         ImpGoldenPrecision precision, gboolean verbose, FILE *out,
                         ImpGoldenTotals *totals, const char **bad_case_id, GError **error)
{
  memset (totals, 0, sizeof *totals);
  if (bad_case_id)
    *bad_case_id = NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  if (!json_parser_load_from_file (parser, manifest_path, error))
    {
      g_prefix_error (error, "%s: ", manifest_path);
      return FALSE;
    }
  JsonNode *root = json_parser_get_root (parser);
  JsonArray *cases = root && JSON_NODE_HOLDS_OBJECT (root)
                         ? imp_json_array (json_node_get_object (root), "cases")
                         : NULL;
  if (cases == NULL)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT,
                   "%s: not a golden manifest (no \"cases\" list)", manifest_path);
      return FALSE;
    }
  JsonObject *models = imp_json_object (json_node_get_object (root), "models");
  g_autoptr (JsonObject) no_models = json_object_new ();
  if (models == NULL)
    models = no_models;
  for (guint i = 0; i < json_array_get_length (cases); i++)
    {
      JsonNode *n = json_array_get_element (cases, i);
      JsonObject *c = JSON_NODE_HOLDS_OBJECT (n) ? json_node_get_object (n) : NULL;
      if (c == NULL || imp_json_string (c, "id", NULL) == NULL
          || imp_json_string (c, "kind", NULL) == NULL)
        {
          g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT,
                       "%s: case %u is not an object with string \"id\" and \"kind\"",
                       manifest_path, i);
          return FALSE;
        }
    }
  for (const char *const *want = case_ids; want && *want; want++)
    {
      gboolean found = FALSE;
      for (guint i = 0; i < json_array_get_length (cases) && !found; i++)
        found = g_strcmp0 (imp_json_string (json_array_get_object_element (cases, i), "id", NULL),
                           *want)
                == 0;
      if (!found)
        {
          if (bad_case_id)
            *bad_case_id = *want;
          g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "no case '%s' in %s", *want,
                       manifest_path);
          return FALSE;
        }
    }

  g_autofree char *dir = g_path_get_dirname (manifest_path);
  g_autofree char *abs_dir = g_canonicalize_filename (dir, NULL);
  for (guint i = 0; i < json_array_get_length (cases); i++)
    {
      JsonObject *c = json_array_get_object_element (cases, i);
      const char *id = imp_json_string (c, "id", NULL);
      if (case_ids != NULL && case_ids[0] != NULL && !g_strv_contains (case_ids, id))
        continue;
      switch (run_case (c, models, abs_dir, precision, verbose, out))
        {
        case CASE_PASS: totals->passed++; break;
        case CASE_FAIL: totals->failed++; break;
        case CASE_SKIP: totals->skipped++; break;
        }
      fflush (out);
    }
  fprintf (out, "%d passed, %d failed, %d skipped\n", totals->passed, totals->failed,
           totals->skipped);
  return TRUE;
}
