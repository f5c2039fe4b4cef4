/* sd-convert.h: element conversions between on-disk dtypes (internal to
 * diffusion/; the public half <-> float functions are in sd-model.h). */
#pragma once

#include <glib.h>
#include "sd-model.h"

G_BEGIN_DECLS

gboolean sd_dtype_is_float (SdDType dtype);
/* "F32" -> SD_DTYPE_F32; FALSE for anything not in SdDType. */
gboolean sd_dtype_from_name (const char *name, SdDType *dtype);

/* Convert n little-endian elements at src (any alignment). */
void sd_convert_to_f32 (SdDType src_dtype, const guint8 *src, gsize n, float *dst);
void sd_convert_to_f16 (SdDType src_dtype, const guint8 *src, gsize n, guint16 *dst);
/* Integer dtypes only; FALSE (nothing written) for float dtypes. */
gboolean sd_convert_to_i64 (SdDType src_dtype, const guint8 *src, gsize n, gint64 *dst);

G_END_DECLS
