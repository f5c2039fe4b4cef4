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

guint16
sd_f32_to_f16 (float f)
{
  guint32 x;
  memcpy (&x, &f, sizeof x);
  guint32 sign = (x >> 16) & 0x8000u;
  guint32 a = x & 0x7fffffffu;

  if (a >= 0x7f800000u)
    {
      if (a == 0x7f800000u)
        return (guint16) (sign | 0x7c00u);
      /* NaN: keep the top payload bits, force the quiet bit so a payload that
       * lives only in the low 13 bits does not turn into infinity. */
      return (guint16) (sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    }
  /* 65520 is halfway between the largest half (65504) and 2^16; the tie goes to
   * the even neighbour, which is 2^16 = infinity. */
  if (a >= 0x477ff000u)
    return (guint16) (sign | 0x7c00u);
  if (a >= 0x38800000u) /* >= 2^-14: a normal half */
    {
      guint32 h = ((a >> 23) - 127 + 15) << 10 | ((a >> 13) & 0x3ffu);
      guint32 rem = a & 0x1fffu;
      if (rem > 0x1000u || (rem == 0x1000u && (h & 1u)))
        h++; /* a carry out of the mantissa correctly bumps the exponent */
      return (guint16) (sign | h);
    }
  if (a <= 0x33000000u) /* <= 2^-25: rounds to (signed) zero; 2^-25 ties to even 0 */
    return (guint16) sign;
  /* Subnormal half: count in units of 2^-24. value = mant * 2^(e - 150), so
   * units = mant >> (126 - e), with 14 <= shift <= 24 in this range. */
  guint32 e = a >> 23;
  guint32 mant = (a & 0x7fffffu) | 0x800000u;
  guint32 shift = 126 - e;
  guint32 h = mant >> shift;
  guint32 rem = mant & ((1u << shift) - 1u);
  guint32 halfway = 1u << (shift - 1);
  if (rem > halfway || (rem == halfway && (h & 1u)))
    h++; /* 0x3ff + 1 = 0x400 is the smallest normal: still the right encoding */
  return (guint16) (sign | h);
}

float
sd_f16_to_f32 (guint16 h)
{
  guint32 sign = (guint32) (h & 0x8000u) << 16;
  guint32 e = (h >> 10) & 0x1fu;
  guint32 m = h & 0x3ffu;
  guint32 x;

  if (e == 0x1f)
    x = sign | 0x7f800000u | (m << 13);
  else if (e != 0)
    x = sign | ((e + 127 - 15) << 23) | (m << 13);
  else if (m == 0)
    x = sign;
  else
    {
      /* Subnormal: normalise. value = m * 2^-24. */
      int shift = 0;
      while (!(m & 0x400u))
        {
          m <<= 1;
          shift++;
        }
      m &= 0x3ffu;
      x = sign | ((guint32) (127 - 15 + 1 - shift) << 23) | (m << 13);
    }
  float f;
  memcpy (&f, &x, sizeof f);
  return f;
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
