"""scripts/bootstrap.sh builds the Rust extension once per change of what it is built from, and its long
steps print progress lines: checked on a scratch copy with `--check` (which builds nothing)."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def scratch_copy(tmp_path: Path) -> Path:
    """What the build stamp reads (rust/, Cargo.*, pyproject.toml), the scripts, and a venv whose python
    is this interpreter (the package is importable through it, as after a build)."""
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "rust", copy / "rust")
    shutil.copytree(ROOT / "scripts", copy / "scripts")
    for name in ("Cargo.toml", "Cargo.lock", "pyproject.toml"):
        shutil.copyfile(ROOT / name, copy / name)
    (copy / "python" / "distilx").mkdir(parents=True)
    (copy / "python" / "distilx" / "module.py").write_text("x = 1\n")
    (copy / ".venv" / "bin").mkdir(parents=True)
    (copy / ".venv" / "bin" / "python").symlink_to(sys.executable)
    return copy


def bootstrap(copy: Path, *args: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}  # distilx._native imports as it does here
    proc = subprocess.run(["bash", "scripts/bootstrap.sh", *args], cwd=copy, capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_the_rust_build_reruns_only_when_its_inputs_change(tmp_path):
    copy = scratch_copy(tmp_path)
    before = sorted(p.relative_to(copy) for p in copy.rglob("*"))
    assert "would build the Rust extension" in bootstrap(copy, "--check")  # never built here
    assert sorted(p.relative_to(copy) for p in copy.rglob("*")) == before  # --check changed nothing

    stamp = copy / ".venv" / ".distilx-build"
    stamp.write_text(bootstrap(copy, "--build-stamp"))  # as a finished build leaves it
    assert "Rust extension up to date" in bootstrap(copy, "--check")
    # Python code, docs and tests are not what the extension is built from
    (copy / "python" / "distilx" / "module.py").write_text("x = 2\n")
    (copy / "README.md").write_text("changed\n")
    assert "Rust extension up to date" in bootstrap(copy, "--check")

    for changed in ("rust/lib.rs", "Cargo.toml", "Cargo.lock", "pyproject.toml"):
        original = (copy / changed).read_bytes()
        (copy / changed).write_bytes(original + b"\n")
        assert "would build the Rust extension" in bootstrap(copy, "--check"), changed
        (copy / changed).write_bytes(original)
        assert "Rust extension up to date" in bootstrap(copy, "--check"), changed
    (copy / "rust" / "new_module.rs").write_text("// a new source file\n")
    assert "would build the Rust extension" in bootstrap(copy, "--check")


def test_a_built_stamp_without_an_importable_module_builds_again(tmp_path):
    copy = scratch_copy(tmp_path)
    (copy / ".venv" / ".distilx-build").write_text(bootstrap(copy, "--build-stamp"))
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "nothing-here")}  # the module is gone
    proc = subprocess.run(["bash", "scripts/bootstrap.sh", "--check"], cwd=copy, capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode == 0 and "would build the Rust extension" in proc.stdout


def test_long_steps_print_progress_lines_and_keep_their_status(tmp_path):
    script = ('source scripts/progress.sh; DISTILX_PROGRESS_EVERY=1 progress "step" "$1" '
              'sh -c "echo Compiling foo v1.0; sleep 3; echo Compiling bar v2.0; sleep 2; exit 3"')
    proc = subprocess.run(["bash", "-c", script, "bash", str(tmp_path / "step.log")], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 3  # the command's own status
    lines = proc.stdout.splitlines()
    assert len(lines) >= 3 and all(line.startswith("step: ") for line in lines)
    assert "Compiling foo v1.0" in lines[0] and "Compiling bar v2.0" in lines[-1]
    assert (tmp_path / "step.log").read_text().startswith("Compiling foo")
