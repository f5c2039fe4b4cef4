#!/bin/bash
# The Impasto GIMP 2.10 plug-in in real GIMP, with the real backend and the tiny
# golden model.
#
#   tests/gimp/gimp-test.sh CASE PLUGIN BACKEND [ARTEFACT_DIR]
#
# CASE: inpaint | generate | failures | gui. Each run has its own GIMP profile
# (GIMP2_DIRECTORY), XDG folders and backend socket in a temporary folder, and
# stops the backend it started. GIMP always exits 0, so every GIMP run is under
# `timeout` and success is read from the log (RESULT/DONE lines the script
# prints with gimp-message) and from the files it saved, checked pixel by pixel
# by gimp_check.py. Exit 77 (skip) with a message when GIMP, PIL, the golden
# model or (gui) Xvfb/xdotool/ImageMagick are missing.
#
# IMPASTO_TEST_KEEP=1 keeps the temporary folder; IMPASTO_UPDATE_DOCS=1 (gui)
# also copies the screenshots of the dialog and of the result to docs/ (the
# README shows them).
set -u

CASE=${1:?case}
PLUGIN=${2:?plug-in}
BACKEND=${3:?backend}
ARTEFACTS=${4:-$PWD}
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
PY=/usr/bin/python3
CHECK="$PY $here/gimp_check.py"
GIMP=${GIMP_CONSOLE:-gimp-console-2.10}
GIMP_GUI=${GIMP_GUI:-gimp-2.10}
# Generous: the first backend start on a cold Mesa shader cache compiles every
# shader (about a minute here); later runs take seconds.
GIMP_TIMEOUT=${IMPASTO_GIMP_TIMEOUT:-600}

skip() { echo "SKIP: $*"; exit 77; }

command -v "$GIMP" >/dev/null 2>&1 || skip "$GIMP not found: install GIMP 2.10 (apt install gimp)"
{ [ -x "$PY" ] && "$PY" -c 'import PIL' 2>/dev/null; } || skip "$PY with PIL not found (apt install python3-pil)"
golden=${IMPASTO_GOLDEN_DIR:-$src/../shared/golden}
MODEL=$golden/sd15-tiny/diffusers
[ -f "$MODEL/model_index.json" ] || skip "the tiny golden model is not at $MODEL (golden data missing)"
[ -x "$PLUGIN" ] || { echo "FAIL: the plug-in $PLUGIN is not built"; exit 1; }
PLUGIN=$(realpath "$PLUGIN"); BACKEND=$(realpath "$BACKEND")
[ -x "$BACKEND" ] || { echo "FAIL: the backend $BACKEND is not built"; exit 1; }
if [ "$CASE" = gui ]; then
  for p in "$GIMP_GUI" xvfb-run xdotool import; do
    command -v "$p" >/dev/null 2>&1 || skip "$p not found (apt install gimp xvfb xauth xdotool imagemagick)"
  done
fi

T=$(mktemp -d /tmp/impasto-gimp-XXXXXX)
GIMP_PID=
cleanup() {
  [ -n "$GIMP_PID" ] && kill "$GIMP_PID" 2>/dev/null
  stop_backend
  if [ "${IMPASTO_TEST_KEEP:-0}" = 1 ]; then echo "kept $T"; else rm -rf "$T"; fi
}
trap cleanup EXIT

# The backend a run started: its pid files (the backend's own, and the one the
# plug-in writes when it starts it); only a process that is `impasto serve`.
stop_backend() {
  for f in "$T/run/impasto/impasto.pid" "$T/run/impasto/serve-gimp.pid"; do
    [ -f "$f" ] || continue
    pid=$(cat "$f" 2>/dev/null)
    case "$pid" in ''|*[!0-9]*) continue ;; esac
    if tr '\0' ' ' 2>/dev/null < "/proc/$pid/cmdline" | grep -q "serve"; then
      kill "$pid" 2>/dev/null
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null
    fi
  done
}

fail() {
  echo "FAIL: $*"
  for f in "$T"/*.log "$T/run/impasto/serve-gimp.log"; do
    [ -f "$f" ] || continue
    echo "---- $f"
    tail -n 60 "$f" | sed 's/^/  | /'
  done
  exit 1
}

# A fresh GIMP profile with only our plug-in added (system plug-ins stay).
setup() {
  mkdir -p "$T/profile/gradients" "$T/profile/plug-ins/impasto" "$T/config" "$T/data"
  mkdir -m 700 -p "$T/run"
  cp "$PLUGIN" "$T/profile/plug-ins/impasto/impasto"
  export GIMP2_DIRECTORY="$T/profile"
  export XDG_RUNTIME_DIR="$T/run" XDG_CONFIG_HOME="$T/config" XDG_DATA_HOME="$T/data"
  export IMPASTO_BACKEND="$BACKEND" IMPASTO_SERVE_ARGS="--idle-timeout 300"
  export IMPASTO_SERVE_START_TIMEOUT=300
  unset IMPASTO_URL IMPASTO_SOCKET IMPASTO_MODEL_PATH
  : "${MESA_SHADER_CACHE_DIR:=$(dirname "$(dirname "$BACKEND")")/mesa-shader-cache}"
  export MESA_SHADER_CACHE_DIR
  $CHECK make-input "$T/in.png" 160 120 || fail "cannot make the input image"
}

# Script-Fu helpers, prepended to every script.
prelude() {
  cat <<EOF
(gimp-message-set-handler 1)
(define (say . parts) (gimp-message (apply string-append parts)))
(define (n x) (number->string x))
(define model "$MODEL")
(define (load-input) (car (gimp-file-load RUN-NONINTERACTIVE "$T/in.png" "in.png")))
(define (save-png img drawable path)
  (file-png-save RUN-NONINTERACTIVE img drawable path path 0 9 0 0 0 0 0))
(define (save-flat img path)
  (let ((dup (car (gimp-image-duplicate img))))
    (save-png dup (car (gimp-image-flatten dup)) path)
    (gimp-image-delete dup)))
(define (report tag img layer)
  (say "RESULT " tag ".layers=" (n (car (gimp-image-get-layers img))))
  (say "RESULT " tag ".name=" (car (gimp-item-get-name layer)))
  (say "RESULT " tag ".x=" (n (car (gimp-drawable-offsets layer))))
  (say "RESULT " tag ".y=" (n (cadr (gimp-drawable-offsets layer))))
  (say "RESULT " tag ".w=" (n (car (gimp-drawable-width layer))))
  (say "RESULT " tag ".h=" (n (car (gimp-drawable-height layer))))
  (say "RESULT " tag ".mask=" (n (car (gimp-layer-get-mask layer))))
  (say "RESULT " tag ".position=" (n (car (gimp-image-get-item-position img layer))))
  (say "RESULT " tag ".parasite-begin")
  (say (caddr (car (gimp-item-get-parasite layer "impasto-job"))))
  (say "RESULT " tag ".parasite-end"))
(define (report-image tag img)
  (say "RESULT " tag ".layers=" (n (car (gimp-image-get-layers img)))))
EOF
}

# run_gimp NAME: runs $T/NAME.scm in gimp-console, log in $T/NAME.log.
run_gimp() {
  local name=$1 t0=$SECONDS
  { prelude; cat "$T/$name.body"; printf '\n(say "DONE")\n(gimp-quit 0)\n'; } > "$T/$name.scm"
  timeout -k 10 "$GIMP_TIMEOUT" "$GIMP" -i -d -f -b - < "$T/$name.scm" > "$T/$name.log" 2>&1
  local rc=$?
  echo "gimp run '$name': $((SECONDS - t0)) s (rc $rc)"
  [ $rc = 124 ] || [ $rc = 137 ] && fail "GIMP run '$name' timed out after $GIMP_TIMEOUT s"
  grep -q "Plug-in crashed\|fatal error" "$T/$name.log" && fail "the plug-in crashed in '$name'"
  return 0
}

result() { # result LOG KEY -> value
  grep -a "RESULT $2=" "$1" | tail -n 1 | sed "s/.*RESULT $2=//"
}

expect() { # expect LOG KEY VALUE
  local v
  v=$(result "$1" "$2")
  [ "$v" = "$3" ] || fail "$2 is '$v', expected '$3'"
}

require_done() {
  grep -aq "script-fu-Warning: DONE" "$T/$1.log" || fail "the script '$1' did not finish"
}

# Everything between RESULT TAG.parasite-begin and -end.
parasite() {
  sed -n "/RESULT $2.parasite-begin/,/RESULT $2.parasite-end/p" "$1"
}

# ---- cases ----------------------------------------------------------------------------

case_inpaint() {
  # A rectangle and an ellipse on fresh copies of the input; then the same
  # procedure with RUN-WITH-LAST-VALS (the ellipse run's options, seed 7).
  cat > "$T/inpaint.body" <<EOF
(let* ((img (load-input)) (d (car (gimp-image-get-active-drawable img))))
  (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 40 30 50 40)
  (let ((layer (car (plug-in-impasto-inpaint RUN-NONINTERACTIVE img d "a red apple" ""
                      model "Euler a" 2 7.0 42 64 1.0 25.0 0 0.0 0.5))))
    (report "rect" img layer)
    (say "RESULT rect.drawable-position=" (n (car (gimp-image-get-item-position img d))))
    (save-png img (car (gimp-layer-get-mask layer)) "$T/rect-mask.png")
    (save-flat img "$T/rect-flat.png"))
  (gimp-image-delete img))
(let* ((img (load-input)) (d (car (gimp-image-get-active-drawable img))))
  (gimp-context-set-antialias TRUE)
  (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 60 20 70 60)
  (let* ((res (plug-in-impasto-inpaint RUN-NONINTERACTIVE img d "a blue ball" "blurry"
                 model "DPM++ 2M" 3 5.0 7 64 0.9 50.0 0 0.0 0.0))
         (layer (car res)))
    (say "RESULT ellipse.seed=" (n (cadr res)))
    (report "ellipse" img layer)
    (save-png img (car (gimp-layer-get-mask layer)) "$T/ellipse-mask.png")
    (save-flat img "$T/ellipse-flat.png")
    ; what GIMP itself makes of the selection as a layer mask (Layer > Add
    ; Layer Mask > Selection): the same values, in the mask's own encoding
    (gimp-layer-add-alpha d)
    (let ((m (car (gimp-layer-create-mask d ADD-MASK-SELECTION))))
      (gimp-layer-add-mask d m)
      (save-png img m "$T/ellipse-sel.png")))
  (gimp-image-delete img))
(let* ((img (load-input)) (d (car (gimp-image-get-active-drawable img))))
  (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 100 60 30 30)
  (let* ((res (plug-in-impasto-inpaint RUN-WITH-LAST-VALS img d "" "" "" "" 0 0.0 0 0 0.0 0.0 0 0.0 0.0)))
    (say "RESULT last.seed=" (n (cadr res)))
    (report "last" img (car res)))
  (gimp-image-delete img))
EOF
  run_gimp inpaint
  local log=$T/inpaint.log
  require_done inpaint

  # rectangle: a new layer above the drawable over the context box (the
  # selection 40,30 50x40 plus 32 px, clipped), masked by exactly the
  # selection; the flattened image is unchanged outside it
  expect "$log" rect.layers 2
  expect "$log" rect.position 0
  expect "$log" rect.drawable-position 1
  expect "$log" rect.x 8
  expect "$log" rect.y 0
  expect "$log" rect.w 114
  expect "$log" rect.h 102
  [ "$(result "$log" rect.mask)" -gt 0 ] || fail "the inpaint layer has no layer mask"
  expect "$log" rect.name "Impasto inpaint: a red apple (seed 42)"
  parasite "$log" rect | grep -q "^procedure=inpaint" || fail "no impasto-job parasite"
  parasite "$log" rect | grep -q "^seed=42" || fail "the parasite lacks the seed"
  parasite "$log" rect | grep -q "^parameters=a red apple.*Seed: 42" || fail "the parasite lacks the A1111 parameters"
  $CHECK mask-is-rect "$T/rect-mask.png" 8 0 40 30 50 40 || fail "rectangle: layer mask"
  $CHECK unchanged-outside "$T/in.png" "$T/rect-flat.png" "$T/rect-mask.png" 8 0 100 \
    || fail "rectangle: pixels outside the selection changed"

  # ellipse (antialiased edge): unchanged wherever the mask is 0
  expect "$log" ellipse.seed 7
  expect "$log" ellipse.layers 2
  local x y stats full partial
  x=$(result "$log" ellipse.x); y=$(result "$log" ellipse.y)
  stats=$($CHECK mask-stats "$T/ellipse-mask.png") || fail "ellipse mask"
  read -r full partial _ <<< "$stats"
  echo "ellipse mask: $full full, $partial partial pixels"
  # pi * 35 * 30 = 3299 px
  [ "$full" -gt 3000 ] && [ "$full" -lt 3400 ] && [ "$partial" -gt 50 ] \
    || fail "the ellipse's mask is not the antialiased selection ($stats)"
  $CHECK mask-equals-selection "$T/ellipse-mask.png" "$x" "$y" "$T/ellipse-sel.png" \
    || fail "ellipse: the layer mask is not GIMP's mask from the selection"
  $CHECK unchanged-outside "$T/in.png" "$T/ellipse-flat.png" "$T/ellipse-mask.png" "$x" "$y" 1000 \
    || fail "ellipse: pixels outside the selection changed"
  parasite "$log" ellipse | grep -q '^prompt=a blue ball' || fail "ellipse parasite"
  parasite "$log" ellipse | grep -q '^sampler=DPM++ 2M' || fail "ellipse parasite sampler"

  # last values: the ellipse run's options (seed 7) on a new selection
  expect "$log" last.seed 7
  expect "$log" last.name "Impasto inpaint: a blue ball (seed 7)"
  expect "$log" last.layers 2
}

case_generate() {
  cat > "$T/generate.body" <<EOF
(let* ((img (load-input)) (d (car (gimp-image-get-active-drawable img))))
  (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 10 20 50 30)
  (let ((layer (car (plug-in-impasto-generate RUN-NONINTERACTIVE img d "a castle" ""
                      model "" 2 7.0 5 64 TRUE))))
    (report "gensel" img layer)
    (save-png img layer "$T/gensel.png"))
  (let ((layer (car (plug-in-impasto-generate RUN-NONINTERACTIVE img d "a castle" ""
                      model "Euler" 2 7.0 5 64 FALSE))))
    (report "genall" img layer))
  (gimp-image-delete img))
(let* ((img (load-input)) (d (car (gimp-image-get-active-drawable img))))
  (gimp-selection-none img)
  (let ((layer (car (plug-in-impasto-img2img RUN-NONINTERACTIVE img d "oil painting" ""
                      model "Euler a" 3 7.0 11 64 0.7 TRUE))))
    (report "i2i" img layer)
    (save-flat img "$T/i2i-flat.png"))
  (gimp-image-delete img))
(let* ((img (load-input)) (d (car (gimp-image-get-active-drawable img))))
  (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 30 30 80 50)
  (let ((layer (car (plug-in-impasto-img2img RUN-NONINTERACTIVE img d "oil painting" ""
                      model "Euler a" 3 7.0 11 64 1.0 TRUE))))
    (report "i2isel" img layer)
    (save-png img (car (gimp-layer-get-mask layer)) "$T/i2isel-mask.png")
    (save-flat img "$T/i2isel-flat.png"))
  (gimp-image-delete img))
EOF
  run_gimp generate
  local log=$T/generate.log
  require_done generate
  # generate: the selection's bounds, or the whole image; no mask
  expect "$log" gensel.x 10
  expect "$log" gensel.y 20
  expect "$log" gensel.w 50
  expect "$log" gensel.h 30
  expect "$log" gensel.mask -1
  expect "$log" gensel.position 0
  expect "$log" gensel.name "Impasto generate: a castle (seed 5)"
  parasite "$log" gensel | grep -q "^procedure=generate" || fail "generate parasite"
  $CHECK size "$T/gensel.png" 50 30 || fail "generated layer size"
  expect "$log" genall.x 0
  expect "$log" genall.y 0
  expect "$log" genall.w 160
  expect "$log" genall.h 120
  expect "$log" genall.layers 3
  # img2img on the whole drawable (no selection): a layer over it, no mask
  expect "$log" i2i.x 0
  expect "$log" i2i.w 160
  expect "$log" i2i.h 120
  expect "$log" i2i.mask -1
  expect "$log" i2i.layers 2
  parasite "$log" i2i | grep -q "^strength=0.7" || fail "img2img parasite strength"
  $CHECK differs "$T/in.png" "$T/i2i-flat.png" 5000 || fail "img2img changed nothing"
  # img2img on a selection: its bounds, masked by it
  expect "$log" i2isel.x 30
  expect "$log" i2isel.y 30
  expect "$log" i2isel.w 80
  expect "$log" i2isel.h 50
  [ "$(result "$log" i2isel.mask)" -gt 0 ] || fail "img2img on a selection has no layer mask"
  $CHECK unchanged-outside "$T/in.png" "$T/i2isel-flat.png" "$T/i2isel-mask.png" 30 30 1000 \
    || fail "img2img: pixels outside the selection changed"
}

case_failures() {
  # 1. no selection for inpaint, an invalid model, a file that is not a
  #    model: each call fails, reports why, and the image is unchanged
  printf 'not a model' > "$T/junk.safetensors"
  cat > "$T/fail1.body" <<EOF
(let* ((img (load-input)) (d (car (gimp-image-get-active-drawable img))))
  (gimp-selection-none img)
  (say "RESULT nosel=" (if (eq? 'failed (catch 'failed (plug-in-impasto-inpaint
      RUN-NONINTERACTIVE img d "x" "" model "" 2 7.0 1 64 1.0 25.0 0 0.0 0.5))) "failed" "ran"))
  (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 40 30 50 40)
  (say "RESULT badmodel=" (if (eq? 'failed (catch 'failed (plug-in-impasto-inpaint
      RUN-NONINTERACTIVE img d "x" "" "/nonexistent/model.safetensors" "" 2 7.0 1 64 1.0 25.0 0 0.0 0.5))) "failed" "ran"))
  (say "RESULT junkmodel=" (if (eq? 'failed (catch 'failed (plug-in-impasto-generate
      RUN-NONINTERACTIVE img d "x" "" "$T/junk.safetensors" "" 2 7.0 1 64 TRUE))) "failed" "ran"))
  (say "RESULT badsteps=" (if (eq? 'failed (catch 'failed (plug-in-impasto-generate
      RUN-NONINTERACTIVE img d "x" "" model "" 0 7.0 1 64 TRUE))) "failed" "ran"))
  (report-image "fail1" img)
  (save-flat img "$T/fail1-flat.png")
  (gimp-image-delete img))
EOF
  run_gimp fail1
  local log=$T/fail1.log
  require_done fail1
  expect "$log" nosel failed
  expect "$log" badmodel failed
  expect "$log" junkmodel failed
  expect "$log" badsteps failed
  expect "$log" fail1.layers 1
  grep -aq "Inpaint Selection needs a selection" "$log" || fail "no clear error for a missing selection"
  grep -aq "model /nonexistent/model.safetensors: no such file" "$log" || fail "no clear error for a missing model"
  grep -aq "model $T/junk.safetensors" "$log" || fail "no clear error for an invalid model file"
  grep -aq "steps must be 1..150" "$log" || fail "no clear error for bad steps"
  $CHECK same "$T/in.png" "$T/fail1-flat.png" || fail "a failed call changed the image"

  # 2. the backend program is missing
  cat > "$T/fail2.body" <<EOF
(let* ((img (load-input)) (d (car (gimp-image-get-active-drawable img))))
  (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 40 30 50 40)
  (say "RESULT nobackend=" (if (eq? 'failed (catch 'failed (plug-in-impasto-inpaint
      RUN-NONINTERACTIVE img d "x" "" model "" 2 7.0 1 64 1.0 25.0 0 0.0 0.5))) "failed" "ran"))
  (report-image "fail2" img)
  (save-flat img "$T/fail2-flat.png")
  (gimp-image-delete img))
EOF
  IMPASTO_BACKEND=/nonexistent/impasto run_gimp fail2
  log=$T/fail2.log
  require_done fail2
  expect "$log" nobackend failed
  expect "$log" fail2.layers 1
  grep -aq "the Impasto backend was not found" "$log" || fail "no clear error for a missing backend"
  $CHECK same "$T/in.png" "$T/fail2-flat.png" || fail "a failed call changed the image"

  # 3. the backend is killed (SIGKILL) while it runs our job
  cat > "$T/fail3.body" <<EOF
(let* ((img (load-input)) (d (car (gimp-image-get-active-drawable img))))
  (gimp-image-select-rectangle img CHANNEL-OP-REPLACE 40 30 50 40)
  (say "RESULT killed=" (if (eq? 'failed (catch 'failed (plug-in-impasto-inpaint
      RUN-NONINTERACTIVE img d "x" "" model "" 150 7.0 1 128 1.0 25.0 0 0.0 0.5))) "failed" "ran"))
  (report-image "fail3" img)
  (save-flat img "$T/fail3-flat.png")
  (gimp-image-delete img))
EOF
  run_gimp fail3 &
  local runner=$!
  if $CHECK wait-job "$T/run/impasto/impasto.sock" 300; then
    local pid
    pid=$(cat "$T/run/impasto/impasto.pid")
    echo "killing the backend (pid $pid) mid-job"
    kill -9 "$pid"
  fi
  wait $runner || exit 1
  log=$T/fail3.log
  require_done fail3
  expect "$log" killed failed
  expect "$log" fail3.layers 1
  grep -aq "the Impasto backend stopped during the job" "$log" || fail "no clear error for a killed backend"
  $CHECK same "$T/in.png" "$T/fail3-flat.png" || fail "a failed call changed the image"
}

case_gui() {
  # Real GIMP under Xvfb: a first (non-interactive) call on a copy sets the
  # last values (tiny model, 64 px); then Inpaint Selection runs
  # interactively: the dialog is shot (gimp-inpaint-dialog.png), its OK
  # button pressed (Alt+I, the "_Inpaint" mnemonic: Return would go to the
  # prompt), the job runs and the dialog closes; then one Ctrl+Z in the image
  # window must remove the whole result and nothing else. Screenshots of the
  # screen with the dialog, the result and after the undo are kept too.
  local out=$ARTEFACTS
  mkdir -p "$out"
  cat > "$T/gui.scm" <<EOF
(begin
$(prelude)
(define (wait-file path k)
  (if (and (> k 0) (= 0 (car (file-glob path 0)))) (wait-file path (- k 1))))
(let* ((img (load-input)) (d (car (gimp-image-get-active-drawable img))))
  (gimp-display-new img)
  (gimp-image-select-ellipse img CHANNEL-OP-REPLACE 40 25 80 60)
  (let* ((dup (car (gimp-image-duplicate img))))
    (plug-in-impasto-inpaint RUN-NONINTERACTIVE dup (car (gimp-image-get-active-drawable dup))
      "a red apple on a wooden table, oil painting" "blurry, low quality"
      model "Euler a" 2 7.0 1234 64 1.0 25.0 0 0.0 0.5)
    (gimp-image-delete dup))
  (gimp-image-clean-all img)
  (say "RESULT before.layers=" (n (car (gimp-image-get-layers img))))
  (say "DIALOG")
  (plug-in-impasto-inpaint RUN-INTERACTIVE img d "" "" "" "" 0 0.0 0 0 0.0 0.0 0 0.0 0.0)
  (say "RESULT after.layers=" (n (car (gimp-image-get-layers img))))
  (save-flat img "$T/gui-after.png")
  (gimp-displays-flush)
  (say "PHASE1")
  (wait-file "$T/undone" 2000000)
  (say "RESULT undone.layers=" (n (car (gimp-image-get-layers img))))
  (say "RESULT undone.selection=" (n (car (gimp-selection-bounds img))))
  (save-flat img "$T/gui-undone.png")
  (say "DONE")
  (gimp-quit 1)))
EOF
  rm -rf "$T/profile/backups"
  local log=$T/gui.log t0=$SECONDS
  # xvfb-run -a picks a free display; the dialog has no window manager and
  # sits at 0,0, so it is shot by window id.
  cat > "$T/gui-driver.sh" <<EOF
#!/bin/bash
set -u
$GIMP_GUI --no-splash -d -f -b "\$(cat "$T/gui.scm")" > "$log" 2>&1 &
gimp=\$!
echo \$gimp > "$T/gimp.pid"
wid=
for _ in \$(seq 600); do
  wid=\$(xdotool search --name '^Impasto - Inpaint Selection\$' 2>/dev/null | head -n 1)
  [ -n "\$wid" ] && break
  kill -0 \$gimp 2>/dev/null || break
  sleep 0.5
done
if [ -z "\$wid" ]; then echo "no dialog appeared"; kill \$gimp; exit 1; fi
sleep 2
import -window "\$wid" "$out/gimp-inpaint-dialog.png"
import -window root "$out/gimp-inpaint-screen.png"
echo "dialog \$wid shot"
xdotool key --window "\$wid" alt+i
for _ in \$(seq 1200); do
  grep -aq 'script-fu-Warning: PHASE1' "$log" && break
  kill -0 \$gimp 2>/dev/null || break
  sleep 0.5
done
sleep 1
import -window root "$out/gimp-inpaint-result.png"
# the image window ("*in.png-1.0 (RGB color ...) 160x120 – GIMP")
img=\$(xdotool search --name '160x120 – GIMP\$' 2>/dev/null | head -n 1)
if [ -n "\$img" ]; then
  xdotool windowfocus --sync "\$img" 2>/dev/null
  sleep 1
  xdotool key --window "\$img" ctrl+z
  sleep 2
  import -window root "$out/gimp-inpaint-undone.png"
else
  echo "no image window"
fi
touch "$T/undone"
for _ in \$(seq 240); do kill -0 \$gimp 2>/dev/null || break; sleep 0.5; done
kill \$gimp 2>/dev/null
exit 0
EOF
  chmod +x "$T/gui-driver.sh"
  timeout -k 10 "$GIMP_TIMEOUT" xvfb-run -a -s "-screen 0 1280x900x24" "$T/gui-driver.sh" > "$T/driver.log" 2>&1
  local rc=$?
  cat "$T/driver.log"
  echo "gui run: $((SECONDS - t0)) s (rc $rc)"
  [ $rc = 0 ] || fail "the GUI run failed or timed out"
  grep -aq "Plug-in crashed\|fatal error" "$log" && fail "the plug-in crashed"
  require_done gui
  [ -s "$out/gimp-inpaint-dialog.png" ] || fail "no dialog screenshot"
  echo "screenshot: $out/gimp-inpaint-dialog.png"
  expect "$log" before.layers 1
  expect "$log" after.layers 2
  $CHECK differs "$T/in.png" "$T/gui-after.png" 500 || fail "the interactive run changed nothing"
  # one undo removes the whole result
  expect "$log" undone.layers 1
  # ... and only the result: the selection made before the run is still there
  expect "$log" undone.selection 1
  $CHECK same "$T/in.png" "$T/gui-undone.png" || fail "undo did not restore the image"
  if [ "${IMPASTO_UPDATE_DOCS:-0}" = 1 ]; then
    mkdir -p "$src/docs" && cp "$out/gimp-inpaint-dialog.png" "$out/gimp-inpaint-result.png" "$src/docs/"
  fi
}

setup
case "$CASE" in
  inpaint) case_inpaint ;;
  generate) case_generate ;;
  failures) case_failures ;;
  gui) case_gui ;;
  *) echo "unknown case $CASE"; exit 2 ;;
esac
echo "PASS: gimp $CASE"
exit 0
