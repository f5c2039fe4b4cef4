/* test-serve.c: `impasto serve` over a real socket, with the tiny golden
 * model: the A1111 endpoints, byte-identical results to the CLI for the same
 * seed (txt2img, img2img, inpaint), progress and queue positions while jobs
 * run, interrupt, three concurrent requests answered in order, every class of
 * bad input, clients that disconnect mid-request, device out-of-memory (5xx,
 * the server stays usable), model switching, TCP with a bearer token, a
 * second server on the same socket, SIGTERM during a job and the idle
 * timeout.
 *
 * The client is a few lines of raw HTTP/1.1 over GSocketClient (unix socket
 * or TCP), so a test can also send half a request and hang up. The server
 * binary is $IMPASTO_BIN; each server gets its own XDG_RUNTIME_DIR. */
#include "config.h"

#include <gio/gio.h>
#include <gio/gunixsocketaddress.h>
#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "sd-image.h"
#include "test-util.h"

static char *model_path;         /* sd15-tiny diffusers folder */
static char *inpaint_model_path; /* sd15-tiny-inpaint */
static char *tmpdir;

/* ---- servers ----------------------------------------------------------------------- */

typedef struct
{
  GSubprocess *proc;
  char *rundir;
  char *socket;
  char *json;
  char *log;
  int port; /* TCP, 0 if none */
} Server;

static const char *
bin (void)
{
  const char *b = g_getenv ("IMPASTO_BIN");
  if (!b)
    g_error ("IMPASTO_BIN is not set (run through meson test)");
  return b;
}

/* Whether the process has ended, without reaping it (GSubprocess does that):
 * gone from /proc, or a zombie. */
static gboolean
proc_ended (GSubprocess *p)
{
  const char *pid = g_subprocess_get_identifier (p);
  if (!pid)
    return TRUE;
  g_autofree char *path = g_strdup_printf ("/proc/%s/stat", pid);
  g_autofree char *stat = NULL;
  if (!g_file_get_contents (path, &stat, NULL, NULL))
    return TRUE;
  const char *paren = strrchr (stat, ')');
  return paren && paren[1] == ' ' && paren[2] == 'Z';
}

static void
server_free (Server *s)
{
  if (!s)
    return;
  if (s->proc && g_subprocess_get_identifier (s->proc))
    {
      g_subprocess_force_exit (s->proc);
      g_subprocess_wait (s->proc, NULL, NULL);
    }
  g_clear_object (&s->proc);
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", s->rundir);
  if (system (cmd) != 0)
    g_printerr ("could not remove %s\n", s->rundir);
  g_free (s->rundir);
  g_free (s->socket);
  g_free (s->json);
  g_free (s->log);
  g_free (s);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Server, server_free)

static char *server_log (Server *s);

/* SIGTERM, then check the server stopped cleanly: exit status 0 (under
 * LeakSanitizer a leak makes it non-zero). */
static void
server_stop (Server *s)
{
  g_subprocess_send_signal (s->proc, SIGTERM);
  g_assert_true (g_subprocess_wait (s->proc, NULL, NULL));
  if (!g_subprocess_get_if_exited (s->proc) || g_subprocess_get_exit_status (s->proc) != 0)
    {
      g_autofree char *log = server_log (s);
      g_error ("impasto serve did not stop cleanly:\n%s", log);
    }
}

static char *
server_log (Server *s)
{
  char *text = NULL;
  if (!g_file_get_contents (s->log, &text, NULL, NULL))
    text = g_strdup ("");
  return text;
}

/* Start `impasto serve` with extra arguments and NAME=VALUE environment
 * entries; wait until it has written its address file. NULL (and a skip)
 * when it cannot start, e.g. without a Vulkan device. */
static Server *
server_start_full (const char *const *args, const char *const *env, gboolean expect_fail)
{
  Server *s = g_new0 (Server, 1);
  s->rundir = g_build_filename (tmpdir, "run-XXXXXX", NULL);
  g_assert_nonnull (g_mkdtemp (s->rundir));
  s->socket = g_build_filename (s->rundir, "impasto", "impasto.sock", NULL);
  s->json = g_build_filename (s->rundir, "impasto", "impasto.json", NULL);
  s->log = g_build_filename (s->rundir, "serve.log", NULL);
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_ptr_array_add (argv, (char *) bin ());
  g_ptr_array_add (argv, "serve");
  for (int i = 0; args && args[i]; i++)
    g_ptr_array_add (argv, (char *) args[i]);
  g_ptr_array_add (argv, NULL);
  g_autoptr (GSubprocessLauncher) l = g_subprocess_launcher_new (G_SUBPROCESS_FLAGS_STDOUT_SILENCE);
  g_subprocess_launcher_set_stderr_file_path (l, s->log);
  g_subprocess_launcher_setenv (l, "XDG_RUNTIME_DIR", s->rundir, TRUE);
  g_subprocess_launcher_setenv (l, "XDG_DATA_HOME", s->rundir, TRUE);
  g_subprocess_launcher_unsetenv (l, "IMPASTO_MODEL_PATH");
  g_subprocess_launcher_unsetenv (l, "IMPASTO_TOKEN");
  for (int i = 0; env && env[i]; i++)
    {
      g_auto (GStrv) kv = g_strsplit (env[i], "=", 2);
      g_subprocess_launcher_setenv (l, kv[0], kv[1], TRUE);
    }
  g_autoptr (GError) error = NULL;
  s->proc = g_subprocess_launcher_spawnv (l, (const char *const *) argv->pdata, &error);
  g_assert_no_error (error);
  if (expect_fail)
    return s;
  gint64 deadline = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;
  while (!g_file_test (s->json, G_FILE_TEST_EXISTS))
    {
      if (g_get_monotonic_time () > deadline || proc_ended (s->proc))
        {
          g_subprocess_wait (s->proc, NULL, NULL);
          g_autofree char *log = server_log (s);
          g_test_skip_printf ("impasto serve did not start: %s", log);
          server_free (s);
          return NULL;
        }
      g_usleep (20000);
    }
  g_autoptr (JsonParser) p = json_parser_new ();
  g_assert_true (json_parser_load_from_file (p, s->json, NULL));
  JsonArray *urls
      = json_object_get_array_member (json_node_get_object (json_parser_get_root (p)), "urls");
  for (guint i = 0; i < json_array_get_length (urls); i++)
    {
      const char *u = json_array_get_string_element (urls, i);
      const char *colon = g_str_has_prefix (u, "http://") ? strrchr (u, ':') : NULL;
      if (colon)
        s->port = atoi (colon + 1);
    }
  return s;
}

static Server *
server_start (const char *const *args, const char *const *env)
{
  return server_start_full (args, env, FALSE);
}

/* ---- a raw HTTP/1.1 client --------------------------------------------------------- */

typedef struct
{
  guint status;
  char *headers;
  char *body;
  gsize len;
  gint64 done; /* monotonic µs when the answer was complete */
} Resp;

static void
resp_clear (Resp *r)
{
  g_free (r->headers);
  g_free (r->body);
  memset (r, 0, sizeof *r);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC (Resp, resp_clear)

static GSocketConnection *
connect_to (Server *s, gboolean tcp)
{
  g_autoptr (GSocketClient) c = g_socket_client_new ();
  g_socket_client_set_enable_proxy (c, FALSE);
  g_autoptr (GSocketAddress) a = NULL;
  if (tcp)
    {
      g_autoptr (GInetAddress) lo = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
      a = g_inet_socket_address_new (lo, (guint16) s->port);
    }
  else
    a = g_unix_socket_address_new (s->socket);
  g_autoptr (GError) error = NULL;
  GSocketConnection *conn = g_socket_client_connect (c, G_SOCKET_CONNECTABLE (a), NULL, &error);
  g_assert_no_error (error);
  return conn;
}

static void
read_response (GSocketConnection *conn, Resp *r)
{
  GInputStream *in = g_io_stream_get_input_stream (G_IO_STREAM (conn));
  g_autoptr (GByteArray) all = g_byte_array_new ();
  guint8 buf[65536];
  for (;;)
    {
      g_autoptr (GError) error = NULL;
      gssize n = g_input_stream_read (in, buf, sizeof buf, NULL, &error);
      if (n <= 0)
        break;
      g_byte_array_append (all, buf, (guint) n);
    }
  r->done = g_get_monotonic_time ();
  g_byte_array_append (all, (const guint8 *) "", 1);
  const char *text = (const char *) all->data;
  const char *end = strstr (text, "\r\n\r\n");
  if (!g_str_has_prefix (text, "HTTP/1.1 ") || !end)
    {
      r->status = 0;
      return;
    }
  r->status = (guint) atoi (text + 9);
  r->headers = g_strndup (text, end - text);
  r->len = all->len - 1 - (gsize) (end + 4 - text);
  r->body = g_memdup2 (end + 4, r->len + 1);
}

/* One request on a new connection ("Connection: close"). */
static void
http (Server *s, gboolean tcp, const char *method, const char *path, const char *body,
      const char *extra_headers, Resp *r)
{
  g_autoptr (GSocketConnection) conn = connect_to (s, tcp);
  gsize len = body ? strlen (body) : 0;
  g_autofree char *head = g_strdup_printf (
      "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
      "Content-Type: application/json\r\nContent-Length: %" G_GSIZE_FORMAT "\r\n%s\r\n",
      method, path, len, extra_headers ? extra_headers : "");
  GOutputStream *out = g_io_stream_get_output_stream (G_IO_STREAM (conn));
  g_autoptr (GError) error = NULL;
  g_assert_true (g_output_stream_write_all (out, head, strlen (head), NULL, NULL, &error));
  if (len)
    g_assert_true (g_output_stream_write_all (out, body, len, NULL, NULL, &error));
  g_assert_no_error (error);
  read_response (conn, r);
}

static JsonNode *
json_body (const Resp *r)
{
  g_autoptr (JsonParser) p = json_parser_new ();
  g_autoptr (GError) error = NULL;
  if (!json_parser_load_from_data (p, r->body, (gssize) r->len, &error))
    g_error ("not JSON (%s): %.300s", error->message, r->body);
  return json_node_copy (json_parser_get_root (p));
}

static JsonNode *
get_json (Server *s, const char *path)
{
  g_auto (Resp) r = { 0 };
  http (s, FALSE, "GET", path, NULL, NULL, &r);
  g_assert_cmpuint (r.status, ==, 200);
  return json_body (&r);
}

/* The status and the error body {"error": ..., "detail": ...}. */
static void
expect_error (const Resp *r, guint status, const char *needle)
{
  if (r->status != status)
    g_error ("status %u, want %u: %.300s", r->status, status, r->body ? r->body : "");
  g_autoptr (JsonNode) n = json_body (r);
  g_assert_true (JSON_NODE_HOLDS_OBJECT (n));
  JsonObject *o = json_node_get_object (n);
  g_assert_true (json_object_has_member (o, "error"));
  const char *detail = json_object_get_string_member (o, "detail");
  g_assert_nonnull (detail);
  if (needle && !strstr (detail, needle)
      && !strstr (json_object_get_string_member (o, "error"), needle))
    g_error ("detail '%s' does not mention '%s'", detail, needle);
}

/* ---- requests ---------------------------------------------------------------------- */

static char *
png_file_base64 (const char *path)
{
  g_autofree char *data = NULL;
  gsize len;
  g_assert_true (g_file_get_contents (path, &data, &len, NULL));
  return g_base64_encode ((const guchar *) data, len);
}

/* The first image of a generation response, decoded. */
static GBytes *
first_image (const Resp *r)
{
  if (r->status != 200)
    g_error ("status %u: %.500s", r->status, r->body);
  g_autoptr (JsonNode) n = json_body (r);
  JsonObject *o = json_node_get_object (n);
  JsonArray *images = json_object_get_array_member (o, "images");
  g_assert_cmpuint (json_array_get_length (images), >=, 1);
  g_assert_true (json_object_has_member (o, "parameters"));
  g_assert_true (json_object_has_member (o, "info"));
  gsize len;
  guchar *png = g_base64_decode (json_array_get_string_element (images, 0), &len);
  return g_bytes_new_take (png, len);
}

static GBytes *
run_cli (const char *const *args)
{
  g_autofree char *out = g_build_filename (tmpdir, "cli-out.png", NULL);
  g_unlink (out);
  g_autoptr (GPtrArray) argv = g_ptr_array_new ();
  g_ptr_array_add (argv, (char *) bin ());
  for (int i = 0; args[i]; i++)
    g_ptr_array_add (argv, (char *) args[i]);
  g_ptr_array_add (argv, "-o");
  g_ptr_array_add (argv, out);
  g_ptr_array_add (argv, "-q");
  g_ptr_array_add (argv, NULL);
  g_autoptr (GError) error = NULL;
  g_autoptr (GSubprocess) p = g_subprocess_newv (
      (const char *const *) argv->pdata,
      G_SUBPROCESS_FLAGS_STDOUT_SILENCE | G_SUBPROCESS_FLAGS_STDERR_PIPE, &error);
  g_assert_no_error (error);
  g_autofree char *err = NULL;
  g_assert_true (g_subprocess_communicate_utf8 (p, NULL, NULL, NULL, &err, &error));
  if (!g_subprocess_get_if_exited (p) || g_subprocess_get_exit_status (p) != 0)
    g_error ("CLI failed: %s", err);
  gchar *data;
  gsize len;
  g_assert_true (g_file_get_contents (out, &data, &len, NULL));
  return g_bytes_new_take (data, len);
}

static void
assert_same_bytes (GBytes *a, GBytes *b, const char *what)
{
  if (!g_bytes_equal (a, b))
    g_error ("%s: the server's PNG (%" G_GSIZE_FORMAT
             " bytes) differs from the CLI's (%" G_GSIZE_FORMAT " bytes)",
             what, g_bytes_get_size (a), g_bytes_get_size (b));
}

/* ---- the shared server ------------------------------------------------------------- */

static Server *main_server;
static char *init_png, *mask_png, *mask_small_png;

static Server *
require_main (void)
{
  if (!model_path)
    {
      test_require_golden ();
      if (!g_test_failed ())
        g_test_skip ("the tiny golden models are missing");
      return NULL;
    }
  if (!main_server)
    {
      const char *args[]
          = { "--model", model_path, "--max-body", "1", "--idle-timeout", "300", NULL };
      main_server = server_start (args, NULL);
    }
  if (!main_server)
    g_test_skip ("impasto serve could not start (see above)");
  return main_server;
}

static void
test_endpoints (void)
{
  Server *s = require_main ();
  if (!s)
    return;
  g_autoptr (JsonNode) health = get_json (s, "/impasto/v1/health");
  JsonObject *h = json_node_get_object (health);
  g_assert_cmpstr (json_object_get_string_member (h, "status"), ==, "ok");
  g_assert_true (json_object_has_member (json_object_get_object_member (h, "device"), "name"));
  g_assert_true (
      json_object_has_member (json_object_get_object_member (h, "memory"), "budget_bytes"));
  g_assert_true (json_object_has_member (h, "models"));

  g_autoptr (JsonNode) samplers = get_json (s, "/sdapi/v1/samplers");
  JsonArray *sa = json_node_get_array (samplers);
  g_assert_cmpuint (json_array_get_length (sa), >=, 6);
  gboolean euler_a = FALSE;
  for (guint i = 0; i < json_array_get_length (sa); i++)
    euler_a |= g_str_equal (
        json_object_get_string_member (json_array_get_object_element (sa, i), "name"), "Euler a");
  g_assert_true (euler_a);

  g_autoptr (JsonNode) models = get_json (s, "/sdapi/v1/sd-models");
  JsonArray *ma = json_node_get_array (models);
  g_assert_cmpuint (json_array_get_length (ma), >=, 1);
  JsonObject *m0 = json_array_get_object_element (ma, 0);
  g_assert_cmpstr (json_object_get_string_member (m0, "model_name"), ==, "sd15-tiny");
  g_assert_true (json_object_has_member (m0, "title"));
  g_assert_true (json_object_has_member (m0, "filename"));

  g_autoptr (JsonNode) options = get_json (s, "/sdapi/v1/options");
  g_assert_cmpstr (
      json_object_get_string_member (json_node_get_object (options), "sd_model_checkpoint"), ==,
      "sd15-tiny");

  g_autoptr (JsonNode) progress = get_json (s, "/sdapi/v1/progress");
  JsonObject *po = json_node_get_object (progress);
  g_assert_true (json_object_has_member (po, "progress"));
  g_assert_true (json_object_has_member (po, "eta_relative"));
  g_assert_true (
      json_object_has_member (json_object_get_object_member (po, "state"), "sampling_step"));

  g_auto (Resp) r = { 0 };
  http (s, FALSE, "GET", "/sdapi/v1/txt2img", NULL, NULL, &r);
  expect_error (&r, 405, "POST");
  g_assert_nonnull (strstr (r.headers, "Allow: POST"));
  resp_clear (&r);
  http (s, FALSE, "GET", "/sdapi/v1/no-such-thing", NULL, NULL, &r);
  expect_error (&r, 404, "no such endpoint");

  /* the runtime folder is private, the files are there */
  g_autofree char *dir = g_path_get_dirname (s->socket);
  struct stat st;
  g_assert_cmpint (stat (dir, &st), ==, 0);
  g_assert_cmpint (st.st_mode & 0777, ==, 0700);
  g_autofree char *pidfile = g_build_filename (dir, "impasto.pid", NULL);
  g_autofree char *pid = NULL;
  g_assert_true (g_file_get_contents (pidfile, &pid, NULL, NULL));
  g_assert_cmpstr (g_strstrip (pid), ==, g_subprocess_get_identifier (s->proc));
}

static void
test_second_instance (void)
{
  Server *s = require_main ();
  if (!s)
    return;
  /* the same socket (same XDG_RUNTIME_DIR) */
  const char *args[] = { "--model", model_path, NULL };
  g_autofree char *env_rt = g_strdup_printf ("XDG_RUNTIME_DIR=%s", s->rundir);
  const char *env[] = { env_rt, NULL };
  g_autoptr (Server) s2 = server_start_full (args, env, TRUE);
  g_assert_true (g_subprocess_wait (s2->proc, NULL, NULL));
  g_assert_cmpint (g_subprocess_get_exit_status (s2->proc), ==, 1);
  g_autofree char *log = server_log (s2);
  g_assert_nonnull (strstr (log, "already running"));
  /* the first one is unharmed */
  g_autoptr (JsonNode) h = get_json (s, "/impasto/v1/health");
  (void) h;
}

static void
test_txt2img_matches_cli (void)
{
  Server *s = require_main ();
  if (!s)
    return;
  g_auto (Resp) r = { 0 };
  http (
      s, FALSE, "POST", "/sdapi/v1/txt2img",
      "{\"prompt\": \"a red apple\", \"negative_prompt\": \"blurry\", \"seed\": 42, \"steps\": 2,"
      " \"cfg_scale\": 6.5, \"width\": 64, \"height\": 64, \"sampler_name\": \"Euler a\","
      " \"batch_size\": 1, \"n_iter\": 1, \"restore_faces\": false, \"some_future_field\": [1, 2]}",
      NULL, &r);
  g_autoptr (GBytes) server_png = first_image (&r);
  const char *cli[] = { "generate", "-m", model_path, "-p",        "a red apple", "-n",  "blurry",
                        "--seed",   "42", "--steps",  "2",         "--cfg",       "6.5", "-W",
                        "64",       "-H", "64",       "--sampler", "euler_a",     NULL };
  g_autoptr (GBytes) cli_png = run_cli (cli);
  assert_same_bytes (server_png, cli_png, "txt2img");

  g_autoptr (JsonNode) n = json_body (&r);
  JsonObject *o = json_node_get_object (n);
  g_autoptr (JsonParser) p = json_parser_new ();
  g_assert_true (
      json_parser_load_from_data (p, json_object_get_string_member (o, "info"), -1, NULL));
  JsonObject *info = json_node_get_object (json_parser_get_root (p));
  g_assert_cmpint (json_object_get_int_member (info, "seed"), ==, 42);
  const char *infotext
      = json_array_get_string_element (json_object_get_array_member (info, "infotexts"), 0);
  g_assert_nonnull (strstr (infotext, "Seed: 42"));
  /* the PNG carries the same text */
  g_autoptr (SdImage) img = sd_image_load_png_from_memory (
      g_bytes_get_data (server_png, NULL), g_bytes_get_size (server_png), 0, NULL, NULL);
  g_assert_cmpstr (sd_image_get_text (img, "parameters"), ==, infotext);

  /* a batch with n_iter: seeds run on */
  resp_clear (&r);
  http (s, FALSE, "POST", "/sdapi/v1/txt2img",
        "{\"seed\": 5, \"steps\": 1, \"width\": 64, \"height\": 64, \"batch_size\": 2, \"n_iter\": "
        "2}",
        NULL, &r);
  g_assert_cmpuint (r.status, ==, 200);
  g_autoptr (JsonNode) n2 = json_body (&r);
  g_assert_cmpuint (
      json_array_get_length (json_object_get_array_member (json_node_get_object (n2), "images")),
      ==, 4);
  g_autoptr (JsonParser) p2 = json_parser_new ();
  g_assert_true (json_parser_load_from_data (
      p2, json_object_get_string_member (json_node_get_object (n2), "info"), -1, NULL));
  JsonArray *seeds = json_object_get_array_member (json_node_get_object (json_parser_get_root (p2)),
                                                   "all_seeds");
  for (guint i = 0; i < 4; i++)
    g_assert_cmpint (json_array_get_int_element (seeds, i), ==, 5 + i);
}

static void
test_img2img_matches_cli (void)
{
  Server *s = require_main ();
  if (!s)
    return;
  g_autofree char *init64 = png_file_base64 (init_png);
  g_autofree char *body
      = g_strdup_printf ("{\"init_images\": [\"%s\"], \"prompt\": \"x\", \"seed\": 9,"
                         " \"steps\": 4, \"denoising_strength\": 0.5, \"width\": 64,"
                         " \"height\": 64, \"sampler_name\": \"DDIM\"}",
                         init64);
  g_auto (Resp) r = { 0 };
  http (s, FALSE, "POST", "/sdapi/v1/img2img", body, NULL, &r);
  g_autoptr (GBytes) server_png = first_image (&r);
  const char *cli[]
      = { "img2img", "-m",      model_path, "-p",         "x",   "-i",        init_png, "--seed",
          "9",       "--steps", "4",        "--strength", "0.5", "--sampler", "ddim",   NULL };
  g_autoptr (GBytes) cli_png = run_cli (cli);
  assert_same_bytes (server_png, cli_png, "img2img");
}

static void
test_inpaint_matches_cli (void)
{
  Server *s = require_main ();
  if (!s)
    return;
  g_autofree char *init64 = png_file_base64 (init_png);
  g_autofree char *mask64 = png_file_base64 (mask_png);
  const char *models[] = { model_path, inpaint_model_path };
  for (guint k = 0; k < 2; k++)
    for (int full_res = 0; full_res < 2; full_res++)
      {
        g_autofree char *body = g_strdup_printf (
            "{\"init_images\": [\"%s\"], \"mask\": \"%s\", \"prompt\": \"x\", \"seed\": 11, "
            "\"steps\": 2,"
            " \"denoising_strength\": 1.0, \"width\": 64, \"height\": 64, \"sampler_name\": "
            "\"Euler a\","
            " \"mask_blur\": 3, \"inpaint_full_res\": %s, \"inpaint_full_res_padding\": 8,"
            " \"override_settings\": {\"sd_model_checkpoint\": \"%s\"}}",
            init64, mask64, full_res ? "true" : "false", models[k]);
        g_auto (Resp) r = { 0 };
        http (s, FALSE, "POST", "/sdapi/v1/img2img", body, NULL, &r);
        g_autoptr (GBytes) server_png = first_image (&r);
        const char *cli[] = { "inpaint", "-m",
                              models[k], "-p",
                              "x",       "-i",
                              init_png,  "--mask",
                              mask_png,  "--seed",
                              "11",      "--steps",
                              "2",       "--strength",
                              "1",       "--sampler",
                              "Euler a", "--mask-blur",
                              "3",       "-W",
                              "64",      "-H",
                              "64",      "--full-res-padding",
                              "8",       full_res ? "--full-res" : "-q",
                              NULL };
        g_autoptr (GBytes) cli_png = run_cli (cli);
        g_autofree char *what
            = g_strdup_printf ("inpaint %s%s", models[k], full_res ? " (full res)" : "");
        assert_same_bytes (server_png, cli_png, what);
      }
  /* both models are loaded now (the budget allows it) */
  g_autoptr (JsonNode) health = get_json (s, "/impasto/v1/health");
  JsonArray *loaded = json_object_get_array_member (json_node_get_object (health), "models");
  g_assert_cmpuint (json_array_get_length (loaded), ==, 2);
}

/* "impasto_uncomposited" (the GIMP plug-in's request): the image as the model
 * made it; without it the original is pasted back outside the mask. */
static void
test_inpaint_uncomposited (void)
{
  Server *s = require_main ();
  if (!s)
    return;
  g_autofree char *init64 = png_file_base64 (init_png);
  g_autofree char *mask64 = png_file_base64 (mask_png);
  GBytes *png[2];
  for (int raw = 0; raw < 2; raw++)
    {
      g_autofree char *body = g_strdup_printf (
          "{\"init_images\": [\"%s\"], \"mask\": \"%s\", \"prompt\": \"x\", \"seed\": 5, "
          "\"steps\": 2, \"denoising_strength\": 1.0, \"width\": 64, \"height\": 64, "
          "\"sampler_name\": \"Euler a\", \"mask_blur\": 0, \"impasto_uncomposited\": %s}",
          init64, mask64, raw ? "true" : "false");
      g_auto (Resp) r = { 0 };
      http (s, FALSE, "POST", "/sdapi/v1/img2img", body, NULL, &r);
      png[raw] = first_image (&r);
    }
  GError *error = NULL;
  g_autoptr (SdImage) init = sd_image_load_png (init_png, 3, NULL, &error);
  g_assert_no_error (error);
  g_autoptr (SdImage) mask = sd_image_load_png (mask_png, 1, NULL, &error);
  g_assert_no_error (error);
  SdImage *img[2];
  for (int raw = 0; raw < 2; raw++)
    {
      gsize len;
      const void *d = g_bytes_get_data (png[raw], &len);
      img[raw] = sd_image_load_png_from_memory (d, len, 3, NULL, &error);
      g_assert_no_error (error);
      g_bytes_unref (png[raw]);
    }
  /* outside the mask: composited == original, raw != original somewhere */
  gsize same_comp = 0, diff_raw = 0, outside = 0;
  for (int y = 0; y < init->height; y++)
    for (int x = 0; x < init->width; x++)
      {
        if (sd_image_row (mask, y)[x] != 0)
          continue;
        outside++;
        const guint8 *o = sd_image_row (init, y) + 3 * x;
        const guint8 *c = sd_image_row (img[0], y) + 3 * x;
        const guint8 *r = sd_image_row (img[1], y) + 3 * x;
        same_comp += memcmp (o, c, 3) == 0;
        diff_raw += memcmp (o, r, 3) != 0;
      }
  g_assert_cmpuint (outside, >, 0);
  g_assert_cmpuint (same_comp, ==, outside);
  g_assert_cmpuint (diff_raw, >, outside / 2);
  sd_image_free (img[0]);
  sd_image_free (img[1]);
}

static void
test_options_switch (void)
{
  Server *s = require_main ();
  if (!s)
    return;
  g_autofree char *body = g_strdup_printf ("{\"sd_model_checkpoint\": \"%s\", \"other_option\": 1}",
                                           inpaint_model_path);
  g_auto (Resp) r = { 0 };
  http (s, FALSE, "POST", "/sdapi/v1/options", body, NULL, &r);
  g_assert_cmpuint (r.status, ==, 200);
  g_autoptr (JsonNode) o = get_json (s, "/sdapi/v1/options");
  g_assert_cmpstr (json_object_get_string_member (json_node_get_object (o), "sd_model_checkpoint"),
                   ==, "sd15-tiny-inpaint");
  /* back, by the title /sd-models lists */
  resp_clear (&r);
  http (s, FALSE, "POST", "/sdapi/v1/options", "{\"sd_model_checkpoint\": \"sd15-tiny\"}", NULL,
        &r);
  g_assert_cmpuint (r.status, ==, 200);
  g_autoptr (JsonNode) o2 = get_json (s, "/sdapi/v1/options");
  g_assert_cmpstr (json_object_get_string_member (json_node_get_object (o2), "sd_model_checkpoint"),
                   ==, "sd15-tiny");
  resp_clear (&r);
  http (s, FALSE, "POST", "/sdapi/v1/options", "{\"sd_model_checkpoint\": \"no-such-model\"}", NULL,
        &r);
  expect_error (&r, 404, "no-such-model");
}

/* ---- concurrency ------------------------------------------------------------------- */

typedef struct
{
  Server *s;
  const char *path;
  char *body;
  Resp resp;
  GThread *thread;
} Async;

static gpointer
async_main (gpointer data)
{
  Async *a = data;
  http (a->s, FALSE, "POST", a->path, a->body, NULL, &a->resp);
  return NULL;
}

static Async *
async_post (Server *s, const char *path, const char *body)
{
  Async *a = g_new0 (Async, 1);
  a->s = s;
  a->path = path;
  a->body = g_strdup (body);
  a->thread = g_thread_new ("client", async_main, a);
  return a;
}

static void
async_join (Async *a)
{
  g_thread_join (a->thread);
  a->thread = NULL;
}

static void
async_free (Async *a)
{
  if (a->thread)
    async_join (a);
  resp_clear (&a->resp);
  g_free (a->body);
  g_free (a);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Async, async_free)

static JsonObject *
progress_of (Server *s, const char *task, JsonNode **keep)
{
  g_autofree char *path = task ? g_strdup_printf ("/sdapi/v1/progress?id_task=%s", task)
                               : g_strdup ("/sdapi/v1/progress");
  *keep = get_json (s, path);
  return json_node_get_object (*keep);
}

/* Wait (up to a minute) until the running job has done a step. */
static void
wait_for_step (Server *s)
{
  gint64 deadline = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;
  for (;;)
    {
      g_autoptr (JsonNode) keep = NULL;
      JsonObject *p = progress_of (s, NULL, &keep);
      JsonObject *st = json_object_get_object_member (p, "state");
      if (json_object_get_int_member (st, "sampling_step") >= 1)
        return;
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (50000);
    }
}

static void
wait_for_pending (Server *s, gint64 n)
{
  gint64 deadline = g_get_monotonic_time () + 30 * G_USEC_PER_SEC;
  for (;;)
    {
      g_autoptr (JsonNode) keep = NULL;
      JsonObject *st = json_object_get_object_member (progress_of (s, NULL, &keep), "state");
      if (json_object_get_int_member (st, "queue_pending") >= n)
        return;
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (20000);
    }
}

static void
test_progress_queue_order (void)
{
  Server *s = require_main ();
  if (!s)
    return;
  /* A runs long enough to be watched; B and C queue behind it */
  g_autoptr (Async) a = async_post (s, "/sdapi/v1/txt2img",
                                    "{\"force_task_id\": \"task-A\", \"seed\": 1, \"steps\": 8,"
                                    " \"width\": 64, \"height\": 64}");
  wait_for_step (s);
  g_autoptr (Async) b = async_post (s, "/sdapi/v1/txt2img",
                                    "{\"force_task_id\": \"task-B\", \"seed\": 2, \"steps\": 1,"
                                    " \"width\": 64, \"height\": 64}");
  wait_for_pending (s, 1);
  g_autoptr (Async) c = async_post (s, "/sdapi/v1/txt2img",
                                    "{\"force_task_id\": \"task-C\", \"seed\": 3, \"steps\": 1,"
                                    " \"width\": 64, \"height\": 64}");
  wait_for_pending (s, 2);
  {
    g_autoptr (JsonNode) k1 = NULL, k2 = NULL, k3 = NULL;
    JsonObject *pa = progress_of (s, "task-A", &k1);
    JsonObject *pc = progress_of (s, "task-C", &k3);
    JsonObject *pb = progress_of (s, "task-B", &k2);
    JsonObject *st = json_object_get_object_member (pa, "state");
    if (json_object_get_int_member (pa, "queue_position") == 0)
      {
        /* A still running (it may just have finished: then B runs) */
        g_assert_cmpstr (json_object_get_string_member (st, "job"), ==, "task(task-A)");
        g_assert_cmpfloat (json_object_get_double_member (pa, "progress"), >, 0.0);
        g_assert_cmpfloat (json_object_get_double_member (pa, "progress"), <=, 1.0);
        g_assert_cmpfloat (json_object_get_double_member (pa, "eta_relative"), >=, 0.0);
        g_assert_cmpint (json_object_get_int_member (st, "sampling_steps"), ==, 8);
        g_assert_cmpint (json_object_get_int_member (st, "job_count"), ==, 3);
        g_assert_cmpint (json_object_get_int_member (pb, "queue_position"), ==, 1);
        g_assert_cmpint (json_object_get_int_member (pc, "queue_position"), ==, 2);
      }
    else
      g_test_message ("task A finished before the queue could be inspected");
  }
  async_join (a);
  async_join (b);
  async_join (c);
  g_assert_cmpuint (a->resp.status, ==, 200);
  g_assert_cmpuint (b->resp.status, ==, 200);
  g_assert_cmpuint (c->resp.status, ==, 200);
  /* answered in the order they came */
  g_assert_cmpint (a->resp.done, <, b->resp.done);
  g_assert_cmpint (b->resp.done, <, c->resp.done);
  /* and each is the image its seed gives */
  g_autoptr (GBytes) img_c = first_image (&c->resp);
  const char *cli[] = { "generate", "-m", model_path, "--seed", "3",  "--steps",
                        "1",        "-W", "64",       "-H",     "64", NULL };
  g_autoptr (GBytes) cli_c = run_cli (cli);
  assert_same_bytes (img_c, cli_c, "queued job C");
  /* a finished task has no queue position */
  g_autoptr (JsonNode) keep = NULL;
  JsonObject *gone = progress_of (s, "task-C", &keep);
  g_assert_true (json_object_get_null_member (gone, "queue_position"));
}

static void
test_interrupt (void)
{
  Server *s = require_main ();
  if (!s)
    return;
  g_autoptr (Async) a = async_post (s, "/sdapi/v1/txt2img",
                                    "{\"seed\": 1, \"steps\": 150, \"width\": 64, \"height\": 64}");
  wait_for_step (s);
  g_auto (Resp) r = { 0 };
  http (s, FALSE, "POST", "/sdapi/v1/interrupt", "", NULL, &r);
  g_assert_cmpuint (r.status, ==, 200);
  gint64 t0 = g_get_monotonic_time ();
  async_join (a);
  expect_error (&a->resp, 409, "Interrupted");
  g_assert_cmpint (g_get_monotonic_time () - t0, <, 60 * G_USEC_PER_SEC);
  g_autoptr (JsonNode) keep = NULL;
  JsonObject *p = progress_of (s, NULL, &keep);
  g_assert_true (
      json_object_get_boolean_member (json_object_get_object_member (p, "state"), "interrupted"));
  /* still usable */
  resp_clear (&r);
  http (s, FALSE, "POST", "/sdapi/v1/txt2img", "{\"steps\": 1, \"width\": 64, \"height\": 64}",
        NULL, &r);
  g_assert_cmpuint (r.status, ==, 200);
}

/* ---- bad input --------------------------------------------------------------------- */

static void
test_bad_input (void)
{
  Server *s = require_main ();
  if (!s)
    return;
  g_autofree char *init64 = png_file_base64 (init_png);
  g_autofree char *small64 = png_file_base64 (mask_small_png);
  /* a corrupt PNG: a flipped byte in the image data */
  g_autofree char *data = NULL;
  gsize len;
  g_assert_true (g_file_get_contents (init_png, &data, &len, NULL));
  data[len - 20] ^= 0x21;
  g_autofree char *corrupt64 = g_base64_encode ((guchar *) data, len);
  /* a PNG claiming 60000 x 60000 (valid chunks, a few bytes of data) */
  guchar huge_png[33 + 12 + 64 + 12] = {
    0x89, 'P', 'N', 'G',  '\r', '\n', 0x1a, '\n', 0,    0, 0, 13, 'I', 'H', 'D',
    'R',  0,   0,   0xea, 0x60, 0,    0,    0xea, 0x60, 8, 2, 0,  0,   0,
  };
  gsize hl = 29;
  guint32 crc = crc32 (0, huge_png + 12, 17);
  for (int i = 0; i < 4; i++)
    huge_png[hl++] = crc >> (24 - 8 * i);
  guchar zeros[32] = { 0 }, z[64];
  uLongf zl = sizeof z;
  g_assert_cmpint (compress (z, &zl, zeros, sizeof zeros), ==, Z_OK);
  huge_png[hl++] = 0, huge_png[hl++] = 0, huge_png[hl++] = 0, huge_png[hl++] = (guchar) zl;
  gsize type_at = hl;
  memcpy (huge_png + hl, "IDAT", 4);
  hl += 4;
  memcpy (huge_png + hl, z, zl);
  hl += zl;
  crc = crc32 (0, huge_png + type_at, 4 + zl);
  for (int i = 0; i < 4; i++)
    huge_png[hl++] = crc >> (24 - 8 * i);
  static const guchar iend[12] = { 0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82 };
  memcpy (huge_png + hl, iend, 12);
  hl += 12;
  g_autofree char *huge64 = g_base64_encode (huge_png, hl);

  struct
  {
    const char *path, *body;
    guint status;
    const char *needle;
  } cases[] = {
    { "/sdapi/v1/txt2img", "{\"prompt\": \"x\", ", 400, "malformed" },
    { "/sdapi/v1/txt2img", "[1, 2]", 400, "object" },
    { "/sdapi/v1/txt2img", "", 400, "empty" },
    { "/sdapi/v1/txt2img", "{\"steps\": \"many\"}", 422, "steps" },
    { "/sdapi/v1/txt2img", "{\"width\": true}", 422, "width" },
    { "/sdapi/v1/txt2img", "{\"prompt\": {\"a\": 1}}", 422, "prompt" },
    { "/sdapi/v1/txt2img", "{\"steps\": 0}", 422, "steps" },
    { "/sdapi/v1/txt2img", "{\"steps\": 100000}", 422, "steps" },
    { "/sdapi/v1/txt2img", "{\"cfg_scale\": 500}", 422, "guidance" },
    { "/sdapi/v1/txt2img", "{\"width\": 100, \"height\": 64}", 422, "multiples of 8" },
    { "/sdapi/v1/txt2img", "{\"width\": 8192, \"height\": 8192}", 422, "too large" },
    { "/sdapi/v1/txt2img", "{\"batch_size\": 100}", 422, "batch" },
    { "/sdapi/v1/txt2img", "{\"sampler_name\": \"Heun\"}", 404, "Euler a" },
    { "/sdapi/v1/txt2img",
      "{\"override_settings\": {\"sd_model_checkpoint\": \"nope.safetensors\"}}", 404, "nope" },
    { "/sdapi/v1/img2img", "{\"prompt\": \"x\"}", 422, "init_images" },
    { "/sdapi/v1/img2img", "{\"init_images\": [\"@@@@\"]}", 400, "base64" },
    { "/sdapi/v1/img2img", "{\"init_images\": [\"QUJDREVGR0g=\"]}", 400, "PNG" },
    { "/sdapi/v1/img2img", "{\"init_images\": [\"/9j/4AAQSkZJRgABAQ==\"]}", 400, "JPEG" },
    { "/sdapi/v1/img2img", NULL, 400, "init_images" }, /* corrupt */
    { "/sdapi/v1/img2img", NULL, 413, NULL },          /* huge */
    { "/sdapi/v1/img2img", NULL, 422, "same size" },   /* mask size */
    { "/sdapi/v1/img2img", NULL, 422, "strength" },    /* strength */
    { "/sdapi/v1/options", "{\"sd_model_checkpoint\": 5}", 422, "string" },
    { "/sdapi/v1/options", "not json", 400, NULL },
  };
  g_autofree char *corrupt_body = g_strdup_printf ("{\"init_images\": [\"%s\"]}", corrupt64);
  g_autofree char *huge_body = g_strdup_printf ("{\"init_images\": [\"%s\"]}", huge64);
  g_autofree char *mask_body
      = g_strdup_printf ("{\"init_images\": [\"%s\"], \"mask\": \"%s\"}", init64, small64);
  g_autofree char *strength_body
      = g_strdup_printf ("{\"init_images\": [\"%s\"], \"denoising_strength\": 2}", init64);
  const char *late[] = { corrupt_body, huge_body, mask_body, strength_body };
  int k = 0;
  for (guint i = 0; i < G_N_ELEMENTS (cases); i++)
    {
      const char *body = cases[i].body ? cases[i].body : late[k++];
      g_auto (Resp) r = { 0 };
      http (s, FALSE, "POST", cases[i].path, body, NULL, &r);
      g_test_message ("%s %.60s -> %u %.200s", cases[i].path, body, r.status, r.body);
      expect_error (&r, cases[i].status, cases[i].needle);
    }

  /* a body over --max-body (1 MiB here) is refused unread */
  g_autofree char *big = g_malloc (1536 * 1024 + 1);
  memset (big, ' ', 1536 * 1024);
  big[0] = '{';
  big[1536 * 1024 - 1] = '}';
  big[1536 * 1024] = '\0';
  g_auto (Resp) r = { 0 };
  http (s, FALSE, "POST", "/sdapi/v1/txt2img", big, NULL, &r);
  expect_error (&r, 413, "max-body");

  /* the server is fine */
  g_autoptr (JsonNode) h = get_json (s, "/impasto/v1/health");
  (void) h;
}

/* ---- clients that go away ---------------------------------------------------------- */

static void
test_disconnect (void)
{
  Server *s = require_main ();
  if (!s)
    return;
  /* half a request, then hang up */
  {
    g_autoptr (GSocketConnection) conn = connect_to (s, FALSE);
    const char *half
        = "POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"prom";
    g_assert_true (g_output_stream_write_all (g_io_stream_get_output_stream (G_IO_STREAM (conn)),
                                              half, strlen (half), NULL, NULL, NULL));
    g_io_stream_close (G_IO_STREAM (conn), NULL, NULL);
  }
  /* headers cut in the middle */
  {
    g_autoptr (GSocketConnection) conn = connect_to (s, FALSE);
    const char *half = "POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\nContent-Le";
    g_assert_true (g_output_stream_write_all (g_io_stream_get_output_stream (G_IO_STREAM (conn)),
                                              half, strlen (half), NULL, NULL, NULL));
    g_io_stream_close (G_IO_STREAM (conn), NULL, NULL);
  }
  /* a whole job request, then hang up while it runs: the job is dropped */
  g_autoptr (JsonNode) h0 = get_json (s, "/impasto/v1/health");
  gint64 done0 = json_object_get_int_member (
      json_object_get_object_member (json_node_get_object (h0), "queue"), "jobs_done");
  {
    g_autoptr (GSocketConnection) conn = connect_to (s, FALSE);
    const char *body = "{\"seed\": 1, \"steps\": 150, \"width\": 64, \"height\": 64}";
    g_autofree char *req = g_strdup_printf ("POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: x\r\n"
                                            "Content-Length: %zu\r\n\r\n%s",
                                            strlen (body), body);
    g_assert_true (g_output_stream_write_all (g_io_stream_get_output_stream (G_IO_STREAM (conn)),
                                              req, strlen (req), NULL, NULL, NULL));
    wait_for_step (s);
    g_io_stream_close (G_IO_STREAM (conn), NULL, NULL);
  }
  gint64 deadline = g_get_monotonic_time () + 60 * G_USEC_PER_SEC;
  for (;;)
    {
      g_autoptr (JsonNode) h = get_json (s, "/impasto/v1/health");
      JsonObject *q = json_object_get_object_member (json_node_get_object (h), "queue");
      if (!json_object_get_boolean_member (q, "running")
          && json_object_get_int_member (q, "jobs_done") > done0)
        break;
      g_assert_cmpint (g_get_monotonic_time (), <, deadline);
      g_usleep (50000);
    }
  g_autofree char *log = server_log (s);
  g_assert_nonnull (strstr (log, "went away"));
  /* still serving */
  g_auto (Resp) r = { 0 };
  http (s, FALSE, "POST", "/sdapi/v1/txt2img", "{\"steps\": 1, \"width\": 64, \"height\": 64}",
        NULL, &r);
  g_assert_cmpuint (r.status, ==, 200);
}

/* ---- servers of their own ---------------------------------------------------------- */

static void
test_out_of_memory (void)
{
  if (!require_main ())
    return;
  /* a device out-of-memory error in the first job (injected: lavapipe does
   * not run out), then a normal job on the same server */
  const char *args[] = { "--model", model_path, "--idle-timeout", "300", NULL };
  const char *env[] = { "IMPASTO_SERVE_INJECT_OOM=1", NULL };
  g_autoptr (Server) s = server_start (args, env);
  if (!s)
    return;
  g_auto (Resp) r = { 0 };
  http (s, FALSE, "POST", "/sdapi/v1/txt2img", "{\"steps\": 1, \"width\": 64, \"height\": 64}",
        NULL, &r);
  expect_error (&r, 507, "out of device memory");
  g_autoptr (JsonNode) n = json_body (&r);
  JsonObject *mem = json_object_get_object_member (json_node_get_object (n), "memory");
  g_assert_nonnull (mem);
  g_assert_cmpint (json_object_get_int_member (mem, "device_bytes"), >, 0);
  g_assert_cmpint (json_object_get_int_member (mem, "budget_bytes"), >, 0);
  resp_clear (&r);
  http (s, FALSE, "POST", "/sdapi/v1/txt2img", "{\"steps\": 1, \"width\": 64, \"height\": 64}",
        NULL, &r);
  g_assert_cmpuint (r.status, ==, 200);
  server_stop (s);

  /* a model larger than the memory budget */
  const char *args2[]
      = { "--model", model_path, "--memory-budget", "1", "--idle-timeout", "300", NULL };
  g_autoptr (Server) s2 = server_start (args2, NULL);
  if (!s2)
    return;
  resp_clear (&r);
  http (s2, FALSE, "POST", "/sdapi/v1/txt2img", "{\"steps\": 1, \"width\": 64, \"height\": 64}",
        NULL, &r);
  expect_error (&r, 507, "budget");
  g_autoptr (JsonNode) h = get_json (s2, "/impasto/v1/health");
  (void) h;
  server_stop (s2);
}

/* Two models do not fit a 20 MiB budget (about 12 MiB of weights each): the
 * least recently used one is unloaded for the other. */
static void
test_lru (void)
{
  if (!require_main ())
    return;
  const char *args[]
      = { "--model", model_path, "--memory-budget", "20", "--idle-timeout", "300", NULL };
  g_autoptr (Server) s = server_start (args, NULL);
  if (!s)
    return;
  const char *order[] = { model_path, inpaint_model_path, model_path };
  const char *names[] = { "sd15-tiny", "sd15-tiny-inpaint", "sd15-tiny" };
  for (guint i = 0; i < G_N_ELEMENTS (order); i++)
    {
      g_autofree char *body
          = g_strdup_printf ("{\"steps\": 1, \"width\": 64, \"height\": 64, \"override_settings\":"
                             " {\"sd_model_checkpoint\": \"%s\"}}",
                             order[i]);
      g_auto (Resp) r = { 0 };
      http (s, FALSE, "POST", "/sdapi/v1/txt2img", body, NULL, &r);
      g_assert_cmpuint (r.status, ==, 200);
      g_autoptr (JsonNode) h = get_json (s, "/impasto/v1/health");
      JsonArray *models = json_object_get_array_member (json_node_get_object (h), "models");
      g_assert_cmpuint (json_array_get_length (models), ==, 1);
      g_assert_cmpstr (
          json_object_get_string_member (json_array_get_object_element (models, 0), "name"), ==,
          names[i]);
    }
  g_autofree char *log = server_log (s);
  g_assert_nonnull (strstr (log, "unloading model sd15-tiny "));
  server_stop (s);
}

static void
test_tcp_token (void)
{
  if (!require_main ())
    return;
  const char *args[] = { "--model", model_path,       "--listen", "127.0.0.1:0", "--token",
                         "s3cret",  "--idle-timeout", "300",      NULL };
  g_autoptr (Server) s = server_start (args, NULL);
  if (!s)
    return;
  g_assert_cmpint (s->port, >, 0);
  g_auto (Resp) r = { 0 };
  http (s, TRUE, "GET", "/impasto/v1/health", NULL, NULL, &r);
  expect_error (&r, 401, "Bearer");
  resp_clear (&r);
  http (s, TRUE, "POST", "/sdapi/v1/txt2img", "{}", "Authorization: Bearer wrong\r\n", &r);
  expect_error (&r, 401, NULL);
  resp_clear (&r);
  http (s, TRUE, "GET", "/impasto/v1/health", NULL, "Authorization: Bearer s3cret\r\n", &r);
  g_assert_cmpuint (r.status, ==, 200);
  resp_clear (&r);
  http (s, FALSE, "GET", "/impasto/v1/health", NULL, NULL, &r); /* the socket needs none */
  g_assert_cmpuint (r.status, ==, 200);
  server_stop (s);

  /* non-loopback addresses need --allow-remote, and then a token */
  const char *bad1[] = { "--listen", "0.0.0.0:0", NULL };
  g_autoptr (Server) f1 = server_start_full (bad1, NULL, TRUE);
  g_assert_true (g_subprocess_wait (f1->proc, NULL, NULL));
  g_assert_cmpint (g_subprocess_get_exit_status (f1->proc), ==, 2);
  g_autofree char *log1 = server_log (f1);
  g_assert_nonnull (strstr (log1, "--allow-remote"));
  const char *bad2[] = { "--listen", "0.0.0.0:0", "--allow-remote", NULL };
  g_autoptr (Server) f2 = server_start_full (bad2, NULL, TRUE);
  g_assert_true (g_subprocess_wait (f2->proc, NULL, NULL));
  g_assert_cmpint (g_subprocess_get_exit_status (f2->proc), ==, 2);
  g_autofree char *log2 = server_log (f2);
  g_assert_nonnull (strstr (log2, "token"));
}

static void
assert_files_removed (Server *s)
{
  g_autofree char *dir = g_path_get_dirname (s->socket);
  const char *names[] = { "impasto.sock", "impasto.pid", "impasto.json", "impasto.lock" };
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autofree char *p = g_build_filename (dir, names[i], NULL);
      if (g_file_test (p, G_FILE_TEST_EXISTS))
        g_error ("%s left behind", p);
    }
}

static void
test_sigterm (void)
{
  if (!require_main ())
    return;
  const char *args[] = { "--model", model_path, "--idle-timeout", "300", NULL };
  g_autoptr (Server) s = server_start (args, NULL);
  if (!s)
    return;
  g_autoptr (Async) a = async_post (s, "/sdapi/v1/txt2img",
                                    "{\"seed\": 1, \"steps\": 150, \"width\": 64, \"height\": 64}");
  wait_for_step (s);
  g_subprocess_send_signal (s->proc, SIGTERM);
  async_join (a);
  expect_error (&a->resp, 503, "shutting down");
  g_assert_true (g_subprocess_wait (s->proc, NULL, NULL));
  g_assert_true (g_subprocess_get_if_exited (s->proc));
  g_assert_cmpint (g_subprocess_get_exit_status (s->proc), ==, 0);
  assert_files_removed (s);
  g_autofree char *log = server_log (s);
  g_assert_nonnull (strstr (log, "stopped"));
}

static void
test_idle_timeout (void)
{
  if (!require_main ())
    return;
  const char *args[] = { "--model", model_path, "--idle-timeout", "1", NULL };
  g_autoptr (Server) s = server_start (args, NULL);
  if (!s)
    return;
  gint64 t0 = g_get_monotonic_time ();
  g_assert_true (g_subprocess_wait (s->proc, NULL, NULL));
  g_assert_cmpint (g_subprocess_get_exit_status (s->proc), ==, 0);
  g_assert_cmpint (g_get_monotonic_time () - t0, <, 30 * G_USEC_PER_SEC);
  assert_files_removed (s);
  g_autofree char *log = server_log (s);
  g_assert_nonnull (strstr (log, "idle timeout"));
}

/* ---- main -------------------------------------------------------------------------- */

static void
write_png (const char *path, int w, int h, int ch, int kind)
{
  g_autoptr (SdImage) img = sd_image_new (w, h, ch, NULL);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < ch; c++)
        {
          guint8 v;
          if (kind == 0)
            v = (guint8) (x * 4 + c * 60 + y);
          else
            v = (x >= 20 && x < 44 && y >= 16 && y < 40) ? 255 : 0;
          sd_image_row (img, y)[x * ch + c] = v;
        }
  g_assert_true (sd_image_save_png (img, path, -1, NULL));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  tmpdir = g_dir_make_tmp ("impasto-serve-XXXXXX", NULL);
  const char *golden = test_golden_dir ();
  if (golden)
    {
      model_path = g_build_filename (golden, "sd15-tiny", "diffusers", NULL);
      inpaint_model_path = g_build_filename (golden, "sd15-tiny-inpaint", "diffusers", NULL);
      if (!g_file_test (model_path, G_FILE_TEST_IS_DIR)
          || !g_file_test (inpaint_model_path, G_FILE_TEST_IS_DIR))
        g_clear_pointer (&model_path, g_free);
    }
  init_png = g_build_filename (tmpdir, "init.png", NULL);
  mask_png = g_build_filename (tmpdir, "mask.png", NULL);
  mask_small_png = g_build_filename (tmpdir, "mask-small.png", NULL);
  write_png (init_png, 64, 64, 3, 0);
  write_png (mask_png, 64, 64, 1, 1);
  write_png (mask_small_png, 32, 32, 1, 1);

  g_test_add_func ("/serve/endpoints", test_endpoints);
  g_test_add_func ("/serve/second-instance", test_second_instance);
  g_test_add_func ("/serve/txt2img-matches-cli", test_txt2img_matches_cli);
  g_test_add_func ("/serve/img2img-matches-cli", test_img2img_matches_cli);
  g_test_add_func ("/serve/inpaint-matches-cli", test_inpaint_matches_cli);
  g_test_add_func ("/serve/inpaint-uncomposited", test_inpaint_uncomposited);
  g_test_add_func ("/serve/options-switch", test_options_switch);
  g_test_add_func ("/serve/progress-queue-order", test_progress_queue_order);
  g_test_add_func ("/serve/interrupt", test_interrupt);
  g_test_add_func ("/serve/bad-input", test_bad_input);
  g_test_add_func ("/serve/disconnect", test_disconnect);
  g_test_add_func ("/serve/out-of-memory", test_out_of_memory);
  g_test_add_func ("/serve/lru", test_lru);
  g_test_add_func ("/serve/tcp-token", test_tcp_token);
  g_test_add_func ("/serve/sigterm", test_sigterm);
  g_test_add_func ("/serve/idle-timeout", test_idle_timeout);
  int rc = g_test_run ();

  if (main_server)
    {
      g_subprocess_send_signal (main_server->proc, SIGTERM);
      g_subprocess_wait (main_server->proc, NULL, NULL);
      if (!g_subprocess_get_if_exited (main_server->proc)
          || g_subprocess_get_exit_status (main_server->proc) != 0)
        {
          g_autofree char *log = server_log (main_server);
          g_printerr ("the main server did not exit cleanly:\n%s\n", log);
          rc = 1;
        }
      server_free (main_server);
    }
  g_autofree char *cmd = g_strdup_printf ("rm -rf '%s'", tmpdir);
  if (system (cmd) != 0)
    g_printerr ("could not remove %s\n", tmpdir);
  return rc;
}
