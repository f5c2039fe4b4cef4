/* sd-image.c: the SdImage container, its text chunks, tensor and mask
 * conversion, crop / paste / channel conversion. PNG is in sd-image-png.c,
 * resampling in sd-image-resample.c, the A1111 text in sd-image-params.c. */
#include "sd-image.h"
#include "sd-image-private.h"
#include "sd-error.h"

#include <math.h>
#include <string.h>

typedef struct
{
  char *key;
  char *value;
} SdImageText;

static void
sd_image_text_free (gpointer p)
{
  SdImageText *t = p;
  g_free (t->key);
  g_free (t->value);
  g_free (t);
}

SdImage *
sd_image_new (int width, int height, int channels, GError **error)
{
  gsize stride, size;
  SdImage *img;
  guint8 *data;

  if (width <= 0 || height <= 0)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "invalid image size %dx%d", width,
                   height);
      return NULL;
    }
  if (channels != 1 && channels != 3 && channels != 4)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "invalid channel count %d (1, 3 or 4)", channels);
      return NULL;
    }
  if (!g_size_checked_mul (&stride, (gsize) width, (gsize) channels)
      || !g_size_checked_mul (&size, stride, (gsize) height))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "image size %dx%d overflows", width,
                   height);
      return NULL;
    }
  data = g_try_malloc0 (size);
  if (data == NULL)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_OUT_OF_MEMORY,
                   "out of memory for a %dx%d image (%" G_GSIZE_FORMAT " bytes)", width, height,
                   size);
      return NULL;
    }
  img = g_new0 (SdImage, 1);
  img->width = width;
  img->height = height;
  img->channels = channels;
  img->stride = stride;
  img->data = data;
  img->text = g_ptr_array_new_with_free_func (sd_image_text_free);
  return img;
}

static void
copy_texts (SdImage *dst, const SdImage *src)
{
  for (guint i = 0; i < src->text->len; i++)
    {
      const SdImageText *t = g_ptr_array_index (src->text, i);
      SdImageText *c = g_new (SdImageText, 1);
      c->key = g_strdup (t->key);
      c->value = g_strdup (t->value);
      g_ptr_array_add (dst->text, c);
    }
}

SdImage *
sd_image_copy (const SdImage *img)
{
  SdImage *c;

  g_return_val_if_fail (img != NULL, NULL);
  c = sd_image_new (img->width, img->height, img->channels, NULL);
  if (c == NULL)
    g_error ("sd_image_copy: out of memory for a %dx%d image", img->width, img->height);
  for (int y = 0; y < img->height; y++)
    memcpy (sd_image_row (c, y), sd_image_row (img, y), (gsize) img->width * img->channels);
  copy_texts (c, img);
  return c;
}

void
sd_image_free (SdImage *img)
{
  if (img == NULL)
    return;
  g_free (img->data);
  if (img->text != NULL)
    g_ptr_array_unref (img->text);
  g_free (img);
}

/* ---- text chunks ------------------------------------------------------------ */

static SdImageText *
find_text (const SdImage *img, const char *key, guint *index)
{
  for (guint i = 0; i < img->text->len; i++)
    {
      SdImageText *t = g_ptr_array_index (img->text, i);
      if (strcmp (t->key, key) == 0)
        {
          if (index != NULL)
            *index = i;
          return t;
        }
    }
  return NULL;
}

const char *
sd_image_get_text (const SdImage *img, const char *key)
{
  SdImageText *t;

  g_return_val_if_fail (img != NULL && key != NULL, NULL);
  t = find_text (img, key, NULL);
  return t != NULL ? t->value : NULL;
}

gboolean
sd_image_keyword_is_valid (const char *key)
{
  gsize len = strlen (key);

  /* PNG spec 11.3.4.3: 1-79 Latin-1 printable characters, no leading,
   * trailing or consecutive spaces. We further restrict to ASCII so the
   * keyword is the same bytes in UTF-8. */
  if (len < 1 || len > 79 || key[0] == ' ' || key[len - 1] == ' ')
    return FALSE;
  for (gsize i = 0; i < len; i++)
    {
      if (key[i] < 0x20 || key[i] > 0x7e)
        return FALSE;
      if (key[i] == ' ' && key[i + 1] == ' ')
        return FALSE;
    }
  return TRUE;
}

void
sd_image_set_text_take (SdImage *img, const char *key, char *value)
{
  SdImageText *t = find_text (img, key, NULL);

  if (t != NULL)
    {
      g_free (t->value);
      t->value = value;
      return;
    }
  t = g_new (SdImageText, 1);
  t->key = g_strdup (key);
  t->value = value;
  g_ptr_array_add (img->text, t);
}

gboolean
sd_image_set_text (SdImage *img, const char *key, const char *value, GError **error)
{
  guint index;

  g_return_val_if_fail (img != NULL && key != NULL, FALSE);
  if (!sd_image_keyword_is_valid (key))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "invalid PNG text keyword \"%s\" (1-79 printable ASCII characters, "
                   "no leading, trailing or double spaces)",
                   key);
      return FALSE;
    }
  if (value == NULL)
    {
      if (find_text (img, key, &index) != NULL)
        g_ptr_array_remove_index (img->text, index);
      return TRUE;
    }
  if (!g_utf8_validate (value, -1, NULL))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "text for \"%s\" is not UTF-8", key);
      return FALSE;
    }
  sd_image_set_text_take (img, key, g_strdup (value));
  return TRUE;
}

guint
sd_image_get_n_texts (const SdImage *img)
{
  g_return_val_if_fail (img != NULL, 0);
  return img->text->len;
}

const char *
sd_image_get_text_key (const SdImage *img, guint i)
{
  g_return_val_if_fail (img != NULL && i < img->text->len, NULL);
  return ((SdImageText *) g_ptr_array_index (img->text, i))->key;
}

const char *
sd_image_get_text_value_nth (const SdImage *img, guint i)
{
  return ((SdImageText *) g_ptr_array_index (img->text, i))->value;
}

/* ---- tensors ------------------------------------------------------------------ */

void
sd_image_to_tensor (const SdImage *img, float *dst)
{
  const gsize plane = (gsize) img->width * img->height;
  const int ch = img->channels;
  float lut[256];

  g_return_if_fail (img != NULL && dst != NULL);
  /* diffusers VaeImageProcessor: np.array(pil).astype(np.float32) / 255.0,
   * then normalize: 2.0 * x - 1.0 (both float32). */
  for (int v = 0; v < 256; v++)
    {
      float x = (float) v / 255.0f;
      lut[v] = 2.0f * x - 1.0f;
    }
  for (int y = 0; y < img->height; y++)
    {
      const guint8 *row = sd_image_row (img, y);
      float *r = dst + (gsize) y * img->width;
      float *g = r + plane;
      float *b = g + plane;
      for (int x = 0; x < img->width; x++)
        {
          const guint8 *p = row + (gsize) x * ch;
          r[x] = lut[p[0]];
          g[x] = lut[ch >= 3 ? p[1] : p[0]];
          b[x] = lut[ch >= 3 ? p[2] : p[0]];
        }
    }
}

static inline guint8
tensor_to_u8 (float v)
{
  /* diffusers: (x / 2 + 0.5).clamp(0, 1) in float32, then numpy
   * (x * 255).round() (round half to even) in float32. rintf rounds half to
   * even in the default rounding mode. NaN fails both comparisons -> 0. */
  float t = v / 2.0f + 0.5f;
  if (!(t > 0.0f))
    return 0;
  if (t > 1.0f)
    t = 1.0f;
  return (guint8) rintf (t * 255.0f);
}

void
sd_image_from_tensor (SdImage *img, const float *src)
{
  const gsize plane = (gsize) img->width * img->height;
  const int ch = img->channels;

  g_return_if_fail (img != NULL && src != NULL);
  g_return_if_fail (ch == 3 || ch == 4);
  for (int y = 0; y < img->height; y++)
    {
      guint8 *row = sd_image_row (img, y);
      const float *r = src + (gsize) y * img->width;
      const float *g = r + plane;
      const float *b = g + plane;
      for (int x = 0; x < img->width; x++)
        {
          guint8 *p = row + (gsize) x * ch;
          p[0] = tensor_to_u8 (r[x]);
          p[1] = tensor_to_u8 (g[x]);
          p[2] = tensor_to_u8 (b[x]);
          if (ch == 4)
            p[3] = 255;
        }
    }
}

void
sd_image_to_mask (const SdImage *img, int channel, float *dst)
{
  g_return_if_fail (img != NULL && dst != NULL);
  g_return_if_fail (channel >= 0 && channel < img->channels);
  for (int y = 0; y < img->height; y++)
    {
      const guint8 *row = sd_image_row (img, y) + channel;
      float *d = dst + (gsize) y * img->width;
      for (int x = 0; x < img->width; x++)
        d[x] = (float) row[(gsize) x * img->channels] / 255.0f;
    }
}

void
sd_image_from_mask (SdImage *img, int channel, const float *src)
{
  g_return_if_fail (img != NULL && src != NULL);
  g_return_if_fail (channel >= 0 && channel < img->channels);
  for (int y = 0; y < img->height; y++)
    {
      guint8 *row = sd_image_row (img, y) + channel;
      const float *s = src + (gsize) y * img->width;
      for (int x = 0; x < img->width; x++)
        {
          float v = s[x];
          guint8 o;
          if (!(v > 0.0f))
            o = 0;
          else if (v >= 1.0f)
            o = 255;
          else
            o = (guint8) (v * 255.0f + 0.5f);
          row[(gsize) x * img->channels] = o;
        }
    }
}

/* ---- crop, paste, convert --------------------------------------------------------- */

SdImage *
sd_image_crop (const SdImage *img, int x, int y, int w, int h, GError **error)
{
  SdImage *c;

  g_return_val_if_fail (img != NULL, NULL);
  if (w <= 0 || h <= 0 || x < 0 || y < 0 || x > img->width - w || y > img->height - h)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "crop rectangle %dx%d+%d+%d is not inside the %dx%d image", w, h, x, y,
                   img->width, img->height);
      return NULL;
    }
  c = sd_image_new (w, h, img->channels, error);
  if (c == NULL)
    return NULL;
  for (int r = 0; r < h; r++)
    memcpy (sd_image_row (c, r), sd_image_row (img, y + r) + (gsize) x * img->channels,
            (gsize) w * img->channels);
  return c;
}

void
sd_image_paste (SdImage *dst, const SdImage *src, int x, int y)
{
  int x0, y0, x1, y1;

  g_return_if_fail (dst != NULL && src != NULL);
  g_return_if_fail (dst->channels == src->channels);
  /* Clip in 64 bits so huge offsets cannot overflow. */
  x0 = (int) MAX ((gint64) x, 0);
  y0 = (int) MAX ((gint64) y, 0);
  x1 = (int) MIN ((gint64) x + src->width, (gint64) dst->width);
  y1 = (int) MIN ((gint64) y + src->height, (gint64) dst->height);
  if (x0 >= x1 || y0 >= y1)
    return;
  for (int r = y0; r < y1; r++)
    memmove (sd_image_row (dst, r) + (gsize) x0 * dst->channels,
             sd_image_row (src, r - y) + (gsize) (x0 - x) * src->channels,
             (gsize) (x1 - x0) * dst->channels);
}

static inline guint8
luma601 (const guint8 *p)
{
  /* PIL convert("L"): L = R * 299/1000 + G * 587/1000 + B * 114/1000,
   * rounded to nearest. */
  return (guint8) ((p[0] * 299 + p[1] * 587 + p[2] * 114 + 500) / 1000);
}

void
sd_convert_row (const guint8 *src, int src_ch, guint8 *dst, int dst_ch, int width)
{
  for (int x = 0; x < width; x++, src += src_ch, dst += dst_ch)
    {
      guint8 a = src_ch == 4 ? src[3] : 255;
      if (dst_ch == 1)
        dst[0] = src_ch == 1 ? src[0] : luma601 (src);
      else
        {
          if (src_ch == 1)
            dst[0] = dst[1] = dst[2] = src[0];
          else
            {
              dst[0] = src[0];
              dst[1] = src[1];
              dst[2] = src[2];
            }
          if (dst_ch == 4)
            dst[3] = a;
        }
    }
}

SdImage *
sd_image_convert (const SdImage *img, int channels, GError **error)
{
  SdImage *c;

  g_return_val_if_fail (img != NULL, NULL);
  c = sd_image_new (img->width, img->height, channels, error);
  if (c == NULL)
    return NULL;
  for (int y = 0; y < img->height; y++)
    sd_convert_row (sd_image_row (img, y), img->channels, sd_image_row (c, y), channels,
                    img->width);
  copy_texts (c, img);
  return c;
}

SdImage *
sd_image_flatten (const SdImage *img, guint8 bg_r, guint8 bg_g, guint8 bg_b, GError **error)
{
  const guint8 bg[3] = { bg_r, bg_g, bg_b };
  SdImage *c;

  g_return_val_if_fail (img != NULL, NULL);
  if (img->channels != 4)
    return sd_image_convert (img, 3, error);
  c = sd_image_new (img->width, img->height, 3, error);
  if (c == NULL)
    return NULL;
  for (int y = 0; y < img->height; y++)
    {
      const guint8 *s = sd_image_row (img, y);
      guint8 *d = sd_image_row (c, y);
      for (int x = 0; x < img->width; x++, s += 4, d += 3)
        for (int k = 0; k < 3; k++)
          /* Exact integer form of round(c*a/255 + bg*(255-a)/255). */
          d[k] = (guint8) ((s[k] * s[3] + bg[k] * (255 - s[3]) + 127) / 255);
    }
  copy_texts (c, img);
  return c;
}
