#!/bin/sh
# Tests that check meaning: the bundled demo model (data/models/impasto-emoji),
# run through the product (impasto generate, fp16 and fp32 on this device),
# turns prompts of distinct colours into pictures whose colour statistics
# differ the right way, and every picture looks like an emoji on white, not
# like noise. Statistics as tools/train-demo-model/test_meaning.py: over "ink"
# pixels (farther than 0.15 from white), redness = R - (G+B)/2 and so on,
# averaged over SEEDS seeds per prompt.
#   test-meaning.sh IMPASTO MODEL [WORKDIR]
set -eu
impasto=$1
model=$2
work=${3:-$(mktemp -d)}
mkdir -p "$work"
PY=/usr/bin/python3
SEEDS="11 12 13"
[ -f "$model" ] || { echo "Bail out! the bundled model $model is missing"; exit 1; }
"$PY" -c 'import PIL' 2>/dev/null || { echo "1..0 # SKIP $PY with PIL not found (apt install python3-pil)"; exit 77; }

n=0
for precision in fp16 fp32; do
  flag=""
  [ $precision = fp32 ] && flag=--no-fp16
  for prompt in "red apple" "blue heart" "green apple" "yellow heart" "red heart"; do
    for seed in $SEEDS; do
      f="$work/$precision-$(echo "$prompt" | tr ' ' '_')-$seed.png"
      "$impasto" generate --model "$model" --prompt "$prompt" --seed "$seed" --steps 20 --cfg 7.5 \
        $flag --quiet --output "$f" >/dev/null
    done
  done
done

exec "$PY" - "$work" $SEEDS <<'PYEOF'
import sys
from PIL import Image
work, seeds = sys.argv[1], sys.argv[2:]

def stats(path):
    img = Image.open(path).convert("RGB")
    w, h = img.size
    px = [tuple(c / 255.0 for c in p) for p in img.getdata()]
    ink = [p for p in px if max(1 - c for c in p) > 0.15] or px
    r = sum(p[0] for p in ink) / len(ink)
    g = sum(p[1] for p in ink) / len(ink)
    b = sum(p[2] for p in ink) / len(ink)
    grey = [sum(p) / 3 for p in px]
    lap = 0.0
    for y in range(1, h - 1):
        for x in range(1, w - 1):
            i = y * w + x
            lap += abs(4 * grey[i] - grey[i - 1] - grey[i + 1] - grey[i - w] - grey[i + w])
    return dict(redness=r - (g + b) / 2, greenness=g - (r + b) / 2, blueness=b - (r + g) / 2,
                yellowness=(r + g) / 2 - b,
                white=sum(1 for p in px if min(p) > 0.9) / len(px),
                roughness=lap / ((w - 2) * (h - 2)))

ORDER = [("redness", "red apple", "blue heart"), ("blueness", "blue heart", "red apple"),
         ("redness", "red heart", "blue heart"), ("greenness", "green apple", "red apple"),
         ("redness", "red apple", "green apple"), ("yellowness", "yellow heart", "blue heart")]
tests = []
for prec in ("fp16", "fp32"):
    mean = {}
    for prompt in sorted({p for _, a, b in ORDER for p in (a, b)}):
        st = [stats("%s/%s-%s-%s.png" % (work, prec, prompt.replace(" ", "_"), s)) for s in seeds]
        mean[prompt] = {k: sum(s[k] for s in st) / len(st) for k in st[0]}
        for s, v in zip(seeds, st):
            ok = v["white"] >= 0.25 and v["roughness"] <= 0.08
            tests.append((ok, "%s: '%s' seed %s is a picture on white (white %.2f >= 0.25, "
                              "roughness %.3f <= 0.08)" % (prec, prompt, s, v["white"], v["roughness"])))
    for stat, hi, lo in ORDER:
        a, b = mean[hi][stat], mean[lo][stat]
        tests.append((a > b, "%s: '%s' has more %s than '%s' (%.3f > %.3f, mean of %d seeds)"
                      % (prec, hi, stat, lo, a, b, len(seeds))))
print("1..%d" % len(tests))
for i, (ok, what) in enumerate(tests, 1):
    print("%s %d - %s" % ("ok" if ok else "not ok", i, what))
sys.exit(0 if all(ok for ok, _ in tests) else 1)
PYEOF
