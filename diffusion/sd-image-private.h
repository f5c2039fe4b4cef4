/* sd-image-private.h: helpers shared by the sd-image*.c files. */
#pragma once

#include "sd-image.h"

G_BEGIN_DECLS

gboolean sd_image_keyword_is_valid (const char *key);
/* Set a text chunk without validation, taking ownership of value. */
void sd_image_set_text_take (SdImage *img, const char *key, char *value);
const char *sd_image_get_text_value_nth (const SdImage *img, guint i);
/* Convert one row between 1, 3 and 4 channels (see sd_image_convert). */
void sd_convert_row (const guint8 *src, int src_ch, guint8 *dst, int dst_ch, int width);

G_END_DECLS
