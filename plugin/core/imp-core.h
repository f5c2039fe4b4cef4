/* imp-core.h: the GIMP-independent logic of the Impasto plug-in: where to
 * inpaint, at what size, with which masks, and how the result goes back.
 *
 * Coordinates are image pixels, x right and y down; a rectangle is (x, y,
 * width, height) and holds the pixels x <= px < x + width. Masks are float
 * planes [height][width] in [0, 1] (1 = selected / repaint), row-major with no
 * padding. Nothing here links libgimp; the GIMP front ends read the pixels and
 * the selection, call these functions, and write the results.
 *
 * The inpaint flow ("Inpaint Selection"):
 *   1. imp_inpaint_plan(): the selection bounds -> the context box (the part
 *      of the image the model sees) and the working size (what the model
 *      generates);
 *   2. the front end reads the box's pixels and selection values;
 *   3. imp_inpaint_prepare(): model mask (grown, binary), layer mask (grown,
 *      feathered), and the box scaled to the working size;
 *   4. the backend inpaints work_image with work_mask;
 *   5. imp_inpaint_finish(): the result scaled back to the box and colour
 *      matched; it becomes a new layer at the box position with layer_mask as
 *      its layer mask (or is blended with imp_blend() outside GIMP).
 * Pixels where layer_mask is 0 are left exactly as they were.
 */
#pragma once

#include <glib.h>
#include "sd-image.h"

G_BEGIN_DECLS

typedef struct
{
  int x, y;
  int width, height;
} ImpRect;

/* TRUE when the rectangle holds no pixel. */
gboolean imp_rect_is_empty (ImpRect r);
/* The common part of a and b (width/height 0 when they do not meet). */
ImpRect imp_rect_intersect (ImpRect a, ImpRect b);

/* ---- inpaint geometry ---------------------------------------------------------- */

typedef struct
{
  /* Context around the selection on every side, as a fraction of the
   * selection's larger side (0.25 = 25 %), and at least min_padding px. */
  double padding;
  int min_padding;
  /* The model's native resolution (512 SD 1.x, 768 SD 2.x, 1024 SDXL) and
   * the multiple the working sides must have (8 for the VAE; 64 when asked,
   * e.g. for SDXL's best-behaved sizes). */
  int native_size;
  int multiple;
  /* Grow the selection by this many px before inpainting (>= 0). */
  int grow;
  /* The layer mask's soft edge: GIMP's Select > Feather radius in px (a
   * gaussian with sigma = feather / 3.5, as gimp_gegl_apply_feather). */
  double feather;
} ImpInpaintOptions;

/* The largest feather radius (px); larger values are clamped to it. */
#define IMP_FEATHER_MAX 4096.0

/* Defaults: padding 0.25, min_padding 32, multiple 8, grow 0, feather 0 (so
 * by default the layer mask is exactly the selection and nothing outside the
 * selection changes). */
void imp_inpaint_options_init (ImpInpaintOptions *o, int native_size);

/* How far (px) a feather of this radius reaches beyond the edge: the gaussian
 * kernel radius ceil(3 sigma), 0 for radius <= 0. */
int imp_feather_reach (double feather);

/* The context box: the selection's bounds grown on every side by
 *   pad = max(min_padding, ceil(padding * max(sel.width, sel.height)))
 *         + grow + imp_feather_reach(feather)
 * (so the whole grown and feathered mask lies inside the box, with context
 * around it), then clipped to the image. The box is not shifted away from
 * the image border: a selection touching the border keeps the context it
 * has. An empty selection gives the whole image. */
ImpRect imp_context_box (const ImpInpaintOptions *o, ImpRect selection, int image_width,
                         int image_height);

/* The size the model works at for a width x height region: scaled by
 * s = native / sqrt(width * height), so the area is about native^2 - large
 * regions are reduced to it and small ones enlarged to it (SD makes poor
 * images far below its native size, and larger ones cost quadratically and
 * repeat content) - with the aspect ratio kept. Each side is then a multiple
 * of `multiple`, choosing among the nearby multiples the pair that best
 * keeps the aspect ratio and the area (minimising 2 |ln aspect error| +
 * |ln area error|), and at least `multiple`. A side that would exceed
 * 4 x native (very elongated regions) is capped there, the other side scaled
 * to keep the aspect. */
void imp_working_size (int width, int height, int native_size, int multiple, int *work_width,
                       int *work_height);

typedef struct
{
  ImpRect selection; /* selection bounds, clipped to the image */
  ImpRect box;       /* context box (image coordinates) */
  int work_width;    /* model input size for the box */
  int work_height;
} ImpInpaintPlan;

/* Plan an inpaint of `selection` (its bounds, image coordinates) in an
 * image_width x image_height image. SD_ERROR_INVALID_ARG when the selection
 * does not meet the image or an option is out of range: native_size
 * 64..8192, multiple 1..1024, padding 0..100, min_padding and grow
 * 0..65536, feather 0..IMP_FEATHER_MAX. */
gboolean imp_inpaint_plan (const ImpInpaintOptions *o, ImpRect selection, int image_width,
                           int image_height, ImpInpaintPlan *plan, GError **error);

/* ---- masks ---------------------------------------------------------------------- */

/* A selection channel (8-bit, `stride` bytes per row) -> a new float mask
 * (v / 255). Free with g_free. */
float *imp_mask_from_u8 (const guint8 *src, gsize stride, int width, int height);
/* Float mask -> 8 bits: round(clamp(v, 0, 1) * 255). */
void imp_mask_to_u8 (const float *mask, int width, int height, guint8 *dst, gsize stride);

/* Grow (dilate) by `radius` px with a round brush: with d the Euclidean
 * distance from a pixel centre to the nearest pixel whose value is >= 0.5,
 *   out = max(in, clamp(radius + 1 - d, 0, 1)),
 * i.e. every pixel within `radius` becomes fully selected, with a one-pixel
 * antialiased edge beyond; thresholding the result at 0.5 gives the disc
 * dilation of radius + 0.5. Exact distances (Felzenszwalb & Huttenlocher,
 * "Distance Transforms of Sampled Functions", 2012), O(1) per pixel for any
 * radius. radius <= 0 does nothing. */
void imp_mask_grow (float *mask, int width, int height, int radius);

/* Feather: a separable gaussian blur with sigma = radius / 3.5 (GIMP's
 * Select > Feather), kernel radius ceil(3 sigma), weights normalised. Outside
 * the mask the edge pixels are repeated (a selection touching the border
 * stays selected up to the border). It is a true gaussian for every radius
 * (O(radius) per pixel, vectorised); pixels farther than the kernel radius
 * from any nonzero value stay exactly 0, constant regions stay constant to
 * within float rounding; results are clamped to [0, 1]. radius <= 0 does
 * nothing; radius is clamped to IMP_FEATHER_MAX. */
void imp_mask_feather (float *mask, int width, int height, double radius);

/* Binarise: v >= threshold -> 1, else 0 (diffusers' mask binarisation uses
 * 0.5). */
void imp_mask_threshold (float *mask, gsize n, float threshold);

/* The two masks of an inpaint, from the box's selection values:
 *   model_mask: grow(selection, o->grow) thresholded at 0.5 - what the model
 *               repaints (binary, as diffusers binarises it anyway);
 *   layer_mask: feather(grow(selection, o->grow), o->feather) - the new
 *               layer's mask. With grow = feather = 0 it equals the
 *               selection, so nothing outside the selection changes; with a
 *               feather the soft edge is centred on the grown edge and
 *               reaches imp_feather_reach() px beyond it. In that outer
 *               band (layer_mask > 0, model_mask = 0) the layer shows the
 *               model's reproduction of the original, faded out: the same
 *               trade as AUTOMATIC1111's "mask blur".
 * Either output may be NULL. */
void imp_inpaint_masks (const ImpInpaintOptions *o, const float *selection, int width,
                        int height, float *model_mask, float *layer_mask);

/* ---- compositing ------------------------------------------------------------------ */

/* dst = orig + (gen - orig) * mask per channel (alpha too), in float,
 * rounded to nearest. mask <= 0 (or NaN) copies orig exactly, mask >= 1 copies
 * gen exactly. All three images have the same size and channels; dst may be
 * orig or gen. mask is [height][width]. */
void imp_blend (SdImage *dst, const SdImage *orig, const SdImage *gen, const float *mask);

/* Blend `src` into `image` in place with its top-left corner at (x, y),
 * through `mask` (src's size), clipped to the image; same rule as imp_blend.
 * Same channel count. */
void imp_composite (SdImage *image, const SdImage *src, const float *mask, int x, int y);

/* ---- colour match --------------------------------------------------------------------- */

typedef enum
{
  /* Measure the generated image where the mask is 0 (the ring around the
   * selection, which the model should have reproduced) against the
   * original's ring, and apply that correction to everything. Removes the
   * global colour drift of the model / VAE without touching what was
   * painted on purpose (a red apple stays red). The default. */
  IMP_COLOR_MATCH_RING,
  /* Measure the generated image where the mask is 1 against the original's
   * ring: the new content is pulled toward the surroundings' colours.
   * Stronger, and it does change intended colours. */
  IMP_COLOR_MATCH_REGION,
} ImpColorMatchMode;

/* Colour-match `gen` to `orig` (same size) in CIE L*a*b* (sRGB, D65): per
 * channel, x' = mu_o + (x - mu_g) * k, k = clamp(sd_o / sd_g, 0.5, 2) (1
 * when sd_g is ~0), then x + strength * (x' - x), converted back to sRGB and
 * rounded; alpha is untouched. Means and deviations are weighted: the ring
 * with (1 - mask) times the original's alpha / 255 (when it has alpha), the
 * region with mask. strength is in [0, 1]; 0 leaves gen
 * bit-identical. Returns FALSE (gen untouched) when strength <= 0 or when
 * the ring or region weighs less than 16 pixels. Reinhard et al., "Color
 * Transfer between Images" (2001), in Lab instead of lalphabeta. */
gboolean imp_color_match (SdImage *gen, const SdImage *orig, const float *mask, double strength,
                          ImpColorMatchMode mode);

/* ---- the inpaint flow --------------------------------------------------------------------- */

/* From the box's pixels (plan->box size, 1/3/4 channels) and selection values
 * (float [box.height][box.width]):
 *   work_image:     the box scaled to work_width x work_height (Lanczos-3),
 *                   RGB (alpha dropped);
 *   work_mask:      model_mask scaled to the working size (bilinear) and
 *                   thresholded at 0.5, float [work_h][work_w];
 *   model_mask_box, layer_mask_box: imp_inpaint_masks() at box size.
 * Outputs are newly allocated (g_free / sd_image_free); any may be NULL. */
gboolean imp_inpaint_prepare (const ImpInpaintOptions *o, const ImpInpaintPlan *plan,
                              const SdImage *box_pixels, const float *box_selection,
                              SdImage **work_image, float **work_mask, float **model_mask_box,
                              float **layer_mask_box, GError **error);

/* The generated working image -> the new layer's pixels at box size: scaled
 * back with Lanczos-3, colour matched to box_pixels with IMP_COLOR_MATCH_RING
 * over model_mask_box at `color_match` strength (0 = off), with box_pixels'
 * channel count (alpha 255: the repainted layer is opaque; its layer mask
 * does the blending). */
SdImage *imp_inpaint_finish (const ImpInpaintPlan *plan, const SdImage *work_result,
                             const SdImage *box_pixels, const float *model_mask_box,
                             double color_match, GError **error);

/* ---- other procedures ------------------------------------------------------------------------ */

/* Where "Generate Layer from Prompt" puts its layer: the selection's bounds
 * clipped to the image when `selection` is not NULL and meets the image,
 * otherwise the whole image. Generate at imp_working_size() of its size and
 * scale the result to it. */
ImpRect imp_generate_rect (int image_width, int image_height, const ImpRect *selection);

/* What "Image to Image" re-imagines: the selection's bounds clipped to the
 * drawable (both in image coordinates, i.e. the drawable's offsets
 * included) when `selection` is not NULL, else the whole drawable. Empty
 * when the selection misses the drawable (the front end reports that). */
ImpRect imp_img2img_rect (ImpRect drawable, const ImpRect *selection);

G_END_DECLS
