/* imp-models.c: model folders and model probing for the plug-in. */
#include "config.h"

#include "imp-models.h"

#include <string.h>

#include "models.h"
#include "sd-error.h"
#include "sd-model.h"

#define CONFIG_GROUP "models"
#define CONFIG_KEY "folders"

void
imp_model_info_free (ImpModelInfo *m)
{
  if (!m)
    return;
  g_free (m->path);
  g_free (m->name);
  g_free (m->arch);
  g_free (m);
}

static char *
config_path (void)
{
  return g_build_filename (g_get_user_config_dir (), "impasto", "gimp-plugin.ini", NULL);
}

char **
imp_models_user_folders (void)
{
  g_autofree char *path = config_path ();
  g_autoptr (GKeyFile) kf = g_key_file_new ();
  if (!g_key_file_load_from_file (kf, path, G_KEY_FILE_KEEP_COMMENTS, NULL))
    return g_new0 (char *, 1);
  char **list = g_key_file_get_string_list (kf, CONFIG_GROUP, CONFIG_KEY, NULL, NULL);
  return list ? list : g_new0 (char *, 1);
}

gboolean
imp_models_add_user_folder (const char *folder, GError **error)
{
  g_autofree char *path = config_path ();
  g_autofree char *dir = g_path_get_dirname (path);
  g_autofree char *canon = g_canonicalize_filename (folder, NULL);
  g_autoptr (GKeyFile) kf = g_key_file_new ();

  g_key_file_load_from_file (kf, path, G_KEY_FILE_KEEP_COMMENTS, NULL);
  g_auto (GStrv) old = g_key_file_get_string_list (kf, CONFIG_GROUP, CONFIG_KEY, NULL, NULL);
  g_autoptr (GPtrArray) list = g_ptr_array_new ();
  for (int i = 0; old && old[i]; i++)
    {
      if (strcmp (old[i], canon) == 0)
        return TRUE;
      g_ptr_array_add (list, old[i]);
    }
  g_ptr_array_add (list, canon);
  g_key_file_set_string_list (kf, CONFIG_GROUP, CONFIG_KEY, (const char *const *) list->pdata,
                              list->len);
  if (g_mkdir_with_parents (dir, 0700) != 0)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_IO, "cannot create %s", dir);
      return FALSE;
    }
  if (!g_key_file_save_to_file (kf, path, error))
    return FALSE;
  /* visible to this process's lookups at once */
  const char *env = g_getenv ("IMPASTO_MODEL_PATH");
  g_autofree char *joined = env && *env ? g_strconcat (env, ":", canon, NULL) : g_strdup (canon);
  g_setenv ("IMPASTO_MODEL_PATH", joined, TRUE);
  return TRUE;
}

void
imp_models_setup_env (void)
{
  static gboolean done = FALSE;
  if (done)
    return;
  done = TRUE;
  g_auto (GStrv) folders = imp_models_user_folders ();
  if (!folders[0])
    return;
  const char *env = g_getenv ("IMPASTO_MODEL_PATH");
  g_autoptr (GString) s = g_string_new (env ? env : "");
  for (int i = 0; folders[i]; i++)
    {
      if (!*folders[i] || strchr (folders[i], ':'))
        continue; /* cannot be expressed in a colon-separated list */
      if (s->len)
        g_string_append_c (s, ':');
      g_string_append (s, folders[i]);
    }
  g_setenv ("IMPASTO_MODEL_PATH", s->str, TRUE);
}

static gboolean
fill_arch (ImpModelInfo *m, GError **error)
{
  SdOpenOptions opts = { 0 };
  opts.header_only = TRUE;
  g_autoptr (SdModel) model = sd_model_open (m->path, &opts, error);
  if (!model)
    return FALSE;
  const SdModelConfig *cfg = sd_model_get_config (model);
  if (cfg->arch == SD_ARCH_UNKNOWN || !sd_model_has_component (model, "unet"))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_UNSUPPORTED,
                   "not a Stable Diffusion model this version can run");
      return FALSE;
    }
  g_free (m->arch);
  m->arch
      = g_strdup_printf ("%s%s", sd_arch_name (cfg->arch), cfg->inpainting ? " inpainting" : "");
  m->native_size = cfg->native_resolution > 0 ? cfg->native_resolution : 512;
  m->multiple = 8;
  return TRUE;
}

static gint
info_cmp (gconstpointer a, gconstpointer b)
{
  const ImpModelInfo *x = *(ImpModelInfo *const *) a, *y = *(ImpModelInfo *const *) b;
  if (x->is_default != y->is_default)
    return x->is_default ? -1 : 1;
  int c = g_utf8_collate (x->name, y->name);
  return c ? c : g_strcmp0 (x->path, y->path);
}

GPtrArray *
imp_models_scan (void)
{
  GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) imp_model_info_free);
  g_autoptr (GPtrArray) list = imp_model_list ();
  g_autofree char *def = imp_default_model_path (NULL);

  for (guint i = 0; i < list->len; i++)
    {
      const ImpModelEntry *e = g_ptr_array_index (list, i);
      ImpModelInfo *m = g_new0 (ImpModelInfo, 1);
      m->path = g_strdup (e->path);
      m->name = g_strdup (e->name);
      m->arch = g_strdup ("?");
      m->is_default = def && strcmp (def, e->path) == 0;
      fill_arch (m, NULL);
      g_ptr_array_add (out, m);
    }
  g_ptr_array_sort (out, info_cmp);
  return out;
}

ImpModelInfo *
imp_model_probe (const char *spec, GError **error)
{
  g_autoptr (GError) e = NULL;
  g_autofree char *path = imp_model_resolve (spec, &e);
  if (!path)
    {
      if ((!spec || !*spec) && g_error_matches (e, SD_ERROR, SD_ERROR_MISSING))
        {
          /* the backend's message speaks of --model */
          g_autofree char *def
              = g_build_filename (IMPASTO_DATADIR, "models", "impasto-emoji", NULL);
          g_set_error (error, SD_ERROR, SD_ERROR_MISSING,
                       "the default model (impasto-emoji) is not installed (%s); choose a model "
                       "in the dialog, add a model folder, or give the model parameter",
                       def);
        }
      else
        g_propagate_error (error, g_steal_pointer (&e));
      return NULL;
    }
  g_autoptr (ImpModelInfo) m = g_new0 (ImpModelInfo, 1);
  m->path = g_steal_pointer (&path);
  m->name = imp_model_display_name (m->path);
  g_autofree char *def = imp_default_model_path (NULL);
  m->is_default = def && strcmp (def, m->path) == 0;
  if (!fill_arch (m, error))
    {
      g_prefix_error (error, "model %s: ", m->path);
      return NULL;
    }
  return g_steal_pointer (&m);
}
