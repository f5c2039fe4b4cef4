/* standalone.c: a main() for fuzz targets when no fuzzing engine is configured.
 * It replays every file of the corpus folders (or files) given as arguments
 * through LLVMFuzzerTestOneInput, each in a buffer of exactly its size so a
 * sanitizer sees any read past the end. Used by the `fuzz` test suite. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <glib.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);
__attribute__ ((weak)) int LLVMFuzzerInitialize (int *argc, char ***argv);

static gboolean
run_file (const char *path)
{
  gchar *contents = NULL;
  gsize len = 0;
  GError *error = NULL;
  if (!g_file_get_contents (path, &contents, &len, &error))
    {
      fprintf (stderr, "%s: %s\n", path, error->message);
      g_error_free (error);
      return FALSE;
    }
  uint8_t *exact = malloc (len ? len : 1);
  memcpy (exact, contents, len);
  g_free (contents);
  LLVMFuzzerTestOneInput (exact, len);
  free (exact);
  return TRUE;
}

static int
compare_names (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

int
main (int argc, char **argv)
{
  if (LLVMFuzzerInitialize)
    LLVMFuzzerInitialize (&argc, &argv);
  if (argc < 2)
    {
      fprintf (stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
      return 2;
    }
  guint n = 0;
  for (int i = 1; i < argc; i++)
    {
      if (!g_file_test (argv[i], G_FILE_TEST_IS_DIR))
        {
          if (!run_file (argv[i]))
            return 1;
          n++;
          continue;
        }
      GDir *dir = g_dir_open (argv[i], 0, NULL);
      if (dir == NULL)
        return 1;
      GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
      for (const char *e; (e = g_dir_read_name (dir));)
        if (e[0] != '.')
          g_ptr_array_add (names, g_strdup (e));
      g_dir_close (dir);
      qsort (names->pdata, names->len, sizeof (gpointer), compare_names);
      for (guint k = 0; k < names->len; k++)
        {
          char *path = g_build_filename (argv[i], g_ptr_array_index (names, k), NULL);
          if (g_file_test (path, G_FILE_TEST_IS_REGULAR))
            {
              if (!run_file (path))
                return 1;
              n++;
            }
          g_free (path);
        }
      g_ptr_array_unref (names);
    }
  printf ("replayed %u inputs\n", n);
  /* An empty corpus would make this test pass without testing anything. */
  return n > 0 ? 0 : 1;
}
