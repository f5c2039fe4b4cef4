/* test-check-golden: the check-golden framework (backend/golden.c) on
 * manifests and case files written here: comparison metric, tolerance
 * selection, NaN/Inf parity, missing / declined / debug outputs, element
 * counts, skips, errors, and the report lines. A test kind "echo" returns the
 * expected outputs of the case file, changed as its params say. */
#include "config.h"

#include <glib/gstdio.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "golden.h"
#include "sd-error.h"

/* ---- writing case files --------------------------------------------------- */

typedef struct
{
  const char *name;
  const char *dtype; /* "F32" or "I32" */
  int ndim;
  gint64 shape[4];
  const void *data;
} TestTensor;

static gsize
elem_count (const TestTensor *t)
{
  gsize n = 1;
  for (int i = 0; i < t->ndim; i++)
    n *= t->shape[i];
  return n;
}

static void
write_safetensors (const char *path, const TestTensor *t, int n)
{
  GString *h = g_string_new ("{");
  gsize off = 0;
  for (int i = 0; i < n; i++)
    {
      gsize bytes = elem_count (&t[i]) * 4;
      g_string_append_printf (h, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[", i ? "," : "", t[i].name,
                              t[i].dtype);
      for (int d = 0; d < t[i].ndim; d++)
        g_string_append_printf (h, "%s%" G_GINT64_FORMAT, d ? "," : "", t[i].shape[d]);
      g_string_append_printf (h, "],\"data_offsets\":[%" G_GSIZE_FORMAT ",%" G_GSIZE_FORMAT "]}",
                              off, off + bytes);
      off += bytes;
    }
  g_string_append_c (h, '}');
  while (h->len % 8)
    g_string_append_c (h, ' ');
  GByteArray *f = g_byte_array_new ();
  guint64 hl = GUINT64_TO_LE (h->len);
  g_byte_array_append (f, (guint8 *) &hl, 8);
  g_byte_array_append (f, (guint8 *) h->str, h->len);
  for (int i = 0; i < n; i++)
    g_byte_array_append (f, t[i].data, elem_count (&t[i]) * 4);
  g_assert_true (g_file_set_contents (path, (char *) f->data, f->len, NULL));
  g_byte_array_unref (f);
  g_string_free (h, TRUE);
}

/* ---- the echo kind ------------------------------------------------------------ */

/* params: scale (multiply float outputs), nan_at (index set to NaN in
 * "image"), omit (an output not reported), decline (an output declined),
 * short (an output reported one element short), int_off (added to int
 * outputs), skip (skip with this reason), fail (fail with this message). */
static gboolean
echo_kind (ImpGoldenCase *gc, GError **error)
{
  const char *skip = imp_json_string (gc->params, "skip", NULL);
  if (skip)
    {
      imp_golden_set_skip (error, "%s", skip);
      return FALSE;
    }
  const char *fail = imp_json_string (gc->params, "fail", NULL);
  if (fail)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_FAILED, "%s", fail);
      return FALSE;
    }
  double scale = imp_json_double (gc->params, "scale", 1.0);
  gint64 nan_at = imp_json_int (gc->params, "nan_at", -1);
  gint64 int_off = imp_json_int (gc->params, "int_off", 0);
  const char *omit = imp_json_string (gc->params, "omit", "");
  const char *decline = imp_json_string (gc->params, "decline", "");
  const char *shorten = imp_json_string (gc->params, "short", "");

  /* the input is readable */
  const SdSafetensorsTensor *info = NULL;
  g_autofree float *x = imp_golden_read_f32 (gc, "x", &info, error);
  if (x == NULL)
    return FALSE;
  g_assert_cmpint (info->n_elements, ==, 4);

  JsonArray *outs = imp_json_array (gc->case_json, "outputs");
  for (guint k = 0; k < json_array_get_length (outs); k++)
    {
      const char *name = imp_json_string (json_array_get_object_element (outs, k), "name", NULL);
      if (strcmp (name, omit) == 0 || imp_golden_lookup (gc, name) == NULL)
        continue;
      if (strcmp (name, decline) == 0)
        {
          imp_golden_decline_output (gc, name, "not wanted");
          continue;
        }
      const SdSafetensorsTensor *t = imp_golden_lookup (gc, name);
      gsize n = t->n_elements - (strcmp (name, shorten) == 0 ? 1 : 0);
      if (t->dtype == SD_DTYPE_F32)
        {
          g_autofree float *v = imp_golden_read_f32 (gc, name, NULL, error);
          for (gsize i = 0; i < n; i++)
            v[i] = (float) (v[i] * scale);
          if (strcmp (name, "image") == 0 && nan_at >= 0)
            v[nan_at] = NAN;
          imp_golden_put_f32 (gc, name, v, n);
        }
      else
        {
          g_autofree gint64 *v = imp_golden_read_i64 (gc, name, NULL, error);
          for (gsize i = 0; i < n; i++)
            v[i] += int_off;
          imp_golden_put_i64 (gc, name, v, n);
        }
    }
  return TRUE;
}

/* ---- fixture ---------------------------------------------------------------- */

typedef struct
{
  char *dir;
  char *manifest;
} Fixture;

static const char *manifest_template =
  "{\"format_version\": 1, \"models\": {\"m\": {\"forms\": {\"diffusers\": \"m\"}}},\n"
  " \"cases\": [\n"
  "  {\"id\": \"plain\", \"kind\": \"echo\", \"model\": \"m\", \"file\": \"c.safetensors\",\n"
  "   \"params\": PARAMS, \"inputs\": [{\"name\": \"x\"}],\n"
  "   \"outputs\": [{\"name\": \"image\"}, {\"name\": \"ids\"}, {\"name\": \"debug.mid\"},\n"
  "                 {\"name\": \"absent\"}],\n"
  "   \"tolerance\": {\"metric\": \"max_abs_err / rms(expected)\", \"fp32\": 1e-5, \"fp16\": 1e-2,\n"
  "                 \"per_output\": {\"ids\": {\"fp32\": 0, \"fp16\": 0}}}},\n"
  "  {\"id\": \"other\", \"kind\": \"no_such_kind\", \"model\": null, \"file\": \"c.safetensors\"}\n"
  " ]}\n";

static void
fixture_write (Fixture *f, const char *params)
{
  g_autoptr (GString) m = g_string_new (manifest_template);
  g_string_replace (m, "PARAMS", params, 1);
  g_assert_true (g_file_set_contents (f->manifest, m->str, -1, NULL));
}

static void
fixture_setup (Fixture *f, gconstpointer data)
{
  f->dir = g_dir_make_tmp ("impasto-golden-XXXXXX", NULL);
  f->manifest = g_build_filename (f->dir, "manifest.json", NULL);
  static const float x[4] = { 1, 2, 3, 4 };
  static const float image[6] = { 0.5f, -1.0f, 2.0f, INFINITY, 0.25f, -0.75f };
  static const gint32 ids[3] = { 49406, 320, 49407 };
  static const float mid[2] = { 1, 1 };
  TestTensor t[] = {
    { "x", "F32", 1, { 4 }, x },
    { "image", "F32", 2, { 2, 3 }, image },
    { "ids", "I32", 2, { 1, 3 }, ids },
    { "debug.mid", "F32", 1, { 2 }, mid },
  };
  g_autofree char *c = g_build_filename (f->dir, "c.safetensors", NULL);
  write_safetensors (c, t, G_N_ELEMENTS (t));
  g_autofree char *m = g_build_filename (f->dir, "m", NULL);
  g_assert_cmpint (g_mkdir (m, 0700), ==, 0);
  fixture_write (f, "{}");
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  g_autofree char *c = g_build_filename (f->dir, "c.safetensors", NULL);
  g_autofree char *m = g_build_filename (f->dir, "m", NULL);
  g_unlink (c);
  g_unlink (f->manifest);
  g_rmdir (m);
  g_rmdir (f->dir);
  g_free (f->manifest);
  g_free (f->dir);
}

/* Run the manifest (case "plain" unless all), return the report. */
static char *
run (Fixture *f, const char *params, ImpGoldenPrecision prec, gboolean all,
     ImpGoldenTotals *totals)
{
  fixture_write (f, params);
  char *buf = NULL;
  size_t len = 0;
  FILE *out = open_memstream (&buf, &len);
  const char *only[] = { "plain", NULL };
  g_autoptr (GError) error = NULL;
  gboolean ok = imp_golden_run_manifest (f->manifest, all ? NULL : only, prec, TRUE, out, totals,
                                         NULL, &error);
  g_assert_no_error (error);
  g_assert_true (ok);
  fclose (out);
  return buf;
}

static gboolean
has_line (const char *report, const char *prefix)
{
  g_auto (GStrv) lines = g_strsplit (report, "\n", -1);
  for (int i = 0; lines[i]; i++)
    if (g_str_has_prefix (lines[i], prefix))
      return TRUE;
  g_test_message ("report:\n%s", report);
  return FALSE;
}

static void
test_pass_exact (Fixture *f, gconstpointer data)
{
  ImpGoldenTotals t;
  g_autofree char *r = run (f, "{}", IMP_GOLDEN_FP32, TRUE, &t);
  g_assert_true (has_line (r, "PASS plain 0 <= 1e-05"));
  g_assert_true (has_line (r, "SKIP other kind 'no_such_kind' not implemented"));
  g_assert_true (has_line (r, "1 passed, 0 failed, 1 skipped"));
  /* the debug output the handler returned is compared; "absent" is not in
   * the file */
  g_assert_true (has_line (r, "  debug.mid: 0 <= 1e-05"));
  g_assert_true (has_line (r, "  absent: not in the case file"));
  g_assert_cmpint (t.passed, ==, 1);
  g_assert_cmpint (t.skipped, ==, 1);
}

static void
test_tolerance (Fixture *f, gconstpointer data)
{
  ImpGoldenTotals t;
  /* rms (finite image values, inf counted as 0) = sqrt (5.875 / 6) ~ 0.9895;
   * a relative change of 1e-6 gives about 2e-6 (float rounding decides the
   * last digits), 1e-3 gives 0.002 / 0.9895 = 0.00202 */
  g_autofree char *r1 = run (f, "{\"scale\": 1.000001}", IMP_GOLDEN_FP32, FALSE, &t);
  g_assert_true (has_line (r1, "PASS plain "));
  g_assert_nonnull (strstr (r1, " <= 1e-05\n"));
  g_autofree char *r2 = run (f, "{\"scale\": 1.001}", IMP_GOLDEN_FP32, FALSE, &t);
  g_assert_true (has_line (r2, "FAIL plain 0.00202 > 1e-05 (image)"));
  g_assert_cmpint (t.failed, ==, 1);
  /* the fp16 bound */
  g_autofree char *r3 = run (f, "{\"scale\": 1.001}", IMP_GOLDEN_FP16, FALSE, &t);
  g_assert_true (has_line (r3, "PASS plain 0.00202 <= 0.01"));
}

static void
test_nan_parity (Fixture *f, gconstpointer data)
{
  ImpGoldenTotals t;
  g_autofree char *r = run (f, "{\"nan_at\": 0}", IMP_GOLDEN_FP32, FALSE, &t);
  g_assert_true (has_line (r, "FAIL plain inf > 1e-05 (image)"));
  /* NaN where +inf is expected */
  g_autofree char *r2 = run (f, "{\"nan_at\": 3}", IMP_GOLDEN_FP32, FALSE, &t);
  g_assert_true (has_line (r2, "FAIL plain inf > 1e-05 (image)"));
  /* -inf where +inf is expected (scale -1 flips every sign, also the finite
   * values: check only that the error is infinite) */
  g_autofree char *r3 = run (f, "{\"scale\": -1}", IMP_GOLDEN_FP32, FALSE, &t);
  g_assert_true (has_line (r3, "FAIL plain inf > 1e-05 (image)"));
}

static void
test_int_outputs (Fixture *f, gconstpointer data)
{
  ImpGoldenTotals t;
  g_autofree char *r = run (f, "{\"int_off\": 1}", IMP_GOLDEN_FP32, FALSE, &t);
  g_assert_true (has_line (r, "FAIL plain 1 > 0 (ids)"));
}

static void
test_missing_outputs (Fixture *f, gconstpointer data)
{
  ImpGoldenTotals t;
  g_autofree char *r1 = run (f, "{\"omit\": \"image\"}", IMP_GOLDEN_FP32, FALSE, &t);
  g_assert_true (has_line (r1, "FAIL plain error: output 'image' not produced"));
  g_autofree char *r2 = run (f, "{\"omit\": \"debug.mid\"}", IMP_GOLDEN_FP32, FALSE, &t);
  g_assert_true (has_line (r2, "PASS plain 0 <= 1e-05"));
  g_assert_true (has_line (r2, "  debug.mid: not produced (debug output)"));
  g_autofree char *r3 = run (f, "{\"decline\": \"image\"}", IMP_GOLDEN_FP32, FALSE, &t);
  g_assert_true (has_line (r3, "PASS plain 0 <= 0"));
  g_assert_true (has_line (r3, "  image: not produced (not wanted)"));
  g_autofree char *r4 = run (f, "{\"short\": \"image\"}", IMP_GOLDEN_FP32, FALSE, &t);
  g_assert_true (has_line (r4, "FAIL plain error: output 'image' has 5 elements, expected 6"));
}

static void
test_skip_fail (Fixture *f, gconstpointer data)
{
  ImpGoldenTotals t;
  g_autofree char *r1 = run (f, "{\"skip\": \"no Vulkan device\"}", IMP_GOLDEN_FP32, FALSE, &t);
  g_assert_true (has_line (r1, "SKIP plain no Vulkan device"));
  g_assert_cmpint (t.skipped, ==, 1);
  g_autofree char *r2 = run (f, "{\"fail\": \"device lost\"}", IMP_GOLDEN_FP32, FALSE, &t);
  g_assert_true (has_line (r2, "FAIL plain error: device lost"));
  g_assert_cmpint (t.failed, ==, 1);
}

static void
test_manifest_errors (Fixture *f, gconstpointer data)
{
  ImpGoldenTotals t;
  g_autoptr (GError) error = NULL;
  FILE *out = fopen ("/dev/null", "w");

  /* unknown case id */
  const char *bad[] = { "plain", "nope", NULL };
  const char *bad_id = NULL;
  g_assert_false (imp_golden_run_manifest (f->manifest, bad, IMP_GOLDEN_FP32, FALSE, out, &t,
                                           &bad_id, &error));
  g_assert_cmpstr (bad_id, ==, "nope");
  g_clear_error (&error);

  /* unreadable / not a manifest */
  static const char *const broken[] = { "", "{", "[]", "{\"cases\": 3}", "{\"cases\": [{}]}",
                                        "{\"cases\": [{\"id\": \"a\", \"kind\": 7}]}" };
  for (guint i = 0; i < G_N_ELEMENTS (broken); i++)
    {
      g_assert_true (g_file_set_contents (f->manifest, broken[i], -1, NULL));
      bad_id = NULL;
      g_assert_false (imp_golden_run_manifest (f->manifest, NULL, IMP_GOLDEN_FP32, FALSE, out, &t,
                                               &bad_id, &error));
      g_assert_nonnull (error);
      g_assert_null (bad_id);
      g_clear_error (&error);
    }
  g_autofree char *none = g_build_filename (f->dir, "missing.json", NULL);
  g_assert_false (imp_golden_run_manifest (none, NULL, IMP_GOLDEN_FP32, FALSE, out, &t, NULL,
                                           &error));
  g_clear_error (&error);

  /* a case whose file is missing or whose model is unknown fails; the
   * others still run */
  g_assert_true (g_file_set_contents (
    f->manifest,
    "{\"models\": {}, \"cases\": [{\"id\": \"a\", \"kind\": \"echo\", \"file\": \"nope.safetensors\"},"
    "{\"id\": \"b\", \"kind\": \"echo\", \"model\": \"zz\", \"file\": \"c.safetensors\"}]}",
    -1, NULL));
  char *buf = NULL;
  size_t len = 0;
  FILE *mem = open_memstream (&buf, &len);
  g_assert_true (imp_golden_run_manifest (f->manifest, NULL, IMP_GOLDEN_FP32, FALSE, mem, &t,
                                          NULL, &error));
  fclose (mem);
  g_assert_true (has_line (buf, "FAIL a error: "));
  g_assert_true (has_line (buf, "FAIL b error: model 'zz' is not in the manifest's models"));
  g_assert_cmpint (t.failed, ==, 2);
  free (buf);
  fclose (out);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  imp_golden_register_kind ("echo", echo_kind);
#define ADD(path, fn) g_test_add (path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD ("/check-golden/pass-exact", test_pass_exact);
  ADD ("/check-golden/tolerance", test_tolerance);
  ADD ("/check-golden/nan-parity", test_nan_parity);
  ADD ("/check-golden/int-outputs", test_int_outputs);
  ADD ("/check-golden/missing-outputs", test_missing_outputs);
  ADD ("/check-golden/skip-fail", test_skip_fail);
  ADD ("/check-golden/manifest-errors", test_manifest_errors);
  return g_test_run ();
}
