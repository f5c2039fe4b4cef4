/* test-job.c: the GPU-free parts of the CLI / server job path: parameter
 * validation (backend/job.c), masks from PNGs, model folders and names
 * (backend/models.c), and the A1111 request parser and response builder
 * (backend/serve-api.c) with every class of bad input. */
#include "config.h"

#include <glib/gstdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "job.h"
#include "models.h"
#include "sd-error.h"
#include "serve-api.h"
#include "test-util.h"

/* ---- helpers ----------------------------------------------------------------------- */

static SdImage *
solid (int w, int h, int channels, guint8 v, guint8 alpha)
{
  SdImage *img = sd_image_new (w, h, channels, NULL);
  g_assert_nonnull (img);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < channels; c++)
        sd_image_row (img, y)[x * channels + c] = (channels == 4 && c == 3) ? alpha : v;
  return img;
}

static char *
png_base64 (const SdImage *img)
{
  g_autoptr (GBytes) b = sd_image_save_png_to_bytes (img, 1, NULL);
  g_assert_nonnull (b);
  gsize len;
  const guchar *d = g_bytes_get_data (b, &len);
  return g_base64_encode (d, len);
}

static void
valid_params (ImpJobParams *p)
{
  imp_job_params_init (p);
  p->width = p->height = 64;
  p->steps = 4;
}

/* ---- validation -------------------------------------------------------------------- */

static void
expect_invalid (const ImpJobParams *p, const char *needle)
{
  g_autoptr (GError) e = NULL;
  g_assert_false (imp_job_params_validate (p, NULL, &e));
  g_assert_error (e, SD_ERROR, SD_ERROR_INVALID_ARG);
  if (!strstr (e->message, needle))
    g_error ("message '%s' does not mention '%s'", e->message, needle);
}

static void
test_validate (void)
{
  g_auto (ImpJobParams) p = { 0 };
  valid_params (&p);
  g_assert_true (imp_job_params_validate (&p, NULL, NULL));

  valid_params (&p);
  p.width = 65;
  expect_invalid (&p, "multiples of 8");
  valid_params (&p);
  p.height = 0;
  expect_invalid (&p, "multiples of 8");
  valid_params (&p);
  p.steps = 0;
  expect_invalid (&p, "steps");
  valid_params (&p);
  p.steps = -3;
  expect_invalid (&p, "steps");
  valid_params (&p);
  p.cfg_scale = -1;
  expect_invalid (&p, "guidance");
  valid_params (&p);
  p.cfg_scale = 101;
  expect_invalid (&p, "guidance");
  valid_params (&p);
  p.cfg_scale = NAN;
  expect_invalid (&p, "guidance");
  valid_params (&p);
  p.batch = 0;
  expect_invalid (&p, "batch");
  valid_params (&p);
  p.sampler = SD_SAMPLER_DDIM;
  p.karras = TRUE;
  expect_invalid (&p, "Karras");

  /* limits */
  ImpJobLimits lim;
  imp_job_limits_init (&lim);
  lim.max_steps = 10;
  lim.max_pixels = 64 * 64;
  valid_params (&p);
  p.steps = 11;
  g_assert_false (imp_job_params_validate (&p, &lim, NULL));
  valid_params (&p);
  p.width = 72;
  g_assert_false (imp_job_params_validate (&p, &lim, NULL));

  /* img2img */
  valid_params (&p);
  p.mode = SD_MODE_IMG2IMG;
  expect_invalid (&p, "init image");
  p.init = solid (64, 64, 3, 128, 255);
  g_assert_true (imp_job_params_validate (&p, NULL, NULL));
  p.strength = 0;
  expect_invalid (&p, "strength");
  p.strength = 1.5;
  expect_invalid (&p, "strength");
  p.strength = 0.2; /* int(4 * 0.2) = 0 steps */
  expect_invalid (&p, "runs no step");
  p.strength = 0.25;
  g_assert_true (imp_job_params_validate (&p, NULL, NULL));
  p.width = 128;
  expect_invalid (&p, "init image is 64x64");
  p.resize_init = TRUE;
  g_assert_true (imp_job_params_validate (&p, NULL, NULL));

  /* inpaint */
  p.resize_init = FALSE;
  p.width = 64;
  p.mode = SD_MODE_INPAINT;
  expect_invalid (&p, "mask");
  p.mask = g_new0 (float, 64 * 64);
  g_assert_true (imp_job_params_validate (&p, NULL, NULL));
  p.mask_blur = -1;
  expect_invalid (&p, "mask blur");
  p.mask_blur = 4;
  /* full_res: the processing size may differ from the image's */
  p.width = 128;
  p.full_res = TRUE;
  g_assert_true (imp_job_params_validate (&p, NULL, NULL));
}

static void
test_round_size (void)
{
  int w, h;
  g_assert_false (imp_round_size (64, 128, 8, &w, &h));
  g_assert_cmpint (w, ==, 64);
  g_assert_true (imp_round_size (517, 389, 8, &w, &h));
  g_assert_cmpint (w, ==, 512);
  g_assert_cmpint (h, ==, 384);
  g_assert_true (imp_round_size (3, 5, 8, &w, &h));
  g_assert_cmpint (w, ==, 8);
}

static void
test_mask_from_image (void)
{
  g_autoptr (SdImage) gray = solid (4, 2, 1, 255, 0);
  g_autofree float *m = imp_mask_from_image (gray);
  g_assert_cmpfloat (m[0], ==, 1.0f);

  /* RGB: luminance */
  g_autoptr (SdImage) rgb = solid (4, 2, 3, 0, 0);
  sd_image_row (rgb, 1)[0] = sd_image_row (rgb, 1)[1] = sd_image_row (rgb, 1)[2] = 255;
  g_autofree float *m2 = imp_mask_from_image (rgb);
  g_assert_cmpfloat (m2[0], ==, 0.0f);
  g_assert_cmpfloat (m2[4], ==, 1.0f);

  /* RGBA with transparency: the alpha */
  g_autoptr (SdImage) rgba = solid (4, 2, 4, 0, 255);
  sd_image_row (rgba, 0)[3] = 0;
  g_autofree float *m3 = imp_mask_from_image (rgba);
  g_assert_cmpfloat (m3[0], ==, 0.0f);
  g_assert_cmpfloat (m3[1], ==, 1.0f); /* opaque black = repaint */

  /* RGBA fully opaque: the luminance, as a plain picture */
  g_autoptr (SdImage) opaque = solid (4, 2, 4, 255, 255);
  sd_image_row (opaque, 0)[0] = sd_image_row (opaque, 0)[1] = sd_image_row (opaque, 0)[2] = 0;
  g_autofree float *m4 = imp_mask_from_image (opaque);
  g_assert_cmpfloat (m4[0], ==, 0.0f);
  g_assert_cmpfloat (m4[1], ==, 1.0f);
}

static void
test_infotext (void)
{
  g_auto (ImpJobParams) p = { 0 };
  valid_params (&p);
  p.prompt = g_strdup ("a red apple");
  p.negative = g_strdup ("blurry");
  p.sampler = SD_SAMPLER_DPMPP_2M;
  p.karras = TRUE;
  p.clip_skip = 2;
  g_autofree char *t = imp_job_infotext (&p, "tiny", 7);
  g_assert_cmpstr (t, ==,
                   "a red apple\nNegative prompt: blurry\nSteps: 4, Sampler: DPM++ 2M, "
                   "Schedule type: Karras, CFG scale: 7, Seed: 7, Size: 64x64, Model: tiny, "
                   "Clip skip: 2, Version: impasto " IMPASTO_VERSION);
  SdGenParams g;
  sd_gen_params_init (&g);
  g_assert_true (sd_parse_parameters (t, &g, NULL, NULL));
  g_assert_cmpint (g.seed, ==, 7);
  g_assert_cmpint (g.width, ==, 64);
  sd_gen_params_clear (&g);
}

/* ---- model folders ----------------------------------------------------------------- */

static void
touch (const char *path)
{
  g_autofree char *dir = g_path_get_dirname (path);
  g_assert_cmpint (g_mkdir_with_parents (dir, 0755), ==, 0);
  g_assert_true (g_file_set_contents (path, "x", 1, NULL));
}

static void
test_models (void)
{
  g_autofree char *tmp = g_dir_make_tmp ("impasto-models-XXXXXX", NULL);
  g_autofree char *data = g_build_filename (tmp, "data", NULL);
  g_autofree char *extra = g_build_filename (tmp, "extra", NULL);
  g_autofree char *extra2 = g_build_filename (tmp, "extra2", NULL);
  g_autofree char *user = g_build_filename (data, "impasto", "models", NULL);
  g_autofree char *a = g_build_filename (user, "alpha.safetensors", NULL);
  g_autofree char *b = g_build_filename (extra, "beta", "beta.fp16.safetensors", NULL);
  g_autofree char *c = g_build_filename (extra2, "gamma", "diffusers", "model_index.json", NULL);
  g_autofree char *d = g_build_filename (extra2, "delta.safetensors", NULL);
  touch (a);
  touch (b);
  touch (c);
  touch (d);
  g_autofree char *path_env = g_strdup_printf ("%s:%s", extra, extra2);
  g_setenv ("XDG_DATA_HOME", data, TRUE);
  g_setenv ("IMPASTO_MODEL_PATH", path_env, TRUE);
  /* g_get_user_data_dir caches the value: only check what it returns */
  g_auto (GStrv) dirs = imp_model_dirs ();
  g_assert_cmpuint (g_strv_length (dirs), ==, 3);
  g_assert_cmpstr (dirs[1], ==, extra);
  g_assert_cmpstr (dirs[2], ==, extra2);
  g_autofree char *first = g_build_filename (g_get_user_data_dir (), "impasto", "models", NULL);
  g_assert_cmpstr (dirs[0], ==, first);

  g_autoptr (GError) e = NULL;
  g_autofree char *rb = imp_model_resolve ("beta", &e);
  g_assert_no_error (e);
  g_autofree char *cb = g_canonicalize_filename (b, NULL);
  g_assert_cmpstr (rb, ==, cb);
  g_autofree char *rd = imp_model_resolve ("delta.safetensors [0123456789]", &e);
  g_assert_no_error (e);
  g_assert_true (g_str_has_suffix (rd, "/delta.safetensors"));
  g_autofree char *rd2 = imp_model_resolve ("delta", &e);
  g_assert_no_error (e);
  g_assert_cmpstr (rd, ==, rd2);
  g_autofree char *rg = imp_model_resolve ("gamma/diffusers", &e);
  g_assert_null (rg); /* contains a '/': a path, relative to the cwd */
  g_clear_error (&e);
  g_autofree char *gdir = g_build_filename (extra2, "gamma", "diffusers", NULL);
  g_autofree char *rg2 = imp_model_resolve (gdir, &e);
  g_assert_no_error (e);
  g_autofree char *name = imp_model_display_name (rg2);
  g_assert_cmpstr (name, ==, "gamma");
  g_autofree char *name2 = imp_model_display_name (b);
  g_assert_cmpstr (name2, ==, "beta");

  g_autofree char *missing = imp_model_resolve ("nope", &e);
  g_assert_null (missing);
  g_assert_error (e, SD_ERROR, SD_ERROR_MISSING);
  g_assert_nonnull (strstr (e->message, extra2));
  g_clear_error (&e);
  g_assert_null (imp_model_resolve ("/no/such/model.safetensors", &e));
  g_assert_error (e, SD_ERROR, SD_ERROR_MISSING);
  g_clear_error (&e);

  g_autoptr (GPtrArray) list = imp_model_list ();
  int found = 0;
  for (guint i = 0; i < list->len; i++)
    {
      ImpModelEntry *m = list->pdata[i];
      if (g_str_equal (m->name, "beta") || g_str_equal (m->name, "gamma")
          || g_str_equal (m->name, "delta"))
        found++;
      if (g_str_equal (m->name, "delta"))
        g_assert_cmpstr (m->title, ==, "delta.safetensors");
    }
  g_assert_cmpint (found, ==, 3);
  g_unsetenv ("IMPASTO_MODEL_PATH");
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", tmp);
  g_assert_cmpint (system (cmd), ==, 0);
}

/* ---- the A1111 request parser ------------------------------------------------------ */

static gboolean
parse (const char *body, gboolean img2img, ImpApiRequest *req, GError **error)
{
  ImpApiLimits lim;
  imp_api_limits_init (&lim);
  lim.max_image_pixels = 1024 * 1024;
  return imp_api_parse_request (body, strlen (body), img2img, &lim, req, error);
}

static void
expect_api_error (const char *body, gboolean img2img, guint status, const char *needle)
{
  g_auto (ImpApiRequest) req = { 0 };
  g_autoptr (GError) e = NULL;
  if (parse (body, img2img, &req, &e))
    g_error ("accepted: %.200s", body);
  g_assert_true (e->domain == IMP_API_ERROR);
  if (imp_api_error_status (e) != status || (needle && !strstr (e->message, needle)))
    g_error ("%.120s: got %u '%s', want %u '%s'", body, imp_api_error_status (e), e->message,
             status, needle ? needle : "");
  gsize len;
  g_autofree char *json = imp_api_error_json (imp_api_error_name (e), e->message, &len);
  g_autoptr (JsonParser) p = json_parser_new ();
  g_assert_true (json_parser_load_from_data (p, json, (gssize) len, NULL));
  JsonObject *o = json_node_get_object (json_parser_get_root (p));
  g_assert_true (json_object_has_member (o, "error"));
  g_assert_cmpstr (json_object_get_string_member (o, "detail"), ==, e->message);
}

static void
test_api_txt2img (void)
{
  g_auto (ImpApiRequest) r = { 0 };
  g_autoptr (GError) e = NULL;
  const char *body
      = "{\"prompt\": \"a red apple\", \"negative_prompt\": \"blurry\", \"seed\": 42,"
        " \"steps\": 3, \"cfg_scale\": 5.5, \"width\": 64, \"height\": 128,"
        " \"sampler_name\": \"DPM++ 2M\", \"scheduler\": \"Karras\", \"batch_size\": 2,"
        " \"n_iter\": 3, \"styles\": [], \"enable_hr\": false, \"unknown\": {\"x\": [1]},"
        " \"override_settings\": {\"sd_model_checkpoint\": \"m.safetensors [abc]\","
        " \"CLIP_stop_at_last_layers\": 2}, \"force_task_id\": \"task-7\","
        " \"restore_faces\": null}";
  g_assert_true (parse (body, FALSE, &r, &e));
  g_assert_no_error (e);
  g_assert_cmpstr (r.params.prompt, ==, "a red apple");
  g_assert_cmpstr (r.params.negative, ==, "blurry");
  g_assert_true (r.has_seed);
  g_assert_cmpuint (r.params.seed, ==, 42);
  g_assert_cmpint (r.params.steps, ==, 3);
  g_assert_cmpfloat (r.params.cfg_scale, ==, 5.5);
  g_assert_cmpint (r.params.width, ==, 64);
  g_assert_cmpint (r.params.height, ==, 128);
  g_assert_cmpint (r.params.sampler, ==, SD_SAMPLER_DPMPP_2M);
  g_assert_true (r.params.karras);
  g_assert_cmpint (r.params.batch, ==, 2);
  g_assert_cmpint (r.params.n_iter, ==, 3);
  g_assert_cmpint (r.params.clip_skip, ==, 2);
  g_assert_cmpstr (r.model, ==, "m.safetensors [abc]");
  g_assert_cmpstr (r.task_id, ==, "task-7");
  g_assert_cmpint (r.params.mode, ==, SD_MODE_TXT2IMG);
  imp_api_request_clear (&r);

  /* absent fields are left to the model (IMP_UNSET_*), A1111's values meanwhile; random seed */
  g_assert_true (parse ("{}", FALSE, &r, &e));
  g_assert_false (r.has_seed);
  g_assert_cmpint (r.request_seed, ==, -1);
  g_assert_cmpuint (r.params.unset, ==,
                    IMP_UNSET_SIZE | IMP_UNSET_STEPS | IMP_UNSET_CFG | IMP_UNSET_SAMPLER);
  g_assert_cmpint (r.params.width, ==, 512);
  g_assert_cmpint (r.params.steps, ==, 20);
  imp_api_request_clear (&r);
  /* sampler_index, nulls are absent, integral floats are integers */
  g_assert_true (parse ("{\"sampler_index\": \"Euler a\", \"steps\": 8.0, \"prompt\": null,"
                        " \"seed\": -1}",
                        FALSE, &r, &e));
  g_assert_cmpint (r.params.sampler, ==, SD_SAMPLER_EULER_A);
  g_assert_cmpint (r.params.steps, ==, 8);
  g_assert_cmpstr (r.params.prompt, ==, "");
  g_assert_cmpuint (r.params.unset, ==, IMP_UNSET_SIZE | IMP_UNSET_CFG);
}

static void
test_api_bad (void)
{
  /* malformed */
  expect_api_error ("", FALSE, 400, "empty");
  expect_api_error ("{\"prompt\": ", FALSE, 400, "malformed JSON");
  expect_api_error ("[1, 2]", FALSE, 400, "JSON object");
  expect_api_error ("\"just a string\"", FALSE, 400, NULL);
  expect_api_error ("{\"prompt\": \"\xff\xfe\"}", FALSE, 400, "UTF-8");
  g_autoptr (GString) deep = g_string_new ("{\"a\": ");
  for (int i = 0; i < 100000; i++)
    g_string_append_c (deep, '[');
  expect_api_error (deep->str, FALSE, 400, "nested");
  /* wrong types */
  expect_api_error ("{\"steps\": \"20\"}", FALSE, 422, "steps");
  expect_api_error ("{\"steps\": 2.5}", FALSE, 422, "integer");
  expect_api_error ("{\"cfg_scale\": true}", FALSE, 422, "cfg_scale");
  expect_api_error ("{\"prompt\": 5}", FALSE, 422, "prompt");
  expect_api_error ("{\"width\": [64]}", FALSE, 422, "width");
  expect_api_error ("{\"override_settings\": 3}", FALSE, 422, "override_settings");
  expect_api_error ("{\"seed\": 1e300}", FALSE, 422, "seed");
  /* values */
  expect_api_error ("{\"steps\": 0}", FALSE, 422, "steps");
  expect_api_error ("{\"steps\": 151}", FALSE, 422, "steps");
  expect_api_error ("{\"width\": 65}", FALSE, 422, "multiples of 8");
  expect_api_error ("{\"width\": 4096}", FALSE, 422, "too large");
  expect_api_error ("{\"cfg_scale\": -2}", FALSE, 422, "guidance");
  expect_api_error ("{\"batch_size\": 9}", FALSE, 422, "batch");
  expect_api_error ("{\"batch_size\": 8, \"n_iter\": 3}", FALSE, 422, "iterations");
  expect_api_error ("{\"seed\": -2}", FALSE, 422, "seed");
  expect_api_error ("{\"steps\": 99999999999}", FALSE, 422, "steps");
  expect_api_error ("{\"scheduler\": \"Exponential\"}", FALSE, 422, "scheduler");
  /* samplers: A1111 answers 404 "Sampler not found"; the message lists the valid ones */
  expect_api_error ("{\"sampler_name\": \"Heun\"}", FALSE, 404, "DPM++ 2M");
}

static void
test_api_img2img (void)
{
  g_autoptr (SdImage) init = solid (64, 48, 3, 100, 255);
  g_autoptr (SdImage) mask = solid (64, 48, 1, 255, 0);
  g_autoptr (SdImage) small_mask = solid (32, 32, 1, 255, 0);
  g_autofree char *init64 = png_base64 (init);
  g_autofree char *mask64 = png_base64 (mask);
  g_autofree char *small64 = png_base64 (small_mask);
  g_auto (ImpApiRequest) r = { 0 };
  g_autoptr (GError) e = NULL;

  g_autofree char *b1
      = g_strdup_printf ("{\"init_images\": [\"%s\"], \"width\": 64, \"height\": 64,"
                         " \"steps\": 4, \"denoising_strength\": 0.5}",
                         init64);
  g_assert_true (parse (b1, TRUE, &r, &e));
  g_assert_no_error (e);
  g_assert_cmpint (r.params.mode, ==, SD_MODE_IMG2IMG);
  g_assert_cmpint (r.params.init->width, ==, 64);
  g_assert_cmpint (r.params.init->height, ==, 48);
  g_assert_true (r.params.resize_init); /* A1111 resizes to width x height */
  g_assert_cmpfloat (r.params.strength, ==, 0.5);
  imp_api_request_clear (&r);
  /* no size: the init image's (64x48) */
  g_autofree char *b0 = g_strdup_printf ("{\"init_images\": [\"%s\"], \"steps\": 4}", init64);
  g_assert_true (parse (b0, TRUE, &r, &e));
  g_assert_cmpint (r.params.width, ==, 64);
  g_assert_cmpint (r.params.height, ==, 48);
  g_assert_false (r.params.unset & IMP_UNSET_SIZE);
  imp_api_request_clear (&r);

  g_autofree char *b2
      = g_strdup_printf ("{\"init_images\": [\"data:image/png;base64,%s\"], \"mask\": "
                         "\"%s\", \"mask_blur\": 2, \"inpainting_mask_invert\": 1,"
                         " \"inpaint_full_res\": false, \"inpaint_full_res_padding\": 8,"
                         " \"width\": 64, \"height\": 48, \"steps\": 2}",
                         init64, mask64);
  g_assert_true (parse (b2, TRUE, &r, &e));
  g_assert_no_error (e);
  g_assert_cmpint (r.params.mode, ==, SD_MODE_INPAINT);
  g_assert_nonnull (r.params.mask);
  g_assert_cmpfloat (r.params.mask[0], ==, 1.0f);
  g_assert_cmpint (r.params.mask_blur, ==, 2);
  g_assert_true (r.params.mask_invert);
  g_assert_false (r.params.full_res);
  g_assert_cmpint (r.params.full_res_padding, ==, 8);
  imp_api_request_clear (&r);

  /* bad images */
  expect_api_error ("{\"width\": 64}", TRUE, 422, "init_images");
  expect_api_error ("{\"init_images\": []}", TRUE, 422, "empty");
  expect_api_error ("{\"init_images\": \"abc\"}", TRUE, 422, "init_images");
  expect_api_error ("{\"init_images\": [5]}", TRUE, 422, "init_images");
  expect_api_error ("{\"init_images\": [\"!!!!\"]}", TRUE, 400, "base64");
  expect_api_error ("{\"init_images\": [\"QUJD\"]}", TRUE, 400, "PNG"); /* "ABC" */
  expect_api_error ("{\"init_images\": [\"QUJDRA=\"]}", TRUE, 400, "base64");
  expect_api_error ("{\"init_images\": [\"https://example.com/a.png\"]}", TRUE, 400, "URL");
  /* a JPEG's first bytes */
  expect_api_error ("{\"init_images\": [\"/9j/4AAQSkZJRgABAQAAAQABAAD/\"]}", TRUE, 400, "JPEG");
  /* a corrupt PNG: one byte of the image data flipped */
  {
    g_autoptr (GBytes) b = sd_image_save_png_to_bytes (init, 1, NULL);
    gsize len;
    const guint8 *orig = g_bytes_get_data (b, &len);
    guint8 *d = g_memdup2 (orig, len);
    d[len - 20] ^= 0x55;
    g_autofree char *c64 = g_base64_encode (d, len);
    g_free (d);
    g_autofree char *body = g_strdup_printf ("{\"init_images\": [\"%s\"]}", c64);
    expect_api_error (body, TRUE, 400, "init_images");
    g_autofree char *t64 = g_base64_encode (g_bytes_get_data (b, NULL), 40);
    g_autofree char *body2 = g_strdup_printf ("{\"init_images\": [\"%s\"]}", t64);
    expect_api_error (body2, TRUE, 400, "init_images");
  }
  /* too many pixels (checked from the header, before decoding) */
  {
    g_autoptr (SdImage) big = solid (2048, 1024, 1, 0, 0);
    g_autofree char *big64 = png_base64 (big);
    g_autofree char *body = g_strdup_printf ("{\"init_images\": [\"%s\"]}", big64);
    expect_api_error (body, TRUE, 413, NULL);
  }
  g_autofree char *b3
      = g_strdup_printf ("{\"init_images\": [\"%s\"], \"mask\": \"%s\"}", init64, small64);
  expect_api_error (b3, TRUE, 422, "same size");
  g_autofree char *b4 = g_strdup_printf ("{\"init_images\": [\"%s\"], \"mask\": 5}", init64);
  expect_api_error (b4, TRUE, 422, "mask");
  g_autofree char *b5
      = g_strdup_printf ("{\"init_images\": [\"%s\"], \"denoising_strength\": 0}", init64);
  expect_api_error (b5, TRUE, 422, "strength");
  g_autofree char *b6
      = g_strdup_printf ("{\"init_images\": [\"%s\"], \"inpaint_full_res\": \"yes\"}", init64);
  expect_api_error (b6, TRUE, 422, "inpaint_full_res");
}

static void
test_api_base64 (void)
{
  g_autoptr (GError) e = NULL;
  g_autoptr (GBytes) b = imp_api_decode_base64 ("QUJD\nREVG", &e);
  g_assert_no_error (e);
  g_assert_cmpmem (g_bytes_get_data (b, NULL), g_bytes_get_size (b), "ABCDEF", 6);
  g_autoptr (GBytes) b2 = imp_api_decode_base64 ("data:image/png;base64,QUI=", &e);
  g_assert_no_error (e);
  g_assert_cmpuint (g_bytes_get_size (b2), ==, 2);
  const char *bad[]
      = { "", "QUJ", "QU=I", "QUJD=", "QUJD====", "Q!JD", "data:image/png,QUJD", "QUJD\x01" };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autoptr (GBytes) x = imp_api_decode_base64 (bad[i], &e);
      g_assert_null (x);
      g_assert_error (e, IMP_API_ERROR, IMP_API_ERROR_BAD_IMAGE);
      g_clear_error (&e);
    }
}

static void
test_api_response (void)
{
  g_auto (ImpApiRequest) r = { 0 };
  g_assert_true (parse ("{\"prompt\": \"p\", \"seed\": -1, \"batch_size\": 2, \"width\": 64,"
                        " \"height\": 64}",
                        FALSE, &r, NULL));
  r.params.seed = 10;
  g_auto (ImpJobResult) res = { 0 };
  res.png = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  res.infotexts = g_ptr_array_new_with_free_func (g_free);
  res.seeds = g_array_new (FALSE, FALSE, sizeof (guint64));
  res.model_name = g_strdup ("tiny");
  for (guint64 s = 10; s < 12; s++)
    {
      g_ptr_array_add (res.png, g_bytes_new ("PNGDATA", 7));
      g_ptr_array_add (res.infotexts, imp_job_infotext (&r.params, "tiny", s));
      g_array_append_val (res.seeds, s);
    }
  g_autoptr (JsonNode) root = imp_api_build_response (&r, &res, 1700000000);
  JsonObject *o = json_node_get_object (root);
  JsonArray *images = json_object_get_array_member (o, "images");
  g_assert_cmpuint (json_array_get_length (images), ==, 2);
  g_assert_cmpstr (json_array_get_string_element (images, 0), ==, "UE5HREFUQQ==");
  JsonObject *params = json_object_get_object_member (o, "parameters");
  g_assert_cmpint (json_object_get_int_member (params, "seed"), ==, -1); /* the request, echoed */
  g_autoptr (JsonParser) p = json_parser_new ();
  g_assert_true (
      json_parser_load_from_data (p, json_object_get_string_member (o, "info"), -1, NULL));
  JsonObject *info = json_node_get_object (json_parser_get_root (p));
  g_assert_cmpint (json_object_get_int_member (info, "seed"), ==, 10);
  JsonArray *seeds = json_object_get_array_member (info, "all_seeds");
  g_assert_cmpint (json_array_get_int_element (seeds, 1), ==, 11);
  JsonArray *texts = json_object_get_array_member (info, "infotexts");
  g_assert_nonnull (strstr (json_array_get_string_element (texts, 1), "Seed: 11"));
  g_assert_cmpstr (json_object_get_string_member (info, "sd_model_name"), ==, "tiny");
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/job/validate", test_validate);
  g_test_add_func ("/job/round-size", test_round_size);
  g_test_add_func ("/job/mask-from-image", test_mask_from_image);
  g_test_add_func ("/job/infotext", test_infotext);
  g_test_add_func ("/job/models", test_models);
  g_test_add_func ("/api/txt2img", test_api_txt2img);
  g_test_add_func ("/api/bad-input", test_api_bad);
  g_test_add_func ("/api/img2img", test_api_img2img);
  g_test_add_func ("/api/base64", test_api_base64);
  g_test_add_func ("/api/response", test_api_response);
  return g_test_run ();
}
