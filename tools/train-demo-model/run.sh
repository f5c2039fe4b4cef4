#!/bin/sh
# Train the Impasto demo model (impasto-emoji) from scratch on one CPU core.
# Every step is resumable: run it again and it continues where it stopped.
#
#   tools/train-demo-model/run.sh [all]   everything below, in order
#   tools/train-demo-model/run.sh verify  PyTorch networks vs the golden cases
#   tools/train-demo-model/run.sh data    render emoji + captions, learn the BPE vocabulary
#   tools/train-demo-model/run.sh vae     phase 1 (MINUTES per call, resumable)
#   tools/train-demo-model/run.sh unet    phase 2 (MINUTES per call, resumable)
#   tools/train-demo-model/run.sh export  single-file fp16 checkpoint + tokenizer + reference outputs
#
# Environment: MINUTES (time budget per training call, default 600), THREADS (default 1).
set -eu
cd "$(dirname "$0")"
PY=/usr/bin/python3
MINUTES=${MINUTES:-600}
THREADS=${THREADS:-1}
what=${1:-all}
# OpenBLAS's own pthreads on top of torch's threads spin in sched_yield on a
# 2-core machine: 12 instead of 50 samples/s measured with --threads 2.
export OPENBLAS_NUM_THREADS=1

../install-deps.sh --train

step_verify() { $PY verify_arch.py; }
step_data() {
  [ -f work/data/emoji.npy ] || $PY data.py build
  [ -f work/tok/vocab.json ] || $PY tokenizer.py train --captions work/data/captions.txt --out work/tok
}
step_vae() {
  $PY train_vae.py --minutes "$MINUTES" --threads "$THREADS"
  # finalize only once training reached its last step
  if $PY -c "import torch,sys; c=torch.load('work/vae.pt'); sys.exit(0 if c['step']>=c['total_steps'] else 1)"; then
    [ -f work/latents.pt ] || $PY train_vae.py --finalize --threads "$THREADS"
  else
    echo "run.sh: VAE not finished yet; run again to continue"; exit 3
  fi
}
step_unet() { $PY train_unet.py --minutes "$MINUTES" --threads "$THREADS"; }
step_export() {
  $PY export.py
  $PY sample.py --reference
  $PY test_meaning.py
}

case "$what" in
  verify) step_verify ;;
  data) step_data ;;
  vae) step_data; step_vae ;;
  unet) step_unet ;;
  export) step_export ;;
  all) step_verify; step_data; step_vae; step_unet; step_export ;;
  *) echo "usage: $0 [all|verify|data|vae|unet|export]" >&2; exit 2 ;;
esac
