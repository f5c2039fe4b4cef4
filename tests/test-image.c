/* test-image.c: diffusion/sd-image - PNG decode of every colour type and bit
 * depth (test files written here with libpng), save / load round trips, text
 * chunks, a table of corrupt files, limits checked before allocation, atomic
 * save, the A1111 parameters text, tensor conversions and resampling. */
#include "config.h"
#include "sd-image.h"
#include "sd-error.h"

#include <errno.h>
#include <glib/gstdio.h>
#include <math.h>
#include <png.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>
#include <zlib.h>

#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif

/* ---- writing test PNGs with libpng ---------------------------------------------- */

typedef struct
{
  int color_type; /* PNG_COLOR_TYPE_* */
  int bit_depth;
  gboolean interlace;
  gboolean trns;  /* add a tRNS chunk (gray, RGB, palette) */
  const char *name;
} PngCase;

typedef struct
{
  int w, h, ch;        /* ch = samples per pixel in the file */
  guint16 *samples;    /* w * h * ch, file units */
  png_color palette[16];
  png_byte trns_alpha[16];
  int n_palette, n_trns;
  png_color_16 trns_color; /* file units */
} TestPng;

static int
file_ch (int color_type)
{
  switch (color_type)
    {
    case PNG_COLOR_TYPE_GRAY:
    case PNG_COLOR_TYPE_PALETTE:
      return 1;
    case PNG_COLOR_TYPE_GRAY_ALPHA:
      return 2;
    case PNG_COLOR_TYPE_RGB:
      return 3;
    default:
      return 4;
    }
}

static void
append_bytes (png_structp png, png_bytep data, png_size_t n)
{
  g_byte_array_append (png_get_io_ptr (png), data, (guint) n);
}

static void
flush_nothing (png_structp png)
{
}

/* Encode t as c describes. text_before / text_after: optional tEXt chunks
 * (Latin-1 bytes as given) before and after the image data. */
static GBytes *
write_test_png (const PngCase *c, const TestPng *t, const char *text_before,
                const char *text_after)
{
  GByteArray *out = g_byte_array_new ();
  png_structp png = png_create_write_struct (PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct (png);
  const int maxv = (1 << c->bit_depth) - 1;
  guint8 *row = g_malloc ((gsize) t->w * t->ch * 2);
  png_text txt;

  g_assert_nonnull (png);
  if (setjmp (png_jmpbuf (png)))
    g_error ("libpng failed writing a test PNG");
  png_set_write_fn (png, out, append_bytes, flush_nothing);
  png_set_IHDR (png, info, t->w, t->h, c->bit_depth, c->color_type,
                c->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE,
                PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  if (c->color_type == PNG_COLOR_TYPE_PALETTE)
    png_set_PLTE (png, info, t->palette, t->n_palette);
  if (c->trns)
    png_set_tRNS (png, info, t->trns_alpha, t->n_trns, (png_color_16p) &t->trns_color);
  if (text_before != NULL)
    {
      memset (&txt, 0, sizeof txt);
      txt.compression = PNG_TEXT_COMPRESSION_NONE;
      txt.key = (char *) "before";
      txt.text = (char *) text_before;
      png_set_text (png, info, &txt, 1);
    }
  png_write_info (png, info);
  if (c->bit_depth < 8)
    png_set_packing (png);
  {
    int passes = png_set_interlace_handling (png);
    for (int p = 0; p < passes; p++)
      for (int y = 0; y < t->h; y++)
        {
          const guint16 *s = t->samples + (gsize) y * t->w * t->ch;
          for (int i = 0; i < t->w * t->ch; i++)
            {
              g_assert_cmpint (s[i], <=, maxv);
              if (c->bit_depth == 16)
                {
                  row[2 * i] = s[i] >> 8;
                  row[2 * i + 1] = s[i] & 0xff;
                }
              else
                row[i] = (guint8) s[i];
            }
          png_write_row (png, row);
        }
  }
  if (text_after != NULL)
    {
      memset (&txt, 0, sizeof txt);
      txt.compression = PNG_TEXT_COMPRESSION_zTXt;
      txt.key = (char *) "after";
      txt.text = (char *) text_after;
      png_set_text (png, info, &txt, 1);
    }
  png_write_end (png, info);
  png_destroy_write_struct (&png, &info);
  g_free (row);
  return g_byte_array_free_to_bytes (out);
}

static void
make_test_png (const PngCase *c, TestPng *t, int w, int h, guint32 seed)
{
  const int maxv = (1 << c->bit_depth) - 1;
  GRand *r = g_rand_new_with_seed (seed);

  memset (t, 0, sizeof *t);
  t->w = w;
  t->h = h;
  t->ch = file_ch (c->color_type);
  t->samples = g_new (guint16, (gsize) w * h * t->ch);
  if (c->color_type == PNG_COLOR_TYPE_PALETTE)
    {
      t->n_palette = MIN (16, maxv + 1);
      for (int i = 0; i < t->n_palette; i++)
        {
          t->palette[i].red = (png_byte) g_rand_int_range (r, 0, 256);
          t->palette[i].green = (png_byte) g_rand_int_range (r, 0, 256);
          t->palette[i].blue = (png_byte) g_rand_int_range (r, 0, 256);
        }
      t->n_trns = c->trns ? MAX (t->n_palette / 2, 1) : 0;
      for (int i = 0; i < t->n_trns; i++)
        t->trns_alpha[i] = (png_byte) g_rand_int_range (r, 0, 256);
    }
  for (gsize i = 0; i < (gsize) w * h * t->ch; i++)
    t->samples[i] = (guint16) g_rand_int_range (
        r, 0, c->color_type == PNG_COLOR_TYPE_PALETTE ? t->n_palette : maxv + 1);
  if (c->trns && c->color_type != PNG_COLOR_TYPE_PALETTE && (gsize) w * h > 5)
    {
      /* Make the transparent colour actually occur: copy pixel 0's value. */
      t->trns_color.gray = t->samples[0];
      if (c->color_type == PNG_COLOR_TYPE_RGB)
        {
          t->trns_color.red = t->samples[0];
          t->trns_color.green = t->samples[1];
          t->trns_color.blue = t->samples[2];
          memcpy (t->samples + 3 * 5, t->samples, 3 * sizeof (guint16));
        }
      else
        t->samples[5] = t->samples[0];
    }
  g_rand_free (r);
}

static guint8
to8 (guint16 v, int bit_depth)
{
  if (bit_depth == 16)
    return (guint8) floor (v * 255.0 / 65535.0 + 0.5);
  return (guint8) (v * 255 / ((1 << bit_depth) - 1));
}

/* The 8-bit RGBA value the decoder should give for pixel i. */
static void
expected_rgba (const PngCase *c, const TestPng *t, gsize i, guint8 out[4])
{
  const guint16 *s = t->samples + i * t->ch;

  out[3] = 255;
  switch (c->color_type)
    {
    case PNG_COLOR_TYPE_PALETTE:
      out[0] = t->palette[s[0]].red;
      out[1] = t->palette[s[0]].green;
      out[2] = t->palette[s[0]].blue;
      if (s[0] < t->n_trns)
        out[3] = t->trns_alpha[s[0]];
      break;
    case PNG_COLOR_TYPE_GRAY:
    case PNG_COLOR_TYPE_GRAY_ALPHA:
      out[0] = out[1] = out[2] = to8 (s[0], c->bit_depth);
      if (c->color_type == PNG_COLOR_TYPE_GRAY_ALPHA)
        out[3] = to8 (s[1], c->bit_depth);
      else if (c->trns && s[0] == t->trns_color.gray)
        out[3] = 0;
      break;
    default:
      for (int k = 0; k < 3; k++)
        out[k] = to8 (s[k], c->bit_depth);
      if (c->color_type == PNG_COLOR_TYPE_RGB_ALPHA)
        out[3] = to8 (s[3], c->bit_depth);
      else if (c->trns && s[0] == t->trns_color.red && s[1] == t->trns_color.green
               && s[2] == t->trns_color.blue)
        out[3] = 0;
    }
}

static void
test_png_decode (gconstpointer data)
{
  const PngCase *c = data;
  const gboolean is_gray = !(c->color_type & PNG_COLOR_MASK_COLOR);
  const gboolean has_alpha = (c->color_type & PNG_COLOR_MASK_ALPHA) || c->trns;
  const int sizes[][2] = { { 1, 1 }, { 13, 7 }, { 33, 9 } };
  TestPng t;

  for (guint si = 0; si < G_N_ELEMENTS (sizes); si++)
    {
      g_autoptr (GBytes) bytes = NULL;
      make_test_png (c, &t, sizes[si][0], sizes[si][1], 1234 + si);
      bytes = write_test_png (c, &t, NULL, NULL);
      const int wants[] = { 0, 1, 3, 4 };
      for (guint wi = 0; wi < G_N_ELEMENTS (wants); wi++)
        {
          g_autoptr (GError) error = NULL;
          g_autoptr (SdImage) img = NULL;
          int want = wants[wi];
          int exp_ch = want != 0 ? want : has_alpha ? 4 : is_gray ? 1 : 3;

          img = sd_image_load_png_from_memory (g_bytes_get_data (bytes, NULL),
                                               g_bytes_get_size (bytes), want, NULL, &error);
          g_assert_no_error (error);
          g_assert_cmpint (img->width, ==, t.w);
          g_assert_cmpint (img->height, ==, t.h);
          g_assert_cmpint (img->channels, ==, exp_ch);
          for (int y = 0; y < t.h; y++)
            for (int x = 0; x < t.w; x++)
              {
                guint8 e[4], g;
                const guint8 *p = sd_image_row (img, y) + (gsize) x * exp_ch;
                expected_rgba (c, &t, (gsize) y * t.w + x, e);
                g = is_gray ? e[0] : (guint8) ((e[0] * 299 + e[1] * 587 + e[2] * 114 + 500) / 1000);
                if (exp_ch == 1)
                  {
                    if (p[0] != g)
                      g_error ("%s want %d %dx%d pixel (%d,%d): got %u expected %u", c->name, want,
                               t.w, t.h, x, y, p[0], g);
                  }
                else
                  for (int k = 0; k < exp_ch; k++)
                    if (p[k] != e[k])
                      g_error ("%s want %d %dx%d pixel (%d,%d) channel %d: got %u expected %u",
                               c->name, want, t.w, t.h, x, y, k, p[k], e[k]);
              }
        }
      g_free (t.samples);
    }
}

static const PngCase decode_cases[] = {
  { PNG_COLOR_TYPE_GRAY, 1, FALSE, FALSE, "gray1" },
  { PNG_COLOR_TYPE_GRAY, 2, FALSE, FALSE, "gray2" },
  { PNG_COLOR_TYPE_GRAY, 4, FALSE, FALSE, "gray4" },
  { PNG_COLOR_TYPE_GRAY, 8, FALSE, FALSE, "gray8" },
  { PNG_COLOR_TYPE_GRAY, 16, FALSE, FALSE, "gray16" },
  { PNG_COLOR_TYPE_GRAY, 8, FALSE, TRUE, "gray8-trns" },
  { PNG_COLOR_TYPE_GRAY, 16, FALSE, TRUE, "gray16-trns" },
  { PNG_COLOR_TYPE_GRAY, 2, TRUE, FALSE, "gray2-interlaced" },
  { PNG_COLOR_TYPE_GRAY_ALPHA, 8, FALSE, FALSE, "graya8" },
  { PNG_COLOR_TYPE_GRAY_ALPHA, 16, FALSE, FALSE, "graya16" },
  { PNG_COLOR_TYPE_RGB, 8, FALSE, FALSE, "rgb8" },
  { PNG_COLOR_TYPE_RGB, 16, FALSE, FALSE, "rgb16" },
  { PNG_COLOR_TYPE_RGB, 8, FALSE, TRUE, "rgb8-trns" },
  { PNG_COLOR_TYPE_RGB, 8, TRUE, FALSE, "rgb8-interlaced" },
  { PNG_COLOR_TYPE_RGB, 16, TRUE, FALSE, "rgb16-interlaced" },
  { PNG_COLOR_TYPE_RGB_ALPHA, 8, FALSE, FALSE, "rgba8" },
  { PNG_COLOR_TYPE_RGB_ALPHA, 16, FALSE, FALSE, "rgba16" },
  { PNG_COLOR_TYPE_RGB_ALPHA, 8, TRUE, FALSE, "rgba8-interlaced" },
  { PNG_COLOR_TYPE_PALETTE, 1, FALSE, FALSE, "palette1" },
  { PNG_COLOR_TYPE_PALETTE, 2, FALSE, FALSE, "palette2" },
  { PNG_COLOR_TYPE_PALETTE, 4, FALSE, FALSE, "palette4" },
  { PNG_COLOR_TYPE_PALETTE, 8, FALSE, FALSE, "palette8" },
  { PNG_COLOR_TYPE_PALETTE, 8, FALSE, TRUE, "palette8-trns" },
  { PNG_COLOR_TYPE_PALETTE, 4, TRUE, TRUE, "palette4-trns-interlaced" },
};

/* ---- our encoder ---------------------------------------------------------------- */

static SdImage *
random_image (int w, int h, int ch, guint32 seed)
{
  SdImage *img = sd_image_new (w, h, ch, NULL);
  GRand *r = g_rand_new_with_seed (seed);
  for (int y = 0; y < h; y++)
    for (gsize i = 0; i < (gsize) w * ch; i++)
      sd_image_row (img, y)[i] = (guint8) g_rand_int_range (r, 0, 256);
  g_rand_free (r);
  return img;
}

static void
assert_same_pixels (const SdImage *a, const SdImage *b)
{
  g_assert_cmpint (a->width, ==, b->width);
  g_assert_cmpint (a->height, ==, b->height);
  g_assert_cmpint (a->channels, ==, b->channels);
  for (int y = 0; y < a->height; y++)
    g_assert_cmpmem (sd_image_row (a, y), (gsize) a->width * a->channels, sd_image_row (b, y),
                     (gsize) b->width * b->channels);
}

static void
test_png_roundtrip (void)
{
  const int chans[] = { 1, 3, 4 };
  g_autofree char *dir = g_dir_make_tmp ("test-image-XXXXXX", NULL);

  for (guint i = 0; i < G_N_ELEMENTS (chans); i++)
    for (int level = -1; level <= 9; level += 5)
      {
        g_autoptr (SdImage) img = random_image (37, 21, chans[i], 7 + i);
        g_autoptr (GBytes) bytes = NULL;
        g_autoptr (SdImage) back = NULL;
        g_autoptr (SdImage) back2 = NULL;
        g_autoptr (GError) error = NULL;
        g_autofree char *path = g_build_filename (dir, "rt.png", NULL);

        bytes = sd_image_save_png_to_bytes (img, level, &error);
        g_assert_no_error (error);
        back = sd_image_load_png_from_memory (g_bytes_get_data (bytes, NULL),
                                              g_bytes_get_size (bytes), 0, NULL, &error);
        g_assert_no_error (error);
        assert_same_pixels (img, back);

        g_assert_true (sd_image_save_png (img, path, level, &error));
        g_assert_no_error (error);
        back2 = sd_image_load_png (path, 0, NULL, &error);
        g_assert_no_error (error);
        assert_same_pixels (img, back2);
        g_unlink (path);
      }
  g_rmdir (dir);
}

/* The chunk types of a PNG in order ("IHDR", "tEXt", ...), joined by ' '. */
static char *
chunk_list (GBytes *bytes)
{
  gsize len;
  const guint8 *d = g_bytes_get_data (bytes, &len);
  GString *s = g_string_new (NULL);

  for (gsize p = 8; p + 12 <= len;)
    {
      guint32 n = ((guint32) d[p] << 24) | (d[p + 1] << 16) | (d[p + 2] << 8) | d[p + 3];
      if (s->len > 0)
        g_string_append_c (s, ' ');
      g_string_append_len (s, (const char *) d + p + 4, 4);
      p += 12 + (gsize) n;
    }
  return g_string_free (s, FALSE);
}

static void
test_png_text (void)
{
  g_autoptr (SdImage) img = random_image (5, 4, 3, 3);
  g_autoptr (GError) error = NULL;
  g_autoptr (GBytes) bytes = NULL;
  g_autoptr (SdImage) back = NULL;
  g_autofree char *chunks = NULL;
  const char *utf8 = "une pomme rouge, caf\xc3\xa9 \xe2\x98\x95";

  g_assert_true (sd_image_set_text (img, "parameters", "a red apple\nSteps: 20", &error));
  g_assert_true (sd_image_set_text (img, "Comment", utf8, &error));
  g_assert_true (sd_image_set_text (img, "Software", "impasto", &error));
  g_assert_true (sd_image_set_text (img, "Software", NULL, &error)); /* removed */
  g_assert_no_error (error);
  g_assert_cmpuint (sd_image_get_n_texts (img), ==, 2);

  /* Bad keywords and non-UTF-8 values are refused. */
  g_assert_false (sd_image_set_text (img, "", "x", &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_clear_error (&error);
  g_assert_false (sd_image_set_text (img, " lead", "x", &error));
  g_clear_error (&error);
  g_assert_false (sd_image_set_text (img, "two  spaces", "x", &error));
  g_clear_error (&error);
  g_assert_false (sd_image_set_text (img, "caf\xc3\xa9", "x", &error));
  g_clear_error (&error);
  g_assert_false (sd_image_set_text (img, "k", "\xff\xfe", &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_clear_error (&error);

  bytes = sd_image_save_png_to_bytes (img, -1, &error);
  g_assert_no_error (error);
  chunks = chunk_list (bytes);
  /* ASCII as tEXt, UTF-8 as iTXt, both before the image data. */
  g_assert_cmpstr (chunks, ==, "IHDR tEXt iTXt IDAT IEND");
  back = sd_image_load_png_from_memory (g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes),
                                        3, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (sd_image_get_text (back, "parameters"), ==, "a red apple\nSteps: 20");
  g_assert_cmpstr (sd_image_get_text (back, "Comment"), ==, utf8);
  g_assert_null (sd_image_get_text (back, "Software"));
  g_assert_cmpstr (sd_image_get_text_key (back, 0), ==, "parameters");

  /* Latin-1 tEXt before and zTXt after IDAT (written by libpng itself). */
  {
    const PngCase c = { PNG_COLOR_TYPE_RGB, 8, FALSE, FALSE, "rgb8" };
    TestPng t;
    g_autoptr (GBytes) b2 = NULL;
    g_autoptr (SdImage) i2 = NULL;
    g_autofree char *ch2 = NULL;
    make_test_png (&c, &t, 4, 4, 9);
    b2 = write_test_png (&c, &t, "caf\xe9", "compressed after the image, " "repeated repeated repeated");
    g_free (t.samples);
    ch2 = chunk_list (b2);
    g_assert_cmpstr (ch2, ==, "IHDR tEXt IDAT zTXt IEND");
    i2 = sd_image_load_png_from_memory (g_bytes_get_data (b2, NULL), g_bytes_get_size (b2), 0,
                                        NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpstr (sd_image_get_text (i2, "before"), ==, "caf\xc3\xa9");
    g_assert_cmpstr (sd_image_get_text (i2, "after"), ==,
                     "compressed after the image, repeated repeated repeated");
  }
}

/* ---- corrupt files ------------------------------------------------------------------ */

static void
put32 (guint8 *p, guint32 v)
{
  p[0] = v >> 24;
  p[1] = v >> 16;
  p[2] = v >> 8;
  p[3] = v;
}

static void
add_chunk (GByteArray *a, const char *type, const guint8 *data, guint32 len)
{
  guint8 hdr[8], crc[4];
  guint32 c;

  put32 (hdr, len);
  memcpy (hdr + 4, type, 4);
  g_byte_array_append (a, hdr, 8);
  if (len > 0)
    g_byte_array_append (a, data, len);
  c = crc32 (0, hdr + 4, 4);
  if (len > 0)
    c = crc32 (c, data, len); /* crc32 (c, NULL, 0) would return 0 */
  put32 (crc, c);
  g_byte_array_append (a, crc, 4);
}

static const guint8 PNG_SIG[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };

/* A hand-built PNG: IHDR (w, h, depth, colour type), optional PLTE, IDAT
 * holding `rows` rows of filter-0 data (deflated; byte value `fill`), IEND. */
static GByteArray *
build_png (guint32 w, guint32 h, int depth, int ctype, guint32 rows, const guint8 *plte,
           guint32 plte_len)
{
  GByteArray *a = g_byte_array_new ();
  guint8 ihdr[13] = { 0 };
  const int bpp_bits = depth * (ctype == 2 ? 3 : ctype == 4 ? 2 : ctype == 6 ? 4 : 1);
  const gsize rowbytes = 1 + ((gsize) w * bpp_bits + 7) / 8;
  gsize raw_len = rowbytes * rows;
  guint8 *raw = g_malloc0 (MAX (raw_len, 1));
  uLongf zlen = compressBound (raw_len);
  guint8 *z = g_malloc (zlen);

  for (gsize i = 0; i < raw_len; i++)
    raw[i] = (i % rowbytes == 0) ? 0 : (guint8) (i * 7);
  if (ctype == 3)
    for (gsize i = 0; i < raw_len; i++)
      if (i % rowbytes != 0)
        raw[i] = 0; /* palette index 0 */
  g_assert_cmpint (compress2 (z, &zlen, raw, raw_len, 9), ==, Z_OK);
  g_byte_array_append (a, PNG_SIG, 8);
  put32 (ihdr, w);
  put32 (ihdr + 4, h);
  ihdr[8] = (guint8) depth;
  ihdr[9] = (guint8) ctype;
  add_chunk (a, "IHDR", ihdr, 13);
  if (plte != NULL)
    add_chunk (a, "PLTE", plte, plte_len);
  add_chunk (a, "IDAT", z, (guint32) zlen);
  add_chunk (a, "IEND", NULL, 0);
  g_free (raw);
  g_free (z);
  return a;
}

static void
expect_load_error (const guint8 *data, gsize len, int code, const char *what)
{
  g_autoptr (GError) error = NULL;
  g_autoptr (SdImage) img = sd_image_load_png_from_memory (data, len, 4, NULL, &error);

  if (img != NULL)
    g_error ("%s: loaded a corrupt PNG (%dx%d)", what, img->width, img->height);
  g_assert_nonnull (error);
  if (!g_error_matches (error, SD_ERROR, code))
    g_error ("%s: expected error code %d, got %d: %s", what, code, error->code, error->message);
  g_test_message ("%s: %s", what, error->message);
}

/* Offset of the first chunk of the given type. */
static gsize
find_chunk (const GByteArray *a, const char *type)
{
  for (gsize p = 8; p + 12 <= a->len;)
    {
      guint32 n = ((guint32) a->data[p] << 24) | (a->data[p + 1] << 16) | (a->data[p + 2] << 8)
                  | a->data[p + 3];
      if (memcmp (a->data + p + 4, type, 4) == 0)
        return p;
      p += 12 + (gsize) n;
    }
  g_assert_not_reached ();
}

/* Recompute the CRC of the chunk at offset p. */
static void
fix_crc (GByteArray *a, gsize p)
{
  guint32 n = ((guint32) a->data[p] << 24) | (a->data[p + 1] << 16) | (a->data[p + 2] << 8)
              | a->data[p + 3];
  put32 (a->data + p + 8 + n, crc32 (0, a->data + p + 4, 4 + n));
}

static void
test_png_corrupt (void)
{
  const guint8 plte[12] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 };
  g_autoptr (GByteArray) good = build_png (16, 8, 8, 2, 8, NULL, 0);
  GByteArray *a;
  gsize p;

  /* The reference file itself loads. */
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (SdImage) img = sd_image_load_png_from_memory (good->data, good->len, 0, NULL,
                                                             &error);
    g_assert_no_error (error);
    g_assert_cmpint (img->width, ==, 16);
  }

  expect_load_error ((const guint8 *) "", 0, SD_ERROR_CORRUPT, "empty");
  expect_load_error ((const guint8 *) "hello, world! this is text", 26, SD_ERROR_UNSUPPORTED,
                     "text file");
  {
    const guint8 jpeg[] = { 0xff, 0xd8, 0xff, 0xe0, 0, 16, 'J', 'F', 'I', 'F', 0 };
    g_autoptr (GError) error = NULL;
    g_assert_null (sd_image_load_png_from_memory (jpeg, sizeof jpeg, 0, NULL, &error));
    g_assert_error (error, SD_ERROR, SD_ERROR_UNSUPPORTED);
    g_assert_nonnull (strstr (error->message, "JPEG"));
  }
  expect_load_error (PNG_SIG, 5, SD_ERROR_CORRUPT, "partial signature");
  expect_load_error (PNG_SIG, 8, SD_ERROR_CORRUPT, "signature only");

  /* Every truncation of a valid file is an error. */
  for (gsize n = 9; n < good->len; n++)
    {
      g_autoptr (GError) error = NULL;
      g_autoptr (SdImage) img = sd_image_load_png_from_memory (good->data, n, 3, NULL, &error);
      if (img != NULL)
        g_error ("truncated at %" G_GSIZE_FORMAT " of %u bytes: loaded", n, good->len);
      g_assert_error (error, SD_ERROR, SD_ERROR_CORRUPT);
    }

  /* CRC errors: IHDR, IDAT, and an ancillary chunk. */
  a = g_byte_array_new ();
  g_byte_array_append (a, good->data, good->len);
  a->data[8 + 8 + 13] ^= 0x55; /* IHDR CRC */
  expect_load_error (a->data, a->len, SD_ERROR_CORRUPT, "IHDR CRC");
  g_byte_array_unref (a);

  a = g_byte_array_new ();
  g_byte_array_append (a, good->data, good->len);
  p = find_chunk (a, "IDAT");
  a->data[p + 8 + 3] ^= 0x01;
  expect_load_error (a->data, a->len, SD_ERROR_CORRUPT, "IDAT CRC");
  g_byte_array_unref (a);

  {
    GByteArray *b = g_byte_array_new ();
    gsize idat = find_chunk (good, "IDAT");
    g_byte_array_append (b, good->data, idat);
    add_chunk (b, "tEXt", (const guint8 *) "key\0value", 9);
    b->data[b->len - 1] ^= 0xff; /* its CRC */
    g_byte_array_append (b, good->data + idat, good->len - idat);
    expect_load_error (b->data, b->len, SD_ERROR_CORRUPT, "tEXt CRC");
    g_byte_array_unref (b);
  }

  /* Bad IHDR fields (valid CRCs). */
  {
    const struct
    {
      int offset; /* in IHDR data */
      guint8 value;
      const char *what;
    } bad[] = {
      { 8, 3, "bit depth 3" },
      { 9, 5, "colour type 5" },
      { 10, 1, "compression method 1" },
      { 11, 1, "filter method 1" },
      { 12, 2, "interlace method 2" },
      { 8, 16, "palette not allowed" }, /* set below with colour type 3 */
    };
    for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
      {
        a = g_byte_array_new ();
        g_byte_array_append (a, good->data, good->len);
        a->data[16 + bad[i].offset] = bad[i].value;
        if (i == G_N_ELEMENTS (bad) - 1)
          a->data[16 + 9] = 3;
        fix_crc (a, 8);
        expect_load_error (a->data, a->len, SD_ERROR_CORRUPT, bad[i].what);
        g_byte_array_unref (a);
      }
    a = g_byte_array_new ();
    g_byte_array_append (a, good->data, good->len);
    put32 (a->data + 16, 0);
    fix_crc (a, 8);
    expect_load_error (a->data, a->len, SD_ERROR_CORRUPT, "width 0");
    g_byte_array_unref (a);
  }

  /* IDAT that is not zlib. */
  a = g_byte_array_new ();
  g_byte_array_append (a, good->data, good->len);
  p = find_chunk (a, "IDAT");
  for (gsize i = 0; i < 16; i++)
    a->data[p + 8 + i] = (guint8) (i * 37 + 11);
  fix_crc (a, p);
  expect_load_error (a->data, a->len, SD_ERROR_CORRUPT, "IDAT garbage");
  g_byte_array_unref (a);

  /* Too little image data (3 of 8 rows), no IDAT, palette image without
   * PLTE, missing IEND. */
  a = build_png (16, 8, 8, 2, 3, NULL, 0);
  expect_load_error (a->data, a->len, SD_ERROR_CORRUPT, "short IDAT");
  g_byte_array_unref (a);
  {
    GByteArray *b = g_byte_array_new ();
    g_byte_array_append (b, good->data, find_chunk (good, "IDAT"));
    add_chunk (b, "IEND", NULL, 0);
    expect_load_error (b->data, b->len, SD_ERROR_CORRUPT, "no IDAT");
    g_byte_array_unref (b);
  }
  a = build_png (16, 8, 8, 3, 8, NULL, 0);
  expect_load_error (a->data, a->len, SD_ERROR_CORRUPT, "palette without PLTE");
  g_byte_array_unref (a);
  a = build_png (16, 8, 8, 3, 8, plte, 12);
  {
    g_autoptr (GError) error = NULL;
    g_autoptr (SdImage) img = sd_image_load_png_from_memory (a->data, a->len, 3, NULL, &error);
    g_assert_no_error (error);
    g_assert_cmpuint (sd_image_row (img, 7)[15 * 3 + 2], ==, 3); /* palette entry 0 */
  }
  g_byte_array_set_size (a, a->len - 12);
  expect_load_error (a->data, a->len, SD_ERROR_CORRUPT, "no IEND");
  g_byte_array_unref (a);
}

/* Seeded random mutations of small valid files, with the CRCs fixed up half
 * of the time so the damage reaches the decoder: every outcome is either an
 * image or an error, never a crash (run under ASan in CI). */
static void
test_png_mutations (void)
{
  const PngCase cases[] = {
    { PNG_COLOR_TYPE_PALETTE, 4, TRUE, TRUE, "palette4" },
    { PNG_COLOR_TYPE_RGB_ALPHA, 16, FALSE, FALSE, "rgba16" },
    { PNG_COLOR_TYPE_GRAY, 2, TRUE, TRUE, "gray2" },
  };
  const guint32 seed = 4242;
  GRand *r = g_rand_new_with_seed (seed);
  int loaded = 0, failed = 0;

  for (guint ci = 0; ci < G_N_ELEMENTS (cases); ci++)
    {
      TestPng t;
      g_autoptr (GBytes) bytes = NULL;
      make_test_png (&cases[ci], &t, 11, 7, 5 + ci);
      bytes = write_test_png (&cases[ci], &t, "latin1 \xe9", "after");
      g_free (t.samples);
      for (int it = 0; it < 1500; it++)
        {
          GByteArray *a = g_byte_array_new ();
          const int n_mut = g_rand_int_range (r, 1, 5);
          g_autoptr (GError) error = NULL;
          SdImage *img;

          g_byte_array_append (a, g_bytes_get_data (bytes, NULL), g_bytes_get_size (bytes));
          for (int m = 0; m < n_mut; m++)
            {
              const guint pos = g_rand_int_range (r, 8, a->len);
              a->data[pos] = g_rand_boolean (r) ? (guint8) g_rand_int_range (r, 0, 256)
                                                : a->data[pos] ^ (1u << g_rand_int_range (r, 0, 8));
            }
          if (g_rand_boolean (r))
            for (gsize p = 8; p + 12 <= a->len;)
              {
                guint32 n = ((guint32) a->data[p] << 24) | (a->data[p + 1] << 16)
                            | (a->data[p + 2] << 8) | a->data[p + 3];
                if (n > a->len - p - 12)
                  break;
                fix_crc (a, p);
                p += 12 + (gsize) n;
              }
          img = sd_image_load_png_from_memory (a->data, a->len, it % 5 == 2 ? 0 : it % 5, NULL,
                                               &error);
          if ((img == NULL) == (error == NULL))
            g_error ("seed %u, case %s, iteration %d: image %p with error %p", seed,
                     cases[ci].name, it, (void *) img, (void *) error);
          if (img != NULL)
            loaded++;
          else
            failed++;
          sd_image_free (img);
          g_byte_array_unref (a);
        }
    }
  g_test_message ("mutations: %d loaded, %d refused", loaded, failed);
  g_assert_cmpint (failed, >, 0);
  g_rand_free (r);
}

/* Absurd and lying headers must be refused before allocating: run in a
 * subprocess whose address space is capped at 512 MiB, so a 1 GiB (or 40 GB)
 * allocation attempt would show up as an out-of-memory error instead. */
static void
test_png_huge_subprocess (void)
{
  g_autoptr (GByteArray) a = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (SdImage) img = NULL;
#ifndef UNDER_ASAN
  struct rlimit rl = { 512u << 20, 512u << 20 };
  g_assert_cmpint (setrlimit (RLIMIT_AS, &rl), ==, 0);
#endif

  /* 100000 x 100000 RGBA = 40 GB: over the default limit. */
  a = build_png (16, 8, 8, 6, 8, NULL, 0);
  put32 (a->data + 16, 100000);
  put32 (a->data + 20, 100000);
  fix_crc (a, 8);
  img = sd_image_load_png_from_memory (a->data, a->len, 4, NULL, &error);
  g_assert_null (img);
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_clear_error (&error);

  /* 2^31 - 1 wide: also a limit error, not libpng's own. */
  put32 (a->data + 16, 0x7fffffff);
  put32 (a->data + 20, 1);
  fix_crc (a, 8);
  img = sd_image_load_png_from_memory (a->data, a->len, 4, NULL, &error);
  g_assert_null (img);
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_clear_error (&error);

  /* 16000 x 16000 RGBA is within the limits (1 GB), but a few hundred
   * bytes cannot inflate to it: corrupt, found before allocating. */
  put32 (a->data + 16, 16000);
  put32 (a->data + 20, 16000);
  fix_crc (a, 8);
  img = sd_image_load_png_from_memory (a->data, a->len, 4, NULL, &error);
  g_assert_null (img);
  g_assert_error (error, SD_ERROR, SD_ERROR_CORRUPT);
  g_clear_error (&error);

  /* A text chunk declaring 400 MB in a tiny file: libpng would allocate and
   * zero a buffer that size before finding the file truncated. The peak
   * resident size shows whether that happened. */
  {
    g_autoptr (GByteArray) good = build_png (16, 8, 8, 2, 8, NULL, 0);
    g_autoptr (GByteArray) b = g_byte_array_new ();
    const gsize idat = find_chunk (good, "IDAT");
    guint8 hdr[8];
    struct rusage ru0, ru1;

    g_byte_array_append (b, good->data, idat);
    put32 (hdr, 400u << 20);
    memcpy (hdr + 4, "tEXt", 4);
    g_byte_array_append (b, hdr, 8);
    g_byte_array_append (b, (const guint8 *) "key\0value", 9);
    getrusage (RUSAGE_SELF, &ru0);
    img = sd_image_load_png_from_memory (b->data, b->len, 4, NULL, &error);
    getrusage (RUSAGE_SELF, &ru1);
    g_assert_null (img);
    g_assert_error (error, SD_ERROR, SD_ERROR_CORRUPT);
    g_clear_error (&error);
    g_test_message ("peak RSS %ld -> %ld KiB", ru0.ru_maxrss, ru1.ru_maxrss);
    g_assert_cmpint (ru1.ru_maxrss - ru0.ru_maxrss, <, 32 * 1024);
  }
}

static void
test_png_huge (void)
{
#ifdef UNDER_ASAN
  g_test_message ("ASan build: running without the address-space cap");
#endif
  g_test_trap_subprocess ("/image/png/huge/subprocess", 60 * G_USEC_PER_SEC,
                          G_TEST_SUBPROCESS_INHERIT_STDERR);
  g_test_trap_assert_passed ();
}

static void
test_png_limits (void)
{
  g_autoptr (SdImage) img = random_image (300, 200, 3, 5);
  g_autoptr (GBytes) bytes = sd_image_save_png_to_bytes (img, 1, NULL);
  const guint8 *d = g_bytes_get_data (bytes, NULL);
  const gsize n = g_bytes_get_size (bytes);
  const SdImageLimits narrow = { 256, 0, 0 }, short_ = { 0, 199, 0 }, few = { 0, 0, 50000 },
                      exact = { 300, 200, 60000 };
  g_autoptr (GError) error = NULL;
  g_autoptr (SdImage) ok = NULL;

  g_assert_null (sd_image_load_png_from_memory (d, n, 3, &narrow, &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_clear_error (&error);
  g_assert_null (sd_image_load_png_from_memory (d, n, 3, &short_, &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_clear_error (&error);
  g_assert_null (sd_image_load_png_from_memory (d, n, 3, &few, &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_clear_error (&error);
  ok = sd_image_load_png_from_memory (d, n, 3, &exact, &error);
  g_assert_no_error (error);
  assert_same_pixels (img, ok);

  /* Bad arguments and missing files. */
  g_assert_null (sd_image_load_png_from_memory (d, n, 2, NULL, &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_clear_error (&error);
  g_assert_null (sd_image_load_png ("/nonexistent/x.png", 0, NULL, &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_IO);
  g_clear_error (&error);
  g_assert_null (sd_image_load_png ("/", 0, NULL, &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_IO);
  g_clear_error (&error);
  g_assert_null (sd_image_new (0, 5, 3, &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_clear_error (&error);
  g_assert_null (sd_image_new (5, 5, 2, &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
}

/* ---- atomic save ------------------------------------------------------------------------ */

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

static char **
dir_entries (const char *dir)
{
  GDir *d = g_dir_open (dir, 0, NULL);
  GPtrArray *a = g_ptr_array_new ();
  const char *name;

  while ((name = g_dir_read_name (d)) != NULL)
    g_ptr_array_add (a, g_strdup (name));
  g_dir_close (d);
  g_ptr_array_sort (a, compare_names);
  g_ptr_array_add (a, NULL);
  return (char **) g_ptr_array_free (a, FALSE);
}

static char *
entries_joined (const char *dir)
{
  g_auto (GStrv) e = dir_entries (dir);
  GString *s = g_string_new (NULL);
  for (guint i = 0; e[i] != NULL; i++)
    {
      if (i > 0)
        g_string_append_c (s, ' ');
      g_string_append (s, e[i]);
    }
  return g_string_free (s, FALSE);
}

static void
test_png_save_atomic (void)
{
  g_autofree char *dir = g_dir_make_tmp ("test-image-save-XXXXXX", NULL);
  g_autofree char *sub = g_build_filename (dir, "sub", NULL);
  g_autofree char *out = g_build_filename (dir, "out.png", NULL);
  g_autofree char *missing = g_build_filename (dir, "missing", "out.png", NULL);
  g_autoptr (SdImage) img = random_image (20, 10, 4, 11);
  g_autoptr (GError) error = NULL;
  g_autofree char *list = NULL;

  g_assert_cmpint (g_mkdir (sub, 0755), ==, 0);

  /* Missing folder: error, nothing created. */
  g_assert_false (sd_image_save_png (img, missing, -1, &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_IO);
  g_test_message ("missing folder: %s", error->message);
  g_clear_error (&error);
  list = entries_joined (dir);
  g_assert_cmpstr (list, ==, "sub");
  g_clear_pointer (&list, g_free);

  /* The path is a folder: the rename fails, the temporary file is removed. */
  g_assert_false (sd_image_save_png (img, sub, -1, &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_IO);
  g_test_message ("folder as target: %s", error->message);
  g_clear_error (&error);
  list = entries_joined (dir);
  g_assert_cmpstr (list, ==, "sub");
  g_clear_pointer (&list, g_free);
  g_assert_true (g_file_test (sub, G_FILE_TEST_IS_DIR));

  /* Replacing an existing file leaves exactly the new file. */
  g_assert_true (g_file_set_contents (out, "old contents", -1, NULL));
  g_assert_true (sd_image_save_png (img, out, -1, &error));
  g_assert_no_error (error);
  list = entries_joined (dir);
  g_assert_cmpstr (list, ==, "out.png sub");
  g_clear_pointer (&list, g_free);
  {
    g_autoptr (SdImage) back = sd_image_load_png (out, 4, NULL, &error);
    g_assert_no_error (error);
    assert_same_pixels (img, back);
  }

  /* A read-only folder (root ignores permissions, so only as a user). */
  if (geteuid () != 0)
    {
      g_autofree char *ro = g_build_filename (sub, "ro.png", NULL);
      g_assert_cmpint (g_chmod (sub, 0555), ==, 0);
      g_assert_false (sd_image_save_png (img, ro, -1, &error));
      g_assert_error (error, SD_ERROR, SD_ERROR_IO);
      g_clear_error (&error);
      g_chmod (sub, 0755);
      list = entries_joined (sub);
      g_assert_cmpstr (list, ==, "");
      g_clear_pointer (&list, g_free);
    }
  else
    g_test_message ("running as root: the read-only folder case is not checked");

  g_unlink (out);
  g_rmdir (sub);
  g_rmdir (dir);
}

/* ---- parameters text ---------------------------------------------------------------------- */

static void
test_params_format (void)
{
  SdGenParams p;
  g_autofree char *s = NULL;
  g_autofree char *s2 = NULL;
  g_autofree char *s3 = NULL;

  sd_gen_params_init (&p);
  p.prompt = "a red apple";
  p.negative_prompt = "blurry";
  p.steps = 20;
  p.sampler = "Euler a";
  p.cfg_scale = 7;
  p.has_seed = TRUE;
  p.seed = 42;
  p.width = 512;
  p.height = 512;
  p.model = "name";
  p.denoising_strength = 0.6;
  s = sd_format_parameters (&p);
  g_assert_cmpstr (s, ==,
                   "a red apple\nNegative prompt: blurry\nSteps: 20, Sampler: Euler a, CFG scale: "
                   "7, Seed: 42, Size: 512x512, Model: name, Denoising strength: 0.6, Version: "
                   "impasto " IMPASTO_VERSION);

  /* Every field, quoting, no negative prompt, no version. */
  sd_gen_params_init (&p);
  p.prompt = "  spaced prompt";
  p.steps = 30;
  p.sampler = "DPM++ 2M";
  p.schedule = "Karras";
  p.cfg_scale = 7.5;
  p.has_seed = TRUE;
  p.seed = G_MAXUINT64;
  p.width = 1024;
  p.height = 768;
  p.model_hash = "6ce0161689";
  p.model = "my:model, v2";
  p.denoising_strength = 0.75;
  p.clip_skip = 2;
  p.mask_blur = 4;
  p.version = "";
  s2 = sd_format_parameters (&p);
  g_assert_cmpstr (s2, ==,
                   "spaced prompt\nSteps: 30, Sampler: DPM++ 2M, Schedule type: Karras, CFG "
                   "scale: 7.5, Seed: 18446744073709551615, Size: 1024x768, Model hash: "
                   "6ce0161689, Model: \"my:model, v2\", Denoising strength: 0.75, Clip skip: 2, "
                   "Mask blur: 4");

  /* JSON escapes in quoted values. */
  sd_gen_params_init (&p);
  p.prompt = "x";
  p.model = "a \"b\"\\c,\n\x01";
  p.version = "";
  s3 = sd_format_parameters (&p);
  g_assert_cmpstr (s3, ==, "x\nModel: \"a \\\"b\\\"\\\\c,\\n\\u0001\"");
}

static void
test_params_roundtrip (void)
{
  SdGenParams p, q;
  g_autofree char *s = NULL;
  g_autoptr (GError) error = NULL;
  g_autoptr (GHashTable) all = NULL;

  sd_gen_params_init (&p);
  p.prompt = "line one, (detail:1.2)\nline two: more";
  p.negative_prompt = "bad\nworse";
  p.steps = 25;
  p.sampler = "Euler a";
  p.schedule = "Karras";
  p.cfg_scale = 6.5;
  p.has_seed = TRUE;
  p.seed = 3021598733u;
  p.width = 640;
  p.height = 832;
  p.model_hash = "abc123";
  p.model = "model: \"quoted\", with comma";
  p.denoising_strength = 0.35;
  p.clip_skip = 2;
  p.mask_blur = 0;
  s = sd_format_parameters (&p);

  sd_gen_params_init (&q);
  g_assert_true (sd_parse_parameters (s, &q, &all, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (q.prompt, ==, p.prompt);
  g_assert_cmpstr (q.negative_prompt, ==, p.negative_prompt);
  g_assert_cmpint (q.steps, ==, p.steps);
  g_assert_cmpstr (q.sampler, ==, p.sampler);
  g_assert_cmpstr (q.schedule, ==, p.schedule);
  g_assert_cmpfloat (q.cfg_scale, ==, p.cfg_scale);
  g_assert_true (q.has_seed);
  g_assert_cmpuint (q.seed, ==, p.seed);
  g_assert_cmpint (q.width, ==, 640);
  g_assert_cmpint (q.height, ==, 832);
  g_assert_cmpstr (q.model_hash, ==, p.model_hash);
  g_assert_cmpstr (q.model, ==, p.model);
  g_assert_cmpfloat (q.denoising_strength, ==, p.denoising_strength);
  g_assert_cmpint (q.clip_skip, ==, 2);
  g_assert_cmpint (q.mask_blur, ==, 0);
  g_assert_cmpstr (q.version, ==, "impasto " IMPASTO_VERSION);
  g_assert_cmpstr (g_hash_table_lookup (all, "Model"), ==, p.model);
  g_assert_cmpuint (g_hash_table_size (all), ==, 12);
  sd_gen_params_clear (&q);
  g_assert_null (q.prompt);

  /* Through a PNG. */
  {
    g_autoptr (SdImage) img = random_image (3, 3, 3, 1);
    g_autoptr (GBytes) b = NULL;
    g_autoptr (SdImage) back = NULL;
    g_assert_true (sd_image_set_text (img, "parameters", s, &error));
    b = sd_image_save_png_to_bytes (img, -1, &error);
    back = sd_image_load_png_from_memory (g_bytes_get_data (b, NULL), g_bytes_get_size (b), 0,
                                          NULL, &error);
    g_assert_no_error (error);
    g_assert_true (sd_parse_parameters (sd_image_get_text (back, "parameters"), &q, NULL, &error));
    g_assert_cmpstr (q.model, ==, p.model);
    sd_gen_params_clear (&q);
  }
}

static void
test_params_parse_a1111 (void)
{
  /* As stable-diffusion-webui 1.10 writes it (hires fix, LoRA hashes). */
  const char *text
      = "masterpiece, 1girl, (red hair:1.2), <lora:add_detail:0.5>\n"
        "Negative prompt: lowres, bad anatomy\n"
        "Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7.5, Seed: 3021598733, "
        "Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Denoising strength: "
        "0.45, Clip skip: 2, Hires upscale: 2, Hires upscaler: Latent, Lora hashes: \"add_detail: "
        "7c6bad76eb54, more_details: 3b8aa1d351ef\", Version: v1.10.1";
  SdGenParams p;
  g_autoptr (GHashTable) all = NULL;
  g_autoptr (GError) error = NULL;

  sd_gen_params_init (&p);
  g_assert_true (sd_parse_parameters (text, &p, &all, &error));
  g_assert_cmpstr (p.prompt, ==, "masterpiece, 1girl, (red hair:1.2), <lora:add_detail:0.5>");
  g_assert_cmpstr (p.negative_prompt, ==, "lowres, bad anatomy");
  g_assert_cmpint (p.steps, ==, 28);
  g_assert_cmpstr (p.sampler, ==, "DPM++ 2M");
  g_assert_cmpstr (p.schedule, ==, "Karras");
  g_assert_cmpfloat (p.cfg_scale, ==, 7.5);
  g_assert_cmpuint (p.seed, ==, 3021598733u);
  g_assert_cmpint (p.width, ==, 512);
  g_assert_cmpint (p.height, ==, 768);
  g_assert_cmpstr (p.model_hash, ==, "6ce0161689");
  g_assert_cmpstr (p.model, ==, "v1-5-pruned-emaonly");
  g_assert_cmpfloat (p.denoising_strength, ==, 0.45);
  g_assert_cmpint (p.clip_skip, ==, 2);
  g_assert_cmpint (p.mask_blur, ==, -1);
  g_assert_cmpstr (p.version, ==, "v1.10.1");
  g_assert_cmpstr (g_hash_table_lookup (all, "Lora hashes"), ==,
                   "add_detail: 7c6bad76eb54, more_details: 3b8aa1d351ef");
  g_assert_cmpstr (g_hash_table_lookup (all, "Hires upscaler"), ==, "Latent");
  sd_gen_params_clear (&p);

  /* Only a prompt (fewer than 3 pairs on the last line): all prompt. */
  g_assert_true (sd_parse_parameters ("  a cat\nSteps: 20, Seed: 1  ", &p, NULL, &error));
  g_assert_cmpstr (p.prompt, ==, "a cat\nSteps: 20, Seed: 1");
  g_assert_cmpint (p.steps, ==, 0);
  g_assert_false (p.has_seed);
  sd_gen_params_clear (&p);

  /* No prompt at all, malformed numbers left absent, CRLF lines. */
  g_assert_true (sd_parse_parameters ("Steps: x, Sampler: Euler, CFG scale: 7y, Seed: -1", &p,
                                      NULL, &error));
  g_assert_cmpstr (p.prompt, ==, "");
  g_assert_cmpint (p.steps, ==, 0);
  g_assert_cmpstr (p.sampler, ==, "Euler");
  g_assert_true (p.cfg_scale < 0);
  g_assert_false (p.has_seed);
  sd_gen_params_clear (&p);
  g_assert_true (sd_parse_parameters ("p1\r\nNegative prompt: n1\r\nSteps: 3, Seed: 4, Size: 8x16",
                                      &p, NULL, &error));
  g_assert_cmpstr (p.prompt, ==, "p1");
  g_assert_cmpstr (p.negative_prompt, ==, "n1");
  g_assert_cmpint (p.width, ==, 8);
  g_assert_cmpint (p.height, ==, 16);
  sd_gen_params_clear (&p);

  g_assert_true (sd_parse_parameters ("", &p, NULL, &error));
  g_assert_cmpstr (p.prompt, ==, "");
  sd_gen_params_clear (&p);

  g_assert_false (sd_parse_parameters ("bad \xff utf8", &p, NULL, &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
}

/* ---- tensors and masks ---------------------------------------------------------------- */

static void
test_tensor (void)
{
  g_autoptr (SdImage) img = sd_image_new (256, 1, 4, NULL);
  g_autoptr (SdImage) back = sd_image_new (256, 1, 3, NULL);
  g_autofree float *t = g_new (float, 3 * 256);

  for (int x = 0; x < 256; x++)
    {
      guint8 *p = sd_image_row (img, 0) + x * 4;
      p[0] = (guint8) x;
      p[1] = (guint8) (255 - x);
      p[2] = (guint8) (x * 7);
      p[3] = 9;
    }
  sd_image_to_tensor (img, t);
  /* Planar layout and the exact ends. */
  g_assert_cmpfloat (t[0], ==, -1.0f);
  g_assert_cmpfloat (t[255], ==, 1.0f);
  g_assert_cmpfloat (t[256 + 0], ==, 1.0f);
  g_assert_cmpfloat (t[256 + 255], ==, -1.0f);
  for (int x = 0; x < 256; x++)
    g_assert_cmpfloat (t[x], ==, 2.0f * ((float) x / 255.0f) - 1.0f);
  /* u8 -> float -> u8 is the identity for all 256 values. */
  sd_image_from_tensor (back, t);
  for (int x = 0; x < 256; x++)
    for (int k = 0; k < 3; k++)
      g_assert_cmpuint (sd_image_row (back, 0)[x * 3 + k], ==, sd_image_row (img, 0)[x * 4 + k]);

  /* Clamping, NaN, half-to-even rounding and alpha. */
  {
    g_autoptr (SdImage) o = sd_image_new (6, 1, 4, NULL);
    float v[18] = { -3.0f, 5.0f, NAN, 0.0f, -1.0f, 1.0f };
    /* 0.0 -> 0.5 * 255 = 127.5 -> 128 (even); numpy gives the same. */
    for (int i = 6; i < 18; i++)
      v[i] = 0.0f;
    sd_image_from_tensor (o, v);
    const guint8 *p = sd_image_row (o, 0);
    g_assert_cmpuint (p[0], ==, 0);
    g_assert_cmpuint (p[4], ==, 255);
    g_assert_cmpuint (p[8], ==, 0);
    g_assert_cmpuint (p[12], ==, 128);
    g_assert_cmpuint (p[16], ==, 0);
    g_assert_cmpuint (p[20], ==, 255);
    g_assert_cmpuint (p[3], ==, 255);
  }

  /* Gray replicates into three planes. */
  {
    g_autoptr (SdImage) g = sd_image_new (2, 1, 1, NULL);
    float tt[6];
    sd_image_row (g, 0)[0] = 0;
    sd_image_row (g, 0)[1] = 255;
    sd_image_to_tensor (g, tt);
    g_assert_cmpfloat (tt[0], ==, -1.0f);
    g_assert_cmpfloat (tt[3], ==, 1.0f);
    g_assert_cmpfloat (tt[5], ==, 1.0f);
  }
}

static void
test_mask (void)
{
  g_autoptr (SdImage) img = sd_image_new (256, 2, 4, NULL);
  g_autofree float *m = g_new (float, 512);
  g_autoptr (SdImage) back = sd_image_new (256, 2, 1, NULL);

  for (int y = 0; y < 2; y++)
    for (int x = 0; x < 256; x++)
      sd_image_row (img, y)[x * 4 + 3] = (guint8) (y ? 255 - x : x);
  sd_image_to_mask (img, 3, m);
  g_assert_cmpfloat (m[0], ==, 0.0f);
  g_assert_cmpfloat (m[255], ==, 1.0f);
  g_assert_cmpfloat (m[256], ==, 1.0f);
  sd_image_from_mask (back, 0, m);
  for (int x = 0; x < 256; x++)
    g_assert_cmpuint (sd_image_row (back, 0)[x], ==, x);
  m[0] = -1.0f;
  m[1] = 2.0f;
  m[2] = NAN;
  sd_image_from_mask (back, 0, m);
  g_assert_cmpuint (sd_image_row (back, 0)[0], ==, 0);
  g_assert_cmpuint (sd_image_row (back, 0)[1], ==, 255);
  g_assert_cmpuint (sd_image_row (back, 0)[2], ==, 0);
}

/* ---- resampling ------------------------------------------------------------------------------ */

static void
fill_constant (SdImage *img, const guint8 *v)
{
  for (int y = 0; y < img->height; y++)
    for (int x = 0; x < img->width; x++)
      memcpy (sd_image_row (img, y) + (gsize) x * img->channels, v, img->channels);
}

static void
test_resample_constant (void)
{
  const int sizes[][4] = { { 100, 60, 37, 23 }, { 100, 60, 256, 160 }, { 100, 60, 1, 1 },
                           { 100, 60, 100, 1 }, { 7, 3, 512, 512 },  { 1, 1, 9, 4 },
                           { 640, 480, 512, 512 } };
  const guint8 colours[][4] = { { 37, 200, 129, 255 }, { 0, 255, 1, 77 }, { 255, 255, 255, 3 } };
  const SdResampleFilter filters[] = { SD_RESAMPLE_NEAREST, SD_RESAMPLE_BILINEAR,
                                       SD_RESAMPLE_LANCZOS3 };

  for (guint s = 0; s < G_N_ELEMENTS (sizes); s++)
    for (guint f = 0; f < G_N_ELEMENTS (filters); f++)
      for (int ch = 1; ch <= 4; ch++)
        {
          if (ch == 2)
            continue;
          for (guint c = 0; c < G_N_ELEMENTS (colours); c++)
            {
              g_autoptr (SdImage) img = sd_image_new (sizes[s][0], sizes[s][1], ch, NULL);
              g_autoptr (SdImage) out = NULL;
              g_autoptr (GError) error = NULL;
              fill_constant (img, colours[c]);
              out = sd_image_resample (img, sizes[s][2], sizes[s][3], filters[f], &error);
              g_assert_no_error (error);
              for (int y = 0; y < out->height; y++)
                for (int x = 0; x < out->width; x++)
                  for (int k = 0; k < ch; k++)
                    if (sd_image_row (out, y)[x * ch + k] != colours[c][k])
                      g_error ("filter %d, %dx%d -> %dx%d, %d channels, colour %u: pixel "
                               "(%d,%d)[%d] = %u, expected %u",
                               filters[f], sizes[s][0], sizes[s][1], sizes[s][2], sizes[s][3], ch,
                               c, x, y, k, sd_image_row (out, y)[x * ch + k], colours[c][k]);
            }
        }
}

static void
test_resample_gradient (void)
{
  const int w = 256;
  g_autoptr (SdImage) img = sd_image_new (w, 4, 3, NULL);
  const int outs[] = { 64, 100, 1024, 333 };

  /* v(x) = x at pixel centre x + 0.5; a linear ramp is reproduced by both
   * filters wherever the kernel window is inside the image. */
  for (int y = 0; y < 4; y++)
    for (int x = 0; x < w; x++)
      for (int k = 0; k < 3; k++)
        sd_image_row (img, y)[x * 3 + k] = (guint8) x;
  for (guint i = 0; i < G_N_ELEMENTS (outs); i++)
    for (int f = SD_RESAMPLE_BILINEAR; f <= SD_RESAMPLE_LANCZOS3; f++)
      {
        const int ow = outs[i];
        const double scale = (double) w / ow;
        const double margin = (f == SD_RESAMPLE_LANCZOS3 ? 3.0 : 1.0) * MAX (scale, 1.0) + 1;
        g_autoptr (SdImage) out = sd_image_resample (img, ow, 7, f, NULL);
        double max_err = 0;
        for (int x = 0; x < ow; x++)
          {
            const double c = (x + 0.5) * scale; /* input coordinate */
            if (c < margin || c > w - margin)
              continue;
            for (int y = 0; y < 7; y++)
              max_err = MAX (max_err, fabs (sd_image_row (out, y)[x * 3 + 1] - (c - 0.5)));
          }
        if (max_err > 1.0)
          g_error ("gradient %d -> %d, filter %d: max error %.3f levels", w, ow, f, max_err);
      }
}

static void
test_resample_area (void)
{
  /* A 1-px checkerboard halved must average to grey (127/128) everywhere:
   * a point-sampling resize would give 0 or 255. */
  g_autoptr (SdImage) img = sd_image_new (256, 256, 1, NULL);
  g_autoptr (SdImage) out = NULL;
  g_autoptr (SdImage) noise = random_image (300, 200, 3, 77);
  g_autoptr (SdImage) small = NULL;
  double sum_in = 0, sum_out = 0;

  for (int y = 0; y < 256; y++)
    for (int x = 0; x < 256; x++)
      sd_image_row (img, y)[x] = ((x + y) & 1) ? 255 : 0;
  for (int f = SD_RESAMPLE_BILINEAR; f <= SD_RESAMPLE_LANCZOS3; f++)
    {
      out = sd_image_resample (img, 128, 128, f, NULL);
      for (int y = 0; y < 128; y++)
        for (int x = 0; x < 128; x++)
          {
            /* Away from the borders (where the kernel window is cut and
             * renormalised, as Pillow does) it is grey to within rounding. */
            const guint8 v = sd_image_row (out, y)[x];
            const gboolean inner = x >= 3 && y >= 3 && x < 125 && y < 125;
            if (inner ? (v < 127 || v > 128) : (v < 90 || v > 165))
              g_error ("filter %d: checkerboard pixel (%d,%d) = %u", f, x, y, v);
          }
      g_clear_pointer (&out, sd_image_free);
    }

  /* Reduction by 3 keeps the mean. */
  small = sd_image_resample (noise, 100, 67, SD_RESAMPLE_LANCZOS3, NULL);
  for (int y = 0; y < 200; y++)
    for (int x = 0; x < 900; x++)
      sum_in += sd_image_row (noise, y)[x];
  for (int y = 0; y < 67; y++)
    for (int x = 0; x < 300; x++)
      sum_out += sd_image_row (small, y)[x];
  g_assert_cmpfloat (fabs (sum_in / (200 * 900) - sum_out / (67 * 300)), <, 1.0);
}

static void
test_resample_alpha (void)
{
  /* Left half opaque red, right half transparent green: premultiplied
   * filtering gives no green (or dark) fringe in the opaque-ish pixels. */
  g_autoptr (SdImage) img = sd_image_new (64, 4, 4, NULL);
  g_autoptr (SdImage) out = NULL;

  for (int y = 0; y < 4; y++)
    for (int x = 0; x < 64; x++)
      {
        guint8 *p = sd_image_row (img, y) + x * 4;
        if (x < 32)
          p[0] = 255, p[1] = 0, p[2] = 0, p[3] = 255;
        else
          p[0] = 0, p[1] = 255, p[2] = 0, p[3] = 0;
      }
  out = sd_image_resample (img, 20, 3, SD_RESAMPLE_LANCZOS3, NULL);
  for (int x = 0; x < 20; x++)
    {
      const guint8 *p = sd_image_row (out, 1) + x * 4;
      if (p[3] == 0)
        g_assert_true (p[0] == 0 && p[1] == 0 && p[2] == 0);
      else
        {
          g_assert_cmpuint (p[0], ==, 255);
          g_assert_cmpuint (p[1], ==, 0);
        }
    }
}

static void
test_resample_f32 (void)
{
  g_autofree float *m = g_new (float, 50 * 30);
  g_autofree float *o = g_new (float, 64 * 64);
  g_autoptr (GError) error = NULL;

  for (int i = 0; i < 50 * 30; i++)
    m[i] = 1.0f;
  g_assert_true (sd_resample_f32 (m, 50, 30, 1, o, 64, 64, SD_RESAMPLE_BILINEAR, &error));
  for (int i = 0; i < 64 * 64; i++)
    g_assert_cmpfloat (fabsf (o[i] - 1.0f), <, 1e-6f);
  /* A step stays within [0, 1] with the bilinear filter (no overshoot). */
  for (int y = 0; y < 30; y++)
    for (int x = 0; x < 50; x++)
      m[y * 50 + x] = x < 20 ? 0.0f : 1.0f;
  g_assert_true (sd_resample_f32 (m, 50, 30, 1, o, 17, 64, SD_RESAMPLE_BILINEAR, &error));
  for (int i = 0; i < 17 * 64; i++)
    g_assert_true (o[i] >= 0.0f && o[i] <= 1.0f + 1e-6f);
  g_assert_false (sd_resample_f32 (m, 50, 30, 1, o, 0, 64, SD_RESAMPLE_BILINEAR, &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
}

static void
test_resample_nearest (void)
{
  g_autoptr (SdImage) img = sd_image_new (2, 2, 4, NULL);
  g_autoptr (SdImage) out = NULL;
  const guint8 px[4][4] = { { 1, 2, 3, 0 }, { 4, 5, 6, 7 }, { 8, 9, 10, 11 }, { 12, 13, 14, 255 } };

  for (int i = 0; i < 4; i++)
    memcpy (sd_image_row (img, i / 2) + (i % 2) * 4, px[i], 4);
  out = sd_image_resample (img, 4, 4, SD_RESAMPLE_NEAREST, NULL);
  for (int y = 0; y < 4; y++)
    for (int x = 0; x < 4; x++)
      g_assert_cmpmem (sd_image_row (out, y) + x * 4, 4, px[(y / 2) * 2 + x / 2], 4);
}

/* ---- crop, paste, convert ---------------------------------------------------------------------- */

static void
test_geometry (void)
{
  g_autoptr (SdImage) img = random_image (40, 30, 3, 21);
  g_autoptr (SdImage) c = NULL;
  g_autoptr (SdImage) dst = sd_image_new (10, 10, 3, NULL);
  g_autoptr (GError) error = NULL;

  c = sd_image_crop (img, 5, 7, 10, 4, &error);
  g_assert_no_error (error);
  for (int y = 0; y < 4; y++)
    g_assert_cmpmem (sd_image_row (c, y), 30, sd_image_row (img, y + 7) + 15, 30);
  g_assert_null (sd_image_crop (img, 35, 0, 10, 4, &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_clear_error (&error);
  g_assert_null (sd_image_crop (img, -1, 0, 10, 4, &error));
  g_clear_error (&error);

  /* Paste clipped at a negative offset and at the far edge. */
  sd_image_paste (dst, c, -3, 8);
  for (int x = 0; x < 7; x++)
    g_assert_cmpmem (sd_image_row (dst, 8) + x * 3, 3, sd_image_row (c, 0) + (x + 3) * 3, 3);
  g_assert_cmpmem (sd_image_row (dst, 9), 21, sd_image_row (c, 1) + 9, 21);
  g_assert_cmpuint (sd_image_row (dst, 7)[0], ==, 0);
  sd_image_paste (dst, c, 100, 100); /* entirely outside: nothing */
  sd_image_paste (dst, c, G_MAXINT - 2, G_MININT + 1);

  /* Channel conversions and flattening. */
  {
    g_autoptr (SdImage) rgba = sd_image_new (3, 1, 4, NULL);
    g_autoptr (SdImage) gray = NULL;
    g_autoptr (SdImage) rgb = NULL;
    g_autoptr (SdImage) flat = NULL;
    guint8 *p = sd_image_row (rgba, 0);
    const guint8 v[12] = { 255, 0, 0, 255, 200, 100, 0, 128, 10, 20, 30, 0 };
    memcpy (p, v, 12);
    g_assert_true (sd_image_set_text (rgba, "k", "v", NULL));
    gray = sd_image_convert (rgba, 1, &error);
    g_assert_cmpuint (sd_image_row (gray, 0)[0], ==, 76); /* PIL: 255 * 299/1000 */
    g_assert_cmpstr (sd_image_get_text (gray, "k"), ==, "v");
    rgb = sd_image_convert (gray, 4, &error);
    g_assert_cmpmem (sd_image_row (rgb, 0), 4, ((guint8[]){ 76, 76, 76, 255 }), 4);
    flat = sd_image_flatten (rgba, 255, 255, 255, &error);
    g_assert_no_error (error);
    g_assert_cmpmem (sd_image_row (flat, 0), 9,
                     ((guint8[]){ 255, 0, 0, 227, 177, 127, 255, 255, 255 }), 9);
  }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  /* g_test_init turns debug output on; libpng's warnings about the corrupt
   * files below would flood the log. */
  g_log_set_debug_enabled (FALSE);

  for (guint i = 0; i < G_N_ELEMENTS (decode_cases); i++)
    {
      g_autofree char *path = g_strdup_printf ("/image/png/decode/%s", decode_cases[i].name);
      g_test_add_data_func (path, &decode_cases[i], test_png_decode);
    }
  g_test_add_func ("/image/png/roundtrip", test_png_roundtrip);
  g_test_add_func ("/image/png/text", test_png_text);
  g_test_add_func ("/image/png/corrupt", test_png_corrupt);
  g_test_add_func ("/image/png/mutations", test_png_mutations);
  g_test_add_func ("/image/png/huge", test_png_huge);
  g_test_add_func ("/image/png/huge/subprocess", test_png_huge_subprocess);
  g_test_add_func ("/image/png/limits", test_png_limits);
  g_test_add_func ("/image/png/save-atomic", test_png_save_atomic);
  g_test_add_func ("/image/params/format", test_params_format);
  g_test_add_func ("/image/params/roundtrip", test_params_roundtrip);
  g_test_add_func ("/image/params/parse-a1111", test_params_parse_a1111);
  g_test_add_func ("/image/tensor", test_tensor);
  g_test_add_func ("/image/mask", test_mask);
  g_test_add_func ("/image/resample/constant", test_resample_constant);
  g_test_add_func ("/image/resample/gradient", test_resample_gradient);
  g_test_add_func ("/image/resample/area", test_resample_area);
  g_test_add_func ("/image/resample/alpha", test_resample_alpha);
  g_test_add_func ("/image/resample/f32", test_resample_f32);
  g_test_add_func ("/image/resample/nearest", test_resample_nearest);
  g_test_add_func ("/image/geometry", test_geometry);
  return g_test_run ();
}
