/* job.h: one generation job, from validated parameters to PNG files' bytes.
 *
 * This is THE path shared by the command line (impasto generate / img2img /
 * inpaint) and the server (impasto serve): both fill an ImpJobParams, validate
 * it with imp_job_params_validate() and call imp_job_run(), which builds the
 * SdJob, runs the pipeline, composites masked results and encodes each image
 * as a PNG with the AUTOMATIC1111 "parameters" text chunk. The same
 * parameters and seed therefore give byte-identical PNGs from both.
 *
 * Inpainting (a mask is given), as AUTOMATIC1111's img2img does it:
 *   1. the mask (1 = repaint) is inverted if asked, then blurred by a
 *      gaussian with sigma = mask_blur px (A1111's mask_blur);
 *   2. without full_res the whole image (resized to width x height when
 *      resize_init and its size differs) is processed; with full_res the
 *      bounding box of the blurred mask, grown by full_res_padding px and
 *      then widened to the width:height aspect ratio, is cut out, scaled to
 *      width x height, processed, and scaled back;
 *   3. the model sees the blurred mask (binarised at 0.5 by the pipeline);
 *   4. the result is blended back over the input through the blurred mask, so
 *      every pixel where it is 0 is exactly the input's.
 * The images returned are the composited full images.
 */
#pragma once

#include <glib.h>

#include "sd-image.h"
#include "sd-pipeline.h"

G_BEGIN_DECLS

typedef struct
{
  SdMode mode;       /* TXT2IMG, IMG2IMG, or INPAINT (mask required) */
  char *prompt;      /* owned; NULL = "" */
  char *negative;    /* owned; NULL = none */
  int width, height; /* processing size, multiples of 8 */
  int steps;
  double cfg_scale;
  SdSamplerKind sampler;
  gboolean karras;  /* Karras sigmas (A1111 "Schedule type: Karras") */
  guint64 seed;     /* image k of the job gets seed + k */
  int batch;        /* images per pipeline run */
  int n_iter;       /* pipeline runs (A1111 n_iter) */
  int clip_skip;    /* 0/1 = the model's default */
  double strength;  /* img2img / inpaint: (0, 1] */
  gboolean no_fp16; /* recorded only; the pipeline decides at load */
  SdImage *init;    /* owned, RGB; img2img / inpaint */
  float *mask;      /* owned, [init->height][init->width] in [0, 1], 1 = repaint */
  int mask_blur;    /* px (gaussian sigma), >= 0 */
  gboolean mask_invert;
  gboolean full_res;    /* A1111 inpaint_full_res ("only masked") */
  /* Inpaint: return the decoded image as the model made it, without pasting
   * the original back outside the mask (the GIMP plug-in composites itself
   * through a layer mask, and its colour match needs the generated ring).
   * API field "impasto_uncomposited". */
  gboolean uncomposited;
  int full_res_padding; /* px */
  /* When the init image's size differs from width x height: TRUE = resize it
   * (and the mask) with Lanczos-3 (A1111 "just resize", the server); FALSE =
   * a validation error (the CLI). */
  gboolean resize_init;
  /* What the user left to the model (IMP_UNSET_*): filled by imp_job_run from
   * sd_pipeline_get_defaults (a Turbo model gets 4 steps without guidance, an
   * SDXL one 1024 px, ...); until then the fields hold A1111's defaults. */
  guint unset;
  SdTimestepSpacing spacing; /* the model's (Turbo: trailing); SD_SPACING_CONFIG by default */
} ImpJobParams;

enum
{
  IMP_UNSET_SIZE = 1 << 0,
  IMP_UNSET_STEPS = 1 << 1,
  IMP_UNSET_CFG = 1 << 2,
  IMP_UNSET_SAMPLER = 1 << 3,
};

/* Defaults: txt2img, 512x512, 20 steps, CFG 7, Euler a, seed 0, batch 1,
 * n_iter 1, strength 0.75, mask_blur 4, padding 32 (A1111's defaults). */
void imp_job_params_init (ImpJobParams *p);
void imp_job_params_clear (ImpJobParams *p);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (ImpJobParams, imp_job_params_clear)

typedef struct
{
  int max_side;       /* width and height <= this */
  guint64 max_pixels; /* width * height <= this */
  int max_steps;
  int max_batch;  /* batch <= this */
  int max_images; /* batch * n_iter <= this */
} ImpJobLimits;

/* The engine's own limits (sd-pipeline.c check_job): 4096 px a side,
 * 4096 x 4096 pixels, 1000 steps, batch 64, 64 images. */
void imp_job_limits_init (ImpJobLimits *l);

/* Check every parameter against `limits` (NULL: imp_job_limits_init) before
 * anything is loaded: sizes positive multiples of 8, steps >= 1, CFG in
 * [0, 100], strength in (0, 1] and leaving at least one step, batch >= 1,
 * the init image and mask present for the mode, the mask the init image's
 * size, the init image width x height unless resize_init / full_res, mask_blur
 * and padding in 0..256. SD_ERROR_INVALID_ARG with a message naming the
 * parameter. */
gboolean imp_job_params_validate (const ImpJobParams *p, const ImpJobLimits *limits,
                                  GError **error);

/* A mask from a PNG loaded with channels 0 (its own layout): an image with
 * an alpha channel that is not fully opaque gives its alpha (opaque =
 * repaint); otherwise the luminance (white = repaint). [h][w] in [0, 1]. */
float *imp_mask_from_image (const SdImage *img);

/* The image size rounded down to a multiple of `multiple`; TRUE when it
 * changed. */
gboolean imp_round_size (int width, int height, int multiple, int *out_w, int *out_h);

typedef struct
{
  int iteration; /* 0-based pipeline run */
  int n_iter;
  int step;             /* steps done in this run (1..total) */
  int total;            /* steps this run does (img2img: fewer than params.steps) */
  double fraction;      /* of the whole job, 0..1 */
  const float *latents; /* [batch, 4, height / 8, width / 8], borrowed */
} ImpJobProgress;

/* Return FALSE to cancel (the job then fails with SD_ERROR_CANCELLED). Called
 * on the thread running the job. */
typedef gboolean (*ImpJobProgressFn) (gpointer data, const ImpJobProgress *progress);

/* Fill what params->unset marks from the model's defaults, and take its
 * timestep spacing. Returns what the defaults are for (a static string) when
 * any unset field was filled, else NULL. */
const char *imp_job_apply_defaults (SdPipeline *pipeline, ImpJobParams *params);

typedef struct
{
  GPtrArray *png;       /* GBytes *, one PNG per image, in seed order */
  GPtrArray *infotexts; /* char *, the "parameters" text of each image */
  GArray *seeds;        /* guint64 per image */
  int width, height;    /* of the returned images */
  char *model_name;
  char *notes;          /* the pipeline's notes, or NULL */
  const char *defaults; /* imp_job_apply_defaults' description, or NULL */
} ImpJobResult;

void imp_job_result_clear (ImpJobResult *r);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (ImpJobResult, imp_job_result_clear)

/* Run a job on `pipeline` (see the file comment): the model's defaults are
 * applied to the unset fields (so `params` then holds what ran), the result
 * validated, run, composited and encoded. The parameters text carries the
 * model name from imp_model_display_name (model_path). Errors:
 * SD_ERROR_INVALID_ARG for parameters the model's defaults made invalid, and
 * the pipeline's (SD_ERROR_CANCELLED when progress returned FALSE;
 * IVK_ERROR_OUT_OF_MEMORY / SD_ERROR_OUT_OF_MEMORY when memory ran out). */
gboolean imp_job_run (SdPipeline *pipeline, const char *model_path, ImpJobParams *params,
                      ImpJobProgressFn progress, gpointer progress_data, ImpJobResult *result,
                      GError **error);

/* The A1111 parameters of image k of a job (also what imp_job_run writes). */
char *imp_job_infotext (const ImpJobParams *p, const char *model_name, guint64 seed);

/* Under AddressSanitizer only (a no-op otherwise): keep every library loaded
 * so far mapped until exit. Call after creating the Vulkan context: the loader
 * dlclose()s the driver with the last instance, and the driver's one-time
 * allocations then look leaked from an unnamed module no suppression can
 * match (tests/lsan.supp; tests/test-ops.c does the same). */
void imp_pin_loaded_libraries (void);

G_END_DECLS
