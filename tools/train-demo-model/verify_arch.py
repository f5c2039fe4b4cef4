#!/usr/bin/python3
"""Check that the PyTorch networks in models.py are exact: load the golden
sd15-tiny single-file weights into them and reproduce the golden cases
(diffusers / transformers float32 outputs) within their fp32 tolerances.

  /usr/bin/python3 tools/train-demo-model/verify_arch.py [--golden DIR]

Exit status 0 when every output is within tolerance.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import models  # noqa: E402
import safetensors_io as st  # noqa: E402
import schedule  # noqa: E402
import tokenizer as tok  # noqa: E402


def err(actual, expected):
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    rms = np.sqrt(np.mean(e * e))
    return float(np.max(np.abs(a - e)) / max(rms, 1e-30))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--golden", default="/work/shared/golden")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = args.golden
    manifest = json.load(open(os.path.join(g, "manifest.json")))
    cases = {c["id"]: c for c in manifest["cases"]}

    sd, _ = st.load(os.path.join(g, "sd15-tiny/sd15-tiny.safetensors"))
    mcfg = manifest["models"]["sd15-tiny"]
    u = mcfg["unet"]
    unet = models.UNet(models.unet_config(
        u["block_out_channels"], u["layers_per_block"],
        [t.startswith("CrossAttn") for t in u["down_block_types"]],
        u["attention_head_dim"], u["cross_attention_dim"], u["in_channels"], u["out_channels"]))
    v = mcfg["vae"]
    vae = models.AutoencoderKL(models.vae_config(v["block_out_channels"], v["layers_per_block"],
                                                 v["latent_channels"]))
    tc = json.load(open(os.path.join(g, "sd15-tiny/diffusers/text_encoder/config.json")))
    text = models.CLIPText(models.text_config(tc["vocab_size"], tc["hidden_size"],
                                              tc["num_hidden_layers"], tc["num_attention_heads"],
                                              tc["intermediate_size"], tc["max_position_embeddings"],
                                              tc["hidden_act"]))
    models.load_single_file_into(sd, unet, vae, text)
    # the single file must be fully consumed by the three modules (+ DDPM buffers)
    ddpm = set(schedule.ddpm_buffers_f64())
    rest = [k for k in sd if not k.startswith((models.UNET_PREFIX, models.VAE_PREFIX,
                                               models.TEXT_PREFIX)) and k not in ddpm]
    assert not rest, rest
    for m in (unet, vae, text):
        m.eval()

    results = []

    def check(case, name, actual, expected):
        tol = cases[case]["tolerance"]["per_output"].get(name, {}).get(
            "fp32", cases[case]["tolerance"]["fp32"])
        e = err(actual, expected)
        results.append((case, name, e, tol, e <= tol))

    def load_case(cid):
        return st.load(os.path.join(g, cases[cid]["file"]))[0]

    with torch.no_grad():
        for cid in ("unet_sd15_b1_32x32_t999", "unet_sd15_b2cfg_32x32_t500",
                    "unet_sd15_b1_24x40_t1"):
            c = load_case(cid)
            eps = unet(torch.from_numpy(c["sample"]), torch.from_numpy(c["timestep"]),
                       torch.from_numpy(c["context"]))
            check(cid, "eps", eps.numpy(), c["eps"])
        for cid in ("vae_decode_16x16", "vae_decode_12x20"):
            c = load_case(cid)
            img = vae.decode(torch.from_numpy(c["latent"]) / models.AutoencoderKL.scaling_factor)
            check(cid, "image", img.numpy(), c["image"])
            check(cid, "image_01", (img / 2 + 0.5).clamp(0, 1).numpy(), c["image_01"])
        c = load_case("vae_encode_128x128")
        mean, logvar = vae.encode(torch.from_numpy(c["image"]))
        check("vae_encode_128x128", "mean", mean.numpy(), c["mean"])
        check("vae_encode_128x128", "logvar", logvar.numpy(), c["logvar"])
        check("vae_encode_128x128", "latent_mode_scaled",
              (mean * models.AutoencoderKL.scaling_factor).numpy(), c["latent_mode_scaled"])
        c = load_case("text_encoder_sd15")
        ids = torch.from_numpy(c["ids"].astype(np.int64))
        last, hidden = text(ids, output_hidden_states=True)
        check("text_encoder_sd15", "last_hidden_state", last.numpy(), c["last_hidden_state"])
        check("text_encoder_sd15", "clip_skip2",
              text.text_model.final_layer_norm(hidden[-2]).numpy(), c["clip_skip2"])
        check("text_encoder_sd15", "hidden_states", torch.stack(hidden, 1).numpy(),
              c["hidden_states"])
        # schedules + the Euler sampler used by sample.py / reference outputs
        c = load_case("schedules_sd1")
        check("schedules_sd1", "alphas_cumprod", schedule.alphas_cumprod_f32().numpy(),
              c["alphas_cumprod"])
        c = load_case("sampler_euler_6")
        ts, sig, _ = schedule.euler_schedule(6)
        check("sampler_euler_6", "timesteps", ts, c["timesteps"])
        check("sampler_euler_6", "sigmas", sig, c["sigmas"])
        rec = {}
        fin = schedule.euler_sample(unet, torch.from_numpy(c["noise"]), torch.from_numpy(c["cond"]),
                                    torch.from_numpy(c["uncond"]), 6,
                                    cases["sampler_euler_6"]["params"]["guidance_scale"], rec)
        check("sampler_euler_6", "step_latents", torch.stack(rec["step_latents"]).numpy(),
              c["step_latents"])
        check("sampler_euler_6", "final_latents", fin.numpy(), c["final_latents"])
        img = vae.decode(fin / models.AutoencoderKL.scaling_factor)
        check("sampler_euler_6", "image", img.numpy(), c["image"])

    # tokenizer: our implementation of the CLIP BPE procedure with the real CLIP
    # vocabulary must give the golden ids (prompts that need ftfy are skipped:
    # ftfy is not in Debian and our captions are plain ASCII)
    tk = tok.CLIPTokenizer(os.path.join(g, "sd15-tiny/diffusers/tokenizer"))
    tcase = cases["tokenizer_sd1"]
    c = load_case("tokenizer_sd1")
    n_ok = n_tot = 0
    for i, p in enumerate(tcase["prompts"]):
        text_p = p["prompt"]
        if p.get("depends_on_ftfy"):
            continue
        n_tot += 1
        if tk.encode77(text_p) == [int(x) for x in c["ids"][i]]:
            n_ok += 1
        else:
            print("tokenizer mismatch: %r" % text_p)
    results.append(("tokenizer_sd1", "ids (%d/%d prompts w/o ftfy)" % (n_ok, n_tot),
                    float(n_tot - n_ok), 0.0, n_ok == n_tot))

    ok = True
    for case, name, e, tol, good in results:
        print("%-28s %-40s err %.3g  tol %.3g  %s" % (case, name, e, tol, "ok" if good else "FAIL"))
        ok &= good
    print("verify_arch: %s" % ("all within tolerance" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
