/* models.h: where models are found, shared by the CLI and `impasto serve`.
 *
 * A model is named on the command line or in a request either by a path (a
 * .safetensors file or a diffusers folder) or by a name looked up in the
 * model folders, in this order:
 *   1. $XDG_DATA_HOME/impasto/models (~/.local/share/impasto/models),
 *   2. each folder of $IMPASTO_MODEL_PATH (colon-separated).
 * In a folder D a name N matches, first hit wins: D/N (a file or a diffusers
 * folder), D/N.safetensors, D/N/N.safetensors, D/N/N.fp16.safetensors.
 * AUTOMATIC1111 titles ("name.safetensors [hash]") are accepted: a trailing
 * " [...]" is dropped.
 *
 * With no model given, the bundled default is used: the installed
 * IMPASTO_DATADIR/models/impasto-emoji/impasto-emoji.fp16.safetensors, else the
 * same file in the source tree (IMPASTO_SOURCE_DIR/data/models/impasto-emoji/),
 * else that folder itself when it is a diffusers folder.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The model folders in search order (NULL-terminated; free with g_strfreev).
 * Folders that do not exist are included (they are simply empty). */
char **imp_model_dirs (void);

/* The bundled default model's path, or NULL with SD_ERROR_MISSING naming
 * every place that was tried. */
char *imp_default_model_path (GError **error);

/* Resolve a --model / sd_model_checkpoint value: NULL or "" is the default;
 * an existing path (or anything containing '/') is taken as a path; otherwise
 * a name looked up in imp_model_dirs(). Errors: SD_ERROR_MISSING with the
 * places searched. The result is an absolute, canonical path. */
char *imp_model_resolve (const char *spec, GError **error);

/* The name a model is shown under ("Model:" in the parameters text,
 * sd_model_checkpoint): the file name without .safetensors (and .fp16), or
 * for a diffusers folder its name (the parent's name when the folder is
 * literally called "diffusers"). */
char *imp_model_display_name (const char *path);

typedef struct
{
  char *name;  /* display name */
  char *title; /* A1111 title: "file.safetensors" or the folder name */
  char *path;  /* absolute path */
} ImpModelEntry;

void imp_model_entry_free (ImpModelEntry *e);

/* Every model in the model folders (*.safetensors files and diffusers
 * folders holding model_index.json, at the top level of each folder and one
 * level down), plus the default model when it exists; sorted by name,
 * duplicates (same path) removed. Never fails: unreadable folders are skipped. */
GPtrArray *imp_model_list (void); /* of ImpModelEntry */

G_END_DECLS
