/* sd-schedule.c: training noise schedules and diffusers' set_timesteps.
 *
 * The numbers must agree with diffusers 0.27 + PyTorch + NumPy to the last bit
 * where that is possible, because the timesteps are compared exactly and the
 * sigmas to 1e-6. So each formula below mirrors the arithmetic of its reference
 * (PyTorch float32 kernels, NumPy float64 helpers), with the reference named.
 */
#include "config.h"

#include "sd-schedule-private.h"
#include "sd-error.h"

#include <math.h>
#include <string.h>

void
sd_scheduler_config_set_defaults (SdSchedulerConfig *cfg)
{
  g_return_if_fail (cfg != NULL);
  memset (cfg, 0, sizeof *cfg);
  cfg->num_train_timesteps = 1000;
  cfg->beta_start = 0.00085;
  cfg->beta_end = 0.012;
  g_strlcpy (cfg->beta_schedule, "scaled_linear", sizeof cfg->beta_schedule);
  cfg->prediction = SD_PREDICTION_EPSILON;
  cfg->prediction_known = FALSE;
  cfg->steps_offset = 1;
  g_strlcpy (cfg->timestep_spacing, "leading", sizeof cfg->timestep_spacing);
}

gboolean
sd_timestep_spacing_from_name (const char *name, SdTimestepSpacing *spacing, GError **error)
{
  g_return_val_if_fail (spacing != NULL, FALSE);
  if (name == NULL || *name == '\0' || g_ascii_strcasecmp (name, "leading") == 0)
    *spacing = SD_SPACING_LEADING;
  else if (g_ascii_strcasecmp (name, "trailing") == 0)
    *spacing = SD_SPACING_TRAILING;
  else if (g_ascii_strcasecmp (name, "linspace") == 0)
    *spacing = SD_SPACING_LINSPACE;
  else
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "unknown timestep spacing '%s' (valid: leading, trailing, linspace)", name);
      return FALSE;
    }
  return TRUE;
}

/* torch.linspace (start, end, steps, dtype=float32) on the CPU (PyTorch 1.13
 * RangeFactoriesKernel.cpp): step = (end - start) / (steps - 1) in float; the
 * first half counts up from start, the second half down from end. The AVX2
 * kernel fills 8-wide vectors two at a time as base + k * step with base from
 * the scalar formula, and the compiler fuses the multiply-adds; the remainder
 * (< 16 elements) uses the scalar formula. Reproducing this (with fmaf) gives
 * the golden betas bit for bit; plain float arithmetic differs in ~1/4 of them
 * by an ulp. */
static float
torch_linspace_scalar (float start, float end, float step, int steps, int idx)
{
  if (idx < steps / 2)
    return fmaf (step, (float)idx, start);
  return fmaf (-step, (float)(steps - idx - 1), end);
}

static void
torch_linspace_f32 (float start, float end, int steps, float *out)
{
  if (steps == 1)
    {
      out[0] = start;
      return;
    }
  float step = (end - start) / (float)(steps - 1);
  int i = 0;
  for (; i <= steps - 16; i += 16)
    for (int v = 0; v < 2; v++)
      {
        int idx = i + 8 * v;
        float base = torch_linspace_scalar (start, end, step, steps, idx);
        for (int k = 0; k < 8; k++)
          out[idx + k] = fmaf ((float)k, step, base);
      }
  for (; i < steps; i++)
    out[i] = torch_linspace_scalar (start, end, step, steps, i);
}

/* diffusers: betas = linspace(beta_start**0.5, beta_end**0.5, N, float32)**2
 * (scaled_linear) or linspace(beta_start, beta_end, N, float32) (linear);
 * alphas = 1 - betas; alphas_cumprod = torch.cumprod(alphas), whose CPU kernel
 * accumulates in double (at::acc_type<float, false>) and rounds each entry. */
static gboolean
compute_alphas_cumprod (const SdSchedulerConfig *cfg, float *ac, GError **error)
{
  int n = cfg->num_train_timesteps;
  g_autofree float *betas = g_new (float, n);

  if (g_ascii_strcasecmp (cfg->beta_schedule, "scaled_linear") == 0)
    {
      /* Python's x**0.5 is pow (x, 0.5). */
      torch_linspace_f32 ((float)pow (cfg->beta_start, 0.5), (float)pow (cfg->beta_end, 0.5), n,
                          betas);
      for (int i = 0; i < n; i++)
        betas[i] = betas[i] * betas[i];
    }
  else if (g_ascii_strcasecmp (cfg->beta_schedule, "linear") == 0)
    torch_linspace_f32 ((float)cfg->beta_start, (float)cfg->beta_end, n, betas);
  else
    {
      g_set_error (error, SD_ERROR, SD_ERROR_UNSUPPORTED,
                   "unsupported beta_schedule '%s' (supported: scaled_linear, linear)",
                   cfg->beta_schedule);
      return FALSE;
    }

  double cum = 1.0;
  for (int i = 0; i < n; i++)
    {
      float alpha = 1.0f - betas[i];
      cum *= (double)alpha;
      ac[i] = (float)cum;
    }
  return TRUE;
}

/* np.interp (x, arange (n), fp) for float32 fp, evaluated in double as NumPy
 * does (slope * (x - x_j) + fp[j]; exact knots return fp[j]; clamped ends). */
static double
np_interp_arange (double x, const float *fp, int n)
{
  if (!(x > 0.0))
    return fp[0]; /* also NaN -> left value, as good as any */
  if (x >= (double)(n - 1))
    return fp[n - 1];
  int j = (int)floor (x);
  if (x == (double)j)
    return fp[j];
  double slope = ((double)fp[j + 1] - (double)fp[j]) / 1.0;
  return slope * (x - (double)j) + (double)fp[j];
}

/* np.linspace (start, stop, num, endpoint) in float64: y = i * step + start,
 * the last = stop exactly when endpoint; num == 1 gives [start]. */
static double
np_linspace (double start, double stop, int num, gboolean endpoint, int i)
{
  int div = endpoint ? num - 1 : num;
  if (div <= 0)
    return start;
  if (endpoint && i == num - 1)
    return stop;
  double step = (stop - start) / (double)div;
  return (double)i * step + start;
}

/* np.arange (start, 0, -step) with float step, NumPy's way: element i =
 * start + i * d with d = (start + delta) - start (the fill function recomputes
 * delta from the first two elements). */
static double
np_arange_down (double start, double step, int i)
{
  if (i == 0)
    return start;
  double d = (start + -step) - start;
  if (i == 1)
    return start + -step;
  return start + (double)i * d;
}

/* diffusers _convert_to_karras: rho = 7, ramp = np.linspace(0, 1, N), all in
 * float64 (sigma_min/max are float32 values taken with .item()). */
static void
karras_sigmas (double sigma_min, double sigma_max, int n, double *out)
{
  const double rho = 7.0;
  double min_inv_rho = pow (sigma_min, 1.0 / rho);
  double max_inv_rho = pow (sigma_max, 1.0 / rho);
  for (int i = 0; i < n; i++)
    {
      double ramp = np_linspace (0.0, 1.0, n, TRUE, i);
      out[i] = pow (max_inv_rho + ramp * (min_inv_rho - max_inv_rho), rho);
    }
}

/* diffusers _sigma_to_t: the (fractional) timestep whose log-sigma a sigma
 * has, interpolating linearly in log-sigma between neighbouring integer
 * timesteps. NumPy 1.x type rules make most of it float32: log_sigmas is a
 * float32 array, and the float64 scalar log(sigma) is cast to float32 when
 * combined with it (value-based casting); only the final blend
 * (1 - w) * low_idx + w * high_idx is float64 (float32 array times int64). */
static double
sigma_to_t (double sigma, const float *log_sigmas, int n)
{
  double log_sigma = log (fmax (sigma, 1e-10));
  float ls = (float)log_sigma;
  /* low_idx = cumsum (dists >= 0).argmax () = the last index with
   * log_sigmas[i] <= log_sigma (0 when there is none), at most n - 2. */
  int low = 0;
  for (int i = 0; i < n; i++)
    if (ls - log_sigmas[i] >= 0.0f)
      low = i;
  if (low > n - 2)
    low = n - 2;
  int high = low + 1;
  float lo = log_sigmas[low], hi = log_sigmas[high];
  float w = (lo - ls) / (lo - hi);
  w = w < 0.0f ? 0.0f : (w > 1.0f ? 1.0f : w);
  return (double)(1.0f - w) * (double)low + (double)w * (double)high;
}

static SdTimestepSpacing
resolve_spacing (const SdSchedulerConfig *cfg, const SdScheduleOptions *opts, GError **error)
{
  SdTimestepSpacing sp;
  if (opts != NULL && opts->spacing != SD_SPACING_CONFIG)
    return opts->spacing;
  if (!sd_timestep_spacing_from_name (cfg->timestep_spacing, &sp, error))
    return SD_SPACING_CONFIG;
  return sp;
}

/* Timesteps of the Euler / DDIM family (EulerDiscreteScheduler and
 * DDIMScheduler.set_timesteps), as doubles: N of them. */
static void
spaced_timesteps (SdTimestepSpacing spacing, int n_train, int steps_offset, int n,
                  gboolean round_linspace, double *ts)
{
  switch (spacing)
    {
    case SD_SPACING_LINSPACE:
      /* Euler: np.linspace (0, T-1, N, dtype=float32)[::-1] (not rounded);
       * DDIM: np.linspace (0, T-1, N).round ()[::-1]. */
      for (int i = 0; i < n; i++)
        {
          double v = np_linspace (0.0, n_train - 1, n, TRUE, n - 1 - i);
          ts[i] = round_linspace ? rint (v) : (double)(float)v;
        }
      break;
    case SD_SPACING_TRAILING:
      {
        /* np.round (np.arange (T, 0, -T / N)) - 1. NumPy's arange yields N + 1
         * elements for some N (61, 103, 121, ...: T / (T / N) rounds above N);
         * the extra last one is timestep -1, which diffusers would then run as
         * an extra step. We keep the N requested. */
        double step = (double)n_train / (double)n;
        for (int i = 0; i < n; i++)
          ts[i] = rint (np_arange_down (n_train, step, i)) - 1.0;
        break;
      }
    case SD_SPACING_LEADING:
    default:
      {
        /* (np.arange (0, N) * (T // N)).round ()[::-1] + steps_offset */
        int ratio = n_train / n;
        for (int i = 0; i < n; i++)
          ts[i] = (double)((n - 1 - i) * ratio + steps_offset);
        break;
      }
    }
}

/* DPMSolverMultistepScheduler.set_timesteps: N + 1 points with the last
 * dropped (lambda_min_clipped = -inf, so last_timestep = T). */
static void
dpm_timesteps (SdTimestepSpacing spacing, int n_train, int steps_offset, int n, double *ts)
{
  switch (spacing)
    {
    case SD_SPACING_LINSPACE:
      /* np.linspace (0, T - 1, N + 1).round ()[::-1][:-1] */
      for (int i = 0; i < n; i++)
        ts[i] = rint (np_linspace (0.0, n_train - 1, n + 1, TRUE, n - i));
      break;
    case SD_SPACING_TRAILING:
      {
        double step = (double)n_train / (double)n;
        for (int i = 0; i < n; i++)
          ts[i] = rint (np_arange_down (n_train, step, i)) - 1.0;
        break;
      }
    case SD_SPACING_LEADING:
    default:
      {
        /* step_ratio = T // (N + 1); (np.arange (0, N + 1) * ratio)[::-1][:-1] + offset */
        int ratio = n_train / (n + 1);
        for (int i = 0; i < n; i++)
          ts[i] = (double)((n - i) * ratio + steps_offset);
        break;
      }
    }
}

/* LCMScheduler.set_timesteps (strength 1): k = T // original_steps; candidate
 * timesteps k*j - 1 for j = 1..original_steps, reversed; take the entries at
 * floor (np.linspace (0, original_steps, N, endpoint=False)). */
static gboolean
lcm_timesteps (int n_train, int original_steps, int n, double *ts, GError **error)
{
  int k = n_train / original_steps;
  if (k < 1)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "LCM original_inference_steps %d exceeds num_train_timesteps %d", original_steps,
                   n_train);
      return FALSE;
    }
  if (n > original_steps)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "LCM takes at most %d steps (original_inference_steps), not %d", original_steps,
                   n);
      return FALSE;
    }
  for (int i = 0; i < n; i++)
    {
      int idx = (int)floor (np_linspace (0.0, original_steps, n, FALSE, i));
      /* reversed candidates: index idx holds k * (original_steps - idx) - 1 */
      ts[i] = (double)(k * (original_steps - idx) - 1);
    }
  return TRUE;
}

SdSchedule *
sd_schedule_new (const SdSchedulerConfig *cfg, SdSamplerKind kind, int steps,
                 const SdScheduleOptions *opts, GError **error)
{
  g_return_val_if_fail (cfg != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if ((int)kind < 0 || kind >= SD_SAMPLER_N_KINDS)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "invalid sampler kind %d", (int)kind);
      return NULL;
    }
  int n_train = cfg->num_train_timesteps;
  if (n_train < 2 || n_train > 100000)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "num_train_timesteps %d out of range (2..100000)", n_train);
      return NULL;
    }
  if (!(cfg->beta_start > 0.0 && cfg->beta_end > cfg->beta_start && cfg->beta_end < 1.0))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "invalid betas %g..%g (need 0 < beta_start < beta_end < 1)", cfg->beta_start,
                   cfg->beta_end);
      return NULL;
    }
  if (steps < 1 || steps > n_train)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "steps must be 1..%d, not %d", n_train,
                   steps);
      return NULL;
    }
  gboolean karras = kind == SD_SAMPLER_DPMPP_2M_KARRAS || (opts != NULL && opts->karras);
  if (karras && (kind == SD_SAMPLER_DDIM || kind == SD_SAMPLER_LCM))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "Karras sigmas are not available with the %s sampler", sd_sampler_name (kind));
      return NULL;
    }
  SdTimestepSpacing spacing = resolve_spacing (cfg, opts, error);
  if (spacing == SD_SPACING_CONFIG)
    return NULL;

  g_autoptr (SdSchedule) s = g_new0 (SdSchedule, 1);
  s->kind = kind;
  s->karras = karras;
  s->spacing = spacing;
  s->prediction = (opts != NULL && opts->force_prediction) ? opts->prediction : cfg->prediction;
  if (s->prediction != SD_PREDICTION_EPSILON && s->prediction != SD_PREDICTION_V)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "invalid prediction type %d",
                   (int)s->prediction);
      return NULL;
    }
  s->set_alpha_to_one = opts != NULL && opts->set_alpha_to_one;
  s->integer_timesteps = !sd_kind_is_euler (kind);
  s->n_train = n_train;
  s->n_steps = steps;
  s->ddim_step_ratio = n_train / steps;
  s->alphas_cumprod = g_new (float, n_train);
  s->train_sigmas = g_new (float, n_train);
  s->timesteps = g_new (float, steps);
  s->sigmas = g_new (float, steps + 1);

  if (!compute_alphas_cumprod (cfg, s->alphas_cumprod, error))
    return NULL;
  /* diffusers: ((1 - ac) / ac) ** 0.5 on float32 tensors (pow 0.5 is sqrt). */
  for (int i = 0; i < n_train; i++)
    s->train_sigmas[i] = sqrtf ((1.0f - s->alphas_cumprod[i]) / s->alphas_cumprod[i]);

  g_autofree double *ts = g_new (double, steps);
  g_autofree double *sig = g_new (double, steps);
  g_autofree float *log_sigmas = NULL;
  if (karras)
    {
      log_sigmas = g_new (float, n_train);
      for (int i = 0; i < n_train; i++)
        log_sigmas[i] = logf (s->train_sigmas[i]);
    }

  switch (kind)
    {
    case SD_SAMPLER_EULER:
    case SD_SAMPLER_EULER_A:
      spaced_timesteps (spacing, n_train, cfg->steps_offset, steps, FALSE, ts);
      /* Euler's float32 timesteps: astype (float32) (+ steps_offset in float32,
       * exact for these whole numbers). */
      for (int i = 0; i < steps; i++)
        ts[i] = (float)ts[i];
      for (int i = 0; i < steps; i++)
        sig[i] = np_interp_arange (ts[i], s->train_sigmas, n_train);
      if (karras)
        {
          /* EulerDiscreteScheduler: Karras between the interpolated ends, then
           * fractional timesteps from log-sigma (not rounded). */
          karras_sigmas (sig[steps - 1], sig[0], steps, sig);
          for (int i = 0; i < steps; i++)
            ts[i] = (float)sigma_to_t (sig[i], log_sigmas, n_train);
        }
      break;
    case SD_SAMPLER_DDIM:
      spaced_timesteps (spacing, n_train, cfg->steps_offset, steps, TRUE, ts);
      for (int i = 0; i < steps; i++)
        sig[i] = np_interp_arange (ts[i], s->train_sigmas, n_train);
      break;
    case SD_SAMPLER_DPMPP_2M:
    case SD_SAMPLER_DPMPP_2M_KARRAS:
      dpm_timesteps (spacing, n_train, cfg->steps_offset, steps, ts);
      if (karras)
        {
          /* DPMSolverMultistepScheduler: Karras over the whole training range
           * (sigma(0) .. sigma(T-1)), timesteps rounded. */
          karras_sigmas (s->train_sigmas[0], s->train_sigmas[n_train - 1], steps, sig);
          for (int i = 0; i < steps; i++)
            ts[i] = rint (sigma_to_t (sig[i], log_sigmas, n_train));
        }
      else
        for (int i = 0; i < steps; i++)
          sig[i] = np_interp_arange (ts[i], s->train_sigmas, n_train);
      break;
    case SD_SAMPLER_LCM:
      {
        int orig = (opts != NULL && opts->lcm_original_steps > 0) ? opts->lcm_original_steps : 50;
        if (!lcm_timesteps (n_train, orig, steps, ts, error))
          return NULL;
        for (int i = 0; i < steps; i++)
          sig[i] = np_interp_arange (ts[i], s->train_sigmas, n_train);
        break;
      }
    default:
      g_assert_not_reached ();
    }

  for (int i = 0; i < steps; i++)
    {
      if (!(ts[i] >= 0.0 && ts[i] <= n_train - 1))
        {
          g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                       "%d steps with %s spacing and steps_offset %d give timestep %g, outside "
                       "0..%d",
                       steps,
                       spacing == SD_SPACING_LEADING    ? "leading"
                       : spacing == SD_SPACING_TRAILING ? "trailing"
                                                        : "linspace",
                       cfg->steps_offset, ts[i], n_train - 1);
          return NULL;
        }
      s->timesteps[i] = (float)ts[i];
      s->sigmas[i] = (float)sig[i];
    }
  s->sigmas[steps] = 0.0f;

  if (sd_kind_is_euler (kind))
    {
      /* init_noise_sigma = sigmas.max () for linspace / trailing spacing, else
       * (max ** 2 + 1) ** 0.5, on float32 tensors. */
      float max_sigma = 0.0f;
      for (int i = 0; i <= steps; i++)
        max_sigma = MAX (max_sigma, s->sigmas[i]);
      s->init_noise_sigma
          = spacing == SD_SPACING_LEADING ? sqrtf (max_sigma * max_sigma + 1.0f) : max_sigma;
    }
  else
    s->init_noise_sigma = 1.0f;

  return g_steal_pointer (&s);
}

void
sd_schedule_free (SdSchedule *s)
{
  if (s == NULL)
    return;
  g_free (s->alphas_cumprod);
  g_free (s->train_sigmas);
  g_free (s->timesteps);
  g_free (s->sigmas);
  g_free (s);
}

SdSamplerKind
sd_schedule_get_kind (const SdSchedule *s)
{
  return s->kind;
}

SdPrediction
sd_schedule_get_prediction (const SdSchedule *s)
{
  return s->prediction;
}

gboolean
sd_schedule_get_karras (const SdSchedule *s)
{
  return s->karras;
}

SdTimestepSpacing
sd_schedule_get_spacing (const SdSchedule *s)
{
  return s->spacing;
}

int
sd_schedule_get_n_steps (const SdSchedule *s)
{
  return s->n_steps;
}

const float *
sd_schedule_get_timesteps (const SdSchedule *s)
{
  return s->timesteps;
}

gboolean
sd_schedule_has_integer_timesteps (const SdSchedule *s)
{
  return s->integer_timesteps;
}

const float *
sd_schedule_get_sigmas (const SdSchedule *s)
{
  return s->sigmas;
}

float
sd_schedule_get_init_noise_sigma (const SdSchedule *s)
{
  return s->init_noise_sigma;
}

const float *
sd_schedule_get_alphas_cumprod (const SdSchedule *s, int *n_train)
{
  if (n_train)
    *n_train = s->n_train;
  return s->alphas_cumprod;
}

const float *
sd_schedule_get_train_sigmas (const SdSchedule *s, int *n_train)
{
  if (n_train)
    *n_train = s->n_train;
  return s->train_sigmas;
}
