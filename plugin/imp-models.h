/* imp-models.h: the models the plug-in offers, and what it needs to know about
 * one before sending a job (its path and native resolution).
 *
 * The model folders are the backend's (backend/models.h:
 * $XDG_DATA_HOME/impasto/models, then $IMPASTO_MODEL_PATH) plus the folders
 * the user added in the dialog (e.g. an AUTOMATIC1111 models/Stable-diffusion
 * or ComfyUI models/checkpoints folder), kept in
 * $XDG_CONFIG_HOME/impasto/gimp-plugin.ini, [models] folders=a;b.
 * imp_models_setup_env() appends the added folders to IMPASTO_MODEL_PATH in
 * this process, so the backend's lookup and a backend this process starts
 * see them too. Jobs always name the model by its absolute path.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct
{
  char *path;      /* owned: absolute, canonical */
  char *name;      /* owned: display name */
  char *arch;      /* owned: "SD1", "SD1 inpainting", "SDXL", ...; "?" when unreadable */
  int native_size; /* 512, 768, 1024; 0 when unreadable */
  /* What the working sides are multiples of: 8, the VAE's factor (the
   * engine takes any multiple of 8, as diffusers does: its UNet upsamplers
   * go to the size of the skip they meet). */
  int multiple;
  gboolean is_default; /* the bundled default model */
} ImpModelInfo;

void imp_model_info_free (ImpModelInfo *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (ImpModelInfo, imp_model_info_free)

/* The folders the user added (NULL-terminated, g_strfreev). */
char **imp_models_user_folders (void);
/* Add a folder (canonicalised; duplicates ignored) and save the list. */
gboolean imp_models_add_user_folder (const char *folder, GError **error);
/* Append the user folders to IMPASTO_MODEL_PATH in this process (once). */
void imp_models_setup_env (void);
/* Every model of the model folders with its architecture (headers only),
 * sorted by name, the default model first; never fails. */
GPtrArray *imp_models_scan (void); /* of ImpModelInfo */

/* Resolve spec ("" = the default model, a name, or a path) and read its
 * header: SD_ERROR_MISSING when it cannot be found, the loader's error
 * (SD_ERROR_CORRUPT, SD_ERROR_UNSUPPORTED...) prefixed with the model's path
 * when it is not a usable Stable Diffusion model. */
ImpModelInfo *imp_model_probe (const char *spec, GError **error);

G_END_DECLS
