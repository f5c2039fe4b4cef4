/* serve.h: the parts of `impasto serve` (internal to backend/).
 *
 *   serve.c         options, sockets, pid/address files, signals, idle exit
 *   serve-http.c    the HTTP routes (libsoup, main loop thread)
 *   serve-worker.c  the GPU worker thread: FIFO job queue, model cache with
 *                   a memory budget and LRU eviction, progress state
 *
 * Threads: the soup server and every SoupServerMessage live on the main
 * loop; the worker thread owns the pipelines. They share only ImpTask
 * (atomically reference counted; its result fields are written by the worker
 * before completion is posted to the main loop and read after) and the
 * worker's state, guarded by its mutex.
 */
#pragma once

#include <libsoup/soup.h>

#include "ivk.h"
#include "serve-api.h"

G_BEGIN_DECLS

typedef struct
{
  char *socket_path; /* unix socket */
  char **listen;     /* HOST:PORT for TCP, or NULL */
  gboolean allow_remote;
  char *token;           /* bearer token for TCP, or NULL */
  int idle_timeout;      /* seconds without jobs before exiting; 0 = never */
  guint64 memory_budget; /* bytes of model weights kept loaded */
  gsize max_body;        /* request body bytes */
  int max_queue;         /* queued jobs (running one excluded) */
  ImpApiLimits limits;
  char *default_model; /* resolved path, or NULL when none was found */
  gboolean no_fp16;
} ImpServeConfig;

/* ---- tasks -------------------------------------------------------------------------- */

typedef enum
{
  IMP_TASK_GENERATE,
  IMP_TASK_LOAD_MODEL, /* POST /sdapi/v1/options sd_model_checkpoint */
} ImpTaskKind;

typedef struct _ImpTask ImpTask;
typedef void (*ImpTaskDoneFn) (ImpTask *task, gpointer data);

struct _ImpTask
{
  ImpTaskKind kind;
  char *id;          /* task id: force_task_id or generated */
  char *model_path;  /* resolved */
  ImpApiRequest req; /* IMP_TASK_GENERATE */
  gint cancel;       /* atomic: 1 interrupt, 2 shutdown, 3 client gone */
  guint64 seq;       /* FIFO order */
  /* written by the worker, read on the main loop after done */
  ImpJobResult result;
  GError *error;
  gint64 started;     /* unix time the job started */
  double job_seconds; /* time in imp_job_run (the in-process part, as the CLI runs it) */
  /* main loop side */
  ImpTaskDoneFn done;
  gpointer done_data;
  SoupServerMessage *msg; /* owned ref while pending */
};

ImpTask *imp_task_new (ImpTaskKind kind);
ImpTask *imp_task_ref (ImpTask *t);
void imp_task_unref (ImpTask *t);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (ImpTask, imp_task_unref)

#define IMP_TASK_CANCEL_INTERRUPT 1
#define IMP_TASK_CANCEL_SHUTDOWN 2
#define IMP_TASK_CANCEL_CLIENT_GONE 3

/* ---- the worker --------------------------------------------------------------------- */

typedef struct _ImpWorker ImpWorker;

/* Starts the thread. `done` callbacks run on `main_context`. */
ImpWorker *imp_worker_new (IvkContext *ctx, const ImpServeConfig *config,
                           GMainContext *main_context);
/* Cancel everything (running and queued tasks complete with
 * SD_ERROR_CANCELLED), join the thread, free the models. */
void imp_worker_free (ImpWorker *w);

/* Queue a task (takes a reference). FALSE when the queue is full. */
gboolean imp_worker_push (ImpWorker *w, ImpTask *task);
/* Tasks waiting (the running one excluded). */
guint imp_worker_queue_length (ImpWorker *w);
/* Interrupt the running task (A1111 /interrupt); FALSE when idle. */
gboolean imp_worker_interrupt (ImpWorker *w);
/* Cancel a task: removed if still queued (its done callback runs with
 * SD_ERROR_CANCELLED), interrupted between steps if running. */
void imp_worker_cancel (ImpWorker *w, ImpTask *task, int reason);
/* Cancel all queued and the running task (shutdown). */
void imp_worker_cancel_all (ImpWorker *w, int reason);

/* Monotonic time (µs) the last job ended (or the worker started); 0 while
 * a job runs or is queued. */
gint64 imp_worker_idle_since (ImpWorker *w);

/* A1111 /sdapi/v1/progress, optionally for one task id (queue_position). */
JsonNode *imp_worker_progress_json (ImpWorker *w, const char *task_id);
/* /impasto/v1/health: device, loaded models, memory, queue. */
JsonNode *imp_worker_health_json (ImpWorker *w);
/* The model new jobs use by default (resolved path) and its display name;
 * set by POST /options once loaded. */
char *imp_worker_get_default_model (ImpWorker *w);
void imp_worker_set_default_model (ImpWorker *w, const char *path);

/* ---- HTTP --------------------------------------------------------------------------- */

typedef struct _ImpHttp ImpHttp;

ImpHttp *imp_http_new (SoupServer *server, ImpWorker *worker, const ImpServeConfig *config);
/* Stop taking jobs: new job requests get 503. */
void imp_http_shutdown (ImpHttp *http);
/* Responses still to be written (paused messages). */
guint imp_http_pending (ImpHttp *http);
void imp_http_free (ImpHttp *http);

G_END_DECLS
