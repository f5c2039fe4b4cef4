/* serve-api.h: AUTOMATIC1111 API requests and responses <-> ImpJobParams.
 *
 * Pure CPU, no HTTP: `impasto serve` calls it for /sdapi/v1/txt2img and
 * /sdapi/v1/img2img, and tests/fuzz/fuzz-api-request.c fuzzes it. Field names
 * and semantics follow stable-diffusion-webui's API models
 * (StableDiffusionTxt2ImgProcessingAPI, StableDiffusionImg2ImgProcessingAPI):
 *
 *   prompt, negative_prompt, seed (-1 = random), steps, cfg_scale, width,
 *   height, sampler_name (or sampler_index), scheduler ("Karras"), batch_size,
 *   n_iter, clip_skip (also override_settings.CLIP_stop_at_last_layers),
 *   override_settings.sd_model_checkpoint, force_task_id;
 *   img2img: init_images (the first is used), denoising_strength, mask,
 *   mask_blur, inpainting_mask_invert, inpaint_full_res,
 *   inpaint_full_res_padding.
 *
 * Unknown fields are ignored, as A1111 does; null is the same as absent.
 * Integer fields take JSON integers (or floats with an integral value);
 * number fields take either; booleans take true/false or 0/1. Images are
 * base64 PNG, optionally as a data: URL. An init image whose size differs from
 * width x height is resized to it (A1111 resize mode "just resize").
 */
#pragma once

#include <json-glib/json-glib.h>

#include "job.h"

G_BEGIN_DECLS

#define IMP_API_ERROR (imp_api_error_quark ())
GQuark imp_api_error_quark (void);

/* Each code maps to one HTTP status (imp_api_error_status). */
typedef enum
{
  IMP_API_ERROR_MALFORMED,       /* 400: not JSON, not an object */
  IMP_API_ERROR_BAD_TYPE,        /* 422: a field of the wrong JSON type */
  IMP_API_ERROR_BAD_VALUE,       /* 422: a value out of range, sizes, ... */
  IMP_API_ERROR_BAD_IMAGE,       /* 400: bad base64, not a PNG, corrupt PNG */
  IMP_API_ERROR_TOO_LARGE,       /* 413: an image with too many pixels */
  IMP_API_ERROR_UNKNOWN_SAMPLER, /* 404 (A1111: "Sampler not found") */
  IMP_API_ERROR_UNKNOWN_MODEL,   /* 404 */
} ImpApiError;

guint imp_api_error_status (const GError *error);
/* A short name for the error class ("MalformedRequest", ...). */
const char *imp_api_error_name (const GError *error);

typedef struct
{
  ImpJobLimits job;
  guint64 max_image_pixels; /* per decoded init image / mask */
} ImpApiLimits;

/* Defaults for the server: 2048 px a side, 2048 x 2048 pixels, 150 steps,
 * batch 8, 16 images per request, images up to 4096 x 4096. */
void imp_api_limits_init (ImpApiLimits *l);

typedef struct
{
  ImpJobParams params; /* seed resolved when has_seed; else the caller picks one */
  gboolean has_seed;   /* FALSE for seed -1 / absent */
  gint64 request_seed; /* as given (-1 when random) */
  char *model;         /* override_settings.sd_model_checkpoint, or NULL */
  char *task_id;       /* force_task_id, or NULL */
  gboolean img2img;
} ImpApiRequest;

void imp_api_request_clear (ImpApiRequest *r);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (ImpApiRequest, imp_api_request_clear)

/* Parse and validate a request body (JSON). On failure *req is cleared and
 * the error is in IMP_API_ERROR. */
gboolean imp_api_parse_request (const char *body, gsize len, gboolean img2img,
                                const ImpApiLimits *limits, ImpApiRequest *req, GError **error);

/* Strict base64 (optionally a "data:...;base64," URL): only the base64
 * alphabet, whitespace ignored, correct padding. NULL with
 * IMP_API_ERROR_BAD_IMAGE otherwise. */
GBytes *imp_api_decode_base64 (const char *text, GError **error);

/* The A1111 response {images, parameters, info} for a finished job. */
JsonNode *imp_api_build_response (const ImpApiRequest *req, const ImpJobResult *result,
                                  gint64 job_timestamp);

/* {"error": name, "detail": detail} */
char *imp_api_error_json (const char *name, const char *detail, gsize *len);

G_END_DECLS
