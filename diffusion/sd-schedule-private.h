/* sd-schedule-private.h: the SdSchedule struct, shared by sd-schedule.c (making
 * schedules) and sd-sampler.c (stepping through them). */
#pragma once

#include "sd-sampler.h"

struct _SdSchedule
{
  SdSamplerKind kind;
  SdPrediction prediction;
  SdTimestepSpacing spacing; /* resolved */
  gboolean karras;
  gboolean integer_timesteps;
  gboolean set_alpha_to_one;
  int n_train;
  int n_steps;
  int ddim_step_ratio;   /* num_train_timesteps // N: DDIM's prev_t = t - ratio */
  float *alphas_cumprod; /* owned, [n_train] */
  float *train_sigmas;   /* owned, [n_train] */
  float *timesteps;      /* owned, [n_steps] */
  float *sigmas;         /* owned, [n_steps + 1] */
  float init_noise_sigma;
};

/* Whether the kind is sigma-parameterised like k-diffusion (Euler family:
 * scaled inputs, x0 + sigma * noise). */
static inline gboolean
sd_kind_is_euler (SdSamplerKind kind)
{
  return kind == SD_SAMPLER_EULER || kind == SD_SAMPLER_EULER_A;
}

static inline gboolean
sd_kind_is_dpm (SdSamplerKind kind)
{
  return kind == SD_SAMPLER_DPMPP_2M || kind == SD_SAMPLER_DPMPP_2M_KARRAS;
}
