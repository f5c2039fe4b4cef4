/* serve.c: `impasto serve`: a long-lived backend that keeps models loaded and
 * speaks the AUTOMATIC1111 API (/sdapi/v1/...) over HTTP/1.1.
 *
 * By default it listens only on a unix socket in a per-user folder
 * ($XDG_RUNTIME_DIR/impasto/, mode 0700), so only its user can reach it;
 * --listen adds TCP (loopback, or anything else with --allow-remote and a
 * bearer token). Beside the socket it keeps, for clients to find it:
 *   impasto.pid   the process id
 *   impasto.json  {"pid", "socket", "urls", "version"}
 *   impasto.lock  held (flock) while running: a second server on the same
 *                 socket refuses to start
 * (for --socket DIR/NAME.sock: DIR/NAME.pid, .json, .lock). It exits after
 * --idle-timeout seconds without jobs, and on SIGTERM / SIGINT (the running
 * job is cancelled between steps, queued ones answered 503), removing those
 * files. */
#include "config.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gio/gunixsocketaddress.h>
#include <glib-unix.h>

#include "commands.h"
#include "job.h"
#include "models.h"
#include "sd-error.h"
#include "serve.h"

typedef struct
{
  ImpServeConfig config;
  GMainLoop *loop;
  char *base; /* socket path without .sock: base.pid, base.json, base.lock */
  int lock_fd;
  gboolean quit_requested;
  const char *quit_reason;
  ImpWorker *worker;
} Serve;

static void log_line (const char *fmt, ...) G_GNUC_PRINTF (1, 2);

static void
log_line (const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *m = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_autoptr (GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *ts = g_date_time_format (now, "%H:%M:%S");
  fprintf (stderr, "impasto serve [%s] %s\n", ts, m);
}

/* GLib's g_message goes through the structured log; keep it one short line. */
static GLogWriterOutput
log_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer data)
{
  const char *message = NULL;
  for (gsize i = 0; i < n_fields; i++)
    if (strcmp (fields[i].key, "MESSAGE") == 0)
      message = fields[i].value;
  if (level & (G_LOG_LEVEL_DEBUG | G_LOG_LEVEL_INFO))
    return G_LOG_WRITER_HANDLED;
  if (message)
    log_line ("%s", message);
  return G_LOG_WRITER_HANDLED;
}

/* ---- the runtime folder ------------------------------------------------------------ */

static gboolean
ensure_private_dir (const char *dir, GError **error)
{
  if (g_mkdir_with_parents (dir, 0700) != 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "cannot create %s: %s", dir,
                   g_strerror (errno));
      return FALSE;
    }
  struct stat st;
  if (lstat (dir, &st) != 0 || !S_ISDIR (st.st_mode))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s is not a folder", dir);
      return FALSE;
    }
  if (st.st_uid != getuid ())
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_PERMISSION_DENIED,
                   "%s belongs to another user; refusing to put the socket there", dir);
      return FALSE;
    }
  if ((st.st_mode & 0777) != 0700 && chmod (dir, 0700) != 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "cannot make %s private: %s",
                   dir, g_strerror (errno));
      return FALSE;
    }
  return TRUE;
}

static char *
read_pid (const char *base)
{
  g_autofree char *pidfile = g_strconcat (base, ".pid", NULL);
  char *text = NULL;
  if (g_file_get_contents (pidfile, &text, NULL, NULL))
    g_strstrip (text);
  return text;
}

static gboolean
take_lock (Serve *s, GError **error)
{
  g_autofree char *lockfile = g_strconcat (s->base, ".lock", NULL);
  s->lock_fd = open (lockfile, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (s->lock_fd < 0)
    {
      g_set_error (error, G_IO_ERROR, g_io_error_from_errno (errno), "cannot open %s: %s", lockfile,
                   g_strerror (errno));
      return FALSE;
    }
  if (flock (s->lock_fd, LOCK_EX | LOCK_NB) != 0)
    {
      g_autofree char *pid = read_pid (s->base);
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_EXISTS,
                   "another impasto serve (pid %s) is already running on %s",
                   pid && *pid ? pid : "?", s->config.socket_path);
      close (s->lock_fd);
      s->lock_fd = -1;
      return FALSE;
    }
  return TRUE;
}

static void
remove_files (Serve *s)
{
  const char *ext[] = { ".pid", ".json" };
  for (guint i = 0; i < G_N_ELEMENTS (ext); i++)
    {
      g_autofree char *f = g_strconcat (s->base, ext[i], NULL);
      unlink (f);
    }
  unlink (s->config.socket_path);
  if (s->lock_fd >= 0)
    {
      /* unlink the lock while holding it, then release */
      g_autofree char *lockfile = g_strconcat (s->base, ".lock", NULL);
      unlink (lockfile);
      close (s->lock_fd);
      s->lock_fd = -1;
    }
}

static gboolean
write_files (Serve *s, GPtrArray *urls, GError **error)
{
  g_autofree char *pidfile = g_strconcat (s->base, ".pid", NULL);
  g_autofree char *pid = g_strdup_printf ("%d\n", (int) getpid ());
  if (!g_file_set_contents_full (pidfile, pid, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600, error))
    return FALSE;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "pid");
  json_builder_add_int_value (b, getpid ());
  json_builder_set_member_name (b, "socket");
  json_builder_add_string_value (b, s->config.socket_path);
  json_builder_set_member_name (b, "urls");
  json_builder_begin_array (b);
  for (guint i = 0; i < urls->len; i++)
    json_builder_add_string_value (b, urls->pdata[i]);
  json_builder_end_array (b);
  json_builder_set_member_name (b, "version");
  json_builder_add_string_value (b, IMPASTO_VERSION);
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  g_autofree char *text = json_to_string (root, TRUE);
  g_autofree char *jsonfile = g_strconcat (s->base, ".json", NULL);
  return g_file_set_contents_full (jsonfile, text, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600, error);
}

/* ---- listening --------------------------------------------------------------------- */

static gboolean
listen_unix (SoupServer *server, const char *path, GError **error)
{
  struct sockaddr_un dummy;
  if (strlen (path) >= sizeof dummy.sun_path)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_FILENAME_TOO_LONG,
                   "socket path %s is too long for a unix socket", path);
      return FALSE;
    }
  /* the lock is ours, so a socket file left here is stale */
  unlink (path);
  g_autoptr (GSocket) sock
      = g_socket_new (G_SOCKET_FAMILY_UNIX, G_SOCKET_TYPE_STREAM, G_SOCKET_PROTOCOL_DEFAULT, error);
  if (!sock)
    return FALSE;
  g_autoptr (GSocketAddress) addr = g_unix_socket_address_new (path);
  mode_t old = umask (0077);
  gboolean ok = g_socket_bind (sock, addr, FALSE, error);
  umask (old);
  if (!ok || !g_socket_listen (sock, error))
    return FALSE;
  return soup_server_listen_socket (server, sock, 0, error);
}

static GInetSocketAddress *
parse_listen (const char *spec, GError **error)
{
  const char *colon = strrchr (spec, ':');
  if (!colon || colon == spec)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "--listen %s: give HOST:PORT, e.g. 127.0.0.1:7860", spec);
      return NULL;
    }
  g_autofree char *host = g_strndup (spec, colon - spec);
  if (host[0] == '[' && host[strlen (host) - 1] == ']')
    {
      memmove (host, host + 1, strlen (host));
      host[strlen (host) - 1] = '\0';
    }
  guint64 port;
  if (!g_ascii_string_to_unsigned (colon + 1, 10, 0, 65535, &port, NULL))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "--listen %s: the port must be 0 to 65535", spec);
      return NULL;
    }
  g_autoptr (GInetAddress) ia = NULL;
  if (strcmp (host, "localhost") == 0)
    ia = g_inet_address_new_loopback (G_SOCKET_FAMILY_IPV4);
  else
    ia = g_inet_address_new_from_string (host);
  if (!ia)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "--listen %s: '%s' is not an IP address (or localhost)", spec, host);
      return NULL;
    }
  return G_INET_SOCKET_ADDRESS (g_inet_socket_address_new (ia, (guint16) port));
}

/* ---- lifetime ---------------------------------------------------------------------- */

static gboolean
on_signal (gpointer data)
{
  Serve *s = data;
  if (!s->quit_requested)
    {
      s->quit_requested = TRUE;
      s->quit_reason = "signal";
      g_main_loop_quit (s->loop);
    }
  return G_SOURCE_CONTINUE;
}

static gboolean
on_idle_check (gpointer data)
{
  Serve *s = data;
  if (s->config.idle_timeout <= 0 || s->quit_requested)
    return G_SOURCE_CONTINUE;
  gint64 since = imp_worker_idle_since (s->worker);
  if (since > 0
      && g_get_monotonic_time () - since >= (gint64) s->config.idle_timeout * G_USEC_PER_SEC)
    {
      s->quit_requested = TRUE;
      s->quit_reason = "idle timeout";
      g_main_loop_quit (s->loop);
    }
  return G_SOURCE_CONTINUE;
}

static gboolean
on_flush_timeout (gpointer data)
{
  *(gboolean *) data = TRUE;
  return G_SOURCE_REMOVE;
}

/* Run the main loop until every answer is handed to the kernel, at most
 * `seconds`. */
static void
drain (ImpHttp *http, double seconds)
{
  gboolean timed_out = FALSE;
  guint id = g_timeout_add ((guint) (seconds * 1000), on_flush_timeout, &timed_out);
  while (!timed_out && (imp_http_pending (http) > 0 || g_main_context_pending (NULL)))
    g_main_context_iteration (NULL, TRUE);
  if (!timed_out)
    g_source_remove (id);
}

/* ---- the command ------------------------------------------------------------------- */

int
cmd_serve (int argc, char **argv)
{
  g_autofree char *model = NULL, *socket_path = NULL, *token = NULL, *token_file = NULL;
  g_autofree char *device = NULL;
  g_auto (GStrv) listen = NULL;
  gboolean allow_remote = FALSE, no_fp16 = FALSE;
  int idle_timeout = 600, max_queue = 32;
  double budget_mib = 0, max_body_mib = 64, max_mpixels = 0;
  ImpApiLimits limits;
  imp_api_limits_init (&limits);
  int max_side = limits.job.max_side, max_steps = limits.job.max_steps;
  int max_batch = limits.job.max_batch, max_images = limits.job.max_images;
  max_mpixels = limits.job.max_pixels / 1048576.0;

  GOptionEntry entries[] = {
    { "model", 'm', 0, G_OPTION_ARG_FILENAME, &model,
      "Default model (path or name; default: the bundled model if installed)", "PATH|NAME" },
    { "socket", 0, 0, G_OPTION_ARG_FILENAME, &socket_path,
      "Unix socket (default $XDG_RUNTIME_DIR/impasto/impasto.sock)", "PATH" },
    { "listen", 'l', 0, G_OPTION_ARG_STRING_ARRAY, &listen,
      "Also listen on TCP, e.g. 127.0.0.1:7860 (port 0: any free port); repeatable", "HOST:PORT" },
    { "allow-remote", 0, 0, G_OPTION_ARG_NONE, &allow_remote,
      "Allow --listen on non-loopback addresses (needs a token)", NULL },
    { "token", 0, 0, G_OPTION_ARG_STRING, &token,
      "Bearer token required on TCP (also $IMPASTO_TOKEN)", "TOKEN" },
    { "token-file", 0, 0, G_OPTION_ARG_FILENAME, &token_file, "Read the token from a file",
      "FILE" },
    { "idle-timeout", 0, 0, G_OPTION_ARG_INT, &idle_timeout,
      "Exit after this many seconds without jobs (default 600; 0 = never)", "S" },
    { "memory-budget", 0, 0, G_OPTION_ARG_DOUBLE, &budget_mib,
      "MiB of model weights kept loaded; least recently used models are unloaded beyond it "
      "(default: 75% of the device's memory)",
      "MIB" },
    { "max-body", 0, 0, G_OPTION_ARG_DOUBLE, &max_body_mib,
      "Largest request body, MiB (default 64)", "MIB" },
    { "max-side", 0, 0, G_OPTION_ARG_INT, &max_side, "Largest width or height (default 2048)",
      "PX" },
    { "max-megapixels", 0, 0, G_OPTION_ARG_DOUBLE, &max_mpixels,
      "Largest width x height in MiP (2^20 pixels; default 4)", "MP" },
    { "max-steps", 0, 0, G_OPTION_ARG_INT, &max_steps, "Most steps per job (default 150)", "N" },
    { "max-batch", 0, 0, G_OPTION_ARG_INT, &max_batch, "Largest batch_size (default 8)", "N" },
    { "max-images", 0, 0, G_OPTION_ARG_INT, &max_images,
      "Most images per request, batch_size x n_iter (default 16)", "N" },
    { "max-queue", 0, 0, G_OPTION_ARG_INT, &max_queue, "Most jobs waiting (default 32)", "N" },
    { "no-fp16", 0, 0, G_OPTION_ARG_NONE, &no_fp16, "Compute in fp32", NULL },
    { "device", 0, 0, G_OPTION_ARG_STRING, &device, "Vulkan device: index or name substring",
      "DEV" },
    { NULL },
  };
  g_autoptr (GOptionContext) ctx = g_option_context_new ("- serve the Stable Diffusion HTTP API");
  g_option_context_set_description (
      ctx,
      "Endpoints (AUTOMATIC1111 names and shapes): POST /sdapi/v1/txt2img, /sdapi/v1/img2img,\n"
      "/sdapi/v1/interrupt; GET /sdapi/v1/progress, /sdapi/v1/sd-models, /sdapi/v1/samplers;\n"
      "GET and POST /sdapi/v1/options; GET /impasto/v1/health.\n"
      "\n"
      "Exit status: 0 stopped (signal, idle timeout); 1 could not start (socket in use, no\n"
      "device); 2 bad option; 3 the --model is missing.");
  g_option_context_add_main_entries (ctx, entries, NULL);
  g_autoptr (GError) error = NULL;
  if (!g_option_context_parse (ctx, &argc, &argv, &error))
    {
      fprintf (stderr, "impasto serve: %s (see impasto serve --help)\n", error->message);
      return IMP_EXIT_USAGE;
    }
  if (argc > 1)
    {
      fprintf (stderr, "impasto serve: unexpected argument '%s'\n", argv[1]);
      return IMP_EXIT_USAGE;
    }
  if (idle_timeout < 0 || max_queue < 1 || max_side < 8 || max_steps < 1 || max_batch < 1
      || max_images < 1 || !(max_body_mib > 0) || !(max_mpixels > 0) || budget_mib < 0)
    {
      fprintf (stderr, "impasto serve: limits must be positive\n");
      return IMP_EXIT_USAGE;
    }

  Serve s = { .lock_fd = -1 };
  ImpServeConfig *cfg = &s.config;
  limits.job.max_side = max_side;
  limits.job.max_pixels = (guint64) (max_mpixels * 1048576.0);
  limits.job.max_steps = max_steps;
  limits.job.max_batch = max_batch;
  limits.job.max_images = max_images;
  cfg->limits = limits;
  cfg->idle_timeout = idle_timeout;
  cfg->max_queue = max_queue;
  cfg->max_body = (gsize) (max_body_mib * 1048576.0);
  cfg->no_fp16 = no_fp16;
  cfg->allow_remote = allow_remote;

  /* token */
  if (token_file)
    {
      g_autofree char *text = NULL;
      if (!g_file_get_contents (token_file, &text, NULL, &error))
        {
          fprintf (stderr, "impasto serve: %s\n", error->message);
          return IMP_EXIT_USAGE;
        }
      g_free (token);
      token = g_strdup (g_strstrip (text));
    }
  if (!token && g_getenv ("IMPASTO_TOKEN") && *g_getenv ("IMPASTO_TOKEN"))
    token = g_strdup (g_getenv ("IMPASTO_TOKEN"));
  if (token && !*token)
    g_clear_pointer (&token, g_free);
  cfg->token = token;

  /* TCP addresses: checked before anything is created */
  g_autoptr (GPtrArray) tcp = g_ptr_array_new_with_free_func (g_object_unref);
  for (int i = 0; listen && listen[i]; i++)
    {
      GInetSocketAddress *a = parse_listen (listen[i], &error);
      if (!a)
        {
          fprintf (stderr, "impasto serve: %s\n", error->message);
          return IMP_EXIT_USAGE;
        }
      g_ptr_array_add (tcp, a);
      gboolean loopback = g_inet_address_get_is_loopback (g_inet_socket_address_get_address (a));
      if (!loopback && !allow_remote)
        {
          fprintf (stderr,
                   "impasto serve: --listen %s is not a loopback address: anyone on the "
                   "network could use the GPU; add --allow-remote and a --token to allow it\n",
                   listen[i]);
          return IMP_EXIT_USAGE;
        }
      if (!loopback && !token)
        {
          fprintf (stderr,
                   "impasto serve: --listen %s with --allow-remote needs a bearer token "
                   "(--token, --token-file or $IMPASTO_TOKEN)\n",
                   listen[i]);
          return IMP_EXIT_USAGE;
        }
    }

  /* the default model */
  if (model)
    {
      cfg->default_model = imp_model_resolve (model, &error);
      if (!cfg->default_model)
        {
          fprintf (stderr, "impasto serve: %s\n", error->message);
          return IMP_EXIT_INPUT;
        }
    }
  else
    cfg->default_model = imp_default_model_path (NULL);

  /* socket, lock */
  if (socket_path)
    cfg->socket_path = g_canonicalize_filename (socket_path, NULL);
  else
    {
      g_autofree char *dir = g_build_filename (g_get_user_runtime_dir (), "impasto", NULL);
      if (!ensure_private_dir (dir, &error))
        {
          fprintf (stderr, "impasto serve: %s\n", error->message);
          g_free (cfg->default_model);
          return IMP_EXIT_FAILURE;
        }
      cfg->socket_path = g_build_filename (dir, "impasto.sock", NULL);
    }
  s.base = g_str_has_suffix (cfg->socket_path, ".sock")
               ? g_strndup (cfg->socket_path, strlen (cfg->socket_path) - 5)
               : g_strdup (cfg->socket_path);
  int status = IMP_EXIT_OK;
  IvkContext *vk = NULL;
  SoupServer *server = NULL;
  ImpHttp *http = NULL;
  g_autoptr (GPtrArray) urls = g_ptr_array_new_with_free_func (g_free);
  guint sig_ids[3] = { 0 }, idle_id = 0;

  if (!take_lock (&s, &error))
    {
      fprintf (stderr, "impasto serve: %s\n", error->message);
      status = IMP_EXIT_FAILURE;
      goto out;
    }

  /* the device */
  IvkContextOptions copts = { .device = device, .no_fp16 = no_fp16 };
  vk = ivk_context_new (&copts, &error);
  if (!vk)
    {
      fprintf (stderr, "impasto serve: %s\n", error->message);
      status = IMP_EXIT_FAILURE;
      goto out;
    }
  imp_pin_loaded_libraries ();
  const IvkDeviceInfo *info = ivk_context_get_info (vk);
  cfg->memory_budget
      = budget_mib > 0 ? (guint64) (budget_mib * 1048576.0) : info->device_local_bytes / 4 * 3;

  g_log_set_writer_func (log_writer, NULL, NULL);
  server = soup_server_new ("server-header", "impasto/" IMPASTO_VERSION " ", NULL);
  if (!listen_unix (server, cfg->socket_path, &error))
    {
      fprintf (stderr, "impasto serve: cannot listen on %s: %s\n", cfg->socket_path,
               error->message);
      status = IMP_EXIT_FAILURE;
      goto out;
    }
  g_ptr_array_add (urls, g_strconcat ("unix:", cfg->socket_path, NULL));
  for (guint i = 0; i < tcp->len; i++)
    if (!soup_server_listen (server, tcp->pdata[i], 0, &error))
      {
        fprintf (stderr, "impasto serve: cannot listen on %s: %s\n", listen[i], error->message);
        status = IMP_EXIT_FAILURE;
        goto out;
      }
  /* the TCP addresses as bound (port 0 picks one); not soup_server_get_uris,
   * which assumes every listener is an inet socket */
  GSList *listeners = soup_server_get_listeners (server); /* (transfer container) */
  for (GSList *l = listeners; l; l = l->next)
    {
      g_autoptr (GSocketAddress) a = g_socket_get_local_address (l->data, NULL);
      if (!a || !G_IS_INET_SOCKET_ADDRESS (a))
        continue;
      GInetSocketAddress *ia = G_INET_SOCKET_ADDRESS (a);
      GInetAddress *host = g_inet_socket_address_get_address (ia);
      g_autofree char *h = g_inet_address_to_string (host);
      gboolean v6 = g_inet_address_get_family (host) == G_SOCKET_FAMILY_IPV6;
      g_ptr_array_add (urls, g_strdup_printf ("http://%s%s%s:%u/", v6 ? "[" : "", h, v6 ? "]" : "",
                                              g_inet_socket_address_get_port (ia)));
    }
  g_slist_free (listeners);
  if (!write_files (&s, urls, &error))
    {
      fprintf (stderr, "impasto serve: %s\n", error->message);
      status = IMP_EXIT_FAILURE;
      goto out;
    }

  s.loop = g_main_loop_new (NULL, FALSE);
  s.worker = imp_worker_new (vk, cfg, g_main_context_default ());
  http = imp_http_new (server, s.worker, cfg);
  sig_ids[0] = g_unix_signal_add (SIGTERM, on_signal, &s);
  sig_ids[1] = g_unix_signal_add (SIGINT, on_signal, &s);
  sig_ids[2] = g_unix_signal_add (SIGHUP, on_signal, &s);
  idle_id = g_timeout_add_seconds (1, on_idle_check, &s);

  {
    g_autofree char *def_name
        = cfg->default_model ? imp_model_display_name (cfg->default_model) : NULL;
    log_line ("pid %d on %s (%s); model %s; memory budget %.0f MiB; idle timeout %d s",
              (int) getpid (), info->name, info->use_fp16 && !no_fp16 ? "fp16" : "fp32",
              def_name ? def_name : "(none: give one per request)", cfg->memory_budget / 1048576.0,
              idle_timeout);
  }
  for (guint i = 0; i < urls->len; i++)
    printf ("listening on %s\n", (char *) urls->pdata[i]);
  fflush (stdout);

  g_main_loop_run (s.loop);

  /* shutdown: refuse new jobs, cancel the running one between steps and the
   * queued ones, answer everyone, then free the GPU */
  log_line ("stopping (%s)", s.quit_reason ? s.quit_reason : "?");
  imp_http_shutdown (http);
  imp_worker_cancel_all (s.worker, IMP_TASK_CANCEL_SHUTDOWN);
  drain (http, 600.0); /* the running job stops at its next step */
  imp_worker_free (s.worker);
  s.worker = NULL;
  drain (http, 2.0);

out:
  for (guint i = 0; i < G_N_ELEMENTS (sig_ids); i++)
    if (sig_ids[i])
      g_source_remove (sig_ids[i]);
  if (idle_id)
    g_source_remove (idle_id);
  if (s.worker)
    imp_worker_free (s.worker);
  if (http)
    imp_http_free (http);
  if (server)
    {
      soup_server_disconnect (server);
      g_object_unref (server);
    }
  /* let the server's last sources run so nothing is left referenced */
  while (g_main_context_pending (NULL))
    g_main_context_iteration (NULL, FALSE);
  if (s.loop)
    g_main_loop_unref (s.loop);
  if (s.lock_fd >= 0)
    remove_files (&s);
  if (vk)
    ivk_context_unref (vk);
  g_free (cfg->default_model);
  g_free (cfg->socket_path);
  g_free (s.base);
  if (status == IMP_EXIT_OK)
    log_line ("stopped");
  return status;
}
