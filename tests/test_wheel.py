"""`maturin build --release` makes one abi3 wheel that installs and imports in a fresh venv."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def cargo_version() -> str:
    """The version as Cargo.toml writes it: the one place it is defined."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    return tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]


def test_version_has_one_source():
    import distilx
    import distilx._native

    assert distilx.__version__ == distilx._native.__version__ == cargo_version()
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and "\nversion =" not in pyproject  # maturin reads Cargo.toml


def maturin() -> str:
    exe = Path(sys.executable).with_name("maturin")
    found = str(exe) if exe.exists() else shutil.which("maturin")
    if not found:
        pytest.fail("maturin is not installed; `pip install maturin` (it is in the dev extra)")
    return found


def test_abi3_wheel_builds_installs_and_imports(tmp_path, tokenizer_json):
    out = tmp_path / "wheels"
    # The same target dir and profile as `maturin develop --release`: only the final link reruns.
    subprocess.run([maturin(), "build", "--release", "--quiet", "--out", str(out), "-i", sys.executable],
                   cwd=ROOT, check=True, timeout=900, env={**os.environ, "VIRTUAL_ENV": str(Path(sys.executable).parents[1])})
    wheels = list(out.glob("distilx-*.whl"))
    assert len(wheels) == 1, wheels
    assert "-cp310-abi3-" in wheels[0].name, f"not an abi3 (Python >= 3.10) wheel: {wheels[0].name}"
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheels[0])], check=True, timeout=300)
    code = (
        "import distilx, distilx._native as n, sys, importlib.metadata as md\n"
        "assert 'site-packages' in n.__file__, n.__file__\n"
        f"assert md.version('distilx') == distilx.__version__ == {cargo_version()!r}, md.version('distilx')\n"
        f"t = n.Tokenizer({str(tokenizer_json)!r})\n"
        "print(t.encode(['Hello, wheel!'])[0], t.backend)\n"
    )
    clean_env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # only the installed wheel counts
    res = subprocess.run([str(py), "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env=clean_env)
    assert res.returncode == 0, res.stderr
    from tokenizers import Tokenizer as HFTokenizer
    ref = HFTokenizer.from_file(str(tokenizer_json))
    ref.no_padding()  # the file pads to 128
    want = ref.encode("Hello, wheel!", add_special_tokens=False).ids
    assert res.stdout.startswith(str(want)), (res.stdout, want)
    # The stubs and the package travel in the wheel.
    site = next((venv / "lib").glob("python3*/site-packages"))
    assert (site / "distilx" / "_native.pyi").is_file() and (site / "distilx" / "data.py").is_file()
    assert (site / "distilx" / "models" / "adapters.py").is_file() and (site / "distilx" / "losses" / "api.py").is_file()
    assert not list((site / "distilx").rglob("compile_check.py"))  # a dev tool (tests/), not shipped
