"""Shared helpers of the training tools: the chosen model sizes, CPU manners
(one thread, nice 10), checkpoints, time budget, logging."""
import json
import math
import os
import random
import sys
import time

# OpenBLAS must be told before torch loads it (Debian's torch uses the system
# libblas.so.3; tools/install-deps.sh --train installs OpenBLAS for it).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.path.join(HERE, "work")
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
MODEL_DIR = os.path.join(REPO, "data", "models", "impasto-emoji")
MODEL_FILE = os.path.join(MODEL_DIR, "impasto-emoji.fp16.safetensors")

sys.path.insert(0, HERE)
import models  # noqa: E402

# ---------------------------------------------------------------------------
# The demo model's sizes. SD 1.x topology at reduced width (see README.md):
# UNet: 3 levels (8x8 -> 4x4 -> 2x2 latents), cross-attention on the first two,
# plain last level, mid block with attention, 8 heads per level (SD1 convention).
UNET = models.unet_config(block_out_channels=[64, 96, 128], layers_per_block=2,
                          heads=8, context_dim=128)
# VAE: 4 levels, 3 downsamplers: 64x64x3 -> 8x8x4.
VAE = models.vae_config(block_out_channels=[32, 64, 64, 64], layers_per_block=2,
                        latent_channels=4)
# CLIP text encoder: head_dim 64 as in every real CLIP (128 / 64 = 2 heads).
TEXT = models.text_config(vocab_size=4096, hidden=128, layers=3, heads=2,
                          intermediate=512, max_positions=77, act="quick_gelu")
SCALING_FACTOR = 0.18215


def setup(threads=1, seed=None):
    """One thread and nice 10 by default: the machine is shared."""
    try:
        os.nice(10)
    except OSError:
        pass
    torch.set_num_threads(threads)
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)


def cosine_lr(step, total, peak, floor, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + 0.5 * (peak - floor) * (1.0 + math.cos(math.pi * p))


def save_ckpt(path, obj):
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)  # atomic: a killed run never leaves a torn checkpoint


def load_ckpt(path):
    if not os.path.exists(path):
        return None
    return torch.load(path, map_location="cpu")


def rng_state():
    return dict(py=random.getstate(), np=np.random.get_state(), torch=torch.get_rng_state())


def set_rng_state(s):
    random.setstate(s["py"])
    np.random.set_state(s["np"])
    torch.set_rng_state(s["torch"])


class Budget:
    def __init__(self, minutes):
        self.t0 = time.time()
        self.limit = minutes * 60.0

    def elapsed(self):
        return time.time() - self.t0

    def over(self):
        return self.elapsed() >= self.limit


class Log:
    def __init__(self, path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.f = open(path, "a", buffering=1)

    def __call__(self, msg, **kv):
        line = time.strftime("%H:%M:%S ") + msg
        if kv:
            line += " " + json.dumps(kv, sort_keys=True)
        print(line, flush=True)
        self.f.write(line + "\n")


class EMA:
    def __init__(self, module, decay):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module, decay=None):
        d = self.decay if decay is None else decay
        for k, v in module.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1.0 - d)
            else:
                self.shadow[k].copy_(v)
