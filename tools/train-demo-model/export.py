#!/usr/bin/python3
"""Export the trained demo model as ONE original-layout SD 1.x single-file
checkpoint in float16, plus the tokenizer files and the model card:

  data/models/impasto-emoji/impasto-emoji.fp16.safetensors
  data/models/impasto-emoji/vocab.json, merges.txt
  data/models/impasto-emoji/impasto-emoji.fp16.json (configs, read by the product)
  data/models/impasto-emoji/README.md (model card), LICENSE

  export.py [--no-ema]

The layout mirrors /work/shared/golden/sd15-tiny/sd15-tiny.fp16.safetensors
tensor for tensor: model.diffusion_model.* (LDM UNet names),
first_stage_model.* (VAE attention q/k/v/proj_out as [C, C, 1, 1]),
cond_stage_model.transformer.text_model.* (Hugging Face CLIPTextModel names)
with int64 position_ids [1, 77], and the DDPM schedule buffers (float16).
"""
import argparse
import json
import os
import re
import shutil
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before torch loads OpenBLAS (see common.py)
import numpy as np
import torch

import common
from common import WORK, MODEL_DIR, MODEL_FILE
import models
import safetensors_io as st
import schedule

GOLDEN_FP16 = "/work/shared/golden/sd15-tiny/sd15-tiny.fp16.safetensors"


def load_trained(use_ema=True):
    vck = common.load_ckpt(os.path.join(WORK, "vae_final.pt"))
    uck = common.load_ckpt(os.path.join(WORK, "unet.pt"))
    if vck is None or uck is None:
        raise SystemExit("export: need work/vae_final.pt and work/unet.pt (train first)")
    vae = models.AutoencoderKL(common.VAE)
    vae.load_state_dict(vck["model"])
    unet = models.UNet(common.UNET)
    text = models.CLIPText(common.TEXT)
    unet.load_state_dict(uck["ema_unet"] if use_ema else uck["unet"])
    text.load_state_dict(uck["ema_text"] if use_ema else uck["text"])
    return unet, vae, text, vck, uck


def single_file_dict(unet, vae, text):
    out = {}
    for k, v in models.to_single_file(unet, vae, text).items():
        a = v.numpy()
        if a.dtype == np.float32:
            if not np.all(np.isfinite(a)) or np.abs(a).max() > 60000:
                raise SystemExit("export: %s does not fit float16" % k)
            a = a.astype(np.float16)
        out[k] = a
    for k, v in schedule.ddpm_buffers_f64().items():
        out[k] = v.astype(np.float32).astype(np.float16)  # as the golden fp16 file
    return out


def pattern(name):
    return re.sub(r"\.\d+\.", ".#.", re.sub(r"\.\d+\.", ".#.", name))


def check_against_golden(tensors):
    """Same naming scheme and dtypes as the golden sd15-tiny fp16 file: every
    name pattern (indices replaced by #) and dtype of one file occurs in the
    other, and the key set is exactly what our modules produce."""
    gh, _ = st.read_header(GOLDEN_FP16)
    gh.pop("__metadata__", None)
    gpat = {(pattern(k), v["dtype"]) for k, v in gh.items()}
    npmap = {np.dtype(np.float16): "F16", np.dtype(np.int64): "I64", np.dtype(np.float32): "F32"}
    opat = {(pattern(k), npmap[v.dtype]) for k, v in tensors.items()}
    only_g = sorted(gpat - opat)
    only_o = sorted(opat - gpat)
    if only_g or only_o:
        raise SystemExit("export: naming differs from golden: golden-only %s, ours-only %s" %
                         (only_g[:6], only_o[:6]))
    return len(gh)


def diffusers_configs(vocab_size):
    u, v, t = common.UNET, common.VAE, common.TEXT
    n = len(u["block_out_channels"])
    return {
        "unet": {
            "_class_name": "UNet2DConditionModel", "sample_size": 8, "in_channels": 4,
            "out_channels": 4, "block_out_channels": u["block_out_channels"],
            "layers_per_block": u["layers_per_block"],
            "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in u["attn_levels"]],
            "mid_block_type": "UNetMidBlock2DCrossAttn",
            "up_block_types": ["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(u["attn_levels"])],
            "attention_head_dim": u["heads"], "cross_attention_dim": u["context_dim"],
            "norm_num_groups": 32, "norm_eps": 1e-5, "use_linear_projection": False,
            "flip_sin_to_cos": True, "freq_shift": 0, "act_fn": "silu",
            "downsample_padding": 1, "transformer_layers_per_block": 1,
        },
        "vae": {
            "_class_name": "AutoencoderKL", "in_channels": 3, "out_channels": 3,
            "block_out_channels": v["block_out_channels"], "layers_per_block": v["layers_per_block"],
            "down_block_types": ["DownEncoderBlock2D"] * len(v["block_out_channels"]),
            "up_block_types": ["UpDecoderBlock2D"] * len(v["block_out_channels"]),
            "latent_channels": v["latent_channels"], "norm_num_groups": 32, "act_fn": "silu",
            "sample_size": 64, "scaling_factor": common.SCALING_FACTOR,
        },
        "text_encoder": {
            "architectures": ["CLIPTextModel"], "model_type": "clip_text_model",
            "vocab_size": vocab_size, "hidden_size": t["hidden"], "intermediate_size": t["intermediate"],
            "num_hidden_layers": t["layers"], "num_attention_heads": t["heads"],
            "max_position_embeddings": t["max_positions"], "hidden_act": t["act"],
            "layer_norm_eps": 1e-5, "bos_token_id": vocab_size - 2, "eos_token_id": vocab_size - 1,
            "pad_token_id": vocab_size - 1,
        },
        "scheduler": {
            "_class_name": "EulerDiscreteScheduler", "num_train_timesteps": 1000,
            "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
            "prediction_type": "epsilon", "steps_offset": 1, "timestep_spacing": "leading",
        },
    }


def last_logged(log_name, key):
    """Mean of `key` over the last 10 logged steps of a training log."""
    path = os.path.join(WORK, log_name)
    if not os.path.exists(path):
        return None
    vals = []
    for line in open(path):
        if " step " in line and "{" in line:
            d = json.loads(line[line.index("{"):])
            if key in d:
                vals.append(d[key])
    return round(float(np.mean(vals[-10:])), 4) if vals else None


CARD = """# impasto-emoji

A tiny text-to-image model with the exact **Stable Diffusion 1.x**
architecture (CLIP text encoder, UNet2DConditionModel, AutoencoderKL) at
reduced width, trained from scratch by the Impasto project on the Noto Color
Emoji font, so that Impasto's demo turns a prompt into a recognisable 64x64
picture without shipping real Stable Diffusion weights. It knows emoji, and
nothing else: prompts are best phrased like Unicode emoji names or keywords
("red apple", "blue heart", "dog face", "pizza", "fire").

- `impasto-emoji.fp16.safetensors`: single-file checkpoint, original LDM
  layout (`model.diffusion_model.*`, `first_stage_model.*`,
  `cond_stage_model.transformer.text_model.*`), float16, with int64
  `position_ids` and the DDPM schedule buffers; %(mb).2f MB, %(total_params)s parameters.
- `vocab.json`, `merges.txt`: byte-level BPE in OpenAI CLIP's format, learned
  from the captions (4096 tokens; `<|startoftext|>` = 4094, `<|endoftext|>` =
  4095 = pad).
- `LICENSE`: the weights are under the SIL Open Font License 1.1 (trained on
  renderings of Noto Color Emoji, OFL 1.1); the tokenizer files derive from
  Unicode data (Unicode License). Generated images are not restricted.

## Use

64x64 images (8x8 latents), Euler (or any SD1 sampler), 20 steps, guidance
7.5, empty negative prompt. Scheduler: scaled_linear betas 0.00085..0.012,
1000 steps, epsilon prediction, 'leading' spacing, steps_offset 1.
Larger sizes run but the model has only seen 64x64.

## Sizes

| component | parameters |
| --- | --- |
| UNet | %(unet)s |
| VAE | %(vae)s |
| text encoder | %(text_encoder)s |

Diffusers-style configuration (also in the file's `__metadata__` as
`impasto.config`):

```json
%(configs)s
```

Number of attention heads (not visible in the weights): UNet 8 per level (SD1
convention); text encoder 2 (head_dim 64, as in every real CLIP model).

## Training

- Data: 1870 emoji (every fully-qualified emoji of Unicode 15.0 without skin
  tones) rendered at 64x64 on white; captions from Unicode names and CLDR
  keywords; shifts of up to 3 px, mirroring where meaning allows.
- VAE: %(vae_steps)s steps of batch 16 (%(vae_hours)s h on one CPU core), L1 +
  0.5 gradient-L1 + 1e-4 KL; final training L1 %(vae_l1)s (images in [-1,1]),
  reconstruction L1 over the data set %(vae_recon)s. Latents normalised exactly
  so that 0.18215 * latent has unit std per channel (scaling factor unchanged).
- Text encoder + UNet: %(unet_steps)s steps of batch %(unet_batch)s (%(unet_hours)s h on one
  CPU core), epsilon objective, Min-SNR-5 weighting, caption dropout 0.1, EMA
  0.999 (exported); final training MSE %(unet_mse)s.
- Code: `tools/train-demo-model/` in the Impasto repository (PyTorch from
  Debian 12, no other downloads); it reproduces the diffusers golden cases
  before training (`verify_arch.py`).

%(notes)s
"""


def write_card(stats, cfg):
    notes_path = os.path.join(common.HERE, "card_notes.md")
    notes = open(notes_path).read().strip() if os.path.exists(notes_path) else ""
    p = stats["params"]
    card = CARD % dict(
        mb=stats["file_bytes"] / 1e6, total_params="{:,}".format(stats["total_params"]),
        unet="{:,}".format(p["unet"]), vae="{:,}".format(p["vae"]),
        text_encoder="{:,}".format(p["text_encoder"]),
        configs=json.dumps(cfg, indent=1), vae_steps=stats["vae_steps"],
        vae_hours=stats["vae_hours"], vae_l1=last_logged("train_vae.log", "l1"),
        vae_recon=None if stats["vae_recon_l1"] is None else round(stats["vae_recon_l1"], 4),
        unet_steps=stats["unet_steps"], unet_hours=stats["unet_hours"],
        unet_batch=stats.get("unet_batch"), unet_mse=last_logged("train_unet.log", "mse"),
        notes=notes)
    with open(os.path.join(MODEL_DIR, "README.md"), "w") as f:
        f.write(card)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-ema", action="store_true", help="export the raw instead of the EMA weights")
    ap.add_argument("--vocab", default=os.path.join(WORK, "tok"))
    args = ap.parse_args()
    common.setup(1)
    unet, vae, text, vck, uck = load_trained(not args.no_ema)
    tensors = single_file_dict(unet, vae, text)
    n_golden = check_against_golden(tensors)
    os.makedirs(MODEL_DIR, exist_ok=True)
    vocab = json.load(open(os.path.join(args.vocab, "vocab.json"), encoding="utf-8"))
    assert len(vocab) == common.TEXT["vocab_size"]
    assert vocab["<|startoftext|>"] == len(vocab) - 2 and vocab["<|endoftext|>"] == len(vocab) - 1
    cfg = diffusers_configs(len(vocab))
    meta = {
        "format": "pt",
        "impasto.model": "impasto-emoji",
        "impasto.license": "weights: SIL Open Font License 1.1; see LICENSE next to this file",
        "impasto.config": json.dumps(cfg, separators=(",", ":")),
    }
    st.save(MODEL_FILE, tensors, meta)
    for f in ("vocab.json", "merges.txt"):
        shutil.copyfile(os.path.join(args.vocab, f), os.path.join(MODEL_DIR, f))
    # the config sidecar the product reads beside a single file (MODEL.json):
    # what the weights cannot tell, above all the native size (64x64)
    with open(os.path.splitext(MODEL_FILE)[0] + ".json", "w") as f:
        json.dump(cfg, f, indent=1)
        f.write("\n")
    # round trip: the written file loads strictly into fresh modules, bit-exact
    back, meta2 = st.load(MODEL_FILE)
    u2, v2, t2 = models.UNet(common.UNET), models.AutoencoderKL(common.VAE), models.CLIPText(common.TEXT)
    models.load_single_file_into(back, u2, v2, t2)
    for k, a in tensors.items():
        assert back[k].dtype == a.dtype and np.array_equal(back[k], a), k
    assert back["cond_stage_model.transformer.text_model.embeddings.position_ids"].dtype == np.int64
    counts = dict(unet=models.count_params(unet), vae=models.count_params(vae),
                  text_encoder=models.count_params(text))
    stats = dict(
        params=counts, total_params=sum(counts.values()),
        file_bytes=os.path.getsize(MODEL_FILE), n_tensors=len(tensors),
        golden_tensor_count=n_golden,
        vae_steps=vck["step"], vae_hours=round(vck["seconds"] / 3600, 2), vae_recon_l1=vck.get("recon_l1"),
        unet_steps=uck["step"], unet_hours=round(uck["seconds"] / 3600, 2), ema=not args.no_ema,
        unet_batch=uck.get("batch"),
        latent_channel_mean=vck.get("latent_channel_mean"), latent_channel_std=vck.get("latent_channel_std"),
    )
    with open(os.path.join(WORK, "export_stats.json"), "w") as f:
        json.dump(dict(stats, configs=cfg), f, indent=1)
    write_card(stats, cfg)
    print(json.dumps(stats, indent=1))
    print("export: wrote %s (%.2f MB)" % (MODEL_FILE, stats["file_bytes"] / 1e6))
    return 0


if __name__ == "__main__":
    sys.exit(main())
