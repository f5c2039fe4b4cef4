/* models.c: model folders, the default model, names -> paths (see models.h). */
#include "config.h"

#include <string.h>

#include "models.h"
#include "sd-error.h"

#define DEFAULT_MODEL_DIR "impasto-emoji"
#define DEFAULT_MODEL_FILE "impasto-emoji.fp16.safetensors"

char **
imp_model_dirs (void)
{
  GPtrArray *dirs = g_ptr_array_new ();
  g_ptr_array_add (dirs, g_build_filename (g_get_user_data_dir (), "impasto", "models", NULL));
  const char *env = g_getenv ("IMPASTO_MODEL_PATH");
  if (env && *env)
    {
      g_auto (GStrv) parts = g_strsplit (env, ":", -1);
      for (int i = 0; parts[i]; i++)
        if (*parts[i])
          g_ptr_array_add (dirs, g_strdup (parts[i]));
    }
  g_ptr_array_add (dirs, NULL);
  return (char **) g_ptr_array_free (dirs, FALSE);
}

static gboolean
is_diffusers_dir (const char *path)
{
  g_autofree char *index = g_build_filename (path, "model_index.json", NULL);
  return g_file_test (index, G_FILE_TEST_IS_REGULAR);
}

static char *
canonical (const char *path)
{
  return g_canonicalize_filename (path, NULL);
}

char *
imp_default_model_path (GError **error)
{
  const char *roots[] = { IMPASTO_DATADIR "/models", IMPASTO_SOURCE_DIR "/data/models" };
  g_autoptr (GString) tried = g_string_new (NULL);
  for (guint i = 0; i < G_N_ELEMENTS (roots); i++)
    {
      g_autofree char *dir = g_build_filename (roots[i], DEFAULT_MODEL_DIR, NULL);
      g_autofree char *file = g_build_filename (dir, DEFAULT_MODEL_FILE, NULL);
      if (g_file_test (file, G_FILE_TEST_IS_REGULAR))
        return canonical (file);
      if (is_diffusers_dir (dir))
        return canonical (dir);
      g_string_append_printf (tried, "%s%s", tried->len ? ", " : "", file);
    }
  g_set_error (error, SD_ERROR, SD_ERROR_MISSING,
               "the bundled model is not installed (looked for %s); give one with --model PATH "
               "or NAME",
               tried->str);
  return NULL;
}

/* "name.safetensors [abcdef0123]" -> "name.safetensors" */
static char *
strip_a1111_hash (const char *spec)
{
  char *s = g_strstrip (g_strdup (spec));
  gsize n = strlen (s);
  if (n > 2 && s[n - 1] == ']')
    {
      char *open = strrchr (s, '[');
      if (open && open > s && open[-1] == ' ')
        {
          open[-1] = '\0';
          g_strchomp (s);
        }
    }
  return s;
}

static char *
lookup_in_dir (const char *dir, const char *name)
{
  g_autofree char *base = g_path_get_basename (name);
  char *candidates[] = {
    g_build_filename (dir, name, NULL),
    g_strdup_printf ("%s/%s.safetensors", dir, name),
    g_strdup_printf ("%s/%s/%s.safetensors", dir, name, base),
    g_strdup_printf ("%s/%s/%s.fp16.safetensors", dir, name, base),
  };
  char *found = NULL;
  for (guint i = 0; i < G_N_ELEMENTS (candidates); i++)
    {
      if (!found
          && (g_file_test (candidates[i], G_FILE_TEST_IS_REGULAR)
              || (g_file_test (candidates[i], G_FILE_TEST_IS_DIR)
                  && is_diffusers_dir (candidates[i]))))
        found = canonical (candidates[i]);
      g_free (candidates[i]);
    }
  return found;
}

char *
imp_model_resolve (const char *spec, GError **error)
{
  if (spec == NULL || *spec == '\0')
    return imp_default_model_path (error);
  g_autofree char *s = strip_a1111_hash (spec);
  if (*s == '\0')
    return imp_default_model_path (error);
  if (g_file_test (s, G_FILE_TEST_EXISTS))
    return canonical (s);
  if (strchr (s, '/'))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_MISSING, "model %s: no such file or folder", s);
      return NULL;
    }
  /* a name: also accept it as the default model's name */
  g_auto (GStrv) dirs = imp_model_dirs ();
  for (int i = 0; dirs[i]; i++)
    {
      char *found = lookup_in_dir (dirs[i], s);
      if (found)
        return found;
    }
  g_autofree char *def = imp_default_model_path (NULL);
  if (def)
    {
      g_autofree char *def_name = imp_model_display_name (def);
      g_autofree char *def_base = g_path_get_basename (def);
      if (strcmp (s, def_name) == 0 || strcmp (s, def_base) == 0
          || strcmp (s, DEFAULT_MODEL_DIR) == 0)
        return g_steal_pointer (&def);
    }
  g_autofree char *joined = g_strjoinv (", ", dirs);
  g_set_error (error, SD_ERROR, SD_ERROR_MISSING,
               "model '%s' not found in the model folders (%s; more with IMPASTO_MODEL_PATH) "
               "and it is not a path",
               s, joined);
  return NULL;
}

char *
imp_model_display_name (const char *path)
{
  g_autofree char *c = canonical (path);
  g_autofree char *base = g_path_get_basename (c);
  if (g_file_test (c, G_FILE_TEST_IS_DIR))
    {
      if (strcmp (base, "diffusers") == 0)
        {
          g_autofree char *parent = g_path_get_dirname (c);
          return g_path_get_basename (parent);
        }
      return g_steal_pointer (&base);
    }
  const char *exts[] = { ".fp16.safetensors", ".safetensors" };
  for (guint i = 0; i < G_N_ELEMENTS (exts); i++)
    if (g_str_has_suffix (base, exts[i]) && strlen (base) > strlen (exts[i]))
      {
        base[strlen (base) - strlen (exts[i])] = '\0';
        break;
      }
  return g_steal_pointer (&base);
}

void
imp_model_entry_free (ImpModelEntry *e)
{
  if (!e)
    return;
  g_free (e->name);
  g_free (e->title);
  g_free (e->path);
  g_free (e);
}

static void
add_entry (GPtrArray *out, GHashTable *seen, const char *path)
{
  g_autofree char *c = canonical (path);
  if (g_hash_table_contains (seen, c))
    return;
  ImpModelEntry *e = g_new0 (ImpModelEntry, 1);
  e->name = imp_model_display_name (c);
  e->title = g_file_test (c, G_FILE_TEST_IS_DIR) ? g_strdup (e->name) : g_path_get_basename (c);
  e->path = g_strdup (c);
  g_hash_table_add (seen, g_steal_pointer (&c));
  g_ptr_array_add (out, e);
}

static void
scan_dir (GPtrArray *out, GHashTable *seen, const char *dir, int depth)
{
  g_autoptr (GDir) d = g_dir_open (dir, 0, NULL);
  if (!d)
    return;
  const char *name;
  while ((name = g_dir_read_name (d)))
    {
      if (name[0] == '.')
        continue;
      g_autofree char *path = g_build_filename (dir, name, NULL);
      if (g_str_has_suffix (name, ".safetensors") && g_file_test (path, G_FILE_TEST_IS_REGULAR))
        add_entry (out, seen, path);
      else if (g_file_test (path, G_FILE_TEST_IS_DIR))
        {
          if (is_diffusers_dir (path))
            add_entry (out, seen, path);
          else if (depth > 0)
            scan_dir (out, seen, path, depth - 1);
        }
    }
}

static gint
entry_cmp (gconstpointer a, gconstpointer b)
{
  const ImpModelEntry *x = *(ImpModelEntry *const *) a, *y = *(ImpModelEntry *const *) b;
  int c = g_strcmp0 (x->name, y->name);
  return c ? c : g_strcmp0 (x->path, y->path);
}

GPtrArray *
imp_model_list (void)
{
  GPtrArray *out = g_ptr_array_new_with_free_func ((GDestroyNotify) imp_model_entry_free);
  g_autoptr (GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autofree char *def = imp_default_model_path (NULL);
  if (def)
    add_entry (out, seen, def);
  g_auto (GStrv) dirs = imp_model_dirs ();
  for (int i = 0; dirs[i]; i++)
    scan_dir (out, seen, dirs[i], 1);
  g_ptr_array_sort (out, entry_cmp);
  return out;
}
