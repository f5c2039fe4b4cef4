/* sd-image.h: 8-bit images, PNG in and out, the AUTOMATIC1111 "parameters"
 * text, and the pixel helpers the pipelines need (tensor conversion,
 * resampling, crop and paste).
 *
 * Pixels are 8-bit, sRGB-encoded, interleaved, with straight (not
 * premultiplied) alpha. No colour management is applied: gAMA, cHRM, sRGB and
 * iCCP chunks are ignored on load and never written, as AUTOMATIC1111 (PIL)
 * and diffusers do.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Default load limits. 16384 x 16384 RGBA is 1 GiB of pixels; anything larger
 * is refused before a byte is allocated. */
#define SD_IMAGE_DEFAULT_MAX_SIDE   16384
#define SD_IMAGE_DEFAULT_MAX_PIXELS (G_GUINT64_CONSTANT (256) * 1024 * 1024)

typedef struct
{
  int width;    /* > 0 */
  int height;   /* > 0 */
  int channels; /* 1 gray, 3 RGB, 4 RGBA */
  gsize stride; /* bytes from one row to the next, >= width * channels */
  guint8 *data; /* owned: height * stride bytes */
  /*< private >*/
  GPtrArray *text; /* owned: text chunks in insertion order, keys unique */
} SdImage;

/* Limits applied when loading. A zero field means "the default". The check
 * happens right after the PNG header is read, before any pixel memory is
 * allocated. */
typedef struct
{
  guint32 max_width;  /* 0: SD_IMAGE_DEFAULT_MAX_SIDE */
  guint32 max_height; /* 0: SD_IMAGE_DEFAULT_MAX_SIDE */
  guint64 max_pixels; /* 0: SD_IMAGE_DEFAULT_MAX_PIXELS */
} SdImageLimits;

/* A new image with zeroed pixels and stride = width * channels. Fails with
 * SD_ERROR_INVALID_ARG for a bad size or channel count, SD_ERROR_OUT_OF_MEMORY
 * when the pixels cannot be allocated. */
SdImage *sd_image_new (int width, int height, int channels, GError **error);
/* A deep copy (pixels and text chunks); aborts only on out-of-memory. */
SdImage *sd_image_copy (const SdImage *img);
void sd_image_free (SdImage *img);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SdImage, sd_image_free)

/* Row y (0 <= y < height). */
static inline guint8 *
sd_image_row (const SdImage *img, int y)
{
  return img->data + (gsize) y * img->stride;
}

/* ---- PNG ------------------------------------------------------------------ */

/* Load a PNG of any colour type (gray, gray+alpha, RGB, RGBA, palette), bit
 * depth (1, 2, 4, 8, 16) and interlacing, converted to `channels`:
 *   0  the file's own layout: gray -> 1, RGB or palette -> 3, anything with
 *      alpha (gray+alpha, RGBA, a tRNS chunk) -> 4 (gray is expanded to RGB);
 *   1  gray: colour is converted with the ITU-R BT.601 luma weights that PIL's
 *      convert("L") uses; alpha is dropped;
 *   3  RGB: alpha is dropped (not composited), as PIL's convert("RGB") does;
 *   4  RGBA: opaque images get alpha 255; tRNS becomes alpha.
 * 16-bit samples are scaled to 8 bits with rounding (v * 255 / 65535).
 * Text chunks (tEXt, zTXt, iTXt, before or after the image data) are kept,
 * converted to UTF-8 (tEXt/zTXt are Latin-1), a later chunk replacing an
 * earlier one with the same keyword (as PIL's info dict); chunks whose
 * keyword is not printable ASCII are skipped, and so are text chunks larger
 * (decompressed) than the file plus 4 KiB or 1 MiB, whichever is more, up to
 * 8 MiB. See sd_image_get_text().
 *
 * Errors: SD_ERROR_IO (cannot open or read), SD_ERROR_UNSUPPORTED (not a PNG
 * at all: the message names JPEG/WebP/GIF when it recognises them),
 * SD_ERROR_INVALID_ARG (larger than `limits`, NULL for the defaults),
 * SD_ERROR_CORRUPT (bad header, CRC error in any chunk, truncated or
 * malformed data, or a header claiming more pixels than the file's size can
 * possibly decompress to: deflate expands at most 1032:1). A corrupt file
 * never crashes and never leaks. */
SdImage *sd_image_load_png (const char *path, int channels, const SdImageLimits *limits,
                            GError **error);
SdImage *sd_image_load_png_from_memory (const void *data, gsize len, int channels,
                                        const SdImageLimits *limits, GError **error);

/* Encode as an 8-bit PNG (gray, RGB or RGBA after img->channels), not
 * interlaced, with the image's text chunks written before the image data:
 * pure-ASCII values as tEXt, others as uncompressed UTF-8 iTXt (what PIL's
 * PngInfo.add_text does, so AUTOMATIC1111-compatible readers find
 * "parameters"). compression: zlib level 0-9, or -1 for the default, 3
 * (fast; pass 6-9 for smaller files a user keeps). */
GBytes *sd_image_save_png_to_bytes (const SdImage *img, int compression, GError **error);

/* Save atomically: the PNG is written to a temporary file in the same folder,
 * synced, and renamed over `path`, so `path` only ever holds the old file or
 * the complete new one; on any error the temporary file is removed and
 * `path` is untouched (g_file_set_contents_full with
 * G_FILE_SET_CONTENTS_CONSISTENT). The file gets mode 0666 minus the umask.
 * Errors: SD_ERROR_IO naming the path. */
gboolean sd_image_save_png (const SdImage *img, const char *path, int compression,
                            GError **error);

/* ---- text chunks ---------------------------------------------------------- */

/* The value of text chunk `key` (UTF-8), or NULL. */
const char *sd_image_get_text (const SdImage *img, const char *key);
/* Set (replace) or, with value NULL, remove a text chunk. The key must be a
 * valid PNG keyword restricted to printable ASCII: 1-79 characters, no
 * leading, trailing or double spaces; the value must be UTF-8. Otherwise
 * SD_ERROR_INVALID_ARG. */
gboolean sd_image_set_text (SdImage *img, const char *key, const char *value, GError **error);
guint sd_image_get_n_texts (const SdImage *img);
/* The i-th key (insertion / file order). */
const char *sd_image_get_text_key (const SdImage *img, guint i);

/* ---- AUTOMATIC1111 generation parameters ---------------------------------- */

/* What sd_format_parameters() writes and sd_parse_parameters() reads. Each
 * field has an "absent" value; absent fields are not written. Initialise with
 * sd_gen_params_init(). When filled by sd_parse_parameters() the strings are
 * owned by the struct and freed by sd_gen_params_clear(); when filled by the
 * caller they are borrowed. */
typedef struct
{
  const char *prompt;          /* NULL: "" */
  const char *negative_prompt; /* NULL or "": no "Negative prompt:" line */
  int steps;                   /* <= 0: absent */
  const char *sampler;         /* A1111 display name ("Euler a", "DPM++ 2M"); NULL: absent */
  const char *schedule;        /* "Schedule type" ("Karras"); NULL: absent */
  double cfg_scale;            /* < 0 or NaN: absent */
  gboolean has_seed;
  guint64 seed;
  int width, height;           /* <= 0: absent ("Size: WxH", both or neither) */
  const char *model_hash;      /* NULL: absent */
  const char *model;           /* model name; NULL: absent */
  double denoising_strength;   /* < 0 or NaN: absent */
  int clip_skip;               /* <= 1: absent (A1111 omits the default 1) */
  int mask_blur;               /* < 0: absent */
  const char *version;         /* NULL: "impasto " IMPASTO_VERSION; "": absent */
  /*< private >*/
  GStringChunk *strings;       /* owned: strings set by the parser */
} SdGenParams;

/* Everything absent; version NULL (the default). */
void sd_gen_params_init (SdGenParams *p);
/* Free what the parser allocated and re-initialise. */
void sd_gen_params_clear (SdGenParams *p);

/* The AUTOMATIC1111 infotext (modules/processing.py create_infotext), e.g.
 *   a red apple
 *   Negative prompt: blurry
 *   Steps: 20, Sampler: Euler a, CFG scale: 7, Seed: 42, Size: 512x512,
 *   Model: name, Denoising strength: 0.6, Version: impasto 0.1.0
 * (the last line is one line). Field order: Steps, Sampler, Schedule type,
 * CFG scale, Seed, Size, Model hash, Model, Denoising strength, Clip skip,
 * Mask blur, Version. Numbers use the C locale and the shortest of %g's six
 * significant digits ("7", "7.5", "0.6"). A value containing ',', ':' or a
 * newline is written as a JSON string, as A1111's quote() does. The whole text
 * is stripped of leading/trailing whitespace, as A1111 does. */
char *sd_format_parameters (const SdGenParams *p);

/* Parse an infotext the way A1111's parse_generation_parameters does: the last
 * line is the parameter line if it holds at least 3 "Key: value" pairs
 * (otherwise everything is prompt); lines before it are the prompt until one
 * starts with "Negative prompt:", the rest the negative prompt (each line
 * stripped, joined by "\n"). Quoted values are JSON-unescaped. Known keys fill
 * `p` (which is cleared first); a known key with a malformed value is left
 * absent. When all_out is not NULL it receives every "Key" -> "value" pair
 * (unquoted strings, owned). Fails (SD_ERROR_INVALID_ARG) only for text that
 * is not UTF-8. */
gboolean sd_parse_parameters (const char *text, SdGenParams *p, GHashTable **all_out,
                              GError **error);

/* ---- tensors ------------------------------------------------------------- */

/* RGB pixels -> planar float [3, H, W] in [-1, 1]: v = 2 * (p / 255) - 1 in
 * float32, exactly as diffusers' VaeImageProcessor (np.float32 / 255, then
 * 2x - 1), so 0 -> -1 and 255 -> 1 exactly. RGBA: alpha is ignored. Gray:
 * the value goes to all three planes. dst holds 3 * width * height floats. */
void sd_image_to_tensor (const SdImage *img, float *dst);

/* Planar float [3, H, W] -> pixels of img (3 or 4 channels; alpha is set to
 * 255): p = round(clamp(v / 2 + 0.5, 0, 1) * 255) in float32 with
 * round-half-to-even, as diffusers' postprocess + numpy_to_pil
 * ((x / 2 + 0.5).clamp(0, 1), then (x * 255).round()). NaN gives 0. */
void sd_image_from_tensor (SdImage *img, const float *src);

/* One channel of img -> float [H, W] in [0, 1] (p / 255 in float32). Use
 * channel 0 for a gray mask, 3 for the alpha of an RGBA image. */
void sd_image_to_mask (const SdImage *img, int channel, float *dst);
/* Float [H, W] -> one channel of img: round(clamp(v, 0, 1) * 255). */
void sd_image_from_mask (SdImage *img, int channel, const float *src);

/* ---- geometry -------------------------------------------------------------- */

typedef enum
{
  SD_RESAMPLE_NEAREST,  /* the source pixel under each output pixel centre */
  SD_RESAMPLE_BILINEAR, /* triangle filter, widened when downscaling (for masks) */
  SD_RESAMPLE_LANCZOS3, /* Lanczos-3, widened when downscaling (for images) */
} SdResampleFilter;

/* Resample to width x height. Separable: each axis uses the filter over
 * out pixel i <- in coordinate (i + 0.5) * in/out - 0.5; when an axis is
 * reduced the filter is stretched by in/out, so every input pixel contributes
 * (area filtering, no aliasing) - the approach of Pillow's and libvips'
 * resamplers. Weights are renormalised where the window leaves the image, so a
 * constant image stays exactly constant. RGBA is filtered with premultiplied
 * alpha (no dark fringes; fully transparent pixels come out as 0,0,0,0).
 * Lanczos overshoot is clamped to 0..255. The text chunks are not copied. */
SdImage *sd_image_resample (const SdImage *img, int width, int height, SdResampleFilter filter,
                            GError **error);

/* The same on interleaved float data (no alpha handling, no clamping:
 * Lanczos may overshoot [0, 1] slightly; clamp masks after). dst holds
 * dw * dh * channels floats. Fails only on an invalid size or out of memory. */
gboolean sd_resample_f32 (const float *src, int sw, int sh, int channels, float *dst, int dw,
                          int dh, SdResampleFilter filter, GError **error);

/* A copy of the rectangle (x, y, w, h), which must lie inside img
 * (SD_ERROR_INVALID_ARG otherwise). */
SdImage *sd_image_crop (const SdImage *img, int x, int y, int w, int h, GError **error);
/* Copy src into dst with its top-left corner at (x, y), clipped to dst.
 * Both must have the same channel count. */
void sd_image_paste (SdImage *dst, const SdImage *src, int x, int y);
/* Convert to 1, 3 or 4 channels: gray -> RGB replicates; RGB -> gray uses
 * BT.601 luma (PIL's weights, L = (299 R + 587 G + 114 B) / 1000 rounded);
 * alpha is dropped or added as 255. Text chunks are copied. */
SdImage *sd_image_convert (const SdImage *img, int channels, GError **error);
/* Composite an RGBA (or RGB, copied) image over an opaque background colour,
 * giving RGB: out = round(c * a/255 + bg * (1 - a/255)). */
SdImage *sd_image_flatten (const SdImage *img, guint8 bg_r, guint8 bg_g, guint8 bg_b,
                           GError **error);

G_END_DECLS
