/* imp-client.c: talking to `impasto serve` (see imp-client.h). */
#include "config.h"

#include "imp-client.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include <gio/gunixsocketaddress.h>
#include <libsoup/soup.h>

#include "sd-error.h"

#ifndef IMPASTO_BINDIR
#define IMPASTO_BINDIR "/usr/local/bin"
#endif

/* How long a cancelled job may take to stop after /interrupt before we stop
 * waiting for it (the backend checks between sampling steps). */
#define INTERRUPT_GRACE_US (30 * G_USEC_PER_SEC)
/* Progress polling interval. */
#define POLL_INTERVAL_US (250 * 1000)

struct _ImpClient
{
  SoupSession *session; /* owned; no I/O timeout (jobs take minutes) */
  char *base;           /* owned: "http://localhost" (unix) or the URL, no trailing '/' */
  char *socket_path;    /* owned; NULL for TCP */
  char *describe;       /* owned */
  char *log_path;       /* owned */
  char *pid_path;       /* owned */
  char *token;          /* owned: IMPASTO_TOKEN (TCP servers), or NULL */
};

static char *
runtime_file (const char *name)
{
  return g_build_filename (g_get_user_runtime_dir (), "impasto", name, NULL);
}

ImpClient *
imp_client_new (void)
{
  ImpClient *c = g_new0 (ImpClient, 1);
  const char *url = g_getenv ("IMPASTO_URL");

  if (url && *url)
    {
      c->base = g_strdup (url);
      while (g_str_has_suffix (c->base, "/"))
        c->base[strlen (c->base) - 1] = '\0';
      c->describe = g_strdup (c->base);
      c->session = soup_session_new_with_options ("timeout", 0, "idle-timeout", 0, NULL);
    }
  else
    {
      const char *sock = g_getenv ("IMPASTO_SOCKET");
      c->socket_path = sock && *sock ? g_strdup (sock) : runtime_file ("impasto.sock");
      c->base = g_strdup ("http://localhost");
      c->describe = g_strconcat ("unix:", c->socket_path, NULL);
      g_autoptr (GSocketAddress) addr = g_unix_socket_address_new (c->socket_path);
      c->session = soup_session_new_with_options ("remote-connectable", addr, "timeout", 0,
                                                  "idle-timeout", 0, NULL);
    }
  const char *token = g_getenv ("IMPASTO_TOKEN");
  c->token = token && *token ? g_strdup (token) : NULL;
  c->log_path = runtime_file ("serve-gimp.log");
  c->pid_path = runtime_file ("serve-gimp.pid");
  return c;
}

void
imp_client_free (ImpClient *c)
{
  if (!c)
    return;
  g_clear_object (&c->session);
  g_free (c->base);
  g_free (c->socket_path);
  g_free (c->describe);
  g_free (c->log_path);
  g_free (c->pid_path);
  g_free (c->token);
  g_free (c);
}

const char *
imp_client_describe (ImpClient *c)
{
  return c->describe;
}

const char *
imp_client_log_path (ImpClient *c)
{
  return c->log_path;
}

/* ---- one request, waited for on the main context ----------------------------------- */

typedef struct
{
  SoupMessage *msg;          /* owned */
  GCancellable *cancellable; /* owned: cancels this request only */
  gboolean done;
  GBytes *body;  /* owned, the reply */
  GError *error; /* owned, transport error */
} Pending;

static void
on_sent (GObject *source, GAsyncResult *res, gpointer data)
{
  Pending *p = data;
  p->body = soup_session_send_and_read_finish (SOUP_SESSION (source), res, &p->error);
  p->done = TRUE;
  g_main_context_wakeup (NULL);
}

static Pending *
pending_start (ImpClient *c, const char *method, const char *path, JsonNode *body)
{
  Pending *p = g_new0 (Pending, 1);
  g_autofree char *uri = g_strconcat (c->base, path, NULL);

  p->msg = soup_message_new (method, uri);
  g_assert (p->msg); /* paths are ours and valid */
  if (c->token)
    {
      g_autofree char *auth = g_strconcat ("Bearer ", c->token, NULL);
      soup_message_headers_replace (soup_message_get_request_headers (p->msg), "Authorization",
                                    auth);
    }
  if (body)
    {
      gsize len = 0;
      char *json = json_to_string (body, FALSE);
      len = strlen (json);
      g_autoptr (GBytes) bytes = g_bytes_new_take (json, len);
      soup_message_set_request_body_from_bytes (p->msg, "application/json", bytes);
    }
  p->cancellable = g_cancellable_new ();
  soup_session_send_and_read_async (c->session, p->msg, G_PRIORITY_DEFAULT, p->cancellable, on_sent,
                                    p);
  return p;
}

/* Cancel (when not done) and wait for the callback, then free. */
static void
pending_free (Pending *p)
{
  if (!p)
    return;
  if (!p->done)
    {
      g_cancellable_cancel (p->cancellable);
      while (!p->done)
        g_main_context_iteration (NULL, TRUE);
    }
  g_clear_object (&p->msg);
  g_clear_object (&p->cancellable);
  g_clear_pointer (&p->body, g_bytes_unref);
  g_clear_error (&p->error);
  g_free (p);
}

static gboolean
tick (gpointer data)
{
  return G_SOURCE_CONTINUE;
}

/* The server's error text from a non-2xx reply: "detail" (A1111 and
 * impasto), else "error", else the status phrase. */
static char *
reply_error_text (Pending *p)
{
  guint status = soup_message_get_status (p->msg);
  gsize len = 0;
  const char *data = p->body ? g_bytes_get_data (p->body, &len) : NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();

  if (data && len && json_parser_load_from_data (parser, data, len, NULL))
    {
      JsonNode *root = json_parser_get_root (parser);
      if (root && JSON_NODE_HOLDS_OBJECT (root))
        {
          JsonObject *o = json_node_get_object (root);
          const char *keys[] = { "detail", "error", "message" };
          for (guint i = 0; i < G_N_ELEMENTS (keys); i++)
            {
              JsonNode *n = json_object_get_member (o, keys[i]);
              if (n && JSON_NODE_HOLDS_VALUE (n) && json_node_get_value_type (n) == G_TYPE_STRING)
                return g_strdup_printf ("%s (HTTP %u)", json_node_get_string (n), status);
              if (n && !JSON_NODE_HOLDS_NULL (n))
                {
                  g_autofree char *s = json_to_string (n, FALSE);
                  return g_strdup_printf ("%s (HTTP %u)", s, status);
                }
            }
        }
    }
  const char *phrase = soup_message_get_reason_phrase (p->msg);
  return g_strdup_printf ("HTTP %u %s", status, phrase ? phrase : "");
}

static JsonNode *
reply_json (Pending *p, GError **error)
{
  gsize len = 0;
  const char *data = p->body ? g_bytes_get_data (p->body, &len) : NULL;
  g_autoptr (JsonParser) parser = json_parser_new ();
  g_autoptr (GError) e = NULL;

  if (!data || !len || !json_parser_load_from_data (parser, data, len, &e))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_FAILED,
                   "the backend sent a reply that is not JSON%s%s", e ? ": " : "",
                   e ? e->message : "");
      return NULL;
    }
  return json_node_copy (json_parser_get_root (parser));
}

JsonNode *
imp_client_request (ImpClient *c, const char *method, const char *path, JsonNode *body,
                    guint timeout_s, GCancellable *cancellable, GError **error)
{
  Pending *p = pending_start (c, method, path, body);
  gint64 deadline = timeout_s ? g_get_monotonic_time () + timeout_s * G_USEC_PER_SEC : 0;
  guint t = g_timeout_add (50, tick, NULL);
  gboolean timed_out = FALSE, cancelled = FALSE;

  while (!p->done)
    {
      if (!timed_out && deadline && g_get_monotonic_time () > deadline)
        {
          timed_out = TRUE;
          g_cancellable_cancel (p->cancellable);
        }
      if (!cancelled && g_cancellable_is_cancelled (cancellable))
        {
          cancelled = TRUE;
          g_cancellable_cancel (p->cancellable);
        }
      g_main_context_iteration (NULL, TRUE);
    }
  g_source_remove (t);

  JsonNode *result = NULL;
  guint status = soup_message_get_status (p->msg);
  if (cancelled)
    g_set_error (error, SD_ERROR, SD_ERROR_CANCELLED, "cancelled");
  else if (timed_out)
    g_set_error (error, SD_ERROR, SD_ERROR_FAILED, "%s %s: no answer from the backend in %u s",
                 method, path, timeout_s);
  else if (p->error)
    g_set_error (error, SD_ERROR, SD_ERROR_FAILED, "%s %s: %s", method, path, p->error->message);
  else if (!SOUP_STATUS_IS_SUCCESSFUL (status))
    {
      g_autofree char *text = reply_error_text (p);
      g_set_error (error, SD_ERROR, SD_ERROR_FAILED, "%s", text);
    }
  else
    result = reply_json (p, error);
  pending_free (p);
  return result;
}

/* ---- finding or starting the server ----------------------------------------------------- */

static gboolean
healthy (ImpClient *c, GCancellable *cancellable)
{
  g_autoptr (GError) e = NULL;
  g_autoptr (JsonNode) n
      = imp_client_request (c, "GET", "/impasto/v1/health", NULL, 5, cancellable, &e);
  return n != NULL;
}

static char *
find_backend (GError **error)
{
  const char *env = g_getenv ("IMPASTO_BACKEND");
  if (env && *env)
    {
      /* absolute: the backend is started in / */
      if (g_file_test (env, G_FILE_TEST_IS_EXECUTABLE) && !g_file_test (env, G_FILE_TEST_IS_DIR))
        return g_canonicalize_filename (env, NULL);
      g_set_error (error, SD_ERROR, SD_ERROR_MISSING,
                   "the Impasto backend was not found: IMPASTO_BACKEND=%s is not an executable "
                   "program",
                   env);
      return NULL;
    }
  g_autofree char *installed = g_build_filename (IMPASTO_BINDIR, "impasto", NULL);
  if (g_file_test (installed, G_FILE_TEST_IS_EXECUTABLE))
    return g_steal_pointer (&installed);
  char *on_path = g_find_program_in_path ("impasto");
  if (on_path)
    return on_path;
  /* tools/install-gimp-plugin.sh puts it there; GIMP started from a desktop
   * menu often has no ~/.local/bin on its PATH */
  g_autofree char *local = g_build_filename (g_get_home_dir (), ".local", "bin", "impasto", NULL);
  if (g_file_test (local, G_FILE_TEST_IS_EXECUTABLE))
    return g_steal_pointer (&local);
  g_set_error (error, SD_ERROR, SD_ERROR_MISSING,
               "the Impasto backend program `impasto` was not found (looked for %s, on PATH and "
               "%s); install Impasto or set IMPASTO_BACKEND to the program",
               installed, local);
  return NULL;
}

/* The last lines of the log (for error messages), or "". */
static char *
log_tail (const char *path, guint max_lines)
{
  g_autofree char *text = NULL;
  gsize len = 0;
  if (!g_file_get_contents (path, &text, &len, NULL) || !len)
    return g_strdup ("");
  g_auto (GStrv) lines = g_strsplit (g_strchomp (text), "\n", -1);
  guint n = g_strv_length (lines);
  guint first = n > max_lines ? n - max_lines : 0;
  g_autoptr (GString) out = g_string_new (NULL);
  for (guint i = first; i < n; i++)
    g_string_append_printf (out, "\n  %s", lines[i]);
  return g_string_free (g_steal_pointer (&out), FALSE);
}

static void
child_setup (gpointer data)
{
  /* Its own session: the backend outlives this plug-in process and does not
   * get the signals GIMP sends to the plug-in's process group. */
  setsid ();
}

static gboolean
spawn_server (ImpClient *c, GPid *pid, GError **error)
{
  g_autofree char *prog = find_backend (error);
  if (!prog)
    return FALSE;

  g_autofree char *dir = g_path_get_dirname (c->log_path);
  if (g_mkdir_with_parents (dir, 0700) != 0)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_IO, "cannot create %s: %s", dir, g_strerror (errno));
      return FALSE;
    }

  g_autoptr (GPtrArray) argv = g_ptr_array_new_with_free_func (g_free);
  g_ptr_array_add (argv, g_strdup (prog));
  g_ptr_array_add (argv, g_strdup ("serve"));
  g_ptr_array_add (argv, g_strdup ("--socket"));
  g_ptr_array_add (argv, g_strdup (c->socket_path));
  const char *extra = g_getenv ("IMPASTO_SERVE_ARGS");
  if (extra && *extra)
    {
      g_auto (GStrv) args = NULL;
      if (!g_shell_parse_argv (extra, NULL, &args, error))
        {
          g_prefix_error (error, "IMPASTO_SERVE_ARGS: ");
          return FALSE;
        }
      for (int i = 0; args[i]; i++)
        g_ptr_array_add (argv, g_strdup (args[i]));
    }
  g_ptr_array_add (argv, NULL);

  int fd = open (c->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_IO, "cannot open %s: %s", c->log_path,
                   g_strerror (errno));
      return FALSE;
    }
  g_autofree char *cmdline = g_strjoinv (" ", (char **) argv->pdata);
  g_autoptr (GDateTime) now = g_date_time_new_now_local ();
  g_autofree char *stamp = g_date_time_format (now, "%F %T");
  g_autofree char *header
      = g_strdup_printf ("--- %s: started by the GIMP plug-in: %s\n", stamp, cmdline);
  if (write (fd, header, strlen (header)) < 0)
    { /* the log is best effort */
    }

  /* Without G_SPAWN_DO_NOT_REAP_CHILD GLib forks twice: the server is
   * re-parented to init at once and never becomes our zombie; *pid is the
   * server's own pid. */
  gboolean ok
      = g_spawn_async_with_fds ("/", (char **) argv->pdata, NULL, G_SPAWN_STDIN_FROM_DEV_NULL,
                                child_setup, NULL, pid, -1, fd, fd, error);
  close (fd);
  if (!ok)
    {
      g_prefix_error (error, "cannot start the Impasto backend %s: ", prog);
      return FALSE;
    }
  return TRUE;
}

gboolean
imp_client_ensure_server (ImpClient *c, ImpProgressFn progress, gpointer progress_data,
                          GCancellable *cancellable, GError **error)
{
  if (healthy (c, cancellable))
    return TRUE;
  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    {
      g_clear_error (error);
      g_set_error (error, SD_ERROR, SD_ERROR_CANCELLED, "cancelled");
      return FALSE;
    }
  if (!c->socket_path)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_FAILED,
                   "no Impasto backend answers at %s (IMPASTO_URL); start it with `impasto serve`",
                   c->base);
      return FALSE;
    }

  if (progress)
    progress (progress_data, -1, "Starting the Impasto backend\u2026");
  GPid pid = 0;
  if (!spawn_server (c, &pid, error))
    return FALSE;
  {
    g_autofree char *text = g_strdup_printf ("%d\n", (int) pid);
    g_file_set_contents (c->pid_path, text, -1, NULL);
  }

  const char *env = g_getenv ("IMPASTO_SERVE_START_TIMEOUT");
  guint64 timeout_s = 120;
  if (env && *env)
    g_ascii_string_to_unsigned (env, 10, 1, 3600, &timeout_s, NULL);
  gint64 deadline = g_get_monotonic_time () + (gint64) timeout_s * G_USEC_PER_SEC;
  while (TRUE)
    {
      if (healthy (c, cancellable))
        return TRUE;
      if (g_cancellable_is_cancelled (cancellable))
        {
          g_set_error (error, SD_ERROR, SD_ERROR_CANCELLED, "cancelled");
          return FALSE;
        }
      if (pid > 0 && kill (pid, 0) != 0 && errno == ESRCH)
        {
          /* It exited; another plug-in may have started one meanwhile. */
          if (healthy (c, cancellable))
            return TRUE;
          g_autofree char *tail = log_tail (c->log_path, 8);
          g_set_error (error, SD_ERROR, SD_ERROR_FAILED,
                       "the Impasto backend exited while starting (log: %s):%s", c->log_path, tail);
          return FALSE;
        }
      if (g_get_monotonic_time () > deadline)
        {
          g_autofree char *tail = log_tail (c->log_path, 8);
          g_set_error (error, SD_ERROR, SD_ERROR_FAILED,
                       "the Impasto backend did not get ready in %u s (log: %s):%s",
                       (guint) timeout_s, c->log_path, tail);
          return FALSE;
        }
      /* Sleep 200 ms while keeping the main context (and a dialog) alive. */
      gint64 until = g_get_monotonic_time () + 200 * 1000;
      guint tk = g_timeout_add (50, tick, NULL);
      while (g_get_monotonic_time () < until && !g_cancellable_is_cancelled (cancellable))
        g_main_context_iteration (NULL, TRUE);
      g_source_remove (tk);
    }
}

/* ---- jobs -------------------------------------------------------------------------------- */

/* Report a /sdapi/v1/progress?id_task=TASK reply; returns whether TASK is
 * the job running now. */
static gboolean
report_progress (JsonNode *n, const char *task, ImpProgressFn progress, gpointer progress_data)
{
  if (!n || !JSON_NODE_HOLDS_OBJECT (n))
    return FALSE;
  JsonObject *o = json_node_get_object (n);
  const char *current = json_object_get_string_member_with_default (o, "current_task", NULL);
  gint64 position = json_object_get_int_member_with_default (o, "queue_position", -1);
  gboolean ours = current && task && strcmp (current, task) == 0;
  if (!ours && position > 0)
    {
      g_autofree char *text = g_strdup_printf ("Waiting: %" G_GINT64_FORMAT " job%s ahead",
                                               position, position == 1 ? "" : "s");
      progress (progress_data, -1, text);
      return FALSE;
    }
  if (!ours && current)
    return FALSE; /* someone else's job; ours has not been seen yet */
  double fraction = json_object_get_double_member_with_default (o, "progress", 0);
  gint64 step = 0, steps = 0;
  JsonNode *sn = json_object_get_member (o, "state");
  JsonObject *state = sn && JSON_NODE_HOLDS_OBJECT (sn) ? json_node_get_object (sn) : NULL;
  if (state)
    {
      step = json_object_get_int_member_with_default (state, "sampling_step", 0);
      steps = json_object_get_int_member_with_default (state, "sampling_steps", 0);
    }
  g_autofree char *text = NULL;
  if (steps > 0 && step > 0)
    text = g_strdup_printf ("Step %" G_GINT64_FORMAT " of %" G_GINT64_FORMAT, MIN (step, steps),
                            steps);
  else
    text = g_strdup ("Preparing\u2026 (the first job loads the model)");
  progress (progress_data, CLAMP (fraction, 0.0, 1.0), text);
  return ours;
}

JsonNode *
imp_client_run_job (ImpClient *c, const char *path, JsonNode *body, ImpProgressFn progress,
                    gpointer progress_data, GCancellable *cancellable, GError **error)
{
  JsonObject *bo = JSON_NODE_HOLDS_OBJECT (body) ? json_node_get_object (body) : NULL;
  const char *task
      = bo ? json_object_get_string_member_with_default (bo, "force_task_id", NULL) : NULL;
  g_autofree char *progress_path
      = task ? g_strdup_printf ("/sdapi/v1/progress?skip_current_image=true&id_task=%s", task)
             : g_strdup ("/sdapi/v1/progress?skip_current_image=true");
  Pending *job = pending_start (c, "POST", path, body);
  Pending *poll = NULL, *interrupt = NULL;
  gboolean interrupted = FALSE, abandoned = FALSE, running = FALSE;
  gint64 interrupt_deadline = 0, next_poll = g_get_monotonic_time () + POLL_INTERVAL_US;
  guint t = g_timeout_add (50, tick, NULL);

  while (!job->done)
    {
      gint64 now = g_get_monotonic_time ();
      if (poll && poll->done)
        {
          if (!poll->error && SOUP_STATUS_IS_SUCCESSFUL (soup_message_get_status (poll->msg)))
            {
              g_autoptr (JsonNode) n = reply_json (poll, NULL);
              if (!job->done && !interrupted && progress)
                running = report_progress (n, task, progress, progress_data);
            }
          g_clear_pointer (&poll, pending_free);
          next_poll = now + POLL_INTERVAL_US;
        }
      if (!interrupted && g_cancellable_is_cancelled (cancellable))
        {
          interrupted = TRUE;
          if (progress)
            progress (progress_data, -1, "Stopping\u2026");
          if (running)
            {
              /* Ours is running: /interrupt stops it at the next step and the
               * reply comes at once (409). */
              interrupt_deadline = now + INTERRUPT_GRACE_US;
              interrupt = pending_start (c, "POST", "/sdapi/v1/interrupt", NULL);
            }
          else
            {
              /* Queued or not seen yet: closing the connection makes the
               * backend drop it (a client that went away is cancelled), and
               * another client's running job is left alone. */
              interrupt_deadline = now;
            }
        }
      if (interrupted && !abandoned && now >= interrupt_deadline)
        {
          abandoned = TRUE;
          g_cancellable_cancel (job->cancellable);
        }
      if (!poll && !interrupted && now >= next_poll)
        poll = pending_start (c, "GET", progress_path, NULL);
      g_main_context_iteration (NULL, TRUE);
    }
  g_source_remove (t);
  pending_free (poll);
  pending_free (interrupt);

  JsonNode *result = NULL;
  guint status = soup_message_get_status (job->msg);
  if (interrupted)
    g_set_error (error, SD_ERROR, SD_ERROR_CANCELLED, "cancelled");
  else if (job->error)
    g_set_error (error, SD_ERROR, SD_ERROR_FAILED,
                 "the Impasto backend stopped during the job (it crashed, was killed or ran out "
                 "of memory): %s. Its log: %s",
                 job->error->message, c->log_path);
  else if (!SOUP_STATUS_IS_SUCCESSFUL (status))
    {
      g_autofree char *text = reply_error_text (job);
      g_set_error (error, SD_ERROR, SD_ERROR_FAILED, "the backend refused the job: %s", text);
    }
  else
    result = reply_json (job, error);
  pending_free (job);
  return result;
}
