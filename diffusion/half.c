/* half.c: dtypes of tensors on disk and conversions between them.
 *
 * All conversions read little-endian bytes from possibly unaligned memory (a
 * tensor inside an mmapped file has whatever alignment its offset gives it).
 * float -> half rounds to nearest, ties to even, with subnormals, infinities and
 * NaN handled as IEEE 754 says; it agrees bit for bit with the hardware
 * conversion (F16C vcvtps2ph with rounding mode 0) and with GCC's _Float16.
 */
#include "config.h"

#include <string.h>

#include "sd-convert.h"
#include "ivk-half.h"
#include "sd-model.h"

static const struct
{
  const char *name;
  gsize size;
  gboolean is_float;
} dtype_info[] = {
  [SD_DTYPE_F32] = { "F32", 4, TRUE },  [SD_DTYPE_F16] = { "F16", 2, TRUE },
  [SD_DTYPE_BF16] = { "BF16", 2, TRUE }, [SD_DTYPE_F64] = { "F64", 8, TRUE },
  [SD_DTYPE_I64] = { "I64", 8, FALSE }, [SD_DTYPE_I32] = { "I32", 4, FALSE },
  [SD_DTYPE_I16] = { "I16", 2, FALSE }, [SD_DTYPE_I8] = { "I8", 1, FALSE },
  [SD_DTYPE_U8] = { "U8", 1, FALSE },   [SD_DTYPE_BOOL] = { "BOOL", 1, FALSE },
};

gsize
sd_dtype_size (SdDType dtype)
{
  g_return_val_if_fail ((guint) dtype < G_N_ELEMENTS (dtype_info), 0);
  return dtype_info[dtype].size;
}

const char *
sd_dtype_name (SdDType dtype)
{
  g_return_val_if_fail ((guint) dtype < G_N_ELEMENTS (dtype_info), "?");
  return dtype_info[dtype].name;
}

gboolean
sd_dtype_is_float (SdDType dtype)
{
  return (guint) dtype < G_N_ELEMENTS (dtype_info) && dtype_info[dtype].is_float;
}

gboolean
sd_dtype_from_name (const char *name, SdDType *dtype)
{
  for (guint i = 0; i < G_N_ELEMENTS (dtype_info); i++)
    if (strcmp (name, dtype_info[i].name) == 0)
      {
        *dtype = (SdDType) i;
        return TRUE;
      }
  return FALSE;
}

/* One implementation of the IEEE half conversions serves the whole project:
 * vulkan/ivk-half.h (header-only, so this CPU-only library can use it without
 * linking the runtime). Round to nearest even, subnormals, Inf and NaN with
 * its payload; checked bit for bit against the previous implementation here
 * on all 2^32 floats and all 2^16 halves. */
guint16
sd_f32_to_f16 (float f)
{
  return ivk_f32_to_f16 (f);
}

float
sd_f16_to_f32 (guint16 h)
{
  return ivk_f16_to_f32 (h);
}

float
sd_bf16_to_f32 (guint16 b)
{
  guint32 x = (guint32) b << 16;
  float f;
  memcpy (&f, &x, sizeof f);
  return f;
}

/* Unaligned little-endian loads. */
static inline guint16
ld16 (const guint8 *p)
{
  guint16 v;
  memcpy (&v, p, 2);
  return GUINT16_FROM_LE (v);
}

static inline guint32
ld32 (const guint8 *p)
{
  guint32 v;
  memcpy (&v, p, 4);
  return GUINT32_FROM_LE (v);
}

static inline guint64
ld64 (const guint8 *p)
{
  guint64 v;
  memcpy (&v, p, 8);
  return GUINT64_FROM_LE (v);
}

static inline double
element_as_double (SdDType dtype, const guint8 *p)
{
  switch (dtype)
    {
    case SD_DTYPE_F32:
      {
        guint32 u = ld32 (p);
        float f;
        memcpy (&f, &u, 4);
        return f;
      }
    case SD_DTYPE_F16:
      return sd_f16_to_f32 (ld16 (p));
    case SD_DTYPE_BF16:
      return sd_bf16_to_f32 (ld16 (p));
    case SD_DTYPE_F64:
      {
        guint64 u = ld64 (p);
        double d;
        memcpy (&d, &u, 8);
        return d;
      }
    case SD_DTYPE_I64:
      return (double) (gint64) ld64 (p);
    case SD_DTYPE_I32:
      return (gint32) ld32 (p);
    case SD_DTYPE_I16:
      return (gint16) ld16 (p);
    case SD_DTYPE_I8:
      return (gint8) p[0];
    case SD_DTYPE_U8:
      return p[0];
    case SD_DTYPE_BOOL:
      return p[0] != 0;
    }
  return 0.0;
}

void
sd_convert_to_f32 (SdDType src_dtype, const guint8 *src, gsize n, float *dst)
{
  gsize es = sd_dtype_size (src_dtype);
  switch (src_dtype)
    {
    case SD_DTYPE_F32:
      memcpy (dst, src, n * 4);
#if G_BYTE_ORDER == G_BIG_ENDIAN
      for (gsize i = 0; i < n; i++)
        {
          guint32 u = ld32 (src + 4 * i);
          memcpy (dst + i, &u, 4);
        }
#endif
      return;
    case SD_DTYPE_F16:
      for (gsize i = 0; i < n; i++)
        dst[i] = sd_f16_to_f32 (ld16 (src + 2 * i));
      return;
    case SD_DTYPE_BF16:
      for (gsize i = 0; i < n; i++)
        dst[i] = sd_bf16_to_f32 (ld16 (src + 2 * i));
      return;
    case SD_DTYPE_I64:
      /* (float) of an int64 rounds to nearest; exact up to 2^24. */
      for (gsize i = 0; i < n; i++)
        dst[i] = (float) (gint64) ld64 (src + 8 * i);
      return;
    default:
      for (gsize i = 0; i < n; i++)
        dst[i] = (float) element_as_double (src_dtype, src + es * i);
      return;
    }
}

void
sd_convert_to_f16 (SdDType src_dtype, const guint8 *src, gsize n, guint16 *dst)
{
  gsize es = sd_dtype_size (src_dtype);
  switch (src_dtype)
    {
    case SD_DTYPE_F16:
      for (gsize i = 0; i < n; i++)
        dst[i] = ld16 (src + 2 * i);
      return;
    case SD_DTYPE_F32:
      for (gsize i = 0; i < n; i++)
        {
          guint32 u = ld32 (src + 4 * i);
          float f;
          memcpy (&f, &u, 4);
          dst[i] = sd_f32_to_f16 (f);
        }
      return;
    default:
      /* double -> float -> half: float has 24 significand bits >= 2 * 11 + 2,
       * so the double rounding gives the correctly rounded half (Figueroa,
       * "When is double rounding innocuous?", 1995). bf16 and the integer
       * types convert to float exactly or round once. */
      for (gsize i = 0; i < n; i++)
        dst[i] = sd_f32_to_f16 ((float) element_as_double (src_dtype, src + es * i));
      return;
    }
}

gboolean
sd_convert_to_i64 (SdDType src_dtype, const guint8 *src, gsize n, gint64 *dst)
{
  gsize es = sd_dtype_size (src_dtype);
  switch (src_dtype)
    {
    case SD_DTYPE_I64:
      for (gsize i = 0; i < n; i++)
        dst[i] = (gint64) ld64 (src + 8 * i);
      return TRUE;
    case SD_DTYPE_I32:
    case SD_DTYPE_I16:
    case SD_DTYPE_I8:
    case SD_DTYPE_U8:
    case SD_DTYPE_BOOL:
      for (gsize i = 0; i < n; i++)
        dst[i] = (gint64) element_as_double (src_dtype, src + es * i);
      return TRUE;
    default:
      return FALSE;
    }
}
