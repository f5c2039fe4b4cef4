/* cmd-bench.c: `impasto bench TARGET`: measure speed and memory.
 *
 * Targets are rows of a table (bench_targets below); each parses its own
 * options after the target name. `impasto bench ops` times every op at SD
 * shapes on the chosen device: per case a one-op graph compiled with
 * IVK_GRAPH_PROFILE, one warm-up run (on lavapipe that run also JIT-compiles
 * the pipeline, reported as "first"), then N timed runs; the median GPU time
 * (timestamps) gives GFLOP/s and GB/s, with the median wall time beside it.
 * The GEMM is also measured against a plain C loop (naive i-k-j, compiled
 * with the project's flags) in the same run, so numbers from noisy machines
 * stay comparable. Speed is measured here, never asserted by tests.
 */
#include "config.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "bench.h"
#include "commands.h"
#include "ivk-half.h"
#include "ivk-ops.h"
#include "sd-error.h"

/* ---- ops ---------------------------------------------------------------- */

typedef struct
{
  const char *name;   /* e.g. "linear" */
  const char *shape;  /* human description */
  IvkDType act, w;    /* precision */
  /* builds the op on graph inputs/weights; returns the output */
  IvkTensor *(*build) (IvkGraph *g, IvkWeightStore *ws, IvkDType act, IvkDType w, GError **error);
} OpCase;

typedef struct
{
  double gpu_ms, wall_ms, first_ms, cpu_ms;
  double flops, bytes;
} OpResult;

/* A weight of random values in [-scale, scale) stored in dtype w. */
static IvkTensor *
rand_weight (IvkWeightStore *ws, IvkDType w, int ndim, const gint64 *shape, float scale,
             GError **error)
{
  gint64 n = 1;
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  g_autofree float *f = g_new (float, n);
  guint64 s = 0x9E3779B97F4A7C15ull ^ (guint64) n;
  for (gint64 i = 0; i < n; i++)
    {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      f[i] = scale * (2.0f * (float) ((s >> 40) * (1.0 / 16777216.0)) - 1.0f);
    }
  if (w == IVK_F16)
    {
      g_autofree guint16 *h = g_new (guint16, n);
      for (gint64 i = 0; i < n; i++)
        h[i] = ivk_f32_to_f16 (f[i]);
      return ivk_weight_store_add (ws, "w", w, ndim, shape, h, error);
    }
  return ivk_weight_store_add (ws, "w", w, ndim, shape, f, error);
}

static IvkTensor *
input (IvkGraph *g, IvkDType dt, int ndim, gint64 a, gint64 b, gint64 c, gint64 d)
{
  gint64 s[4] = { a, b, c, d };
  return ivk_graph_input (g, "x", dt, ndim, s);
}

#define W2(a, b) ((const gint64[]) { a, b })
#define W4(a, b, c, d) ((const gint64[]) { a, b, c, d })

static IvkTensor *
b_matmul_nn_1024 (IvkGraph *g, IvkWeightStore *ws, IvkDType at, IvkDType wt, GError **error)
{
  IvkTensor *w = rand_weight (ws, wt, 2, W2 (1024, 1024), 0.03f, error);
  return w ? ivk_matmul (g, input (g, at, 2, 1024, 1024, 0, 0), w, NULL, NULL, 1.0f, 0) : NULL;
}

static IvkTensor *
b_linear_1024 (IvkGraph *g, IvkWeightStore *ws, IvkDType at, IvkDType wt, GError **error)
{
  IvkTensor *w = rand_weight (ws, wt, 2, W2 (1024, 1024), 0.03f, error);
  return w ? ivk_linear (g, input (g, at, 2, 1024, 1024, 0, 0), w, NULL) : NULL;
}

static IvkTensor *
b_linear_qkv (IvkGraph *g, IvkWeightStore *ws, IvkDType at, IvkDType wt, GError **error)
{
  IvkTensor *w = rand_weight (ws, wt, 2, W2 (320, 320), 0.05f, error);
  return w ? ivk_linear (g, input (g, at, 3, 1, 4096, 320, 0), w, NULL) : NULL;
}

static IvkTensor *
b_linear_geglu (IvkGraph *g, IvkWeightStore *ws, IvkDType at, IvkDType wt, GError **error)
{
  IvkTensor *w = rand_weight (ws, wt, 2, W2 (2560, 320), 0.05f, error);
  IvkTensor *bias = w ? rand_weight (ws, wt, 1, W2 (2560, 1), 0.05f, error) : NULL;
  return bias ? ivk_linear (g, input (g, at, 3, 1, 1024, 320, 0), w, bias) : NULL;
}

static IvkTensor *
b_linear_ctx (IvkGraph *g, IvkWeightStore *ws, IvkDType at, IvkDType wt, GError **error)
{
  IvkTensor *w = rand_weight (ws, wt, 2, W2 (2560, 768), 0.03f, error);
  return w ? ivk_linear (g, input (g, at, 3, 2, 77, 768, 0), w, NULL) : NULL;
}

static IvkTensor *
b_conv3x3 (IvkGraph *g, IvkWeightStore *ws, IvkDType at, IvkDType wt, GError **error)
{
  IvkTensor *w = rand_weight (ws, wt, 4, W4 (320, 320, 3, 3), 0.02f, error);
  return w ? ivk_conv2d (g, input (g, at, 4, 1, 320, 64, 64), w, NULL, NULL) : NULL;
}

static IvkTensor *
b_conv3x3_1280_8 (IvkGraph *g, IvkWeightStore *ws, IvkDType at, IvkDType wt, GError **error)
{
  IvkTensor *w = rand_weight (ws, wt, 4, W4 (1280, 1280, 3, 3), 0.01f, error);
  return w ? ivk_conv2d (g, input (g, at, 4, 2, 1280, 8, 8), w, NULL, NULL) : NULL;
}

static IvkTensor *
b_conv3x3_1280_4 (IvkGraph *g, IvkWeightStore *ws, IvkDType at, IvkDType wt, GError **error)
{
  IvkTensor *w = rand_weight (ws, wt, 4, W4 (1280, 1280, 3, 3), 0.01f, error);
  return w ? ivk_conv2d (g, input (g, at, 4, 2, 1280, 4, 4), w, NULL, NULL) : NULL;
}

static IvkTensor *
b_conv3x3_640_16 (IvkGraph *g, IvkWeightStore *ws, IvkDType at, IvkDType wt, GError **error)
{
  IvkTensor *w = rand_weight (ws, wt, 4, W4 (640, 640, 3, 3), 0.02f, error);
  return w ? ivk_conv2d (g, input (g, at, 4, 2, 640, 16, 16), w, NULL, NULL) : NULL;
}

static IvkTensor *
b_conv3x3_up (IvkGraph *g, IvkWeightStore *ws, IvkDType at, IvkDType wt, GError **error)
{
  IvkTensor *w = rand_weight (ws, wt, 4, W4 (640, 640, 3, 3), 0.02f, error);
  IvkConvParams cp = { .stride = 1, .pad_top = 1, .pad_bottom = 1, .pad_left = 1, .pad_right = 1,
                       .upsample = TRUE };
  return w ? ivk_conv2d (g, input (g, at, 4, 2, 640, 16, 16), w, NULL, &cp) : NULL;
}

static IvkTensor *
b_conv1x1 (IvkGraph *g, IvkWeightStore *ws, IvkDType at, IvkDType wt, GError **error)
{
  IvkTensor *w = rand_weight (ws, wt, 4, W4 (320, 320, 1, 1), 0.05f, error);
  return w ? ivk_conv2d (g, input (g, at, 4, 1, 320, 64, 64), w, NULL, NULL) : NULL;
}

static IvkTensor *
b_attention_self (IvkGraph *g, IvkWeightStore *ws, IvkDType at, IvkDType wt, GError **error)
{
  IvkTensor *x = input (g, at, 3, 1, 4096, 320, 0);
  IvkAttentionParams p = { .heads = 8, .scale = 1.0f / sqrtf (40.0f) };
  return ivk_attention (g, x, x, x, &p);
}

static IvkTensor *
b_attention_self80 (IvkGraph *g, IvkWeightStore *ws, IvkDType at, IvkDType wt, GError **error)
{
  IvkTensor *x = input (g, at, 3, 2, 1024, 640, 0);
  IvkAttentionParams p = { .heads = 8, .scale = 1.0f / sqrtf (80.0f) };
  return ivk_attention (g, x, x, x, &p);
}

static IvkTensor *
b_attention_self160 (IvkGraph *g, IvkWeightStore *ws, IvkDType at, IvkDType wt, GError **error)
{
  IvkTensor *x = input (g, at, 3, 2, 256, 1280, 0);
  IvkAttentionParams p = { .heads = 8, .scale = 1.0f / sqrtf (160.0f) };
  return ivk_attention (g, x, x, x, &p);
}

static IvkTensor *
b_attention_cross (IvkGraph *g, IvkWeightStore *ws, IvkDType at, IvkDType wt, GError **error)
{
  IvkTensor *q = input (g, at, 3, 1, 4096, 320, 0);
  gint64 ks[3] = { 1, 77, 320 };
  IvkTensor *k = ivk_graph_input (g, "k", at, 3, ks);
  IvkAttentionParams p = { .heads = 8, .scale = 1.0f / sqrtf (40.0f) };
  return ivk_attention (g, q, k, k, &p);
}

static IvkTensor *
b_group_norm (IvkGraph *g, IvkWeightStore *ws, IvkDType at, IvkDType wt, GError **error)
{
  IvkTensor *gm = rand_weight (ws, wt, 1, W2 (320, 1), 1.0f, error);
  IvkTensor *bt = gm ? rand_weight (ws, wt, 1, W2 (320, 1), 1.0f, error) : NULL;
  return bt ? ivk_group_norm (g, input (g, at, 4, 1, 320, 64, 64), gm, bt, 32, 1e-5f, TRUE) : NULL;
}

static IvkTensor *
b_layer_norm (IvkGraph *g, IvkWeightStore *ws, IvkDType at, IvkDType wt, GError **error)
{
  IvkTensor *gm = rand_weight (ws, wt, 1, W2 (320, 1), 1.0f, error);
  IvkTensor *bt = gm ? rand_weight (ws, wt, 1, W2 (320, 1), 1.0f, error) : NULL;
  return bt ? ivk_layer_norm (g, input (g, at, 3, 1, 4096, 320, 0), gm, bt, 1e-5f) : NULL;
}

static IvkTensor *
b_softmax (IvkGraph *g, IvkWeightStore *ws, IvkDType at, IvkDType wt, GError **error)
{
  return ivk_softmax (g, input (g, at, 3, 8, 4096, 77, 0), 0.158f);
}

static IvkTensor *
b_geglu (IvkGraph *g, IvkWeightStore *ws, IvkDType at, IvkDType wt, GError **error)
{
  return ivk_geglu (g, input (g, at, 3, 1, 4096, 2560, 0));
}

static IvkTensor *
b_silu (IvkGraph *g, IvkWeightStore *ws, IvkDType at, IvkDType wt, GError **error)
{
  return ivk_silu (g, input (g, at, 4, 1, 320, 64, 64));
}

static IvkTensor *
b_add_bcast (IvkGraph *g, IvkWeightStore *ws, IvkDType at, IvkDType wt, GError **error)
{
  gint64 ts[4] = { 1, 320, 1, 1 };
  return ivk_add (g, input (g, at, 4, 1, 320, 64, 64), ivk_graph_input (g, "t", at, 4, ts));
}

static IvkTensor *
b_upsample (IvkGraph *g, IvkWeightStore *ws, IvkDType at, IvkDType wt, GError **error)
{
  return ivk_upsample_nearest2x (g, input (g, at, 4, 1, 640, 32, 32));
}

static IvkTensor *
b_permute (IvkGraph *g, IvkWeightStore *ws, IvkDType at, IvkDType wt, GError **error)
{
  static const int perm[4] = { 0, 2, 3, 1 };
  return ivk_permute (g, input (g, at, 4, 1, 320, 64, 64), perm);
}

static IvkTensor *
b_concat (IvkGraph *g, IvkWeightStore *ws, IvkDType at, IvkDType wt, GError **error)
{
  gint64 bs[4] = { 1, 320, 64, 64 };
  return ivk_concat (g, input (g, at, 4, 1, 320, 64, 64), ivk_graph_input (g, "b", at, 4, bs), 1);
}

#define F32 IVK_F32
#define F16 IVK_F16
static const OpCase op_cases[] = {
  { "matmul", "1024x1024 @ 1024x1024", F32, F32, b_matmul_nn_1024 },
  { "matmul", "1024x1024 @ 1024x1024", F16, F16, b_matmul_nn_1024 },
  { "linear", "1024x1024 @ [1024,1024]^T", F32, F32, b_linear_1024 },
  { "linear", "1024x1024 @ [1024,1024]^T", F16, F16, b_linear_1024 },
  { "linear", "4096x320 -> 320 (SD1.5 q/k/v at 512px)", F32, F32, b_linear_qkv },
  { "linear", "4096x320 -> 320 (SD1.5 q/k/v at 512px)", F16, F16, b_linear_qkv },
  { "linear", "1024x320 -> 2560 +bias (GEGLU proj)", F32, F32, b_linear_geglu },
  { "linear", "2x77x768 -> 2560 (context k/v, SD1.5 level 3)", F16, F16, b_linear_ctx },
  { "conv2d", "3x3 320->320 at 64x64", F32, F32, b_conv3x3 },
  { "conv2d", "3x3 320->320 at 64x64", F16, F16, b_conv3x3 },
  { "conv2d", "3x3 320->320 at 64x64", F32, F16, b_conv3x3 },
  { "conv2d", "1x1 320->320 at 64x64", F32, F32, b_conv1x1 },
  { "conv2d", "3x3 640->640 at 16x16, batch 2", F16, F16, b_conv3x3_640_16 },
  { "conv2d", "3x3 1280->1280 at 8x8, batch 2", F16, F16, b_conv3x3_1280_8 },
  { "conv2d", "3x3 1280->1280 at 4x4, batch 2", F16, F16, b_conv3x3_1280_4 },
  { "conv2d", "up2x + 3x3 640->640 16->32, batch 2", F16, F16, b_conv3x3_up },
  { "attention", "self 4096x4096, 8 heads x 40 (SD1.5 level 1)", F32, F32, b_attention_self },
  { "attention", "self 4096x4096, 8 heads x 40 (SD1.5 level 1)", F16, F16, b_attention_self },
  { "attention", "self 2x1024x1024, 8 heads x 80 (level 2)", F16, F16, b_attention_self80 },
  { "attention", "self 2x256x256, 8 heads x 160 (level 3)", F16, F16, b_attention_self160 },
  { "attention", "cross 4096x77, 8 heads x 40", F32, F32, b_attention_cross },
  { "attention", "cross 4096x77, 8 heads x 40", F16, F16, b_attention_cross },
  { "group_norm", "320ch/32 groups at 64x64 + silu", F32, F32, b_group_norm },
  { "group_norm", "320ch/32 groups at 64x64 + silu", F16, F16, b_group_norm },
  { "layer_norm", "4096x320", F32, F32, b_layer_norm },
  { "softmax", "8x4096x77", F32, F32, b_softmax },
  { "geglu", "4096x2560 -> 4096x1280", F32, F32, b_geglu },
  { "silu", "320x64x64", F32, F32, b_silu },
  { "add", "320x64x64 + 320x1x1", F32, F32, b_add_bcast },
  { "upsample", "640x32x32 -> 640x64x64", F32, F32, b_upsample },
  { "permute", "NCHW -> NHWC 320x64x64", F32, F32, b_permute },
  { "concat", "2 x 320x64x64 on channels", F32, F32, b_concat },
};

static int
cmp_double (gconstpointer a, gconstpointer b)
{
  double x = *(const double *) a, y = *(const double *) b;
  return x < y ? -1 : x > y;
}

double
bench_median (double *v, int n)
{
  qsort (v, n, sizeof *v, cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#define median bench_median

double
bench_cpu_ms (void)
{
  struct rusage ru;
  if (getrusage (RUSAGE_SELF, &ru) != 0)
    return 0;
  return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3
         + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

const char *
bench_load_average (void)
{
  static char buf[64];
  g_autofree char *s = NULL;
  double a, b, c;
  if (g_file_get_contents ("/proc/loadavg", &s, NULL, NULL) && sscanf (s, "%lf %lf %lf", &a, &b, &c) == 3)
    g_snprintf (buf, sizeof buf, "%.2f %.2f %.2f", a, b, c);
  else
    g_strlcpy (buf, "unknown", sizeof buf);
  return buf;
}

void
bench_say (BenchReport *r, const char *format, ...)
{
  if (!r->out)
    return;
  va_list ap;
  va_start (ap, format);
  vfprintf (r->out, format, ap);
  va_end (ap);
}

static gboolean
run_op_case (IvkContext *ctx, const OpCase *c, int runs, OpResult *res, GError **error)
{
  g_autoptr (IvkWeightStore) ws = ivk_weight_store_new (ctx);
  g_autoptr (IvkGraph) g = ivk_graph_new (ctx, c->name, IVK_GRAPH_PROFILE);
  IvkTensor *out = c->build (g, ws, c->act, c->w, error);
  if (!out)
    {
      if (error && !*error && ivk_graph_get_error (g))
        g_propagate_error (error, g_error_copy (ivk_graph_get_error (g)));
      else if (error && !*error)
        g_set_error (error, IVK_ERROR, IVK_ERROR_FAILED, "building the graph failed");
      return FALSE;
    }
  ivk_graph_output (g, out, "out");
  if (!ivk_graph_compile (g, error))
    return FALSE;
  IvkGraphStats st;
  ivk_graph_get_stats (g, &st);
  /* inputs hold whatever the memory had: timing does not depend on values,
   * except NaN handling, which the kernels do not branch on */
  gint64 t0 = g_get_monotonic_time ();
  if (!ivk_graph_run (g, error))
    return FALSE;
  res->first_ms = (g_get_monotonic_time () - t0) / 1000.0;
  g_autofree double *gpu = g_new (double, runs);
  g_autofree double *wall = g_new (double, runs);
  g_autofree double *cpu = g_new (double, runs);
  double bytes = 0;
  for (int r = 0; r < runs; r++)
    {
      t0 = g_get_monotonic_time ();
      double c0 = bench_cpu_ms ();
      if (!ivk_graph_run (g, error))
        return FALSE;
      wall[r] = (g_get_monotonic_time () - t0) / 1000.0;
      cpu[r] = bench_cpu_ms () - c0;
      GArray *prof = ivk_graph_get_profile (g);
      gpu[r] = 0;
      bytes = 0;
      for (guint i = 0; i < prof->len; i++)
        {
          const IvkNodeProfile *p = &g_array_index (prof, IvkNodeProfile, i);
          gpu[r] += p->ms;
          bytes += p->bytes;
        }
      if (prof->len == 0)
        gpu[r] = wall[r];
    }
  res->gpu_ms = median (gpu, runs);
  res->wall_ms = median (wall, runs);
  res->cpu_ms = median (cpu, runs);
  res->flops = st.flops;
  res->bytes = bytes;
  return TRUE;
}

/* The reference point: C = A B with the textbook i-k-j loop (the inner loop is
 * contiguous, so the compiler vectorises it), single-threaded. */
static double
cpu_gemm_ms (int n, int runs)
{
  g_autofree float *a = g_new (float, (gsize) n * n);
  g_autofree float *b = g_new (float, (gsize) n * n);
  g_autofree float *c = g_new (float, (gsize) n * n);
  for (gsize i = 0; i < (gsize) n * n; i++)
    {
      a[i] = (float) (i % 7) * 0.1f;
      b[i] = (float) (i % 5) * 0.1f;
    }
  g_autofree double *t = g_new (double, runs);
  for (int r = 0; r < runs; r++)
    {
      gint64 t0 = g_get_monotonic_time ();
      memset (c, 0, sizeof (float) * n * n);
      for (int i = 0; i < n; i++)
        for (int k = 0; k < n; k++)
          {
            float av = a[(gsize) i * n + k];
            const float *brow = b + (gsize) k * n;
            float *crow = c + (gsize) i * n;
            for (int j = 0; j < n; j++)
              crow[j] += av * brow[j];
          }
      t[r] = (g_get_monotonic_time () - t0) / 1000.0;
    }
  volatile float sink = c[n + 1];
  (void) sink;
  return median (t, runs);
}

static void
json_add (JsonObject *o, const char *name, double v)
{
  json_object_set_double_member (o, name, isfinite (v) ? v : 0.0);
}

static gboolean
bench_ops (BenchReport *rep, GError **error)
{
  const BenchOptions *opt = rep->opt;
  const IvkDeviceInfo *info = ivk_context_get_info (rep->ctx);
  bench_say (rep, "median of %d runs; GPU time from timestamps, wall time per submit; 'first' is the "
                  "first run (pipeline JIT on lavapipe)\n\n", opt->runs);
  bench_say (rep, "%-11s %-45s %-7s %9s %9s %8s %8s %9s %8s\n", "op", "shape", "prec", "GFLOP/s", "GB/s",
             "gpu ms", "wall ms", "first ms", "cpu ms");
  int failures = 0;
  for (gsize i = 0; i < G_N_ELEMENTS (op_cases); i++)
    {
      const OpCase *c = &op_cases[i];
      char prec[16];
      g_snprintf (prec, sizeof prec, "%s", c->act == c->w ? ivk_dtype_name (c->act)
                                           : c->act == IVK_F32 ? "a32w16" : "?");
      g_autofree char *full = g_strdup_printf ("%s %s %s", c->name, c->shape, prec);
      if (opt->filter && !strstr (full, opt->filter))
        continue;
      if ((c->act == IVK_F16 || c->w == IVK_F16) && !info->fp16_storage)
        continue;
      OpResult r = { 0 };
      g_autoptr (GError) e = NULL;
      if (!run_op_case (rep->ctx, c, opt->runs, &r, &e))
        {
          fprintf (stderr, "impasto bench: %s: %s\n", full, e->message);
          failures++;
          continue;
        }
      double gflops = r.flops / (r.gpu_ms * 1e6);
      double gbps = r.bytes / (r.gpu_ms * 1e6);
      bench_say (rep, "%-11s %-45s %-7s %9.2f %9.2f %8.2f %8.2f %9.1f %8.1f\n", c->name, c->shape, prec,
                 gflops, gbps, r.gpu_ms, r.wall_ms, r.first_ms, r.cpu_ms);
      if (rep->out)
        fflush (rep->out);
      JsonObject *o = json_object_new ();
      json_object_set_string_member (o, "target", "op");
      json_object_set_string_member (o, "op", c->name);
      json_object_set_string_member (o, "shape", c->shape);
      json_object_set_string_member (o, "precision", prec);
      json_add (o, "gflops", gflops);
      json_add (o, "gbps", gbps);
      json_add (o, "gpu_ms", r.gpu_ms);
      json_add (o, "wall_ms", r.wall_ms);
      json_add (o, "first_ms", r.first_ms);
      json_add (o, "cpu_ms", r.cpu_ms);
      json_array_add_object_element (rep->results, o);
    }
  if (!opt->filter || strstr ("cpu gemm", opt->filter))
    {
      const int n = 1024;
      double ms = cpu_gemm_ms (n, MAX (1, MIN (opt->runs, 3)));
      double gflops = 2.0 * n * n * n / (ms * 1e6);
      bench_say (rep, "%-11s %-45s %-7s %9.2f %9s %8.2f %8s %9s\n", "cpu-gemm",
                 "1024^3 naive i-k-j, 1 thread (reference)", "f32", gflops, "-", ms, "-", "-");
      JsonObject *o = json_object_new ();
      json_object_set_string_member (o, "target", "cpu_gemm");
      json_object_set_int_member (o, "n", n);
      json_add (o, "gflops", gflops);
      json_add (o, "ms", ms);
      json_array_add_object_element (rep->results, o);
    }
  if (failures)
    g_set_error (error, IVK_ERROR, IVK_ERROR_FAILED, "%d op case%s failed", failures, failures > 1 ? "s" : "");
  return failures == 0;
}

/* ---- the device's best GEMM ------------------------------------------------ */

typedef struct
{
  gint64 m, k, n;
} GemmShape;

/* Linear layers of the shapes SD runs most (tokens x channels), large enough
 * that launch costs vanish: the figure the networks' GFLOP/s are held against. */
static const GemmShape gemm_shapes[] = {
  { 2048, 640, 640 },
  { 2048, 1280, 1280 },
  { 4096, 320, 1280 },
};

static gboolean
gemm_case (IvkContext *ctx, const GemmShape *gs, IvkDType dt, int runs, double *gflops, GError **error)
{
  g_autoptr (IvkWeightStore) ws = ivk_weight_store_new (ctx);
  g_autoptr (IvkGraph) g = ivk_graph_new (ctx, "best-gemm", IVK_GRAPH_PROFILE);
  gint64 wshape[2] = { gs->n, gs->k };
  IvkTensor *w = rand_weight (ws, dt, 2, wshape, 0.05f, error);
  if (!w)
    return FALSE;
  gint64 xs[2] = { gs->m, gs->k };
  IvkTensor *out = ivk_linear (g, ivk_graph_input (g, "x", dt, 2, xs), w, NULL);
  ivk_graph_output (g, out, "out");
  if (!ivk_graph_compile (g, error) || !ivk_graph_run (g, error))
    return FALSE;
  g_autofree double *t = g_new (double, runs);
  for (int r = 0; r < runs; r++)
    {
      if (!ivk_graph_run (g, error))
        return FALSE;
      GArray *prof = ivk_graph_get_profile (g);
      t[r] = 0;
      for (guint i = 0; i < prof->len; i++)
        t[r] += g_array_index (prof, IvkNodeProfile, i).ms;
    }
  double ms = median (t, runs);
  *gflops = ms > 0 ? 2.0 * gs->m * gs->k * gs->n / (ms * 1e6) : 0;
  return TRUE;
}

double
bench_best_gemm (BenchReport *r, IvkDType dt, GError **error)
{
  if (r->best_gemm_gflops > 0 && r->best_gemm_dtype == dt)
    return r->best_gemm_gflops;
  double best = 0;
  char shape[96] = "";
  JsonArray *ja = json_array_new ();
  for (gsize i = 0; i < G_N_ELEMENTS (gemm_shapes); i++)
    {
      const GemmShape *gs = &gemm_shapes[i];
      double gf = 0;
      if (!gemm_case (r->ctx, gs, dt, MAX (3, MIN (r->opt->runs, 5)), &gf, error))
        {
          json_array_unref (ja);
          return 0;
        }
      JsonObject *o = json_object_new ();
      json_object_set_int_member (o, "m", gs->m);
      json_object_set_int_member (o, "k", gs->k);
      json_object_set_int_member (o, "n", gs->n);
      json_add (o, "gflops", gf);
      json_array_add_object_element (ja, o);
      if (gf > best)
        {
          best = gf;
          g_snprintf (shape, sizeof shape, "%" G_GINT64_FORMAT "x%" G_GINT64_FORMAT " @ [%" G_GINT64_FORMAT
                      ",%" G_GINT64_FORMAT "]^T %s", gs->m, gs->k, gs->n, gs->k, ivk_dtype_name (dt));
        }
    }
  r->best_gemm_gflops = best;
  r->best_gemm_dtype = dt;
  g_strlcpy (r->best_gemm_shape, shape, sizeof r->best_gemm_shape);
  bench_say (r, "best GEMM of this device in this run: %.2f GFLOP/s (%s; median GPU time of %d runs; load average %s)\n",
             best, shape, MAX (3, MIN (r->opt->runs, 5)), bench_load_average ());
  JsonObject *o = json_object_new ();
  json_object_set_string_member (o, "target", "best_gemm");
  json_object_set_string_member (o, "precision", ivk_dtype_name (dt));
  json_add (o, "gflops", best);
  json_object_set_string_member (o, "shape", shape);
  json_object_set_array_member (o, "cases", ja);
  json_object_set_string_member (o, "load_average", bench_load_average ());
  json_array_add_object_element (r->results, o);
  return best;
}

/* ---- targets ------------------------------------------------------------- */

typedef struct
{
  const char *name;
  const char *summary;
  gboolean (*run) (BenchReport *r, GError **error);
} BenchTarget;

/* One row per target. */
static const BenchTarget bench_targets[] = {
  { "ops", "every op at SD shapes: GFLOP/s, GB/s (plus a CPU GEMM for scale)", bench_ops },
  { "text", "text encoding of a prompt and a negative prompt (full-size model)", bench_text },
  { "unet", "one UNet call (default batch 2, the CFG pair) at 256 and 512 (SDXL: 1024)", bench_unet },
  { "vae", "VAE decode (default 512x512)", bench_vae },
  { "load", "model load, cold (file dropped from the page cache) and warm", bench_load },
  { "all", "load, text, unet 256 and 512, vae 512; SDXL 1024 where the device has the memory", bench_all },
};

static void
usage (FILE *out)
{
  fprintf (out, "Usage: impasto bench TARGET [OPTIONS]\n\nTargets:\n");
  for (gsize i = 0; i < G_N_ELEMENTS (bench_targets); i++)
    fprintf (out, "  %-6s %s\n", bench_targets[i].name, bench_targets[i].summary);
  fprintf (out, "\nOptions:\n"
                "  --model M      sd15 or sdxl (random-weight full-size models built once from the\n"
                "                 shape tables and cached under $XDG_CACHE_HOME/impasto/bench/), or a\n"
                "                 checkpoint path (default sd15)\n"
                "  --size N       image side in pixels (unet default 256 and 512, SDXL 1024; vae 512)\n"
                "  --batch N      batch (unet default 2: the CFG pair; vae 1)\n"
                "  --runs N       timed runs per measurement (median reported; default 5, nets 3);\n"
                "                 0: the first call alone, profiled (for very slow calls)\n"
                "  --json [FILE]  write the figures as JSON to FILE (alone: to stdout, no tables)\n"
                "  --fp32         no fp16 storage even where the device has it\n"
                "  --no-profile   skip the extra run with per-dispatch timestamps\n"
                "  --shapes DIR   where the shape tables are (default the golden data's shapes/;\n"
                "                 also IMPASTO_BENCH_SHAPES)\n"
                "  --filter TEXT  ops: only cases whose description contains TEXT\n"
                "\nEnvironment: IMPASTO_DEVICE, IMPASTO_NO_FP16, IMPASTO_NO_TEXEL, "
                "IMPASTO_GEMM_TILES=wx,wy,tm,tn\n");
}

static gboolean
parse_int (const char *opt, const char *s, int lo, int hi, int *out)
{
  char *end = NULL;
  gint64 v = g_ascii_strtoll (s, &end, 10);
  if (!end || *end || v < lo || v > hi)
    {
      fprintf (stderr, "impasto bench: %s wants a number from %d to %d\n", opt, lo, hi);
      return FALSE;
    }
  *out = (int) v;
  return TRUE;
}

int
cmd_bench (int argc, char **argv)
{
  if (argc < 2 || strcmp (argv[1], "--help") == 0 || strcmp (argv[1], "-h") == 0)
    {
      usage (argc < 2 ? stderr : stdout);
      return argc < 2 ? IMP_EXIT_USAGE : IMP_EXIT_OK;
    }
  const BenchTarget *target = NULL;
  for (gsize i = 0; i < G_N_ELEMENTS (bench_targets); i++)
    if (strcmp (argv[1], bench_targets[i].name) == 0)
      target = &bench_targets[i];
  if (!target)
    {
      fprintf (stderr, "impasto bench: unknown target '%s'\n\n", argv[1]);
      usage (stderr);
      return IMP_EXIT_USAGE;
    }
  BenchOptions opt = { .runs = target->run == bench_ops ? 5 : 3 };
  for (int i = 2; i < argc; i++)
    {
      const char *a = argv[i];
      gboolean has_val = i + 1 < argc;
      if (strcmp (a, "--json") == 0)
        {
          if (has_val && strncmp (argv[i + 1], "--", 2) != 0 && strcmp (argv[i + 1], "-") != 0)
            opt.json_file = argv[++i];
          else
            {
              if (has_val && strcmp (argv[i + 1], "-") == 0)
                i++;
              opt.json_stdout = TRUE;
            }
        }
      else if (strcmp (a, "--runs") == 0 && has_val)
        {
          if (!parse_int (a, argv[++i], 0, 1000, &opt.runs))
            return IMP_EXIT_USAGE;
        }
      else if (strcmp (a, "--size") == 0 && has_val)
        {
          if (!parse_int (a, argv[++i], 64, 8192, &opt.size))
            return IMP_EXIT_USAGE;
        }
      else if (strcmp (a, "--batch") == 0 && has_val)
        {
          if (!parse_int (a, argv[++i], 1, 64, &opt.batch))
            return IMP_EXIT_USAGE;
        }
      else if (strcmp (a, "--filter") == 0 && has_val)
        opt.filter = argv[++i];
      else if (strcmp (a, "--model") == 0 && has_val)
        opt.model = argv[++i];
      else if (strcmp (a, "--shapes") == 0 && has_val)
        opt.shapes_dir = argv[++i];
      else if (strcmp (a, "--fp32") == 0)
        opt.fp32 = TRUE;
      else if (strcmp (a, "--no-profile") == 0)
        opt.no_profile = TRUE;
      else
        {
          fprintf (stderr, "impasto bench %s: unknown option '%s'\n", target->name, a);
          return IMP_EXIT_USAGE;
        }
    }

  /* only the network measurements know a run of 0 (the first call alone) */
  if (opt.runs == 0 && (target->run == bench_ops || target->run == bench_load))
    opt.runs = 1;

  g_autoptr (GError) error = NULL;
  g_autoptr (IvkContext) ctx = ivk_context_new (NULL, &error);
  if (!ctx)
    {
      fprintf (stderr, "impasto bench: %s\n", error->message);
      return IMP_EXIT_FAILURE;
    }
  const IvkDeviceInfo *info = ivk_context_get_info (ctx);
  BenchReport rep = {
    .opt = &opt,
    .ctx = ctx,
    .results = json_array_new (),
    .out = opt.json_stdout ? NULL : stdout,
  };
  char load_start[64];
  g_strlcpy (load_start, bench_load_average (), sizeof load_start);
  bench_say (&rep, "device: %s (%s)%s%s; %u CPUs; load average %s\n", info->name, info->driver,
             info->texel_buffers ? "" : ", texel buffers off", info->use_fp16 ? "" : ", no fp16",
             g_get_num_processors (), load_start);
  gint64 t0 = g_get_monotonic_time ();
  gboolean ok = target->run (&rep, &error);
  double total_s = (g_get_monotonic_time () - t0) / 1e6;
  if (!ok)
    fprintf (stderr, "impasto bench %s: %s\n", target->name, error ? error->message : "failed");

  if (opt.json_stdout || opt.json_file)
    {
      JsonObject *root = json_object_new ();
      json_object_set_string_member (root, "impasto_version", IMPASTO_VERSION);
      json_object_set_string_member (root, "target", target->name);
      JsonObject *dev = json_object_new ();
      json_object_set_string_member (dev, "name", info->name);
      json_object_set_string_member (dev, "driver", info->driver);
      json_object_set_boolean_member (dev, "is_cpu", info->is_cpu);
      json_object_set_boolean_member (dev, "fp16", info->use_fp16);
      json_object_set_boolean_member (dev, "texel_buffers", info->texel_buffers);
      json_object_set_boolean_member (dev, "cooperative_matrix", info->coopmat);
      json_object_set_int_member (dev, "device_local_bytes", (gint64) info->device_local_bytes);
      json_object_set_int_member (dev, "max_storage_buffer_range", (gint64) info->max_storage_buffer_range);
      json_object_set_object_member (root, "device", dev);
      json_object_set_int_member (root, "cpus", g_get_num_processors ());
      json_object_set_string_member (root, "load_average_start", load_start);
      json_object_set_string_member (root, "load_average_end", bench_load_average ());
      json_object_set_int_member (root, "runs", opt.runs);
      json_object_set_double_member (root, "total_seconds", total_s);
      json_object_set_boolean_member (root, "ok", ok);
      if (!ok && error)
        json_object_set_string_member (root, "error", error->message);
      json_object_set_array_member (root, "results", rep.results);
      g_autoptr (JsonNode) node = json_node_new (JSON_NODE_OBJECT);
      json_node_take_object (node, root);
      g_autoptr (JsonGenerator) gen = json_generator_new ();
      json_generator_set_root (gen, node);
      json_generator_set_pretty (gen, TRUE);
      if (opt.json_file)
        {
          g_autoptr (GError) e = NULL;
          if (!json_generator_to_file (gen, opt.json_file, &e))
            {
              fprintf (stderr, "impasto bench: %s\n", e->message);
              return IMP_EXIT_FAILURE;
            }
          bench_say (&rep, "\nwrote %s\n", opt.json_file);
        }
      else
        {
          g_autofree char *str = json_generator_to_data (gen, NULL);
          printf ("%s\n", str);
        }
    }
  else
    json_array_unref (rep.results);
  if (!ok && error && error->domain == SD_ERROR
      && (error->code == SD_ERROR_INVALID_ARG))
    return IMP_EXIT_USAGE;
  return ok ? IMP_EXIT_OK : IMP_EXIT_FAILURE;
}
