/* bench-nets.c: `impasto bench text|unet|vae|load|all`: the networks at full
 * size, through the same objects users run (SdPipeline, SdClip, SdUNet,
 * SdVae), on random-weight models built from the shape tables of real
 * checkpoints (bench-model.c) or on any checkpoint given by path.
 *
 * Each measurement: one first call (graph compile and, on lavapipe, shader
 * JIT), then --runs timed calls (median, min, max of wall time: that is what
 * a user waits for), then one more call with per-dispatch GPU timestamps
 * (ivk_context_set_profiling) for the time share per op. GFLOP/s come from
 * the graphs' own FLOP counts and are set against the device's best GEMM
 * measured in the same process (bench_best_gemm), so figures from a noisy
 * shared machine stay comparable. Peak device memory is the context's
 * allocation peak over the measurement, weights included.
 */
#include "config.h"

#include <fcntl.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "bench-model.h"
#include "bench.h"
#include "ivk-ops.h"
#include "sd-error.h"
#include "sd-nets.h"
#include "sd-pipeline.h"
#include "sd-weights.h"

/* ---- models ---- */

static char *
shapes_dir (const BenchOptions *opt)
{
  if (opt->shapes_dir)
    return g_strdup (opt->shapes_dir);
  const char *env = g_getenv ("IMPASTO_BENCH_SHAPES");
  if (env && *env)
    return g_strdup (env);
  env = g_getenv ("IMPASTO_GOLDEN_DIR");
  return g_build_filename (env && *env ? env : IMPASTO_GOLDEN_DIR, "shapes", NULL);
}

/* "sd15" / "sdxl" -> the cached random-weight model (built on first use); a
 * path is used as it is. */
static char *
resolve_model (BenchReport *r, const char *name, GError **error)
{
  const char *table = NULL;
  if (g_strcmp0 (name, "sd15") == 0)
    table = "sd15_single_file.json";
  else if (g_strcmp0 (name, "sdxl") == 0)
    table = "sdxl_base_single_file.json";
  if (!table)
    {
      if (!g_file_test (name, G_FILE_TEST_EXISTS))
        {
          g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                       "--model wants sd15, sdxl or a checkpoint path; '%s' is none of them", name);
          return NULL;
        }
      return g_strdup (name);
    }
  g_autofree char *dir = shapes_dir (r->opt);
  g_autofree char *path = g_build_filename (dir, table, NULL);
  if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_MISSING,
                   "shape table %s not found (give --shapes DIR or IMPASTO_BENCH_SHAPES)", path);
      return NULL;
    }
  gint64 t0 = g_get_monotonic_time ();
  char *model = imp_bench_model_path (path, error);
  double s = (g_get_monotonic_time () - t0) / 1e6;
  if (model && s > 1.0)
    bench_say (r, "built the random-weight %s model in %.1f s: %s\n", name, s, model);
  return model;
}

static SdPipeline *
open_pipeline (BenchReport *r, const char *path, gboolean fp16, GError **error)
{
  SdPipelineOptions po = { .no_fp16 = !fp16 };
  return sd_pipeline_new (r->ctx, path, &po, error);
}

static gboolean
use_fp16 (BenchReport *r)
{
  return !r->opt->fp32 && ivk_context_get_info (r->ctx)->use_fp16;
}

/* What every network measurement starts with: the device's best GEMM at the
 * precision measured (the yardstick), the memory peak reset, the model
 * opened. */
static SdPipeline *
start_measurement (BenchReport *r, const char *path, GError **error)
{
  gboolean fp16 = use_fp16 (r);
  if (bench_best_gemm (r, fp16 ? IVK_F16 : IVK_F32, error) <= 0)
    return NULL;
  ivk_context_reset_peak (r->ctx);
  return open_pipeline (r, path, fp16, error);
}

static gboolean
check_size (int size, GError **error)
{
  if (size % 8 == 0 && size >= 64)
    return TRUE;
  g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "--size wants a multiple of 8, at least 64");
  return FALSE;
}

/* ---- random inputs ---- */

static void
fill_uniform (float *v, gsize n, float scale, guint32 seed)
{
  guint64 s = 0x9E3779B97F4A7C15ull ^ seed;
  for (gsize i = 0; i < n; i++)
    {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      v[i] = scale * (2.0f * (float) ((s >> 40) * (1.0 / 16777216.0)) - 1.0f);
    }
}

static gsize
count_nonfinite (const float *v, gsize n)
{
  gsize bad = 0;
  for (gsize i = 0; i < n; i++)
    bad += !isfinite (v[i]);
  return bad;
}

/* ---- measurement records ---- */

typedef gboolean (*BenchCall) (gpointer data, GError **error);

typedef struct
{
  double first_ms;
  double median_ms, min_ms, max_ms;
  double cpu_median_ms; /* CPU time of this process per call (CPU devices: the work) */
  int runs;
  double *times; /* owned, runs */
  GArray *profile; /* IvkNodeProfile of the profiled run, or NULL */
  double profile_ms; /* wall time of the profiled run */
  double flops;      /* from the profile (the graphs' own counts) */
  guint64 peak_bytes;
  guint64 largest_binding;
  char load_before[64], load_after[64];
} Measure;

static void
measure_clear (Measure *m)
{
  g_free (m->times);
  if (m->profile)
    g_array_unref (m->profile);
}

/* --runs 0, for calls too slow to repeat (SDXL 1024 on a CPU device): the
 * first call alone, profiled; its time includes the graph compile. */
static gboolean
measure_once (BenchReport *r, BenchCall call, gpointer data, Measure *m, GError **error)
{
  g_array_unref (ivk_context_take_profile (r->ctx));
  ivk_context_set_profiling (r->ctx, !r->opt->no_profile);
  double c0 = bench_cpu_ms ();
  gint64 t0 = g_get_monotonic_time ();
  gboolean ok = call (data, error);
  m->first_ms = (g_get_monotonic_time () - t0) / 1000.0;
  m->cpu_median_ms = bench_cpu_ms () - c0;
  ivk_context_set_profiling (r->ctx, FALSE);
  GArray *profile = ivk_context_take_profile (r->ctx);
  if (!ok)
    {
      g_array_unref (profile);
      return FALSE;
    }
  if (!r->opt->no_profile)
    {
      m->profile = profile;
      m->profile_ms = m->first_ms;
      for (guint i = 0; i < m->profile->len; i++)
        m->flops += g_array_index (m->profile, IvkNodeProfile, i).flops;
    }
  else
    g_array_unref (profile);
  m->runs = 1;
  m->times = g_new (double, 1);
  m->times[0] = m->median_ms = m->min_ms = m->max_ms = m->first_ms;
  m->peak_bytes = ivk_context_get_peak_allocated (r->ctx);
  m->largest_binding = ivk_context_get_largest_binding (r->ctx);
  g_strlcpy (m->load_after, bench_load_average (), sizeof m->load_after);
  return TRUE;
}

static gboolean
measure (BenchReport *r, BenchCall call, gpointer data, Measure *m, GError **error)
{
  const BenchOptions *opt = r->opt;
  memset (m, 0, sizeof *m);
  g_strlcpy (m->load_before, bench_load_average (), sizeof m->load_before);
  if (opt->runs == 0)
    return measure_once (r, call, data, m, error);
  gint64 t0 = g_get_monotonic_time ();
  if (!call (data, error))
    return FALSE;
  m->first_ms = (g_get_monotonic_time () - t0) / 1000.0;
  m->runs = opt->runs;
  m->times = g_new (double, opt->runs);
  g_autofree double *cpu = g_new (double, opt->runs);
  for (int i = 0; i < opt->runs; i++)
    {
      t0 = g_get_monotonic_time ();
      double c0 = bench_cpu_ms ();
      if (!call (data, error))
        return FALSE;
      m->times[i] = (g_get_monotonic_time () - t0) / 1000.0;
      cpu[i] = bench_cpu_ms () - c0;
    }
  m->cpu_median_ms = bench_median (cpu, opt->runs);
  g_autofree double *sorted = g_memdup2 (m->times, sizeof (double) * opt->runs);
  m->median_ms = bench_median (sorted, opt->runs);
  m->min_ms = sorted[0];
  m->max_ms = sorted[opt->runs - 1];
  if (!opt->no_profile)
    {
      g_array_unref (ivk_context_take_profile (r->ctx));
      ivk_context_set_profiling (r->ctx, TRUE);
      t0 = g_get_monotonic_time ();
      gboolean ok = call (data, error);
      m->profile_ms = (g_get_monotonic_time () - t0) / 1000.0;
      ivk_context_set_profiling (r->ctx, FALSE);
      m->profile = ivk_context_take_profile (r->ctx);
      if (!ok)
        return FALSE;
      for (guint i = 0; i < m->profile->len; i++)
        m->flops += g_array_index (m->profile, IvkNodeProfile, i).flops;
    }
  m->peak_bytes = ivk_context_get_peak_allocated (r->ctx);
  m->largest_binding = ivk_context_get_largest_binding (r->ctx);
  g_strlcpy (m->load_after, bench_load_average (), sizeof m->load_after);
  return TRUE;
}

typedef struct
{
  const char *key;
  double ms, flops;
  guint count;
} OpSum;

static int
cmp_opsum (gconstpointer a, gconstpointer b)
{
  const OpSum *x = a, *y = b;
  return x->ms < y->ms ? 1 : x->ms > y->ms ? -1 : 0;
}

/* Sum the profile by op family (by_label FALSE) or by node label (op and
 * output shape); sorted by time, descending. */
static GArray *
sum_profile (GArray *profile, gboolean by_label, double *total_ms)
{
  GHashTable *index = g_hash_table_new (g_str_hash, g_str_equal);
  GArray *sums = g_array_new (FALSE, TRUE, sizeof (OpSum));
  *total_ms = 0;
  for (guint i = 0; i < profile->len; i++)
    {
      const IvkNodeProfile *p = &g_array_index (profile, IvkNodeProfile, i);
      const char *key = by_label ? p->name : p->op;
      gpointer idx;
      if (!g_hash_table_lookup_extended (index, key, NULL, &idx))
        {
          OpSum s = { .key = key };
          g_array_append_val (sums, s);
          idx = GUINT_TO_POINTER (sums->len - 1);
          g_hash_table_insert (index, (gpointer) key, idx);
        }
      OpSum *s = &g_array_index (sums, OpSum, GPOINTER_TO_UINT (idx));
      s->ms += p->ms;
      s->flops += p->flops;
      s->count++;
      *total_ms += p->ms;
    }
  g_hash_table_destroy (index);
  g_array_sort (sums, cmp_opsum);
  return sums;
}

static void
json_add_double (JsonObject *o, const char *name, double v)
{
  json_object_set_double_member (o, name, isfinite (v) ? v : 0.0);
}

/* Print a measurement and add it to the report. `what` e.g. "unet"; `flops`
 * overrides the profile's count when nonzero; extra: more members (owned). */
static void
report (BenchReport *r, const char *what, const char *model, const char *detail, const Measure *m,
        JsonObject *extra)
{
  const IvkDeviceInfo *info = ivk_context_get_info (r->ctx);
  double gflops = m->flops > 0 ? m->flops / (m->median_ms * 1e6) : 0;
  double frac = r->best_gemm_gflops > 0 && gflops > 0 ? gflops / r->best_gemm_gflops : 0;
  bench_say (r, "\n%s %s %s: median %.3f s (min %.3f, max %.3f, %d runs; first call %.2f s; CPU time %.3f s per call)\n",
             what, model, detail, m->median_ms / 1000, m->min_ms / 1000, m->max_ms / 1000, m->runs,
             m->first_ms / 1000, m->cpu_median_ms / 1000);
  if (m->flops > 0)
    bench_say (r, "  %.1f GFLOP per call, %.2f GFLOP/s = %.0f%% of this device's best GEMM (%.2f GFLOP/s)\n",
               m->flops / 1e9, gflops, 100 * frac, r->best_gemm_gflops);
  bench_say (r, "  peak device memory %.1f MiB (weights included); largest binding %.1f MiB (maxStorageBufferRange %.0f MiB)\n",
             m->peak_bytes / 1048576.0, m->largest_binding / 1048576.0,
             info->max_storage_buffer_range / 1048576.0);
  bench_say (r, "  load average before: %s, after: %s\n", m->load_before, m->load_after);

  JsonObject *o = extra ? extra : json_object_new ();
  json_object_set_string_member (o, "target", what);
  json_object_set_string_member (o, "model", model);
  json_object_set_string_member (o, "detail", detail);
  JsonArray *times = json_array_new ();
  for (int i = 0; i < m->runs; i++)
    json_array_add_double_element (times, m->times[i]);
  json_object_set_array_member (o, "times_ms", times);
  json_add_double (o, "median_ms", m->median_ms);
  json_add_double (o, "min_ms", m->min_ms);
  json_add_double (o, "max_ms", m->max_ms);
  json_add_double (o, "first_ms", m->first_ms);
  json_add_double (o, "cpu_ms", m->cpu_median_ms);
  json_add_double (o, "flops", m->flops);
  json_add_double (o, "gflops", gflops);
  json_add_double (o, "fraction_of_best_gemm", frac);
  json_object_set_int_member (o, "peak_bytes", (gint64) m->peak_bytes);
  json_object_set_int_member (o, "largest_binding_bytes", (gint64) m->largest_binding);
  json_object_set_string_member (o, "load_average_before", m->load_before);
  json_object_set_string_member (o, "load_average_after", m->load_after);

  if (m->profile && m->profile->len)
    {
      double total = 0;
      g_autoptr (GArray) ops = sum_profile (m->profile, FALSE, &total);
      bench_say (r, "  GPU time by op (profiled run: %.3f s wall, %.3f s in dispatches, %u dispatches):\n",
                 m->profile_ms / 1000, total / 1000, m->profile->len);
      bench_say (r, "    %-20s %10s %7s %9s %6s\n", "op", "ms", "share", "GFLOP/s", "count");
      JsonArray *ja = json_array_new ();
      for (guint i = 0; i < ops->len; i++)
        {
          const OpSum *s = &g_array_index (ops, OpSum, i);
          bench_say (r, "    %-20s %10.1f %6.1f%% %9.2f %6u\n", s->key, s->ms, 100 * s->ms / total,
                     s->ms > 0 ? s->flops / (s->ms * 1e6) : 0, s->count);
          JsonObject *jo = json_object_new ();
          json_object_set_string_member (jo, "op", s->key);
          json_add_double (jo, "ms", s->ms);
          json_add_double (jo, "share", s->ms / total);
          json_add_double (jo, "gflops", s->ms > 0 ? s->flops / (s->ms * 1e6) : 0);
          json_object_set_int_member (jo, "count", s->count);
          json_array_add_object_element (ja, jo);
        }
      json_object_set_array_member (o, "ops", ja);
      g_autoptr (GArray) labels = sum_profile (m->profile, TRUE, &total);
      guint top = MIN (labels->len, 12);
      bench_say (r, "  top %u dispatch kinds (op and output shape):\n", top);
      JsonArray *jl = json_array_new ();
      for (guint i = 0; i < labels->len; i++)
        {
          const OpSum *s = &g_array_index (labels, OpSum, i);
          if (i < top)
            bench_say (r, "    %-44s %10.1f %6.1f%% %9.2f %6u\n", s->key, s->ms, 100 * s->ms / total,
                       s->ms > 0 ? s->flops / (s->ms * 1e6) : 0, s->count);
          JsonObject *jo = json_object_new ();
          json_object_set_string_member (jo, "dispatch", s->key);
          json_add_double (jo, "ms", s->ms);
          json_add_double (jo, "gflops", s->ms > 0 ? s->flops / (s->ms * 1e6) : 0);
          json_object_set_int_member (jo, "count", s->count);
          json_array_add_object_element (jl, jo);
        }
      json_object_set_array_member (o, "dispatches", jl);
      json_add_double (o, "profiled_wall_ms", m->profile_ms);
      json_add_double (o, "profiled_gpu_ms", total);
    }
  json_array_add_object_element (r->results, o);
  if (r->out)
    fflush (r->out);
}

/* ---- text ---- */

typedef struct
{
  SdPipeline *p;
  int n_enc;
  int enc[2];
  gint32 *ids[2]; /* two prompts (cond, uncond) of 77 ids per encoder */
  float *hidden, *pooled;
} TextRun;

static gboolean
text_call (gpointer data, GError **error)
{
  TextRun *t = data;
  gboolean xl = t->n_enc == 2;
  for (int prompt = 0; prompt < 2; prompt++)
    for (int e = 0; e < t->n_enc; e++)
      {
        SdClip *clip = sd_pipeline_get_clip (t->p, t->enc[e], error);
        if (!clip)
          return FALSE;
        /* as the pipeline asks (sd-pipeline.c layer_choice, clip skip 1):
         * SD 1.x the final-LN last layer; SDXL the penultimate without LN,
         * plus the pooled embedding of encoder 2 */
        SdClipRequest req = {
          .hidden = t->hidden,
          .skip = xl ? 1 : 0,
          .final_ln = !xl,
          .pooled = xl && e == 1 ? t->pooled : NULL,
        };
        if (!sd_clip_encode (clip, t->ids[e] + prompt * 77, 1, &req, error))
          return FALSE;
      }
  return TRUE;
}

static gboolean
run_text (BenchReport *r, const char *name, const char *path, GError **error)
{
  g_autoptr (SdPipeline) p = start_measurement (r, path, error);
  if (!p)
    return FALSE;
  const SdModelConfig *mc = sd_pipeline_get_config (p);
  TextRun t = { .p = p };
  if (mc->text_encoder.present)
    t.enc[t.n_enc++] = 0;
  if (mc->text_encoder_2.present)
    t.enc[t.n_enc++] = 1;
  if (t.n_enc == 0)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_MISSING, "%s has no text encoder", name);
      return FALSE;
    }
  int maxc = 0;
  for (int e = 0; e < t.n_enc; e++)
    {
      const SdTextEncoderConfig *c = t.enc[e] ? &mc->text_encoder_2 : &mc->text_encoder;
      maxc = MAX (maxc, MAX (c->hidden, c->projection_dim));
      t.ids[e] = g_new (gint32, 2 * 77);
      for (int prompt = 0; prompt < 2; prompt++)
        {
          gint32 *row = t.ids[e] + prompt * 77;
          /* a 20-token prompt, then an empty (negative) prompt */
          int len = prompt == 0 ? 20 : 0;
          row[0] = c->bos_id;
          for (int i = 1; i <= len; i++)
            row[i] = 320 + 7 * i;
          row[len + 1] = c->eos_id;
          for (int i = len + 2; i < 77; i++)
            row[i] = c->pad_id;
        }
    }
  t.hidden = g_new (float, 77 * maxc);
  t.pooled = g_new (float, maxc);
  Measure m;
  gboolean ok = measure (r, text_call, &t, &m, error);
  if (ok)
    {
      guint64 wbytes = 0;
      for (int e = 0; e < t.n_enc; e++)
        wbytes += sd_clip_get_weight_bytes (sd_pipeline_get_clip (p, t.enc[e], NULL));
      JsonObject *o = json_object_new ();
      json_object_set_int_member (o, "weight_bytes", (gint64) wbytes);
      json_object_set_string_member (o, "precision", use_fp16 (r) ? "f16" : "f32");
      g_autofree char *detail = g_strdup_printf ("prompt + negative, %d encoder%s, %s", t.n_enc,
                                                 t.n_enc > 1 ? "s" : "", use_fp16 (r) ? "f16" : "f32");
      report (r, "text", name, detail, &m, o);
      bench_say (r, "  text encoder weights %.1f MiB\n", wbytes / 1048576.0);
    }
  measure_clear (&m);
  for (int e = 0; e < t.n_enc; e++)
    g_free (t.ids[e]);
  g_free (t.hidden);
  g_free (t.pooled);
  return ok;
}

/* ---- unet ---- */

typedef struct
{
  SdUNet *unet;
  SdUNetCall call;
  gsize n_out;
} UNetRun;

static gboolean
unet_call (gpointer data, GError **error)
{
  UNetRun *u = data;
  return sd_unet_forward (u->unet, &u->call, error);
}

static gboolean
run_unet (BenchReport *r, const char *name, const char *path, int size, int batch, GError **error)
{
  if (!check_size (size, error))
    return FALSE;
  gboolean fp16 = use_fp16 (r);
  g_autoptr (SdPipeline) p = start_measurement (r, path, error);
  if (!p)
    return FALSE;
  SdUNet *unet = sd_pipeline_get_unet (p, error);
  if (!unet)
    return FALSE;
  const SdUNetConfig *cfg = sd_unet_get_config (unet);
  int h = size / 8, w = size / 8, T = 77;
  UNetRun u = { .unet = unet };
  SdUNetCall *c = &u.call;
  c->batch = batch;
  c->height = h;
  c->width = w;
  c->context_len = T;
  gsize ns = (gsize) batch * cfg->in_channels * h * w;
  float *sample = g_new (float, ns);
  fill_uniform (sample, ns, 1.0f, 1);
  float *ts = g_new (float, batch);
  for (int i = 0; i < batch; i++)
    ts[i] = 500.0f;
  gsize nc = (gsize) batch * T * cfg->context_dim;
  float *context = g_new (float, nc);
  fill_uniform (context, nc, 1.0f, 2);
  float *te = NULL, *tid = NULL;
  if (cfg->addition_time_embed_dim > 0)
    {
      te = g_new (float, (gsize) batch * cfg->pooled_dim);
      fill_uniform (te, (gsize) batch * cfg->pooled_dim, 1.0f, 3);
      tid = g_new (float, (gsize) batch * cfg->n_time_ids);
      for (int b = 0; b < batch; b++)
        for (int i = 0; i < cfg->n_time_ids; i++)
          tid[b * cfg->n_time_ids + i] = (i == 2 || i == 3) ? 0.0f : (float) size;
    }
  u.n_out = (gsize) batch * cfg->out_channels * h * w;
  c->sample = sample;
  c->timesteps = ts;
  c->context = context;
  c->text_embeds = te;
  c->time_ids = tid;
  c->out = g_new (float, u.n_out);
  Measure m;
  gboolean ok = measure (r, unet_call, &u, &m, error);
  if (ok)
    {
      IvkGraphStats st = { 0 };
      sd_unet_plan (unet, batch, h, w, T, &st, NULL);
      gsize bad = count_nonfinite (c->out, u.n_out);
      guint64 wbytes = sd_unet_get_weight_bytes (unet);
      JsonObject *o = json_object_new ();
      json_object_set_int_member (o, "size", size);
      json_object_set_int_member (o, "batch", batch);
      json_object_set_string_member (o, "precision", fp16 ? "f16" : "f32");
      json_object_set_int_member (o, "weight_bytes", (gint64) wbytes);
      json_object_set_int_member (o, "arena_bytes", (gint64) st.arena_bytes);
      json_object_set_int_member (o, "naive_activation_bytes", (gint64) st.naive_bytes);
      json_object_set_int_member (o, "io_bytes", (gint64) st.io_bytes);
      json_object_set_int_member (o, "dispatches", st.n_nodes);
      json_object_set_int_member (o, "nonfinite_outputs", (gint64) bad);
      g_autofree char *detail = g_strdup_printf ("%dx%d batch %d %s", size, size, batch, fp16 ? "f16" : "f32");
      Measure mm = m;
      if (mm.flops <= 0)
        mm.flops = st.flops;
      report (r, "unet", name, detail, &mm, o);
      bench_say (r, "  weights %.1f MiB, activation arena %.1f MiB (%.1f MiB without reuse), io %.1f MiB, %u dispatches; output %s\n",
                 wbytes / 1048576.0, st.arena_bytes / 1048576.0, st.naive_bytes / 1048576.0,
                 st.io_bytes / 1048576.0, st.n_nodes,
                 bad ? "has NaN/Inf values" : "finite");
    }
  measure_clear (&m);
  g_free (sample);
  g_free (ts);
  g_free (context);
  g_free (te);
  g_free (tid);
  g_free ((float *) c->out);
  return ok;
}

/* ---- vae ---- */

typedef struct
{
  SdVae *vae;
  int batch, h, w;
  float *latents, *image;
  gsize n_image;
} VaeRun;

static gboolean
vae_call (gpointer data, GError **error)
{
  VaeRun *v = data;
  return sd_vae_decode (v->vae, v->batch, v->h, v->w, v->latents, v->image, NULL, error);
}

static gboolean
run_vae (BenchReport *r, const char *name, const char *path, int size, int batch, GError **error)
{
  if (!check_size (size, error))
    return FALSE;
  gboolean fp16 = use_fp16 (r);
  g_autoptr (SdPipeline) p = start_measurement (r, path, error);
  if (!p)
    return FALSE;
  SdVae *vae = sd_pipeline_get_vae (p, error);
  if (!vae)
    return FALSE;
  const SdVaeConfig *cfg = sd_vae_get_config (vae);
  VaeRun v = { .vae = vae, .batch = batch, .h = size / 8, .w = size / 8 };
  gsize nl = (gsize) batch * cfg->latent_channels * v.h * v.w;
  v.latents = g_new (float, nl);
  fill_uniform (v.latents, nl, cfg->scaling_factor * 1.7f, 4); /* ~unit variance after unscaling */
  v.n_image = (gsize) batch * cfg->out_channels * size * size;
  v.image = g_new (float, v.n_image);
  Measure m;
  gboolean ok = measure (r, vae_call, &v, &m, error);
  if (ok)
    {
      gsize bad = count_nonfinite (v.image, v.n_image);
      guint64 wbytes = sd_vae_get_weight_bytes (vae);
      JsonObject *o = json_object_new ();
      json_object_set_int_member (o, "size", size);
      json_object_set_int_member (o, "batch", batch);
      json_object_set_string_member (o, "precision", fp16 ? "f32 activations, f16 weights" : "f32");
      json_object_set_int_member (o, "weight_bytes", (gint64) wbytes);
      json_object_set_int_member (o, "nonfinite_outputs", (gint64) bad);
      g_autofree char *detail = g_strdup_printf ("decode %dx%d batch %d", size, size, batch);
      report (r, "vae", name, detail, &m, o);
      bench_say (r, "  decoder weights %.1f MiB; output %s\n", wbytes / 1048576.0,
                 bad ? "has NaN/Inf values" : "finite");
    }
  measure_clear (&m);
  g_free (v.latents);
  g_free (v.image);
  return ok;
}

/* ---- load ---- */

/* Drop the file's pages from the page cache (POSIX_FADV_DONTNEED: only clean
 * pages of this file, no privileges needed); FALSE when it cannot. */
static gboolean
drop_file_cache (const char *path)
{
  int fd = open (path, O_RDONLY);
  if (fd < 0)
    return FALSE;
  int rc = posix_fadvise (fd, 0, 0, POSIX_FADV_DONTNEED);
  close (fd);
  return rc == 0;
}

/* Everything a first job waits for before computing: open the model
 * (headers), then read, convert and upload every weight of every component
 * through SdWeights, the path the networks take (sd-weights.c). */
static gboolean
load_once (BenchReport *r, const char *path, gboolean fp16, double *ms, guint64 *bytes,
           double *unet_ms, GError **error)
{
  gint64 t0 = g_get_monotonic_time ();
  g_autoptr (SdPipeline) p = open_pipeline (r, path, fp16, error);
  if (!p)
    return FALSE;
  SdModel *model = sd_pipeline_get_model (p);
  const IvkDType act = fp16 ? IVK_F16 : IVK_F32;
  /* the VAE's weights are f16 with fp16 on, like its nets (sd-vae.c) */
  static const char *const prefixes[] = { "unet.", "vae.", "text_encoder.", "text_encoder_2." };
  GPtrArray *names = sd_model_list_tensors (model);
  SdWeights *ws[G_N_ELEMENTS (prefixes)] = { NULL };
  *bytes = 0;
  gboolean ok = TRUE;
  for (guint c = 0; ok && c < G_N_ELEMENTS (prefixes); c++)
    {
      gint64 tc = g_get_monotonic_time ();
      SdWeights *w = ws[c] = sd_weights_new (r->ctx, model, prefixes[c], act);
      gsize plen = strlen (prefixes[c]);
      for (guint i = 0; ok && i < names->len; i++)
        {
          const char *n = g_ptr_array_index (names, i);
          if (!g_str_has_prefix (n, prefixes[c]))
            continue;
          const SdTensorInfo *ti = sd_model_lookup (model, n);
          if (!ti || ti->dtype == SD_DTYPE_I64 || ti->dtype == SD_DTYPE_I32 || ti->ndim > 4)
            continue;
          g_autoptr (IvkGraph) g = ivk_graph_new (r->ctx, "load", IVK_GRAPH_DEFAULT);
          if (!sd_weights_get (w, g, n + plen))
            {
              g_propagate_error (error, g_error_copy (ivk_graph_get_error (g)));
              ok = FALSE;
            }
        }
      *bytes += sd_weights_get_bytes (w);
      if (c == 0)
        *unet_ms = (g_get_monotonic_time () - tc) / 1000.0;
    }
  *ms = (g_get_monotonic_time () - t0) / 1000.0;
  /* the weights stayed resident until the clock stopped, as in a loaded
   * pipeline; freeing them is not part of loading */
  for (guint c = 0; c < G_N_ELEMENTS (prefixes); c++)
    sd_weights_free (ws[c]);
  g_ptr_array_unref (names);
  return ok;
}

static gboolean
run_load (BenchReport *r, const char *name, const char *path, GError **error)
{
  gboolean fp16 = use_fp16 (r);
  double cold = 0, warm_med = 0, unet_cold = 0, unet_warm = 0;
  guint64 bytes = 0;
  gboolean dropped = drop_file_cache (path);
  char load_before[64];
  g_strlcpy (load_before, bench_load_average (), sizeof load_before);
  if (!load_once (r, path, fp16, &cold, &bytes, &unet_cold, error))
    return FALSE;
  int runs = r->opt->runs;
  g_autofree double *warm = g_new (double, runs);
  JsonArray *jw = json_array_new ();
  for (int i = 0; i < runs; i++)
    {
      if (!load_once (r, path, fp16, &warm[i], &bytes, &unet_warm, error))
        {
          json_array_unref (jw);
          return FALSE;
        }
      json_array_add_double_element (jw, warm[i]);
    }
  g_autofree double *sorted = g_memdup2 (warm, sizeof (double) * runs);
  warm_med = bench_median (sorted, runs);
  bench_say (r, "\nload %s (%s, %.1f MiB of weights to the device):\n", name,
             fp16 ? "f16" : "f32", bytes / 1048576.0);
  bench_say (r, "  cold (%s): %.2f s (UNet %.2f s)\n",
             dropped ? "file dropped from the page cache with posix_fadvise DONTNEED"
                     : "could not drop the page cache: first load of this process",
             cold / 1000, unet_cold / 1000);
  bench_say (r, "  warm (page cache): median %.2f s (min %.2f, max %.2f, %d runs; last UNet %.2f s)\n",
             warm_med / 1000, sorted[0] / 1000, sorted[runs - 1] / 1000, runs, unet_warm / 1000);
  bench_say (r, "  load average before: %s, after: %s\n", load_before, bench_load_average ());
  JsonObject *o = json_object_new ();
  json_object_set_string_member (o, "target", "load");
  json_object_set_string_member (o, "model", name);
  json_object_set_string_member (o, "precision", fp16 ? "f16" : "f32");
  json_object_set_int_member (o, "weight_bytes", (gint64) bytes);
  json_object_set_boolean_member (o, "cold_page_cache_dropped", dropped);
  json_add_double (o, "cold_ms", cold);
  json_add_double (o, "cold_unet_ms", unet_cold);
  json_object_set_array_member (o, "warm_ms", jw);
  json_add_double (o, "warm_median_ms", warm_med);
  json_add_double (o, "warm_min_ms", sorted[0]);
  json_add_double (o, "warm_max_ms", sorted[runs - 1]);
  json_object_set_string_member (o, "load_average_before", load_before);
  json_object_set_string_member (o, "load_average_after", bench_load_average ());
  json_array_add_object_element (r->results, o);
  return TRUE;
}

/* ---- targets ---- */

static const char *
model_name (BenchReport *r, const char *def)
{
  return r->opt->model ? r->opt->model : def;
}

gboolean
bench_text (BenchReport *r, GError **error)
{
  const char *name = model_name (r, "sd15");
  g_autofree char *path = resolve_model (r, name, error);
  return path && run_text (r, name, path, error);
}

gboolean
bench_unet (BenchReport *r, GError **error)
{
  const char *name = model_name (r, "sd15");
  g_autofree char *path = resolve_model (r, name, error);
  if (!path)
    return FALSE;
  int batch = r->opt->batch > 0 ? r->opt->batch : 2;
  if (r->opt->size > 0)
    return run_unet (r, name, path, r->opt->size, batch, error);
  if (g_strcmp0 (name, "sdxl") == 0)
    return run_unet (r, name, path, 1024, batch, error);
  return run_unet (r, name, path, 256, batch, error) && run_unet (r, name, path, 512, batch, error);
}

gboolean
bench_vae (BenchReport *r, GError **error)
{
  const char *name = model_name (r, "sd15");
  g_autofree char *path = resolve_model (r, name, error);
  return path && run_vae (r, name, path, r->opt->size > 0 ? r->opt->size : 512,
                          r->opt->batch > 0 ? r->opt->batch : 1, error);
}

gboolean
bench_load (BenchReport *r, GError **error)
{
  const char *name = model_name (r, "sd15");
  g_autofree char *path = resolve_model (r, name, error);
  return path && run_load (r, name, path, error);
}

/* SDXL at 1024x1024 needs its weights (5 GB in f16) and activations on the
 * device; on CPU devices the call is hours of work, so `all` leaves it to an
 * explicit `impasto bench unet --model sdxl`. */
static gboolean
sdxl_fits (BenchReport *r, const char *path, int batch, char *why, gsize why_len)
{
  const IvkDeviceInfo *info = ivk_context_get_info (r->ctx);
  g_autoptr (GError) e = NULL;
  gboolean fp16 = use_fp16 (r);
  SdOpenOptions oo = { .header_only = FALSE };
  g_autoptr (SdModel) model = sd_model_open (path, &oo, &e);
  if (!model)
    {
      g_snprintf (why, why_len, "%s", e->message);
      return FALSE;
    }
  g_autoptr (SdUNet) u = sd_unet_new_virtual (r->ctx, model, fp16, &e);
  IvkGraphStats st;
  if (!u || !sd_unet_plan (u, batch, 128, 128, 77, &st, &e))
    {
      g_snprintf (why, why_len, "%s", e ? e->message : "no plan");
      return FALSE;
    }
  guint64 need = (guint64) sd_model_weight_bytes (model, "unet", fp16 ? 2 : 4) + st.arena_bytes + st.io_bytes;
  if (need > info->device_local_bytes)
    {
      g_snprintf (why, why_len, "needs %.1f GiB, the device has %.1f GiB", need / 1073741824.0,
                  info->device_local_bytes / 1073741824.0);
      return FALSE;
    }
  return TRUE;
}

gboolean
bench_all (BenchReport *r, GError **error)
{
  const char *name = model_name (r, "sd15");
  g_autofree char *path = resolve_model (r, name, error);
  if (!path)
    return FALSE;
  int batch = r->opt->batch > 0 ? r->opt->batch : 2;
  if (!run_load (r, name, path, error) || !run_text (r, name, path, error))
    return FALSE;
  if (r->opt->size > 0)
    {
      if (!run_unet (r, name, path, r->opt->size, batch, error))
        return FALSE;
    }
  else if (!run_unet (r, name, path, 256, batch, error) || !run_unet (r, name, path, 512, batch, error))
    return FALSE;
  if (!run_vae (r, name, path, 512, 1, error))
    return FALSE;
  if (r->opt->model)
    return TRUE;
  /* SDXL base at 1024x1024 where the device has the memory */
  char why[256];
  if (ivk_context_get_info (r->ctx)->is_cpu)
    {
      bench_say (r, "\nunet sdxl 1024x1024: skipped on a CPU device (about 6 TFLOP per sample); "
                    "run `impasto bench unet --model sdxl` for it\n");
      return TRUE;
    }
  g_autofree char *xl = resolve_model (r, "sdxl", error);
  if (!xl)
    return FALSE;
  if (!sdxl_fits (r, xl, batch, why, sizeof why))
    {
      bench_say (r, "\nunet sdxl 1024x1024: skipped: %s\n", why);
      return TRUE;
    }
  return run_load (r, "sdxl", xl, error) && run_text (r, "sdxl", xl, error)
         && run_unet (r, "sdxl", xl, 1024, batch, error) && run_vae (r, "sdxl", xl, 1024, 1, error);
}
