/* serve-http.c: the HTTP side of `impasto serve`: routes, request limits,
 * authentication, and handing jobs to the worker (serve-worker.c). Runs on
 * the main loop. Job requests are paused (soup_server_message_pause) until
 * the worker posts the task back; a client that goes away meanwhile has its
 * job dropped from the queue or interrupted. */
#include "config.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>

#include "models.h"
#include "sd-error.h"
#include "serve.h"

struct _ImpHttp
{
  SoupServer *server; /* borrowed */
  ImpWorker *worker;  /* borrowed */
  const ImpServeConfig *config;
  GHashTable *pending; /* SoupServerMessage * -> ImpTask * (owned ref) */
  GHashTable *writing; /* SoupServerMessage * (owned ref): answered, being written */
  gboolean shutting_down;
  GPtrArray *known; /* char *: models named by path so far (and the default), listed
                     * in /sd-models beside the model folders' */
  guint poll_id;    /* disconnect poll while jobs are pending */
  guint next_id;
};

/* ---- responses --------------------------------------------------------------------- */

static void
send_json_node (SoupServerMessage *msg, guint status, JsonNode *node)
{
  g_autoptr (JsonGenerator) gen = json_generator_new ();
  json_generator_set_root (gen, node);
  gsize len = 0;
  char *text = json_generator_to_data (gen, &len);
  soup_server_message_set_status (msg, status, NULL);
  soup_server_message_set_response (msg, "application/json", SOUP_MEMORY_TAKE, text, len);
}

static void
send_null (SoupServerMessage *msg)
{
  g_autoptr (JsonNode) n = json_node_new (JSON_NODE_NULL);
  send_json_node (msg, SOUP_STATUS_OK, n);
}

static void
send_error (SoupServerMessage *msg, guint status, const char *name, const char *detail)
{
  gsize len = 0;
  char *text = imp_api_error_json (name, detail, &len);
  soup_server_message_set_status (msg, status, NULL);
  soup_server_message_set_response (msg, "application/json", SOUP_MEMORY_TAKE, text, len);
}

static void
send_gerror (SoupServerMessage *msg, const GError *e)
{
  send_error (msg, imp_api_error_status (e), imp_api_error_name (e), e->message);
}

/* ---- limits and authentication (before the body is read) --------------------------- */

static gboolean
is_tcp (SoupServerMessage *msg)
{
  GSocketAddress *a = soup_server_message_get_local_address (msg);
  return a && G_IS_INET_SOCKET_ADDRESS (a);
}

/* Constant-time comparison, so the token cannot be guessed byte by byte
 * from response times. */
static gboolean
token_matches (const char *given, const char *expected)
{
  gsize a = strlen (given), b = strlen (expected);
  guint8 diff = a != b;
  for (gsize i = 0; i < b; i++)
    diff |= (guint8) (given[i < a ? i : 0] ^ expected[i]);
  return diff == 0;
}

/* Refuse early: set a status now, and stop keeping the body (libsoup still
 * reads it, but discards it). */
static void
refuse_early (SoupServerMessage *msg, guint status, const char *name, const char *detail)
{
  soup_message_body_set_accumulate (soup_server_message_get_request_body (msg), FALSE);
  soup_message_body_truncate (soup_server_message_get_request_body (msg));
  soup_message_headers_replace (soup_server_message_get_response_headers (msg), "Connection",
                                "close");
  send_error (msg, status, name, detail);
}

static void
on_got_headers (SoupServerMessage *msg, ImpHttp *h)
{
  SoupMessageHeaders *hdr = soup_server_message_get_request_headers (msg);
  if (h->config->token && is_tcp (msg))
    {
      const char *auth = soup_message_headers_get_one (hdr, "Authorization");
      if (!auth || g_ascii_strncasecmp (auth, "Bearer ", 7) != 0
          || !token_matches (auth + 7, h->config->token))
        {
          soup_message_headers_replace (soup_server_message_get_response_headers (msg),
                                        "WWW-Authenticate", "Bearer");
          refuse_early (msg, SOUP_STATUS_UNAUTHORIZED, "Unauthorized",
                        "this server needs 'Authorization: Bearer TOKEN' over TCP");
          return;
        }
    }
  goffset len = soup_message_headers_get_content_length (hdr);
  if (soup_message_headers_get_encoding (hdr) == SOUP_ENCODING_CONTENT_LENGTH
      && (guint64) len > h->config->max_body)
    {
      g_autofree char *d
          = g_strdup_printf ("the body is %" G_GINT64_FORMAT " bytes; the limit is %" G_GSIZE_FORMAT
                             " (impasto serve --max-body)",
                             (gint64) len, h->config->max_body);
      refuse_early (msg, SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, "TooLarge", d);
    }
}

/* Chunked bodies have no length up front: count as they arrive. */
static void
on_got_chunk (SoupServerMessage *msg, GBytes *chunk, ImpHttp *h)
{
  if (soup_server_message_get_status (msg) != 0)
    return;
  gsize total = GPOINTER_TO_SIZE (g_object_get_data (G_OBJECT (msg), "imp-body-bytes"));
  total += g_bytes_get_size (chunk);
  g_object_set_data (G_OBJECT (msg), "imp-body-bytes", GSIZE_TO_POINTER (total));
  if (total > h->config->max_body)
    {
      g_autofree char *d = g_strdup_printf ("the body is larger than the limit of %" G_GSIZE_FORMAT
                                            " bytes (impasto serve --max-body)",
                                            h->config->max_body);
      refuse_early (msg, SOUP_STATUS_REQUEST_ENTITY_TOO_LARGE, "TooLarge", d);
    }
}

static void
on_request_started (SoupServer *server, SoupServerMessage *msg, ImpHttp *h)
{
  g_signal_connect (msg, "got-headers", G_CALLBACK (on_got_headers), h);
  g_signal_connect (msg, "got-chunk", G_CALLBACK (on_got_chunk), h);
}

/* ---- models ------------------------------------------------------------------------ */

/* A model named in a request: a title or name from /sd-models (which includes
 * the server's default), else a path or a name in the model folders. */
static void
remember_model (ImpHttp *h, const char *path)
{
  for (guint i = 0; i < h->known->len; i++)
    if (strcmp (h->known->pdata[i], path) == 0)
      return;
  g_ptr_array_add (h->known, g_strdup (path));
}

static char *
resolve_model (ImpHttp *h, const char *spec, GError **error)
{
  g_autoptr (GPtrArray) list = imp_model_list ();
  for (guint i = 0; i < h->known->len; i++)
    {
      const char *path = h->known->pdata[i];
      g_autofree char *name = imp_model_display_name (path);
      g_autofree char *base = g_path_get_basename (path);
      if (strcmp (spec, name) == 0 || strcmp (spec, base) == 0 || strcmp (spec, path) == 0)
        return g_strdup (path);
    }
  for (guint i = 0; i < list->len; i++)
    {
      ImpModelEntry *e = list->pdata[i];
      if (strcmp (spec, e->title) == 0 || strcmp (spec, e->name) == 0)
        return g_strdup (e->path);
    }
  g_autoptr (GError) e = NULL;
  char *path = imp_model_resolve (spec, &e);
  if (!path)
    g_set_error_literal (error, IMP_API_ERROR, IMP_API_ERROR_UNKNOWN_MODEL, e->message);
  else
    remember_model (h, path);
  return path;
}

static void
add_model (JsonBuilder *b, const char *title, const char *name, const char *path)
{
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "title");
  json_builder_add_string_value (b, title);
  json_builder_set_member_name (b, "model_name");
  json_builder_add_string_value (b, name);
  json_builder_set_member_name (b, "hash");
  json_builder_add_null_value (b);
  json_builder_set_member_name (b, "sha256");
  json_builder_add_null_value (b);
  json_builder_set_member_name (b, "filename");
  json_builder_add_string_value (b, path);
  json_builder_set_member_name (b, "config");
  json_builder_add_null_value (b);
  json_builder_end_object (b);
}

static char *
model_title (const char *path)
{
  return g_file_test (path, G_FILE_TEST_IS_DIR) ? imp_model_display_name (path)
                                                : g_path_get_basename (path);
}

static void
handle_sd_models (ImpHttp *h, SoupServerMessage *msg)
{
  g_autoptr (GPtrArray) list = imp_model_list ();
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_array (b);
  /* the models named by path first (the default among them), then the
   * model folders' */
  for (guint k = 0; k < h->known->len; k++)
    {
      const char *path = h->known->pdata[k];
      g_autofree char *title = model_title (path);
      g_autofree char *name = imp_model_display_name (path);
      add_model (b, title, name, path);
    }
  for (guint i = 0; i < list->len; i++)
    {
      ImpModelEntry *e = list->pdata[i];
      gboolean listed = FALSE;
      for (guint k = 0; k < h->known->len; k++)
        listed |= strcmp (e->path, h->known->pdata[k]) == 0;
      if (!listed)
        add_model (b, e->title, e->name, e->path);
    }
  json_builder_end_array (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  send_json_node (msg, SOUP_STATUS_OK, root);
}

static void
handle_get_options (ImpHttp *h, SoupServerMessage *msg)
{
  g_autofree char *def = imp_worker_get_default_model (h->worker);
  g_autofree char *title = def ? model_title (def) : NULL;
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  json_builder_set_member_name (b, "sd_model_checkpoint");
  if (title)
    json_builder_add_string_value (b, title);
  else
    json_builder_add_null_value (b);
  json_builder_set_member_name (b, "sd_checkpoint_hash");
  json_builder_add_null_value (b);
  json_builder_set_member_name (b, "CLIP_stop_at_last_layers");
  json_builder_add_int_value (b, 1);
  json_builder_set_member_name (b, "samples_format");
  json_builder_add_string_value (b, "png");
  json_builder_end_object (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  send_json_node (msg, SOUP_STATUS_OK, root);
}

static void
handle_samplers (SoupServerMessage *msg)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_array (b);
  for (int k = 0; k < SD_SAMPLER_N_KINDS; k++)
    {
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "name");
      json_builder_add_string_value (b, sd_sampler_display_name (k));
      json_builder_set_member_name (b, "aliases");
      json_builder_begin_array (b);
      json_builder_add_string_value (b, sd_sampler_name (k));
      json_builder_end_array (b);
      json_builder_set_member_name (b, "options");
      json_builder_begin_object (b);
      json_builder_end_object (b);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  send_json_node (msg, SOUP_STATUS_OK, root);
}

static void
handle_schedulers (SoupServerMessage *msg)
{
  static const char *names[][2] = { { "automatic", "Automatic" }, { "karras", "Karras" } };
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_array (b);
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      json_builder_begin_object (b);
      json_builder_set_member_name (b, "name");
      json_builder_add_string_value (b, names[i][0]);
      json_builder_set_member_name (b, "label");
      json_builder_add_string_value (b, names[i][1]);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  g_autoptr (JsonNode) root = json_builder_get_root (b);
  send_json_node (msg, SOUP_STATUS_OK, root);
}

/* ---- jobs -------------------------------------------------------------------------- */

static gboolean poll_disconnects (gpointer data);

static void
on_task_done (ImpTask *t, gpointer data)
{
  ImpHttp *h = data;
  SoupServerMessage *msg = t->msg;
  if (!msg)
    return;
  if (t->error)
    {
      const GError *e = t->error;
      if (g_error_matches (e, SD_ERROR, SD_ERROR_CANCELLED))
        {
          int why = g_atomic_int_get (&t->cancel);
          if (why == IMP_TASK_CANCEL_SHUTDOWN)
            send_error (msg, SOUP_STATUS_SERVICE_UNAVAILABLE, "ShuttingDown",
                        "the server is shutting down; the job was cancelled");
          else
            send_error (msg, SOUP_STATUS_CONFLICT, "Interrupted", "the job was interrupted");
        }
      else if (g_error_matches (e, SD_ERROR, SD_ERROR_OUT_OF_MEMORY)
               || g_error_matches (e, IVK_ERROR, IVK_ERROR_OUT_OF_MEMORY))
        {
          /* 507: the numbers are in the detail and in "memory" */
          g_autoptr (JsonNode) health = imp_worker_health_json (h->worker);
          JsonObject *mem = json_object_get_object_member (json_node_get_object (health), "memory");
          JsonObject *dev = json_object_get_object_member (json_node_get_object (health), "device");
          g_autoptr (JsonBuilder) b = json_builder_new ();
          json_builder_begin_object (b);
          json_builder_set_member_name (b, "error");
          json_builder_add_string_value (b, "OutOfMemory");
          json_builder_set_member_name (b, "detail");
          json_builder_add_string_value (b, e->message);
          json_builder_set_member_name (b, "memory");
          json_builder_begin_object (b);
          json_builder_set_member_name (b, "device_bytes");
          json_builder_add_int_value (b, json_object_get_int_member (dev, "memory_bytes"));
          const char *keys[]
              = { "budget_bytes", "models_bytes", "device_allocated_bytes", "device_peak_bytes" };
          for (guint i = 0; i < G_N_ELEMENTS (keys); i++)
            {
              json_builder_set_member_name (b, keys[i]);
              json_builder_add_int_value (b, json_object_get_int_member (mem, keys[i]));
            }
          json_builder_end_object (b);
          json_builder_end_object (b);
          g_autoptr (JsonNode) root = json_builder_get_root (b);
          send_json_node (msg, SOUP_STATUS_INSUFFICIENT_STORAGE, root);
        }
      else if (g_error_matches (e, SD_ERROR, SD_ERROR_INVALID_ARG))
        send_error (msg, SOUP_STATUS_UNPROCESSABLE_ENTITY, "InvalidValue", e->message);
      else if (e->domain == IMP_API_ERROR)
        send_gerror (msg, e);
      else
        send_error (msg, SOUP_STATUS_INTERNAL_SERVER_ERROR,
                    e->domain == SD_ERROR ? "ModelError" : "DeviceError", e->message);
    }
  else if (t->kind == IMP_TASK_GENERATE)
    {
      g_autoptr (JsonNode) root = imp_api_build_response (&t->req, &t->result, t->started);
      send_json_node (msg, SOUP_STATUS_OK, root);
      /* the in-process job time, so clients can see the server's own overhead */
      char v[G_ASCII_DTOSTR_BUF_SIZE];
      g_ascii_formatd (v, sizeof v, "%.6f", t->job_seconds);
      soup_message_headers_replace (soup_server_message_get_response_headers (msg),
                                    "X-Impasto-Job-Seconds", v);
    }
  else
    send_null (msg);
  soup_server_message_unpause (msg);
  t->msg = NULL;
  g_hash_table_remove (h->pending, msg); /* drops the task ref */
  g_hash_table_add (h->writing, msg);    /* takes the task's message ref */
}

static void
on_request_done (SoupServer *server, SoupServerMessage *msg, ImpHttp *h)
{
  g_hash_table_remove (h->writing, msg);
}

static gboolean
start_task (ImpHttp *h, SoupServerMessage *msg, ImpTask *t)
{
  if (h->shutting_down)
    {
      send_error (msg, SOUP_STATUS_SERVICE_UNAVAILABLE, "ShuttingDown",
                  "the server is shutting down");
      return FALSE;
    }
  if (imp_worker_queue_length (h->worker) >= (guint) h->config->max_queue)
    {
      g_autofree char *d = g_strdup_printf (
          "%d jobs are already waiting (impasto serve --max-queue)", h->config->max_queue);
      send_error (msg, SOUP_STATUS_SERVICE_UNAVAILABLE, "QueueFull", d);
      return FALSE;
    }
  if (!t->id)
    t->id = g_strdup_printf ("impasto-%u-%u", (guint) getpid (), ++h->next_id);
  t->done = on_task_done;
  t->done_data = h;
  t->msg = g_object_ref (msg);
  g_hash_table_insert (h->pending, msg, imp_task_ref (t));
  soup_server_message_pause (msg);
  if (!imp_worker_push (h->worker, t))
    {
      g_hash_table_remove (h->pending, msg);
      t->msg = NULL;
      send_error (msg, SOUP_STATUS_SERVICE_UNAVAILABLE, "ShuttingDown",
                  "the server is shutting down");
      soup_server_message_unpause (msg);
      g_object_unref (msg);
      return FALSE;
    }
  if (!h->poll_id)
    h->poll_id = g_timeout_add (200, poll_disconnects, h);
  return TRUE;
}

static GBytes *
request_body (SoupServerMessage *msg)
{
  return soup_message_body_flatten (soup_server_message_get_request_body (msg));
}

static void
handle_generate (ImpHttp *h, SoupServerMessage *msg, gboolean img2img)
{
  g_autoptr (GBytes) body = request_body (msg);
  gsize len = 0;
  const char *data = g_bytes_get_data (body, &len);
  g_autoptr (ImpTask) t = imp_task_new (IMP_TASK_GENERATE);
  g_autoptr (GError) error = NULL;
  if (!imp_api_parse_request (data ? data : "", len, img2img, &h->config->limits, &t->req, &error))
    {
      send_gerror (msg, error);
      return;
    }
  if (t->req.model)
    t->model_path = resolve_model (h, t->req.model, &error);
  else
    {
      t->model_path = imp_worker_get_default_model (h->worker);
      if (!t->model_path)
        g_set_error (&error, IMP_API_ERROR, IMP_API_ERROR_UNKNOWN_MODEL,
                     "no model: start impasto serve with --model, set sd_model_checkpoint with "
                     "POST /sdapi/v1/options, or give override_settings.sd_model_checkpoint");
    }
  if (!t->model_path)
    {
      send_gerror (msg, error);
      return;
    }
  if (!t->req.has_seed)
    t->req.params.seed = g_random_int ();
  t->id = g_strdup (t->req.task_id);
  start_task (h, msg, t);
}

static void
handle_post_options (ImpHttp *h, SoupServerMessage *msg)
{
  g_autoptr (GBytes) body = request_body (msg);
  gsize len = 0;
  const char *data = g_bytes_get_data (body, &len);
  g_autoptr (JsonParser) parser = json_parser_new_immutable ();
  g_autoptr (GError) error = NULL;
  if (len == 0 || len > G_MAXSSIZE || !g_utf8_validate_len (data, len, NULL)
      || !json_parser_load_from_data (parser, data, (gssize) len, &error)
      || !JSON_NODE_HOLDS_OBJECT (json_parser_get_root (parser)))
    {
      send_error (msg, SOUP_STATUS_BAD_REQUEST, "MalformedRequest",
                  error ? error->message : "the body must be a JSON object");
      return;
    }
  JsonObject *o = json_node_get_object (json_parser_get_root (parser));
  JsonNode *ck = json_object_get_member (o, "sd_model_checkpoint");
  if (!ck || JSON_NODE_HOLDS_NULL (ck))
    {
      send_null (msg); /* other options are accepted and ignored */
      return;
    }
  if (!JSON_NODE_HOLDS_VALUE (ck) || json_node_get_value_type (ck) != G_TYPE_STRING)
    {
      send_error (msg, SOUP_STATUS_UNPROCESSABLE_ENTITY, "WrongType",
                  "field 'sd_model_checkpoint' must be a string");
      return;
    }
  g_autofree char *path = resolve_model (h, json_node_get_string (ck), &error);
  if (!path)
    {
      send_gerror (msg, error);
      return;
    }
  /* load it now, in queue order, as A1111 does on a checkpoint change */
  g_autoptr (ImpTask) t = imp_task_new (IMP_TASK_LOAD_MODEL);
  t->model_path = g_steal_pointer (&path);
  start_task (h, msg, t);
}

/* A paused request's client closed its connection: nothing will read the
 * answer, so drop the job (or interrupt it). Checked by peeking at the
 * socket, which libsoup does not read while the message is paused. */
static gboolean
poll_disconnects (gpointer data)
{
  ImpHttp *h = data;
  if (g_hash_table_size (h->pending) == 0)
    {
      h->poll_id = 0;
      return G_SOURCE_REMOVE;
    }
  GHashTableIter it;
  gpointer k, v;
  g_hash_table_iter_init (&it, h->pending);
  while (g_hash_table_iter_next (&it, &k, &v))
    {
      SoupServerMessage *msg = k;
      ImpTask *t = v;
      if (g_atomic_int_get (&t->cancel))
        continue;
      GSocket *sock = soup_server_message_get_socket (msg);
      if (!sock)
        continue;
      char c;
      ssize_t r = recv (g_socket_get_fd (sock), &c, 1, MSG_PEEK | MSG_DONTWAIT);
      if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        {
          g_message ("client of task %s went away; cancelling it", t->id);
          imp_worker_cancel (h->worker, t, IMP_TASK_CANCEL_CLIENT_GONE);
        }
    }
  return G_SOURCE_CONTINUE;
}

/* ---- routing ----------------------------------------------------------------------- */

static void
handler (SoupServer *server, SoupServerMessage *msg, const char *path, GHashTable *query,
         gpointer data)
{
  ImpHttp *h = data;
  const char *method = soup_server_message_get_method (msg);
  gboolean get = strcmp (method, "GET") == 0 || strcmp (method, "HEAD") == 0;
  gboolean post = strcmp (method, "POST") == 0;
  const char *allow = NULL;

#define ROUTE(p) (strcmp (path, (p)) == 0)
  if (ROUTE ("/sdapi/v1/txt2img") || ROUTE ("/sdapi/v1/img2img"))
    {
      if (post)
        {
          handle_generate (h, msg, ROUTE ("/sdapi/v1/img2img"));
          return;
        }
      allow = "POST";
    }
  else if (ROUTE ("/sdapi/v1/progress"))
    {
      if (get)
        {
          const char *id = query ? g_hash_table_lookup (query, "id_task") : NULL;
          g_autoptr (JsonNode) n = imp_worker_progress_json (h->worker, id);
          {
            send_json_node (msg, SOUP_STATUS_OK, n);
            return;
          }
        }
      allow = "GET";
    }
  else if (ROUTE ("/sdapi/v1/interrupt") || ROUTE ("/sdapi/v1/skip"))
    {
      if (post)
        {
          imp_worker_interrupt (h->worker);
          {
            send_null (msg);
            return;
          }
        }
      allow = "POST";
    }
  else if (ROUTE ("/sdapi/v1/sd-models"))
    {
      if (get)
        {
          handle_sd_models (h, msg);
          return;
        }
      allow = "GET";
    }
  else if (ROUTE ("/sdapi/v1/refresh-checkpoints"))
    {
      if (post)
        {
          send_null (msg);
          return;
        } /* the folders are scanned on every request */
      allow = "POST";
    }
  else if (ROUTE ("/sdapi/v1/options"))
    {
      if (get)
        {
          handle_get_options (h, msg);
          return;
        }
      if (post)
        {
          handle_post_options (h, msg);
          return;
        }
      allow = "GET, POST";
    }
  else if (ROUTE ("/sdapi/v1/samplers"))
    {
      if (get)
        {
          handle_samplers (msg);
          return;
        }
      allow = "GET";
    }
  else if (ROUTE ("/sdapi/v1/schedulers"))
    {
      if (get)
        {
          handle_schedulers (msg);
          return;
        }
      allow = "GET";
    }
  else if (ROUTE ("/impasto/v1/health"))
    {
      if (get)
        {
          g_autoptr (JsonNode) n = imp_worker_health_json (h->worker);
          JsonObject *o = json_node_get_object (n);
          json_object_set_int_member (o, "pid", getpid ());
          json_object_set_boolean_member (o, "shutting_down", h->shutting_down);
          {
            send_json_node (msg, SOUP_STATUS_OK, n);
            return;
          }
        }
      allow = "GET";
    }
#undef ROUTE
  if (allow)
    {
      soup_message_headers_replace (soup_server_message_get_response_headers (msg), "Allow", allow);
      g_autofree char *d = g_strdup_printf ("%s does not accept %s (only %s)", path, method, allow);
      {
        send_error (msg, SOUP_STATUS_METHOD_NOT_ALLOWED, "MethodNotAllowed", d);
        return;
      }
    }
  g_autofree char *d = g_strdup_printf ("no such endpoint: %s %s", method, path);
  send_error (msg, SOUP_STATUS_NOT_FOUND, "NotFound", d);
}

ImpHttp *
imp_http_new (SoupServer *server, ImpWorker *worker, const ImpServeConfig *config)
{
  ImpHttp *h = g_new0 (ImpHttp, 1);
  h->server = server;
  h->worker = worker;
  h->config = config;
  h->pending = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL,
                                      (GDestroyNotify) imp_task_unref);
  h->known = g_ptr_array_new_with_free_func (g_free);
  if (config->default_model)
    remember_model (h, config->default_model);
  h->writing = g_hash_table_new_full (g_direct_hash, g_direct_equal, g_object_unref, NULL);
  g_signal_connect (server, "request-started", G_CALLBACK (on_request_started), h);
  g_signal_connect (server, "request-finished", G_CALLBACK (on_request_done), h);
  g_signal_connect (server, "request-aborted", G_CALLBACK (on_request_done), h);
  soup_server_add_handler (server, NULL, handler, h, NULL);
  return h;
}

void
imp_http_shutdown (ImpHttp *h)
{
  h->shutting_down = TRUE;
}

guint
imp_http_pending (ImpHttp *h)
{
  return g_hash_table_size (h->pending) + g_hash_table_size (h->writing);
}

void
imp_http_free (ImpHttp *h)
{
  if (!h)
    return;
  if (h->poll_id)
    g_source_remove (h->poll_id);
  g_signal_handlers_disconnect_by_data (h->server, h);
  /* messages still paused (their tasks never came back) */
  GHashTableIter it;
  gpointer v;
  g_hash_table_iter_init (&it, h->pending);
  while (g_hash_table_iter_next (&it, NULL, &v))
    {
      ImpTask *t = v;
      g_clear_object (&t->msg);
    }
  g_hash_table_destroy (h->pending);
  g_hash_table_destroy (h->writing);
  g_ptr_array_unref (h->known);
  g_free (h);
}
