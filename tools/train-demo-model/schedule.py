"""SD 1.x noise schedule and the Euler sampler (diffusers EulerDiscreteScheduler
0.27, timestep_spacing 'leading', steps_offset 1), as the golden README defines
them (section "sampler")."""
import numpy as np
import torch

NUM_TRAIN_TIMESTEPS = 1000
BETA_START = 0.00085
BETA_END = 0.012


def alphas_cumprod_f32():
    """diffusers float32 computation: scaled_linear betas, cumprod in float32."""
    betas = torch.linspace(BETA_START ** 0.5, BETA_END ** 0.5, NUM_TRAIN_TIMESTEPS,
                           dtype=torch.float32) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def ddpm_buffers_f64():
    """The DDPM buffers original LDM checkpoints carry (computed in float64,
    ldm.models.diffusion.ddpm.DDPM.register_schedule)."""
    betas = np.linspace(BETA_START ** 0.5, BETA_END ** 0.5, NUM_TRAIN_TIMESTEPS,
                        dtype=np.float64) ** 2
    ac = np.cumprod(1.0 - betas)
    ac_prev = np.append(1.0, ac[:-1])
    post_var = betas * (1.0 - ac_prev) / (1.0 - ac)
    return {
        "betas": betas,
        "alphas_cumprod": ac,
        "alphas_cumprod_prev": ac_prev,
        "sqrt_alphas_cumprod": np.sqrt(ac),
        "sqrt_one_minus_alphas_cumprod": np.sqrt(1.0 - ac),
        "log_one_minus_alphas_cumprod": np.log(1.0 - ac),
        "sqrt_recip_alphas_cumprod": np.sqrt(1.0 / ac),
        "sqrt_recipm1_alphas_cumprod": np.sqrt(1.0 / ac - 1.0),
        "posterior_variance": post_var,
        "posterior_log_variance_clipped": np.log(np.maximum(post_var, 1e-20)),
        "posterior_mean_coef1": betas * np.sqrt(ac_prev) / (1.0 - ac),
        "posterior_mean_coef2": (1.0 - ac_prev) * np.sqrt(1.0 - betas) / (1.0 - ac),
    }


def euler_schedule(n_steps):
    """-> (timesteps float32 [N], sigmas float32 [N+1], init_noise_sigma)."""
    ac = alphas_cumprod_f32().numpy()
    sig_all = ((1.0 - ac) / ac) ** 0.5
    step_ratio = NUM_TRAIN_TIMESTEPS // n_steps
    ts = (np.arange(0, n_steps) * step_ratio).round()[::-1].copy().astype(np.float32) + 1.0
    sig = np.interp(ts, np.arange(0, len(sig_all)), sig_all)
    sig = np.concatenate([sig, [0.0]]).astype(np.float32)
    init = float((sig.max() ** 2 + 1) ** 0.5)
    return ts.astype(np.float32), sig, init


@torch.no_grad()
def euler_sample(unet_fn, noise, cond, uncond, n_steps, guidance, record=None):
    """Text-to-image Euler loop with classifier-free guidance, batch order
    [uncond; cond]. unet_fn(x, t, context) -> eps. Returns final scaled latents."""
    ts, sig, init = euler_schedule(n_steps)
    x = noise * init
    B = noise.shape[0]
    ctx = torch.cat([uncond, cond], dim=0)
    for i, t in enumerate(ts):
        s = float(sig[i])
        inp = x / ((s * s + 1.0) ** 0.5)
        tt = torch.full((2 * B,), float(t), dtype=torch.float32)
        e = unet_fn(torch.cat([inp, inp], dim=0), tt, ctx)
        eu, ec = e[:B], e[B:]
        eps = eu + guidance * (ec - eu)
        x0 = x - s * eps
        x = x + (x - x0) / s * (float(sig[i + 1]) - s)
        if record is not None:
            record.setdefault("step_eps", []).append(eps.clone())
            record.setdefault("step_latents", []).append(x.clone())
    return x
