/* imp-run.h: one run of an Impasto procedure, GIMP-independent.
 *
 * The front end describes the image (ImpSource: sizes, selection bounds and
 * two read callbacks); imp_run() checks the options, finds the model, works
 * out the geometry (plugin/core), reads the pixels it needs, sends the job to
 * the backend, and returns the finished layer (ImpResult: position, pixels,
 * optional layer mask). It never touches the image: the front end applies the
 * result in one undo group, or on any error does nothing.
 *
 * What each procedure makes:
 *   generate: a layer of the image's size, or of the selection's bounds when
 *             use-selection and there is a selection; no mask.
 *   img2img:  a layer over the drawable, or over the selection's bounds within
 *             it (use-selection); with a selection its layer mask is the
 *             selection, so a non-rectangular selection is respected; the
 *             source's alpha is kept.
 *   inpaint:  a layer over the context box (the selection's bounds plus
 *             padding), opaque, whose layer mask is the grown and feathered
 *             selection (imp_inpaint_masks); every pixel where that mask is 0
 *             is left exactly as it was. Needs a selection.
 */
#pragma once

#include <gio/gio.h>

#include "imp-client.h"
#include "imp-core.h"
#include "imp-params.h"
#include "sd-image.h"

G_BEGIN_DECLS

typedef struct
{
  int image_width, image_height;
  ImpRect drawable;       /* the drawable's bounds in image coordinates */
  gboolean has_selection; /* a non-empty selection exists */
  ImpRect selection;      /* its bounds (image coordinates) */
  /* The drawable's pixels over image rectangle r as RGBA (transparent where
   * r leaves the drawable). */
  SdImage *(*read_pixels) (gpointer host, ImpRect r, GError **error);
  /* The selection's values over image rectangle r, [h][w] in [0, 1]. */
  float *(*read_selection) (gpointer host, ImpRect r, GError **error);
  gpointer host;
} ImpSource;

typedef struct
{
  ImpRect rect;                /* where the new layer goes (image coordinates) */
  SdImage *pixels;             /* owned: RGBA, rect size */
  float *mask;                 /* owned: the layer mask, [h][w] in [0, 1], or NULL */
  gint64 seed;                 /* the seed used */
  char *infotext;              /* owned: the AUTOMATIC1111 "parameters" text, or NULL */
  char *model_path;            /* owned */
  char *model_name;            /* owned */
  int work_width, work_height; /* the size the model worked at */
} ImpResult;

void imp_result_clear (ImpResult *r);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (ImpResult, imp_result_clear)

/* Run params->proc (see the file comment). A seed of -1 is replaced by a
 * random one (result->seed). Errors: SD_ERROR_INVALID_ARG (options, no
 * selection for inpaint, a selection that misses the drawable),
 * SD_ERROR_MISSING (model or backend not found), SD_ERROR_CANCELLED, and the
 * backend's failures as SD_ERROR_FAILED. */
gboolean imp_run (ImpClient *client, const ImpParams *params, const ImpSource *src,
                  ImpProgressFn progress, gpointer progress_data, GCancellable *cancellable,
                  ImpResult *result, GError **error);

/* The "impasto-job" parasite text: the options with the seed used (so
 * imp_params_from_text on it reproduces the result), then a [result] group:
 * x, y, width, height, work-width, work-height, model-path, and the
 * AUTOMATIC1111 parameters text as "parameters". */
char *imp_result_job_text (const ImpParams *params, const ImpResult *result);

/* The request body imp_run sends (exposed for the tests). */
JsonNode *imp_run_build_request (const ImpParams *params, const char *model_path, gint64 seed,
                                 int width, int height, const SdImage *init, const float *mask,
                                 GError **error);

G_END_DECLS
