#!/usr/bin/python3
"""Generate images with the EXPORTED checkpoint in PyTorch (float16 weights
computed in float32): CLIP text encoder, Euler (SD 1.x schedule, 'leading'
spacing), classifier-free guidance with batch order [uncond; cond], VAE decode.

  sample.py "red apple" "blue heart" ... [--seeds 4] [--steps 20] [--cfg 7.5] [--out grid.png]
  sample.py --reference        write tools/train-demo-model/reference/ (for compare_product.py)

Noise: torch.Generator().manual_seed(seed) -> randn([1, 4, 8, 8]) per image
(the reference file stores the noise tensors, so other implementations need
not reproduce torch's generator).
"""
import argparse
import json
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before torch loads OpenBLAS (see common.py)
import numpy as np
import torch

import common
from common import HERE, MODEL_DIR, MODEL_FILE
import models
import safetensors_io as st
import schedule
import tokenizer as tok

REF_DIR = os.path.join(HERE, "reference")
REF_PROMPTS = ["red apple", "blue heart", "smiling face", "dog face", "pizza", "fire",
               "green tree", "yellow star", "cat face", "sun"]
REF_STEPS = 20
REF_CFG = 7.5


class Pipeline:
    def __init__(self, path=MODEL_FILE, vocab_dir=MODEL_DIR):
        if path == "work":  # the current training checkpoints (EMA), fp32
            import export
            self.unet, self.vae, self.text = [m.eval() for m in export.load_trained(True)[:3]]
            self.tk = tok.CLIPTokenizer(os.path.join(common.WORK, "tok"))
            return
        sd, self.meta = st.load(path)
        sd = {k: v.astype(np.float32) if v.dtype == np.float16 else v for k, v in sd.items()}
        self.unet = models.UNet(common.UNET).eval()
        self.vae = models.AutoencoderKL(common.VAE).eval()
        self.text = models.CLIPText(common.TEXT).eval()
        models.load_single_file_into(sd, self.unet, self.vae, self.text)
        self.tk = tok.CLIPTokenizer(vocab_dir)

    def ids(self, prompts):
        return torch.tensor([self.tk.encode77(p) for p in prompts], dtype=torch.int64)

    @torch.no_grad()
    def encode_text(self, prompts):
        return self.text(self.ids(prompts))

    @torch.no_grad()
    def generate(self, prompts, noise, steps=REF_STEPS, cfg=REF_CFG, negative="", record=None):
        cond = self.encode_text(prompts)
        uncond = self.encode_text([negative] * len(prompts))
        lat = schedule.euler_sample(self.unet, noise, cond, uncond, steps, cfg, record)
        img = self.vae.decode(lat / common.SCALING_FACTOR)
        if record is not None:
            record.update(cond=cond, uncond=uncond)
        return lat, img


def noise_for(seed):
    g = torch.Generator().manual_seed(int(seed))
    return torch.randn((1, 4, 8, 8), generator=g, dtype=torch.float32)


def to_u8(img):
    """raw decoder output [B,3,H,W] in [-1,1] -> uint8 [B,H,W,3] (image_01 * 255)."""
    x = (img / 2 + 0.5).clamp(0, 1)
    return (x * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def save_grid(rows, labels, path, scale=2):
    """rows: list of uint8 [n, H, W, 3] (one row per prompt)."""
    from PIL import Image, ImageDraw
    n = max(len(r) for r in rows)
    H, W = rows[0].shape[1:3]
    lab = 110
    sheet = Image.new("RGB", (lab + n * W * scale, len(rows) * H * scale), (255, 255, 255))
    d = ImageDraw.Draw(sheet)
    for i, (r, t) in enumerate(zip(rows, labels)):
        d.text((4, i * H * scale + H * scale // 2 - 6), t[:18], fill=(0, 0, 0))
        for j, im in enumerate(r):
            sheet.paste(Image.fromarray(im).resize((W * scale, H * scale), Image.NEAREST),
                        (lab + j * W * scale, i * H * scale))
    sheet.save(path)


def write_reference(pipe):
    """Prompt -> (ids, contexts, noise, first-step eps, final latents, image)
    for fixed noise, for comparing the product with golden tolerances."""
    os.makedirs(REF_DIR, exist_ok=True)
    tensors = {}
    rows = []
    ts, sig, init = schedule.euler_schedule(REF_STEPS)
    for i, p in enumerate(REF_PROMPTS):
        noise = noise_for(i)
        rec = {}
        lat, img = pipe.generate([p], noise, REF_STEPS, REF_CFG, record=rec)
        # one UNet call on its own (first step, both CFG halves), for locating
        # a discrepancy before the sampler amplifies it
        x = noise * init
        inp = x / ((float(sig[0]) ** 2 + 1) ** 0.5)
        with torch.no_grad():
            e = pipe.unet(torch.cat([inp, inp]), torch.full((2,), float(ts[0])),
                          torch.cat([rec["uncond"], rec["cond"]]))
        pre = "p%d." % i
        tensors[pre + "ids"] = pipe.ids([p]).numpy().astype(np.int32)
        tensors[pre + "cond"] = rec["cond"].numpy()
        tensors[pre + "noise"] = noise.numpy()
        tensors[pre + "unet_step0_input"] = torch.cat([inp, inp]).numpy()
        tensors[pre + "unet_step0_eps"] = e.numpy()
        tensors[pre + "step_latents"] = torch.stack(rec["step_latents"]).numpy()
        tensors[pre + "final_latents"] = lat.numpy()
        tensors[pre + "image"] = img.numpy()
        rows.append(to_u8(img))
    tensors["uncond"] = rec["uncond"].numpy()
    tensors["uncond_ids"] = pipe.ids([""]).numpy().astype(np.int32)
    tensors["timesteps"] = ts
    tensors["sigmas"] = sig
    st.save(os.path.join(REF_DIR, "impasto-emoji-reference.safetensors"), tensors,
            {"model": "impasto-emoji"})
    manifest = {
        "model": "data/models/impasto-emoji/impasto-emoji.fp16.safetensors",
        "note": "PyTorch float32 computation with the float16 weights of the exported file "
                "(tools/train-demo-model/sample.py --reference)",
        "sampler": "euler", "steps": REF_STEPS, "guidance_scale": REF_CFG, "negative_prompt": "",
        "cfg_batch_order": "[uncond; cond]", "image_hw": [64, 64], "latent_hw": [8, 8],
        "scaling_factor": common.SCALING_FACTOR,
        "init": "x = noise * init_noise_sigma (%.6f)" % init,
        "prompts": [{"index": i, "prompt": p, "noise": "p%d.noise" % i,
                     "noise_source": "torch.Generator().manual_seed(%d).randn(1,4,8,8)" % i}
                    for i, p in enumerate(REF_PROMPTS)],
        "tensors": {
            "p<i>.ids": "int32 [1,77] token ids (pad = eos)",
            "p<i>.cond / uncond": "[1,77,128] text encoder last_hidden_state (UNet context)",
            "p<i>.unet_step0_input / unet_step0_eps": "[2,4,8,8] UNet input and output at the first step, batch [uncond; cond], t = timesteps[0]",
            "p<i>.step_latents": "[steps,1,4,8,8] x after each Euler step",
            "p<i>.final_latents": "[1,4,8,8]",
            "p<i>.image": "[1,3,64,64] raw VAE decoder output; image_01 = clamp(image/2+0.5, 0, 1)",
        },
        # golden tolerances of the matching golden case kinds (max|err|/rms(expected))
        "tolerance": {
            "cond": {"fp32": 2e-5, "fp16": 1e-2},
            "uncond": {"fp32": 2e-5, "fp16": 1e-2},
            "unet_step0_eps": {"fp32": 5e-5, "fp16": 2e-2},
            "step_latents": {"fp32": 1e-4, "fp16": 5e-2},
            "final_latents": {"fp32": 1e-4, "fp16": 5e-2},
            "image": {"fp32": 2e-4, "fp16": 1e-1},
            "image_01": {"fp32": 2e-4, "fp16": 1e-1, "note": "computed from p<i>.image"},
        },
    }
    with open(os.path.join(REF_DIR, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    save_grid([np.concatenate(rows)], ["reference"], os.path.join(REF_DIR, "reference.png"), scale=2)
    print("reference: wrote %s" % REF_DIR)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("prompts", nargs="*")
    ap.add_argument("--seeds", type=int, default=4, help="images per prompt (seeds 0..n-1)")
    ap.add_argument("--seed0", type=int, default=0)
    ap.add_argument("--steps", type=int, default=REF_STEPS)
    ap.add_argument("--cfg", type=float, default=REF_CFG)
    ap.add_argument("--negative", default="")
    ap.add_argument("--out", default=os.path.join(common.WORK, "samples.png"))
    ap.add_argument("--model", default=MODEL_FILE, help='"work" = the training checkpoints')
    ap.add_argument("--reference", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    common.setup(args.threads)
    pipe = Pipeline(args.model)
    if args.reference:
        write_reference(pipe)
        return 0
    prompts = args.prompts or REF_PROMPTS
    rows = []
    for p in prompts:
        noise = torch.cat([noise_for(args.seed0 + s) for s in range(args.seeds)])
        _, img = pipe.generate([p] * args.seeds, noise, args.steps, args.cfg, args.negative)
        rows.append(to_u8(img))
    save_grid(rows, prompts, args.out)
    print("sample: wrote %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
