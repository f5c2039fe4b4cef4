/* test-ops.c: every Vulkan op against the CPU reference (tests/reference).
 *
 * Each case builds a one-op graph with guard words after every tensor
 * (IVK_GRAPH_GUARDS), fills its inputs with seeded random data, runs it and
 * compares with the reference by max|err| / rms(ref). Precisions:
 *   f32     activations and weights f32
 *   f16     activations and weights f16 (a16_w16), fp32 arithmetic
 *   a32w16  f32 activations, f16 weights (ops with weights only)
 * For f16 operands the reference is computed from the same f16-rounded
 * inputs, and its output is rounded to f16 when the op's output is f16, so
 * the tolerance measures the kernel, not input rounding. NaN/Inf cases check
 * that non-finite values land exactly where PyTorch puts them.
 *
 * Environment: IMPASTO_VALIDATION=1 runs everything under the Khronos
 * validation layer and fails a case on any validation message;
 * IMPASTO_TEST_SEED=N changes every case's seed. Without a Vulkan device every
 * case skips with the reason.
 */
#define _GNU_SOURCE /* dl_iterate_phdr, RTLD_NODELETE */
#include "config.h"

#include <dlfcn.h>
#include <link.h>
#include <math.h>
#include <string.h>

#include "ivk-half.h"
#include "ivk-ops.h"
#include "ivk-private.h"
#include "reference.h"
#include "test-util.h"

static IvkContext *ctx;
static char *no_ctx_reason;
static guint64 seed_salt;

typedef enum
{
  P_F32,
  P_F16,
  P_MIXED,
} Prec;

static const char *const prec_names[] = { "f32", "f16", "a32w16" };

static IvkDType
act_dtype (Prec p)
{
  return p == P_F16 ? IVK_F16 : IVK_F32;
}

static IvkDType
w_dtype (Prec p)
{
  return p == P_F32 ? IVK_F32 : IVK_F16;
}

/* ---- case bookkeeping -------------------------------------------------------- */

/* Common head of every case struct. */
typedef struct
{
  char *path;
  Prec prec;
  guint64 seed;
  double tol;
  gboolean special; /* NaN/Inf parity variant */
} Head;

static void
case_free (gpointer data)
{
  Head *h = data;
  g_free (h->path);
  g_free (h);
}

static guint64
seed_for (const char *path)
{
  /* stable across runs and machines; IMPASTO_TEST_SEED varies all of them */
  guint64 h = 1469598103934665603ull;
  for (const char *p = path; *p; p++)
    h = (h ^ (guchar) *p) * 1099511628211ull;
  return (h ^ seed_salt) & 0xffffffffull;
}


/* Register `c` (a struct starting with Head, allocated with g_malloc0) under
 * /ops/<op>/<prec>/<shape>. */
static void
add_case (Head *c, const char *op, Prec prec, const char *shape, double tol, GTestDataFunc fn)
{
  /* IMPASTO_TEST_ONLY=matmul,linear,...: register only these op families (the
   * IMPASTO_NO_TEXEL=1 run covers just the ops that have a texel kernel) */
  const char *only = g_getenv ("IMPASTO_TEST_ONLY");
  if (only && *only)
    {
      g_auto (GStrv) ops = g_strsplit (only, ",", -1);
      g_autofree char *family = g_strdup (op);
      char *slash = strchr (family, '/');
      if (slash)
        *slash = '\0';
      if (!g_strv_contains ((const char *const *) ops, family))
        {
          case_free (c);
          return;
        }
    }
  c->prec = prec;
  c->tol = tol;
  c->path = g_strdup_printf ("/ops/%s/%s/%s", op, prec_names[prec], shape);
  c->seed = seed_for (c->path);
  g_test_add_data_func_full (c->path, c, fn, case_free);
}

static gboolean
require_device (const Head *h)
{
  if (!ctx)
    {
      g_test_skip (no_ctx_reason);
      return FALSE;
    }
  if (h && h->prec != P_F32 && !ivk_context_get_info (ctx)->fp16_storage)
    {
      g_test_skip ("the Vulkan device has no 16-bit storage buffer access (fp16 variants)");
      return FALSE;
    }
  return TRUE;
}

/* ---- host data ------------------------------------------------------------------ */

/* Seeded random floats in [lo, hi), rounded to f16 when `dtype` is f16 (so the
 * reference sees exactly what the GPU sees). Each call advances *seed. */
static float *
rand_data (gsize n, guint64 *seed, float lo, float hi, IvkDType dtype)
{
  float *d = g_new (float, MAX (n, 1));
  test_fill_random (d, n, (*seed)++, lo, hi);
  if (dtype == IVK_F16)
    ref_round_f16_array (d, n);
  return d;
}

/* ---- one-op graphs ------------------------------------------------------------- */

typedef struct
{
  IvkTensor *t;
  const float *data;
} Upload;

typedef struct
{
  const Head *head;
  IvkGraph *g;
  IvkWeightStore *ws;
  GArray *uploads;
  GPtrArray *owned; /* host arrays freed with the run */
  const char *what; /* shape description for messages */
} Run;

static void
run_init (Run *r, const Head *head, const char *what)
{
  memset (r, 0, sizeof *r);
  r->head = head;
  r->what = what;
  r->g = ivk_graph_new (ctx, head->path, IVK_GRAPH_GUARDS);
  r->ws = ivk_weight_store_new (ctx);
  r->uploads = g_array_new (FALSE, FALSE, sizeof (Upload));
  r->owned = g_ptr_array_new_with_free_func (g_free);
}

static void
run_clear (Run *r)
{
  ivk_graph_free (r->g);
  ivk_weight_store_free (r->ws);
  g_array_free (r->uploads, TRUE);
  g_ptr_array_free (r->owned, TRUE);
}

/* Keep `p` alive until run_clear. */
static gpointer
run_own (Run *r, gpointer p)
{
  g_ptr_array_add (r->owned, p);
  return p;
}

/* A graph input of `dtype` with host data written after compile. */
static IvkTensor *
run_input (Run *r, const char *name, IvkDType dtype, int ndim, const gint64 *shape,
           const float *data)
{
  IvkTensor *t = ivk_graph_input (r->g, name, dtype, ndim, shape);
  Upload u = { t, data };
  if (t)
    g_array_append_val (r->uploads, u);
  return t;
}

/* A persistent (weight-store) tensor holding `data` in `dtype`. */
static IvkTensor *
run_weight (Run *r, const char *name, IvkDType dtype, int ndim, const gint64 *shape,
            const float *data)
{
  gint64 n = 1;
  for (int i = 0; i < ndim; i++)
    n *= shape[i];
  g_autofree guint16 *half = NULL;
  const void *raw = data;
  if (dtype == IVK_F16)
    {
      half = g_new (guint16, n);
      for (gint64 i = 0; i < n; i++)
        half[i] = ivk_f32_to_f16 (data[i]);
      raw = half;
    }
  g_autoptr (GError) error = NULL;
  IvkTensor *t = ivk_weight_store_add (r->ws, name, dtype, ndim, shape, raw, &error);
  g_assert_no_error (error);
  return t;
}

static void
fail_case (const Run *r, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static void
fail_case (const Run *r, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_test_fail_printf ("%s [%s, seed %" G_GUINT64_FORMAT "]: %s", r->head->path, r->what,
                      r->head->seed, msg);
}

/* Mark outputs, compile, upload, run, check guards and validation messages,
 * and read each output back as f32. */
static gboolean
run_exec_n (Run *r, guint n_out, IvkTensor **outs, float **hosts)
{
  g_autoptr (GError) error = NULL;
  guint validation_before = ivk_context_get_validation_messages (ctx);
  for (guint i = 0; i < n_out; i++)
    outs[i] = ivk_graph_output (r->g, outs[i], "out");
  if (!ivk_graph_compile (r->g, &error))
    {
      fail_case (r, "compile: %s", error->message);
      return FALSE;
    }
  for (guint i = 0; i < r->uploads->len; i++)
    {
      Upload *u = &g_array_index (r->uploads, Upload, i);
      if (!ivk_tensor_write_f32 (u->t, u->data, u->t->n_elements, &error))
        {
          fail_case (r, "upload: %s", error->message);
          return FALSE;
        }
    }
  if (!ivk_graph_run (r->g, &error) || !ivk_graph_check_guards (r->g, &error))
    {
      fail_case (r, "%s", error->message);
      return FALSE;
    }
  for (guint i = 0; i < n_out; i++)
    if (!ivk_tensor_read_f32 (outs[i], hosts[i], outs[i]->n_elements, &error))
      {
        fail_case (r, "readback: %s", error->message);
        return FALSE;
      }
  guint validation = ivk_context_get_validation_messages (ctx) - validation_before;
  if (validation > 0)
    {
      fail_case (r, "%u Vulkan validation message(s), see the log", validation);
      return FALSE;
    }
  return TRUE;
}

static gboolean
run_exec (Run *r, IvkTensor *out, float *host)
{
  if (!out)
    {
      const GError *e = ivk_graph_get_error (r->g);
      fail_case (r, "building the graph: %s", e ? e->message : "op returned NULL");
      return FALSE;
    }
  return run_exec_n (r, 1, &out, &host);
}

/* ---- comparison ------------------------------------------------------------- */

static int
fp_class (float v)
{
  return isnan (v) ? 1 : isinf (v) ? (v > 0 ? 2 : 3) : 0;
}

/* NaN/Inf parity (exact positions and kinds), then max|err|/rms over the
 * finite entries against `tol`. Reports the worst element on failure. */
static void
check_close (const Run *r, const float *got, const float *want, gsize n, double tol)
{
  double max_err = 0.0, sum_sq = 0.0;
  gsize worst = 0, n_finite = 0;
  for (gsize i = 0; i < n; i++)
    {
      if (fp_class (got[i]) != fp_class (want[i]))
        {
          fail_case (r, "element %" G_GSIZE_FORMAT ": got %g, want %g (NaN/Inf parity)", i,
                     got[i], want[i]);
          return;
        }
      if (!isfinite (want[i]))
        continue;
      double d = fabs ((double) got[i] - want[i]);
      if (d > max_err || (isnan (d) && !isnan (max_err)))
        {
          max_err = d;
          worst = i;
        }
      sum_sq += (double) want[i] * want[i];
      n_finite++;
    }
  double rms = n_finite ? sqrt (sum_sq / n_finite) : 0.0;
  double err = rms > 0 ? max_err / rms : (max_err > 0 ? INFINITY : 0.0);
  g_test_message ("%s: max|err|/rms = %.3g (tol %.3g), %" G_GSIZE_FORMAT " elements", r->what,
                  err, tol, n);
  if (!(err <= tol))
    fail_case (r, "max|err|/rms = %.3g > tol %.3g at element %" G_GSIZE_FORMAT " (got %.7g, want %.7g)",
               err, tol, worst, got[worst], want[worst]);
}

/* Round the reference output when the GPU output is f16 (overflow to inf
 * included), then compare. */
static void
check_out (const Run *r, IvkDType out_dtype, const float *got, float *want, gsize n, double tol)
{
  if (out_dtype == IVK_F16)
    ref_round_f16_array (want, n);
  check_close (r, got, want, n, tol);
}

/* Default tolerances: f32 kernels agree with the double reference to a few
 * fp32 ulps times the accumulation length; f16 outputs add half an f16 ulp of
 * the largest output (2^-11 * max/rms, ~3e-3 for data with max/rms ~ 4). */
static double
tol_for (Prec p, double f32_tol)
{
  return p == P_F16 ? MAX (5e-3, f32_tol) : f32_tol;
}

/* ================================================================================
 * GEMM
 * ================================================================================ */

enum
{
  MM_TRANS_B = 1 << 0,
  MM_BIAS = 1 << 1,
  MM_RES = 1 << 2,
  MM_B_BATCHED = 1 << 3, /* b has the batch dim too (an activation, e.g. attention scores @ v) */
  MM_LINEAR = 1 << 4,    /* through ivk_linear */
};

typedef struct
{
  Head h;
  int ndim_a;
  gint64 lead[2]; /* leading (batch) dims of a */
  int m, n, k;
  guint flags;
  float alpha;
} MatmulCase;

static void
test_matmul (gconstpointer data)
{
  const MatmulCase *c = data;
  if (!require_device (&c->h))
    return;
  guint64 seed = c->h.seed;
  IvkDType at = act_dtype (c->h.prec), wt = w_dtype (c->h.prec);
  gint64 batch = 1;
  gint64 ashape[4];
  int nlead = c->ndim_a - 2;
  for (int i = 0; i < nlead; i++)
    {
      ashape[i] = c->lead[i];
      batch *= c->lead[i];
    }
  ashape[nlead] = c->m;
  ashape[nlead + 1] = c->k;
  gboolean tb = (c->flags & MM_TRANS_B) != 0, bb = (c->flags & MM_B_BATCHED) != 0;
  gsize na = batch * c->m * c->k, nb = (bb ? batch : 1) * c->k * c->n, no = batch * c->m * c->n;
  g_autofree char *what = g_strdup_printf ("batch %" G_GINT64_FORMAT " M %d N %d K %d%s%s%s alpha %g",
                                           batch, c->m, c->n, c->k, tb ? " trans_b" : "",
                                           c->flags & MM_BIAS ? " bias" : "",
                                           c->flags & MM_RES ? " residual" : "", c->alpha);
  Run r;
  run_init (&r, &c->h, what);
  float *a = run_own (&r, rand_data (na, &seed, -1, 1, at));
  /* a batched b is an activation; a shared 2-D b is a weight */
  IvkDType bt = wt;
  float *b = run_own (&r, rand_data (nb, &seed, -1, 1, bt));
  float *bias = c->flags & MM_BIAS ? run_own (&r, rand_data (c->n, &seed, -1, 1, wt)) : NULL;
  float *res = c->flags & MM_RES ? run_own (&r, rand_data (no, &seed, -1, 1, at)) : NULL;
  if (c->h.special)
    {
      /* a NaN in row 1 of a; +inf in column 2 of b; row 1 and column 2 are
       * then NaN/inf as in torch.matmul */
      a[1 * c->k + 3] = NAN;
      if (tb)
        b[2 * c->k + 5] = INFINITY;
      else
        b[5 * c->n + 2] = INFINITY;
    }
  IvkTensor *ta = run_input (&r, "a", at, c->ndim_a, ashape, a);
  IvkTensor *tbt;
  gint64 bshape[3];
  if (bb)
    {
      bshape[0] = batch;
      bshape[1] = tb ? c->n : c->k;
      bshape[2] = tb ? c->k : c->n;
      gint64 a3[3] = { batch, c->m, c->k };
      ta = ivk_reshape (r.g, ta, 3, a3);
      tbt = run_input (&r, "b", bt, 3, bshape, b);
    }
  else
    {
      bshape[0] = tb ? c->n : c->k;
      bshape[1] = tb ? c->k : c->n;
      tbt = run_weight (&r, "b", bt, 2, bshape, b);
    }
  gint64 nshape[1] = { c->n };
  IvkTensor *tbias = bias ? run_weight (&r, "bias", wt, 1, nshape, bias) : NULL;
  IvkTensor *tres = NULL;
  if (res)
    {
      gint64 oshape[4];
      memcpy (oshape, ashape, sizeof oshape);
      oshape[nlead + 1] = c->n;
      tres = run_input (&r, "residual", at, c->ndim_a, oshape, res);
      if (bb)
        {
          gint64 o3[3] = { batch, c->m, c->n };
          tres = ivk_reshape (r.g, tres, 3, o3);
        }
    }
  IvkTensor *out;
  if (c->flags & MM_LINEAR)
    out = ivk_linear (r.g, ta, tbt, tbias);
  else
    out = ivk_matmul (r.g, ta, tbt, tbias, tres, c->alpha, tb ? IVK_MATMUL_TRANS_B : 0);
  g_autofree float *got = g_new (float, no);
  g_autofree float *want = g_new (float, no);
  if (run_exec (&r, out, got))
    {
      if (c->flags & MM_LINEAR)
        ref_linear (a, b, bias, want, batch * c->m, c->k, c->n);
      else
        ref_matmul (a, b, bias, res, want, batch, c->m, c->n, c->k, bb, tb, c->alpha);
      check_out (&r, at, got, want, no, c->h.tol);
    }
  run_clear (&r);
}

static void
add_matmul (Prec p, int ndim_a, gint64 l0, gint64 l1, int m, int n, int k, guint flags,
            float alpha, gboolean special)
{
  MatmulCase *c = g_new0 (MatmulCase, 1);
  c->ndim_a = ndim_a;
  c->lead[0] = l0;
  c->lead[1] = l1;
  c->m = m;
  c->n = n;
  c->k = k;
  c->flags = flags;
  c->alpha = alpha;
  c->h.special = special;
  GString *s = g_string_new (NULL);
  if (ndim_a >= 3)
    g_string_append_printf (s, "%" G_GINT64_FORMAT "x", l0);
  if (ndim_a >= 4)
    g_string_append_printf (s, "%" G_GINT64_FORMAT "x", l1);
  g_string_append_printf (s, "%dx%dx%d", m, n, k);
  if (flags & MM_LINEAR)
    g_string_append (s, "-linear");
  if (flags & MM_TRANS_B)
    g_string_append (s, "-tb");
  if (flags & MM_B_BATCHED)
    g_string_append (s, "-bb");
  if (flags & MM_BIAS)
    g_string_append (s, "-bias");
  if (flags & MM_RES)
    g_string_append (s, "-res");
  if (alpha != 1.0f)
    g_string_append_printf (s, "-alpha%g", alpha);
  if (special)
    g_string_append (s, "-nan-inf");
  /* fp32 error grows ~sqrt(K) ulps */
  double tol = tol_for (p, 2e-6 * sqrt ((double) k) + 1e-6);
  add_case (&c->h, (flags & MM_LINEAR) ? "linear" : "matmul", p, s->str, tol, test_matmul);
  g_string_free (s, TRUE);
}

static void
add_matmul_cases (void)
{
  for (Prec p = P_F32; p <= P_MIXED; p++)
    {
      add_matmul (p, 2, 0, 0, 1, 1, 1, 0, 1.0f, FALSE);
      add_matmul (p, 2, 0, 0, 37, 53, 29, 0, 1.0f, FALSE);
      add_matmul (p, 2, 0, 0, 33, 70, 45, MM_TRANS_B | MM_BIAS | MM_RES, 0.5f, FALSE);
      add_matmul (p, 3, 3, 0, 17, 23, 19, MM_B_BATCHED, 0.125f, FALSE);
      add_matmul (p, 3, 2, 0, 9, 31, 16, MM_B_BATCHED | MM_TRANS_B | MM_RES, 1.0f, FALSE);
      add_matmul (p, 4, 2, 3, 9, 12, 16, MM_BIAS, 1.0f, FALSE);
      add_matmul (p, 2, 0, 0, 130, 67, 300, MM_TRANS_B, 1.0f, FALSE);
      add_matmul (p, 2, 0, 0, 19, 21, 13, MM_TRANS_B, 1.0f, TRUE);
      add_matmul (p, 2, 0, 0, 19, 21, 13, 0, 1.0f, TRUE);
      /* K % 4 == 0 with B transposed: the texel kernel on CPU devices */
      add_matmul (p, 2, 0, 0, 21, 19, 24, MM_TRANS_B, 1.0f, TRUE);
      add_matmul (p, 3, 3, 0, 70, 9, 8, MM_TRANS_B | MM_BIAS | MM_RES, 2.0f, FALSE);
      add_matmul (p, 3, 2, 0, 5, 130, 36, MM_TRANS_B | MM_B_BATCHED | MM_RES, 0.25f, FALSE);
      /* SD 1.5 attention projections at 32x32 latent tokens: Linear(320, 320) */
      add_matmul (p, 3, 1, 0, 1024, 320, 320, MM_LINEAR | MM_TRANS_B | MM_BIAS, 1.0f, FALSE);
      /* GEGLU projection Linear(320, 2560) */
      add_matmul (p, 3, 1, 0, 256, 2560, 320, MM_LINEAR | MM_TRANS_B | MM_BIAS, 1.0f, FALSE);
      /* cross-attention k/v projection from CLIP: 77 x 768 -> 320 */
      add_matmul (p, 3, 2, 0, 77, 320, 768, MM_LINEAR | MM_TRANS_B, 1.0f, FALSE);
    }
}

/* ================================================================================
 * conv2d
 * ================================================================================ */

typedef struct
{
  Head h;
  int n, cin, hh, ww, cout, kh, kw;
  int stride, pt, pb, pl, pr;
  gboolean defaults; /* params NULL: stride 1, same padding */
  gboolean upsample, bias, residual;
} ConvCase;

static void
test_conv (gconstpointer data)
{
  const ConvCase *c = data;
  if (!require_device (&c->h))
    return;
  guint64 seed = c->h.seed;
  IvkDType at = act_dtype (c->h.prec), wt = w_dtype (c->h.prec);
  RefConvParams rp = { c->stride, c->pt, c->pb, c->pl, c->pr, c->upsample };
  int eh = c->upsample ? 2 * c->hh : c->hh, ew = c->upsample ? 2 * c->ww : c->ww;
  int oh = ref_conv_out_size (eh, c->kh, c->stride, c->pt, c->pb);
  int ow = ref_conv_out_size (ew, c->kw, c->stride, c->pl, c->pr);
  gsize nx = (gsize) c->n * c->cin * c->hh * c->ww;
  gsize nw = (gsize) c->cout * c->cin * c->kh * c->kw;
  gsize no = (gsize) c->n * c->cout * oh * ow;
  g_autofree char *what = g_strdup_printf (
    "x [%d,%d,%d,%d] w [%d,%d,%d,%d] stride %d pad t%d b%d l%d r%d%s%s%s", c->n, c->cin, c->hh,
    c->ww, c->cout, c->cin, c->kh, c->kw, c->stride, c->pt, c->pb, c->pl, c->pr,
    c->upsample ? " upsample" : "", c->bias ? " bias" : "", c->residual ? " residual" : "");
  Run r;
  run_init (&r, &c->h, what);
  float *x = run_own (&r, rand_data (nx, &seed, -1, 1, at));
  /* weights scaled like a Kaiming init so outputs stay O(1) */
  float ws = 1.0f / sqrtf ((float) c->cin * c->kh * c->kw);
  float *w = run_own (&r, rand_data (nw, &seed, -ws, ws, wt));
  float *bias = c->bias ? run_own (&r, rand_data (c->cout, &seed, -1, 1, wt)) : NULL;
  float *res = c->residual ? run_own (&r, rand_data (no, &seed, -1, 1, at)) : NULL;
  if (c->h.special)
    {
      /* NaN at the corner pixel (0, 0) of channel 0 and +inf in the middle of
       * channel 1: only outputs whose window covers them may be non-finite;
       * zero padding must not spread them (padded taps read 0, not x * 0). */
      x[0] = NAN;
      x[(gsize) 1 * c->hh * c->ww + (c->hh / 2) * c->ww + c->ww / 2] = INFINITY;
    }
  gint64 xs[4] = { c->n, c->cin, c->hh, c->ww };
  gint64 wsh[4] = { c->cout, c->cin, c->kh, c->kw };
  gint64 bs[1] = { c->cout };
  gint64 os[4] = { c->n, c->cout, oh, ow };
  IvkTensor *tx = run_input (&r, "x", at, 4, xs, x);
  IvkTensor *tw = run_weight (&r, "w", wt, 4, wsh, w);
  IvkTensor *tb = bias ? run_weight (&r, "bias", wt, 1, bs, bias) : NULL;
  IvkConvParams params = {
    .stride = c->stride,
    .pad_top = c->pt, .pad_bottom = c->pb, .pad_left = c->pl, .pad_right = c->pr,
    .upsample = c->upsample,
    .residual = res ? run_input (&r, "residual", at, 4, os, res) : NULL,
  };
  IvkTensor *out = ivk_conv2d (r.g, tx, tw, tb, c->defaults ? NULL : &params);
  if (out && (out->shape[2] != oh || out->shape[3] != ow))
    fail_case (&r, "output %s, want %dx%d", ivk_tensor_describe (out), oh, ow);
  g_autofree float *got = g_new (float, no);
  g_autofree float *want = g_new (float, no);
  if (run_exec (&r, out, got))
    {
      ref_conv2d (x, w, bias, res, want, c->n, c->cin, c->hh, c->ww, c->cout, c->kh, c->kw, &rp);
      check_out (&r, at, got, want, no, c->h.tol);
    }
  run_clear (&r);
}

static void
add_conv (Prec p, int n, int cin, int h, int w, int cout, int k, int stride, int pt, int pb,
          int pl, int pr, gboolean upsample, gboolean bias, gboolean residual, gboolean special,
          gboolean defaults)
{
  ConvCase *c = g_new0 (ConvCase, 1);
  *c = (ConvCase) { .n = n, .cin = cin, .hh = h, .ww = w, .cout = cout, .kh = k, .kw = k,
                    .stride = stride, .pt = pt, .pb = pb, .pl = pl, .pr = pr,
                    .upsample = upsample, .bias = bias, .residual = residual,
                    .defaults = defaults };
  c->h.special = special;
  g_autofree char *shape = g_strdup_printf ("%dx%dx%dx%d-%dk%d-s%d-p%d%d%d%d%s%s%s%s%s", n, cin, h, w,
                                            cout, k, stride, pt, pb, pl, pr,
                                            upsample ? "-up" : "", bias ? "-bias" : "",
                                            residual ? "-res" : "", special ? "-nan-inf" : "",
                                            defaults ? "-default" : "");
  double tol = tol_for (p, 2e-6 * sqrt ((double) cin * k * k) + 1e-6);
  add_case (&c->h, "conv2d", p, shape, tol, test_conv);
}

static void
add_conv_cases (void)
{
  for (Prec p = P_F32; p <= P_MIXED; p++)
    {
      add_conv (p, 2, 5, 9, 11, 7, 3, 1, 1, 1, 1, 1, FALSE, TRUE, FALSE, FALSE, FALSE);
      add_conv (p, 1, 3, 6, 5, 4, 3, 1, 1, 1, 1, 1, FALSE, FALSE, FALSE, FALSE, TRUE);
      /* Downsample2D: stride 2, padding 1 */
      add_conv (p, 2, 6, 9, 10, 5, 3, 2, 1, 1, 1, 1, FALSE, TRUE, FALSE, FALSE, FALSE);
      /* VAE encoder downsampler: F.pad(x, (0, 1, 0, 1)) then stride 2, no padding */
      add_conv (p, 1, 4, 8, 7, 6, 3, 2, 0, 1, 0, 1, FALSE, TRUE, FALSE, FALSE, FALSE);
      /* Upsample2D: nearest 2x then conv 3x3, fused */
      add_conv (p, 1, 6, 5, 7, 5, 3, 1, 1, 1, 1, 1, TRUE, TRUE, TRUE, FALSE, FALSE);
      /* 1x1 with bias and residual (ResnetBlock2D shortcut + skip) */
      add_conv (p, 2, 9, 5, 6, 11, 1, 1, 0, 0, 0, 0, FALSE, TRUE, TRUE, FALSE, FALSE);
      /* odd kernel size and asymmetric padding */
      add_conv (p, 1, 3, 7, 9, 4, 5, 1, 2, 1, 0, 3, FALSE, FALSE, FALSE, FALSE, FALSE);
      add_conv (p, 1, 3, 6, 7, 4, 3, 1, 1, 1, 1, 1, FALSE, TRUE, FALSE, TRUE, FALSE);
      /* SD shapes: conv_in 4 -> 320, a 3x3 320 -> 320 at 16x16, 1x1 proj_in/out
       * 320 -> 320 at 32x32, the 1x1 shortcut 320 -> 640 */
      add_conv (p, 1, 4, 32, 32, 320, 3, 1, 1, 1, 1, 1, FALSE, TRUE, FALSE, FALSE, FALSE);
      add_conv (p, 1, 320, 16, 16, 320, 3, 1, 1, 1, 1, 1, FALSE, TRUE, TRUE, FALSE, FALSE);
      add_conv (p, 1, 320, 32, 32, 320, 1, 1, 0, 0, 0, 0, FALSE, TRUE, FALSE, FALSE, FALSE);
      add_conv (p, 1, 320, 16, 16, 640, 1, 1, 0, 0, 0, 0, FALSE, TRUE, FALSE, FALSE, FALSE);
      /* widths and channels that are multiples of 4: the vec4-window kernel
       * on CPU devices (conv2d_tex4.comp): stride 1, 2x upsample, stride 2,
       * the VAE encoder's asymmetric padding, 1x1, NaN/Inf, rows narrower
       * than a block, and output channels that are not a multiple of the
       * register block */
      add_conv (p, 2, 8, 9, 12, 7, 3, 1, 1, 1, 1, 1, FALSE, TRUE, TRUE, FALSE, FALSE);
      add_conv (p, 1, 8, 5, 8, 13, 3, 1, 1, 1, 1, 1, TRUE, TRUE, TRUE, FALSE, FALSE);
      add_conv (p, 1, 4, 3, 4, 5, 3, 1, 1, 1, 1, 1, TRUE, TRUE, FALSE, FALSE, FALSE);
      add_conv (p, 2, 8, 9, 12, 5, 3, 2, 1, 1, 1, 1, FALSE, TRUE, FALSE, FALSE, FALSE);
      add_conv (p, 1, 4, 8, 8, 6, 3, 2, 0, 1, 0, 1, FALSE, TRUE, FALSE, FALSE, FALSE);
      add_conv (p, 2, 12, 5, 8, 11, 1, 1, 0, 0, 0, 0, FALSE, TRUE, TRUE, FALSE, FALSE);
      add_conv (p, 1, 4, 6, 8, 4, 3, 1, 1, 1, 1, 1, FALSE, TRUE, FALSE, TRUE, FALSE);
      add_conv (p, 1, 8, 4, 4, 70, 3, 1, 1, 1, 1, 1, FALSE, FALSE, FALSE, FALSE, TRUE);
      add_conv (p, 1, 64, 8, 8, 64, 3, 1, 1, 1, 1, 1, TRUE, TRUE, FALSE, FALSE, FALSE);
    }
}

/* ================================================================================
 * group norm, layer norm, softmax
 * ================================================================================ */

typedef struct
{
  Head h;
  int n, c, hh, ww, groups;
  gboolean silu;
} GroupNormCase;

static void
test_group_norm (gconstpointer data)
{
  const GroupNormCase *c = data;
  if (!require_device (&c->h))
    return;
  guint64 seed = c->h.seed;
  IvkDType at = act_dtype (c->h.prec), wt = w_dtype (c->h.prec);
  gsize hw = (gsize) c->hh * c->ww, nx = (gsize) c->n * c->c * hw;
  g_autofree char *what = g_strdup_printf ("x [%d,%d,%d,%d] %d groups%s", c->n, c->c, c->hh, c->ww,
                                           c->groups, c->silu ? " + silu" : "");
  Run r;
  run_init (&r, &c->h, what);
  /* an offset mean, as real activations have, exercises the two-pass variance */
  float *x = run_own (&r, rand_data (nx, &seed, 2, 5, at));
  float *gamma = run_own (&r, rand_data (c->c, &seed, 0.5, 1.5, wt));
  float *beta = run_own (&r, rand_data (c->c, &seed, -0.5, 0.5, wt));
  if (c->h.special)
    x[hw * (c->c / c->groups) + 3] = NAN; /* group 1 of batch 0 becomes NaN, the rest not */
  gint64 xs[4] = { c->n, c->c, c->hh, c->ww }, cs[1] = { c->c };
  IvkTensor *out = ivk_group_norm (r.g, run_input (&r, "x", at, 4, xs, x),
                                   run_weight (&r, "gamma", wt, 1, cs, gamma),
                                   run_weight (&r, "beta", wt, 1, cs, beta), c->groups, 1e-5f,
                                   c->silu);
  g_autofree float *got = g_new (float, nx);
  g_autofree float *want = g_new (float, nx);
  if (run_exec (&r, out, got))
    {
      ref_group_norm (x, gamma, beta, want, c->n, c->c, hw, c->groups, 1e-5f, c->silu);
      check_out (&r, at, got, want, nx, c->h.tol);
    }
  run_clear (&r);
}

static void
add_group_norm (Prec p, int n, int ch, int h, int w, int groups, gboolean silu, gboolean special)
{
  GroupNormCase *c = g_new0 (GroupNormCase, 1);
  *c = (GroupNormCase) { .n = n, .c = ch, .hh = h, .ww = w, .groups = groups, .silu = silu };
  c->h.special = special;
  g_autofree char *batch = n > 1 ? g_strdup_printf ("%dx", n) : g_strdup ("");
  g_autofree char *shape = g_strdup_printf ("%s%dx%dx%d-g%d%s%s", batch, h, w, ch, groups,
                                            silu ? "-silu" : "", special ? "-nan" : "");
  add_case (&c->h, "group_norm", p, shape, tol_for (p, 2e-5), test_group_norm);
}

typedef struct
{
  Head h;
  int rows, c;
  float scale;
  int kind; /* 0 layer norm, 1 softmax */
} RowCase;

static void
test_rows (gconstpointer data)
{
  const RowCase *c = data;
  if (!require_device (&c->h))
    return;
  guint64 seed = c->h.seed;
  IvkDType at = act_dtype (c->h.prec), wt = w_dtype (c->h.prec);
  gsize nx = (gsize) c->rows * c->c;
  g_autofree char *what = g_strdup_printf ("x [%d,%d]%s", c->rows, c->c,
                                           c->kind ? " softmax" : " layer_norm");
  Run r;
  run_init (&r, &c->h, what);
  float *x = run_own (&r, rand_data (nx, &seed, c->kind ? -4 : 1, c->kind ? 4 : 3, at));
  if (c->h.special)
    {
      x[1 * c->c + 2] = NAN; /* row 1 NaN */
      if (c->kind == 1)
        {
          x[2 * c->c + 1] = -INFINITY; /* a masked entry: exactly 0 */
          x[2 * c->c + 4] = -INFINITY;
          for (int i = 0; i < c->c; i++) /* a fully masked row: NaN, as torch */
            x[3 * c->c + i] = -INFINITY;
          x[4 * c->c + 3] = INFINITY; /* +inf: inf - inf = NaN row */
        }
    }
  gint64 xs[3] = { 1, c->rows, c->c }, cs[1] = { c->c };
  IvkTensor *tx = run_input (&r, "x", at, 3, xs, x);
  float *gamma = NULL, *beta = NULL;
  IvkTensor *out;
  if (c->kind == 0)
    {
      gamma = run_own (&r, rand_data (c->c, &seed, 0.5, 1.5, wt));
      beta = run_own (&r, rand_data (c->c, &seed, -0.5, 0.5, wt));
      out = ivk_layer_norm (r.g, tx, run_weight (&r, "gamma", wt, 1, cs, gamma),
                            run_weight (&r, "beta", wt, 1, cs, beta), 1e-5f);
    }
  else
    out = ivk_softmax (r.g, tx, c->scale);
  g_autofree float *got = g_new (float, nx);
  g_autofree float *want = g_new (float, nx);
  if (run_exec (&r, out, got))
    {
      if (c->kind == 0)
        ref_layer_norm (x, gamma, beta, want, c->rows, c->c, 1e-5f);
      else
        ref_softmax (x, want, c->rows, c->c, c->scale);
      check_out (&r, at, got, want, nx, c->h.tol);
    }
  run_clear (&r);
}

static void
add_rows (int kind, Prec p, int rows, int ch, float scale, gboolean special)
{
  RowCase *c = g_new0 (RowCase, 1);
  *c = (RowCase) { .rows = rows, .c = ch, .scale = scale, .kind = kind };
  c->h.special = special;
  g_autofree char *shape = g_strdup_printf ("%dx%d%s", rows, ch, special ? "-nan-inf" : "");
  /* softmax: exp has 3 + 2|x| ulp in Vulkan; outputs are peaky (max/rms large) */
  double tol = kind == 0 ? tol_for (p, 2e-5) : (p == P_F16 ? 1e-2 : 2e-5);
  add_case (&c->h, kind == 0 ? "layer_norm" : "softmax", p, shape, tol, test_rows);
}

static void
add_norm_cases (void)
{
  for (Prec p = P_F32; p <= P_MIXED; p++)
    {
      add_group_norm (p, 2, 12, 7, 5, 4, FALSE, FALSE);
      add_group_norm (p, 1, 6, 3, 3, 3, TRUE, FALSE);
      add_group_norm (p, 2, 8, 5, 5, 4, TRUE, TRUE);
      /* SD: 320 channels in 32 groups at 64x64 (first UNet level at 512px) and
       * 32x32; 1280 channels at 8x8 and 1x1 (the deepest level) */
      add_group_norm (p, 1, 320, 64, 64, 32, FALSE, FALSE);
      add_group_norm (p, 1, 320, 32, 32, 32, TRUE, FALSE);
      add_group_norm (p, 2, 1280, 8, 8, 32, TRUE, FALSE);
      add_group_norm (p, 1, 1280, 1, 1, 32, FALSE, FALSE);
      add_rows (0, p, 37, 53, 1, FALSE);
      add_rows (0, p, 6, 9, 1, TRUE);
      add_rows (0, p, 1024, 320, 1, FALSE); /* transformer block norms */
      add_rows (0, p, 77, 768, 1, FALSE);   /* CLIP ViT-L */
    }
  for (Prec p = P_F32; p <= P_F16; p++)
    {
      add_rows (1, p, 13, 37, 0.7f, FALSE);
      add_rows (1, p, 6, 11, 1.0f, TRUE);
      add_rows (1, p, 1, 1, 1.0f, FALSE);
      add_rows (1, p, 64, 4096, 0.125f, FALSE);
      add_rows (1, p, 4096, 77, 0.158f, FALSE);
    }
}

/* ================================================================================
 * attention
 * ================================================================================ */

typedef struct
{
  Head h;
  int b, tq, tk, heads, d;
  gboolean causal;
  gboolean fused; /* q, k, v are column slices of one [b, t, 3C] tensor (self only) */
} AttnCase;

static void
test_attention (gconstpointer data)
{
  const AttnCase *c = data;
  if (!require_device (&c->h))
    return;
  guint64 seed = c->h.seed;
  IvkDType at = act_dtype (c->h.prec);
  int C = c->heads * c->d;
  float scale = 1.0f / sqrtf ((float) c->d);
  gsize no = (gsize) c->b * c->tq * C;
  g_autofree char *what = g_strdup_printf ("b %d, %d queries x %d keys, %d heads x %d%s%s", c->b,
                                           c->tq, c->tk, c->heads, c->d,
                                           c->causal ? ", causal" : "",
                                           c->fused ? ", fused qkv slices" : "");
  Run r;
  run_init (&r, &c->h, what);
  float *q, *k, *v;
  gint64 rs_q = C, rs_k = C, rs_v = C;
  IvkTensor *tq, *tk, *tv;
  /* spread of ±2 gives peaky but not degenerate attention weights */
  if (c->fused)
    {
      g_assert (c->tq == c->tk);
      gsize nf = (gsize) c->b * c->tq * 3 * C;
      float *qkv = run_own (&r, rand_data (nf, &seed, -2, 2, at));
      if (c->h.special)
        qkv[(gsize) 3 * 3 * C + C + 1] = NAN; /* key 3, head 0 */
      gint64 fs[3] = { c->b, c->tq, 3 * C };
      IvkTensor *tf = run_input (&r, "qkv", at, 3, fs, qkv);
      tq = ivk_slice_columns (r.g, tf, 0, C);
      tk = ivk_slice_columns (r.g, tf, C, C);
      tv = ivk_slice_columns (r.g, tf, 2 * C, C);
      q = qkv;
      k = qkv + C;
      v = qkv + 2 * C;
      rs_q = rs_k = rs_v = 3 * C;
    }
  else
    {
      gsize nq = (gsize) c->b * c->tq * C, nk = (gsize) c->b * c->tk * C;
      q = run_own (&r, rand_data (nq, &seed, -2, 2, at));
      k = run_own (&r, rand_data (nk, &seed, -2, 2, at));
      v = run_own (&r, rand_data (nk, &seed, -2, 2, at));
      if (c->h.special)
        {
          k[(gsize) 3 * C + 1] = NAN;      /* key 3 of batch 0, head 0 */
          v[(gsize) 2 * C + C - 1] = INFINITY; /* value 2, last head */
        }
      gint64 qs[3] = { c->b, c->tq, C }, ks[3] = { c->b, c->tk, C };
      tq = run_input (&r, "q", at, 3, qs, q);
      tk = run_input (&r, "k", at, 3, ks, k);
      tv = run_input (&r, "v", at, 3, ks, v);
    }
  IvkAttentionParams ap = { .heads = c->heads, .scale = scale, .causal = c->causal };
  IvkTensor *out = ivk_attention (r.g, tq, tk, tv, &ap);
  g_autofree float *got = g_new (float, no);
  g_autofree float *want = g_new (float, no);
  if (run_exec (&r, out, got))
    {
      ref_attention (q, k, v, want, c->b, c->tq, c->tk, c->heads, c->d, rs_q, rs_k, rs_v, scale,
                     c->causal);
      check_out (&r, at, got, want, no, c->h.tol);
    }
  run_clear (&r);
}

static void
add_attention (Prec p, int b, int tq, int tk, int heads, int d, gboolean causal, gboolean fused,
               gboolean special)
{
  AttnCase *c = g_new0 (AttnCase, 1);
  *c = (AttnCase) { .b = b, .tq = tq, .tk = tk, .heads = heads, .d = d, .causal = causal,
                    .fused = fused };
  c->h.special = special;
  g_autofree char *shape = g_strdup_printf ("%dx%dx%d-h%dxd%d%s%s%s", b, tq, tk, heads, d,
                                            causal ? "-causal" : "", fused ? "-fused" : "",
                                            special ? "-nan-inf" : "");
  add_case (&c->h, "attention", p, shape, tol_for (p, 5e-5), test_attention);
}

static void
add_attention_cases (void)
{
  for (Prec p = P_F32; p <= P_F16; p++)
    {
      add_attention (p, 2, 13, 11, 3, 8, FALSE, FALSE, FALSE);
      add_attention (p, 1, 1, 1, 1, 4, FALSE, FALSE, FALSE);
      add_attention (p, 1, 17, 17, 2, 16, TRUE, FALSE, FALSE);
      add_attention (p, 2, 9, 9, 2, 24, FALSE, TRUE, FALSE);
      add_attention (p, 1, 10, 10, 2, 8, TRUE, TRUE, TRUE);
      add_attention (p, 1, 7, 6, 2, 8, FALSE, FALSE, TRUE);
      /* CLIP ViT-L text encoder: 77 tokens, 12 heads x 64, causal, fused qkv */
      add_attention (p, 1, 77, 77, 12, 64, TRUE, TRUE, FALSE);
      /* SD 1.5 level 1 at 512px: 4096 latent tokens, cross-attention to 77
       * text tokens, 8 heads x 40 */
      add_attention (p, 1, 4096, 77, 8, 40, FALSE, FALSE, FALSE);
      /* self-attention at 32x32 latent tokens, SD2/SDXL head dim 64 */
      add_attention (p, 1, 1024, 1024, 2, 64, FALSE, TRUE, FALSE);
      /* SD 1.5 deepest level: 16x16 tokens, 8 heads x 160 */
      add_attention (p, 1, 256, 256, 8, 160, FALSE, FALSE, FALSE);
    }
}

/* ================================================================================
 * element-wise
 * ================================================================================ */

typedef struct
{
  Head h;
  int op;
  gsize n;
  float alpha, beta;
} UnaryCase;

static const char *const unary_names[] = { "silu", "gelu", "quick_gelu", "exp",
                                           "scale", "clamp", "tanh", "sigmoid" };

/* values where the ops overflow, saturate or are undefined */
static const float special_values[] = { NAN, INFINITY, -INFINITY, 0.0f, -0.0f, 1e-30f, -1e-30f,
                                        30.0f, -30.0f, 100.0f, -100.0f, 88.5f, -88.5f, 1e4f };

static void
test_unary (gconstpointer data)
{
  const UnaryCase *c = data;
  if (!require_device (&c->h))
    return;
  guint64 seed = c->h.seed;
  IvkDType at = act_dtype (c->h.prec);
  g_autofree char *what = g_strdup_printf ("%s over %" G_GSIZE_FORMAT " elements (alpha %g beta %g)",
                                           unary_names[c->op], c->n, c->alpha, c->beta);
  Run r;
  run_init (&r, &c->h, what);
  float *x = run_own (&r, rand_data (c->n, &seed, -6, 6, at));
  if (c->h.special)
    for (gsize i = 0; i < G_N_ELEMENTS (special_values) && i < c->n; i++)
      x[i] = at == IVK_F16 ? ref_round_f16 (special_values[i]) : special_values[i];
  gint64 shape[2] = { 1, c->n };
  IvkTensor *out = ivk_unary (r.g, run_input (&r, "x", at, 2, shape, x), c->op, c->alpha, c->beta);
  g_autofree float *got = g_new (float, c->n);
  g_autofree float *want = g_new (float, c->n);
  if (run_exec (&r, out, got))
    {
      ref_unary (x, want, c->n, c->op, c->alpha, c->beta);
      check_out (&r, at, got, want, c->n, c->h.tol);
    }
  run_clear (&r);
}

static void
add_unary_cases (void)
{
  for (Prec p = P_F32; p <= P_F16; p++)
    for (int op = IVK_UNARY_SILU; op <= IVK_UNARY_SIGMOID; op++)
      for (int special = 0; special < 2; special++)
        {
          UnaryCase *c = g_new0 (UnaryCase, 1);
          c->op = op;
          c->n = special ? 64 : 4103;
          c->alpha = op == IVK_UNARY_CLAMP ? -2.5f : 0.75f;
          c->beta = op == IVK_UNARY_CLAMP ? 3.0f : -0.25f;
          c->h.special = special;
          g_autofree char *shape = g_strdup_printf ("%" G_GSIZE_FORMAT "%s", c->n, special ? "-nan-inf" : "");
          g_autofree char *name = g_strdup_printf ("unary/%s", unary_names[op]);
          /* exp's output spans e^-6..e^6: max/rms is large */
          double tol = op == IVK_UNARY_EXP ? tol_for (p, 1e-5) : tol_for (p, 5e-6);
          add_case (&c->h, name, p, shape, tol, test_unary);
        }
}

typedef struct
{
  Head h;
  int op;
  gint64 sa[4], sb[4];
  int nda, ndb;
} BinaryCase;

static void
test_binary (gconstpointer data)
{
  const BinaryCase *c = data;
  if (!require_device (&c->h))
    return;
  guint64 seed = c->h.seed;
  IvkDType at = act_dtype (c->h.prec);
  gint64 a4[4], b4[4], o4[4];
  gsize na = 1, nb = 1, no = 1;
  for (int i = 0; i < 4; i++)
    {
      int ia = i - (4 - c->nda), ib = i - (4 - c->ndb);
      a4[i] = ia >= 0 ? c->sa[ia] : 1;
      b4[i] = ib >= 0 ? c->sb[ib] : 1;
      o4[i] = MAX (a4[i], b4[i]);
      na *= a4[i];
      nb *= b4[i];
      no *= o4[i];
    }
  g_autofree char *what = g_strdup_printf ("op %d: [%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT "] with [%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT ",%" G_GINT64_FORMAT "]",
                                           c->op, a4[0], a4[1], a4[2], a4[3], b4[0], b4[1], b4[2], b4[3]);
  Run r;
  run_init (&r, &c->h, what);
  float *a = run_own (&r, rand_data (na, &seed, -2, 2, at));
  float *b = run_own (&r, rand_data (nb, &seed, -2, 2, at));
  if (c->h.special)
    {
      a[0] = INFINITY;
      b[0] = c->op == IVK_BINARY_SUB ? INFINITY : -INFINITY; /* inf - inf, inf + -inf: NaN */
      b[nb - 1] = NAN;                                        /* broadcast along a's dims */
      a[na / 2] = -INFINITY;
    }
  IvkTensor *out = ivk_binary (r.g, run_input (&r, "a", at, c->nda, c->sa, a),
                               run_input (&r, "b", at, c->ndb, c->sb, b), c->op);
  g_autofree float *got = g_new (float, no);
  g_autofree float *want = g_new (float, no);
  if (run_exec (&r, out, got))
    {
      ref_binary (a, a4, b, b4, want, c->op);
      check_out (&r, at, got, want, no, c->h.tol);
    }
  run_clear (&r);
}

static void
add_binary (Prec p, int op, int nda, const gint64 *sa, int ndb, const gint64 *sb, gboolean special)
{
  static const char *const names[] = { "add", "sub", "mul" };
  BinaryCase *c = g_new0 (BinaryCase, 1);
  c->op = op;
  c->nda = nda;
  c->ndb = ndb;
  memcpy (c->sa, sa, nda * sizeof (gint64));
  memcpy (c->sb, sb, ndb * sizeof (gint64));
  c->h.special = special;
  GString *s = g_string_new (NULL);
  for (int i = 0; i < nda; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? "x" : "", sa[i]);
  g_string_append (s, "-");
  for (int i = 0; i < ndb; i++)
    g_string_append_printf (s, "%s%" G_GINT64_FORMAT, i ? "x" : "", sb[i]);
  if (special)
    g_string_append (s, "-nan-inf");
  g_autofree char *name = g_strdup_printf ("binary/%s", names[op]);
  add_case (&c->h, name, p, s->str, tol_for (p, 1e-6), test_binary);
  g_string_free (s, TRUE);
}

static void
add_binary_cases (void)
{
  for (Prec p = P_F32; p <= P_F16; p++)
    {
      const gint64 a1[4] = { 2, 3, 5, 7 }, b1[3] = { 3, 1, 7 };
      const gint64 a2[2] = { 1, 7 }, b2[2] = { 5, 1 };
      const gint64 a3[3] = { 4, 9, 10 };
      const gint64 a4[4] = { 2, 320, 8, 8 }, b4[4] = { 2, 320, 1, 1 }; /* ResBlock time embedding */
      const gint64 a5[1] = { 1 };
      for (int op = IVK_BINARY_ADD; op <= IVK_BINARY_MUL; op++)
        {
          add_binary (p, op, 4, a1, 3, b1, FALSE);
          add_binary (p, op, 2, a2, 2, b2, FALSE);
          add_binary (p, op, 3, a3, 3, a3, FALSE);
          add_binary (p, op, 4, a1, 3, b1, TRUE);
        }
      add_binary (p, IVK_BINARY_ADD, 4, a4, 4, b4, FALSE);
      add_binary (p, IVK_BINARY_MUL, 3, a3, 1, a5, FALSE);
    }
}

typedef struct
{
  Head h;
  int rows, f;
} GegluCase;

static void
test_geglu (gconstpointer data)
{
  const GegluCase *c = data;
  if (!require_device (&c->h))
    return;
  guint64 seed = c->h.seed;
  IvkDType at = act_dtype (c->h.prec);
  gsize nx = (gsize) c->rows * 2 * c->f, no = (gsize) c->rows * c->f;
  g_autofree char *what = g_strdup_printf ("x [%d, %d]", c->rows, 2 * c->f);
  Run r;
  run_init (&r, &c->h, what);
  float *x = run_own (&r, rand_data (nx, &seed, -4, 4, at));
  if (c->h.special)
    {
      x[c->f] = INFINITY;        /* gate inf: h * inf */
      x[2 * c->f + c->f + 1] = -INFINITY; /* gate -inf: gelu(-inf) = NaN in torch */
      x[4 * c->f + 2] = NAN;     /* value NaN */
    }
  gint64 xs[2] = { c->rows, 2 * c->f };
  IvkTensor *out = ivk_geglu (r.g, run_input (&r, "x", at, 2, xs, x));
  g_autofree float *got = g_new (float, no);
  g_autofree float *want = g_new (float, no);
  if (run_exec (&r, out, got))
    {
      ref_geglu (x, want, c->rows, c->f);
      check_out (&r, at, got, want, no, c->h.tol);
    }
  run_clear (&r);
}

static void
add_geglu_cases (void)
{
  for (Prec p = P_F32; p <= P_F16; p++)
    for (int i = 0; i < 3; i++)
      {
        GegluCase *c = g_new0 (GegluCase, 1);
        c->rows = i == 0 ? 15 : i == 1 ? 6 : 256;
        c->f = i == 0 ? 7 : i == 1 ? 5 : 1280; /* SD 1.5: 320 -> 2 x 1280 */
        c->h.special = i == 1;
        g_autofree char *shape = g_strdup_printf ("%dx%d%s", c->rows, 2 * c->f, i == 1 ? "-nan-inf" : "");
        add_case (&c->h, "geglu", p, shape, tol_for (p, 5e-6), test_geglu);
      }
}

/* ================================================================================
 * data movement
 * ================================================================================ */

typedef enum
{
  MOVE_PERMUTE,
  MOVE_CONCAT,
  MOVE_SLICE,
  MOVE_UPSAMPLE,
  MOVE_COPY_VIEW, /* ivk_copy of an ivk_slice_columns view */
  MOVE_OUTPUT_INPUT, /* an input marked as output: the runtime copies it */
} MoveKind;

typedef struct
{
  Head h;
  MoveKind kind;
  int ndim;
  gint64 shape[4];
  int perm[4];
  gint64 shape_b[4];
  int axis;
  gint64 start, len;
} MoveCase;

static void
test_move (gconstpointer data)
{
  const MoveCase *c = data;
  if (!require_device (&c->h))
    return;
  guint64 seed = c->h.seed;
  IvkDType at = act_dtype (c->h.prec);
  gsize nx = 1, nb = 1;
  for (int i = 0; i < c->ndim; i++)
    {
      nx *= c->shape[i];
      nb *= c->shape_b[i];
    }
  Run r;
  run_init (&r, &c->h, c->h.path);
  float *x = run_own (&r, rand_data (nx, &seed, -100, 100, at));
  IvkTensor *tx = run_input (&r, "x", at, c->ndim, c->shape, x);
  IvkTensor *out = NULL;
  float *want = NULL;
  gsize no = nx;
  switch (c->kind)
    {
    case MOVE_PERMUTE:
      out = ivk_permute (r.g, tx, c->perm);
      want = run_own (&r, g_new (float, nx));
      ref_permute (x, want, c->ndim, c->shape, c->perm);
      break;
    case MOVE_CONCAT:
      {
        float *b = run_own (&r, rand_data (nb, &seed, -100, 100, at));
        out = ivk_concat (r.g, tx, run_input (&r, "b", at, c->ndim, c->shape_b, b), c->axis);
        no = nx + nb;
        want = run_own (&r, g_new (float, no));
        ref_concat (x, b, want, c->ndim, c->shape, c->shape_b, c->axis);
        break;
      }
    case MOVE_SLICE:
      out = ivk_slice (r.g, tx, c->axis, c->start, c->len);
      no = nx / c->shape[c->axis] * c->len;
      want = run_own (&r, g_new (float, no));
      ref_slice (x, want, c->ndim, c->shape, c->axis, c->start, c->len);
      break;
    case MOVE_UPSAMPLE:
      out = ivk_upsample_nearest2x (r.g, tx);
      no = nx * 4;
      want = run_own (&r, g_new (float, no));
      ref_upsample_nearest2x (x, want, c->shape[0] * c->shape[1], c->shape[2], c->shape[3]);
      break;
    case MOVE_COPY_VIEW:
      {
        /* a copy of a column view, then an op on the copy: strided reads */
        out = ivk_copy (r.g, ivk_slice_columns (r.g, tx, c->start, c->len));
        no = nx / c->shape[c->ndim - 1] * c->len;
        want = run_own (&r, g_new (float, no));
        ref_slice (x, want, c->ndim, c->shape, c->ndim - 1, c->start, c->len);
        break;
      }
    case MOVE_OUTPUT_INPUT:
      out = tx;
      want = run_own (&r, g_new (float, nx));
      ref_copy (x, want, nx);
      break;
    }
  g_autofree float *got = g_new (float, no);
  if (run_exec (&r, out, got))
    check_close (&r, got, want, no, 0.0); /* data movement is exact */
  run_clear (&r);
}

static MoveCase *
new_move (MoveKind kind, int ndim, const gint64 *shape)
{
  MoveCase *c = g_new0 (MoveCase, 1);
  c->kind = kind;
  c->ndim = ndim;
  for (int i = 0; i < 4; i++)
    c->shape[i] = c->shape_b[i] = i < ndim ? shape[i] : 1;
  return c;
}

static void
add_move_cases (void)
{
  for (Prec p = P_F32; p <= P_F16; p++)
    {
      static const gint64 s4[4] = { 2, 3, 4, 5 }, s3[3] = { 3, 5, 7 }, s2[2] = { 6, 9 };
      static const int perms4[][4] = { { 0, 2, 3, 1 }, { 0, 3, 1, 2 }, { 3, 2, 1, 0 }, { 1, 0, 2, 3 } };
      for (guint i = 0; i < G_N_ELEMENTS (perms4); i++)
        {
          MoveCase *c = new_move (MOVE_PERMUTE, 4, s4);
          memcpy (c->perm, perms4[i], sizeof c->perm);
          g_autofree char *shape = g_strdup_printf ("2x3x4x5-%d%d%d%d", c->perm[0], c->perm[1],
                                                    c->perm[2], c->perm[3]);
          add_case (&c->h, "permute", p, shape, 0, test_move);
        }
      {
        MoveCase *c = new_move (MOVE_PERMUTE, 3, s3);
        c->perm[0] = 1, c->perm[1] = 0, c->perm[2] = 2;
        add_case (&c->h, "permute", p, "3x5x7-102", 0, test_move);
        c = new_move (MOVE_PERMUTE, 2, s2);
        c->perm[0] = 1, c->perm[1] = 0;
        add_case (&c->h, "permute", p, "6x9-10", 0, test_move);
        /* NCHW -> NHWC of an SD latent-sized activation (attention input) */
        static const gint64 sd[4] = { 1, 320, 32, 32 };
        c = new_move (MOVE_PERMUTE, 4, sd);
        c->perm[0] = 0, c->perm[1] = 2, c->perm[2] = 3, c->perm[3] = 1;
        add_case (&c->h, "permute", p, "1x320x32x32-0231", 0, test_move);
      }
      for (int axis = 0; axis < 4; axis++)
        {
          MoveCase *c = new_move (MOVE_CONCAT, 4, s4);
          c->axis = axis;
          c->shape_b[axis] = 3 + axis;
          g_autofree char *shape = g_strdup_printf ("2x3x4x5-axis%d-plus%d", axis, 3 + axis);
          add_case (&c->h, "concat", p, shape, 0, test_move);
        }
      {
        /* the UNet skip concat: [1, 640, 16, 16] ++ [1, 320, 16, 16] on channels */
        static const gint64 sd[4] = { 1, 640, 16, 16 };
        MoveCase *c = new_move (MOVE_CONCAT, 4, sd);
        c->axis = 1;
        c->shape_b[1] = 320;
        add_case (&c->h, "concat", p, "1x640x16x16-axis1-plus320", 0, test_move);
      }
      for (int axis = 0; axis < 3; axis++)
        {
          MoveCase *c = new_move (MOVE_SLICE, 3, s3);
          c->axis = axis;
          c->start = 1;
          c->len = c->shape[axis] - 2;
          g_autofree char *shape = g_strdup_printf ("3x5x7-axis%d-1+%" G_GINT64_FORMAT, axis, c->len);
          add_case (&c->h, "slice", p, shape, 0, test_move);
        }
      {
        MoveCase *c = new_move (MOVE_UPSAMPLE, 4, s4);
        add_case (&c->h, "upsample", p, "2x3x4x5", 0, test_move);
        static const gint64 one[4] = { 1, 1, 1, 1 };
        c = new_move (MOVE_UPSAMPLE, 4, one);
        add_case (&c->h, "upsample", p, "1x1x1x1", 0, test_move);
        c = new_move (MOVE_COPY_VIEW, 3, s3);
        c->start = 2;
        c->len = 3;
        add_case (&c->h, "copy", p, "3x5x7-columns2+3", 0, test_move);
        c = new_move (MOVE_OUTPUT_INPUT, 2, s2);
        add_case (&c->h, "copy", p, "6x9-input-as-output", 0, test_move);
      }
    }
}

/* cast: f32 <-> f16 on the GPU must round exactly like the reference. */
static void
test_cast (gconstpointer data)
{
  const Head *h = data;
  if (!require_device (h))
    return;
  if (!ivk_context_get_info (ctx)->fp16_storage)
    {
      g_test_skip ("the Vulkan device has no 16-bit storage buffer access");
      return;
    }
  guint64 seed = h->seed;
  gboolean to_f16 = h->prec == P_F32; /* source dtype named by the path */
  const gsize n = 4096 + 64;
  Run r;
  run_init (&r, h, to_f16 ? "f32 -> f16" : "f16 -> f32");
  float *x = run_own (&r, rand_data (n, &seed, -70000, 70000, to_f16 ? IVK_F32 : IVK_F16));
  /* exponents across the whole f16 range, subnormals, ties and overflow */
  for (gsize i = 0; i < 2048; i++)
    x[i] = ldexpf (1.0f + (float) (i % 97) / 97.0f, (int) (i % 44) - 28) * (i & 1 ? -1 : 1);
  const float edge[] = { 65504.0f, 65519.99f, 65520.0f, 1e9f, 5.96e-8f, 2.98e-8f, 2.99e-8f,
                         1.0f + 1.0f / 2048, 1.0f + 3.0f / 2048, NAN, INFINITY, -INFINITY, -0.0f };
  memcpy (x + 2048, edge, sizeof edge);
  if (!to_f16)
    ref_round_f16_array (x, n);
  gint64 shape[1] = { n };
  IvkTensor *tx = run_input (&r, "x", to_f16 ? IVK_F32 : IVK_F16, 1, shape, x);
  IvkTensor *out = ivk_cast (r.g, tx, to_f16 ? IVK_F16 : IVK_F32);
  g_autofree float *got = g_new (float, n);
  g_autofree float *want = g_new (float, n);
  if (run_exec (&r, out, got))
    {
      ref_cast (x, want, n, to_f16 ? 1 : 0);
      for (gsize i = 0; i < n; i++)
        if (fp_class (got[i]) != fp_class (want[i]) || (isfinite (want[i]) && got[i] != want[i])
            || (want[i] == 0 && signbit (got[i]) != signbit (want[i])))
          {
            fail_case (&r, "element %" G_GSIZE_FORMAT ": %.9g -> %.9g, want %.9g", i, x[i], got[i],
                       want[i]);
            break;
          }
    }
  run_clear (&r);
}

/* The runtime's host-side converter (ivk_f32_to_f16) against the reference
 * rounding, exhaustively over every f16 value and its neighbourhood. */
static void
test_half_host (void)
{
  for (guint32 h = 0; h < 0x10000; h++)
    {
      float f = ivk_f16_to_f32 ((guint16) h);
      if (isnan (f))
        {
          g_assert_true (isnan (ref_round_f16 (f)));
          continue;
        }
      g_assert_cmpfloat (ref_round_f16 (f), ==, f);
      g_assert_cmpuint (ivk_f32_to_f16 (f), ==, h);
      /* the float just above and below, and the midpoints, round the same way */
      float up = nextafterf (f, INFINITY), down = nextafterf (f, -INFINITY);
      g_assert_cmpfloat (ivk_f16_to_f32 (ivk_f32_to_f16 (up)), ==, ref_round_f16 (up));
      g_assert_cmpfloat (ivk_f16_to_f32 (ivk_f32_to_f16 (down)), ==, ref_round_f16 (down));
      float next = ivk_f16_to_f32 ((guint16) (h + 1));
      if (isfinite (next) && (h & 0x7fff) != 0x7bff)
        {
          float mid = (float) (((double) f + next) / 2);
          g_assert_cmpfloat (ivk_f16_to_f32 (ivk_f32_to_f16 (mid)), ==, ref_round_f16 (mid));
        }
    }
}

/* ================================================================================
 * embeddings
 * ================================================================================ */

typedef struct
{
  Head h;
  int n_ids, rows, c;
} EmbCase;

static void
test_embedding (gconstpointer data)
{
  const EmbCase *c = data;
  if (!require_device (&c->h))
    return;
  guint64 seed = c->h.seed;
  IvkDType at = act_dtype (c->h.prec), wt = w_dtype (c->h.prec);
  gsize nt = (gsize) c->rows * c->c, no = (gsize) c->n_ids * c->c;
  g_autofree char *what = g_strdup_printf ("%d ids into [%d, %d]", c->n_ids, c->rows, c->c);
  Run r;
  run_init (&r, &c->h, what);
  float *table = run_own (&r, rand_data (nt, &seed, -1, 1, wt));
  float *idf = run_own (&r, rand_data (c->n_ids, &seed, 0, c->rows, IVK_F32));
  gint32 *ids = run_own (&r, g_new (gint32, c->n_ids));
  for (int i = 0; i < c->n_ids; i++)
    idf[i] = ids[i] = (gint32) idf[i];
  /* ids out of range are clamped, never read out of bounds */
  idf[0] = ids[0] = -5;
  idf[c->n_ids - 1] = ids[c->n_ids - 1] = c->rows + 1000;
  gint64 is[2] = { 1, c->n_ids }, ts[2] = { c->rows, c->c };
  IvkTensor *out = ivk_embedding (r.g, run_input (&r, "ids", IVK_I32, 2, is, idf),
                                  run_weight (&r, "table", wt, 2, ts, table), at);
  g_autofree float *got = g_new (float, no);
  g_autofree float *want = g_new (float, no);
  if (run_exec (&r, out, got))
    {
      ref_embedding (ids, table, want, c->n_ids, c->rows, c->c);
      check_out (&r, at, got, want, no, 0.0);
    }
  run_clear (&r);
}

typedef struct
{
  Head h;
  int dim;
  gboolean flip;
  float shift, max_period;
} TimestepCase;

static void
test_timestep (gconstpointer data)
{
  const TimestepCase *c = data;
  if (!require_device (&c->h))
    return;
  IvkDType at = act_dtype (c->h.prec);
  const float t[] = { 0.0f, 1.0f, 20.5f, 500.25f, 999.0f, 981.0f, 1.5e-3f };
  gsize n = G_N_ELEMENTS (t), no = n * c->dim;
  g_autofree char *what = g_strdup_printf ("dim %d flip %d shift %g max_period %g", c->dim,
                                           c->flip, c->shift, c->max_period);
  Run r;
  run_init (&r, &c->h, what);
  gint64 ts[1] = { n };
  IvkTensor *out = ivk_timestep_embedding (r.g, run_input (&r, "t", IVK_F32, 1, ts, t), c->dim,
                                           c->flip, c->shift, c->max_period, at);
  g_autofree float *got = g_new (float, no);
  g_autofree float *want = g_new (float, no);
  if (run_exec (&r, out, got))
    {
      ref_timestep_embedding (t, want, n, c->dim, c->flip, c->shift, c->max_period);
      check_out (&r, at, got, want, no, c->h.tol);
    }
  run_clear (&r);
}

static void
add_embedding_cases (void)
{
  for (Prec p = P_F32; p <= P_MIXED; p++)
    {
      EmbCase *c = g_new0 (EmbCase, 1);
      *c = (EmbCase) { .n_ids = 9, .rows = 13, .c = 5 };
      add_case (&c->h, "embedding", p, "9-of-13x5", 0, test_embedding);
      /* CLIP: 77 token ids into a 768-wide table (rows cut from 49408 to keep
       * the test small) */
      c = g_new0 (EmbCase, 1);
      *c = (EmbCase) { .n_ids = 77, .rows = 1000, .c = 768 };
      add_case (&c->h, "embedding", p, "77-of-1000x768", 0, test_embedding);
    }
  for (Prec p = P_F32; p <= P_F16; p++)
    {
      /* SD: Timesteps(320, flip_sin_to_cos=True, downscale_freq_shift=0);
       * SDXL add_time_proj: 256; an odd dim pads a zero column. The argument
       * reaches ~1000 rad: fp32 sin/cos after range reduction, and the
       * frequency's exp error times t, give ~1e-4 absolute. */
      static const struct { int dim; gboolean flip; float shift; } v[] = {
        { 320, TRUE, 0.0f }, { 256, TRUE, 0.0f }, { 7, FALSE, 1.0f }, { 2, FALSE, 0.0f },
      };
      for (guint i = 0; i < G_N_ELEMENTS (v); i++)
        {
          TimestepCase *c = g_new0 (TimestepCase, 1);
          *c = (TimestepCase) { .dim = v[i].dim, .flip = v[i].flip, .shift = v[i].shift,
                                .max_period = 10000.0f };
          g_autofree char *shape = g_strdup_printf ("7x%d-flip%d-shift%g", v[i].dim, v[i].flip,
                                                    v[i].shift);
          add_case (&c->h, "timestep_embedding", p, shape, tol_for (p, 1e-3), test_timestep);
        }
    }
}

/* ================================================================================
 * graphs: lifetime-planned arena, replay, guards
 * ================================================================================ */

/* A chain with a long-lived skip tensor: out = silu(scale(silu(x)...)) + x,
 * twice with different inputs through one recorded command buffer. The arena
 * must reuse memory (arena < naive) without corrupting the live skip tensor. */
static void
test_graph_chain (void)
{
  if (!require_device (NULL))
    return;
  const gint64 shape[2] = { 37, 129 };
  const gsize n = 37 * 129;
  g_autoptr (IvkGraph) g = ivk_graph_new (ctx, "chain", IVK_GRAPH_GUARDS);
  IvkTensor *x = ivk_graph_input (g, "x", IVK_F32, 2, shape);
  IvkTensor *t = x;
  for (int i = 0; i < 6; i++)
    t = ivk_scale (g, ivk_silu (g, t), 1.0f + 0.1f * i, -0.05f);
  IvkTensor *out = ivk_graph_output (g, ivk_add (g, t, x), "out");
  g_autoptr (GError) error = NULL;
  g_assert_true (ivk_graph_compile (g, &error));
  g_assert_no_error (error);
  IvkGraphStats st;
  ivk_graph_get_stats (g, &st);
  g_test_message ("arena %" G_GUINT64_FORMAT " bytes, naive %" G_GUINT64_FORMAT ", %u barriers",
                  st.arena_bytes, st.naive_bytes, st.n_barriers);
  g_assert_cmpuint (st.n_nodes, ==, 13);
  g_assert_cmpuint (st.arena_bytes, <, st.naive_bytes);
  g_autofree float *xin = g_new (float, n);
  g_autofree float *want = g_new (float, n);
  g_autofree float *tmp = g_new (float, n);
  g_autofree float *got = g_new (float, n);
  for (int run = 0; run < 2; run++)
    {
      test_fill_random (xin, n, 1234 + run, -3, 3);
      g_assert_true (ivk_tensor_write_f32 (x, xin, n, &error));
      g_assert_true (ivk_graph_run (g, &error));
      g_assert_true (ivk_graph_check_guards (g, &error));
      g_assert_true (ivk_tensor_read_f32 (out, got, n, &error));
      memcpy (want, xin, n * sizeof (float));
      for (int i = 0; i < 6; i++)
        {
          ref_unary (want, tmp, n, REF_UNARY_SILU, 0, 0);
          ref_unary (tmp, want, n, REF_UNARY_SCALE, 1.0f + 0.1f * i, -0.05f);
        }
      for (gsize i = 0; i < n; i++)
        want[i] += xin[i];
      double err = test_max_err_over_rms (got, want, n);
      g_test_message ("run %d: max|err|/rms = %.3g", run, err);
      g_assert_cmpfloat (err, <, 1e-5);
    }
}

/* The guard check must be able to fail: scribble past an output's end. */
static void
test_guards_detect (void)
{
  if (!require_device (NULL))
    return;
  const gint64 shape[1] = { 10 };
  g_autoptr (IvkGraph) g = ivk_graph_new (ctx, "guards", IVK_GRAPH_GUARDS);
  IvkTensor *x = ivk_graph_input (g, "x", IVK_F32, 1, shape);
  IvkTensor *out = ivk_graph_output (g, ivk_silu (g, x), "out");
  g_autoptr (GError) error = NULL;
  g_assert_true (ivk_graph_compile (g, &error));
  float data[10] = { 0 };
  g_assert_true (ivk_tensor_write_f32 (x, data, 10, &error));
  g_assert_true (ivk_graph_run (g, &error));
  g_assert_true (ivk_graph_check_guards (g, &error));
  guint32 scribble = 0;
  g_assert_true (ivk_buffer_write (out->buffer, out->offset + 40, &scribble, 4, &error));
  g_assert_false (ivk_graph_check_guards (g, &error));
  g_assert_nonnull (error);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "out"));
}

/* ================================================================================
 * error paths
 * ================================================================================ */

static void
test_error_no_device (void)
{
  if (!require_device (NULL))
    return;
  g_autoptr (GError) error = NULL;
  IvkContextOptions opt = { .device = "no-such-gpu-xyz" };
  IvkContext *c = ivk_context_new (&opt, &error);
  g_assert_null (c);
  g_assert_error (error, IVK_ERROR, IVK_ERROR_NO_DEVICE);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "IMPASTO_DEVICE"));
  g_clear_error (&error);

  /* the same through the environment */
  g_setenv ("IMPASTO_DEVICE", "nonexistent", TRUE);
  c = ivk_context_new (NULL, &error);
  g_unsetenv ("IMPASTO_DEVICE");
  g_assert_null (c);
  g_assert_error (error, IVK_ERROR, IVK_ERROR_NO_DEVICE);
  g_assert_nonnull (strstr (error->message, "nonexistent"));
}

/* No Vulkan driver at all: the loader finds no ICD. Runs in a subprocess
 * because the loader's driver list comes from the environment. */
static void
test_error_no_driver (void)
{
  if (g_test_subprocess ())
    {
      g_setenv ("VK_DRIVER_FILES", "/nonexistent/impasto-no-icd.json", TRUE);
      g_setenv ("VK_ICD_FILENAMES", "/nonexistent/impasto-no-icd.json", TRUE);
      g_autoptr (GError) error = NULL;
      IvkContext *c = ivk_context_new (NULL, &error);
      g_assert_null (c);
      g_assert_error (error, IVK_ERROR, IVK_ERROR_NO_DEVICE);
      g_printerr ("message: %s\n", error->message);
      g_assert_nonnull (strstr (error->message, "mesa-vulkan-drivers"));
      return;
    }
  g_test_trap_subprocess (NULL, 0, G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_passed ();
  g_test_trap_assert_stderr ("*mesa-vulkan-drivers*");
}

static void
test_error_no_fp16 (void)
{
  if (!require_device (NULL))
    return;
  g_autoptr (GError) error = NULL;
  g_setenv ("IMPASTO_NO_FP16", "1", TRUE);
  g_autoptr (IvkContext) c = ivk_context_new (NULL, &error);
  g_unsetenv ("IMPASTO_NO_FP16");
  g_assert_no_error (error);
  g_assert_false (ivk_context_get_info (c)->use_fp16);
  IvkContextOptions opt = { .no_fp16 = TRUE };
  g_autoptr (IvkContext) c2 = ivk_context_new (&opt, &error);
  g_assert_no_error (error);
  g_assert_false (ivk_context_get_info (c2)->use_fp16);
  /* without the switch, fp16 follows the device */
  g_assert_cmpint (ivk_context_get_info (ctx)->use_fp16, ==,
                   ivk_context_get_info (ctx)->fp16_storage && !g_getenv ("IMPASTO_NO_FP16"));
}

/* Build a graph with one bad op; compile must fail with IVK_ERROR_SHAPE. */
typedef IvkTensor *(*BadOp) (IvkGraph *g, IvkTensor *x, IvkWeightStore *ws);

static IvkTensor *
weight (IvkWeightStore *ws, int ndim, gint64 a, gint64 b, gint64 c, gint64 d)
{
  gint64 shape[4] = { a, b, c, d };
  g_autoptr (GError) error = NULL;
  IvkTensor *t = ivk_weight_store_add (ws, "w", IVK_F32, ndim, shape, NULL, &error);
  g_assert_no_error (error);
  return t;
}

static IvkTensor *
bad_matmul (IvkGraph *g, IvkTensor *x, IvkWeightStore *ws)
{
  return ivk_matmul (g, x, weight (ws, 2, 7, 3, 1, 1), NULL, NULL, 1, 0); /* K 8 vs 7 */
}

static IvkTensor *
bad_linear_bias (IvkGraph *g, IvkTensor *x, IvkWeightStore *ws)
{
  return ivk_linear (g, x, weight (ws, 2, 5, 8, 1, 1), weight (ws, 1, 4, 1, 1, 1));
}

static IvkTensor *
bad_conv (IvkGraph *g, IvkTensor *x, IvkWeightStore *ws)
{
  gint64 s[4] = { 1, 2, 3, 8 };
  return ivk_conv2d (g, ivk_reshape (g, x, 4, s), weight (ws, 4, 4, 3, 3, 3), NULL, NULL);
}

static IvkTensor *
bad_group_norm (IvkGraph *g, IvkTensor *x, IvkWeightStore *ws)
{
  gint64 s[4] = { 1, 6, 2, 4 };
  return ivk_group_norm (g, ivk_reshape (g, x, 4, s), weight (ws, 1, 6, 1, 1, 1),
                         weight (ws, 1, 6, 1, 1, 1), 4, 1e-5f, FALSE); /* 6 % 4 */
}

static IvkTensor *
bad_attention (IvkGraph *g, IvkTensor *x, IvkWeightStore *ws)
{
  gint64 s[3] = { 1, 6, 8 };
  IvkTensor *q = ivk_reshape (g, x, 3, s);
  IvkAttentionParams p = { .heads = 3, .scale = 1 }; /* 8 % 3 */
  return ivk_attention (g, q, q, q, &p);
}

static IvkTensor *
bad_binary (IvkGraph *g, IvkTensor *x, IvkWeightStore *ws)
{
  gint64 s[2] = { 4, 12 };
  return ivk_add (g, x, ivk_reshape (g, x, 2, s));
}

static IvkTensor *
bad_concat (IvkGraph *g, IvkTensor *x, IvkWeightStore *ws)
{
  gint64 s[2] = { 8, 6 };
  return ivk_concat (g, x, ivk_reshape (g, x, 2, s), 0);
}

static IvkTensor *
bad_slice (IvkGraph *g, IvkTensor *x, IvkWeightStore *ws)
{
  return ivk_slice (g, x, 1, 5, 4);
}

static IvkTensor *
bad_permute (IvkGraph *g, IvkTensor *x, IvkWeightStore *ws)
{
  int perm[2] = { 1, 1 };
  return ivk_permute (g, x, perm);
}

static IvkTensor *
bad_geglu (IvkGraph *g, IvkTensor *x, IvkWeightStore *ws)
{
  gint64 s[2] = { 16, 3 };
  return ivk_geglu (g, ivk_reshape (g, x, 2, s));
}

static IvkTensor *
bad_reshape (IvkGraph *g, IvkTensor *x, IvkWeightStore *ws)
{
  gint64 s[2] = { 5, 10 };
  return ivk_reshape (g, x, 2, s);
}

static IvkTensor *
bad_dtype (IvkGraph *g, IvkTensor *x, IvkWeightStore *ws)
{
  gint64 s[2] = { 6, 8 };
  IvkTensor *ids = ivk_graph_input (g, "ids", IVK_I32, 2, s);
  return ivk_add (g, x, ids);
}

static void
test_error_shape (gconstpointer data)
{
  if (!require_device (NULL))
    return;
  BadOp op = (BadOp) data;
  g_autoptr (IvkWeightStore) ws = ivk_weight_store_new (ctx);
  g_autoptr (IvkGraph) g = ivk_graph_new (ctx, "bad", 0);
  gint64 s[2] = { 6, 8 };
  IvkTensor *x = ivk_graph_input (g, "x", IVK_F32, 2, s);
  IvkTensor *t = op (g, x, ws);
  g_assert_null (t);
  g_assert_true (ivk_graph_failed (g));
  /* later ops given NULL return NULL silently; the first error stays */
  g_assert_null (ivk_silu (g, t));
  g_assert_null (ivk_graph_output (g, t, "out"));
  g_autoptr (GError) error = NULL;
  g_assert_false (ivk_graph_compile (g, &error));
  g_assert_error (error, IVK_ERROR, IVK_ERROR_SHAPE);
  g_test_message ("%s", error->message);
}

/* The sticky-error rule: the first error wins, even over different later
 * errors; healthy ops after a failure also return NULL; compile returns the
 * stored error and ivk_graph_get_error gives the same. */
static void
test_error_sticky (void)
{
  if (!require_device (NULL))
    return;
  g_autoptr (IvkGraph) g = ivk_graph_new (ctx, "sticky", 0);
  gint64 s[2] = { 6, 8 };
  IvkTensor *x = ivk_graph_input (g, "x", IVK_F32, 2, s);
  IvkTensor *ok = ivk_silu (g, x);
  g_assert_nonnull (ok);
  g_assert_false (ivk_graph_failed (g));
  g_assert_null (ivk_slice (g, ok, 1, 7, 7)); /* first error: slice */
  g_assert_true (ivk_graph_failed (g));
  g_assert_null (ivk_silu (g, ok));           /* a healthy op on a healthy tensor */
  int perm[2] = { 0, 0 };
  g_assert_null (ivk_permute (g, ok, perm));  /* a different error */
  g_assert_null (ivk_graph_input (g, "y", IVK_F32, 2, s));
  const GError *stored = ivk_graph_get_error (g);
  g_assert_nonnull (stored);
  g_assert_nonnull (strstr (stored->message, "slice"));
  g_autoptr (GError) error = NULL;
  g_assert_false (ivk_graph_compile (g, &error));
  g_assert_error (error, IVK_ERROR, IVK_ERROR_SHAPE);
  g_assert_cmpstr (error->message, ==, stored->message);
}

static void
test_error_limits (void)
{
  if (!require_device (NULL))
    return;
  const IvkDeviceInfo *info = ivk_context_get_info (ctx);
  g_autoptr (GError) error = NULL;

  /* a buffer over maxMemoryAllocationSize: refused before allocating */
  IvkBuffer *b = ivk_buffer_new (ctx, info->max_allocation_size + 4096, IVK_MEMORY_DEVICE, &error);
  g_assert_null (b);
  g_assert_error (error, IVK_ERROR, IVK_ERROR_LIMIT);
  g_test_message ("%s", error->message);
  g_clear_error (&error);

  /* a weight over maxStorageBufferRange */
  g_autoptr (IvkWeightStore) ws = ivk_weight_store_new (ctx);
  gint64 big = (gint64) (info->max_storage_buffer_range / 4 + 16);
  g_assert_null (ivk_weight_store_add (ws, "huge", IVK_F32, 1, &big, NULL, &error));
  g_assert_error (error, IVK_ERROR, IVK_ERROR_LIMIT);
  g_clear_error (&error);

  /* a graph tensor bound over maxStorageBufferRange: compile fails. (The
   * host memory is allocated but never touched.) */
  if (info->max_storage_buffer_range > ((guint64) 1 << 31))
    {
      g_test_message ("maxStorageBufferRange %" G_GUINT64_FORMAT " is too large to test cheaply",
                      info->max_storage_buffer_range);
      return;
    }
  g_autoptr (IvkGraph) g = ivk_graph_new (ctx, "limits", 0);
  IvkTensor *x = ivk_graph_input (g, "x", IVK_F32, 1, &big);
  ivk_graph_output (g, ivk_silu (g, x), "out");
  g_assert_false (ivk_graph_compile (g, &error));
  g_assert_error (error, IVK_ERROR, IVK_ERROR_LIMIT);
  g_test_message ("%s", error->message);
  g_assert_nonnull (strstr (error->message, "maxStorageBufferRange"));
}

/* Only graph inputs, outputs and persistent tensors are host-accessible: an
 * intermediate's arena memory is reused by later tensors. */
static void
test_error_read_intermediate (void)
{
  if (!require_device (NULL))
    return;
  g_autoptr (IvkGraph) g = ivk_graph_new (ctx, "io", 0);
  gint64 s[1] = { 16 };
  IvkTensor *x = ivk_graph_input (g, "x", IVK_F32, 1, s);
  IvkTensor *mid = ivk_silu (g, x);
  IvkTensor *out = ivk_graph_output (g, ivk_silu (g, mid), "out");
  float buf[16] = { 0 };
  g_autoptr (GError) error = NULL;
  /* before compile nothing has storage */
  g_assert_false (ivk_tensor_write_f32 (x, buf, 16, &error));
  g_assert_error (error, IVK_ERROR, IVK_ERROR_FAILED);
  g_clear_error (&error);
  g_assert_true (ivk_graph_compile (g, &error));
  g_assert_true (ivk_tensor_write_f32 (x, buf, 16, &error));
  g_assert_true (ivk_graph_run (g, &error));
  g_assert_true (ivk_tensor_read_f32 (out, buf, 16, &error));
  g_assert_false (ivk_tensor_read_f32 (mid, buf, 16, &error));
  g_assert_error (error, IVK_ERROR, IVK_ERROR_FAILED);
  g_test_message ("%s", error->message);
  g_clear_error (&error);
  /* ops after compile are refused */
  g_assert_null (ivk_silu (g, out));
  g_assert_true (ivk_graph_failed (g));
}

/* A tensor of another graph is refused. */
static void
test_error_foreign_tensor (void)
{
  if (!require_device (NULL))
    return;
  g_autoptr (IvkGraph) g1 = ivk_graph_new (ctx, "one", 0);
  g_autoptr (IvkGraph) g2 = ivk_graph_new (ctx, "two", 0);
  gint64 s[1] = { 4 };
  IvkTensor *x = ivk_graph_input (g1, "x", IVK_F32, 1, s);
  g_assert_null (ivk_silu (g2, x));
  g_assert_true (ivk_graph_failed (g2));
  g_assert_false (ivk_graph_failed (g1));
}

/* Under IMPASTO_VALIDATION=1 the layer must really be there and counted:
 * provoke one invalid call (a zero-sized VkBuffer) and expect a message.
 * Without validation the case skips, saying so. */
static void
test_validation_active (void)
{
  if (!require_device (NULL))
    return;
  const char *v = g_getenv ("IMPASTO_VALIDATION");
  if (!v || !*v || strcmp (v, "0") == 0)
    {
      g_test_skip ("validation is off (IMPASTO_VALIDATION=1 turns it on)");
      return;
    }
  guint before = ivk_context_get_validation_messages (ctx);
  VkBufferCreateInfo ci = {
    .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
    .size = 0, /* VUID-VkBufferCreateInfo-size-00912 */
    .usage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT,
  };
  VkBuffer buf = VK_NULL_HANDLE;
  g_printerr ("test-ops: the next validation message is provoked on purpose:\n");
  if (vkCreateBuffer (ctx->device, &ci, NULL, &buf) == VK_SUCCESS && buf)
    vkDestroyBuffer (ctx->device, buf, NULL);
  g_assert_cmpuint (ivk_context_get_validation_messages (ctx), >, before);
}

/* ================================================================================ */

/* Under LeakSanitizer: the Vulkan loader dlclose()s the driver when the last
 * instance goes, and the driver's one-time allocations held by its globals
 * then look leaked, from an unmapped "<unknown module>" that no suppression
 * can name. Pinning every library loaded so far (RTLD_NODELETE) keeps the
 * driver mapped until exit: its reachable allocations are not reported and
 * real leaks inside it keep their module name for tests/lsan.supp. */
#if defined(__SANITIZE_ADDRESS__)
static int
pin_one (struct dl_phdr_info *info, size_t size, void *data)
{
  if (info->dlpi_name && info->dlpi_name[0] == '/')
    dlopen (info->dlpi_name, RTLD_LAZY | RTLD_NOLOAD | RTLD_NODELETE);
  return 0;
}
#endif

static void
pin_loaded_libraries (void)
{
#if defined(__SANITIZE_ADDRESS__)
  dl_iterate_phdr (pin_one, NULL);
#endif
}

static void
teardown_context (void)
{
  if (!ctx)
    return;
  guint n = ivk_context_get_validation_messages (ctx);
  if (n > 0)
    g_printerr ("test-ops: %u Vulkan validation message(s) in total (one is provoked on purpose "
                "by /ops/validation/layer-active)\n", n);
  g_clear_pointer (&ctx, ivk_context_unref);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  const char *salt = g_getenv ("IMPASTO_TEST_SEED");
  seed_salt = salt ? g_ascii_strtoull (salt, NULL, 10) * 0x9E3779B97F4A7C15ull : 0;

  if (!g_test_subprocess ())
    {
      g_autoptr (GError) error = NULL;
      ctx = ivk_context_new (NULL, &error);
      if (!ctx)
        {
          no_ctx_reason = g_strdup_printf ("no usable Vulkan device: %s", error->message);
          g_printerr ("test-ops: SKIPPING every GPU case: %s\n", no_ctx_reason);
        }
      else
        {
          pin_loaded_libraries ();
          const IvkDeviceInfo *info = ivk_context_get_info (ctx);
          g_printerr ("test-ops: device %s (%s), fp16 storage %d, validation %s\n", info->name,
                      info->driver, info->fp16_storage,
                      g_getenv ("IMPASTO_VALIDATION") ? g_getenv ("IMPASTO_VALIDATION") : "off");
        }
    }

  g_test_add_func ("/ops/half/host-conversion", test_half_host);
  g_test_add_func ("/ops/graph/chain-reuse-replay", test_graph_chain);
  g_test_add_func ("/ops/graph/guards-detect-overrun", test_guards_detect);
  g_test_add_func ("/ops/validation/layer-active", test_validation_active);
  g_test_add_func ("/ops/errors/no-device", test_error_no_device);
  g_test_add_func ("/ops/errors/no-driver", test_error_no_driver);
  g_test_add_func ("/ops/errors/no-fp16", test_error_no_fp16);
  g_test_add_func ("/ops/errors/sticky", test_error_sticky);
  g_test_add_func ("/ops/errors/limits", test_error_limits);
  g_test_add_func ("/ops/errors/read-intermediate", test_error_read_intermediate);
  g_test_add_func ("/ops/errors/foreign-tensor", test_error_foreign_tensor);
  static const struct { const char *name; BadOp op; } bad[] = {
    { "matmul", bad_matmul }, { "linear-bias", bad_linear_bias }, { "conv2d", bad_conv },
    { "group_norm", bad_group_norm }, { "attention", bad_attention }, { "binary", bad_binary },
    { "concat", bad_concat }, { "slice", bad_slice }, { "permute", bad_permute },
    { "geglu", bad_geglu }, { "reshape", bad_reshape }, { "dtype", bad_dtype },
  };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_autofree char *path = g_strdup_printf ("/ops/errors/shape/%s", bad[i].name);
      g_test_add_data_func (path, (gconstpointer) bad[i].op, test_error_shape);
    }
  for (Prec p = P_F32; p <= P_F16; p++)
    {
      Head *h = g_new0 (Head, 1);
      add_case (h, "cast", p, p == P_F32 ? "to-f16" : "to-f32", 0, test_cast);
    }
  add_matmul_cases ();
  add_conv_cases ();
  add_norm_cases ();
  add_attention_cases ();
  add_unary_cases ();
  add_binary_cases ();
  add_geglu_cases ();
  add_move_cases ();
  add_embedding_cases ();

  int rc = g_test_run ();
  teardown_context ();
  g_free (no_ctx_reason);
  return rc;
}
