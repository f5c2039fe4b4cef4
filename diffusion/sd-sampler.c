/* sd-sampler.c: sampler names, input scaling, noising and the sampling loop.
 *
 * Each step mirrors its diffusers 0.27 scheduler's step() in float32, one
 * rounding per PyTorch operation: scalar coefficients are 0-dim float32
 * tensors there, applied element-wise in the order written. This file is built
 * with -ffp-contract=off so that the compiler does not fuse a * b + c (which
 * PyTorch's separate element-wise kernels never do).
 */
#include "config.h"

#include "sd-schedule-private.h"
#include "sd-error.h"

#include <float.h>
#include <math.h>
#include <string.h>

typedef struct
{
  const char *name;
  const char *display;
  const char *diffusers;
} SamplerName;

static const SamplerName sampler_names[SD_SAMPLER_N_KINDS] = {
  [SD_SAMPLER_EULER] = { "euler", "Euler", "EulerDiscreteScheduler" },
  [SD_SAMPLER_EULER_A] = { "euler_a", "Euler a", "EulerAncestralDiscreteScheduler" },
  [SD_SAMPLER_DDIM] = { "ddim", "DDIM", "DDIMScheduler" },
  [SD_SAMPLER_DPMPP_2M] = { "dpmpp_2m", "DPM++ 2M", "DPMSolverMultistepScheduler" },
  [SD_SAMPLER_DPMPP_2M_KARRAS] = { "dpmpp_2m_karras", "DPM++ 2M Karras", NULL },
  [SD_SAMPLER_LCM] = { "lcm", "LCM", "LCMScheduler" },
};

gboolean
sd_sampler_from_name (const char *name, SdSamplerKind *kind, GError **error)
{
  g_return_val_if_fail (kind != NULL, FALSE);
  if (name != NULL)
    for (int k = 0; k < SD_SAMPLER_N_KINDS; k++)
      {
        const SamplerName *e = &sampler_names[k];
        if (g_ascii_strcasecmp (name, e->name) == 0 || g_ascii_strcasecmp (name, e->display) == 0
            || (e->diffusers != NULL && g_ascii_strcasecmp (name, e->diffusers) == 0))
          {
            *kind = (SdSamplerKind)k;
            return TRUE;
          }
      }

  GString *valid = g_string_new (NULL);
  for (int k = 0; k < SD_SAMPLER_N_KINDS; k++)
    g_string_append_printf (valid, "%s%s", k ? ", " : "", sampler_names[k].name);
  g_string_append (valid, " (or ");
  for (int k = 0; k < SD_SAMPLER_N_KINDS; k++)
    g_string_append_printf (valid, "%s\"%s\"", k ? ", " : "", sampler_names[k].display);
  g_string_append (valid, ")");
  g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "unknown sampler '%s'; valid names: %s",
               name ? name : "(null)", valid->str);
  g_string_free (valid, TRUE);
  return FALSE;
}

const char *
sd_sampler_name (SdSamplerKind kind)
{
  g_return_val_if_fail ((int)kind >= 0 && kind < SD_SAMPLER_N_KINDS, "?");
  return sampler_names[kind].name;
}

const char *
sd_sampler_display_name (SdSamplerKind kind)
{
  g_return_val_if_fail ((int)kind >= 0 && kind < SD_SAMPLER_N_KINDS, "?");
  return sampler_names[kind].display;
}

float
sd_schedule_scale_model_input (const SdSchedule *s, int index, const float *x, float *out, gsize n)
{
  g_return_val_if_fail (s != NULL && index >= 0 && index < s->n_steps, 1.0f);
  if (!sd_kind_is_euler (s->kind))
    {
      if (out != x)
        memcpy (out, x, n * sizeof (float));
      return 1.0f;
    }
  /* Euler*DiscreteScheduler.scale_model_input: sample / ((sigma**2 + 1) ** 0.5) */
  float sigma = s->sigmas[index];
  float d = sqrtf (sigma * sigma + 1.0f);
  for (gsize j = 0; j < n; j++)
    out[j] = x[j] / d;
  return 1.0f / d;
}

gboolean
sd_schedule_img2img_start (const SdSchedule *s, double strength, int *t_start, GError **error)
{
  g_return_val_if_fail (s != NULL && t_start != NULL, FALSE);
  if (!(strength > 0.0 && strength <= 1.0))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG, "strength must be in (0, 1], not %g",
                   strength);
      return FALSE;
    }
  int n = s->n_steps;
  /* Python: init_timestep = min (int (num_inference_steps * strength), N) */
  int init_timestep = (int)((double)n * strength);
  if (init_timestep > n)
    init_timestep = n;
  if (init_timestep < 1)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "strength %g with %d steps leaves no step to run (need steps * strength >= 1)",
                   strength, n);
      return FALSE;
    }
  *t_start = n - init_timestep;
  return TRUE;
}

/* add_noise as out = ca * x0 + cn * noise for schedule index i (< n_steps). For
 * the Euler family ca = 1, which leaves diffusers' x0 + noise * sigma exact. */
static void
noise_coefficients (const SdSchedule *s, int index, float *ca, float *cn)
{
  if (sd_kind_is_euler (s->kind))
    {
      *ca = 1.0f;
      *cn = s->sigmas[index];
    }
  else if (sd_kind_is_dpm (s->kind))
    {
      /* DPMSolverMultistepScheduler._sigma_to_alpha_sigma_t */
      float sigma = s->sigmas[index];
      float alpha = 1.0f / sqrtf (sigma * sigma + 1.0f);
      *ca = alpha;
      *cn = sigma * alpha;
    }
  else
    {
      /* DDIM / LCM add_noise: ac[t] ** 0.5, (1 - ac[t]) ** 0.5 */
      float a = s->alphas_cumprod[(int)s->timesteps[index]];
      *ca = sqrtf (a);
      *cn = sqrtf (1.0f - a);
    }
}

void
sd_schedule_add_noise (const SdSchedule *s, int index, const float *x0, const float *noise,
                       float *out, gsize n)
{
  g_return_if_fail (s != NULL && index >= 0 && index <= s->n_steps);
  if (index == s->n_steps)
    {
      if (out != x0)
        memmove (out, x0, n * sizeof (float));
      return;
    }
  float ca, cn;
  noise_coefficients (s, index, &ca, &cn);
  if (sd_kind_is_euler (s->kind))
    for (gsize j = 0; j < n; j++)
      out[j] = x0[j] + noise[j] * cn;
  else
    for (gsize j = 0; j < n; j++)
      out[j] = ca * x0[j] + cn * noise[j];
}

void
sd_schedule_prepare_latents (const SdSchedule *s, const float *noise, const float *image_latents,
                             int t_start, float *x, gsize n)
{
  g_return_if_fail (s != NULL && t_start >= 0 && t_start < s->n_steps);
  if (image_latents == NULL)
    {
      for (gsize j = 0; j < n; j++)
        x[j] = noise[j] * s->init_noise_sigma;
      return;
    }
  sd_schedule_add_noise (s, t_start, image_latents, noise, x, n);
}

void
sd_schedule_inpaint_blend (const SdSchedule *s, int index, float *x, const float *image_latents,
                           const float *noise, const float *mask, int batch, int channels,
                           gsize plane)
{
  g_return_if_fail (s != NULL && index >= 0 && index < s->n_steps);
  g_return_if_fail (batch > 0 && channels > 0);
  int next = index + 1;
  gboolean last = next == s->n_steps;
  float ca = 1.0f, cn = 0.0f;
  if (!last)
    noise_coefficients (s, next, &ca, &cn);
  gboolean euler = sd_kind_is_euler (s->kind);

  for (int b = 0; b < batch; b++)
    for (int c = 0; c < channels; c++)
      {
        gsize off = ((gsize)b * channels + c) * plane;
        const float *m = mask + (gsize)b * plane;
        for (gsize p = 0; p < plane; p++)
          {
            float known;
            if (last)
              known = image_latents[off + p];
            else if (euler)
              known = image_latents[off + p] + noise[off + p] * cn;
            else
              known = ca * image_latents[off + p] + cn * noise[off + p];
            /* latents = (1 - init_mask) * init_latents_proper + init_mask * latents */
            x[off + p] = (1.0f - m[p]) * known + m[p] * x[off + p];
          }
      }
}

/* ---- PyTorch's float32 exp and log ---------------------------------------- */

/* torch.exp / torch.log on CPU float32 tensors, even 0-dim ones, go through
 * ATen's vectorised math (at::vml -> Vectorized<float>::exp/log), which is
 * SLEEF's expf_u10 / logf_u10 with fused multiply-adds. Those differ from the C
 * library's expf/logf in the last bit for a few percent (exp) and ~0.5% (log)
 * of inputs, and DPM-Solver's coefficients go through both. These are the same
 * algorithms (Cody-Waite reduction + polynomial; log via double-float
 * arithmetic on (m - 1) / (m + 1)), checked bit for bit against PyTorch 1.13 on
 * 400,000 inputs each. Reference: N. Shibata, SLEEF (sleef.org), xexpf and
 * xlogf_u1. */
static float
torch_expf (float d)
{
  if (isnan (d))
    return d;
  if (d < -104.0f)
    return 0.0f;
  if (d > 100.0f)
    return INFINITY;
  int q = (int)rintf (d * 1.442695040888963407359924681001892137426645954152985934135449406931f);
  float s = fmaf ((float)q, -0.693145751953125f, d); /* ln 2, split in two */
  s = fmaf ((float)q, -1.428606765330187045e-06f, s);
  float u = 0.000198527617612853646278381f;
  u = fmaf (u, s, 0.00139304355252534151077271f);
  u = fmaf (u, s, 0.00833336077630519866943359f);
  u = fmaf (u, s, 0.0416664853692054748535156f);
  u = fmaf (u, s, 0.166666671633720397949219f);
  u = fmaf (u, s, 0.5f);
  u = 1.0f + fmaf (s * s, u, s);
  return ldexpf (u, q);
}

typedef struct
{
  float hi, lo;
} DFloat; /* an unevaluated sum hi + lo */

static DFloat
df_two_sum (float x, float y)
{
  float s = x + y;
  float v = s - x;
  return (DFloat){ s, (x - (s - v)) + (y - v) };
}

static DFloat
df_add_fast (DFloat x, DFloat y) /* |x| >= |y| */
{
  float s = x.hi + y.hi;
  return (DFloat){ s, (((x.hi - s) + y.hi) + x.lo) + y.lo };
}

static DFloat
df_add_f_fast (DFloat x, float y)
{
  float s = x.hi + y;
  return (DFloat){ s, ((x.hi - s) + y) + x.lo };
}

static DFloat
df_mul_f (DFloat x, float y)
{
  float s = x.hi * y;
  return (DFloat){ s, fmaf (x.lo, y, fmaf (x.hi, y, -s)) };
}

static DFloat
df_div (DFloat n, DFloat d)
{
  float t = 1.0f / d.hi;
  float s = n.hi * t;
  float u = fmaf (t, n.hi, -s);
  float v = fmaf (-d.lo, t, fmaf (-d.hi, t, 1.0f));
  return (DFloat){ s, fmaf (s, v, fmaf (n.lo, t, u)) };
}

static float
torch_logf (float d)
{
  if (isnan (d) || d < 0.0f)
    return NAN;
  if (d == 0.0f)
    return -INFINITY;
  if (isinf (d))
    return INFINITY;
  gboolean tiny = d < FLT_MIN;
  if (tiny)
    d *= 4294967296.0f * 4294967296.0f;
  /* d = m * 2^e with m in [0.75, 1.5) */
  guint32 bits;
  float scaled = d * (1.0f / 0.75f);
  memcpy (&bits, &scaled, sizeof bits);
  int e = (int)((bits >> 23) & 0xff) - 0x7f;
  memcpy (&bits, &d, sizeof bits);
  bits += (guint32)(-e) << 23;
  float m;
  memcpy (&m, &bits, sizeof m);
  if (tiny)
    e -= 64;
  DFloat s = df_mul_f ((DFloat){ 0.69314718246459960938f, -1.904654323148236017e-09f }, (float)e);
  DFloat x = df_div (df_two_sum (-1.0f, m), df_two_sum (1.0f, m));
  float x2 = x.hi * x.hi;
  float t = 0.3027294874e+0f;
  t = fmaf (t, x2, 0.3996108174e+0f);
  t = fmaf (t, x2, 0.6666694880e+0f);
  s = df_add_fast (s, (DFloat){ x.hi * 2.0f, x.lo * 2.0f });
  s = df_add_f_fast (s, x2 * x.hi * t);
  return s.hi + s.lo;
}

/* ---- steps ---------------------------------------------------------------- */

typedef struct
{
  const SdSchedule *s;
  gsize n;
  float *eps;           /* [n] model output of this step */
  float *x0;            /* [n] denoised estimate of this step */
  float *prev_x0;       /* [n] DPM-Solver: the previous step's x0 */
  float *noise;         /* [n] ancestral / LCM noise */
  int lower_order_nums; /* DPM-Solver: how many model outputs it has seen */
} StepState;

/* x0 from the model output (Euler: sigma parameterisation). */
static void
euler_x0 (const StepState *st, float sigma, const float *x)
{
  const float *eps = st->eps;
  float *x0 = st->x0;
  if (st->s->prediction == SD_PREDICTION_EPSILON)
    for (gsize j = 0; j < st->n; j++)
      x0[j] = x[j] - sigma * eps[j];
  else
    {
      /* model_output * (-sigma / (sigma**2 + 1) ** 0.5) + sample / (sigma**2 + 1) */
      float q = sigma * sigma + 1.0f;
      float c = -sigma / sqrtf (q);
      for (gsize j = 0; j < st->n; j++)
        x0[j] = eps[j] * c + x[j] / q;
    }
}

/* EulerDiscreteScheduler.step, s_churn 0. */
static void
step_euler (StepState *st, int i, float *x)
{
  float sigma = st->s->sigmas[i];
  float dt = st->s->sigmas[i + 1] - sigma;
  euler_x0 (st, sigma, x);
  for (gsize j = 0; j < st->n; j++)
    {
      float d = (x[j] - st->x0[j]) / sigma;
      x[j] = x[j] + d * dt;
    }
}

/* EulerAncestralDiscreteScheduler.step. */
static void
step_euler_a (StepState *st, int i, float *x)
{
  float sf = st->s->sigmas[i], st_ = st->s->sigmas[i + 1];
  float sigma_up = sqrtf (st_ * st_ * (sf * sf - st_ * st_) / (sf * sf));
  float sigma_down = sqrtf (st_ * st_ - sigma_up * sigma_up);
  float dt = sigma_down - sf;
  euler_x0 (st, sf, x);
  for (gsize j = 0; j < st->n; j++)
    {
      float d = (x[j] - st->x0[j]) / sf;
      float prev = x[j] + d * dt;
      x[j] = prev + st->noise[j] * sigma_up;
    }
}

static float
final_alpha (const SdSchedule *s)
{
  return s->set_alpha_to_one ? 1.0f : s->alphas_cumprod[0];
}

/* DDIMScheduler.step, eta 0, no clipping. The previous timestep is always
 * t - T // N, whatever the spacing (with trailing spacing that is not the next
 * timestep of the schedule; diffusers does the same). */
static void
step_ddim (StepState *st, int i, float *x)
{
  const SdSchedule *s = st->s;
  int t = (int)s->timesteps[i];
  int prev_t = t - s->ddim_step_ratio;
  float a = s->alphas_cumprod[t];
  float a_prev = prev_t >= 0 ? s->alphas_cumprod[prev_t] : final_alpha (s);
  float b = 1.0f - a;
  float sa = sqrtf (a), sb = sqrtf (b);
  float c_dir = sqrtf (1.0f - a_prev);
  float sa_prev = sqrtf (a_prev);
  for (gsize j = 0; j < st->n; j++)
    {
      float x0, pe;
      if (s->prediction == SD_PREDICTION_EPSILON)
        {
          x0 = (x[j] - sb * st->eps[j]) / sa;
          pe = st->eps[j];
        }
      else
        {
          x0 = sa * x[j] - sb * st->eps[j];
          pe = sa * st->eps[j] + sb * x[j];
        }
      st->x0[j] = x0;
      x[j] = sa_prev * x0 + c_dir * pe;
    }
}

/* DPMSolverMultistepScheduler (dpmsolver++, order 2, midpoint): convert the
 * model output to x0, then a first-order step (first step, last step since the
 * final sigma is 0) or the second-order multistep update. */
static void
step_dpm (StepState *st, int i, float *x)
{
  const SdSchedule *s = st->s;
  float sig_s0 = s->sigmas[i], sig_t = s->sigmas[i + 1];
  float alpha_s0 = 1.0f / sqrtf (sig_s0 * sig_s0 + 1.0f);
  float sigma_s0 = sig_s0 * alpha_s0;
  float alpha_t = 1.0f / sqrtf (sig_t * sig_t + 1.0f);
  float sigma_t = sig_t * alpha_t;

  if (s->prediction == SD_PREDICTION_EPSILON)
    for (gsize j = 0; j < st->n; j++)
      st->x0[j] = (x[j] - sigma_s0 * st->eps[j]) / alpha_s0;
  else
    for (gsize j = 0; j < st->n; j++)
      st->x0[j] = alpha_s0 * x[j] - sigma_s0 * st->eps[j];

  float lambda_t = torch_logf (alpha_t) - torch_logf (sigma_t); /* +inf at the final sigma 0 */
  float lambda_s0 = torch_logf (alpha_s0) - torch_logf (sigma_s0);
  float h = lambda_t - lambda_s0;
  float c1 = sigma_t / sigma_s0;
  float c2 = alpha_t * (torch_expf (-h) - 1.0f);
  gboolean lower_order_final = i == s->n_steps - 1; /* final_sigmas_type "zero" */

  if (st->lower_order_nums < 1 || lower_order_final)
    {
      for (gsize j = 0; j < st->n; j++)
        x[j] = c1 * x[j] - c2 * st->x0[j];
    }
  else
    {
      float sig_s1 = s->sigmas[i - 1];
      float alpha_s1 = 1.0f / sqrtf (sig_s1 * sig_s1 + 1.0f);
      float sigma_s1 = sig_s1 * alpha_s1;
      float lambda_s1 = torch_logf (alpha_s1) - torch_logf (sigma_s1);
      float h_0 = lambda_s0 - lambda_s1;
      float r0 = h_0 / h;
      float inv_r0 = 1.0f / r0;
      float c3 = 0.5f * c2;
      for (gsize j = 0; j < st->n; j++)
        {
          float d1 = inv_r0 * (st->x0[j] - st->prev_x0[j]);
          x[j] = (c1 * x[j] - c2 * st->x0[j]) - c3 * d1;
        }
    }
  if (st->lower_order_nums < 2)
    st->lower_order_nums++;
  memcpy (st->prev_x0, st->x0, st->n * sizeof (float));
}

/* LCMScheduler.step: x0 as DDIM, the consistency-model boundary condition
 * denoised = c_out * x0 + c_skip * x (sigma_data 0.5, timestep_scaling 10), then
 * re-noised to the next timestep except at the last step. */
static void
step_lcm (StepState *st, int i, float *x)
{
  const SdSchedule *s = st->s;
  gboolean last = i == s->n_steps - 1;
  int t = (int)s->timesteps[i];
  int prev_t = last ? t : (int)s->timesteps[i + 1];
  float a = s->alphas_cumprod[t];
  float a_prev = prev_t >= 0 ? s->alphas_cumprod[prev_t] : final_alpha (s);
  float b = 1.0f - a, b_prev = 1.0f - a_prev;
  float scaled = (float)t * 10.0f;
  float dd = scaled * scaled + 0.25f;
  float c_skip = (1.0f / dd) * 0.25f; /* 0.25 / tensor is reciprocal () * 0.25 in PyTorch */
  float c_out = scaled / sqrtf (dd);
  float sa = sqrtf (a), sb = sqrtf (b);
  float sa_prev = sqrtf (a_prev), sb_prev = sqrtf (b_prev);

  for (gsize j = 0; j < st->n; j++)
    {
      float x0;
      if (s->prediction == SD_PREDICTION_EPSILON)
        x0 = (x[j] - sb * st->eps[j]) / sa;
      else
        x0 = sa * x[j] - sb * st->eps[j];
      float denoised = c_out * x0 + c_skip * x[j];
      st->x0[j] = denoised;
      x[j] = last ? denoised : sa_prev * denoised + sb_prev * st->noise[j];
    }
}

static gboolean
step_needs_noise (const SdSchedule *s, int i)
{
  return s->kind == SD_SAMPLER_EULER_A || (s->kind == SD_SAMPLER_LCM && i != s->n_steps - 1);
}

gboolean
sd_sample (const SdSchedule *s, float *x, gsize n, int t_start, SdDenoiseFn denoise,
           gpointer denoise_data, SdNoiseFn step_noise, gpointer noise_data, SdStepHook hook,
           gpointer hook_data, GError **error)
{
  g_return_val_if_fail (s != NULL && x != NULL && denoise != NULL, FALSE);
  g_return_val_if_fail (t_start >= 0 && t_start <= s->n_steps, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  int n_steps = s->n_steps;
  gboolean needs_noise = FALSE;
  for (int i = t_start; i < n_steps; i++)
    needs_noise |= step_needs_noise (s, i);
  if (needs_noise && step_noise == NULL)
    {
      g_set_error (error, SD_ERROR, SD_ERROR_INVALID_ARG,
                   "the %s sampler needs a noise source for its steps", sd_sampler_name (s->kind));
      return FALSE;
    }

  StepState st = { .s = s, .n = n };
  gboolean scaled = sd_kind_is_euler (s->kind);
  g_autofree float *eps = g_try_malloc_n (n ? n : 1, sizeof (float));
  g_autofree float *x0 = g_try_malloc_n (n ? n : 1, sizeof (float));
  g_autofree float *aux
      = sd_kind_is_dpm (s->kind) ? g_try_malloc_n (n ? n : 1, sizeof (float)) : NULL;
  g_autofree float *noise = needs_noise ? g_try_malloc_n (n ? n : 1, sizeof (float)) : NULL;
  g_autofree float *input = scaled ? g_try_malloc_n (n ? n : 1, sizeof (float)) : NULL;
  if (eps == NULL || x0 == NULL || (sd_kind_is_dpm (s->kind) && aux == NULL)
      || (needs_noise && noise == NULL) || (scaled && input == NULL))
    {
      g_set_error (error, SD_ERROR, SD_ERROR_OUT_OF_MEMORY,
                   "out of memory for sampler buffers (%" G_GSIZE_FORMAT " latents)", n);
      return FALSE;
    }
  st.eps = eps;
  st.x0 = x0;
  st.prev_x0 = aux;
  st.noise = noise;

  for (int i = t_start; i < n_steps; i++)
    {
      const float *model_input = x;
      if (scaled)
        {
          sd_schedule_scale_model_input (s, i, x, input, n);
          model_input = input;
        }
      if (!denoise (denoise_data, model_input, s->timesteps[i], i, eps, error))
        {
          g_prefix_error (error, "step %d of %d (timestep %g): ", i + 1, n_steps,
                          (double)s->timesteps[i]);
          return FALSE;
        }
      if (step_needs_noise (s, i) && !step_noise (noise_data, i, noise, n, error))
        {
          g_prefix_error (error, "step %d of %d: noise: ", i + 1, n_steps);
          return FALSE;
        }
      switch (s->kind)
        {
        case SD_SAMPLER_EULER:
          step_euler (&st, i, x);
          break;
        case SD_SAMPLER_EULER_A:
          step_euler_a (&st, i, x);
          break;
        case SD_SAMPLER_DDIM:
          step_ddim (&st, i, x);
          break;
        case SD_SAMPLER_DPMPP_2M:
        case SD_SAMPLER_DPMPP_2M_KARRAS:
          step_dpm (&st, i, x);
          break;
        case SD_SAMPLER_LCM:
          step_lcm (&st, i, x);
          break;
        default:
          g_assert_not_reached ();
        }
      if (hook != NULL && !hook (hook_data, i, x, x0, n))
        {
          g_set_error (error, SD_ERROR, SD_ERROR_CANCELLED, "cancelled after step %d of %d", i + 1,
                       n_steps);
          return FALSE;
        }
    }
  return TRUE;
}
