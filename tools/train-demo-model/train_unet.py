#!/usr/bin/python3
"""Phase 2: train the CLIP text encoder and the UNet together on cached VAE
latents (work/latents.pt from train_vae.py --finalize).

  train_unet.py [--minutes 60] [--threads 1]     resumes from work/unet.pt

Objective: the standard epsilon prediction of SD 1.x: x_t = sqrt(ac_t) x0 +
sqrt(1 - ac_t) eps with the scaled_linear schedule (1000 steps, betas
0.00085..0.012), t uniform, MSE(eps_hat, eps). Optional Min-SNR-gamma loss
weighting (Hang et al. 2023, "Efficient Diffusion Training via Min-SNR
Weighting Strategy") speeds up convergence; it reweights timesteps and does
not change what the network predicts. Captions are dropped (replaced by "")
with p = 0.1 so classifier-free guidance works (Ho & Salimans 2022). EMA
weights are kept and exported.
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
import schedule
import tokenizer as tok


def init_weights(unet, text):
    """LDM/CLIP-style initialisation: zero the last layer of every residual
    branch of the UNet (ldm's zero_module) and the output conv; CLIP's normal
    init for the text transformer."""
    for m in unet.modules():
        if isinstance(m, models.ResBlock):
            torch.nn.init.zeros_(m.out_layers[3].weight)
            torch.nn.init.zeros_(m.out_layers[3].bias)
        if isinstance(m, models.SpatialTransformer):
            torch.nn.init.zeros_(m.proj_out.weight)
            torch.nn.init.zeros_(m.proj_out.bias)
    torch.nn.init.zeros_(unet.out[2].weight)
    torch.nn.init.zeros_(unet.out[2].bias)
    tm = text.text_model
    torch.nn.init.normal_(tm.embeddings.token_embedding.weight, std=0.02)
    torch.nn.init.normal_(tm.embeddings.position_embedding.weight, std=0.01)
    d = common.TEXT["hidden"]
    L = common.TEXT["layers"]
    for layer in tm.encoder.layers:
        a = layer.self_attn
        for lin in (a.q_proj, a.k_proj, a.v_proj):
            torch.nn.init.normal_(lin.weight, std=d ** -0.5)
            torch.nn.init.zeros_(lin.bias)
        torch.nn.init.normal_(a.out_proj.weight, std=d ** -0.5 * (2 * L) ** -0.5)
        torch.nn.init.zeros_(a.out_proj.bias)
        torch.nn.init.normal_(layer.mlp.fc1.weight, std=(2 * d) ** -0.5)
        torch.nn.init.zeros_(layer.mlp.fc1.bias)
        torch.nn.init.normal_(layer.mlp.fc2.weight, std=d ** -0.5 * (2 * L) ** -0.5)
        torch.nn.init.zeros_(layer.mlp.fc2.bias)


class Captions:
    def __init__(self, entries, tk, drop):
        self.entries = entries
        self.tk = tk
        self.drop = drop
        self.empty = tk.encode77("")
        self.cache = {}

    def ids(self, i, rng):
        if rng.random() < self.drop:
            return self.empty
        c = data.sample_caption(self.entries[i], rng)
        if c not in self.cache:
            self.cache[c] = self.tk.encode77(c)
        return self.cache[c]


def train(args):
    common.setup(args.threads, seed=4321)
    log = common.Log(os.path.join(WORK, "train_unet.log"))
    _, entries = data.load(os.path.join(WORK, "data"))
    lat = torch.load(os.path.join(WORK, "latents.pt"))
    lat_mean, lat_logvar = lat["mean"], lat["logvar"]
    N, K = lat_mean.shape[:2]
    tk = tok.CLIPTokenizer(args.vocab)
    assert len(tk.vocab) == common.TEXT["vocab_size"], len(tk.vocab)
    caps = Captions(entries, tk, args.caption_dropout)

    unet = models.UNet(common.UNET)
    text = models.CLIPText(common.TEXT)
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.999), weight_decay=0.01)
    ck_path = os.path.join(WORK, "unet.pt")
    ck = common.load_ckpt(ck_path)
    step, seconds = 0, 0.0
    rng = random.Random(4321)
    if ck:
        unet.load_state_dict(ck["unet"])
        text.load_state_dict(ck["text"])
        opt.load_state_dict(ck["opt"])
        ema_u, ema_t = common.EMA(unet, args.ema), common.EMA(text, args.ema)
        ema_u.shadow, ema_t.shadow = ck["ema_unet"], ck["ema_text"]
        step, seconds = ck["step"], ck["seconds"]
        common.set_rng_state(ck["rng"])
        rng.setstate(ck["py_rng"])
        log("resume", step=step, hours=round(seconds / 3600, 3))
    else:
        init_weights(unet, text)
        ema_u, ema_t = common.EMA(unet, args.ema), common.EMA(text, args.ema)
        log("start", unet_params=models.count_params(unet), text_params=models.count_params(text))
    if step >= args.total_steps:
        log("already done", step=step)
        return

    ac = schedule.alphas_cumprod_f32()
    sf = common.SCALING_FACTOR
    budget = common.Budget(args.minutes)
    acc, nacc = 0.0, 0
    s50 = seconds
    last_save = budget.elapsed()
    while step < args.total_steps and not budget.over():
        t_step = budget.elapsed()
        lr = common.cosine_lr(step, args.total_steps, args.lr, args.lr * 0.1, 500)
        for g in opt.param_groups:
            g["lr"] = lr
        B = args.batch
        idx = [rng.randrange(N) for _ in range(B)]
        var = [rng.randrange(K) for _ in range(B)]
        m = lat_mean[idx, var].float()
        lv = lat_logvar[idx, var].float()
        x0 = sf * (m + torch.randn_like(m) * torch.exp(0.5 * lv))
        ids = torch.tensor([caps.ids(i, rng) for i in idx], dtype=torch.int64)
        t = torch.randint(0, 1000, (B,))
        a = ac[t][:, None, None, None]
        eps = torch.randn_like(x0)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        ctx = text(ids)
        pred = unet(xt, t.float(), ctx)
        per = (pred - eps).pow(2).mean(dim=(1, 2, 3))
        if args.min_snr > 0:
            snr = a.view(-1) / (1 - a.view(-1))
            w = torch.clamp(snr, max=args.min_snr) / snr
            loss = (w * per).mean()
        else:
            loss = per.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        # EMA warm-up (as in diffusers' EMAModel): decay = min(ema, (1+n)/(10+n))
        d = min(args.ema, (1 + step) / (10 + step))
        ema_u.update(unet, d)
        ema_t.update(text, d)
        seconds += budget.elapsed() - t_step
        acc += per.mean().item()
        nacc += 1
        if step % 50 == 0:
            log("step %d" % step, lr=round(lr, 6), mse=round(acc / nacc, 4),
                samples_per_s=round(B * nacc / max(seconds - s50, 1e-9), 2))
            s50 = seconds
            acc, nacc = 0.0, 0
        if budget.elapsed() - last_save > 600 or step == args.total_steps:
            _save(ck_path, unet, text, opt, ema_u, ema_t, step, seconds, rng, args)
            last_save = budget.elapsed()
    _save(ck_path, unet, text, opt, ema_u, ema_t, step, seconds, rng, args)
    log("stopped", step=step, total=args.total_steps, hours=round(seconds / 3600, 3))


def _save(path, unet, text, opt, ema_u, ema_t, step, seconds, rng, args):
    common.save_ckpt(path, dict(unet=unet.state_dict(), text=text.state_dict(),
                                batch=args.batch, total_steps=args.total_steps,
                                opt=opt.state_dict(), ema_unet=ema_u.shadow,
                                ema_text=ema_t.shadow, step=step, seconds=seconds,
                                rng=common.rng_state(), py_rng=rng.getstate(),
                                unet_config=common.UNET, text_config=common.TEXT))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--minutes", type=float, default=60.0, help="time budget of this run")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--total-steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--min-snr", type=float, default=5.0, help="0 = plain MSE")
    ap.add_argument("--caption-dropout", type=float, default=0.1)
    ap.add_argument("--vocab", default=os.path.join(WORK, "tok"))
    args = ap.parse_args()
    train(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
