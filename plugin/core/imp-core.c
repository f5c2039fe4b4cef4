/* imp-core.c: inpaint geometry, compositing and the inpaint flow. Masks are
 * in imp-mask.c, colour matching in imp-color.c. */
#include "imp-core.h"
#include "sd-error.h"

#include <math.h>
#include <string.h>

gboolean
imp_rect_is_empty (ImpRect r)
{
  return r.width <= 0 || r.height <= 0;
}

ImpRect
imp_rect_intersect (ImpRect a, ImpRect b)
{
  gint64 x0 = MAX ((gint64) a.x, (gint64) b.x);
  gint64 y0 = MAX ((gint64) a.y, (gint64) b.y);
  gint64 x1 = MIN ((gint64) a.x + a.width, (gint64) b.x + b.width);
  gint64 y1 = MIN ((gint64) a.y + a.height, (gint64) b.y + b.height);
  ImpRect r = { (int) x0, (int) y0, 0, 0 };

  if (imp_rect_is_empty (a) || imp_rect_is_empty (b) || x1 <= x0 || y1 <= y0)
    return r;
  r.width = (int) (x1 - x0);
  r.height = (int) (y1 - y0);
  return r;
}

/* ---- geometry ------------------------------------------------------------------------ */

void
imp_inpaint_options_init (ImpInpaintOptions *o, int native_size)
{
  g_return_if_fail (o != NULL);
  o->padding = 0.25;
  o->min_padding = 32;
  o->native_size = native_size;
  o->multiple = 8;
  o->grow = 0;
  o->feather = 0.0;
}

int
imp_feather_reach (double feather)
{
  if (!(feather > 0.0))
    return 0;
  /* sigma = feather / 3.5 (GIMP), kernel radius ceil(3 sigma); see
   * imp_mask_feather, which clamps the radius the same way. */
  return (int) ceil (3.0 * (MIN (feather, IMP_FEATHER_MAX) / 3.5));
}

ImpRect
imp_context_box (const ImpInpaintOptions *o, ImpRect selection, int image_width,
                 int image_height)
{
  const ImpRect image = { 0, 0, image_width, image_height };
  ImpRect sel = imp_rect_intersect (selection, image);
  gint64 pad, x0, y0, x1, y1;
  ImpRect box;

  g_return_val_if_fail (o != NULL, image);
  if (imp_rect_is_empty (sel))
    return image;
  /* Clamped so absurd options cannot overflow; more than the image size
   * changes nothing. */
  pad = (gint64) ceil (CLAMP (o->padding, 0.0, 1e6) * MAX (sel.width, sel.height));
  pad = MAX (pad, (gint64) MAX (o->min_padding, 0));
  pad += (gint64) MAX (o->grow, 0) + imp_feather_reach (o->feather);
  x0 = MAX ((gint64) sel.x - pad, 0);
  y0 = MAX ((gint64) sel.y - pad, 0);
  x1 = MIN ((gint64) sel.x + sel.width + pad, (gint64) image_width);
  y1 = MIN ((gint64) sel.y + sel.height + pad, (gint64) image_height);
  box.x = (int) x0;
  box.y = (int) y0;
  box.width = (int) (x1 - x0);
  box.height = (int) (y1 - y0);
  return box;
}

void
imp_working_size (int width, int height, int native_size, int multiple, int *work_width,
                  int *work_height)
{
  double aspect, s, wf, hf, cap, area;
  double best = G_MAXDOUBLE;
  int bw = multiple, bh = multiple;

  g_return_if_fail (width > 0 && height > 0 && native_size > 0 && multiple > 0);
  aspect = (double) width / height;
  s = native_size / sqrt ((double) width * height);
  wf = width * s;
  hf = height * s;
  cap = 4.0 * native_size;
  if (wf > cap)
    {
      hf *= cap / wf;
      wf = cap;
    }
  if (hf > cap)
    {
      wf *= cap / hf;
      hf = cap;
    }
  area = wf * hf;
  /* Multiples around the ideal sides; an aspect error is weighted twice an
   * area error (a distorted image shows, a slightly smaller one does not). */
  for (int i = -1; i <= 2; i++)
    for (int j = -1; j <= 2; j++)
      {
        const double a = MAX (floor (wf / multiple) + i, 1.0);
        const double b = MAX (floor (hf / multiple) + j, 1.0);
        if ((a > 1.0 && a * multiple > cap) || (b > 1.0 && b * multiple > cap))
          continue;
        const double cost = 2.0 * fabs (log ((a / b) / aspect))
                            + fabs (log (a * b * multiple * multiple / area));
        if (cost < best)
          {
            best = cost;
            bw = (int) a * multiple;
            bh = (int) b * multiple;
          }
      }
  *work_width = bw;
  *work_height = bh;
}

gboolean
imp_inpaint_plan (const ImpInpaintOptions *o, ImpRect selection, int image_width,
                  int image_height, ImpInpaintPlan *plan, GError **error)
{
  const ImpRect image = { 0, 0, image_width, image_height };

  g_return_val_if_fail (o != NULL && plan != NULL, FALSE);
  if (o->native_size < 64 || o->native_size > 8192 || o->multiple < 1 || o->multiple > 1024
      || !(o->padding >= 0.0 && o->padding <= 100.0) || o->min_padding < 0
      || o->min_padding > 65536 || o->grow < 0 || o->grow > 65536
      || !(o->feather >= 0.0 && o->feather <= IMP_FEATHER_MAX))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "invalid inpaint options (native size %d, multiple %d, padding %g, "
                   "min padding %d, grow %d, feather %g)",
                   o->native_size, o->multiple, o->padding, o->min_padding, o->grow, o->feather);
      return FALSE;
    }
  if (image_width <= 0 || image_height <= 0)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "invalid image size %dx%d",
                   image_width, image_height);
      return FALSE;
    }
  plan->selection = imp_rect_intersect (selection, image);
  if (imp_rect_is_empty (plan->selection))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "the selection is empty or outside the image");
      return FALSE;
    }
  plan->box = imp_context_box (o, plan->selection, image_width, image_height);
  imp_working_size (plan->box.width, plan->box.height, o->native_size, o->multiple,
                    &plan->work_width, &plan->work_height);
  return TRUE;
}

/* ---- compositing ------------------------------------------------------------------------ */

static void
blend_row (guint8 *d, const guint8 *o, const guint8 *g, const float *m, int n, int ch)
{
  for (int i = 0; i < n; i++, d += ch, o += ch, g += ch)
    {
      const float a = m[i];
      if (!(a > 0.0f))
        {
          if (d != o)
            for (int c = 0; c < ch; c++)
              d[c] = o[c];
        }
      else if (a >= 1.0f)
        {
          if (d != g)
            for (int c = 0; c < ch; c++)
              d[c] = g[c];
        }
      else
        for (int c = 0; c < ch; c++)
          {
            /* Lies between o and g, so no clamping is needed. */
            const float v = (float) o[c] + (float) ((int) g[c] - (int) o[c]) * a;
            d[c] = (guint8) (v + 0.5f);
          }
    }
}

void
imp_blend (SdImage *dst, const SdImage *orig, const SdImage *gen, const float *mask)
{
  g_return_if_fail (dst != NULL && orig != NULL && gen != NULL && mask != NULL);
  g_return_if_fail (dst->width == orig->width && dst->height == orig->height
                    && gen->width == orig->width && gen->height == orig->height);
  g_return_if_fail (dst->channels == orig->channels && gen->channels == orig->channels);
  for (int y = 0; y < dst->height; y++)
    blend_row (sd_image_row (dst, y), sd_image_row (orig, y), sd_image_row (gen, y),
               mask + (gsize) y * dst->width, dst->width, dst->channels);
}

void
imp_composite (SdImage *image, const SdImage *src, const float *mask, int x, int y)
{
  const ImpRect img_r = { 0, 0, image->width, image->height };
  const ImpRect src_r = { x, y, src->width, src->height };
  ImpRect r;

  g_return_if_fail (image != NULL && src != NULL && mask != NULL);
  g_return_if_fail (image->channels == src->channels);
  r = imp_rect_intersect (img_r, src_r);
  if (imp_rect_is_empty (r))
    return;
  for (int row = r.y; row < r.y + r.height; row++)
    {
      guint8 *d = sd_image_row (image, row) + (gsize) r.x * image->channels;
      const int sy = row - y, sx = r.x - x;
      blend_row (d, d, sd_image_row (src, sy) + (gsize) sx * src->channels,
                 mask + (gsize) sy * src->width + sx, r.width, image->channels);
    }
}

/* ---- the inpaint flow ---------------------------------------------------------------------- */

gboolean
imp_inpaint_prepare (const ImpInpaintOptions *o, const ImpInpaintPlan *plan,
                     const SdImage *box_pixels, const float *box_selection,
                     SdImage **work_image, float **work_mask, float **model_mask_box,
                     float **layer_mask_box, GError **error)
{
  const int bw = plan->box.width, bh = plan->box.height;
  const int ww = plan->work_width, wh = plan->work_height;
  g_autofree float *model = NULL;
  g_autofree float *layer = NULL;
  g_autofree float *wmask = NULL;
  g_autoptr (SdImage) rgb = NULL;
  g_autoptr (SdImage) work = NULL;

  g_return_val_if_fail (o != NULL && plan != NULL && box_pixels != NULL, FALSE);
  g_return_val_if_fail (box_selection != NULL, FALSE);
  if (box_pixels->width != bw || box_pixels->height != bh)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "box pixels are %dx%d, the plan's box is %dx%d", box_pixels->width,
                   box_pixels->height, bw, bh);
      return FALSE;
    }
  model = g_new (float, (gsize) bw * bh);
  layer = g_new (float, (gsize) bw * bh);
  imp_inpaint_masks (o, box_selection, bw, bh, model, layer);

  if (work_image != NULL)
    {
      const SdImage *src = box_pixels;
      if (box_pixels->channels != 3)
        {
          /* Alpha is dropped before scaling, so transparent pixels keep
           * their colour instead of turning black. */
          rgb = sd_image_convert (box_pixels, 3, error);
          if (rgb == NULL)
            return FALSE;
          src = rgb;
        }
      work = sd_image_resample (src, ww, wh, SD_RESAMPLE_LANCZOS3, error);
      if (work == NULL)
        return FALSE;
    }
  if (work_mask != NULL)
    {
      wmask = g_new (float, (gsize) ww * wh);
      if (!sd_resample_f32 (model, bw, bh, 1, wmask, ww, wh, SD_RESAMPLE_BILINEAR, error))
        return FALSE;
      imp_mask_threshold (wmask, (gsize) ww * wh, 0.5f);
    }

  if (work_image != NULL)
    *work_image = g_steal_pointer (&work);
  if (work_mask != NULL)
    *work_mask = g_steal_pointer (&wmask);
  if (model_mask_box != NULL)
    *model_mask_box = g_steal_pointer (&model);
  if (layer_mask_box != NULL)
    *layer_mask_box = g_steal_pointer (&layer);
  return TRUE;
}

SdImage *
imp_inpaint_finish (const ImpInpaintPlan *plan, const SdImage *work_result,
                    const SdImage *box_pixels, const float *model_mask_box, double color_match,
                    GError **error)
{
  g_autoptr (SdImage) rgb = NULL;
  g_autoptr (SdImage) scaled = NULL;
  g_autoptr (SdImage) orig_rgb = NULL;
  const SdImage *orig;

  g_return_val_if_fail (plan != NULL && work_result != NULL && box_pixels != NULL, NULL);
  if (box_pixels->width != plan->box.width || box_pixels->height != plan->box.height)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "box pixels are %dx%d, the plan's box is %dx%d", box_pixels->width,
                   box_pixels->height, plan->box.width, plan->box.height);
      return NULL;
    }
  if (work_result->channels != 3)
    {
      rgb = sd_image_convert (work_result, 3, error);
      if (rgb == NULL)
        return NULL;
    }
  scaled = sd_image_resample (rgb != NULL ? rgb : work_result, plan->box.width,
                              plan->box.height, SD_RESAMPLE_LANCZOS3, error);
  if (scaled == NULL)
    return NULL;
  if (color_match > 0.0 && model_mask_box != NULL)
    {
      orig = box_pixels;
      if (box_pixels->channels == 1)
        {
          orig = orig_rgb = sd_image_convert (box_pixels, 3, error);
          if (orig_rgb == NULL)
            return NULL;
        }
      imp_color_match (scaled, orig, model_mask_box, MIN (color_match, 1.0),
                       IMP_COLOR_MATCH_RING);
    }
  if (box_pixels->channels == 3)
    return g_steal_pointer (&scaled);
  return sd_image_convert (scaled, box_pixels->channels, error);
}

/* ---- other procedures ------------------------------------------------------------------------ */

ImpRect
imp_generate_rect (int image_width, int image_height, const ImpRect *selection)
{
  const ImpRect image = { 0, 0, image_width, image_height };
  ImpRect r;

  if (selection == NULL)
    return image;
  r = imp_rect_intersect (*selection, image);
  return imp_rect_is_empty (r) ? image : r;
}

ImpRect
imp_img2img_rect (ImpRect drawable, const ImpRect *selection)
{
  if (selection == NULL)
    return drawable;
  return imp_rect_intersect (*selection, drawable);
}
