/* fuzz-safetensors.c: the safetensors reader and the model layer on top of it,
 * fed arbitrary bytes as a whole file.
 *
 * Built with the corpus-replay driver (standalone.c) in every build, and with
 * libFuzzer when the `fuzzing` option is on (or by tools/fuzz.sh). Besides
 * "no crash, no out-of-bounds access" it checks the reader's promises: an
 * accepted file's tensors lie inside it, do not overlap, and are found by name;
 * a refused one sets an SD_ERROR. */
#include "config.h"

#include <stdint.h>
#include <string.h>

#include "safetensors.h"
#include "sd-error.h"
#include "sd-model.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* Tensors larger than this are not converted (time, not coverage). */
#define MAX_READ_ELEMENTS (1 << 16)

static void
check_refusal (GError **error)
{
  GError *e = *error;
  if (e == NULL || e->domain != SD_ERROR || e->message == NULL || e->message[0] == '\0')
    g_error ("refused without a proper SD_ERROR");
  g_clear_error (error);
}

/* size: the file size the tensors must fit in (G_MAXSIZE: unbounded). */
static void
check_accepted (SdSafetensors *st, size_t size)
{
  guint n = sd_safetensors_get_n_tensors (st);
  guint64 header = sd_safetensors_get_header_size (st);
  guint64 prev_end = 0;
  for (guint i = 0; i < n; i++)
    {
      const SdSafetensorsTensor *t = sd_safetensors_get_nth (st, i);
      if (t->data_end < t->data_begin || (size != G_MAXSIZE && 8 + header + t->data_end > size))
        g_error ("tensor '%s' outside the file", t->name);
      if (t->data_begin != t->data_end)
        {
          if (t->data_begin < prev_end)
            g_error ("tensor '%s' overlaps", t->name);
          prev_end = t->data_end;
        }
      if (sd_safetensors_lookup (st, t->name) != t)
        g_error ("tensor '%s' not found by name", t->name);
      if (t->ndim < 0 || t->ndim > 8 || t->n_elements < 0)
        g_error ("tensor '%s' has a bad shape", t->name);
      guint64 bytes = (guint64) t->n_elements * sd_dtype_size (t->dtype);
      if (bytes != t->data_end - t->data_begin)
        g_error ("tensor '%s': size does not match its range", t->name);
    }
  GPtrArray *keys = sd_safetensors_list_metadata (st);
  for (guint i = 0; i < keys->len; i++)
    if (sd_safetensors_get_metadata (st, g_ptr_array_index (keys, i)) == NULL)
      g_error ("metadata key without value");
  g_ptr_array_unref (keys);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  GError *error = NULL;

  /* 1. The header alone, with the data size unbounded: JSON, dtypes, shapes,
   * ranges against each other. The model layer reads headers only, so this is
   * also its input (model-shaped seeds need not carry megabytes of weights). */
  SdSafetensors *st = sd_safetensors_new_from_header (data, size, G_MAXINT64, &error);
  if (st == NULL)
    {
      check_refusal (&error);
      return 0;
    }
  check_accepted (st, G_MAXSIZE);
  guint64 extent = 8 + sd_safetensors_get_header_size (st);
  for (guint i = 0; i < sd_safetensors_get_n_tensors (st); i++)
    extent = MAX (extent, 8 + sd_safetensors_get_header_size (st) + sd_safetensors_get_nth (st, i)->data_end);
  if (sd_safetensors_get_n_tensors (st) > 0)
    {
      if (sd_safetensors_get_data (st, sd_safetensors_get_nth (st, 0), &error) != NULL)
        g_error ("header-only data readable");
      g_clear_error (&error);
    }

  /* 2. The whole file in memory, when the ranges fit in it: the same verdict,
   * and every conversion path reads real bytes. When they do not fit, the
   * exact-size header check must refuse it (small inputs only: it re-parses). */
  if (extent <= size)
    {
      GBytes *bytes = g_bytes_new_static (data, size);
      SdSafetensors *whole = sd_safetensors_new_from_bytes (bytes, NULL, &error);
      g_bytes_unref (bytes);
      if (whole == NULL)
        g_error ("accepted header-only but refused whole: %s", error ? error->message : "?");
      check_accepted (whole, size);
      for (guint i = 0; i < sd_safetensors_get_n_tensors (whole); i++)
        {
          const SdSafetensorsTensor *t = sd_safetensors_get_nth (whole, i);
          if (t->n_elements > MAX_READ_ELEMENTS)
            continue;
          gsize n = (gsize) t->n_elements;
          float *f = g_new (float, n + 1);
          gint64 *iv = g_new (gint64, n + 1);
          if (!sd_safetensors_read_f32 (whole, t->name, f, n, &error))
            g_error ("read_f32 of '%s' failed: %s", t->name, error->message);
          if (!sd_safetensors_read_i64 (whole, t->name, iv, n, &error))
            g_clear_error (&error);
          g_free (f);
          g_free (iv);
        }
      sd_safetensors_free (whole);
    }
  else if (size < 1024)
    {
      SdSafetensors *exact = sd_safetensors_new_from_header (data, size, size, &error);
      if (exact != NULL)
        g_error ("ranges past the end accepted");
      check_refusal (&error);
    }

  /* 3. The model layer: naming, detection, expected tensors, description. */
  SdModel *m = sd_model_new_from_safetensors (st, NULL, &error);
  if (m == NULL)
    {
      check_refusal (&error);
      return 0;
    }
  GPtrArray *names = sd_model_list_tensors (m);
  for (guint i = 0; i < names->len; i++)
    {
      const SdTensorInfo *t = sd_model_lookup (m, g_ptr_array_index (names, i));
      if (t == NULL || strcmp (t->name, g_ptr_array_index (names, i)) != 0)
        g_error ("listed tensor not found");
      float x;
      if (sd_model_read_f32 (m, t->name, &x, (gsize) t->n_elements, &error))
        g_error ("header-only model data readable");
      g_clear_error (&error);
    }
  g_ptr_array_unref (names);
  static const char *const components[] = { "unet", "vae", "text_encoder", "text_encoder_2" };
  for (guint c = 0; c < G_N_ELEMENTS (components); c++)
    {
      if (sd_model_count_params (m, components[c]) < 0)
        g_error ("negative parameter count");
      if (!sd_model_check_component (m, components[c], &error))
        check_refusal (&error);
    }
  GString *out = g_string_new (NULL);
  sd_model_describe (m, out, NULL);
  g_string_free (out, TRUE);
  sd_model_free (m);
  return 0;
}
