/* sd-sampler.h: noise schedules, timesteps and samplers, on the CPU.
 *
 * Everything here reproduces diffusers 0.27 (the version the golden data was
 * made with) in float32, operation by operation where that is cheap:
 *
 *   kind                 diffusers class                           timesteps to the UNet
 *   SD_SAMPLER_EULER     EulerDiscreteScheduler                    float32 (fractional with
 * Karras/linspace) SD_SAMPLER_EULER_A   EulerAncestralDiscreteScheduler           float32
 *   SD_SAMPLER_DDIM      DDIMScheduler (eta 0)                     integer
 *   SD_SAMPLER_DPMPP_2M  DPMSolverMultistepScheduler (dpmsolver++, order 2,
 *                        midpoint, lower_order_final, final sigma 0) integer
 *   SD_SAMPLER_DPMPP_2M_KARRAS  the same with use_karras_sigmas     integer
 *   SD_SAMPLER_LCM       LCMScheduler (original_inference_steps 50) integer
 *
 * A schedule (SdSchedule) is immutable once made: it holds the training
 * schedule (betas -> alphas_cumprod, float32), the N timesteps, the N+1 sigmas
 * and init_noise_sigma. Sampling is a pure function of a schedule, the latents
 * and three callbacks (model, noise, per-step hook), so it is testable without
 * a UNet and one schedule can serve concurrent jobs.
 *
 * Indices: a "schedule index" is an index into the full schedule of N steps
 * (0 = the noisiest). img2img starts at t_start > 0; every callback gets the
 * schedule index i (t_start <= i < N), not the loop counter.
 *
 * Typical use (text-to-image):
 *
 *   SdSchedule *s = sd_schedule_new (&cfg, SD_SAMPLER_EULER_A, steps, NULL, &error);
 *   sd_noise_randn (gen, noise, n);                      // see sd-noise.h for the stream
 *   sd_schedule_prepare_latents (s, noise, NULL, 0, x, n);   // x = noise * init_noise_sigma
 *   sd_sample (s, x, n, 0, unet_cfg, ctx, sd_noise_step_fn, gen, hook, job, &error);
 *
 * img2img: t_start from sd_schedule_img2img_start (strength), then
 * sd_schedule_prepare_latents (s, noise, image_latents, t_start, x, n) and
 * sd_sample (..., t_start, ...). Inpainting with a 4-channel model blends in the
 * hook with sd_schedule_inpaint_blend.
 */
#pragma once

#include <glib.h>
#include "sd-model.h"

G_BEGIN_DECLS

typedef enum
{
  SD_SAMPLER_EULER,
  SD_SAMPLER_EULER_A,
  SD_SAMPLER_DDIM,
  SD_SAMPLER_DPMPP_2M,
  SD_SAMPLER_DPMPP_2M_KARRAS,
  SD_SAMPLER_LCM,
  SD_SAMPLER_N_KINDS
} SdSamplerKind;

/**
 * sd_sampler_from_name:
 * Parse a sampler name: the short names "euler", "euler_a", "ddim", "dpmpp_2m",
 * "dpmpp_2m_karras", "lcm", the AUTOMATIC1111 display names "Euler", "Euler a",
 * "DDIM", "DPM++ 2M", "DPM++ 2M Karras", "LCM", or a diffusers scheduler class
 * name ("EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler",
 * "DDIMScheduler", "DPMSolverMultistepScheduler", "LCMScheduler"; Karras is then
 * an option). Case-insensitive. An unknown name is SD_ERROR_INVALID_ARG with a
 * message listing the valid names.
 */
gboolean sd_sampler_from_name (const char *name, SdSamplerKind *kind, GError **error);
/* "euler", "euler_a", ... */
const char *sd_sampler_name (SdSamplerKind kind);
/* "Euler", "Euler a", ... (AUTOMATIC1111 /sdapi/v1/samplers names) */
const char *sd_sampler_display_name (SdSamplerKind kind);

typedef enum
{
  SD_SPACING_CONFIG = 0, /* use SdSchedulerConfig.timestep_spacing */
  SD_SPACING_LEADING,
  SD_SPACING_TRAILING,
  SD_SPACING_LINSPACE,
} SdTimestepSpacing;

/* "leading", "trailing", "linspace" -> enum; unknown: SD_ERROR_INVALID_ARG. */
gboolean sd_timestep_spacing_from_name (const char *name, SdTimestepSpacing *spacing,
                                        GError **error);

/* Per-call overrides of the model's scheduler config. Zero-initialised = none. */
typedef struct
{
  SdTimestepSpacing spacing; /* SD_SPACING_CONFIG: the config's (diffusers timestep_spacing) */
  /* Karras sigmas (diffusers use_karras_sigmas) for Euler, Euler a and DPM++ 2M;
   * SD_SAMPLER_DPMPP_2M_KARRAS implies it. Refused for DDIM and LCM. */
  gboolean karras;
  gboolean force_prediction; /* use .prediction instead of the config's */
  SdPrediction prediction;
  /* DDIM / LCM: alpha of the step after the last one is 1 instead of
   * alphas_cumprod[0] (diffusers set_alpha_to_one; FALSE in every SD config). */
  gboolean set_alpha_to_one;
  int lcm_original_steps; /* LCM original_inference_steps; 0 = 50 */
} SdScheduleOptions;

/* Fill cfg with the Stable Diffusion 1.x / 2.x / SDXL scheduler config:
 * 1000 steps, scaled_linear 0.00085..0.012, epsilon, steps_offset 1, leading. */
void sd_scheduler_config_set_defaults (SdSchedulerConfig *cfg);

typedef struct _SdSchedule SdSchedule;

/**
 * sd_schedule_new:
 * @cfg: the model's scheduler config. beta_schedule "scaled_linear" or "linear";
 *   timestep_spacing "leading", "trailing", "linspace" ("" = "leading").
 * @steps: number of inference steps, 1..num_train_timesteps (LCM: 1..original steps).
 * @opts: overrides, or NULL.
 *
 * Compute the schedule as diffusers' set_timesteps does. Invalid parameters are
 * SD_ERROR_INVALID_ARG.
 */
SdSchedule *sd_schedule_new (const SdSchedulerConfig *cfg, SdSamplerKind kind, int steps,
                             const SdScheduleOptions *opts, GError **error);
void sd_schedule_free (SdSchedule *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SdSchedule, sd_schedule_free)

SdSamplerKind sd_schedule_get_kind (const SdSchedule *s);
SdPrediction sd_schedule_get_prediction (const SdSchedule *s);
gboolean sd_schedule_get_karras (const SdSchedule *s);
SdTimestepSpacing sd_schedule_get_spacing (const SdSchedule *s); /* resolved, never CONFIG */
int sd_schedule_get_n_steps (const SdSchedule *s);
/* [n_steps] the timestep the UNet gets at each schedule index (float32; whole
 * numbers for DDIM / DPM-Solver / LCM, whose diffusers timesteps are int64). */
const float *sd_schedule_get_timesteps (const SdSchedule *s);
gboolean sd_schedule_has_integer_timesteps (const SdSchedule *s);
/* [n_steps + 1] sigma per schedule index, last = 0 (float32). For DDIM and LCM,
 * which do not use sigmas, sigma(t) of their timesteps (informational). */
const float *sd_schedule_get_sigmas (const SdSchedule *s);
/* Factor the first latents are multiplied by (1 except for the Euler family). */
float sd_schedule_get_init_noise_sigma (const SdSchedule *s);
/* [num_train_timesteps] alphas_cumprod and sqrt((1 - ac) / ac), float32. */
const float *sd_schedule_get_alphas_cumprod (const SdSchedule *s, int *n_train);
const float *sd_schedule_get_train_sigmas (const SdSchedule *s, int *n_train);

/* scale_model_input: out = x / sqrt(sigma_i^2 + 1) for the Euler family, a copy
 * otherwise; out may equal x. Returns the factor. */
float sd_schedule_scale_model_input (const SdSchedule *s, int index, const float *x, float *out,
                                     gsize n);

/**
 * sd_schedule_img2img_start:
 * diffusers' get_timesteps: init_timestep = min(int(N * strength), N) with the
 * product in double and truncation (6 * 0.6 = 3.5999... -> 3), t_start =
 * N - init_timestep. A strength that leaves no step (or is outside (0, 1]) is
 * SD_ERROR_INVALID_ARG.
 */
gboolean sd_schedule_img2img_start (const SdSchedule *s, double strength, int *t_start,
                                    GError **error);

/**
 * sd_schedule_add_noise:
 * Noise clean latents x0 to the level of schedule index @index (scheduler.add_noise):
 * Euler family: x0 + noise * sigmas[index]; DPM-Solver: alpha * x0 + sigma_t * noise
 * with alpha = 1/sqrt(sigmas[index]^2 + 1), sigma_t = sigmas[index] * alpha; DDIM / LCM:
 * sqrt(ac[t]) * x0 + sqrt(1 - ac[t]) * noise with t = timesteps[index].
 * index == n_steps means "fully denoised": out = x0. out may alias x0 or noise.
 */
void sd_schedule_add_noise (const SdSchedule *s, int index, const float *x0, const float *noise,
                            float *out, gsize n);

/**
 * sd_schedule_prepare_latents:
 * The latents sampling starts from. image_latents == NULL (text-to-image, and
 * inpainting at strength 1): x = noise * init_noise_sigma. Otherwise (img2img):
 * x = add_noise (image_latents, noise, t_start) -- no init_noise_sigma factor, as
 * in diffusers. x may alias noise.
 */
void sd_schedule_prepare_latents (const SdSchedule *s, const float *noise,
                                  const float *image_latents, int t_start, float *x, gsize n);

/**
 * sd_schedule_inpaint_blend:
 * Inpainting with a 4-channel model (StableDiffusionInpaintPipeline), called
 * after the step at schedule index @index: known = add_noise (image_latents,
 * noise, index + 1) (= image_latents after the last step), then
 * x = (1 - m) * known + m * x with the mask m (1 = repaint) broadcast over
 * channels. x, image_latents, noise: [batch, channels, plane]; mask: [batch, 1,
 * plane]. noise is the SAME initial noise the latents were made from.
 */
void sd_schedule_inpaint_blend (const SdSchedule *s, int index, float *x,
                                const float *image_latents, const float *noise, const float *mask,
                                int batch, int channels, gsize plane);

/**
 * SdDenoiseFn:
 * @model_input: [n] the scaled latents (scale_model_input applied).
 * @timestep: the value for the UNet's timestep embedding.
 * @index: schedule index.
 * @model_output: [n] to fill with the (guided) model output: epsilon or v as
 *   the schedule's prediction type says.
 */
typedef gboolean (*SdDenoiseFn) (gpointer data, const float *model_input, float timestep, int index,
                                 float *model_output, GError **error);

/**
 * SdNoiseFn:
 * Fill @out with n standard normal values for the step at schedule index
 * @index. Called once per step by Euler a (every step, also the last, whose
 * noise is multiplied by 0) and by LCM (every step but the last), after the
 * model call, as diffusers draws it. sd_noise_step_fn (sd-noise.h) draws from
 * an SdNoise generator.
 */
typedef gboolean (*SdNoiseFn) (gpointer data, int index, float *out, gsize n, GError **error);

/**
 * SdStepHook:
 * Called after each step with the new latents @x (may be modified: inpainting
 * blends here) and the step's denoised estimate @denoised (x0 prediction; for
 * LCM the boundary-condition "denoised"), both [n]. Return FALSE to cancel.
 */
typedef gboolean (*SdStepHook) (gpointer data, int index, float *x, const float *denoised, gsize n);

/**
 * sd_sample:
 * @x: [n] in/out: the prepared latents (sd_schedule_prepare_latents), then the
 *   result. n covers the whole batch; the callbacks see the same layout.
 * @t_start: first schedule index (0, or img2img's), 0 <= t_start <= n_steps.
 * @step_noise: required by Euler a and LCM (with more than one step), else unused.
 * @hook: may be NULL.
 *
 * Run the steps t_start .. n_steps-1. A failing callback's error is returned
 * prefixed with the step; a hook returning FALSE is SD_ERROR_CANCELLED.
 */
gboolean sd_sample (const SdSchedule *s, float *x, gsize n, int t_start, SdDenoiseFn denoise,
                    gpointer denoise_data, SdNoiseFn step_noise, gpointer noise_data,
                    SdStepHook hook, gpointer hook_data, GError **error);

G_END_DECLS
