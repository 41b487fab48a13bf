"""Ahead-of-time compilation of the loss kernels for sm_80 and sm_90, with no GPU.

Triton lowers each kernel to PTX for the target; the ptxas inside the triton wheel reports registers,
stack and spill bytes (printed here: run with -s to see the table; DISTILX_PTXAS_REPORT=<file> also
writes it). The selection (`compile_check.ci_cases`): every (block, warps) configuration the launchers
can choose x every term-flag combination for bf16 logits on sm_80 and sm_90; every other
(student, teacher) dtype pair for the training flags at V = 30522's block on sm_90; every cosine block
size for bf16 on both, fp32/fp16 on sm_90. `python tests/compile_check.py --all`
compiles the full cross product.

It runs in a subprocess: the test session has TRITON_INTERPRET=1, which replaces the compiler.

Stated bounds: zero spills for the V = 30522 (BLOCK_V = 4096) bf16 configurations that write the
gradient (training); at most 64 bytes of spill (and of stack) for every other configuration.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from distilx.triton_kernels import distill_logits

MAX_SPILL_BYTES = 64


@pytest.fixture(scope="module")
def reports():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_DEFAULT_FP_FUSION", "1")  # triton 3.9 warns when unset; 1 = its current default
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("compile_check.py")), "--json"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    table = "\n".join(
        f"{r['kernel']:<22} sm_{r['arch']}  {r['config']:<58} regs={r['registers']:<4} "
        f"spill_st={r['spill_stores']:<4} spill_ld={r['spill_loads']:<4} stack={r['stack_bytes']} "
        f"v4_loads={r.get('vector_loads', 0)}"
        for r in rows
    )
    print("\n" + table)
    if os.environ.get("DISTILX_PTXAS_REPORT"):
        with open(os.environ["DISTILX_PTXAS_REPORT"], "w") as f:
            f.write(table + "\n")
    return rows


def test_every_selected_config_compiled_for_both_archs(reports):
    logits = [r for r in reports if r["kernel"] == "distill_logits_kernel"]
    cosine = [r for r in reports if r["kernel"] == "cosine_kernel"]
    for arch in (80, 90):
        bf16 = [r for r in logits if r["arch"] == arch and "s=bf16 t=bf16" in r["config"]]
        assert len(bf16) >= len(distill_logits.CONFIGS) * 6, f"sm_{arch}: every block config x 6 flag sets"
        assert any(r["arch"] == arch for r in cosine)
    assert len({r["config"] for r in logits if r["arch"] == 90 and "kl=1 ce=1 grad=1" in r["config"]}) >= 9


def test_v30522_bf16_training_configs_do_not_spill(reports):
    block = distill_logits.config_for(30522)[0]
    training = [
        r for r in reports
        if r["kernel"] == "distill_logits_kernel" and f"BLOCK_V={block} " in r["config"]
        and "s=bf16 t=bf16" in r["config"] and "grad=1" in r["config"]
    ]
    assert len(training) == 2 * 3  # two archs x three flag sets that write the gradient
    for r in training:
        assert r["spill_stores"] == 0 and r["spill_loads"] == 0, r


def test_streaming_kernel_loads_16_bytes_at_a_time(reports):
    """With 16-byte aligned rows the streaming kernel's interior tiles use 16-byte vector loads (the first kernel,
    at a row stride that is not a multiple of 16 such as V = 30522, gets none: docs/kernel_notes.md)."""
    stream = [r for r in reports if r["kernel"] == "stream_kernel"]
    assert {r["config"].split()[0].split("-")[0] for r in stream} == {"stream", "split"}
    for r in stream:
        assert r["vector_loads"] >= 4, r  # student and teacher, in each pass


def test_every_config_has_bounded_spills_and_registers(reports):
    for r in reports:
        assert r["spill_stores"] <= MAX_SPILL_BYTES and r["spill_loads"] <= MAX_SPILL_BYTES, r
        assert r["stack_bytes"] <= MAX_SPILL_BYTES, r
        assert 0 < r["registers"] <= 255, r
