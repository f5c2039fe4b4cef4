#!/usr/bin/python3
"""Tests that check meaning, not just numbers, on the EXPORTED checkpoint
(PyTorch; run by the training tools, not in CI):

  test_meaning.py [--seeds 4] [--json reference/meaning.json]

With fixed seeds, prompts of distinct colours give images whose colour
statistics differ the right way (a red apple is redder than a blue heart),
and every image is a picture (white background, smooth), not noise.

Statistics (on image_01 in [0,1], over "ink" pixels: those farther than 0.15
from white in max-norm): redness = R - (G+B)/2, greenness = G - (R+B)/2,
blueness = B - (R+G)/2, yellowness = (R+G)/2 - B; white_fraction = share of
pixels with min(R,G,B) > 0.9; roughness = mean |4-neighbour Laplacian| of the
grey image. The same statistics on the product's images should satisfy the
same inequalities (the product's noise differs from torch's; the assertions
hold over seeds, the printed margins say by how much).
"""
import argparse
import json
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before torch loads OpenBLAS (see common.py)
import numpy as np
import torch

import common
from sample import Pipeline, noise_for, save_grid, to_u8, REF_DIR

STEPS = 20
CFG = 7.5

# (statistic, prompt that must score higher, prompt that must score lower)
ORDERINGS = [
    ("redness", "red apple", "blue heart"),
    ("blueness", "blue heart", "red apple"),
    ("redness", "red heart", "blue heart"),
    ("blueness", "blue heart", "red heart"),
    ("greenness", "green heart", "red heart"),
    ("greenness", "green apple", "red apple"),
    ("redness", "red apple", "green apple"),
    ("yellowness", "yellow heart", "blue heart"),
    ("greenness", "evergreen tree", "red apple"),
    ("yellowness", "sun", "blue heart"),
]
# every image must look like an emoji on white, not like noise
MIN_WHITE_FRACTION = 0.25
MAX_ROUGHNESS = 0.08


def stats(img01):
    """img01: float [H, W, 3] in [0, 1] -> dict of colour/shape statistics."""
    x = np.asarray(img01, np.float64)
    ink = np.max(1.0 - x, axis=2) > 0.15
    if ink.sum() < 8:
        ink = np.ones(ink.shape, bool)
    r, g, b = (x[..., c][ink].mean() for c in range(3))
    grey = x.mean(axis=2)
    lap = (4 * grey[1:-1, 1:-1] - grey[:-2, 1:-1] - grey[2:, 1:-1]
           - grey[1:-1, :-2] - grey[1:-1, 2:])
    return dict(redness=r - (g + b) / 2, greenness=g - (r + b) / 2, blueness=b - (r + g) / 2,
                yellowness=(r + g) / 2 - b, ink_fraction=float(ink.mean()),
                white_fraction=float((x.min(axis=2) > 0.9).mean()),
                roughness=float(np.abs(lap).mean()), mean_rgb=[r, g, b])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--json", default=os.path.join(REF_DIR, "meaning.json"))
    ap.add_argument("--grid", default=os.path.join(common.WORK, "meaning.png"))
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    common.setup(args.threads)
    pipe = Pipeline()
    prompts = sorted({p for _, a, b in ORDERINGS for p in (a, b)})
    per = {}
    rows = []
    noise = torch.cat([noise_for(1000 + s) for s in range(args.seeds)])
    for p in prompts:
        _, img = pipe.generate([p] * args.seeds, noise, STEPS, CFG)
        u8 = to_u8(img)
        rows.append(u8)
        per[p] = [stats(im / 255.0) for im in u8]
    save_grid(rows, prompts, args.grid)
    failures = 0
    results = []
    for stat, hi, lo in ORDERINGS:
        h = np.mean([s[stat] for s in per[hi]])
        l = np.mean([s[stat] for s in per[lo]])
        ok = h > l
        failures += not ok
        results.append(dict(stat=stat, higher=hi, lower=lo, higher_value=h, lower_value=l,
                            margin=h - l, ok=bool(ok)))
        print("%-10s %-16s %.3f > %-16s %.3f  margin %+.3f  %s" %
              (stat, hi, h, lo, l, h - l, "ok" if ok else "FAIL"))
    for p in prompts:
        for i, s in enumerate(per[p]):
            bad = s["white_fraction"] < MIN_WHITE_FRACTION or s["roughness"] > MAX_ROUGHNESS
            if bad:
                failures += 1
                print("not a picture: %r seed %d white %.2f roughness %.3f" %
                      (p, 1000 + i, s["white_fraction"], s["roughness"]))
    wf = [s["white_fraction"] for p in prompts for s in per[p]]
    ro = [s["roughness"] for p in prompts for s in per[p]]
    print("white_fraction min %.2f (>= %.2f), roughness max %.3f (<= %.3f)" %
          (min(wf), MIN_WHITE_FRACTION, max(ro), MAX_ROUGHNESS))
    # pure Gaussian noise through the same statistics, for scale
    rng = np.random.default_rng(0)
    ns = stats(np.clip(rng.normal(0.5, 0.3, (64, 64, 3)), 0, 1))
    print("for scale, noise image: white %.2f roughness %.3f" % (ns["white_fraction"], ns["roughness"]))
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(dict(steps=STEPS, guidance_scale=CFG, sampler="euler",
                       noise_seeds="torch.Generator().manual_seed(1000+s)", seeds=args.seeds,
                       ink_threshold=0.15, min_white_fraction=MIN_WHITE_FRACTION,
                       max_roughness=MAX_ROUGHNESS, orderings=results,
                       per_prompt={p: per[p] for p in prompts}), f, indent=1)
    print("test_meaning: %s" % ("PASS" if failures == 0 else "%d FAILED" % failures))
    return 0 if failures == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
