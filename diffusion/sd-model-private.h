/* sd-model-private.h: SdModel internals shared by sd-model.c, model-detect.c
 * and model-describe.c. */
#pragma once

#include <json-glib/json-glib.h>

#include "name-map.h"
#include "safetensors.h"
#include "sd-model.h"

G_BEGIN_DECLS

enum
{
  SD_COMP_UNET,
  SD_COMP_VAE,
  SD_COMP_TEXT_ENCODER,
  SD_COMP_TEXT_ENCODER_2,
  SD_N_COMPONENTS
};

extern const char *const sd_component_names[SD_N_COMPONENTS];
int sd_component_index (const char *name); /* -1 if not a component */

typedef struct
{
  SdTensorInfo info;  /* info.name in model->strings; exposed shape */
  SdSafetensors *file; /* borrowed from model->files */
  const SdSafetensorsTensor *src;
  SdXform xform;
  int part;           /* SD_XFORM_SPLIT_QKV: 0 q, 1 k, 2 v */
  int component;      /* SD_COMP_* */
} SdModelTensor;

typedef struct
{
  gboolean present;    /* holds tensors */
  gboolean detected;   /* its configuration could be read from the weights */
  gboolean openclip;   /* text encoders: stored with open_clip names */
  char *dir;           /* diffusers component folder or NULL (owned) */
  JsonNode *config;    /* config.json (or an option's JSON) or NULL (owned) */
  char *config_source; /* where config came from, for notes (owned) */
} SdComponent;

struct _SdModel
{
  char *path;
  SdModelFormat format;
  char *format_detail; /* owned, e.g. "single file, original (ldm/sgm) naming" */
  gboolean header_only;
  GPtrArray *files;   /* SdSafetensors*, owned */
  GPtrArray *tensors; /* SdModelTensor*, owned */
  GHashTable *by_name; /* internal name -> SdModelTensor* */
  GPtrArray *sorted_names; /* const char*, borrowed */
  GStringChunk *strings;
  GPtrArray *unknown, *missing, *misshaped, *ignored, *notes; /* char*, owned */
  SdComponent comp[SD_N_COMPONENTS];
  SdModelConfig config;
  char *root;          /* diffusers root or the folder of the file (owned) */
  char *tokenizer_dir[2];
  JsonNode *model_index;      /* owned or NULL */
  JsonNode *scheduler_config; /* owned or NULL */
  char *scheduler_source;
  char *prediction_source; /* owned, e.g. "scheduler/scheduler_config.json" */
};

/* model-detect.c: fill model->config from the tensors, configs and options, then
 * compare the tensors with those the detected architecture needs (missing /
 * mis-shaped / unknown lists). Fails only for layouts that cannot be a Stable
 * Diffusion model at all. */
gboolean sd_model_detect (SdModel *model, const SdOpenOptions *options, GError **error);

/* Small helpers. */
const SdModelTensor *sd_model_find (SdModel *model, const char *fmt, ...) G_GNUC_PRINTF (2, 3);
char *sd_format_shape (const gint64 *shape, int ndim);

G_END_DECLS
