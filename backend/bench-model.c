/* bench-model.c: full-size random-weight models for benchmarks, built from a
 * shape table (../shared/golden/shapes/<model>.json: every tensor name with shape
 * and dtype of a real checkpoint) and cached.
 *
 * Weights are drawn so activations keep a sane scale through the whole
 * network: matrices and kernels uniform with variance 1/fan_in (LeCun), biases
 * 0, 1-D scales (norm weights) 1, embeddings with std 0.02 (CLIP's init). With
 * that, a UNet call produces finite values of order 1 and the benchmark
 * measures the same kernels a real model runs. Stored as fp16 (what users
 * download) except integer tensors.
 */
#include "config.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "bench-model.h"
#include "ivk-half.h"
#include "sd-error.h"

typedef struct
{
  const char *name;
  gint64 shape[8];
  int ndim;
  gboolean is_int;
  gint64 n;
} Entry;

static int
cmp_name (gconstpointer a, gconstpointer b)
{
  return strcmp (((const Entry *) a)->name, ((const Entry *) b)->name);
}

static guint64 rng_state;

static inline float
uniform01 (void)
{
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (float) ((rng_state >> 40) * (1.0 / 16777216.0));
}

static float
scale_for (const Entry *e)
{
  if (strstr (e->name, "embedding") || strstr (e->name, "positional_embedding"))
    return 0.02f * sqrtf (3.0f);
  gint64 fan_in = 1;
  for (int i = 1; i < e->ndim; i++)
    fan_in *= e->shape[i];
  return sqrtf (3.0f / (float) MAX (fan_in, 1));
}

gboolean
imp_bench_build_model (const char *table_path, const char *out_path, GError **error)
{
  g_autoptr (JsonParser) parser = json_parser_new ();
  if (!json_parser_load_from_file (parser, table_path, error))
    {
      g_prefix_error (error, "shape table %s: ", table_path);
      return FALSE;
    }
  JsonNode *root = json_parser_get_root (parser);
  JsonObject *tensors = JSON_NODE_HOLDS_OBJECT (root)
                          ? json_object_get_object_member (json_node_get_object (root), "tensors")
                          : NULL;
  if (!tensors)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT, "%s has no \"tensors\" object", table_path);
      return FALSE;
    }
  g_autoptr (GArray) entries = g_array_new (FALSE, TRUE, sizeof (Entry));
  GList *names = json_object_get_members (tensors);
  for (GList *l = names; l; l = l->next)
    {
      JsonObject *t = json_object_get_object_member (tensors, l->data);
      JsonArray *shape = t ? json_object_get_array_member (t, "shape") : NULL;
      const char *dtype = t && json_object_has_member (t, "dtype") ? json_object_get_string_member (t, "dtype") : "F32";
      if (!shape || json_array_get_length (shape) > 8)
        continue;
      Entry e = { .name = l->data, .ndim = json_array_get_length (shape), .n = 1 };
      for (int i = 0; i < e.ndim; i++)
        {
          e.shape[i] = json_array_get_int_element (shape, i);
          e.n *= e.shape[i];
        }
      e.is_int = g_str_has_prefix (dtype, "I");
      g_array_append_val (entries, e);
    }
  g_list_free (names);
  g_array_sort (entries, cmp_name);

  /* header: integer (8-byte) tensors first keeps every tensor aligned */
  GString *h = g_string_new ("{\"__metadata__\":{\"format\":\"pt\",\"impasto.bench\":\"random weights\"}");
  guint64 off = 0;
  for (int pass = 0; pass < 2; pass++)
    for (guint i = 0; i < entries->len; i++)
      {
        Entry *e = &g_array_index (entries, Entry, i);
        if (e->is_int != (pass == 0))
          continue;
        guint64 bytes = (guint64) e->n * (e->is_int ? 8 : 2);
        g_string_append_printf (h, ",\"%s\":{\"dtype\":\"%s\",\"shape\":[", e->name, e->is_int ? "I64" : "F16");
        for (int d = 0; d < e->ndim; d++)
          g_string_append_printf (h, "%s%" G_GINT64_FORMAT, d ? "," : "", e->shape[d]);
        g_string_append_printf (h, "],\"data_offsets\":[%" G_GUINT64_FORMAT ",%" G_GUINT64_FORMAT "]}", off,
                                off + bytes);
        off += bytes;
      }
  g_string_append_c (h, '}');
  while ((h->len + 8) % 8)
    g_string_append_c (h, ' ');

  g_autofree char *tmp = g_strdup_printf ("%s.tmp-%d", out_path, (int) getpid ());
  FILE *f = g_fopen (tmp, "wb");
  if (!f)
    {
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errno), "cannot write %s: %s", tmp,
                   g_strerror (errno));
      g_string_free (h, TRUE);
      return FALSE;
    }
  guint64 hl = h->len;
  guint8 le[8];
  for (int i = 0; i < 8; i++)
    le[i] = (hl >> (8 * i)) & 0xff;
  gboolean ok = fwrite (le, 1, 8, f) == 8 && fwrite (h->str, 1, h->len, f) == h->len;
  g_string_free (h, TRUE);
  rng_state = 0x9E3779B97F4A7C15ull;
  const gsize chunk = 1 << 20;
  g_autofree guint16 *buf = g_new (guint16, chunk);
  for (int pass = 0; ok && pass < 2; pass++)
    for (guint i = 0; ok && i < entries->len; i++)
      {
        Entry *e = &g_array_index (entries, Entry, i);
        if (e->is_int != (pass == 0))
          continue;
        if (e->is_int)
          {
            /* position ids 0..n-1 (the only integer tensors checkpoints carry) */
            for (gint64 k = 0; ok && k < e->n; k++)
              {
                gint64 v = k % (e->shape[e->ndim - 1] > 0 ? e->shape[e->ndim - 1] : 1);
                ok = fwrite (&v, 8, 1, f) == 1;
              }
            continue;
          }
        gboolean vector = e->ndim == 1;
        gboolean bias = g_str_has_suffix (e->name, "bias") || g_str_has_suffix (e->name, ".beta");
        float value = bias ? 0.0f : 1.0f;
        float a = scale_for (e);
        for (gint64 done = 0; ok && done < e->n;)
          {
            gsize m = (gsize) MIN ((gint64) chunk, e->n - done);
            for (gsize k = 0; k < m; k++)
              buf[k] = ivk_f32_to_f16 (vector ? value : a * (2.0f * uniform01 () - 1.0f));
            ok = fwrite (buf, 2, m, f) == m;
            done += m;
          }
      }
  if (fclose (f) != 0)
    ok = FALSE;
  if (!ok || g_rename (tmp, out_path) != 0)
    {
      g_set_error (error, G_FILE_ERROR, G_FILE_ERROR_IO, "writing %s failed: %s", out_path, g_strerror (errno));
      g_unlink (tmp);
      return FALSE;
    }
  return TRUE;
}

char *
imp_bench_model_path (const char *table_path, GError **error)
{
  g_autofree char *dir = g_build_filename (g_get_user_cache_dir (), "impasto", "bench", NULL);
  if (g_mkdir_with_parents (dir, 0700) != 0)
    {
      g_set_error (error, G_FILE_ERROR, g_file_error_from_errno (errno), "cannot create %s", dir);
      return NULL;
    }
  g_autofree char *base = g_path_get_basename (table_path);
  char *dot = strrchr (base, '.');
  if (dot)
    *dot = '\0';
  char *out = g_strdup_printf ("%s/%s.random.fp16.safetensors", dir, base);
  GStatBuf st_out, st_in;
  if (g_stat (out, &st_out) == 0 && g_stat (table_path, &st_in) == 0 && st_out.st_mtime >= st_in.st_mtime)
    return out; /* cached */
  if (!imp_bench_build_model (table_path, out, error))
    {
      g_free (out);
      return NULL;
    }
  return out;
}
