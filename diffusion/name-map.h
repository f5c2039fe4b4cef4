/* name-map.h: stored tensor names -> the internal naming (internal to diffusion/).
 *
 * The internal naming is diffusers' (see sd-model.h). A map is built once per
 * source from data tables in name-map.c; block indices of the original (LDM)
 * UNet and VAE depend on the level and layer counts, which are counted from the
 * stored names before the map is built.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef enum
{
  SD_XFORM_NONE,
  SD_XFORM_SQUEEZE_1X1, /* a [O, I, 1, 1] conv weight exposed as the [O, I] linear weight */
  SD_XFORM_TRANSPOSE,   /* [R, C] exposed as [C, R] */
  SD_XFORM_SPLIT_QKV,   /* a packed [3R, ...] q/k/v tensor: part p is rows [pR, (p+1)R) */
} SdXform;

typedef enum
{
  SD_NAME_UNKNOWN,
  SD_NAME_IGNORED, /* a known non-weight extra (schedule buffers, EMA, position ids...) */
  SD_NAME_MAPPED,
} SdNameKind;

typedef struct
{
  SdNameKind kind;
  const char *component; /* "unet", "vae", "text_encoder", "text_encoder_2" (static) */
  char *names[3];        /* internal names, owned; 3 for SD_XFORM_SPLIT_QKV (q, k, v), else 1 */
  int n_names;
  SdXform xform;
  const char *reason; /* SD_NAME_IGNORED: why (static) */
  gboolean openclip;  /* came from open_clip names (text encoders) */
} SdNameResult;

typedef struct _SdNameMap SdNameMap;

SdNameMap *sd_name_map_new (void);
void sd_name_map_free (SdNameMap *map);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SdNameMap, sd_name_map_free)

/* Rules for an original single-file checkpoint (model.diffusion_model.*,
 * first_stage_model.*, cond_stage_model.*, conditioner.embedders.*), generated
 * from the names present. Fails (SD_ERROR_UNSUPPORTED) when a UNet or VAE under
 * a known prefix has a block layout that is not Stable Diffusion's.
 * *n_recognised: how many names fall under a known prefix. */
gboolean sd_name_map_add_single_file (SdNameMap *map, const char *const *names, guint n_names,
                                      guint *n_recognised, GError **error);
/* Rules for a diffusers component whose stored names carry stored_prefix ("" for
 * the files of a component folder). Includes the renames of old diffusers
 * versions (VAE attention query/key/value/proj_attn). */
void sd_name_map_add_diffusers (SdNameMap *map, const char *component, const char *stored_prefix);
/* Rules for an original-naming VAE whose names carry stored_prefix ("" for a
 * stand-alone VAE file such as vae-ft-mse-840000-ema-pruned.safetensors). */
gboolean sd_name_map_add_ldm_vae (SdNameMap *map, const char *stored_prefix, const char *const *names,
                                  guint n_names, GError **error);

/* What a file holding a single component without prefix is: "unet", "vae",
 * "text_encoder", "text_encoder_2" or NULL. *ldm_vae: the VAE uses original
 * names (encoder.down.N...). */
const char *sd_name_map_classify_bare (const char *const *names, guint n_names, gboolean *ldm_vae);

/* Map one stored name. Clear the result with sd_name_result_clear. */
void sd_name_map_apply (SdNameMap *map, const char *stored, SdNameResult *result);
void sd_name_result_clear (SdNameResult *result);

/* A known non-weight extra anywhere in a file (reason) or NULL. */
const char *sd_name_map_ignored_reason (const char *stored);

G_END_DECLS
