/* serve-worker.c: the GPU worker of `impasto serve`: one job at a time in
 * FIFO order, models kept loaded within a memory budget (least recently
 * used evicted first), progress for /sdapi/v1/progress. See serve.h. */
#include "config.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "models.h"
#include "sd-error.h"
#include "serve.h"

/* ---- tasks ------------------------------------------------------------------------- */

static void
task_free (gpointer mem)
{
  ImpTask *t = mem;
  g_free (t->id);
  g_free (t->model_path);
  imp_api_request_clear (&t->req);
  imp_job_result_clear (&t->result);
  g_clear_error (&t->error);
  g_clear_object (&t->msg);
}

ImpTask *
imp_task_new (ImpTaskKind kind)
{
  ImpTask *t = g_atomic_rc_box_new0 (ImpTask);
  t->kind = kind;
  imp_job_params_init (&t->req.params);
  return t;
}

ImpTask *
imp_task_ref (ImpTask *t)
{
  return g_atomic_rc_box_acquire (t);
}

void
imp_task_unref (ImpTask *t)
{
  if (t)
    g_atomic_rc_box_release_full (t, task_free);
}

/* ---- the worker -------------------------------------------------------------------- */

typedef struct
{
  char *path;
  char *name;
  SdPipeline *pipeline; /* owned; touched by the worker thread only */
  guint64 bytes;        /* estimated weight bytes */
  gint64 last_used;     /* monotonic µs */
  guint jobs;
} CacheEntry;

struct _ImpWorker
{
  IvkContext *ctx;            /* owned ref */
  GMainContext *main_context; /* owned ref */
  guint64 budget;
  gboolean no_fp16;
  GThread *thread;

  GMutex lock; /* guards everything below */
  GCond cond;
  GQueue queue; /* ImpTask *, owned refs, FIFO */
  ImpTask *current;
  gboolean quit;
  guint64 next_seq;
  char *default_model;
  /* progress of the current job */
  int step, total, iteration, n_iter;
  double fraction;
  gint64 job_start; /* monotonic µs */
  gint64 job_unix;  /* unix time */
  gboolean last_interrupted;
  gint64 idle_since; /* monotonic µs; 0 while busy */
  guint64 jobs_done;
  /* model cache, most recently used first; pipelines used by the worker only */
  GList *cache;
  guint64 cached_bytes;
  /* test hook: fail the Nth generation job with a device out-of-memory error
   * (IMPASTO_SERVE_INJECT_OOM=N), so the 5xx path is tested without
   * exhausting a real device */
  gint64 inject_oom_at;
  guint64 generate_count;
};

static void
cache_entry_free (CacheEntry *e)
{
  sd_pipeline_free (e->pipeline);
  g_free (e->path);
  g_free (e->name);
  g_free (e);
}

static gboolean
post_done_cb (gpointer data)
{
  ImpTask *t = data;
  if (t->done)
    t->done (t, t->done_data);
  return G_SOURCE_REMOVE;
}

/* Run the task's done callback on the main loop, always from an idle source
 * (never re-entrantly from the caller); takes the reference. */
static void
post_done (ImpWorker *w, ImpTask *t)
{
  GSource *s = g_idle_source_new ();
  g_source_set_callback (s, post_done_cb, t, (GDestroyNotify) imp_task_unref);
  g_source_attach (s, w->main_context);
  g_source_unref (s);
}

static void
set_cancelled_error (ImpTask *t)
{
  if (!t->error)
    g_set_error (&t->error, SD_ERROR, SD_ERROR_CANCELLED, "the job was cancelled");
}

static guint64
model_estimate (ImpWorker *w, SdPipeline *p)
{
  gboolean fp16 = !w->no_fp16 && ivk_context_get_info (w->ctx)->use_fp16;
  gint64 b = sd_model_weight_bytes (sd_pipeline_get_model (p), NULL, fp16 ? 2 : 4);
  return b > 0 ? (guint64) b : 0;
}

static void
evict_entry (ImpWorker *w, GList *link)
{
  CacheEntry *e = link->data;
  g_mutex_lock (&w->lock);
  w->cache = g_list_delete_link (w->cache, link);
  w->cached_bytes -= e->bytes;
  g_mutex_unlock (&w->lock);
  g_message ("unloading model %s (%.1f MiB)", e->name, e->bytes / 1048576.0);
  cache_entry_free (e);
}

/* The pipeline for `path`, loaded if needed: least recently used models are
 * unloaded first until the new one fits the budget. */
static CacheEntry *
get_pipeline (ImpWorker *w, const char *path, GError **error)
{
  for (GList *l = w->cache; l; l = l->next)
    {
      CacheEntry *e = l->data;
      if (strcmp (e->path, path) == 0)
        {
          g_mutex_lock (&w->lock);
          w->cache = g_list_remove_link (w->cache, l);
          w->cache = g_list_concat (l, w->cache);
          e->last_used = g_get_monotonic_time ();
          g_mutex_unlock (&w->lock);
          return e;
        }
    }
  SdPipelineOptions po = { .no_fp16 = w->no_fp16 };
  SdPipeline *p = sd_pipeline_new (w->ctx, path, &po, error);
  if (!p)
    return NULL;
  guint64 need = model_estimate (w, p);
  if (need > w->budget)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_OUT_OF_MEMORY,
                   "the model's weights need %.1f MiB but the memory budget is %.1f MiB "
                   "(impasto serve --memory-budget)",
                   need / 1048576.0, w->budget / 1048576.0);
      sd_pipeline_free (p);
      return NULL;
    }
  while (w->cache && w->cached_bytes + need > w->budget)
    evict_entry (w, g_list_last (w->cache));
  CacheEntry *e = g_new0 (CacheEntry, 1);
  e->path = g_strdup (path);
  e->name = imp_model_display_name (path);
  e->pipeline = p;
  e->bytes = need;
  e->last_used = g_get_monotonic_time ();
  g_mutex_lock (&w->lock);
  w->cache = g_list_prepend (w->cache, e);
  w->cached_bytes += need;
  g_mutex_unlock (&w->lock);
  g_message ("loaded model %s (%.1f MiB of weights)", e->name, need / 1048576.0);
  return e;
}

static void
drop_model (ImpWorker *w, const char *path, gboolean others)
{
  GList *l = w->cache;
  while (l)
    {
      GList *next = l->next;
      CacheEntry *e = l->data;
      if ((strcmp (e->path, path) == 0) != others)
        evict_entry (w, l);
      l = next;
    }
}

static gboolean
is_oom (const GError *e)
{
  return g_error_matches (e, SD_ERROR, SD_ERROR_OUT_OF_MEMORY)
         || g_error_matches (e, IVK_ERROR, IVK_ERROR_OUT_OF_MEMORY);
}

typedef struct
{
  ImpWorker *w;
  ImpTask *t;
} ProgressCtx;

static gboolean
on_progress (gpointer data, const ImpJobProgress *p)
{
  ProgressCtx *pc = data;
  ImpWorker *w = pc->w;
  g_mutex_lock (&w->lock);
  w->step = p->step;
  w->total = p->total;
  w->iteration = p->iteration;
  w->n_iter = p->n_iter;
  w->fraction = p->fraction;
  g_mutex_unlock (&w->lock);
  return g_atomic_int_get (&pc->t->cancel) == 0;
}

static gboolean
run_generate (ImpWorker *w, ImpTask *t, GError **error)
{
  w->generate_count++;
  if (w->inject_oom_at > 0 && w->generate_count == (guint64) w->inject_oom_at)
    {
      g_set_error (error, IVK_ERROR, IVK_ERROR_OUT_OF_MEMORY,
                   "out of device memory allocating 512.0 MiB (%.1f MiB already allocated by "
                   "impasto, device has %.1f MiB) [injected by IMPASTO_SERVE_INJECT_OOM]",
                   ivk_context_get_allocated (w->ctx) / 1048576.0,
                   ivk_context_get_info (w->ctx)->device_local_bytes / 1048576.0);
      return FALSE;
    }
  ProgressCtx pc = { w, t };
  for (int attempt = 0;; attempt++)
    {
      g_autoptr (GError) e = NULL;
      CacheEntry *entry = get_pipeline (w, t->model_path, &e);
      if (entry)
        {
          entry->jobs++;
          gint64 t0 = g_get_monotonic_time ();
          gboolean ok = imp_job_run (entry->pipeline, t->model_path, &t->req.params, on_progress,
                                     &pc, &t->result, &e);
          t->job_seconds = (g_get_monotonic_time () - t0) / 1e6;
          if (ok)
            return TRUE;
        }
      if (!is_oom (e) || attempt > 0 || g_error_matches (e, SD_ERROR, SD_ERROR_OUT_OF_MEMORY))
        {
          if (is_oom (e) && entry)
            drop_model (w, t->model_path, FALSE); /* rebuild it cleanly next time */
          g_propagate_error (error, g_steal_pointer (&e));
          return FALSE;
        }
      /* the device ran out: unload every other model and this one's
       * half-built networks, and try once more */
      g_message ("out of memory (%s); unloading models and retrying once", e->message);
      drop_model (w, t->model_path, TRUE);
      drop_model (w, t->model_path, FALSE);
    }
}

static void
run_task (ImpWorker *w, ImpTask *t)
{
  GError *error = NULL;
  if (g_atomic_int_get (&t->cancel))
    {
      set_cancelled_error (t);
      return;
    }
  t->started = g_get_real_time () / G_USEC_PER_SEC;
  switch (t->kind)
    {
    case IMP_TASK_LOAD_MODEL:
      if (get_pipeline (w, t->model_path, &error))
        imp_worker_set_default_model (w, t->model_path);
      break;
    case IMP_TASK_GENERATE:
      run_generate (w, t, &error);
      break;
    }
  if (error)
    t->error = error;
}

static gpointer
worker_main (gpointer data)
{
  ImpWorker *w = data;
  for (;;)
    {
      g_mutex_lock (&w->lock);
      while (!w->quit && g_queue_is_empty (&w->queue))
        g_cond_wait (&w->cond, &w->lock);
      if (w->quit)
        {
          g_mutex_unlock (&w->lock);
          break;
        }
      ImpTask *t = g_queue_pop_head (&w->queue);
      w->current = t;
      w->step = w->total = w->iteration = 0;
      w->n_iter = t->kind == IMP_TASK_GENERATE ? t->req.params.n_iter : 1;
      w->fraction = 0;
      w->job_start = g_get_monotonic_time ();
      w->job_unix = g_get_real_time () / G_USEC_PER_SEC;
      w->idle_since = 0;
      g_mutex_unlock (&w->lock);

      run_task (w, t);

      g_mutex_lock (&w->lock);
      w->current = NULL;
      w->jobs_done++;
      w->last_interrupted = g_error_matches (t->error, SD_ERROR, SD_ERROR_CANCELLED);
      if (g_queue_is_empty (&w->queue))
        w->idle_since = g_get_monotonic_time ();
      g_mutex_unlock (&w->lock);
      post_done (w, t);
    }
  /* the pipelines belong to this thread */
  g_list_free_full (w->cache, (GDestroyNotify) cache_entry_free);
  w->cache = NULL;
  w->cached_bytes = 0;
  return NULL;
}

ImpWorker *
imp_worker_new (IvkContext *ctx, const ImpServeConfig *config, GMainContext *main_context)
{
  ImpWorker *w = g_new0 (ImpWorker, 1);
  w->ctx = ivk_context_ref (ctx);
  w->main_context = g_main_context_ref (main_context);
  w->budget = config->memory_budget;
  w->no_fp16 = config->no_fp16;
  w->default_model = g_strdup (config->default_model);
  w->idle_since = g_get_monotonic_time ();
  const char *inject = g_getenv ("IMPASTO_SERVE_INJECT_OOM");
  if (inject)
    w->inject_oom_at = g_ascii_strtoll (inject, NULL, 10);
  g_mutex_init (&w->lock);
  g_cond_init (&w->cond);
  g_queue_init (&w->queue);
  w->thread = g_thread_new ("impasto-gpu", worker_main, w);
  return w;
}

void
imp_worker_free (ImpWorker *w)
{
  if (!w)
    return;
  /* quit first, so nothing can be queued after the queue is emptied */
  g_mutex_lock (&w->lock);
  w->quit = TRUE;
  g_cond_signal (&w->cond);
  g_mutex_unlock (&w->lock);
  imp_worker_cancel_all (w, IMP_TASK_CANCEL_SHUTDOWN);
  g_thread_join (w->thread);
  g_mutex_clear (&w->lock);
  g_cond_clear (&w->cond);
  ivk_context_unref (w->ctx);
  g_main_context_unref (w->main_context);
  g_free (w->default_model);
  g_free (w);
}

gboolean
imp_worker_push (ImpWorker *w, ImpTask *task)
{
  g_mutex_lock (&w->lock);
  if (w->quit)
    {
      g_mutex_unlock (&w->lock);
      return FALSE;
    }
  task->seq = w->next_seq++;
  g_queue_push_tail (&w->queue, imp_task_ref (task));
  w->idle_since = 0;
  g_cond_signal (&w->cond);
  g_mutex_unlock (&w->lock);
  return TRUE;
}

guint
imp_worker_queue_length (ImpWorker *w)
{
  g_mutex_lock (&w->lock);
  guint n = w->queue.length;
  g_mutex_unlock (&w->lock);
  return n;
}

gboolean
imp_worker_interrupt (ImpWorker *w)
{
  g_mutex_lock (&w->lock);
  ImpTask *t = w->current;
  if (t)
    g_atomic_int_set (&t->cancel, IMP_TASK_CANCEL_INTERRUPT);
  g_mutex_unlock (&w->lock);
  return t != NULL;
}

void
imp_worker_cancel (ImpWorker *w, ImpTask *task, int reason)
{
  g_mutex_lock (&w->lock);
  g_atomic_int_set (&task->cancel, reason);
  gboolean queued = g_queue_remove (&w->queue, task);
  if (queued && g_queue_is_empty (&w->queue) && !w->current)
    w->idle_since = g_get_monotonic_time ();
  g_mutex_unlock (&w->lock);
  if (queued)
    {
      set_cancelled_error (task);
      post_done (w, task); /* the queue's reference */
    }
}

void
imp_worker_cancel_all (ImpWorker *w, int reason)
{
  g_mutex_lock (&w->lock);
  GQueue q = w->queue;
  g_queue_init (&w->queue);
  if (w->current)
    g_atomic_int_set (&w->current->cancel, reason);
  g_mutex_unlock (&w->lock);
  for (GList *l = q.head; l; l = l->next)
    {
      ImpTask *t = l->data;
      g_atomic_int_set (&t->cancel, reason);
      set_cancelled_error (t);
      post_done (w, t);
    }
  g_list_free (q.head);
}

gint64
imp_worker_idle_since (ImpWorker *w)
{
  g_mutex_lock (&w->lock);
  gint64 v = w->idle_since;
  g_mutex_unlock (&w->lock);
  return v;
}

char *
imp_worker_get_default_model (ImpWorker *w)
{
  g_mutex_lock (&w->lock);
  char *p = g_strdup (w->default_model);
  g_mutex_unlock (&w->lock);
  return p;
}

void
imp_worker_set_default_model (ImpWorker *w, const char *path)
{
  g_mutex_lock (&w->lock);
  g_free (w->default_model);
  w->default_model = g_strdup (path);
  g_mutex_unlock (&w->lock);
}

/* ---- state as JSON ----------------------------------------------------------------- */

static void
set_int (JsonBuilder *b, const char *name, gint64 v)
{
  json_builder_set_member_name (b, name);
  json_builder_add_int_value (b, v);
}

static void
set_double (JsonBuilder *b, const char *name, double v)
{
  json_builder_set_member_name (b, name);
  json_builder_add_double_value (b, v);
}

static void
set_string (JsonBuilder *b, const char *name, const char *v)
{
  json_builder_set_member_name (b, name);
  if (v)
    json_builder_add_string_value (b, v);
  else
    json_builder_add_null_value (b);
}

static void
set_bool (JsonBuilder *b, const char *name, gboolean v)
{
  json_builder_set_member_name (b, name);
  json_builder_add_boolean_value (b, v);
}

JsonNode *
imp_worker_progress_json (ImpWorker *w, const char *task_id)
{
  g_autoptr (JsonBuilder) b = json_builder_new ();
  g_mutex_lock (&w->lock);
  ImpTask *cur = w->current;
  gboolean running = cur != NULL;
  double progress = running ? w->fraction : 0.0;
  double elapsed = running ? (g_get_monotonic_time () - w->job_start) / 1e6 : 0.0;
  /* A1111: eta = elapsed / progress - elapsed */
  double eta = running && progress > 0 ? elapsed / progress - elapsed : 0.0;
  gint64 position = -1;
  if (task_id)
    {
      if (cur && g_strcmp0 (cur->id, task_id) == 0)
        position = 0;
      else
        {
          gint64 k = 1;
          for (GList *l = w->queue.head; l; l = l->next, k++)
            if (g_strcmp0 (((ImpTask *) l->data)->id, task_id) == 0)
              {
                position = k;
                break;
              }
        }
    }
  json_builder_begin_object (b);
  set_double (b, "progress", progress);
  set_double (b, "eta_relative", eta);
  json_builder_set_member_name (b, "state");
  json_builder_begin_object (b);
  set_bool (b, "skipped", FALSE);
  set_bool (b, "interrupted", running ? g_atomic_int_get (&cur->cancel) != 0 : w->last_interrupted);
  g_autofree char *job = running ? g_strdup_printf ("task(%s)", cur->id) : g_strdup ("");
  set_string (b, "job", job);
  set_int (b, "job_count", (running ? 1 : 0) + w->queue.length);
  g_autoptr (GDateTime) dt = running ? g_date_time_new_from_unix_local (w->job_unix) : NULL;
  g_autofree char *ts = dt ? g_date_time_format (dt, "%Y%m%d%H%M%S") : g_strdup ("0");
  set_string (b, "job_timestamp", ts);
  set_int (b, "job_no", running ? w->iteration : 0);
  set_int (b, "sampling_step", running ? w->step : 0);
  set_int (b, "sampling_steps", running ? w->total : 0);
  set_int (b, "queue_pending", w->queue.length);
  json_builder_end_object (b);
  /* no live previews yet */
  set_string (b, "current_image", NULL);
  set_string (b, "textinfo", NULL);
  set_string (b, "current_task", running ? cur->id : NULL);
  if (task_id)
    {
      set_string (b, "id_task", task_id);
      json_builder_set_member_name (b, "queue_position");
      if (position >= 0)
        json_builder_add_int_value (b, position);
      else
        json_builder_add_null_value (b);
    }
  json_builder_end_object (b);
  g_mutex_unlock (&w->lock);
  return json_builder_get_root (b);
}

static guint64
process_rss (void)
{
  g_autofree char *statm = NULL;
  if (!g_file_get_contents ("/proc/self/statm", &statm, NULL, NULL))
    return 0;
  unsigned long size = 0, resident = 0;
  if (sscanf (statm, "%lu %lu", &size, &resident) != 2)
    return 0;
  return (guint64) resident * (guint64) sysconf (_SC_PAGESIZE);
}

JsonNode *
imp_worker_health_json (ImpWorker *w)
{
  const IvkDeviceInfo *info = ivk_context_get_info (w->ctx);
  g_autoptr (JsonBuilder) b = json_builder_new ();
  json_builder_begin_object (b);
  set_string (b, "status", "ok");
  set_string (b, "version", IMPASTO_VERSION);
  json_builder_set_member_name (b, "device");
  json_builder_begin_object (b);
  set_string (b, "name", info->name);
  set_string (b, "driver", info->driver);
  set_bool (b, "cpu", info->is_cpu);
  set_bool (b, "fp16", info->use_fp16 && !w->no_fp16);
  set_int (b, "memory_bytes", (gint64) info->device_local_bytes);
  set_bool (b, "lost", ivk_context_is_lost (w->ctx));
  json_builder_end_object (b);

  g_mutex_lock (&w->lock);
  set_string (b, "default_model", w->default_model);
  json_builder_set_member_name (b, "models");
  json_builder_begin_array (b);
  gint64 now = g_get_monotonic_time ();
  for (GList *l = w->cache; l; l = l->next)
    {
      CacheEntry *e = l->data;
      json_builder_begin_object (b);
      set_string (b, "name", e->name);
      set_string (b, "path", e->path);
      set_int (b, "weight_bytes", (gint64) e->bytes);
      set_double (b, "idle_seconds", (now - e->last_used) / 1e6);
      set_int (b, "jobs", e->jobs);
      json_builder_end_object (b);
    }
  json_builder_end_array (b);
  json_builder_set_member_name (b, "memory");
  json_builder_begin_object (b);
  set_int (b, "budget_bytes", (gint64) w->budget);
  set_int (b, "models_bytes", (gint64) w->cached_bytes);
  set_int (b, "device_allocated_bytes", (gint64) ivk_context_get_allocated (w->ctx));
  set_int (b, "device_peak_bytes", (gint64) ivk_context_get_peak_allocated (w->ctx));
  set_int (b, "process_rss_bytes", (gint64) process_rss ());
  json_builder_end_object (b);
  json_builder_set_member_name (b, "queue");
  json_builder_begin_object (b);
  set_bool (b, "running", w->current != NULL);
  set_int (b, "pending", w->queue.length);
  set_int (b, "jobs_done", (gint64) w->jobs_done);
  json_builder_end_object (b);
  g_mutex_unlock (&w->lock);
  json_builder_end_object (b);
  return json_builder_get_root (b);
}
