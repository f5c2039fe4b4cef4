/* test-plugin-client.c: the plug-in's GIMP-independent side (plugin/imp-params,
 * imp-client, imp-run) against a fake AUTOMATIC1111 server on a unix socket
 * in this process: options text, requests, results and their geometry,
 * progress, cancel, a server that dies mid-job, a missing or failing backend
 * program, and an invalid model. The real backend and GIMP are exercised by
 * tests/gimp/. The model files are only probed (headers): the golden tiny
 * model; those cases skip when the golden data is absent. */
#include "config.h"

#include <math.h>
#include <string.h>
#include <unistd.h>

#include <glib/gstdio.h>

#include <gio/gunixsocketaddress.h>
#include <libsoup/soup.h>

#include "imp-client.h"
#include "imp-params.h"
#include "imp-run.h"
#include "sd-error.h"
#include "test-util.h"

/* ---- the fake server ------------------------------------------------------------------------ */

typedef enum
{
  FAKE_OK,    /* answer at once */
  FAKE_SLOW,  /* answer after `steps` x 100 ms, progress meanwhile; /interrupt stops it */
  FAKE_DIE,   /* close the connection instead of answering */
  FAKE_ERROR, /* 422 with an error detail */
} FakeMode;

typedef struct
{
  SoupServer *server;
  char *dir, *socket_path;
  FakeMode mode;
  int steps, step;
  gboolean interrupted;
  int n_jobs, n_interrupts, n_progress;
  char *last_path;
  JsonNode *last_request; /* owned */
  SoupServerMessage *paused;
  char *current_task;
} Fake;

static Fake fake;

static void
send_json (SoupServerMessage *msg, guint status, const char *json)
{
  soup_server_message_set_status (msg, status, NULL);
  soup_server_message_set_response (msg, "application/json", SOUP_MEMORY_COPY, json, strlen (json));
}

/* The reply image: txt2img a solid (10, 200, 30); img2img the init image
 * with its colours inverted. */
static char *
reply_for (JsonObject *req)
{
  int w = json_object_get_int_member_with_default (req, "width", 64);
  int h = json_object_get_int_member_with_default (req, "height", 64);
  g_autoptr (SdImage) img = NULL;
  JsonNode *inits = json_object_get_member (req, "init_images");
  if (inits && JSON_NODE_HOLDS_ARRAY (inits))
    {
      const char *b64 = json_array_get_string_element (json_node_get_array (inits), 0);
      gsize len;
      g_autofree guchar *png = g_base64_decode (b64, &len);
      img = sd_image_load_png_from_memory (png, len, 3, NULL, NULL);
      g_assert_nonnull (img);
      g_assert_cmpint (img->width, ==, w);
      g_assert_cmpint (img->height, ==, h);
      for (int y = 0; y < h; y++)
        for (int x = 0; x < 3 * w; x++)
          sd_image_row (img, y)[x] = 255 - sd_image_row (img, y)[x];
    }
  else
    {
      img = sd_image_new (w, h, 3, NULL);
      for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
          {
            guint8 *p = sd_image_row (img, y) + 3 * x;
            p[0] = 10, p[1] = 200, p[2] = 30;
          }
    }
  g_autoptr (GBytes) bytes = sd_image_save_png_to_bytes (img, 1, NULL);
  gsize len;
  const guchar *data = g_bytes_get_data (bytes, &len);
  g_autofree char *b64 = g_base64_encode (data, len);
  gint64 seed = json_object_get_int_member_with_default (req, "seed", -1);
  return g_strdup_printf ("{\"images\": [\"%s\"], \"parameters\": {}, \"info\": "
                          "\"{\\\"seed\\\": %" G_GINT64_FORMAT ", \\\"infotexts\\\": "
                          "[\\\"fake infotext\\\"]}\"}",
                          b64, seed);
}

static gboolean
slow_step (gpointer data)
{
  SoupServerMessage *msg = data;
  if (fake.interrupted)
    {
      send_json (msg, 409, "{\"error\": \"Interrupted\", \"detail\": \"the job was interrupted\"}");
    }
  else if (++fake.step < fake.steps)
    return G_SOURCE_CONTINUE;
  else
    {
      g_autofree char *reply = reply_for (json_node_get_object (fake.last_request));
      send_json (msg, 200, reply);
    }
  g_clear_pointer (&fake.current_task, g_free);
  fake.paused = NULL;
  soup_server_message_unpause (msg);
  g_object_unref (msg);
  return G_SOURCE_REMOVE;
}

static void
handler (SoupServer *server, SoupServerMessage *msg, const char *path, GHashTable *query,
         gpointer data)
{
  g_free (fake.last_path);
  fake.last_path = g_strdup (path);
  if (strcmp (path, "/impasto/v1/health") == 0)
    {
      send_json (msg, 200, "{\"status\": \"ok\"}");
      return;
    }
  if (strcmp (path, "/sdapi/v1/progress") == 0)
    {
      fake.n_progress++;
      const char *id = query ? g_hash_table_lookup (query, "id_task") : NULL;
      g_autofree char *json = g_strdup_printf (
          "{\"progress\": %g, \"state\": {\"sampling_step\": %d, \"sampling_steps\": %d}, "
          "\"current_task\": %s%s%s, \"id_task\": \"%s\", \"queue_position\": %d}",
          fake.steps ? (double) fake.step / fake.steps : 0.0, fake.step, fake.steps,
          fake.current_task ? "\"" : "", fake.current_task ? fake.current_task : "null",
          fake.current_task ? "\"" : "", id ? id : "", fake.current_task ? 0 : -1);
      send_json (msg, 200, json);
      return;
    }
  if (strcmp (path, "/sdapi/v1/interrupt") == 0)
    {
      fake.n_interrupts++;
      fake.interrupted = TRUE;
      send_json (msg, 200, "null");
      return;
    }
  if (strcmp (path, "/sdapi/v1/txt2img") == 0 || strcmp (path, "/sdapi/v1/img2img") == 0)
    {
      fake.n_jobs++;
      SoupMessageBody *body = soup_server_message_get_request_body (msg);
      g_autoptr (GBytes) bytes = soup_message_body_flatten (body);
      g_autoptr (JsonParser) parser = json_parser_new ();
      g_assert_true (json_parser_load_from_data (parser, g_bytes_get_data (bytes, NULL),
                                                 g_bytes_get_size (bytes), NULL));
      g_clear_pointer (&fake.last_request, json_node_unref);
      fake.last_request = json_node_copy (json_parser_get_root (parser));
      JsonObject *req = json_node_get_object (fake.last_request);
      switch (fake.mode)
        {
        case FAKE_OK:
          {
            g_autofree char *reply = reply_for (req);
            send_json (msg, 200, reply);
          }
          break;
        case FAKE_SLOW:
          fake.step = 0;
          fake.interrupted = FALSE;
          fake.current_task = g_strdup (json_object_get_string_member (req, "force_task_id"));
          fake.paused = g_object_ref (msg);
          soup_server_message_pause (msg);
          g_timeout_add (100, slow_step, msg);
          break;
        case FAKE_DIE:
          {
            GIOStream *s = soup_server_message_steal_connection (msg);
            g_io_stream_close (s, NULL, NULL);
            g_object_unref (s);
          }
          break;
        case FAKE_ERROR:
          send_json (msg, 422,
                     "{\"error\": \"InvalidValue\", \"detail\": \"width must be a "
                     "multiple of 8\"}");
          break;
        }
      return;
    }
  send_json (msg, 404, "{\"detail\": \"Not Found\"}");
}

static void
fake_start (FakeMode mode)
{
  memset (&fake, 0, sizeof fake);
  fake.mode = mode;
  fake.steps = 5;
  fake.dir = g_dir_make_tmp ("imp-client-XXXXXX", NULL);
  g_assert_nonnull (fake.dir);
  fake.socket_path = g_build_filename (fake.dir, "impasto.sock", NULL);
  fake.server = soup_server_new (NULL, NULL);
  soup_server_add_handler (fake.server, NULL, handler, NULL, NULL);
  g_autoptr (GSocket) sock
      = g_socket_new (G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT, NULL);
  g_autoptr (GSocketAddress) addr = g_unix_socket_address_new (fake.socket_path);
  g_assert_true (g_socket_bind (sock, addr, TRUE, NULL));
  g_assert_true (g_socket_listen (sock, NULL));
  g_autoptr (GError) e = NULL;
  g_assert_true (soup_server_listen_socket (fake.server, sock, 0, &e));
  g_setenv ("IMPASTO_SOCKET", fake.socket_path, TRUE);
  g_unsetenv ("IMPASTO_URL");
  /* never start a real backend from here */
  g_setenv ("IMPASTO_BACKEND", "/nonexistent/impasto", TRUE);
}

static void
fake_stop (void)
{
  soup_server_disconnect (fake.server);
  g_clear_object (&fake.server);
  while (g_main_context_pending (NULL))
    g_main_context_iteration (NULL, FALSE);
  unlink (fake.socket_path);
  g_rmdir (fake.dir);
  g_free (fake.socket_path);
  g_free (fake.dir);
  g_free (fake.last_path);
  g_free (fake.current_task);
  g_clear_pointer (&fake.last_request, json_node_unref);
}

/* ---- an in-memory image ---------------------------------------------------------------------- */

typedef struct
{
  SdImage *pixels; /* RGBA, image size */
  float *selection;
  int n_reads;
} Mem;

static SdImage *
mem_read_pixels (gpointer data, ImpRect r, GError **error)
{
  Mem *m = data;
  m->n_reads++;
  SdImage *out = sd_image_new (r.width, r.height, 4, error);
  for (int y = 0; y < r.height; y++)
    for (int x = 0; x < r.width; x++)
      {
        int sx = r.x + x, sy = r.y + y;
        if (sx >= 0 && sy >= 0 && sx < m->pixels->width && sy < m->pixels->height)
          memcpy (sd_image_row (out, y) + 4 * x, sd_image_row (m->pixels, sy) + 4 * sx, 4);
      }
  return out;
}

static float *
mem_read_selection (gpointer data, ImpRect r, GError **error)
{
  Mem *m = data;
  float *out = g_new0 (float, (gsize) r.width *r.height);
  for (int y = 0; y < r.height; y++)
    for (int x = 0; x < r.width; x++)
      out[y * r.width + x] = m->selection[(r.y + y) * m->pixels->width + r.x + x];
  return out;
}

/* A w x h gradient image with an optional rectangular selection. */
static void
mem_init (Mem *m, ImpSource *src, int w, int h, const ImpRect *sel)
{
  memset (m, 0, sizeof *m);
  m->pixels = sd_image_new (w, h, 4, NULL);
  m->selection = g_new0 (float, (gsize) w *h);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      {
        guint8 *p = sd_image_row (m->pixels, y) + 4 * x;
        p[0] = x * 255 / w, p[1] = y * 255 / h, p[2] = 128, p[3] = x < 4 ? 0 : 255;
      }
  memset (src, 0, sizeof *src);
  src->image_width = w;
  src->image_height = h;
  src->drawable = (ImpRect){ 0, 0, w, h };
  if (sel)
    {
      for (int y = sel->y; y < sel->y + sel->height; y++)
        for (int x = sel->x; x < sel->x + sel->width; x++)
          m->selection[y * w + x] = 1;
      src->has_selection = TRUE;
      src->selection = *sel;
    }
  src->read_pixels = mem_read_pixels;
  src->read_selection = mem_read_selection;
  src->host = m;
}

static void
mem_clear (Mem *m)
{
  sd_image_free (m->pixels);
  g_free (m->selection);
}

static const char *
tiny_model (void)
{
  static char *path;
  const char *dir = test_require_golden ();
  if (!dir)
    return NULL;
  if (!path)
    path = g_build_filename (dir, "sd15-tiny", "sd15-tiny.fp16.safetensors", NULL);
  return path;
}

static void
tiny_params (ImpParams *p, ImpProc proc, const char *model)
{
  imp_params_init (p, proc);
  imp_params_set_string (&p->prompt, "a red apple");
  imp_params_set_string (&p->model, model);
  p->steps = 2;
  p->seed = 42;
  p->size = 64;
}

typedef struct
{
  int n;
  double last;
  gboolean saw_step;
  GCancellable *cancel_on_step; /* cancel when a step is reported */
} Progress;

static void
on_progress (gpointer data, double fraction, const char *text)
{
  Progress *pr = data;
  pr->n++;
  pr->last = fraction;
  if (text && g_str_has_prefix (text, "Step "))
    {
      pr->saw_step = TRUE;
      if (pr->cancel_on_step)
        g_cancellable_cancel (pr->cancel_on_step);
    }
}

/* ---- options
 * ------------------------------------------------------------------------------------- */

static void
test_params_text (void)
{
  g_auto (ImpParams) p = { 0 }, q = { 0 };
  imp_params_init (&p, IMP_PROC_INPAINT);
  g_assert_cmpfloat (p.strength, ==, 1.0);
  g_assert_cmpfloat (p.color_match, ==, 0.5);
  g_assert_cmpint (p.grow, ==, 0);
  g_assert_cmpfloat (p.feather, ==, 0);
  g_assert_cmpstr (p.sampler, ==, "Euler a");
  imp_params_set_string (&p.prompt, "line one\nline \"two\" = x; [y]");
  imp_params_set_string (&p.negative, "blurry");
  p.steps = 33;
  p.cfg_scale = 6.5;
  p.seed = 2147483647;
  p.padding = 12.5;
  p.grow = 3;
  p.feather = 4.25;
  p.color_match = 0;
  p.last_seed = 99;
  g_autofree char *text = imp_params_to_text (&p, NULL);

  imp_params_init (&q, IMP_PROC_GENERATE);
  g_assert_true (imp_params_from_text (&q, text, strlen (text), TRUE, NULL));
  g_assert_cmpint (q.proc, ==, IMP_PROC_INPAINT);
  g_assert_cmpstr (q.prompt, ==, p.prompt);
  g_assert_cmpstr (q.negative, ==, "blurry");
  g_assert_cmpint (q.steps, ==, 33);
  g_assert_cmpfloat (q.cfg_scale, ==, 6.5);
  g_assert_cmpint (q.seed, ==, 2147483647);
  g_assert_cmpfloat (q.padding, ==, 12.5);
  g_assert_cmpint (q.grow, ==, 3);
  g_assert_cmpfloat (q.feather, ==, 4.25);
  g_assert_cmpfloat (q.color_match, ==, 0);
  g_assert_cmpint (q.last_seed, ==, 99);

  /* tolerant: bad or missing keys keep the current values; the procedure
   * only changes when asked */
  const char *bad = "[impasto]\nversion=7\nprocedure=img2img\nsteps=many\nseed=12\nfuture=1\n";
  g_assert_true (imp_params_from_text (&q, bad, strlen (bad), FALSE, NULL));
  g_assert_cmpint (q.proc, ==, IMP_PROC_INPAINT);
  g_assert_cmpint (q.steps, ==, 33);
  g_assert_cmpint (q.seed, ==, 12);
  g_autoptr (GError) e = NULL;
  g_assert_false (imp_params_from_text (&q, "[other]\na=1\n", 12, FALSE, &e));
  g_assert_nonnull (e);
  g_clear_error (&e);
  g_assert_false (imp_params_from_text (&q, "\x01\x02", 2, FALSE, &e));
}

static void
test_params_validate (void)
{
  g_auto (ImpParams) p = { 0 };
  g_autoptr (GError) e = NULL;
  imp_params_init (&p, IMP_PROC_INPAINT);
  g_assert_true (imp_params_validate (&p, NULL));
  struct
  {
    const char *what;
    void (*set) (ImpParams *);
  } cases[] = {
    { "steps", NULL }, { "cfg-scale", NULL }, { "seed", NULL },
    { "size", NULL },  { "strength", NULL },  { "padding", NULL },
    { "grow", NULL },  { "feather", NULL },   { "color-match", NULL },
  };
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      g_auto (ImpParams) q = { 0 };
      imp_params_copy (&q, &p);
      switch (i)
        {
        case 0:
          q.steps = 0;
          break;
        case 1:
          q.cfg_scale = 31;
          break;
        case 2:
          q.seed = -2;
          break;
        case 3:
          q.size = 32;
          break;
        case 4:
          q.strength = 0;
          break;
        case 5:
          q.padding = -1;
          break;
        case 6:
          q.grow = 513;
          break;
        case 7:
          q.feather = NAN;
          break;
        case 8:
          q.color_match = 1.5;
          break;
        }
      g_assert_false (imp_params_validate (&q, &e));
      g_assert_error (e, SD_ERROR, SD_ERROR_INVALID_ARG);
      if (!g_str_has_prefix (e->message, cases[i].what))
        g_error ("case %s: message '%s'", cases[i].what, e->message);
      g_clear_error (&e);
    }
  /* generate does not use strength */
  p.proc = IMP_PROC_GENERATE;
  p.strength = 0;
  g_assert_true (imp_params_validate (&p, NULL));
}

static void
test_layer_name (void)
{
  g_auto (ImpParams) p = { 0 };
  imp_params_init (&p, IMP_PROC_INPAINT);
  g_autofree char *a = imp_params_layer_name (&p, 7);
  g_assert_cmpstr (a, ==, "Impasto inpaint: (no prompt) (seed 7)");
  imp_params_set_string (&p.prompt, "  a red\n\napple  ");
  g_autofree char *b = imp_params_layer_name (&p, 42);
  g_assert_cmpstr (b, ==, "Impasto inpaint: a red apple (seed 42)");
  imp_params_set_string (&p.prompt, "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
                                    "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
                                    "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
                                    "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
                                    "\u00e9\u00e9\u00e9");
  p.proc = IMP_PROC_GENERATE;
  g_autofree char *c = imp_params_layer_name (&p, 1);
  g_assert_true (g_utf8_validate (c, -1, NULL));
  g_assert_true (g_str_has_prefix (c, "Impasto generate: \u00e9"));
  g_assert_nonnull (strstr (c, "\u2026 (seed 1)"));
  g_assert_cmpint (g_utf8_strlen (c, -1), ==,
                   strlen ("Impasto generate: ") + 40 + strlen (" (seed 1)"));
}

static void
test_build_request (void)
{
  g_auto (ImpParams) p = { 0 };
  imp_params_init (&p, IMP_PROC_INPAINT);
  imp_params_set_string (&p.prompt, "x");
  g_autoptr (SdImage) init = sd_image_new (16, 8, 3, NULL);
  float mask[16 * 8] = { 0 };
  mask[3] = 1;
  g_autoptr (JsonNode) n
      = imp_run_build_request (&p, "/m/x.safetensors", 5, 16, 8, init, mask, NULL);
  JsonObject *o = json_node_get_object (n);
  g_assert_cmpint (json_object_get_int_member (o, "width"), ==, 16);
  g_assert_cmpint (json_object_get_int_member (o, "height"), ==, 8);
  g_assert_cmpint (json_object_get_int_member (o, "seed"), ==, 5);
  g_assert_cmpint (json_object_get_int_member (o, "mask_blur"), ==, 0);
  g_assert_false (json_object_get_boolean_member (o, "inpaint_full_res"));
  g_assert_cmpfloat (json_object_get_double_member (o, "denoising_strength"), ==, 1.0);
  g_assert_cmpstr (json_object_get_string_member (o, "sampler_name"), ==, "Euler a");
  JsonObject *ov = json_object_get_object_member (o, "override_settings");
  g_assert_cmpstr (json_object_get_string_member (ov, "sd_model_checkpoint"), ==,
                   "/m/x.safetensors");
  /* the mask is a gray PNG, white = repaint */
  gsize len;
  g_autofree guchar *png = g_base64_decode (json_object_get_string_member (o, "mask"), &len);
  g_autoptr (SdImage) m = sd_image_load_png_from_memory (png, len, 0, NULL, NULL);
  g_assert_cmpint (m->channels, ==, 1);
  g_assert_cmpint (sd_image_row (m, 0)[3], ==, 255);
  g_assert_cmpint (sd_image_row (m, 0)[2], ==, 0);
  /* txt2img: no image fields */
  g_autoptr (JsonNode) t = imp_run_build_request (&p, "/m", 5, 64, 64, NULL, NULL, NULL);
  g_assert_false (json_object_has_member (json_node_get_object (t), "init_images"));
  g_assert_false (json_object_has_member (json_node_get_object (t), "mask"));
}

/* ---- runs against the fake server
 * ---------------------------------------------------------------- */

static void
test_generate (void)
{
  const char *model = tiny_model ();
  if (!model)
    return;
  fake_start (FAKE_OK);
  Mem m;
  ImpSource src;
  const ImpRect sel = { 10, 20, 50, 30 };
  mem_init (&m, &src, 120, 90, &sel);
  g_auto (ImpParams) p = { 0 };
  tiny_params (&p, IMP_PROC_GENERATE, model);
  g_autoptr (ImpClient) c = imp_client_new ();
  g_auto (ImpResult) r = { 0 };
  g_autoptr (GError) e = NULL;
  Progress pr = { 0 };

  g_assert_true (imp_run (c, &p, &src, on_progress, &pr, NULL, &r, &e));
  g_assert_no_error (e);
  g_assert_cmpstr (fake.last_path, ==, "/sdapi/v1/txt2img");
  /* the selection's bounds, worked at ~64x64 with the aspect kept */
  g_assert_cmpint (r.rect.x, ==, 10);
  g_assert_cmpint (r.rect.y, ==, 20);
  g_assert_cmpint (r.rect.width, ==, 50);
  g_assert_cmpint (r.rect.height, ==, 30);
  JsonObject *req = json_node_get_object (fake.last_request);
  g_assert_cmpint (json_object_get_int_member (req, "width"), ==, r.work_width);
  g_assert_cmpint (r.work_width % 8, ==, 0);
  g_assert_cmpint (r.work_height % 8, ==, 0);
  g_assert_cmpint (r.work_width, >, r.work_height); /* 50x30: the aspect is kept */
  g_assert_cmpint (json_object_get_int_member (req, "seed"), ==, 42);
  g_assert_cmpint (json_object_get_int_member (req, "steps"), ==, 2);
  g_assert_true (
      g_str_has_prefix (json_object_get_string_member (req, "force_task_id"), "impasto-gimp-"));
  g_assert_cmpint (r.seed, ==, 42);
  g_assert_cmpstr (r.infotext, ==, "fake infotext");
  g_assert_null (r.mask);
  g_assert_cmpint (r.pixels->width, ==, 50);
  g_assert_cmpint (r.pixels->channels, ==, 4);
  const guint8 *px = sd_image_row (r.pixels, 15) + 4 * 25;
  g_assert_cmpint (px[0], ==, 10);
  g_assert_cmpint (px[1], ==, 200);
  g_assert_cmpint (px[3], ==, 255);
  g_assert_cmpint (m.n_reads, ==, 0);

  /* the parasite text reproduces the run */
  g_autofree char *job = imp_result_job_text (&p, &r);
  g_auto (ImpParams) q = { 0 };
  imp_params_init (&q, IMP_PROC_INPAINT);
  g_assert_true (imp_params_from_text (&q, job, strlen (job), TRUE, NULL));
  g_assert_cmpint (q.proc, ==, IMP_PROC_GENERATE);
  g_assert_cmpint (q.seed, ==, 42);
  g_assert_cmpstr (q.prompt, ==, "a red apple");
  g_assert_nonnull (strstr (job, "parameters=fake infotext"));

  /* without the selection: the whole image; a random seed is drawn and
   * reported */
  p.use_selection = FALSE;
  p.seed = -1;
  imp_result_clear (&r);
  g_assert_true (imp_run (c, &p, &src, NULL, NULL, NULL, &r, &e));
  g_assert_cmpint (r.rect.width, ==, 120);
  g_assert_cmpint (r.rect.height, ==, 90);
  g_assert_cmpint (r.seed, >=, 0);
  req = json_node_get_object (fake.last_request);
  g_assert_cmpint (json_object_get_int_member (req, "seed"), ==, r.seed);
  mem_clear (&m);
  fake_stop ();
}

static void
test_inpaint (void)
{
  const char *model = tiny_model ();
  if (!model)
    return;
  fake_start (FAKE_OK);
  Mem m;
  ImpSource src;
  const ImpRect sel = { 40, 30, 20, 10 };
  mem_init (&m, &src, 160, 120, &sel);
  g_auto (ImpParams) p = { 0 };
  tiny_params (&p, IMP_PROC_INPAINT, model);
  p.color_match = 0;
  g_autoptr (ImpClient) c = imp_client_new ();
  g_auto (ImpResult) r = { 0 };
  g_autoptr (GError) e = NULL;

  g_assert_true (imp_run (c, &p, &src, NULL, NULL, NULL, &r, &e));
  g_assert_no_error (e);
  g_assert_cmpstr (fake.last_path, ==, "/sdapi/v1/img2img");
  /* context box: 25 % of 20 = 5 < 32 px minimum, clipped to the image */
  g_assert_cmpint (r.rect.x, ==, 8);
  g_assert_cmpint (r.rect.y, ==, 0);
  g_assert_cmpint (r.rect.width, ==, 84);
  g_assert_cmpint (r.rect.height, ==, 72);
  JsonObject *req = json_node_get_object (fake.last_request);
  g_assert_true (json_object_has_member (req, "mask"));
  g_assert_cmpint (json_object_get_int_member (req, "width"), ==, r.work_width);
  g_assert_cmpfloat (json_object_get_double_member (req, "denoising_strength"), ==, 1.0);
  /* the layer mask is exactly the selection (grow 0, feather 0) */
  g_assert_nonnull (r.mask);
  for (int y = 0; y < r.rect.height; y++)
    for (int x = 0; x < r.rect.width; x++)
      {
        int ix = r.rect.x + x, iy = r.rect.y + y;
        float want = ix >= sel.x && ix < sel.x + sel.width && iy >= sel.y && iy < sel.y + sel.height
                         ? 1.0f
                         : 0.0f;
        if (r.mask[y * r.rect.width + x] != want)
          g_error ("mask at %d,%d: %g, expected %g", ix, iy, r.mask[y * r.rect.width + x], want);
      }
  /* the fake inverts: inside the selection the layer is about the inverse
   * of the original; opaque */
  const guint8 *orig = sd_image_row (m.pixels, 35) + 4 * 50;
  const guint8 *got = sd_image_row (r.pixels, 35 - r.rect.y) + 4 * (50 - r.rect.x);
  g_assert_cmpint (ABS ((int) got[0] - (255 - (int) orig[0])), <=, 12);
  g_assert_cmpint (ABS ((int) got[1] - (255 - (int) orig[1])), <=, 12);
  g_assert_cmpint (got[3], ==, 255);

  /* grow + feather reach beyond the selection, and the box grows with them */
  p.grow = 2;
  p.feather = 7;
  imp_result_clear (&r);
  g_assert_true (imp_run (c, &p, &src, NULL, NULL, NULL, &r, &e));
  g_assert_cmpfloat (r.mask[(sel.y - 2 - r.rect.y) * r.rect.width + (50 - r.rect.x)], >, 0);
  g_assert_cmpfloat (r.mask[(sel.y + 4 - r.rect.y) * r.rect.width + (50 - r.rect.x)], ==, 1);
  g_assert_cmpfloat (r.mask[0], ==, 0); /* the box's corner is beyond the feather */

  /* no selection: refused before anything is read or sent */
  int jobs = fake.n_jobs, reads = m.n_reads;
  src.has_selection = FALSE;
  imp_result_clear (&r);
  g_assert_false (imp_run (c, &p, &src, NULL, NULL, NULL, &r, &e));
  g_assert_error (e, SD_ERROR, SD_ERROR_INVALID_ARG);
  g_assert_nonnull (strstr (e->message, "needs a selection"));
  g_assert_cmpint (fake.n_jobs, ==, jobs);
  g_assert_cmpint (m.n_reads, ==, reads);
  g_assert_null (r.pixels);
  mem_clear (&m);
  fake_stop ();
}

static void
test_img2img (void)
{
  const char *model = tiny_model ();
  if (!model)
    return;
  fake_start (FAKE_OK);
  Mem m;
  ImpSource src;
  const ImpRect sel = { 0, 10, 40, 40 };
  mem_init (&m, &src, 100, 60, &sel);
  /* the drawable is a layer at (-10, 5), 80x50 */
  src.drawable = (ImpRect){ -10, 5, 80, 50 };
  g_auto (ImpParams) p = { 0 };
  tiny_params (&p, IMP_PROC_IMG2IMG, model);
  g_autoptr (ImpClient) c = imp_client_new ();
  g_auto (ImpResult) r = { 0 };
  g_autoptr (GError) e = NULL;

  g_assert_true (imp_run (c, &p, &src, NULL, NULL, NULL, &r, &e));
  g_assert_no_error (e);
  g_assert_cmpint (r.rect.x, ==, 0);
  g_assert_cmpint (r.rect.y, ==, 10);
  g_assert_cmpint (r.rect.width, ==, 40);
  g_assert_cmpint (r.rect.height, ==, 40);
  JsonObject *req = json_node_get_object (fake.last_request);
  g_assert_cmpfloat (json_object_get_double_member (req, "denoising_strength"), ==, 0.6);
  g_assert_false (json_object_has_member (req, "mask"));
  g_assert_nonnull (r.mask);
  g_assert_cmpfloat (r.mask[0], ==, 1);
  /* the source's alpha is kept (x < 4 is transparent in mem_init) */
  g_assert_cmpint (sd_image_row (r.pixels, 5)[4 * 2 + 3], ==, 0);
  g_assert_cmpint (sd_image_row (r.pixels, 5)[4 * 10 + 3], ==, 255);

  /* the whole drawable */
  p.use_selection = FALSE;
  imp_result_clear (&r);
  g_assert_true (imp_run (c, &p, &src, NULL, NULL, NULL, &r, &e));
  g_assert_cmpint (r.rect.x, ==, -10);
  g_assert_cmpint (r.rect.width, ==, 80);
  g_assert_null (r.mask);

  /* a selection outside the drawable */
  p.use_selection = TRUE;
  src.selection = (ImpRect){ 90, 0, 5, 5 };
  imp_result_clear (&r);
  g_assert_false (imp_run (c, &p, &src, NULL, NULL, NULL, &r, &e));
  g_assert_error (e, SD_ERROR, SD_ERROR_INVALID_ARG);
  mem_clear (&m);
  fake_stop ();
}

static void
test_progress_and_cancel (void)
{
  const char *model = tiny_model ();
  if (!model)
    return;
  fake_start (FAKE_SLOW);
  fake.steps = 6;
  Mem m;
  ImpSource src;
  mem_init (&m, &src, 64, 64, NULL);
  g_auto (ImpParams) p = { 0 };
  tiny_params (&p, IMP_PROC_GENERATE, model);
  g_autoptr (ImpClient) c = imp_client_new ();
  g_auto (ImpResult) r = { 0 };
  g_autoptr (GError) e = NULL;
  Progress pr = { 0 };

  /* progress is followed to the end */
  g_assert_true (imp_run (c, &p, &src, on_progress, &pr, NULL, &r, &e));
  g_assert_no_error (e);
  g_assert_true (pr.saw_step);
  g_assert_cmpint (fake.n_progress, >=, 1);

  /* cancel while running: /interrupt, then SD_ERROR_CANCELLED, no result */
  g_autoptr (GCancellable) cancel = g_cancellable_new ();
  Progress pr2 = { 0 };
  pr2.cancel_on_step = cancel;
  fake.steps = 40;
  imp_result_clear (&r);
  gint64 t0 = g_get_monotonic_time ();
  g_assert_false (imp_run (c, &p, &src, on_progress, &pr2, cancel, &r, &e));
  g_assert_error (e, SD_ERROR, SD_ERROR_CANCELLED);
  g_assert_cmpint (fake.n_interrupts, ==, 1);
  g_assert_null (r.pixels);
  g_assert_cmpint (g_get_monotonic_time () - t0, <, 3 * G_USEC_PER_SEC);
  mem_clear (&m);
  fake_stop ();
}

static void
test_server_errors (void)
{
  const char *model = tiny_model ();
  if (!model)
    return;
  Mem m;
  ImpSource src;
  mem_init (&m, &src, 64, 64, NULL);
  g_auto (ImpParams) p = { 0 };
  tiny_params (&p, IMP_PROC_GENERATE, model);
  g_auto (ImpResult) r = { 0 };
  g_autoptr (GError) e = NULL;

  /* the backend dies mid-job */
  fake_start (FAKE_DIE);
  {
    g_autoptr (ImpClient) c = imp_client_new ();
    g_assert_false (imp_run (c, &p, &src, NULL, NULL, NULL, &r, &e));
    g_assert_error (e, SD_ERROR, SD_ERROR_FAILED);
    if (!strstr (e->message, "stopped during the job"))
      g_error ("message: %s", e->message);
    g_clear_error (&e);
  }
  fake_stop ();

  /* the backend refuses the job: its detail is in the message */
  fake_start (FAKE_ERROR);
  {
    g_autoptr (ImpClient) c = imp_client_new ();
    g_assert_false (imp_run (c, &p, &src, NULL, NULL, NULL, &r, &e));
    g_assert_error (e, SD_ERROR, SD_ERROR_FAILED);
    g_assert_nonnull (strstr (e->message, "multiple of 8 (HTTP 422)"));
    g_clear_error (&e);
  }
  fake_stop ();
  mem_clear (&m);
}

static void
test_backend_missing (void)
{
  const char *model = tiny_model ();
  if (!model)
    return;
  g_autofree char *dir = g_dir_make_tmp ("imp-client-XXXXXX", NULL);
  g_autofree char *sock = g_build_filename (dir, "none.sock", NULL);
  g_autofree char *runtime = g_build_filename (dir, "run", NULL);
  g_setenv ("IMPASTO_SOCKET", sock, TRUE);
  g_setenv ("XDG_RUNTIME_DIR", runtime, TRUE);
  g_unsetenv ("IMPASTO_URL");
  Mem m;
  ImpSource src;
  mem_init (&m, &src, 64, 64, NULL);
  g_auto (ImpParams) p = { 0 };
  tiny_params (&p, IMP_PROC_GENERATE, model);
  g_auto (ImpResult) r = { 0 };
  g_autoptr (GError) e = NULL;

  /* no program */
  g_setenv ("IMPASTO_BACKEND", "/nonexistent/impasto", TRUE);
  {
    g_autoptr (ImpClient) c = imp_client_new ();
    g_assert_false (imp_run (c, &p, &src, NULL, NULL, NULL, &r, &e));
    g_assert_error (e, SD_ERROR, SD_ERROR_MISSING);
    g_assert_nonnull (strstr (e->message, "backend was not found"));
    g_clear_error (&e);
  }
  /* a program that exits at once: its log is quoted */
  g_autofree char *script = g_build_filename (dir, "fail.sh", NULL);
  g_assert_true (g_file_set_contents (
      script, "#!/bin/sh\necho 'no Vulkan device here' >&2\nexit 1\n", -1, NULL));
  g_chmod (script, 0755);
  g_setenv ("IMPASTO_BACKEND", script, TRUE);
  {
    g_autoptr (ImpClient) c = imp_client_new ();
    gint64 t0 = g_get_monotonic_time ();
    g_assert_false (imp_run (c, &p, &src, NULL, NULL, NULL, &r, &e));
    g_assert_error (e, SD_ERROR, SD_ERROR_FAILED);
    if (!strstr (e->message, "exited while starting") || !strstr (e->message, "no Vulkan device"))
      g_error ("message: %s", e->message);
    g_assert_cmpint (g_get_monotonic_time () - t0, <, 10 * G_USEC_PER_SEC);
    g_clear_error (&e);
  }
  g_autofree char *log = g_build_filename (runtime, "impasto", "serve-gimp.log", NULL);
  g_autofree char *pid = g_build_filename (runtime, "impasto", "serve-gimp.pid", NULL);
  unlink (log);
  unlink (pid);
  g_autofree char *rdir = g_build_filename (runtime, "impasto", NULL);
  g_rmdir (rdir);
  g_rmdir (runtime);
  unlink (script);
  g_rmdir (dir);
  mem_clear (&m);
}

static void
test_invalid_model (void)
{
  if (!tiny_model ())
    return;
  fake_start (FAKE_OK);
  Mem m;
  ImpSource src;
  mem_init (&m, &src, 64, 64, NULL);
  g_auto (ImpParams) p = { 0 };
  g_autoptr (ImpClient) c = imp_client_new ();
  g_auto (ImpResult) r = { 0 };
  g_autoptr (GError) e = NULL;

  tiny_params (&p, IMP_PROC_GENERATE, "/nonexistent/model.safetensors");
  g_assert_false (imp_run (c, &p, &src, NULL, NULL, NULL, &r, &e));
  g_assert_error (e, SD_ERROR, SD_ERROR_MISSING);
  g_clear_error (&e);

  /* a file that is not a model */
  g_autofree char *junk = g_build_filename (fake.dir, "junk.safetensors", NULL);
  g_assert_true (g_file_set_contents (junk, "this is not a safetensors file", -1, NULL));
  imp_params_set_string (&p.model, junk);
  g_assert_false (imp_run (c, &p, &src, NULL, NULL, NULL, &r, &e));
  g_assert_nonnull (e);
  g_assert_nonnull (strstr (e->message, junk));
  g_clear_error (&e);
  unlink (junk);
  g_assert_cmpint (fake.n_jobs, ==, 0);
  mem_clear (&m);
  fake_stop ();
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  /* keep the user's config and data out of it */
  g_autofree char *home = g_dir_make_tmp ("imp-home-XXXXXX", NULL);
  g_autofree char *cfg = g_build_filename (home, "config", NULL);
  g_autofree char *data = g_build_filename (home, "data", NULL);
  g_setenv ("XDG_CONFIG_HOME", cfg, TRUE);
  g_setenv ("XDG_DATA_HOME", data, TRUE);
  g_unsetenv ("IMPASTO_MODEL_PATH");

  g_test_add_func ("/plugin/params/text", test_params_text);
  g_test_add_func ("/plugin/params/validate", test_params_validate);
  g_test_add_func ("/plugin/params/layer-name", test_layer_name);
  g_test_add_func ("/plugin/request", test_build_request);
  g_test_add_func ("/plugin/run/generate", test_generate);
  g_test_add_func ("/plugin/run/inpaint", test_inpaint);
  g_test_add_func ("/plugin/run/img2img", test_img2img);
  g_test_add_func ("/plugin/run/progress-cancel", test_progress_and_cancel);
  g_test_add_func ("/plugin/run/server-errors", test_server_errors);
  g_test_add_func ("/plugin/run/backend-missing", test_backend_missing);
  g_test_add_func ("/plugin/run/invalid-model", test_invalid_model);
  int rc = g_test_run ();
  g_rmdir (home);
  return rc;
}
