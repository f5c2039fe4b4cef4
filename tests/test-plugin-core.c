/* test-plugin-core.c: plugin/core - context box, working size, masks (grow,
 * feather), compositing, colour match, and the inpaint flow end to end with a
 * fake model. Timings of the feather at 2048x2048 with -m perf. */
#include "imp-core.h"
#include "sd-error.h"

#include <math.h>
#include <string.h>

static void
assert_rect (ImpRect r, int x, int y, int w, int h)
{
  if (r.x != x || r.y != y || r.width != w || r.height != h)
    g_error ("rect %dx%d+%d+%d, expected %dx%d+%d+%d", r.width, r.height, r.x, r.y, w, h, x, y);
}

/* ---- geometry ----------------------------------------------------------------------- */

static void
test_context_box (void)
{
  ImpInpaintOptions o;
  const ImpRect sel = { 400, 300, 100, 50 };

  imp_inpaint_options_init (&o, 512);
  /* 25 % of 100 = 25 < min 32 */
  assert_rect (imp_context_box (&o, sel, 1000, 800), 368, 268, 164, 114);
  o.padding = 0.5; /* 50 px */
  assert_rect (imp_context_box (&o, sel, 1000, 800), 350, 250, 200, 150);
  /* grow and feather reach are added: feather 7 -> sigma 2 -> reach 6 */
  o.grow = 5;
  o.feather = 7;
  g_assert_cmpint (imp_feather_reach (7), ==, 6);
  g_assert_cmpint (imp_feather_reach (0), ==, 0);
  assert_rect (imp_context_box (&o, sel, 1000, 800), 339, 239, 222, 172);
}

static void
test_context_box_border (void)
{
  ImpInpaintOptions o;

  imp_inpaint_options_init (&o, 512);
  /* Clipped at the image borders, not shifted. */
  assert_rect (imp_context_box (&o, (ImpRect){ 0, 0, 50, 50 }, 1000, 800), 0, 0, 82, 82);
  assert_rect (imp_context_box (&o, (ImpRect){ 980, 780, 20, 20 }, 1000, 800), 948, 748, 52, 52);
  /* A thin strip gets context from its long side: 25 % of 980 = 245 px. */
  assert_rect (imp_context_box (&o, (ImpRect){ 10, 790, 980, 10 }, 1000, 800), 0, 545, 1000, 255);
  /* A selection partly outside the image is clipped first. */
  assert_rect (imp_context_box (&o, (ImpRect){ -10, -10, 30, 30 }, 1000, 800), 0, 0, 52, 52);
  /* Larger than the image, empty, outside: the whole image. */
  assert_rect (imp_context_box (&o, (ImpRect){ -5, -5, 2000, 2000 }, 1000, 800), 0, 0, 1000, 800);
  assert_rect (imp_context_box (&o, (ImpRect){ 5, 5, 0, 10 }, 1000, 800), 0, 0, 1000, 800);
  assert_rect (imp_context_box (&o, (ImpRect){ 2000, 5, 10, 10 }, 1000, 800), 0, 0, 1000, 800);
  /* Huge coordinates do not overflow. */
  assert_rect (imp_context_box (&o, (ImpRect){ G_MAXINT - 5, 0, 5, 5 }, 1000, 800), 0, 0, 1000,
               800);
}

static void
test_context_box_tiny (void)
{
  ImpInpaintOptions o;
  ImpInpaintPlan plan;
  g_autoptr (GError) error = NULL;

  imp_inpaint_options_init (&o, 512);
  assert_rect (imp_context_box (&o, (ImpRect){ 500, 400, 1, 1 }, 1000, 800), 468, 368, 65, 65);
  o.min_padding = 0;
  assert_rect (imp_context_box (&o, (ImpRect){ 500, 400, 1, 1 }, 1000, 800), 499, 399, 3, 3);

  /* A tiny box is enlarged to the native size. */
  imp_inpaint_options_init (&o, 512);
  g_assert_true (imp_inpaint_plan (&o, (ImpRect){ 500, 400, 1, 1 }, 1000, 800, &plan, &error));
  g_assert_no_error (error);
  assert_rect (plan.selection, 500, 400, 1, 1);
  assert_rect (plan.box, 468, 368, 65, 65);
  g_assert_cmpint (plan.work_width, ==, 512);
  g_assert_cmpint (plan.work_height, ==, 512);

  /* Errors. */
  g_assert_false (imp_inpaint_plan (&o, (ImpRect){ 2000, 0, 5, 5 }, 1000, 800, &plan, &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_clear_error (&error);
  g_assert_false (imp_inpaint_plan (&o, (ImpRect){ 0, 0, 0, 0 }, 1000, 800, &plan, &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_clear_error (&error);
  o.multiple = 0;
  g_assert_false (imp_inpaint_plan (&o, (ImpRect){ 0, 0, 5, 5 }, 1000, 800, &plan, &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_clear_error (&error);
  imp_inpaint_options_init (&o, 512);
  o.feather = NAN;
  g_assert_false (imp_inpaint_plan (&o, (ImpRect){ 0, 0, 5, 5 }, 1000, 800, &plan, &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_clear_error (&error);
  o.feather = 1e9;
  g_assert_false (imp_inpaint_plan (&o, (ImpRect){ 0, 0, 5, 5 }, 1000, 800, &plan, &error));
  g_assert_error (error, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_clear_error (&error);

  /* Absurd values straight into the helpers stay defined. */
  imp_inpaint_options_init (&o, 512);
  o.padding = 1e300;
  o.grow = G_MAXINT;
  o.feather = 1e300;
  assert_rect (imp_context_box (&o, (ImpRect){ 500, 400, 1, 1 }, 1000, 800), 0, 0, 1000, 800);
  g_assert_cmpint (imp_feather_reach (1e300), ==, imp_feather_reach (IMP_FEATHER_MAX));
  {
    float m[4 * 3] = { 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0 };
    imp_mask_grow (m, 4, 3, G_MAXINT);
    for (int i = 0; i < 12; i++)
      g_assert_cmpfloat (m[i], ==, 1.0f);
  }
}

static void
test_working_size (void)
{
  const int boxes[][2] = { { 512, 512 },  { 640, 480 },  { 480, 640 },   { 1920, 1080 },
                           { 1080, 1920 }, { 2560, 1080 }, { 300, 900 },  { 65, 65 },
                           { 10, 10 },   { 5000, 3000 }, { 1000, 250 }, { 333, 517 },
                           { 4096, 4096 }, { 1, 1 },     { 200, 800 } };
  const int natives[] = { 512, 768, 1024 };
  const struct
  {
    int multiple;
    double area_tol, aspect_tol;
  } grids[] = { { 8, 0.05, 0.03 }, { 64, 0.20, 0.12 } };

  for (guint g = 0; g < G_N_ELEMENTS (grids); g++)
    for (guint n = 0; n < G_N_ELEMENTS (natives); n++)
      for (guint b = 0; b < G_N_ELEMENTS (boxes); b++)
        {
          const int m = grids[g].multiple, native = natives[n];
          const int bw = boxes[b][0], bh = boxes[b][1];
          int w, h;
          double area_err, aspect_err;

          imp_working_size (bw, bh, native, m, &w, &h);
          area_err = fabs ((double) w * h / ((double) native * native) - 1.0);
          aspect_err = fabs (((double) w / h) / ((double) bw / bh) - 1.0);
          if (w % m != 0 || h % m != 0 || w < m || h < m || area_err > grids[g].area_tol
              || aspect_err > grids[g].aspect_tol)
            g_error ("box %dx%d, native %d, multiple %d -> %dx%d (area error %.3f, aspect error "
                     "%.3f)",
                     bw, bh, native, m, w, h, area_err, aspect_err);
        }

  /* Very elongated regions: sides capped at 4 x native, aspect kept. */
  {
    int w, h;
    imp_working_size (20000, 100, 512, 8, &w, &h);
    g_assert_cmpint (w, <=, 2048);
    g_assert_cmpint (w, >=, 2000);
    g_assert_cmpint (h, ==, 8);
    imp_working_size (100, 6000, 512, 8, &w, &h);
    g_assert_cmpint (h, <=, 2048);
    g_assert_cmpint (h, >=, 2000);
    g_assert_cmpint (w, ==, 32);
  }
}

/* ---- masks ---------------------------------------------------------------------------- */

static void
test_mask_u8 (void)
{
  guint8 src[3 * 300], dst[3 * 300];
  g_autofree float *m = NULL;

  for (int i = 0; i < 3 * 300; i++)
    src[i] = (guint8) (i * 7);
  m = imp_mask_from_u8 (src, 300, 256, 3); /* stride 300, width 256 */
  g_assert_cmpfloat (m[0], ==, 0.0f);
  g_assert_cmpfloat (m[256], ==, src[300] / 255.0f);
  memset (dst, 0xaa, sizeof dst);
  imp_mask_to_u8 (m, 256, 3, dst, 300);
  for (int y = 0; y < 3; y++)
    {
      g_assert_cmpmem (dst + y * 300, 256, src + y * 300, 256);
      g_assert_cmpuint (dst[y * 300 + 256], ==, 0xaa); /* padding untouched */
    }
}

static void
test_grow (void)
{
  const int W = 61, H = 47;
  const int pts[][2] = { { 30, 23 }, { 2, 3 }, { 50, 40 }, { 51, 40 }, { 10, 44 } };
  g_autofree float *m = g_new0 (float, W * H);
  g_autofree float *orig = NULL;

  for (guint i = 0; i < G_N_ELEMENTS (pts); i++)
    m[pts[i][1] * W + pts[i][0]] = 1.0f;
  m[5 * W + 40] = 0.3f; /* below 0.5: not a seed, but kept */
  orig = g_memdup2 (m, sizeof (float) * W * H);

  for (int r = 0; r <= 12; r += 3)
    {
      memcpy (m, orig, sizeof (float) * W * H);
      imp_mask_grow (m, W, H, r);
      for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
          {
            double d = HUGE_VAL, e;
            for (guint i = 0; i < G_N_ELEMENTS (pts); i++)
              d = MIN (d, hypot (x - pts[i][0], y - pts[i][1]));
            e = r == 0 ? orig[y * W + x] : MAX (orig[y * W + x], CLAMP (r + 1 - d, 0.0, 1.0));
            if (fabs (m[y * W + x] - e) > 1e-5)
              g_error ("grow %d: (%d,%d) = %g, expected %g (d = %g)", r, x, y, m[y * W + x], e, d);
          }
    }
  /* Thresholded, radius r is the disc d <= r + 0.5: r = 1 gives a 3x3 square. */
  memset (m, 0, sizeof (float) * W * H);
  m[10 * W + 10] = 1.0f;
  imp_mask_grow (m, W, H, 1);
  imp_mask_threshold (m, (gsize) W * H, 0.5f);
  {
    int n = 0;
    for (int i = 0; i < W * H; i++)
      n += m[i] == 1.0f;
    g_assert_cmpint (n, ==, 9);
  }
}

/* Brute-force reference of imp_mask_feather at one pixel (double, edges
 * repeated). */
static double
feather_ref (const float *m, int W, int H, double radius, int px, int py)
{
  const double sigma = radius / 3.5;
  const int R = MAX ((int) ceil (3 * sigma), 1);
  g_autofree double *k = g_new (double, 2 * R + 1);
  double sum = 0, acc = 0;

  for (int j = -R; j <= R; j++)
    sum += k[j + R] = exp (-(double) j * j / (2 * sigma * sigma));
  for (int dy = -R; dy <= R; dy++)
    for (int dx = -R; dx <= R; dx++)
      {
        const int x = CLAMP (px + dx, 0, W - 1), y = CLAMP (py + dy, 0, H - 1);
        acc += k[dy + R] * k[dx + R] * m[y * W + x];
      }
  return acc / (sum * sum);
}

static void
test_feather (void)
{
  const int W = 200, H = 200;
  const double radius = 35; /* sigma 10, kernel radius 30 */
  const int R = 30;
  g_autofree float *m = g_new0 (float, W * H);
  g_autofree float *src = NULL;

  for (int y = 80; y < 120; y++)
    for (int x = 80; x < 120; x++)
      m[y * W + x] = 1.0f;
  src = g_memdup2 (m, sizeof (float) * W * H);
  imp_mask_feather (m, W, H, radius);

  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      {
        const float v = m[y * W + x];
        const int dx = x < 80 ? 80 - x : x >= 120 ? x - 119 : 0;
        const int dy = y < 80 ? 80 - y : y >= 120 ? y - 119 : 0;
        g_assert_true (v >= 0.0f && v <= 1.0f);
        /* Symmetric: mirror in x, in y, and the transpose. */
        g_assert_cmpfloat (fabsf (v - m[y * W + (W - 1 - x)]), <, 1e-6f);
        g_assert_cmpfloat (fabsf (v - m[(H - 1 - y) * W + x]), <, 1e-6f);
        g_assert_cmpfloat (fabsf (v - m[x * W + y]), <, 1e-6f);
        /* Exactly 0 beyond the kernel radius. */
        if (dx > R || dy > R)
          g_assert_cmpfloat (v, ==, 0.0f);
      }
  /* Smooth: monotone toward the centre along the middle row, with small
   * steps (the slope of a blurred step is at most 1 / (sigma sqrt(2 pi)) =
   * 0.04 per pixel). */
  for (int x = 1; x <= 100; x++)
    {
      const float a = m[100 * W + x - 1], b = m[100 * W + x];
      g_assert_cmpfloat (b, >=, a);
      g_assert_cmpfloat (b - a, <, 0.0401f);
    }
  /* The same as a brute-force 2-D gaussian. */
  for (int y = 0; y < H; y += 7)
    for (int x = 0; x < W; x += 5)
      {
        const double e = feather_ref (src, W, H, radius, x, y);
        if (fabs (m[y * W + x] - e) > 2e-6)
          g_error ("feather (%d,%d) = %.8f, reference %.8f", x, y, m[y * W + x], e);
      }
}

static void
test_feather_large (void)
{
  /* A big square, a big radius, touching the left and top borders. */
  const int W = 400, H = 300;
  const double radius = 150; /* sigma 42.9, kernel radius 129 */
  g_autofree float *m = g_new0 (float, W * H);
  g_autofree float *src = NULL;

  for (int y = 0; y < 220; y++)
    for (int x = 0; x < 280; x++)
      m[y * W + x] = 1.0f;
  src = g_memdup2 (m, sizeof (float) * W * H);
  imp_mask_feather (m, W, H, radius);
  for (int y = 0; y < H; y += 13)
    for (int x = 0; x < W; x += 11)
      {
        const double e = feather_ref (src, W, H, radius, x, y);
        if (fabs (m[y * W + x] - e) > 5e-6)
          g_error ("feather %g (%d,%d) = %.8f, reference %.8f", radius, x, y, m[y * W + x], e);
      }
  /* Edges repeat: the corner inside the selection stays selected. */
  g_assert_cmpfloat (m[0], >, 0.99f);
  /* The edge sits at 0.5. */
  g_assert_cmpfloat (fabsf ((m[10 * W + 279] + m[10 * W + 280]) / 2 - 0.5f), <, 0.01f);

  /* Constant masks stay exactly constant; radius 0 is a no-op. */
  for (int i = 0; i < W * H; i++)
    m[i] = 1.0f;
  imp_mask_feather (m, W, H, 20);
  for (int i = 0; i < W * H; i++)
    g_assert_cmpfloat (m[i], ==, 1.0f);
  memcpy (m, src, sizeof (float) * W * H);
  imp_mask_feather (m, W, H, 0);
  g_assert_cmpmem (m, sizeof (float) * W * H, src, sizeof (float) * W * H);
  /* Tiny radius, 1-pixel-wide masks. */
  imp_mask_feather (m, W, H, 0.3);
  imp_mask_feather (m, 1, H, 10);
  imp_mask_feather (m, W, 1, 10);
}

static void
test_feather_perf (void)
{
  const int N = 2048;
  g_autofree float *m = g_new0 (float, (gsize) N * N);
  const double radii[] = { 8, 32, 128, 400 };

  if (!g_test_perf ())
    {
      g_test_skip ("timing only with -m perf");
      return;
    }
  for (guint r = 0; r < G_N_ELEMENTS (radii); r++)
    {
      double best = HUGE_VAL;
      for (int rep = 0; rep < 3; rep++)
        {
          gint64 t0;
          /* An ellipse covering a third of the image: realistic, with many
           * non-constant rows. */
          for (int y = 0; y < N; y++)
            for (int x = 0; x < N; x++)
              {
                const double u = (x - 1024.0) / 700, v = (y - 1024.0) / 500;
                m[(gsize) y * N + x] = u * u + v * v <= 1 ? 1.0f : 0.0f;
              }
          t0 = g_get_monotonic_time ();
          imp_mask_feather (m, N, N, radii[r]);
          best = MIN (best, (g_get_monotonic_time () - t0) / 1e6);
        }
      g_test_minimized_result (best, "feather %dx%d radius %g: %.3f s", N, N, radii[r], best);
      g_test_message ("feather %dx%d radius %g: %.3f s (best of 3)", N, N, radii[r], best);
    }
  {
    double best = HUGE_VAL;
    for (int rep = 0; rep < 3; rep++)
      {
        gint64 t0;
        for (int y = 0; y < N; y++)
          for (int x = 0; x < N; x++)
            {
              const double u = (x - 1024.0) / 700, v = (y - 1024.0) / 500;
              m[(gsize) y * N + x] = u * u + v * v <= 1 ? 1.0f : 0.0f;
            }
        t0 = g_get_monotonic_time ();
        imp_mask_grow (m, N, N, 64);
        best = MIN (best, (g_get_monotonic_time () - t0) / 1e6);
      }
    g_test_message ("grow %dx%d radius 64: %.3f s (best of 3)", N, N, best);
  }
}

static void
test_inpaint_masks (void)
{
  const int W = 120, H = 90;
  ImpInpaintOptions o;
  g_autofree float *sel = g_new0 (float, W * H);
  g_autofree float *model = g_new (float, W * H);
  g_autofree float *layer = g_new (float, W * H);

  /* A soft-edged rectangle. */
  for (int y = 30; y < 60; y++)
    for (int x = 40; x < 80; x++)
      sel[y * W + x] = (x == 40 || x == 79 || y == 30 || y == 59) ? 0.4f : 1.0f;

  imp_inpaint_options_init (&o, 512);
  imp_inpaint_masks (&o, sel, W, H, model, layer);
  g_assert_cmpmem (layer, sizeof (float) * W * H, sel, sizeof (float) * W * H);
  for (int i = 0; i < W * H; i++)
    g_assert_cmpfloat (model[i], ==, sel[i] >= 0.5f ? 1.0f : 0.0f);

  o.grow = 4;
  o.feather = 10.5; /* sigma 3, reach 9 */
  imp_inpaint_masks (&o, sel, W, H, model, layer);
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      {
        /* distance (Chebyshev bound) from the fully selected core 41..78 x 31..58 */
        const int dx = x < 41 ? 41 - x : x > 78 ? x - 78 : 0;
        const int dy = y < 31 ? 31 - y : y > 58 ? y - 58 : 0;
        if (sel[y * W + x] >= 0.5f)
          g_assert_cmpfloat (model[y * W + x], ==, 1.0f);
        if (dx <= 4 && dy <= 4 && dx * dx + dy * dy <= 16)
          g_assert_cmpfloat (model[y * W + x], ==, 1.0f); /* within the grow */
        if (dx > 4 + 1 + 9 || dy > 4 + 1 + 9)
          {
            g_assert_cmpfloat (layer[y * W + x], ==, 0.0f); /* beyond grow + reach */
            g_assert_cmpfloat (model[y * W + x], ==, 0.0f);
          }
        if (x >= 55 && x < 65 && y >= 40 && y < 50)
          g_assert_cmpfloat (layer[y * W + x], >, 0.9999f);
      }
}

/* ---- compositing --------------------------------------------------------------------------- */

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
test_blend (void)
{
  for (int ch = 1; ch <= 4; ch++)
    {
      const int W = 64, H = 48;
      g_autoptr (SdImage) orig = NULL;
      g_autoptr (SdImage) gen = NULL;
      g_autoptr (SdImage) out = NULL;
      g_autoptr (SdImage) inplace = NULL;
      g_autofree float *mask = g_new (float, W * H);
      GRand *r = g_rand_new_with_seed (99 + ch);

      if (ch == 2)
        {
          g_rand_free (r);
          continue;
        }
      orig = random_image (W, H, ch, 1 + ch);
      gen = random_image (W, H, ch, 50 + ch);
      out = sd_image_new (W, H, ch, NULL);
      for (int i = 0; i < W * H; i++)
        {
          const int k = g_rand_int_range (r, 0, 5);
          mask[i] = k == 0 ? 0.0f : k == 1 ? 1.0f : k == 2 ? -0.5f : (float) g_rand_double (r);
        }
      mask[0] = NAN;
      mask[1] = 0.5f;
      g_rand_free (r);

      imp_blend (out, orig, gen, mask);
      for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
          for (int c = 0; c < ch; c++)
            {
              const float a = mask[y * W + x];
              const guint8 o = sd_image_row (orig, y)[x * ch + c];
              const guint8 g = sd_image_row (gen, y)[x * ch + c];
              const guint8 v = sd_image_row (out, y)[x * ch + c];
              if (!(a > 0.0f))
                g_assert_cmpuint (v, ==, o); /* bit-identical */
              else if (a >= 1.0f)
                g_assert_cmpuint (v, ==, g);
              else
                {
                  const double e = o + (g - o) * (double) a;
                  g_assert_cmpfloat (fabs (v - e), <=, 0.5 + 1e-4);
                }
            }
      /* Mask 0.5: the rounded midpoint. */
      for (int c = 0; c < ch; c++)
        {
          const int o = sd_image_row (orig, 0)[ch + c], g = sd_image_row (gen, 0)[ch + c];
          g_assert_cmpint (sd_image_row (out, 0)[ch + c], ==, (int) floor ((o + g) / 2.0 + 0.5));
        }
      /* In place gives the same. */
      inplace = sd_image_copy (orig);
      imp_blend (inplace, inplace, gen, mask);
      for (int y = 0; y < H; y++)
        g_assert_cmpmem (sd_image_row (inplace, y), W * ch, sd_image_row (out, y), W * ch);
    }
}

static void
test_composite (void)
{
  g_autoptr (SdImage) img = random_image (50, 40, 3, 5);
  g_autoptr (SdImage) before = sd_image_copy (img);
  g_autoptr (SdImage) src = random_image (20, 10, 3, 6);
  g_autofree float *mask = g_new (float, 20 * 10);

  for (int i = 0; i < 200; i++)
    mask[i] = (i % 3) == 0 ? 0.0f : 1.0f;
  /* Partly outside on the right and bottom. */
  imp_composite (img, src, mask, 40, 35);
  for (int y = 0; y < 40; y++)
    for (int x = 0; x < 50; x++)
      {
        const guint8 *p = sd_image_row (img, y) + x * 3;
        const guint8 *b = sd_image_row (before, y) + x * 3;
        const int sx = x - 40, sy = y - 35;
        if (sx < 0 || sy < 0 || mask[sy * 20 + sx] == 0.0f)
          g_assert_cmpmem (p, 3, b, 3);
        else
          g_assert_cmpmem (p, 3, sd_image_row (src, sy) + sx * 3, 3);
      }
  /* Entirely outside: nothing. */
  imp_composite (img, src, mask, -100, 0);
  imp_composite (img, src, mask, G_MAXINT - 1, G_MAXINT - 1);
}

/* ---- colour match --------------------------------------------------------------------------- */

typedef struct
{
  double mean[3], sd[3];
} RgbStats;

static RgbStats
rgb_stats (const SdImage *img, const float *mask, gboolean ring)
{
  RgbStats s = { { 0 } };
  double n = 0, sum[3] = { 0 }, sq[3] = { 0 };
  for (int y = 0; y < img->height; y++)
    for (int x = 0; x < img->width; x++)
      {
        const float m = mask[y * img->width + x];
        if (ring ? m != 0.0f : m != 1.0f)
          continue;
        n++;
        for (int c = 0; c < 3; c++)
          {
            const double v = sd_image_row (img, y)[x * img->channels + c];
            sum[c] += v;
            sq[c] += v * v;
          }
      }
  for (int c = 0; c < 3; c++)
    {
      s.mean[c] = sum[c] / n;
      s.sd[c] = sqrt (sq[c] / n - s.mean[c] * s.mean[c]);
    }
  return s;
}

/* Ring statistics in CIE Lab (sRGB, D65), computed independently of
 * imp-color.c (double precision, textbook formulas). */
static double
lin (double v)
{
  v /= 255.0;
  return v <= 0.04045 ? v / 12.92 : pow ((v + 0.055) / 1.055, 2.4);
}

static double
labf (double t)
{
  return t > 216.0 / 24389.0 ? cbrt (t) : (24389.0 / 27.0 * t + 16.0) / 116.0;
}

static RgbStats
lab_ring_stats (const SdImage *img, const float *mask)
{
  RgbStats s = { { 0 } };
  double n = 0, sum[3] = { 0 }, sq[3] = { 0 };
  for (int y = 0; y < img->height; y++)
    for (int x = 0; x < img->width; x++)
      {
        const guint8 *p = sd_image_row (img, y) + x * img->channels;
        const double r = lin (p[0]), g = lin (p[1]), b = lin (p[2]);
        const double X = (0.4124564 * r + 0.3575761 * g + 0.1804375 * b) / 0.95047;
        const double Y = 0.2126729 * r + 0.7151522 * g + 0.0721750 * b;
        const double Z = (0.0193339 * r + 0.1191920 * g + 0.9503041 * b) / 1.08883;
        const double lab[3] = { 116 * labf (Y) - 16, 500 * (labf (X) - labf (Y)),
                                200 * (labf (Y) - labf (Z)) };
        if (mask[y * img->width + x] != 0.0f)
          continue;
        n++;
        for (int c = 0; c < 3; c++)
          {
            sum[c] += lab[c];
            sq[c] += lab[c] * lab[c];
          }
      }
  for (int c = 0; c < 3; c++)
    {
      s.mean[c] = sum[c] / n;
      s.sd[c] = sqrt (sq[c] / n - s.mean[c] * s.mean[c]);
    }
  return s;
}

static void
test_color_match (void)
{
  const int W = 96, H = 80;
  g_autoptr (SdImage) orig = sd_image_new (W, H, 4, NULL);
  g_autoptr (SdImage) gen = NULL;
  g_autoptr (SdImage) half = NULL;
  g_autoptr (SdImage) full = NULL;
  g_autoptr (SdImage) region = NULL;
  g_autofree float *mask = g_new0 (float, W * H);
  GRand *r = g_rand_new_with_seed (2024);
  RgbStats so, sg, sh, sf, sr_before, sr_after;

  /* A textured original; a disc in the middle is the selection. */
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      {
        guint8 *p = sd_image_row (orig, y) + x * 4;
        p[0] = (guint8) CLAMP (100 + g_rand_int_range (r, -30, 31) + x / 4, 0, 255);
        p[1] = (guint8) CLAMP (130 + g_rand_int_range (r, -20, 21), 0, 255);
        p[2] = (guint8) CLAMP (80 + g_rand_int_range (r, -25, 26) + y / 4, 0, 255);
        p[3] = 255;
        mask[y * W + x] = hypot (x - W / 2.0, y - H / 2.0) < 25 ? 1.0f : 0.0f;
      }
  g_rand_free (r);
  /* The "model" output: a colour cast and a contrast change everywhere, and
   * different (greener) content inside the selection. */
  gen = sd_image_copy (orig);
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      {
        guint8 *p = sd_image_row (gen, y) + x * 4;
        p[0] = (guint8) CLAMP (p[0] * 0.7 + 60, 0, 255);
        p[1] = (guint8) CLAMP (p[1] + 25 + (mask[y * W + x] > 0 ? 40 : 0), 0, 255);
        p[2] = (guint8) CLAMP ((p[2] - 80) * 1.5 + 70, 0, 255);
      }
  so = rgb_stats (orig, mask, TRUE);
  sg = rgb_stats (gen, mask, TRUE);

  /* Strength 0: bit-identical, and FALSE. */
  half = sd_image_copy (gen);
  g_assert_false (imp_color_match (half, orig, mask, 0.0, IMP_COLOR_MATCH_RING));
  for (int y = 0; y < H; y++)
    g_assert_cmpmem (sd_image_row (half, y), W * 4, sd_image_row (gen, y), W * 4);

  g_assert_true (imp_color_match (half, orig, mask, 0.5, IMP_COLOR_MATCH_RING));
  full = sd_image_copy (gen);
  g_assert_true (imp_color_match (full, orig, mask, 1.0, IMP_COLOR_MATCH_RING));
  sh = rgb_stats (half, mask, TRUE);
  sf = rgb_stats (full, mask, TRUE);
  for (int c = 0; c < 3; c++)
    {
      const double d0 = fabs (sg.mean[c] - so.mean[c]);
      const double dh = fabs (sh.mean[c] - so.mean[c]);
      const double df = fabs (sf.mean[c] - so.mean[c]);
      g_test_message ("channel %d ring mean: orig %.1f, gen %.1f, half %.1f, full %.1f; sd: orig "
                      "%.1f gen %.1f full %.1f",
                      c, so.mean[c], sg.mean[c], sh.mean[c], sf.mean[c], so.sd[c], sg.sd[c],
                      sf.sd[c]);
      g_assert_cmpfloat (d0, >, 5.0);
      g_assert_cmpfloat (df, <, 0.2 * d0 + 1.0);
      g_assert_cmpfloat (dh, <, d0);
      g_assert_cmpfloat (dh, >, df);
    }
  /* In Lab, where the matching happens, the ring's means and deviations
   * match (up to 8-bit rounding), and half strength goes half way. */
  {
    const RgbStats lo = lab_ring_stats (orig, mask), lg = lab_ring_stats (gen, mask);
    const RgbStats lf = lab_ring_stats (full, mask), lh = lab_ring_stats (half, mask);
    for (int c = 0; c < 3; c++)
      {
        g_test_message ("Lab %d ring mean/sd: orig %.2f/%.2f gen %.2f/%.2f half %.2f/%.2f full "
                        "%.2f/%.2f",
                        c, lo.mean[c], lo.sd[c], lg.mean[c], lg.sd[c], lh.mean[c], lh.sd[c],
                        lf.mean[c], lf.sd[c]);
        g_assert_cmpfloat (fabs (lf.mean[c] - lo.mean[c]), <, 0.3);
        g_assert_cmpfloat (fabs (lf.sd[c] / lo.sd[c] - 1), <, 0.03);
        g_assert_cmpfloat (fabs (lh.mean[c] - (lo.mean[c] + lg.mean[c]) / 2), <,
                           0.1 * fabs (lg.mean[c] - lo.mean[c]) + 0.3);
      }
  }
  /* Alpha untouched; the intended change inside (greener) survives. */
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      g_assert_cmpuint (sd_image_row (full, y)[x * 4 + 3], ==, sd_image_row (gen, y)[x * 4 + 3]);
  sr_after = rgb_stats (full, mask, FALSE);
  sr_before = rgb_stats (orig, mask, FALSE);
  g_assert_cmpfloat (sr_after.mean[1], >, sr_before.mean[1] + 20);

  /* Region mode pulls the inside toward the ring. */
  region = sd_image_copy (gen);
  g_assert_true (imp_color_match (region, orig, mask, 1.0, IMP_COLOR_MATCH_REGION));
  {
    RgbStats a = rgb_stats (region, mask, FALSE), b = rgb_stats (gen, mask, FALSE);
    for (int c = 0; c < 3; c++)
      g_assert_cmpfloat (fabs (a.mean[c] - so.mean[c]), <, fabs (b.mean[c] - so.mean[c]) + 0.5);
  }

  /* Transparent original pixels do not count: whatever colour they hold,
   * the result is the same. */
  {
    g_autoptr (SdImage) oa = sd_image_copy (orig);
    g_autoptr (SdImage) ob = NULL;
    g_autoptr (SdImage) ga = sd_image_copy (gen);
    g_autoptr (SdImage) gb = sd_image_copy (gen);
    for (int y = 0; y < 12; y++)
      for (int x = 0; x < W; x++)
        sd_image_row (oa, y)[x * 4 + 3] = 0;
    ob = sd_image_copy (oa);
    for (int y = 0; y < 12; y++)
      for (int x = 0; x < W; x++)
        memcpy (sd_image_row (ob, y) + x * 4, (guint8[]){ 255, 0, 255, 0 }, 4);
    g_assert_true (imp_color_match (ga, oa, mask, 1.0, IMP_COLOR_MATCH_RING));
    g_assert_true (imp_color_match (gb, ob, mask, 1.0, IMP_COLOR_MATCH_RING));
    for (int y = 0; y < H; y++)
      g_assert_cmpmem (sd_image_row (ga, y), W * 4, sd_image_row (gb, y), W * 4);
  }

  /* No ring to measure: nothing happens. */
  for (int i = 0; i < W * H; i++)
    mask[i] = 1.0f;
  g_assert_false (imp_color_match (region, orig, mask, 1.0, IMP_COLOR_MATCH_RING));
}

/* ---- the flow ---------------------------------------------------------------------------------- */

static void
check_flow (double feather, int grow)
{
  const int IW = 300, IH = 200;
  g_autoptr (SdImage) image = random_image (IW, IH, 4, 31);
  g_autoptr (SdImage) before = sd_image_copy (image);
  g_autofree float *sel_full = g_new0 (float, IW * IH);
  ImpInpaintOptions o;
  ImpInpaintPlan plan;
  g_autoptr (GError) error = NULL;
  g_autoptr (SdImage) box = NULL;
  g_autofree float *box_sel = NULL;
  g_autoptr (SdImage) work = NULL;
  g_autofree float *work_mask = NULL;
  g_autofree float *model = NULL;
  g_autofree float *layer = NULL;
  g_autoptr (SdImage) result = NULL;
  ImpRect bounds = { 120, 70, 60, 40 };
  int changed_inside = 0;

  /* An elliptic, antialiased selection. */
  for (int y = 0; y < IH; y++)
    for (int x = 0; x < IW; x++)
      {
        const double u = (x + 0.5 - 150) / 30, v = (y + 0.5 - 90) / 20;
        sel_full[y * IW + x] = (float) CLAMP ((1.0 - sqrt (u * u + v * v)) * 20 + 0.5, 0, 1);
      }
  imp_inpaint_options_init (&o, 128);
  o.feather = feather;
  o.grow = grow;
  g_assert_true (imp_inpaint_plan (&o, bounds, IW, IH, &plan, &error));
  g_assert_no_error (error);
  g_assert_cmpint (plan.work_width % 8, ==, 0);
  g_assert_cmpint (plan.work_height % 8, ==, 0);

  box = sd_image_crop (image, plan.box.x, plan.box.y, plan.box.width, plan.box.height, &error);
  g_assert_no_error (error);
  box_sel = g_new (float, plan.box.width * plan.box.height);
  for (int y = 0; y < plan.box.height; y++)
    memcpy (box_sel + y * plan.box.width, sel_full + (plan.box.y + y) * IW + plan.box.x,
            plan.box.width * sizeof (float));

  g_assert_true (imp_inpaint_prepare (&o, &plan, box, box_sel, &work, &work_mask, &model, &layer,
                                      &error));
  g_assert_no_error (error);
  g_assert_cmpint (work->width, ==, plan.work_width);
  g_assert_cmpint (work->channels, ==, 3);
  for (int i = 0; i < plan.work_width * plan.work_height; i++)
    g_assert_true (work_mask[i] == 0.0f || work_mask[i] == 1.0f);

  /* The fake model inverts what the mask says to repaint. */
  for (int y = 0; y < work->height; y++)
    for (int x = 0; x < work->width; x++)
      if (work_mask[y * work->width + x] > 0)
        for (int c = 0; c < 3; c++)
          sd_image_row (work, y)[x * 3 + c] ^= 0xff;

  result = imp_inpaint_finish (&plan, work, box, model, 0.5, &error);
  g_assert_no_error (error);
  g_assert_cmpint (result->width, ==, plan.box.width);
  g_assert_cmpint (result->channels, ==, 4);
  imp_composite (image, result, layer, plan.box.x, plan.box.y);

  for (int y = 0; y < IH; y++)
    for (int x = 0; x < IW; x++)
      {
        const guint8 *p = sd_image_row (image, y) + x * 4;
        const guint8 *b = sd_image_row (before, y) + x * 4;
        const int bx = x - plan.box.x, by = y - plan.box.y;
        const gboolean in_box = bx >= 0 && by >= 0 && bx < plan.box.width && by < plan.box.height;
        const float l = in_box ? layer[by * plan.box.width + bx] : 0.0f;
        if (feather == 0 && grow == 0)
          g_assert_cmpfloat (l, ==, sel_full[y * IW + x]);
        if (l == 0.0f)
          g_assert_cmpmem (p, 4, b, 4); /* untouched, bit for bit */
        else if (sel_full[y * IW + x] == 1.0f && memcmp (p, b, 3) != 0)
          changed_inside++;
      }
  g_test_message ("feather %g grow %d: box %dx%d+%d+%d, work %dx%d, %d pixels repainted", feather,
                  grow, plan.box.width, plan.box.height, plan.box.x, plan.box.y, plan.work_width,
                  plan.work_height, changed_inside);
  g_assert_cmpint (changed_inside, >, 1500);
}

static void
test_flow (void)
{
  check_flow (0, 0);
  check_flow (12, 3);
}

/* ---- other procedures ----------------------------------------------------------------------- */

static void
test_placement (void)
{
  const ImpRect sel = { 10, 20, 30, 40 }, outside = { 500, 500, 5, 5 },
                partly = { -5, 90, 20, 30 };
  const ImpRect drawable = { 5, 5, 80, 60 };

  assert_rect (imp_generate_rect (100, 100, NULL), 0, 0, 100, 100);
  assert_rect (imp_generate_rect (100, 100, &sel), 10, 20, 30, 40);
  assert_rect (imp_generate_rect (100, 100, &partly), 0, 90, 15, 10);
  assert_rect (imp_generate_rect (100, 100, &outside), 0, 0, 100, 100);

  assert_rect (imp_img2img_rect (drawable, NULL), 5, 5, 80, 60);
  assert_rect (imp_img2img_rect (drawable, &sel), 10, 20, 30, 40);
  assert_rect (imp_img2img_rect (drawable, &partly), 5, 90, 0, 0);
  g_assert_true (imp_rect_is_empty (imp_img2img_rect (drawable, &outside)));
  g_assert_true (imp_rect_is_empty (imp_img2img_rect (drawable, &partly)));
  assert_rect (imp_img2img_rect (drawable, &(ImpRect){ 0, 0, 10, 10 }), 5, 5, 5, 5);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/core/context-box/middle", test_context_box);
  g_test_add_func ("/core/context-box/border", test_context_box_border);
  g_test_add_func ("/core/context-box/tiny", test_context_box_tiny);
  g_test_add_func ("/core/working-size", test_working_size);
  g_test_add_func ("/core/mask/u8", test_mask_u8);
  g_test_add_func ("/core/mask/grow", test_grow);
  g_test_add_func ("/core/mask/feather", test_feather);
  g_test_add_func ("/core/mask/feather-large", test_feather_large);
  g_test_add_func ("/core/mask/feather-perf", test_feather_perf);
  g_test_add_func ("/core/mask/inpaint-masks", test_inpaint_masks);
  g_test_add_func ("/core/blend", test_blend);
  g_test_add_func ("/core/composite", test_composite);
  g_test_add_func ("/core/color-match", test_color_match);
  g_test_add_func ("/core/flow", test_flow);
  g_test_add_func ("/core/placement", test_placement);
  return g_test_run ();
}
