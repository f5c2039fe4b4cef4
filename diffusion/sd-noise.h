/* sd-noise.h: the seeded noise generator (PyTorch's CPU torch.randn).
 *
 * A seed gives the same numbers as
 *
 *   torch.manual_seed (seed); torch.randn (shape)                    (float32, CPU)
 *
 * and therefore as diffusers and ComfyUI with CPU noise, and AUTOMATIC1111 with
 * its "CPU" RNG source (its default "GPU" source uses CUDA's Philox: different
 * numbers). The values are bit-identical to PyTorch's portable kernel
 * (ATEN_CPU_CAPABILITY=default; checked on 690,000 values of 1.13) and within a
 * few float32 ulp (2.3e-6 absolute) of its AVX2 kernel, which most x86 machines
 * run: PyTorch itself differs in the last bits between its kernels.
 *
 * Generator: MT19937 seeded with init_genrand (seed mod 2^32) -- seeds are
 * 64-bit and only the low 32 bits count, exactly as in PyTorch.
 *
 * One sd_noise_randn (g, out, n) call = one torch.randn of n elements:
 *   n >= 16 (float32 "vectorised" path): n uniforms u = (u32 & 0xFFFFFF) * 2^-24,
 *     Box-Muller on each full block of 16 (u1 = 1 - u[j], u2 = u[j + 8],
 *     out[j] = r cos(2 pi u2), out[j + 8] = r sin(2 pi u2), r = sqrt(-2 ln u1),
 *     j = 0..7), and when n % 16 != 0 16 NEW uniforms give the last 16 outputs
 *     (overwriting part of the last full block). Computed in float32 with the C
 *     library's logf/cosf/sinf, theta = 2 pi u2 in double rounded to float, as
 *     PyTorch's portable kernel does.
 *   n < 16 (double "scalar" path): each value is one half of a double-precision
 *     Box-Muller pair from two 53-bit uniforms (u64 = first u32 << 32 | second);
 *     r cos is returned, r sin is cached and returned by the next scalar-path
 *     value, also across calls. Seeding clears the cache; the vectorised path
 *     neither uses nor clears it.
 * The stream continues across calls.
 *
 * What a pipeline draws, in this order, from ONE generator seeded once per job
 * (as diffusers 0.27 does with a single CPU torch.Generator; the whole batch in
 * each call, batch-major NCHW, every draw [B, 4, H/8, W/8]):
 *   text-to-image:  1. the initial noise
 *   img2img:        1. the VAE posterior sample of the init image, 2. the noise
 *   inpainting (StableDiffusionInpaintPipeline): 1. the VAE posterior sample of
 *                   the init image (4-channel models, or any model below
 *                   strength 1), 2. the noise, 3. the VAE posterior sample of the
 *                   masked image (drawn for 4-channel models too, which do not
 *                   use it)
 *   then, per sampling step, after the model call: Euler a one draw at every
 *   step (the last one too, multiplied by 0); LCM at every step but the last;
 *   the other samplers draw nothing.
 * (The golden cases give every draw as an input, so they do not check this
 * order; it is read from the diffusers pipelines.)
 * The generator is not thread-safe; use one per job.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _SdNoise SdNoise;

/* A generator seeded with seed (mod 2^32). */
SdNoise *sd_noise_new (guint64 seed);
void sd_noise_free (SdNoise *g);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (SdNoise, sd_noise_free)

/* torch.manual_seed: restart the stream and clear the cached normal. */
void sd_noise_seed (SdNoise *g, guint64 seed);
/* The seed as given (all 64 bits). */
guint64 sd_noise_get_seed (const SdNoise *g);

/* The next raw MT19937 output. */
guint32 sd_noise_next_u32 (SdNoise *g);

/* torch.randn (n) continuing the stream: n standard normal float32 values. */
void sd_noise_randn (SdNoise *g, float *out, gsize n);

/* An SdNoiseFn (sd-sampler.h) drawing from the SdNoise passed as data. */
gboolean sd_noise_step_fn (gpointer data, int index, float *out, gsize n, GError **error);

G_END_DECLS
