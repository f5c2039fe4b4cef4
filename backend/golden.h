/* golden.h: `impasto check-golden`, running golden reference cases.
 *
 * A manifest (format of ../shared/golden/manifest.json) lists cases; each
 * case has an "id", a "kind", a "model" (a key of the manifest's "models", or
 * null), "params", "inputs", "outputs" and "tolerance", and a case "file"
 * (safetensors, path relative to the manifest's folder) holding its input and
 * expected output tensors.
 *
 * Each kind has a handler. The framework finds the handler by the case's
 * kind, opens the case file, calls the handler, and compares what the
 * handler reported with the expected outputs in the case file:
 *
 *   - every output listed in the case's "outputs" that is present in the
 *     file is compared, except debug.* outputs the handler did not report;
 *     a non-debug output the handler neither reported nor declined
 *     (imp_golden_decline_output) fails the case;
 *   - integer outputs (I32/I64 in the file) and cases whose tolerance metric
 *     is "exact" must match exactly (err = max |actual - expected|, bound 0);
 *   - float outputs: err = max |actual - expected| / rms (expected), with rms
 *     over all elements (non-finite expected values count as 0); an expected
 *     tensor of all zeros uses the absolute max error. NaN/Inf parity: an
 *     element that is finite on one side and not on the other, or NaN
 *     against +-Inf, or Inf of the other sign, makes err = inf;
 *   - bound: tolerance.per_output[name][precision] when present, else
 *     tolerance[precision] ("fp32" / "fp16");
 *   - an element count different from the expected tensor's fails.
 *
 * Output, one line per case:
 *   PASS <id> <worst err> <= <bound>
 *   FAIL <id> <worst err> > <bound> (<output name>)
 *   FAIL <id> error: <message>           (the handler failed, or a bad case file)
 *   SKIP <id> kind '<kind>' not implemented   or   SKIP <id> <reason>
 * and "N passed, N failed, N skipped". "Worst" is the output with the
 * largest err / bound.
 *
 * Adding a kind: write backend/golden-<area>.c with a handler
 *
 *   gboolean imp_golden_<kind> (ImpGoldenCase *gc, GError **error);
 *
 * add one line to IMP_GOLDEN_KINDS below and the file to impasto_golden_src
 * in backend/meson.build. A handler reads its inputs with imp_golden_read_*,
 * reports each output with imp_golden_put_*, and returns TRUE. It returns
 * FALSE with an error to fail the case, or with imp_golden_set_skip () to
 * skip it (missing model file, no Vulkan device, unsupported params...).
 * Handlers are driven by kind and params only, never by case ids.
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>
#include <stdio.h>

#include "safetensors.h"

G_BEGIN_DECLS

typedef enum
{
  IMP_GOLDEN_FP32,
  IMP_GOLDEN_FP16,
} ImpGoldenPrecision;

typedef struct _ImpGoldenRun ImpGoldenRun;

/* What a handler gets. All members are borrowed and valid during the call. */
typedef struct
{
  const char *id;
  const char *kind;
  const char *manifest_dir; /* folder of the manifest; paths in it are relative to this */
  JsonObject *case_json;    /* the case object: params, inputs, outputs, tolerance, ... */
  JsonObject *params;       /* case_json.params (an empty object when absent) */
  JsonObject *models;       /* the manifest's "models" (an empty object when absent) */
  const char *model_name;   /* case_json.model, or NULL when null */
  JsonObject *model;        /* models[model_name], or NULL */
  ImpGoldenPrecision precision;
  SdSafetensors *file;      /* the opened case file */
  ImpGoldenRun *run;        /* private */
} ImpGoldenCase;

typedef gboolean (*ImpGoldenHandler) (ImpGoldenCase *gc, GError **error);

/* ---- the registry: one line per kind --------------------------------------- */

#define IMP_GOLDEN_KINDS(X) \
  X ("tokenizer", imp_golden_tokenizer) /* backend/golden-text.c */ \
  X ("text_encoder", imp_golden_text_encoder) /* backend/golden-nets.c */ \
  X ("text_encoder_sdxl", imp_golden_text_encoder_sdxl) \
  X ("unet", imp_golden_unet) \
  X ("vae_decode", imp_golden_vae_decode) \
  X ("vae_encode", imp_golden_vae_encode) \
  X ("schedules", imp_golden_schedules) /* backend/golden-sched.c */ \
  X ("noise", imp_golden_noise) \
  X ("sampler", imp_golden_sampler) \
  X ("img2img", imp_golden_img2img) \
  X ("inpaint", imp_golden_inpaint)

#define IMP_GOLDEN_DECLARE(kind, fn) gboolean fn (ImpGoldenCase *gc, GError **error);
IMP_GOLDEN_KINDS (IMP_GOLDEN_DECLARE)
#undef IMP_GOLDEN_DECLARE

/* Add (or override) a kind at run time, before the table above is
 * consulted; for tests. Not thread-safe. */
void imp_golden_register_kind (const char *kind, ImpGoldenHandler handler);

/* ---- for handlers ---------------------------------------------------------- */

#define IMP_GOLDEN_ERROR (imp_golden_error_quark ())
GQuark imp_golden_error_quark (void);
enum
{
  IMP_GOLDEN_ERROR_SKIP, /* the case cannot run here: reported as SKIP with the message */
};

/* Skip the case with a reason ("model file sd15-tiny/x.safetensors missing"). */
void imp_golden_set_skip (GError **error, const char *format, ...) G_GNUC_PRINTF (2, 3);

/* Shape of a tensor of the case file, or NULL when absent. */
const SdSafetensorsTensor *imp_golden_lookup (ImpGoldenCase *gc, const char *name);
/* Read an input tensor of the case file (converted from its dtype). Returns a
 * g_malloc'ed array of the tensor's n_elements; *info (optional) gets its
 * shape. NULL with an error when absent or unreadable. */
float *imp_golden_read_f32 (ImpGoldenCase *gc, const char *name,
                            const SdSafetensorsTensor **info, GError **error);
gint64 *imp_golden_read_i64 (ImpGoldenCase *gc, const char *name,
                             const SdSafetensorsTensor **info, GError **error);

/* A path of the case's model: models[model].forms[form] (e.g. "diffusers",
 * "single_file_fp16") made absolute, followed by sub (may be NULL,
 * e.g. "tokenizer_2"). When the case has no model, the model has no such
 * form, or the path does not exist, returns NULL with a SKIP error. */
char *imp_golden_model_path (ImpGoldenCase *gc, const char *form, const char *sub, GError **error);

/* Report an actual output (copied). n must be the expected element count. */
void imp_golden_put_f32 (ImpGoldenCase *gc, const char *name, const float *data, gsize n);
void imp_golden_put_i64 (ImpGoldenCase *gc, const char *name, const gint64 *data, gsize n);
/* Say that an output is not produced, and why (listed with --verbose; the
 * case passes on the other outputs). */
void imp_golden_decline_output (ImpGoldenCase *gc, const char *name, const char *reason);

/* Safe JSON accessors (no criticals on a wrong type): the member, or the
 * default when absent or of another type. */
const char *imp_json_string (JsonObject *o, const char *member, const char *def);
gint64 imp_json_int (JsonObject *o, const char *member, gint64 def);
double imp_json_double (JsonObject *o, const char *member, double def);
JsonObject *imp_json_object (JsonObject *o, const char *member); /* NULL when absent */
JsonArray *imp_json_array (JsonObject *o, const char *member);   /* NULL when absent */

/* ---- running ---------------------------------------------------------------- */

typedef struct
{
  int passed, failed, skipped;
} ImpGoldenTotals;

/* Run the cases of a manifest (all, or those whose id is in case_ids, a
 * NULL-terminated list, in manifest order), printing one line per case to out
 * (and per output with verbose). Returns FALSE with an error (IMP_GOLDEN_ERROR
 * not used; G_IO / SD_ERROR codes) when the manifest cannot be read or a
 * requested case id does not exist (*bad_case_id is then set, borrowed). */
gboolean imp_golden_run_manifest (const char *manifest_path, const char *const *case_ids,
                                  ImpGoldenPrecision precision, gboolean verbose, FILE *out,
                                  ImpGoldenTotals *totals, const char **bad_case_id,
                                  GError **error);

G_END_DECLS
