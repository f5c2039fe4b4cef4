#!/bin/sh
# make demo: the main job on the bundled model.
#   tools/demo.sh BUILD_DIR OUTPUT_DIR
# Generates one picture per prompt with the bundled demo model, then builds a
# 2x2 sample picture from four of them and inpaints one quarter with a new
# prompt, the way the GIMP plug-in repaints a selection. Prints every path.
set -eu
build=${1:-build}
out=${2:-demo-output}
here=$(cd "$(dirname "$0")/.." && pwd)
impasto="$build/backend/impasto"
model="$here/data/models/impasto-emoji/impasto-emoji.fp16.safetensors"

if [ ! -x "$impasto" ]; then
  echo "demo: $impasto is not built (run make build)" >&2
  exit 1
fi
if [ ! -f "$model" ]; then
  echo "demo: the bundled model $model is missing" >&2
  exit 1
fi
mkdir -p "$out"

echo "== the bundled model"
"$impasto" info "$model" | sed -n '1,12p'
echo

# A seed per prompt, fixed so the demo is reproducible.
set -- "red apple:1" "blue heart:2" "grinning face:3" "smiling face with sunglasses:3" \
       "fire:5" "red heart:2" "cat face:1" "sun:1"
for item in "$@"; do
  prompt=${item%:*}
  seed=${item##*:}
  file="$out/$(echo "$prompt" | tr ' ' '-').png"
  "$impasto" generate --model "$model" --prompt "$prompt" --seed "$seed" --quiet --output "$file" >/dev/null
  echo "wrote $file  ($prompt, seed $seed)"
done

# The inpainting demo: a 2x2 sample picture, then repaint its top-left
# quarter with a new prompt through a mask (white = repaint).
sample="$out/sample-picture.png"
mask="$out/sample-mask.png"
/usr/bin/python3 - "$out" "$sample" "$mask" <<'EOF'
import sys
from PIL import Image
out, sample, mask = sys.argv[1:]
tiles = ["cat-face", "blue-heart", "grinning-face", "fire"]
img = Image.new("RGB", (128, 128), "white")
for i, name in enumerate(tiles):
    t = Image.open(f"{out}/{name}.png").convert("RGB").resize((64, 64))
    img.paste(t, ((i % 2) * 64, (i // 2) * 64))
img.save(sample)
m = Image.new("L", (128, 128), 0)
m.paste(255, (4, 4, 60, 60))
m.save(mask)
EOF
echo "wrote $sample  (four generated pictures)"
inpainted="$out/sample-inpainted-red-apple.png"
"$impasto" inpaint --model "$model" --init "$sample" --mask "$mask" --prompt "red apple" \
  --seed 1 --full-res --full-res-padding 4 --mask-blur 2 --quiet --output "$inpainted" >/dev/null
echo "wrote $inpainted  (top-left quarter repainted with \"red apple\"; the rest is unchanged)"
echo
echo "demo: pictures are in $out/"
