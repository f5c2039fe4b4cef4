/* test-nets.c: properties of the networks that the golden cases do not cover:
 * tiled vs untiled VAE decode, fp16 safety with large activations, graphs
 * replayed without re-recording or re-allocating, memory plans. Uses the tiny
 * golden SD 1.5 model (skips when the golden data or a Vulkan device is absent). */
#include "config.h"

#include <math.h>
#include <string.h>

#include "sd-nets.h"
#include "sd-pipeline.h"
#include "test-util.h"

static IvkContext *ctx;
static char *model_path;

static gboolean
need_model (void)
{
  if (!ctx)
    {
      g_test_skip ("no Vulkan device");
      return FALSE;
    }
  if (!model_path)
    {
      g_test_skip ("golden data not found (set IMPASTO_GOLDEN_DIR): needs sd15-tiny");
      return FALSE;
    }
  return TRUE;
}

static void
fill_latents (float *x, gsize n, guint64 seed, float scale)
{
  test_fill_random (x, n, seed, -1.0f, 1.0f);
  for (gsize i = 0; i < n; i++)
    x[i] *= scale;
}

/* Tiled decode (forced small tiles) against one pass: the blended result
 * must stay close everywhere and have no seam: the jump between neighbouring
 * pixels across a tile border must not exceed the image's typical jumps. */
static void
test_vae_tiled (void)
{
  if (!need_model ())
    return;
  GError *error = NULL;
  g_autoptr (SdModel) model = sd_model_open (model_path, NULL, &error);
  g_assert_no_error (error);
  g_autoptr (SdVae) vae = sd_vae_new (ctx, model, FALSE, &error);
  g_assert_no_error (error);
  const int h = 24, w = 32, H = h * 8, W = w * 8;
  gsize nl = (gsize) 4 * h * w, ni = (gsize) 3 * H * W;
  g_autofree float *lat = g_new (float, nl);
  fill_latents (lat, nl, 7, 0.8f);
  g_autofree float *full = g_new (float, ni);
  g_autofree float *tiled = g_new (float, ni);
  g_assert_true (sd_vae_decode (vae, 1, h, w, lat, full, NULL, &error));
  g_assert_no_error (error);
  sd_vae_set_tiling (vae, 16, 8);
  g_assert_true (sd_vae_decode (vae, 1, h, w, lat, tiled, NULL, &error));
  g_assert_no_error (error);

  double err = test_max_err_over_rms (tiled, full, ni);
  double sum_d = 0;
  for (gsize i = 0; i < ni; i++)
    sum_d += fabs (tiled[i] - full[i]);
  g_test_message ("tiled vs untiled: max err / rms %.4f, mean abs diff %.5f", err, sum_d / ni);
  /* tiles see less context and their own GroupNorm statistics: a small,
   * smooth difference is expected; a seam or misplaced tile is not */
  g_assert_cmpfloat (sum_d / ni, <, 0.05);
  g_assert_cmpfloat (err, <, 1.0);

  /* seam check on the difference image: its horizontal jumps at tile
   * borders (every 8 latent px = 64 image px) are not larger than elsewhere */
  double at_border = 0, elsewhere = 0;
  int nb = 0, ne = 0;
  for (int c = 0; c < 3; c++)
    for (int y = 0; y < H; y++)
      for (int x = 1; x < W; x++)
        {
          gsize i = ((gsize) c * H + y) * W + x;
          double jump = fabs ((tiled[i] - full[i]) - (tiled[i - 1] - full[i - 1]));
          if (x % 64 == 0)
            {
              at_border += jump;
              nb++;
            }
          else
            {
              elsewhere += jump;
              ne++;
            }
        }
  g_test_message ("mean jump of the difference: at tile borders %.5f, elsewhere %.5f", at_border / nb,
                  elsewhere / ne);
  g_assert_cmpfloat (at_border / nb, <, 3.0 * elsewhere / ne + 1e-3);
}

/* fp16 safety: the VAE keeps fp32 activations, so latents far outside the
 * usual range (activations beyond fp16's 65504) give finite images. */
static void
test_vae_fp16_large (void)
{
  if (!need_model ())
    return;
  GError *error = NULL;
  g_autoptr (SdModel) model = sd_model_open (model_path, NULL, &error);
  g_assert_no_error (error);
  g_autoptr (SdVae) vae = sd_vae_new (ctx, model, TRUE, &error);
  g_assert_no_error (error);
  const int h = 8, w = 8;
  gsize nl = (gsize) 4 * h * w, ni = (gsize) 3 * 64 * 64;
  g_autofree float *lat = g_new (float, nl);
  fill_latents (lat, nl, 3, 3000.0f); /* /0.18215 -> ~16000 at the input */
  g_autofree float *img = g_new (float, ni);
  g_assert_true (sd_vae_decode (vae, 1, h, w, lat, img, NULL, &error));
  g_assert_no_error (error);
  double maxabs = 0;
  for (gsize i = 0; i < ni; i++)
    {
      g_assert_true (isfinite (img[i]));
      maxabs = MAX (maxabs, fabs (img[i]));
    }
  g_test_message ("decoded extreme latents: max |pixel| %.1f, all finite", maxabs);
  /* and the encoder on an image far out of range */
  g_autofree float *mean = g_new (float, nl);
  g_autofree float *logvar = g_new (float, nl);
  for (gsize i = 0; i < ni; i++)
    img[i] = (i % 7) * 2000.0f - 6000.0f;
  g_assert_true (sd_vae_encode (vae, 1, 64, 64, img, mean, logvar, NULL, &error));
  g_assert_no_error (error);
  for (gsize i = 0; i < nl; i++)
    g_assert_true (isfinite (mean[i]) && isfinite (logvar[i]));
}

/* A sampling loop replays one recorded graph: after the first call, further
 * calls of the same shape allocate no device memory. */
static void
test_unet_replay (void)
{
  if (!need_model ())
    return;
  GError *error = NULL;
  g_autoptr (SdModel) model = sd_model_open (model_path, NULL, &error);
  g_assert_no_error (error);
  g_autoptr (SdUNet) unet = sd_unet_new (ctx, model, TRUE, &error);
  g_assert_no_error (error);
  const SdUNetConfig *cfg = sd_unet_get_config (unet);
  const int B = 2, h = 8, w = 8, T = 77;
  g_autofree float *x = g_new (float, (gsize) B * 4 * h * w);
  g_autofree float *c = g_new (float, (gsize) B * T * cfg->context_dim);
  g_autofree float *out = g_new (float, (gsize) B * 4 * h * w);
  g_autofree float *out2 = g_new (float, (gsize) B * 4 * h * w);
  fill_latents (x, (gsize) B * 4 * h * w, 1, 1.0f);
  fill_latents (c, (gsize) B * T * cfg->context_dim, 2, 1.0f);
  float t[2] = { 500.0f, 500.0f };
  SdUNetCall call = { .batch = B, .height = h, .width = w, .context_len = T, .sample = x,
                      .timesteps = t, .context = c, .out = out };
  g_assert_true (sd_unet_forward (unet, &call, &error));
  g_assert_no_error (error);
  guint64 after_first = ivk_context_get_allocated (ctx);
  for (int step = 0; step < 3; step++)
    {
      t[0] = t[1] = 400.0f - 100 * step;
      call.out = out2;
      g_assert_true (sd_unet_forward (unet, &call, &error));
      g_assert_no_error (error);
      g_assert_cmpuint (ivk_context_get_allocated (ctx), ==, after_first);
    }
  /* same input again: same output, bit for bit (deterministic replay) */
  t[0] = t[1] = 500.0f;
  g_assert_true (sd_unet_forward (unet, &call, &error));
  g_assert_cmpmem (out, sizeof (float) * B * 4 * h * w, out2, sizeof (float) * B * 4 * h * w);
}

/* The memory plan: lifetime planning must reuse memory (arena well below the
 * sum of all intermediates), and a virtual UNet plans without uploading. */
static void
test_unet_plan (void)
{
  if (!need_model ())
    return;
  GError *error = NULL;
  g_autoptr (SdModel) model = sd_model_open (model_path, NULL, &error);
  g_assert_no_error (error);
  guint64 before = ivk_context_get_allocated (ctx);
  g_autoptr (SdUNet) unet = sd_unet_new_virtual (ctx, model, TRUE, &error);
  g_assert_no_error (error);
  IvkGraphStats st;
  g_assert_true (sd_unet_plan (unet, 2, 32, 32, 77, &st, &error));
  g_assert_no_error (error);
  g_test_message ("tiny UNet 2x32x32: arena %.2f MiB, without reuse %.2f MiB, %u nodes, %.3f GFLOP",
                  st.arena_bytes / 1048576.0, st.naive_bytes / 1048576.0, st.n_nodes, st.flops * 1e-9);
  g_assert_cmpuint (ivk_context_get_allocated (ctx), ==, before);
  g_assert_cmpuint (st.arena_bytes, <, st.naive_bytes / 4);
  g_assert_cmpuint (st.arena_bytes, >, 0);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  ctx = ivk_context_new (NULL, NULL);
  const char *golden = test_golden_dir ();
  if (golden)
    {
      model_path = g_build_filename (golden, "sd15-tiny", "diffusers", NULL);
      if (!g_file_test (model_path, G_FILE_TEST_IS_DIR))
        g_clear_pointer (&model_path, g_free);
    }
  g_test_add_func ("/nets/vae/tiled-vs-untiled", test_vae_tiled);
  g_test_add_func ("/nets/vae/fp16-large-activations", test_vae_fp16_large);
  g_test_add_func ("/nets/unet/replay-no-realloc", test_unet_replay);
  g_test_add_func ("/nets/unet/plan", test_unet_plan);
  int rc = g_test_run ();
  g_free (model_path);
  if (ctx)
    ivk_context_unref (ctx);
  return rc;
}
