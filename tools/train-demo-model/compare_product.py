#!/usr/bin/python3
"""Compare the product's output for the demo model with the PyTorch reference
(reference/impasto-emoji-reference.safetensors, written by sample.py
--reference), using the golden metric max|err| / rms(expected) and the golden
tolerances of the matching case kinds (reference/manifest.json).

  compare_product.py OUT.safetensors [--precision fp32|fp16]
      OUT holds any subset of the reference tensor names, e.g. p0.cond,
      p0.unet_step0_eps, p0.final_latents, p0.image (same shapes). Inputs to
      feed the product are in the reference file: p<i>.ids / p<i>.noise (the
      initial noise; x = noise * init_noise_sigma), p<i>.unet_step0_input, ...
  compare_product.py --png 0=red_apple.png 1=blue_heart.png [--precision fp16]
      8-bit RGB PNGs (64x64) of the product for reference prompt i, compared
      with p<i>.image_01; the tolerance is widened by one 8-bit step.

Exit status 0 when every compared tensor is within tolerance.
"""
import argparse
import json
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import safetensors_io as st  # noqa: E402

REF = os.path.join(HERE, "reference")


def metric(actual, expected):
    a = np.asarray(actual, np.float64)
    e = np.asarray(expected, np.float64)
    if a.shape != e.shape:
        raise ValueError("shape %s, expected %s" % (a.shape, e.shape))
    if not np.all(np.isfinite(a)):
        return float("inf"), np.sqrt(np.mean(e * e))
    rms = np.sqrt(np.mean(e * e))
    return float(np.max(np.abs(a - e)) / max(rms, 1e-30)), rms


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("product", nargs="?", help="safetensors file with product outputs")
    ap.add_argument("--png", nargs="*", default=[], help="INDEX=FILE.png")
    ap.add_argument("--precision", choices=["fp32", "fp16"], default="fp16")
    ap.add_argument("--ref", default=REF)
    args = ap.parse_args()
    ref, _ = st.load(os.path.join(args.ref, "impasto-emoji-reference.safetensors"))
    man = json.load(open(os.path.join(args.ref, "manifest.json")))
    tol = man["tolerance"]
    rows = []
    if args.product:
        out, _ = st.load(args.product)
        for name, a in sorted(out.items()):
            if name not in ref and not name.endswith(".image_01"):
                print("skip %s (not in the reference)" % name)
                continue
            kind = name.split(".", 1)[1] if name.startswith("p") and "." in name else name
            if kind == "image_01" and name not in ref:
                ref[name] = np.clip(ref[name[:-3]] / 2 + 0.5, 0, 1)
            if kind in ("ids", "uncond_ids"):
                ok = np.array_equal(a.astype(np.int64), ref[name].astype(np.int64))
                rows.append((name, 0.0 if ok else 1.0, 0.0, ok))
                continue
            if kind not in tol:
                print("skip %s (input tensor)" % name)
                continue
            e, _ = metric(a, ref[name])
            t = tol[kind][args.precision]
            rows.append((name, e, t, e <= t))
    for spec in args.png:
        from PIL import Image
        idx, path = spec.split("=", 1)
        img = np.asarray(Image.open(path).convert("RGB"), np.float64) / 255.0
        exp = np.clip(ref["p%s.image" % idx][0] / 2 + 0.5, 0, 1).transpose(1, 2, 0)
        e, rms = metric(img, exp)
        t = tol["image_01"][args.precision] + (1.0 / 255.0) / rms
        rows.append(("png p%s.image_01 (%s)" % (idx, os.path.basename(path)), e, t, e <= t))
    if not rows:
        ap.error("nothing compared")
    ok = True
    for name, e, t, good in rows:
        print("%-40s err %.3g  tol %.3g  %s" % (name, e, t, "ok" if good else "FAIL"))
        ok &= good
    print("compare_product (%s): %s" % (args.precision, "all within tolerance" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
