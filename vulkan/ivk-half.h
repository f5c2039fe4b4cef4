/* ivk-half.h: IEEE 754 binary16 <-> binary32 conversions (header-only, so CPU-only
 * code can use them without linking the runtime). Round to nearest even,
 * subnormals, infinities and NaN handled. */
#pragma once

#include <glib.h>
#include <string.h>

static inline guint16
ivk_f32_to_f16 (float f)
{
  guint32 x;
  memcpy (&x, &f, 4);
  guint32 sign = (x >> 16) & 0x8000u;
  guint32 exp = (x >> 23) & 0xffu;
  guint32 mant = x & 0x7fffffu;

  if (exp == 0xffu) /* Inf / NaN (keep a quiet NaN) */
    return (guint16) (sign | 0x7c00u | (mant ? 0x200u | (mant >> 13) : 0u));

  gint32 e = (gint32) exp - 127 + 15;
  if (e >= 0x1f) /* overflow -> Inf */
    return (guint16) (sign | 0x7c00u);
  if (e <= 0)
    {
      /* subnormal half (or zero): shift the mantissa with the implicit bit */
      if (e < -10)
        return (guint16) sign;
      mant |= 0x800000u;
      guint32 shift = (guint32) (14 - e);
      guint32 half = mant >> shift;
      guint32 rem = mant & ((1u << shift) - 1u);
      guint32 halfway = 1u << (shift - 1);
      if (rem > halfway || (rem == halfway && (half & 1u)))
        half++;
      return (guint16) (sign | half);
    }
  guint32 half = sign | ((guint32) e << 10) | (mant >> 13);
  guint32 rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (half & 1u)))
    half++; /* may carry into the exponent: correct, up to Inf */
  return (guint16) half;
}

static inline float
ivk_f16_to_f32 (guint16 h)
{
  guint32 sign = ((guint32) h & 0x8000u) << 16;
  guint32 exp = (h >> 10) & 0x1fu;
  guint32 mant = h & 0x3ffu;
  guint32 x;
  if (exp == 0)
    {
      if (mant == 0)
        x = sign;
      else
        {
          /* subnormal: normalise */
          int e = -1;
          do
            {
              e++;
              mant <<= 1;
            }
          while ((mant & 0x400u) == 0);
          x = sign | ((guint32) (127 - 15 - e) << 23) | ((mant & 0x3ffu) << 13);
        }
    }
  else if (exp == 0x1f)
    x = sign | 0x7f800000u | (mant << 13);
  else
    x = sign | ((exp - 15 + 127) << 23) | (mant << 13);
  float f;
  memcpy (&f, &x, 4);
  return f;
}
