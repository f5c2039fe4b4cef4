#!/usr/bin/python3
"""Phase 1: train the AutoencoderKL (64x64x3 <-> 8x8x4) from scratch.

  train_vae.py [--minutes 60] [--threads 1]        resumes from work/vae.pt
  train_vae.py --finalize                          fold latent normalisation in,
                                                   write work/vae_final.pt and the
                                                   latent cache work/latents.pt

Loss: L1 + L1 of image gradients (sharper edges than L2 alone; no GAN or
LPIPS: nothing pretrained may be downloaded) + kl_weight * KL(q(z|x) || N(0,1)),
posterior sampled (reparameterised), as in LDM's AutoencoderKL without the
discriminator.

The scaling factor stays 0.18215 (the product's SD1 default). --finalize
rescales the latent space exactly: mean' = (mean - m) * s per channel via
quant_conv's weights, post_quant_conv absorbs the inverse, and logvar is
shifted by 2 ln s; so 0.18215 * mean' has zero mean and unit std per channel
over the data set while the decoder computes the same images.
"""
import argparse
import os
import random
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before torch loads OpenBLAS (see common.py)
import numpy as np
import torch
import torch.nn.functional as F

import common
from common import WORK
import data
import models


def grad_l1(x, y):
    dx = lambda t: t[:, :, :, 1:] - t[:, :, :, :-1]  # noqa: E731
    dy = lambda t: t[:, :, 1:, :] - t[:, :, :-1, :]  # noqa: E731
    return (dx(x) - dx(y)).abs().mean() + (dy(x) - dy(y)).abs().mean()


def make_batch(imgs, entries, idx, rng):
    b = [data.augment(imgs[i], entries[i]["flip_ok"], rng) for i in idx]
    return data.to_tensor(np.stack(b))


def train(args):
    common.setup(args.threads, seed=1234)
    log = common.Log(os.path.join(WORK, "train_vae.log"))
    imgs, entries = data.load(os.path.join(WORK, "data"))
    vae = models.AutoencoderKL(common.VAE)
    opt = torch.optim.AdamW(vae.parameters(), lr=args.lr, betas=(0.9, 0.99), weight_decay=0.0)
    ck_path = os.path.join(WORK, "vae.pt")
    ck = common.load_ckpt(ck_path)
    step, seconds = 0, 0.0
    rng = random.Random(1234)
    if ck:
        vae.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, seconds = ck["step"], ck["seconds"]
        common.set_rng_state(ck["rng"])
        rng.setstate(ck["py_rng"])
        log("resume", step=step, hours=round(seconds / 3600, 3))
    if step >= args.total_steps:
        log("already done", step=step)
        return
    budget = common.Budget(args.minutes)
    N = len(imgs)
    acc = dict(l1=0.0, grad=0.0, kl=0.0, std=0.0, n=0)
    last_save = budget.elapsed()
    while step < args.total_steps and not budget.over():
        t_step = budget.elapsed()
        lr = common.cosine_lr(step, args.total_steps, args.lr, args.lr * 0.05, 200)
        for g in opt.param_groups:
            g["lr"] = lr
        idx = [rng.randrange(N) for _ in range(args.batch)]
        x = make_batch(imgs, entries, idx, rng)
        mean, logvar = vae.encode(x)
        z = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar)
        y = vae.decode(z)
        l1 = (y - x).abs().mean()
        gl = grad_l1(y, x)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        loss = l1 + args.grad_weight * gl + args.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        seconds += budget.elapsed() - t_step
        acc["l1"] += l1.item(); acc["grad"] += gl.item(); acc["kl"] += kl.item()
        acc["std"] += mean.detach().std().item(); acc["n"] += 1
        if step % 50 == 0:
            n = acc["n"]
            log("step %d" % step, lr=round(lr, 6), l1=round(acc["l1"] / n, 4),
                grad=round(acc["grad"] / n, 4), kl=round(acc["kl"] / n, 2),
                latent_std=round(acc["std"] / n, 3),
                img_per_s=round(args.batch * step / max(seconds, 1e-9), 2))
            acc = dict(l1=0.0, grad=0.0, kl=0.0, std=0.0, n=0)
        if budget.elapsed() - last_save > 600 or step == args.total_steps:
            _save(ck_path, vae, opt, step, seconds, rng, args.total_steps)
            last_save = budget.elapsed()
    _save(ck_path, vae, opt, step, seconds, rng, args.total_steps)
    log("stopped", step=step, total=args.total_steps, hours=round(seconds / 3600, 3))
    preview(vae, imgs, os.path.join(WORK, "vae_recon.png"))


def _save(path, vae, opt, step, seconds, rng, total):
    common.save_ckpt(path, dict(model=vae.state_dict(), opt=opt.state_dict(), step=step,
                                total_steps=total,
                                seconds=seconds, rng=common.rng_state(), py_rng=rng.getstate(),
                                config=common.VAE))


@torch.no_grad()
def preview(vae, imgs, path, n=32):
    """Top row originals, bottom row reconstructions (posterior mean)."""
    from PIL import Image
    vae.eval()
    sel = np.linspace(0, len(imgs) - 1, n).astype(int)
    x = data.to_tensor(imgs[sel])
    mean, _ = vae.encode(x)
    y = ((vae.decode(mean).clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    sheet = np.concatenate([np.concatenate(list(imgs[sel]), 1), np.concatenate(list(y), 1)], 0)
    Image.fromarray(sheet).save(path)
    vae.train()


@torch.no_grad()
def finalize(args):
    """Normalise the latent space (exact reparametrisation) and cache latents
    of augmented images for phase 2."""
    common.setup(args.threads, seed=99)
    log = common.Log(os.path.join(WORK, "train_vae.log"))
    ck = common.load_ckpt(os.path.join(WORK, "vae.pt"))
    vae = models.AutoencoderKL(common.VAE)
    vae.load_state_dict(ck["model"])
    vae.eval()
    imgs, entries = data.load(os.path.join(WORK, "data"))
    rng = random.Random(99)
    K = args.variants
    means, logvars = [], []
    for k in range(K):
        for s in range(0, len(imgs), 64):
            idx = range(s, min(s + 64, len(imgs)))
            if k == 0:  # variant 0: the centred, unmirrored image
                x = data.to_tensor(imgs[list(idx)])
            else:
                x = make_batch(imgs, entries, idx, rng)
            m, lv = vae.encode(x)
            means.append(m)
            logvars.append(lv)
        log("finalize: encoded variant %d/%d" % (k + 1, K))
    mean = torch.cat(means).view(K, len(imgs), 4, 8, 8).transpose(0, 1).contiguous()
    logvar = torch.cat(logvars).view(K, len(imgs), 4, 8, 8).transpose(0, 1).contiguous()
    mu_c = mean.mean(dim=(0, 1, 3, 4)).double()
    sd_c = mean.std(dim=(0, 1, 3, 4)).double()
    sf = common.SCALING_FACTOR
    s = 1.0 / (sd_c * sf)  # per-channel factor so that sf * mean' has unit std
    # quant_conv: moments = W x + b; rows 0..3 -> mean, rows 4..7 -> logvar
    qc_w = vae.quant_conv.weight.double()
    qc_b = vae.quant_conv.bias.double()
    qc_w[:4] *= s[:, None, None, None]
    qc_b[:4] = (qc_b[:4] - mu_c) * s
    qc_b[4:] += 2.0 * torch.log(s)
    # post_quant_conv: y = P z + c with z = mean = mean'/s + mu
    pq_w = vae.post_quant_conv.weight.double()
    pq_b = vae.post_quant_conv.bias.double()
    new_pq_b = pq_b + (pq_w[:, :, 0, 0] @ mu_c)
    new_pq_w = pq_w / s[None, :, None, None]
    vae.quant_conv.weight.copy_(qc_w.float())
    vae.quant_conv.bias.copy_(qc_b.float())
    vae.post_quant_conv.weight.copy_(new_pq_w.float())
    vae.post_quant_conv.bias.copy_(new_pq_b.float())
    # re-encode the cache in the new parametrisation (exact up to rounding)
    mean_n = (mean.double() - mu_c[None, None, :, None, None]) * s[None, None, :, None, None]
    logvar_n = logvar.double() + 2.0 * torch.log(s)[None, None, :, None, None]
    # check: decoding is unchanged and the encoder gives the new latents
    x = data.to_tensor(imgs[:16])
    m2, _ = vae.encode(x)
    e_lat = (m2.double() - mean_n[:16, 0]).abs().max().item()
    y_old = models.AutoencoderKL(common.VAE)
    y_old.load_state_dict(ck["model"])
    y_old.eval()
    e_dec = (vae.decode(m2) - y_old.decode(y_old.encode(x)[0])).abs().max().item()
    scaled = mean_n * sf
    log("finalize: latent normalisation", channel_mean=[round(v, 4) for v in mu_c.tolist()],
        channel_std=[round(v, 4) for v in sd_c.tolist()],
        scaled_std=round(scaled.std().item(), 4), scaled_mean=round(scaled.mean().item(), 4),
        posterior_std_scaled=round((torch.exp(0.5 * logvar_n).mean() * sf).item(), 5),
        check_encode_err=e_lat, check_decode_err=e_dec)
    assert e_lat < 1e-3 and e_dec < 1e-3, (e_lat, e_dec)
    recon = vae.decode(mean_n[:, 0].float())
    rec_l1 = (recon - data.to_tensor(imgs)).abs().mean().item()
    log("finalize: reconstruction L1 over the data set (centred images) %.4f" % rec_l1)
    common.save_ckpt(os.path.join(WORK, "vae_final.pt"),
                     dict(model=vae.state_dict(), config=common.VAE, step=ck["step"],
                          seconds=ck["seconds"], recon_l1=rec_l1,
                          latent_channel_mean=mu_c.tolist(), latent_channel_std=sd_c.tolist()))
    common.save_ckpt(os.path.join(WORK, "latents.pt"),
                     dict(mean=mean_n.half(), logvar=logvar_n.half(), variants=K))
    preview(vae, imgs, os.path.join(WORK, "vae_recon.png"))
    log("finalize: wrote vae_final.pt and latents.pt", shape=list(mean_n.shape))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60.0, help="time budget of this run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--total-steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=4e-4)
    ap.add_argument("--kl-weight", type=float, default=1e-4)
    ap.add_argument("--grad-weight", type=float, default=0.5)
    ap.add_argument("--finalize", action="store_true")
    ap.add_argument("--variants", type=int, default=12,
                    help="augmented latents per image cached for phase 2")
    args = ap.parse_args()
    if args.finalize:
        finalize(args)
    else:
        train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
