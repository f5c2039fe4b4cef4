#!/bin/bash
# The Impasto GIMP 3 plug-in in real GIMP 3 (gimp-console-3.0), with the real
# backend and the tiny golden model. Run by tools/gimp3-chroot-test.sh inside a
# Debian 13 chroot, or directly where GIMP 3 is installed:
#
#   tests/gimp/gimp3-test.sh PLUGIN BACKEND MODEL_DIR [ARTEFACT_DIR]
#
# Batch runs with Script-Fu's named arguments (GIMP 3 style): inpaint a
# rectangle and an ellipse (a new masked layer; the flattened image unchanged
# outside the selection, pixel for pixel), generate (size and place),
# img2img, failures (no selection, invalid model) leaving the image as it was.
# With Xvfb, xdotool and ImageMagick present, also the dialog under Xvfb:
# screenshot, OK, the job runs, one Ctrl+Z removes the result. GIMP 3 exits 0
# whatever happens: results are read from the log and the saved files.
set -u

PLUGIN=${1:?plug-in}
BACKEND=${2:?backend}
MODEL=${3:?model}
ARTEFACTS=${4:-$PWD}
here=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
CHECK="$PY $here/gimp_check.py"
GIMP=${GIMP3_CONSOLE:-gimp-console-3.0}
GIMP_GUI=${GIMP3_GUI:-gimp-3.0}
GIMP_TIMEOUT=${IMPASTO_GIMP_TIMEOUT:-900}

skip() { echo "SKIP: $*"; exit 77; }
command -v "$GIMP" >/dev/null 2>&1 || skip "$GIMP not found (GIMP 3)"
{ [ -x "$PY" ] && "$PY" -c 'import PIL' 2>/dev/null; } || skip "$PY with PIL not found"
[ -f "$MODEL/model_index.json" ] || skip "the tiny model is not at $MODEL"
PLUGIN=$(realpath "$PLUGIN"); BACKEND=$(realpath "$BACKEND")

T=$(mktemp -d /tmp/impasto-gimp3-XXXXXX)
stop_backend() {
  for f in "$T/run/impasto/impasto.pid" "$T/run/impasto/serve-gimp.pid"; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null)
    case "$pid" in ''|*[!0-9]*) continue ;; esac
    if tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline" | grep -q serve; then
      kill "$pid" 2>/dev/null
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null
    fi
  done
}
cleanup() {
  stop_backend
  if [ "${IMPASTO_TEST_KEEP:-0}" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

fail() {
  echo "FAIL: $*"
  for f in "$T"/*.log "$T/run/impasto/serve-gimp.log"; do
    [ -f "$f" ] || continue
    echo "---- $f"
    grep -av "resource name is invalid\|^$\|^(#t)$" "$f" | tail -n 50 | sed 's/^/  | /'
  done
  exit 1
}

mkdir -p "$T/profile/plug-ins/impasto" "$T/config" "$T/data" "$ARTEFACTS"
mkdir -m 700 -p "$T/run"
cp "$PLUGIN" "$T/profile/plug-ins/impasto/impasto"
export GIMP3_DIRECTORY="$T/profile"
export XDG_RUNTIME_DIR="$T/run" XDG_CONFIG_HOME="$T/config" XDG_DATA_HOME="$T/data"
export IMPASTO_BACKEND="$BACKEND" IMPASTO_SERVE_ARGS="--idle-timeout 300"
export IMPASTO_SERVE_START_TIMEOUT=300
unset IMPASTO_URL IMPASTO_SOCKET IMPASTO_MODEL_PATH
: "${MESA_SHADER_CACHE_DIR:=$(dirname "$(dirname "$BACKEND")")/mesa-shader-cache}"
export MESA_SHADER_CACHE_DIR
$CHECK make-input "$T/in.png" 160 120 || fail "cannot make the input image"

prelude() {
  cat <<EOF
(gimp-message-set-handler 1)
(define (say . parts) (gimp-message (apply string-append parts)))
(define (n x) (number->string x))
(define model "$MODEL")
(define (load-input) (car (gimp-file-load RUN-NONINTERACTIVE "$T/in.png")))
(define (first-layer img) (vector-ref (car (gimp-image-get-layers img)) 0))
(define (n-layers img) (vector-length (car (gimp-image-get-layers img))))
(define (save-image img path) (gimp-file-save RUN-NONINTERACTIVE img path -1))
(define (save-flat img path)
  (let ((dup (car (gimp-image-duplicate img))))
    (gimp-image-flatten dup)
    (save-image dup path)
    (gimp-image-delete dup)))
(define (save-mask layer path)
  ; the whole mask: edit-copy copies only what is selected
  (gimp-selection-none (car (gimp-item-get-image layer)))
  (gimp-edit-copy (vector (car (gimp-layer-get-mask layer))))
  (let ((m (car (gimp-edit-paste-as-new-image))))
    (save-image m path)
    (gimp-image-delete m)))
(define (report tag img layer)
  (say "RESULT " tag ".layers=" (n (n-layers img)))
  (say "RESULT " tag ".name=" (car (gimp-item-get-name layer)))
  (say "RESULT " tag ".x=" (n (car (gimp-drawable-get-offsets layer))))
  (say "RESULT " tag ".y=" (n (cadr (gimp-drawable-get-offsets layer))))
  (say "RESULT " tag ".w=" (n (car (gimp-drawable-get-width layer))))
  (say "RESULT " tag ".h=" (n (car (gimp-drawable-get-height layer))))
  (say "RESULT " tag ".mask=" (n (car (gimp-layer-get-mask layer))))
  (say "RESULT " tag ".position=" (n (car (gimp-image-get-item-position img layer))))
  (say "RESULT " tag ".parasite-begin")
  (say (caddr (car (gimp-item-get-parasite layer "impasto-job"))))
  (say "RESULT " tag ".parasite-end"))
EOF
}

run_gimp() { # NAME: $T/NAME.body -> $T/NAME.log
  local name=$1 t0=$SECONDS
  { prelude; cat "$T/$name.body"; printf '\n(say "DONE")\n'; } > "$T/$name.scm"
  timeout -k 10 "$GIMP_TIMEOUT" "$GIMP" -i -d -f --quit --batch-interpreter=plug-in-script-fu-eval \
    -b - < "$T/$name.scm" > "$T/$name.log" 2>&1
  local rc=$?
  echo "gimp 3 run '$name': $((SECONDS - t0)) s (rc $rc)"
  { [ $rc = 124 ] || [ $rc = 137 ]; } && fail "GIMP run '$name' timed out"
  grep -aq "Plug-in crashed\|fatal error" "$T/$name.log" && fail "the plug-in crashed in '$name'"
  grep -aq "script-fu-Warning: DONE" "$T/$name.log" || fail "the script '$name' did not finish"
  return 0
}
result() { grep -a "RESULT $2=" "$1" | tail -n 1 | sed "s/.*RESULT $2=//"; }
expect() {
  local v
  v=$(result "$1" "$2")
  [ "$v" = "$3" ] || fail "$2 is '$v', expected '$3'"
}
parasite() { sed -n "/RESULT $2.parasite-begin/,/RESULT $2.parasite-end/p" "$1"; }

# ---- batch ---------------------------------------------------------------------------
cat > "$T/batch.body" <<EOF
(let* ((img (load-input)) (d (first-layer img)))
  (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 40 30 50 40)
  (let ((layer (car (plug-in-impasto-inpaint #:run-mode RUN-NONINTERACTIVE #:image img
                      #:drawables (vector d) #:prompt "a red apple" #:model model
                      #:sampler "euler-a" #:steps 2 #:seed 42 #:size 64 #:color-match 0.5))))
    (report "rect" img layer)
    (save-mask layer "$T/rect-mask.png")
    (save-flat img "$T/rect-flat.png"))
  (gimp-image-delete img))
(let* ((img (load-input)) (d (first-layer img)))
  (gimp-context-set-antialias TRUE)
  (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 60 20 70 60)
  (let ((layer (car (plug-in-impasto-inpaint #:run-mode RUN-NONINTERACTIVE #:image img
                      #:drawables (vector d) #:prompt "a blue ball" #:model model
                      #:sampler "dpmpp-2m" #:steps 3 #:seed 7 #:size 64 #:strength 0.9
                      #:padding 50.0 #:color-match 0.0))))
    (report "ellipse" img layer)
    (save-flat img "$T/ellipse-flat.png")
    ; GIMP's own mask from the selection (Add Layer Mask > Selection)
    (gimp-layer-add-alpha d)
    (gimp-layer-add-mask d (car (gimp-layer-create-mask d ADD-MASK-SELECTION)))
    (save-mask layer "$T/ellipse-mask.png")
    (save-mask d "$T/ellipse-sel.png"))
  (gimp-image-delete img))
(let* ((img (load-input)) (d (first-layer img)))
  (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 10 20 50 30)
  (report "gensel" img (car (plug-in-impasto-generate #:run-mode RUN-NONINTERACTIVE #:image img
      #:drawables (vector d) #:prompt "a castle" #:model model #:steps 2 #:seed 5 #:size 64)))
  (gimp-selection-none img)
  (report "i2i" img (car (plug-in-impasto-img2img #:run-mode RUN-NONINTERACTIVE #:image img
      #:drawables (vector d) #:prompt "oil painting" #:model model #:steps 3 #:seed 11
      #:size 64 #:strength 0.7)))
  (gimp-image-delete img))
(let* ((img (load-input)) (d (first-layer img)))
  (gimp-selection-none img)
  (say "RESULT nosel=" (if (eq? 'failed (catch 'failed (plug-in-impasto-inpaint
      #:run-mode RUN-NONINTERACTIVE #:image img #:drawables (vector d) #:prompt "x"
      #:model model #:steps 2 #:size 64))) "failed" "ran"))
  (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 40 30 50 40)
  (say "RESULT badmodel=" (if (eq? 'failed (catch 'failed (plug-in-impasto-inpaint
      #:run-mode RUN-NONINTERACTIVE #:image img #:drawables (vector d) #:prompt "x"
      #:model "/nonexistent/model.safetensors" #:steps 2 #:size 64))) "failed" "ran"))
  (say "RESULT fail.layers=" (n (n-layers img)))
  (save-flat img "$T/fail-flat.png")
  (gimp-image-delete img))
EOF
run_gimp batch
log=$T/batch.log
expect "$log" rect.layers 2
expect "$log" rect.position 0
expect "$log" rect.x 8
expect "$log" rect.y 0
expect "$log" rect.w 114
expect "$log" rect.h 102
expect "$log" rect.name "Impasto inpaint: a red apple (seed 42)"
parasite "$log" rect | grep -q '^procedure=inpaint' || fail "no impasto-job parasite"
$CHECK mask-is-rect "$T/rect-mask.png" 8 0 40 30 50 40 || fail "rectangle: layer mask"
$CHECK unchanged-outside "$T/in.png" "$T/rect-flat.png" "$T/rect-mask.png" 8 0 100 \
  || fail "rectangle: pixels outside the selection changed"
x=$(result "$log" ellipse.x); y=$(result "$log" ellipse.y)
read -r full partial _ <<< "$($CHECK mask-stats "$T/ellipse-mask.png")"
echo "ellipse mask: $full full, $partial partial"
[ "$full" -gt 3000 ] && [ "$full" -lt 3400 ] && [ "$partial" -gt 50 ] || fail "ellipse mask"
$CHECK mask-equals-selection "$T/ellipse-mask.png" "$x" "$y" "$T/ellipse-sel.png" \
  || fail "ellipse: the layer mask is not GIMP's mask from the selection"
$CHECK unchanged-outside "$T/in.png" "$T/ellipse-flat.png" "$T/ellipse-mask.png" "$x" "$y" 1000 \
  || fail "ellipse: pixels outside the selection changed"
parasite "$log" ellipse | grep -q '^sampler=DPM++ 2M' || fail "ellipse parasite sampler"
expect "$log" gensel.x 10
expect "$log" gensel.y 20
expect "$log" gensel.w 50
expect "$log" gensel.h 30
expect "$log" gensel.mask -1
expect "$log" i2i.w 160
expect "$log" i2i.h 120
expect "$log" i2i.mask -1
expect "$log" i2i.layers 3
expect "$log" nosel failed
expect "$log" badmodel failed
expect "$log" fail.layers 1
grep -aq "Inpaint Selection needs a selection" "$log" || fail "no clear error for a missing selection"
$CHECK same "$T/in.png" "$T/fail-flat.png" || fail "a failed call changed the image"
echo "PASS: GIMP 3 batch"

# ---- dialog under Xvfb ------------------------------------------------------------------
for p in "$GIMP_GUI" xvfb-run xdotool import; do
  if ! command -v "$p" >/dev/null 2>&1; then
    echo "SKIP (dialog): $p not found"
    exit 0
  fi
done
cat > "$T/gui.scm" <<EOF
(begin
$(prelude)
(define (wait-file path k)
  (if (and (> k 0) (null? (car (file-glob #:pattern path #:filename-encoding FALSE))))
      (wait-file path (- k 1))))
(let* ((img (load-input)) (d (first-layer img)))
  (gimp-display-new img)
  (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 40 25 80 60)
  (gimp-image-clean-all img)
  (say "DIALOG")
  (plug-in-impasto-inpaint #:run-mode RUN-INTERACTIVE #:image img #:drawables (vector d)
    #:prompt "a red apple on a wooden table, oil painting" #:negative-prompt "blurry"
    #:model model #:steps 2 #:seed 1234 #:size 64)
  (say "RESULT after.layers=" (n (n-layers img)))
  (save-flat img "$T/gui-after.png")
  (gimp-displays-flush)
  (say "PHASE1")
  (wait-file "$T/undone" 200000)
  (say "RESULT undone.layers=" (n (n-layers img)))
  (save-flat img "$T/gui-undone.png")
  (say "DONE")
  (gimp-quit TRUE)))
EOF
cat > "$T/gui-driver.sh" <<EOF
#!/bin/bash
$GIMP_GUI --no-splash -d -f --batch-interpreter=plug-in-script-fu-eval -b "\$(cat "$T/gui.scm")" > "$T/gui.log" 2>&1 &
gimp=\$!
wid=
for _ in \$(seq 600); do
  wid=\$(xdotool search --name '^Impasto - Inpaint Selection\$' 2>/dev/null | head -n 1)
  [ -n "\$wid" ] && break
  kill -0 \$gimp 2>/dev/null || break
  sleep 0.5
done
if [ -z "\$wid" ]; then echo "no dialog appeared"; kill \$gimp; exit 1; fi
sleep 3
import -window "\$wid" "$ARTEFACTS/gimp3-inpaint-dialog.png"
import -window root "$ARTEFACTS/gimp3-inpaint-screen.png"
# OK by its mnemonic (_OK): Return would go to the prompt's text view. GTK 3
# takes XTEST input (not XSendEvent): focus the window (no window manager
# here), then type.
xdotool windowfocus --sync "\$wid"
sleep 0.5
xdotool key alt+o
echo "dialog \$wid: shot, OK pressed"
for _ in \$(seq 1200); do
  grep -aq 'script-fu-Warning: PHASE1' "$T/gui.log" && break
  kill -0 \$gimp 2>/dev/null || break
  sleep 0.5
done
sleep 1
import -window root "$ARTEFACTS/gimp3-inpaint-result.png"
# the image window ("...) 160x120 – GIMP")
img=\$(xdotool search --name '160x120 – GIMP\$' 2>/dev/null | head -n 1)
if [ -n "\$img" ]; then
  xdotool windowfocus --sync "\$img" 2>/dev/null; sleep 1; xdotool key ctrl+z; sleep 2
  echo "undo sent to \$img"
else
  echo "no image window"
fi
touch "$T/undone"
for _ in \$(seq 240); do kill -0 \$gimp 2>/dev/null || break; sleep 0.5; done
kill \$gimp 2>/dev/null
exit 0
EOF
chmod +x "$T/gui-driver.sh"
t0=$SECONDS
timeout -k 10 "$GIMP_TIMEOUT" xvfb-run -a -s "-screen 0 1280x900x24" "$T/gui-driver.sh" > "$T/driver.log" 2>&1
rc=$?
cat "$T/driver.log"
echo "gimp 3 dialog run: $((SECONDS - t0)) s (rc $rc)"
[ $rc = 0 ] || fail "the GIMP 3 dialog run failed"
grep -aq "script-fu-Warning: DONE" "$T/gui.log" || fail "the GIMP 3 dialog script did not finish"
expect "$T/gui.log" after.layers 2
expect "$T/gui.log" undone.layers 1
$CHECK same "$T/in.png" "$T/gui-undone.png" || fail "undo did not restore the image"
echo "PASS: GIMP 3 dialog (screenshot $ARTEFACTS/gimp3-inpaint-dialog.png)"
exit 0
