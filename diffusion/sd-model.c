/* sd-model.c: open a model (single file or diffusers folder), expose its
 * tensors under the internal naming and read them with conversions.
 *
 * Loading is two-phase: every header is read and every name mapped here (cheap:
 * headers only, data stays in the mmapped files); tensor data is converted when
 * a module reads it. Pickle checkpoints are refused before a byte of them is
 * interpreted.
 */
#include "config.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "sd-convert.h"
#include "sd-error.h"
#include "sd-model-private.h"

const char *const sd_component_names[SD_N_COMPONENTS] = {
  "unet", "vae", "text_encoder", "text_encoder_2",
};

int
sd_component_index (const char *name)
{
  if (name == NULL)
    return -1;
  for (int i = 0; i < SD_N_COMPONENTS; i++)
    if (strcmp (name, sd_component_names[i]) == 0)
      return i;
  return -1;
}

const char *
sd_arch_name (SdArch arch)
{
  switch (arch)
    {
    case SD_ARCH_SD1:
      return "SD1";
    case SD_ARCH_SD2:
      return "SD2";
    case SD_ARCH_SDXL:
      return "SDXL";
    case SD_ARCH_SDXL_REFINER:
      return "SDXL-refiner";
    case SD_ARCH_UNKNOWN:
      break;
    }
  return "unknown";
}

/* Files that are PyTorch pickles by name. They are refused unread. */
static const char *const pickle_suffixes[] = { ".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle" };

static void
set_pickle_error (GError **error, const char *path, const char *what)
{
  g_set_error (error, SD_ERROR, SD_ERROR_UNSUPPORTED,
               "%s: %s. Pickle checkpoints can run arbitrary code when loaded, so they are never "
               "read. Convert it to .safetensors on a machine you trust, for example with diffusers: "
               "StableDiffusionPipeline.from_single_file(\"%s\").save_pretrained(\"OUT\", "
               "safe_serialization=True) (or scripts/convert_original_stable_diffusion_to_diffusers.py "
               "--checkpoint_path FILE --to_safetensors --dump_path OUT), or with "
               "safetensors.torch.save_file() on the loaded state dict",
               path, what, path);
}

/* ------------------------------------------------------------------ helpers */

char *
sd_format_shape (const gint64 *shape, int ndim)
{
  GString *s = g_string_new ("[");
  for (int i = 0; i < ndim; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? ", " : "", shape[i]);
  g_string_append_c (s, ']');
  return g_string_free (s, FALSE);
}

const SdModelTensor *
sd_model_find (SdModel *m, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  char *name = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  const SdModelTensor *t = g_hash_table_lookup (m->by_name, name);
  g_free (name);
  return t;
}

/* Order names as people read them: digit runs compare as numbers
 * (down_blocks.2 before down_blocks.10). */
static int
natural_compare (const char *a, const char *b)
{
  while (*a && *b)
    {
      if (g_ascii_isdigit (*a) && g_ascii_isdigit (*b))
        {
          const char *ea = a, *eb = b;
          while (*ea == '0')
            ea++;
          while (*eb == '0')
            eb++;
          const char *sa = ea, *sb = eb;
          while (g_ascii_isdigit (*ea))
            ea++;
          while (g_ascii_isdigit (*eb))
            eb++;
          if (ea - sa != eb - sb)
            return (ea - sa) < (eb - sb) ? -1 : 1;
          int c = strncmp (sa, sb, (gsize) (ea - sa));
          if (c)
            return c;
          a = ea;
          b = eb;
          continue;
        }
      if (*a != *b)
        return (guchar) *a < (guchar) *b ? -1 : 1;
      a++;
      b++;
    }
  if (*a || *b)
    return *a ? 1 : -1;
  return 0;
}

static int
natural_compare_ptr (gconstpointer a, gconstpointer b)
{
  int c = natural_compare (*(const char *const *) a, *(const char *const *) b);
  return c ? c : strcmp (*(const char *const *) a, *(const char *const *) b);
}

static JsonNode *
load_json_file (const char *path, GError **error)
{
  g_autoptr (JsonParser) p = json_parser_new ();
  GError *err = NULL;
  if (!json_parser_load_from_file (p, path, &err))
    {
      gboolean io = err->domain == G_FILE_ERROR;
      g_set_error (error, SD_ERROR, io ? SD_ERROR_IO : SD_ERROR_CORRUPT, "%s: %s", path, err->message);
      g_error_free (err);
      return NULL;
    }
  JsonNode *root = json_parser_get_root (p);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT, "%s: not a JSON object", path);
      return NULL;
    }
  return json_node_copy (root);
}

static gboolean
has_suffix_ci (const char *s, const char *suffix)
{
  gsize ls = strlen (s), lf = strlen (suffix);
  return ls >= lf && g_ascii_strcasecmp (s + ls - lf, suffix) == 0;
}

static gboolean
is_pickle_name (const char *path)
{
  for (gsize i = 0; i < G_N_ELEMENTS (pickle_suffixes); i++)
    if (has_suffix_ci (path, pickle_suffixes[i]))
      return TRUE;
  return FALSE;
}

/* ------------------------------------------------------------ construction */

static SdModel *
model_new (const char *path, const SdOpenOptions *opt)
{
  SdModel *m = g_new0 (SdModel, 1);
  m->path = g_strdup (path);
  m->header_only = opt && opt->header_only;
  m->files = g_ptr_array_new_with_free_func ((GDestroyNotify) sd_safetensors_free);
  m->tensors = g_ptr_array_new_with_free_func (g_free);
  m->by_name = g_hash_table_new (g_str_hash, g_str_equal);
  m->sorted_names = g_ptr_array_new ();
  m->strings = g_string_chunk_new (64 * 1024);
  m->unknown = g_ptr_array_new_with_free_func (g_free);
  m->missing = g_ptr_array_new_with_free_func (g_free);
  m->misshaped = g_ptr_array_new_with_free_func (g_free);
  m->ignored = g_ptr_array_new_with_free_func (g_free);
  m->notes = g_ptr_array_new_with_free_func (g_free);
  return m;
}

void
sd_model_free (SdModel *m)
{
  if (m == NULL)
    return;
  g_free (m->path);
  g_free (m->format_detail);
  g_ptr_array_unref (m->tensors);
  g_ptr_array_unref (m->files);
  g_hash_table_destroy (m->by_name);
  g_ptr_array_unref (m->sorted_names);
  g_string_chunk_free (m->strings);
  g_ptr_array_unref (m->unknown);
  g_ptr_array_unref (m->missing);
  g_ptr_array_unref (m->misshaped);
  g_ptr_array_unref (m->ignored);
  g_ptr_array_unref (m->notes);
  for (int i = 0; i < SD_N_COMPONENTS; i++)
    {
      g_free (m->comp[i].dir);
      g_free (m->comp[i].config_source);
      if (m->comp[i].config)
        json_node_unref (m->comp[i].config);
    }
  g_free (m->root);
  g_free (m->tokenizer_dir[0]);
  g_free (m->tokenizer_dir[1]);
  if (m->model_index)
    json_node_unref (m->model_index);
  if (m->scheduler_config)
    json_node_unref (m->scheduler_config);
  g_free (m->scheduler_source);
  g_free (m->prediction_source);
  g_free (m);
}

static SdSafetensors *
open_st (SdModel *m, const char *path, GError **error)
{
  return m->header_only ? sd_safetensors_open_header_only (path, error) : sd_safetensors_open (path, error);
}

/* Register the tensors of one file through a name map. The file must already
 * be in m->files. */
static gboolean
add_tensors (SdModel *m, SdSafetensors *st, SdNameMap *map, GError **error)
{
  const char *fname = sd_safetensors_get_path (st);
  g_autofree char *base = fname ? g_path_get_basename (fname) : g_strdup ("(memory)");
  guint n = sd_safetensors_get_n_tensors (st);
  for (guint i = 0; i < n; i++)
    {
      const SdSafetensorsTensor *src = sd_safetensors_get_nth (st, i);
      SdNameResult r;
      sd_name_map_apply (map, src->name, &r);
      if (r.kind == SD_NAME_IGNORED)
        {
          g_ptr_array_add (m->ignored, g_strdup_printf ("%s: %s", src->name, r.reason));
          sd_name_result_clear (&r);
          continue;
        }
      int ci = sd_component_index (r.component);
      if (r.kind == SD_NAME_UNKNOWN || ci < 0)
        {
          g_autofree char *shape = sd_format_shape (src->shape, src->ndim);
          g_ptr_array_add (m->unknown, g_strdup_printf ("%s %s %s (in %s): not a known %s name", src->name,
                                                        sd_dtype_name (src->dtype), shape, base,
                                                        r.component ? r.component : "model"));
          sd_name_result_clear (&r);
          continue;
        }

      /* The exposed shape. */
      gint64 shape[8];
      int ndim = src->ndim;
      memcpy (shape, src->shape, sizeof shape);
      SdXform xform = r.xform;
      switch (xform)
        {
        case SD_XFORM_NONE:
          break;
        case SD_XFORM_SQUEEZE_1X1:
          if (ndim == 4 && shape[2] == 1 && shape[3] == 1)
            ndim = 2;
          xform = SD_XFORM_NONE; /* same bytes */
          break;
        case SD_XFORM_TRANSPOSE:
          if (ndim == 2)
            {
              shape[0] = src->shape[1];
              shape[1] = src->shape[0];
            }
          else
            xform = SD_XFORM_NONE; /* left as stored; reported as mis-shaped */
          break;
        case SD_XFORM_SPLIT_QKV:
          if (ndim < 1 || shape[0] % 3 != 0 || shape[0] == 0)
            {
              g_autofree char *s = sd_format_shape (src->shape, src->ndim);
              g_ptr_array_add (m->misshaped,
                               g_strdup_printf ("%s %s (in %s): a packed q/k/v tensor needs a first "
                                                "dimension divisible by 3",
                                                src->name, s, base));
              sd_name_result_clear (&r);
              continue;
            }
          shape[0] /= 3;
          break;
        }
      if (r.openclip)
        m->comp[ci].openclip = TRUE;

      for (int p = 0; p < r.n_names; p++)
        {
          if (g_hash_table_contains (m->by_name, r.names[p]))
            {
              g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT,
                           "two tensors map to the internal name %s (the second is '%s' in %s)", r.names[p],
                           src->name, base);
              sd_name_result_clear (&r);
              return FALSE;
            }
          SdModelTensor *t = g_new0 (SdModelTensor, 1);
          t->info.name = g_string_chunk_insert (m->strings, r.names[p]);
          t->info.dtype = src->dtype;
          t->info.ndim = ndim;
          memcpy (t->info.shape, shape, sizeof shape);
          for (int d = ndim; d < 8; d++)
            t->info.shape[d] = 0;
          t->info.n_elements = xform == SD_XFORM_SPLIT_QKV ? src->n_elements / 3 : src->n_elements;
          t->file = st;
          t->src = src;
          t->xform = xform;
          t->part = p;
          t->component = ci;
          g_ptr_array_add (m->tensors, t);
          g_hash_table_insert (m->by_name, (gpointer) t->info.name, t);
          m->comp[ci].present = TRUE;
        }
      sd_name_result_clear (&r);
    }
  return TRUE;
}

/* Most frequent first, then by name. */
static int
compare_by_count (gconstpointer a, gconstpointer b, gpointer counts)
{
  const char *x = *(const char *const *) a, *y = *(const char *const *) b;
  guint cx = GPOINTER_TO_UINT (g_hash_table_lookup (counts, x));
  guint cy = GPOINTER_TO_UINT (g_hash_table_lookup (counts, y));
  if (cx != cy)
    return cx > cy ? -1 : 1;
  return strcmp (x, y);
}

/* "not a Stable Diffusion model" with what was found instead. */
static void
set_unknown_layout_error (GError **error, GPtrArray *names, const char *where)
{
  /* Count by first dotted component; with a single one, by the first two. */
  GHashTable *first = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  gboolean lora = FALSE;
  for (int level = 1; level <= 2; level++)
    {
      g_hash_table_remove_all (first);
      for (guint i = 0; i < names->len; i++)
        {
          const char *s = g_ptr_array_index (names, i);
          if (g_str_has_prefix (s, "lora_") || strstr (s, "lora_down") || strstr (s, "lora_A."))
            lora = TRUE;
          const char *end = s;
          for (int k = 0; k < level && end; k++)
            {
              end = strchr (k ? end + 1 : end, '.');
            }
          char *key = end ? g_strndup (s, (gsize) (end - s)) : g_strdup (s);
          gpointer old = g_hash_table_lookup (first, key);
          g_hash_table_replace (first, key, GUINT_TO_POINTER (GPOINTER_TO_UINT (old) + 1));
        }
      if (g_hash_table_size (first) > 1)
        break;
    }
  GPtrArray *keys = g_ptr_array_new ();
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init (&it, first);
  while (g_hash_table_iter_next (&it, &k, &v))
    g_ptr_array_add (keys, k);
  g_ptr_array_sort_with_data (keys, compare_by_count, first);
  GString *s = g_string_new (NULL);
  guint shown = MIN (keys->len, 12u);
  for (guint i = 0; i < shown; i++)
    {
      const char *key = g_ptr_array_index (keys, i);
      g_string_append_printf (s, "%s%s.* (%u)", i ? ", " : "", key,
                              GPOINTER_TO_UINT (g_hash_table_lookup (first, key)));
    }
  if (keys->len > shown)
    g_string_append_printf (s, " and %u more prefixes", keys->len - shown);
  g_set_error (error, SD_ERROR, SD_ERROR_UNSUPPORTED,
               "%s: not a Stable Diffusion model layout that is known: found %u tensors under %s%s. "
               "Known: single files with model.diffusion_model.* / first_stage_model.* / "
               "cond_stage_model.* / conditioner.embedders.*, diffusers folders (model_index.json, unet/, "
               "vae/, text_encoder/, text_encoder_2/) or one component of those",
               where, names->len, names->len ? s->str : "(no tensors)",
               lora ? " (this looks like a LoRA, which is applied to a model, not opened as one)" : "");
  g_string_free (s, TRUE);
  g_ptr_array_unref (keys);
  g_hash_table_destroy (first);
}

static GPtrArray *
tensor_names (SdSafetensors *st)
{
  guint n = sd_safetensors_get_n_tensors (st);
  GPtrArray *names = g_ptr_array_sized_new (n + 1);
  for (guint i = 0; i < n; i++)
    g_ptr_array_add (names, (gpointer) sd_safetensors_get_nth (st, i)->name);
  return names;
}

/* A single .safetensors file: an original checkpoint, or one component. st is
 * owned by m on return (also on error). */
static gboolean
add_single_file (SdModel *m, SdSafetensors *st, const char *dir, GError **error)
{
  g_ptr_array_add (m->files, st);
  g_autoptr (GPtrArray) names = tensor_names (st);
  g_autoptr (SdNameMap) map = sd_name_map_new ();
  guint recognised = 0;
  const char *where = m->path ? m->path : "(memory)";
  if (!sd_name_map_add_single_file (map, (const char *const *) names->pdata, names->len, &recognised, error))
    {
      g_prefix_error (error, "%s: ", where);
      return FALSE;
    }
  m->format = SD_MODEL_FORMAT_SINGLE_FILE;
  if (recognised > 0)
    m->format_detail = g_strdup ("single file, original (CompVis/Stability) naming");
  else
    {
      gboolean ldm_vae = FALSE;
      const char *comp = sd_name_map_classify_bare ((const char *const *) names->pdata, names->len, &ldm_vae);
      if (comp == NULL)
        {
          /* Known extras alone (e.g. an EMA-only file) are not a model either. */
          set_unknown_layout_error (error, names, where);
          return FALSE;
        }
      if (ldm_vae)
        {
          if (!sd_name_map_add_ldm_vae (map, "", (const char *const *) names->pdata, names->len, error))
            {
              g_prefix_error (error, "%s: ", where);
              return FALSE;
            }
          m->format_detail = g_strdup ("single file holding a VAE only, original naming");
        }
      else
        {
          sd_name_map_add_diffusers (map, comp, "");
          m->format_detail = g_strdup_printf ("single file holding one diffusers component (%s)", comp);
          /* Inside a diffusers component folder: its config says what the
           * weights cannot (heads, activation). */
          if (dir)
            {
              g_autofree char *cfg = g_build_filename (dir, "config.json", NULL);
              int ci = sd_component_index (comp);
              if (g_file_test (cfg, G_FILE_TEST_IS_REGULAR))
                {
                  m->comp[ci].config = load_json_file (cfg, error);
                  if (m->comp[ci].config == NULL)
                    return FALSE;
                  m->comp[ci].config_source = g_strdup (cfg);
                }
            }
        }
    }
  return add_tensors (m, st, map, error);
}

/* A config sidecar beside a single file: MODEL.json for MODEL.safetensors,
 * an object with the diffusers configs of its components ("unet", "vae",
 * "text_encoder", "text_encoder_2", "scheduler") -- the form of a golden
 * manifest's model entry. It says what a single file cannot (heads, native
 * size, prediction type), as the config.json files of a diffusers folder do;
 * a small or unusual model (like the bundled demo model) ships one. */
static gboolean
load_sidecar (SdModel *m, const char *path, GError **error)
{
  g_autofree char *stem = g_strdup (path);
  char *dot = strrchr (stem, '.');
  char *slash = strrchr (stem, G_DIR_SEPARATOR);
  if (dot && (!slash || dot > slash))
    *dot = '\0';
  g_autofree char *side = g_strconcat (stem, ".json", NULL);
  if (!g_file_test (side, G_FILE_TEST_IS_REGULAR))
    return TRUE;
  g_autoptr (JsonNode) root = load_json_file (side, error);
  if (root == NULL)
    return FALSE;
  if (!JSON_NODE_HOLDS_OBJECT (root))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT, "%s: not a JSON object", side);
      return FALSE;
    }
  JsonObject *o = json_node_get_object (root);
  static const struct
  {
    const char *key;
    int comp;
  } map[] = { { "unet", SD_COMP_UNET }, { "vae", SD_COMP_VAE }, { "text_encoder", SD_COMP_TEXT_ENCODER },
              { "text_encoder_2", SD_COMP_TEXT_ENCODER_2 } };
  for (gsize i = 0; i < G_N_ELEMENTS (map); i++)
    {
      JsonNode *n = json_object_get_member (o, map[i].key);
      if (n && JSON_NODE_HOLDS_OBJECT (n) && m->comp[map[i].comp].config == NULL)
        {
          m->comp[map[i].comp].config = json_node_copy (n);
          m->comp[map[i].comp].config_source = g_strdup_printf ("%s (%s)", side, map[i].key);
        }
    }
  JsonNode *sched = json_object_get_member (o, "scheduler");
  if (!sched)
    sched = json_object_get_member (o, "scheduler_config");
  if (sched && JSON_NODE_HOLDS_OBJECT (sched) && m->scheduler_config == NULL)
    {
      m->scheduler_config = json_node_copy (sched);
      m->scheduler_source = g_strdup_printf ("%s (scheduler)", side);
    }
  return TRUE;
}

/* ---------------------------------------------------------- diffusers folder */

static gboolean
load_sharded (SdModel *m, int ci, const char *cdir, const char *index_path, SdNameMap *map, GError **error)
{
  g_autoptr (JsonNode) root = load_json_file (index_path, error);
  if (root == NULL)
    return FALSE;
  JsonObject *o = json_node_get_object (root);
  JsonNode *wm = json_object_has_member (o, "weight_map") ? json_object_get_member (o, "weight_map") : NULL;
  if (wm == NULL || !JSON_NODE_HOLDS_OBJECT (wm))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT, "%s: no \"weight_map\" object", index_path);
      return FALSE;
    }
  JsonObject *wmo = json_node_get_object (wm);
  GList *members = json_object_get_members (wmo);
  g_autoptr (GPtrArray) shards = g_ptr_array_new_with_free_func (g_free);
  gboolean ok = TRUE;
  for (GList *l = members; l && ok; l = l->next)
    {
      JsonNode *v = json_object_get_member (wmo, l->data);
      const char *f = JSON_NODE_HOLDS_VALUE (v) && json_node_get_value_type (v) == G_TYPE_STRING
                          ? json_node_get_string (v)
                          : NULL;
      if (f == NULL || *f == '\0' || strchr (f, '/') || strchr (f, '\\') || f[0] == '.'
          || !g_str_has_suffix (f, ".safetensors"))
        {
          g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT,
                       "%s: weight_map entry '%s' does not name a .safetensors file in the same folder",
                       index_path, (const char *) l->data);
          ok = FALSE;
          break;
        }
      gboolean seen = FALSE;
      for (guint i = 0; i < shards->len && !seen; i++)
        seen = strcmp (g_ptr_array_index (shards, i), f) == 0;
      if (!seen)
        g_ptr_array_add (shards, g_strdup (f));
    }
  if (!ok)
    {
      g_list_free (members);
      return FALSE;
    }
  guint first_file = m->files->len;
  for (guint i = 0; i < shards->len && ok; i++)
    {
      g_autofree char *path = g_build_filename (cdir, g_ptr_array_index (shards, i), NULL);
      SdSafetensors *st = open_st (m, path, error);
      if (st == NULL)
        {
          g_prefix_error (error, "shard of %s: ", index_path);
          ok = FALSE;
          break;
        }
      g_ptr_array_add (m->files, st);
      ok = add_tensors (m, st, map, error);
    }
  /* Every listed tensor must be in the shard the index names. */
  for (GList *l = members; l && ok; l = l->next)
    {
      const char *f = json_node_get_string (json_object_get_member (wmo, l->data));
      SdSafetensors *st = NULL;
      for (guint i = first_file; i < m->files->len && st == NULL; i++)
        {
          g_autofree char *b = g_path_get_basename (sd_safetensors_get_path (g_ptr_array_index (m->files, i)));
          if (strcmp (b, f) == 0)
            st = g_ptr_array_index (m->files, i);
        }
      if (st == NULL || sd_safetensors_lookup (st, l->data) == NULL)
        {
          g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT, "%s: tensor '%s' is not in %s as the index says",
                       index_path, (const char *) l->data, f);
          ok = FALSE;
        }
    }
  g_list_free (members);
  (void) ci;
  return ok;
}

/* Weights of a component folder, in diffusers' order of preference. */
static gboolean
load_component_dir (SdModel *m, int ci, const char *cdir, GError **error)
{
  const char *comp = sd_component_names[ci];
  SdComponent *c = &m->comp[ci];
  c->dir = g_strdup (cdir);

  g_autofree char *cfg = g_build_filename (cdir, "config.json", NULL);
  if (g_file_test (cfg, G_FILE_TEST_IS_REGULAR))
    {
      c->config = load_json_file (cfg, error);
      if (c->config == NULL)
        return FALSE;
      c->config_source = g_strdup_printf ("%s/config.json", comp);
    }

  g_autoptr (SdNameMap) map = sd_name_map_new ();
  sd_name_map_add_diffusers (map, comp, "");

  static const char *const bases[] = { "diffusion_pytorch_model", "model" };
  static const char *const variants[] = { "", ".fp16" };
  for (gsize v = 0; v < G_N_ELEMENTS (variants); v++)
    for (gsize b = 0; b < G_N_ELEMENTS (bases); b++)
      {
        g_autofree char *file = g_strdup_printf ("%s%s.safetensors", bases[b], variants[v]);
        g_autofree char *path = g_build_filename (cdir, file, NULL);
        if (g_file_test (path, G_FILE_TEST_IS_REGULAR))
          {
            SdSafetensors *st = open_st (m, path, error);
            if (st == NULL)
              return FALSE;
            g_ptr_array_add (m->files, st);
            return add_tensors (m, st, map, error);
          }
        g_autofree char *index = g_strconcat (path, ".index.json", NULL);
        if (g_file_test (index, G_FILE_TEST_IS_REGULAR))
          return load_sharded (m, ci, cdir, index, map, error);
      }

  /* Other variants (e.g. diffusion_pytorch_model.non_ema.safetensors): the
   * first by name, said in a note. */
  g_autoptr (GDir) d = g_dir_open (cdir, 0, NULL);
  g_autoptr (GPtrArray) found = g_ptr_array_new_with_free_func (g_free);
  const char *pickle = NULL;
  g_autofree char *pickle_copy = NULL;
  for (const char *e; d && (e = g_dir_read_name (d));)
    {
      if (g_str_has_suffix (e, ".safetensors"))
        g_ptr_array_add (found, g_strdup (e));
      else if (is_pickle_name (e) && pickle == NULL)
        pickle = pickle_copy = g_strdup (e);
    }
  if (found->len > 0)
    {
      g_ptr_array_sort (found, natural_compare_ptr);
      g_autofree char *path = g_build_filename (cdir, g_ptr_array_index (found, 0), NULL);
      g_ptr_array_add (m->notes, g_strdup_printf ("%s: weights from %s (no %s.safetensors)", comp,
                                                  (char *) g_ptr_array_index (found, 0),
                                                  ci <= SD_COMP_VAE ? bases[0] : bases[1]));
      SdSafetensors *st = open_st (m, path, error);
      if (st == NULL)
        return FALSE;
      g_ptr_array_add (m->files, st);
      return add_tensors (m, st, map, error);
    }
  if (pickle)
    {
      g_autofree char *path = g_build_filename (cdir, pickle, NULL);
      set_pickle_error (error, path, "the component's only weights are a PyTorch pickle");
      return FALSE;
    }
  g_set_error (error, SD_ERROR, SD_ERROR_MISSING, "%s: no .safetensors weights in the %s folder", cdir, comp);
  return FALSE;
}

static int
component_from_config (const char *dir)
{
  g_autofree char *cfg = g_build_filename (dir, "config.json", NULL);
  g_autoptr (JsonNode) n = g_file_test (cfg, G_FILE_TEST_IS_REGULAR) ? load_json_file (cfg, NULL) : NULL;
  if (n == NULL)
    return -1;
  JsonObject *o = json_node_get_object (n);
  JsonNode *cn = json_object_has_member (o, "_class_name") ? json_object_get_member (o, "_class_name") : NULL;
  const char *cls = cn && JSON_NODE_HOLDS_VALUE (cn) && json_node_get_value_type (cn) == G_TYPE_STRING
                        ? json_node_get_string (cn)
                        : NULL;
  if (cls && strcmp (cls, "UNet2DConditionModel") == 0)
    return SD_COMP_UNET;
  if (cls && strcmp (cls, "AutoencoderKL") == 0)
    return SD_COMP_VAE;
  JsonNode *arch = json_object_has_member (o, "architectures") ? json_object_get_member (o, "architectures") : NULL;
  if (arch && JSON_NODE_HOLDS_ARRAY (arch) && json_array_get_length (json_node_get_array (arch)) > 0)
    {
      JsonNode *e = json_array_get_element (json_node_get_array (arch), 0);
      const char *a = JSON_NODE_HOLDS_VALUE (e) && json_node_get_value_type (e) == G_TYPE_STRING
                          ? json_node_get_string (e)
                          : "";
      if (strcmp (a, "CLIPTextModel") == 0)
        return SD_COMP_TEXT_ENCODER;
      if (strcmp (a, "CLIPTextModelWithProjection") == 0)
        return SD_COMP_TEXT_ENCODER_2;
    }
  return -1;
}

static void
find_tokenizers (SdModel *m, const char *root)
{
  static const char *const names[2] = { "tokenizer", "tokenizer_2" };
  for (int i = 0; i < 2; i++)
    {
      g_autofree char *d = g_build_filename (root, names[i], NULL);
      g_autofree char *vocab = g_build_filename (d, "vocab.json", NULL);
      if (g_file_test (vocab, G_FILE_TEST_IS_REGULAR))
        m->tokenizer_dir[i] = g_steal_pointer (&d);
    }
}

static gboolean
open_folder (SdModel *m, const char *dir, GError **error)
{
  m->format = SD_MODEL_FORMAT_DIFFUSERS;
  g_autofree char *index = g_build_filename (dir, "model_index.json", NULL);
  gboolean want[SD_N_COMPONENTS] = { FALSE };
  gboolean any = FALSE;
  if (g_file_test (index, G_FILE_TEST_IS_REGULAR))
    {
      m->model_index = load_json_file (index, error);
      if (m->model_index == NULL)
        return FALSE;
      JsonObject *o = json_node_get_object (m->model_index);
      GList *members = json_object_get_members (o);
      for (GList *l = members; l; l = l->next)
        {
          const char *k = l->data;
          JsonNode *v = json_object_get_member (o, k);
          if (k[0] == '_' || !JSON_NODE_HOLDS_ARRAY (v))
            continue;
          JsonArray *a = json_node_get_array (v);
          gboolean null_entry = json_array_get_length (a) < 2
                                || JSON_NODE_HOLDS_NULL (json_array_get_element (a, 1));
          int ci = sd_component_index (k);
          if (ci >= 0 && !null_entry)
            want[ci] = any = TRUE;
          else if (ci < 0 && !null_entry && strcmp (k, "scheduler") != 0 && strcmp (k, "tokenizer") != 0
                   && strcmp (k, "tokenizer_2") != 0)
            g_ptr_array_add (m->notes, g_strdup_printf ("model_index.json: %s is not used", k));
        }
      g_list_free (members);
      m->format_detail = g_strdup ("diffusers folder");
      m->root = g_strdup (dir);
    }
  else
    {
      for (int ci = 0; ci < SD_N_COMPONENTS; ci++)
        {
          g_autofree char *cd = g_build_filename (dir, sd_component_names[ci], NULL);
          if (g_file_test (cd, G_FILE_TEST_IS_DIR))
            want[ci] = any = TRUE;
        }
      if (any)
        {
          m->format_detail = g_strdup ("diffusers folder (without model_index.json)");
          m->root = g_strdup (dir);
        }
    }

  if (any)
    {
      for (int ci = 0; ci < SD_N_COMPONENTS; ci++)
        {
          if (!want[ci])
            continue;
          g_autofree char *cd = g_build_filename (dir, sd_component_names[ci], NULL);
          if (!g_file_test (cd, G_FILE_TEST_IS_DIR))
            {
              g_ptr_array_add (m->missing, g_strdup_printf ("%s/ (listed in model_index.json, absent)",
                                                            sd_component_names[ci]));
              continue;
            }
          if (!load_component_dir (m, ci, cd, error))
            return FALSE;
        }
    }
  else
    {
      /* A folder holding one component: its config's class says which, else
       * the folder's name. */
      int ci = component_from_config (dir);
      if (ci < 0)
        {
          g_autofree char *base = g_path_get_basename (dir);
          ci = sd_component_index (base);
        }
      if (ci < 0)
        {
          g_set_error (error, SD_ERROR, SD_ERROR_UNSUPPORTED,
                       "%s: neither a diffusers folder (model_index.json, unet/, vae/, text_encoder/...) "
                       "nor a component folder (config.json of a UNet2DConditionModel, AutoencoderKL or "
                       "CLIPTextModel)",
                       dir);
          return FALSE;
        }
      m->format_detail = g_strdup_printf ("diffusers component folder (%s)", sd_component_names[ci]);
      m->root = g_path_get_dirname (dir);
      if (!load_component_dir (m, ci, dir, error))
        return FALSE;
    }

  g_autofree char *sched = g_build_filename (m->root, "scheduler", "scheduler_config.json", NULL);
  if (g_file_test (sched, G_FILE_TEST_IS_REGULAR))
    {
      m->scheduler_config = load_json_file (sched, error);
      if (m->scheduler_config == NULL)
        return FALSE;
      m->scheduler_source = g_strdup ("scheduler/scheduler_config.json");
    }
  find_tokenizers (m, m->root);
  return TRUE;
}

/* ------------------------------------------------------------------ finish */

static gboolean
finish (SdModel *m, const SdOpenOptions *opt, GError **error)
{
  for (guint i = 0; i < m->tensors->len; i++)
    g_ptr_array_add (m->sorted_names, (gpointer) ((SdModelTensor *) g_ptr_array_index (m->tensors, i))->info.name);
  g_ptr_array_sort (m->sorted_names, natural_compare_ptr);

  if (m->tensors->len == 0)
    {
      GPtrArray *names = g_ptr_array_new ();
      for (guint f = 0; f < m->files->len; f++)
        {
          SdSafetensors *st = g_ptr_array_index (m->files, f);
          for (guint i = 0; i < sd_safetensors_get_n_tensors (st); i++)
            g_ptr_array_add (names, (gpointer) sd_safetensors_get_nth (st, i)->name);
        }
      set_unknown_layout_error (error, names, m->path ? m->path : "(memory)");
      g_ptr_array_unref (names);
      return FALSE;
    }
  if (!sd_model_detect (m, opt, error))
    {
      g_prefix_error (error, "%s: ", m->path ? m->path : "(memory)");
      return FALSE;
    }
  gboolean usable = FALSE;
  for (int i = 0; i < SD_N_COMPONENTS; i++)
    usable |= m->comp[i].detected;
  if (!usable)
    {
      GPtrArray *names = g_ptr_array_new ();
      for (guint i = 0; i < m->sorted_names->len; i++)
        g_ptr_array_add (names, g_ptr_array_index (m->sorted_names, i));
      set_unknown_layout_error (error, names, m->path ? m->path : "(memory)");
      g_ptr_array_unref (names);
      return FALSE;
    }
  return TRUE;
}

SdModel *
sd_model_new_from_safetensors (SdSafetensors *st, const SdOpenOptions *options, GError **error)
{
  g_return_val_if_fail (st != NULL, NULL);
  const char *path = sd_safetensors_get_path (st);
  SdModel *m = model_new (path, options);
  m->header_only = sd_safetensors_is_header_only (st);
  if (path)
    m->root = g_path_get_dirname (path);
  if (!add_single_file (m, st, NULL, error) || !finish (m, options, error))
    {
      sd_model_free (m);
      return NULL;
    }
  return m;
}

SdModel *
sd_model_open (const char *path, const SdOpenOptions *options, GError **error)
{
  g_return_val_if_fail (path != NULL, NULL);
  if (g_file_test (path, G_FILE_TEST_IS_DIR))
    {
      SdModel *m = model_new (path, options);
      if (!open_folder (m, path, error) || !finish (m, options, error))
        {
          sd_model_free (m);
          return NULL;
        }
      return m;
    }
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_IO, "%s: no such file or folder", path);
      return NULL;
    }
  if (is_pickle_name (path))
    {
      set_pickle_error (error, path, "this is a PyTorch pickle checkpoint (by its name)");
      return NULL;
    }
  /* Sniff the first bytes before interpreting anything. */
  FILE *f = fopen (path, "rb");
  if (f == NULL)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_IO, "%s: cannot open: %s", path, g_strerror (errno));
      return NULL;
    }
  guint8 head[8];
  gsize got = fread (head, 1, sizeof head, f);
  fclose (f);
  const char *what = sd_sniff_pickle (head, got);
  if (what)
    {
      g_autofree char *desc = g_strdup_printf ("this is %s, not a safetensors file", what);
      set_pickle_error (error, path, desc);
      return NULL;
    }
  SdModel *m = model_new (path, options);
  SdSafetensors *st = open_st (m, path, error);
  g_autofree char *dir = g_path_get_dirname (path);
  m->root = g_strdup (dir);
  if (st == NULL || !add_single_file (m, st, dir, error) || !load_sidecar (m, path, error)
      || !finish (m, options, error))
    {
      sd_model_free (m);
      return NULL;
    }
  /* Tokenizer files beside a single file (as some front ends keep them). */
  g_autofree char *vocab = g_build_filename (dir, "vocab.json", NULL);
  g_autofree char *merges = g_build_filename (dir, "merges.txt", NULL);
  if (g_file_test (vocab, G_FILE_TEST_IS_REGULAR) && g_file_test (merges, G_FILE_TEST_IS_REGULAR))
    m->tokenizer_dir[0] = g_strdup (dir);
  else
    find_tokenizers (m, dir);
  return m;
}

/* ---------------------------------------------------------------- access */

const SdModelConfig *
sd_model_get_config (SdModel *m)
{
  g_return_val_if_fail (m != NULL, NULL);
  return &m->config;
}

SdModelFormat
sd_model_get_format (SdModel *m)
{
  g_return_val_if_fail (m != NULL, SD_MODEL_FORMAT_SINGLE_FILE);
  return m->format;
}

const char *
sd_model_get_path (SdModel *m)
{
  g_return_val_if_fail (m != NULL, NULL);
  return m->path;
}

char *
sd_model_find_tokenizer_dir (SdModel *m, int index)
{
  g_return_val_if_fail (m != NULL && (index == 0 || index == 1), NULL);
  return g_strdup (m->tokenizer_dir[index]);
}

GPtrArray *
sd_model_list_tensors (SdModel *m)
{
  g_return_val_if_fail (m != NULL, NULL);
  return g_ptr_array_ref (m->sorted_names);
}

const SdTensorInfo *
sd_model_lookup (SdModel *m, const char *name)
{
  g_return_val_if_fail (m != NULL && name != NULL, NULL);
  const SdModelTensor *t = g_hash_table_lookup (m->by_name, name);
  return t ? &t->info : NULL;
}

gboolean
sd_model_has_component (SdModel *m, const char *component)
{
  g_return_val_if_fail (m != NULL, FALSE);
  int ci = sd_component_index (component);
  return ci >= 0 && m->comp[ci].present;
}

GPtrArray *
sd_model_get_unknown (SdModel *m)
{
  g_return_val_if_fail (m != NULL, NULL);
  return g_ptr_array_ref (m->unknown);
}

GPtrArray *
sd_model_get_missing (SdModel *m)
{
  g_return_val_if_fail (m != NULL, NULL);
  return g_ptr_array_ref (m->missing);
}

GPtrArray *
sd_model_get_misshaped (SdModel *m)
{
  g_return_val_if_fail (m != NULL, NULL);
  return g_ptr_array_ref (m->misshaped);
}

GPtrArray *
sd_model_get_ignored (SdModel *m)
{
  g_return_val_if_fail (m != NULL, NULL);
  return g_ptr_array_ref (m->ignored);
}

GPtrArray *
sd_model_get_notes (SdModel *m)
{
  g_return_val_if_fail (m != NULL, NULL);
  return g_ptr_array_ref (m->notes);
}

static gboolean
starts_with_component (const char *msg, const char *comp)
{
  gsize n = strlen (comp);
  return strncmp (msg, comp, n) == 0 && (msg[n] == '.' || msg[n] == '/' || msg[n] == ':' || msg[n] == ' ');
}

gboolean
sd_model_check_component (SdModel *m, const char *component, GError **error)
{
  g_return_val_if_fail (m != NULL, FALSE);
  int ci = sd_component_index (component);
  g_return_val_if_fail (ci >= 0, FALSE);
  if (!m->comp[ci].present)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_MISSING, "%s: the model has no %s", m->path ? m->path : "model",
                   component);
      return FALSE;
    }
  GString *s = g_string_new (NULL);
  guint n = 0;
  GPtrArray *lists[2] = { m->missing, m->misshaped };
  for (int l = 0; l < 2; l++)
    for (guint i = 0; i < lists[l]->len; i++)
      {
        const char *msg = g_ptr_array_index (lists[l], i);
        if (!starts_with_component (msg, component))
          continue;
        if (n < 8)
          g_string_append_printf (s, "%s%s%s", n ? "; " : "", l ? "mis-shaped " : "missing ", msg);
        n++;
      }
  if (n == 0 && !m->comp[ci].detected)
    {
      g_string_append (s, "its configuration could not be detected");
      n = 1;
    }
  if (n > 0)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_MISSING, "%s: %s is incomplete (%u problem%s): %s%s",
                   m->path ? m->path : "model", component, n, n == 1 ? "" : "s", s->str, n > 8 ? "; ..." : "");
      g_string_free (s, TRUE);
      return FALSE;
    }
  g_string_free (s, TRUE);
  return TRUE;
}

gint64
sd_model_count_params (SdModel *m, const char *component)
{
  g_return_val_if_fail (m != NULL, 0);
  int ci = sd_component_index (component);
  g_return_val_if_fail (component == NULL || ci >= 0, 0);
  /* Saturating: several header-only files may each claim up to 2^63 bytes. */
  guint64 n = 0;
  for (guint i = 0; i < m->tensors->len; i++)
    {
      const SdModelTensor *t = g_ptr_array_index (m->tensors, i);
      if ((component == NULL || t->component == ci) && sd_dtype_is_float (t->info.dtype)
          && (!g_uint64_checked_add (&n, n, (guint64) t->info.n_elements) || n > (guint64) G_MAXINT64))
        return G_MAXINT64;
    }
  return (gint64) n;
}

gint64
sd_model_weight_bytes (SdModel *m, const char *component, gsize element_size)
{
  g_return_val_if_fail (element_size > 0 && element_size <= 8, 0);
  gint64 n = sd_model_count_params (m, component);
  /* Real files cannot get near this, but a header-only model can claim
   * anything: saturate instead of overflowing. */
  guint64 bytes;
  if (!g_uint64_checked_mul (&bytes, (guint64) n, element_size) || bytes > (guint64) G_MAXINT64)
    return G_MAXINT64;
  return (gint64) bytes;
}

/* ------------------------------------------------------------------ reads */

static gboolean
read_tensor (SdModel *m, const char *name, gsize n, gboolean half, void *dst, GError **error)
{
  const SdModelTensor *t = g_hash_table_lookup (m->by_name, name);
  if (t == NULL)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_MISSING, "%s: no tensor %s", m->path ? m->path : "model", name);
      return FALSE;
    }
  if ((guint64) n != (guint64) t->info.n_elements)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "%s has %" G_GINT64_FORMAT " elements, the caller expected %" G_GSIZE_FORMAT, name,
                   t->info.n_elements, n);
      return FALSE;
    }
  const guint8 *src = sd_safetensors_get_data (t->file, t->src, error);
  if (src == NULL)
    return FALSE;
  gsize es = sd_dtype_size (t->info.dtype);
  gsize osz = half ? 2 : 4;
  switch (t->xform)
    {
    case SD_XFORM_SPLIT_QKV:
      src += (gsize) t->part * n * es; /* rows [part * R, (part + 1) * R) are contiguous */
      /* fall through */
    case SD_XFORM_NONE:
    case SD_XFORM_SQUEEZE_1X1:
      if (half)
        sd_convert_to_f16 (t->info.dtype, src, n, dst);
      else
        sd_convert_to_f32 (t->info.dtype, src, n, dst);
      return TRUE;
    case SD_XFORM_TRANSPOSE:
      {
        /* stored [R, C] -> exposed [C, R] */
        gsize R = (gsize) t->src->shape[0], C = (gsize) t->src->shape[1];
        guint8 *tmp = g_malloc (MAX (n, 1) * osz);
        if (half)
          sd_convert_to_f16 (t->info.dtype, src, n, (guint16 *) tmp);
        else
          sd_convert_to_f32 (t->info.dtype, src, n, (float *) tmp);
        guint8 *out = dst;
        for (gsize r = 0; r < R; r++)
          for (gsize c = 0; c < C; c++)
            memcpy (out + (c * R + r) * osz, tmp + (r * C + c) * osz, osz);
        g_free (tmp);
        return TRUE;
      }
    }
  return FALSE;
}

gboolean
sd_model_read_f32 (SdModel *m, const char *name, float *dst, gsize n_elements, GError **error)
{
  g_return_val_if_fail (m != NULL && name != NULL, FALSE);
  g_return_val_if_fail (dst != NULL || n_elements == 0, FALSE);
  return read_tensor (m, name, n_elements, FALSE, dst, error);
}

gboolean
sd_model_read_f16 (SdModel *m, const char *name, guint16 *dst, gsize n_elements, GError **error)
{
  g_return_val_if_fail (m != NULL && name != NULL, FALSE);
  g_return_val_if_fail (dst != NULL || n_elements == 0, FALSE);
  return read_tensor (m, name, n_elements, TRUE, dst, error);
}

/* ------------------------------------------------------------ shape tables */

gboolean
sd_model_is_shape_table (const char *path)
{
  if (!g_str_has_suffix (path, ".json") || !g_file_test (path, G_FILE_TEST_IS_REGULAR))
    return FALSE;
  g_autoptr (JsonParser) p = json_parser_new ();
  if (!json_parser_load_from_file (p, path, NULL))
    return FALSE;
  JsonNode *root = json_parser_get_root (p);
  return root && JSON_NODE_HOLDS_OBJECT (root)
         && json_object_has_member (json_node_get_object (root), "tensors");
}

static void
append_table (GString *h, JsonObject *tensors, guint64 *off, gboolean *first)
{
  GList *names = json_object_get_members (tensors);
  for (GList *l = names; l; l = l->next)
    {
      JsonNode *n = json_object_get_member (tensors, l->data);
      if (!JSON_NODE_HOLDS_OBJECT (n))
        continue;
      JsonObject *t = json_node_get_object (n);
      JsonNode *sn = json_object_get_member (t, "shape");
      if (!sn || !JSON_NODE_HOLDS_ARRAY (sn))
        continue;
      JsonArray *shape = json_node_get_array (sn);
      const char *dtype = json_object_has_member (t, "dtype") ? json_object_get_string_member (t, "dtype") : "F32";
      gsize es = strcmp (dtype, "I64") == 0 || strcmp (dtype, "F64") == 0 ? 8
                 : strcmp (dtype, "F16") == 0 || strcmp (dtype, "BF16") == 0 ? 2 : 4;
      guint64 n_el = 1;
      g_autoptr (JsonBuilder) unused = NULL;
      GString *dims = g_string_new (NULL);
      for (guint d = 0; d < json_array_get_length (shape); d++)
        {
          gint64 v = json_array_get_int_element (shape, d);
          n_el *= (guint64) MAX (v, 0);
          g_string_append_printf (dims, "%s%" G_GINT64_FORMAT, d ? "," : "", v);
        }
      g_autofree char *name = g_strescape (l->data, NULL);
      g_string_append_printf (h, "%s\"%s\":{\"dtype\":\"%s\",\"shape\":[%s],\"data_offsets\":[%" G_GUINT64_FORMAT
                              ",%" G_GUINT64_FORMAT "]}",
                              *first ? "" : ",", name, dtype, dims->str, *off, *off + n_el * es);
      g_string_free (dims, TRUE);
      *off += n_el * es;
      *first = FALSE;
    }
  g_list_free (names);
}

SdModel *
sd_model_open_shape_table (const char *path, const SdOpenOptions *options, GError **error)
{
  g_autoptr (JsonParser) p = json_parser_new ();
  if (!json_parser_load_from_file (p, path, error))
    {
      g_prefix_error (error, "%s: ", path);
      return NULL;
    }
  JsonNode *root = json_parser_get_root (p);
  JsonObject *o = root && JSON_NODE_HOLDS_OBJECT (root) ? json_node_get_object (root) : NULL;
  JsonNode *tn = o ? json_object_get_member (o, "tensors") : NULL;
  if (!tn || !JSON_NODE_HOLDS_OBJECT (tn))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_CORRUPT, "%s: not a shape table (no \"tensors\" object)", path);
      return NULL;
    }
  GString *h = g_string_new ("{");
  guint64 off = 0;
  gboolean first = TRUE;
  append_table (h, json_node_get_object (tn), &off, &first);
  JsonNode *en = json_object_get_member (o, "optional_extras");
  if (en && JSON_NODE_HOLDS_OBJECT (en))
    append_table (h, json_node_get_object (en), &off, &first);
  g_string_append_c (h, '}');
  while (h->len % 8)
    g_string_append_c (h, ' ');
  gsize hlen = h->len;
  guint8 *buf = g_malloc (8 + hlen);
  for (int i = 0; i < 8; i++)
    buf[i] = (guint8) (((guint64) hlen >> (8 * i)) & 0xff);
  memcpy (buf + 8, h->str, hlen);
  g_string_free (h, TRUE);
  SdSafetensors *st = sd_safetensors_new_from_header (buf, 8 + hlen, 8 + hlen + off, error);
  g_free (buf);
  if (!st)
    {
      g_prefix_error (error, "%s: ", path);
      return NULL;
    }
  SdOpenOptions ho = options ? *options : (SdOpenOptions) { 0 };
  ho.header_only = TRUE;
  SdModel *m = sd_model_new_from_safetensors (st, &ho, error);
  if (m)
    {
      g_free (m->path);
      m->path = g_strdup (path);
    }
  return m;
}
