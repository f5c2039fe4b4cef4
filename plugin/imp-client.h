/* imp-client.h: the plug-in's side of `impasto serve` (HTTP, AUTOMATIC1111
 * /sdapi/v1 API), GIMP-independent.
 *
 * Where the backend is:
 *   - IMPASTO_URL=http://host:port: a server on TCP (never started by us),
 *     with IMPASTO_TOKEN sent as a bearer token when set;
 *   - otherwise the per-user unix socket IMPASTO_SOCKET, default
 *     $XDG_RUNTIME_DIR/impasto/impasto.sock (the backend's default). When no
 *     server answers there, one is started detached (its own session, stdin
 *     /dev/null, output appended to $XDG_RUNTIME_DIR/impasto/serve-gimp.log,
 *     its pid written to serve-gimp.pid beside it) and waited for
 *     (GET /impasto/v1/health answering 200) for up to
 *     IMPASTO_SERVE_START_TIMEOUT seconds (default 120). The program is
 *     IMPASTO_BACKEND, else the `impasto` of the configured prefix
 *     (IMPASTO_BINDIR), else `impasto` on PATH, else ~/.local/bin/impasto
 *     (tools/install-gimp-plugin.sh). Extra arguments: IMPASTO_SERVE_ARGS.
 *
 * Every wait runs the thread-default GLib main context (g_main_context_
 * iteration), so a GTK dialog stays responsive while a job runs; call from
 * the main thread.
 */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

/* fraction in [0, 1], or < 0 for "busy, unknown"; text may be NULL. */
typedef void (*ImpProgressFn) (gpointer data, double fraction, const char *text);

typedef struct _ImpClient ImpClient;

/* A client for the server named by the environment (see above). */
ImpClient *imp_client_new (void);
void imp_client_free (ImpClient *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (ImpClient, imp_client_free)

/* "unix:/run/user/1000/impasto/impasto.sock" or the URL. */
const char *imp_client_describe (ImpClient *c);
/* The log file of a server this client started (or would start). */
const char *imp_client_log_path (ImpClient *c);

/* Make sure a server answers: check the health endpoint, else start one and
 * wait until it is ready. Errors: SD_ERROR_MISSING (the backend program was
 * not found), SD_ERROR_FAILED (it exited or did not get ready: the message
 * quotes the end of its log), SD_ERROR_CANCELLED. */
gboolean imp_client_ensure_server (ImpClient *c, ImpProgressFn progress, gpointer progress_data,
                                   GCancellable *cancellable, GError **error);

/* One request, waited for at most timeout_s seconds (0: no limit). body may
 * be NULL (GET). Returns the parsed JSON reply of a 2xx answer; otherwise
 * SD_ERROR_FAILED with the server's error detail. */
JsonNode *imp_client_request (ImpClient *c, const char *method, const char *path, JsonNode *body,
                              guint timeout_s, GCancellable *cancellable, GError **error);

/* Run a job: POST body to path (/sdapi/v1/txt2img or img2img) and, while it
 * runs, poll /sdapi/v1/progress and report it. When `cancellable` fires,
 * POST /sdapi/v1/interrupt, wait (up to 30 s) for the job to end, and fail
 * with SD_ERROR_CANCELLED. A connection lost during the job is
 * SD_ERROR_FAILED "the backend stopped during the job". */
JsonNode *imp_client_run_job (ImpClient *c, const char *path, JsonNode *body,
                              ImpProgressFn progress, gpointer progress_data,
                              GCancellable *cancellable, GError **error);

G_END_DECLS
