#!/usr/bin/env bash
# Set up deepvis from nothing: system libraries (Debian/Ubuntu), a virtual environment in .venv,
# PyTorch, and the project. With --test, also the test tools (Xvfb, xdotool, ImageMagick) and the
# test extra (pytest, captum, grad-cam, hypothesis, onnx).
#   bash scripts/install.sh          # then: .venv/bin/deepvis live demo
#   bash scripts/install.sh --test   # then: .venv/bin/python -m pytest
set -euo pipefail
cd "$(dirname "$0")/.."
with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1

# OpenCV's GUI build needs X11/GL libraries; GUI tests need a virtual display and a key sender.
packages="libgl1 libglib2.0-0 libsm6"
[ $with_tests = 1 ] && packages="$packages xvfb xauth xdotool imagemagick x11-utils"
if command -v apt-get >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  missing=$(for p in $packages; do dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
  if [ -n "$missing" ]; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends $missing
  fi
fi

python3 -m venv .venv
pip=".venv/bin/python -m pip"
$pip install -q --upgrade pip
$pip install -q torch==2.14.1 torchvision==0.29.1
if [ $with_tests = 1 ]; then
  $pip install -q -e ".[test]"
else
  $pip install -q -e .
fi
# grad-cam (a test oracle) pulls opencv-python-headless, which overwrites the GUI build's cv2 module
# (no window, no keys). Keep exactly one OpenCV: the GUI build.
if $pip show -q opencv-python-headless >/dev/null 2>&1; then
  version=$($pip show opencv-python | awk '/^Version:/{print $2}')
  $pip uninstall -q -y opencv-python-headless
  $pip install -q --force-reinstall --no-deps "opencv-python==$version"
fi
.venv/bin/python -c "import cv2, torch, toolbox; assert 'GUI:                           NONE' not in cv2.getBuildInformation()"
echo "deepvis installed in .venv"
