"""Ahead-of-time compilation of the loss kernels for sm_80 / sm_90 on a machine without a GPU.

Triton lowers a kernel to PTX for any target; the `ptxas` shipped in the triton wheel then reports
registers, stack and spill bytes per configuration (`ptxas -v`). This catches compile errors and
register spills in CI long before a GPU is lent. A development tool (not shipped in the wheel): used by
tests/test_kernel_compile.py; run `python tests/compile_check.py` for a table (`--all` for every case).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from dataclasses import dataclass
from itertools import product

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from distilx.losses.defaults import IGNORE_INDEX
from distilx.triton_kernels import cosine, distill_logits

TORCH_TO_TRITON = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
DTYPES = tuple(TORCH_TO_TRITON.values())
ARCHS = (80, 90)


@dataclass(frozen=True)
class PtxasReport:
    kernel: str
    arch: int
    config: str
    registers: int
    spill_stores: int
    spill_loads: int
    stack_bytes: int
    seconds: float
    vector_loads: int = 0  # 16-byte global loads (ld.global.v4) in the PTX

    def line(self) -> str:
        return (
            f"{self.kernel:<22} sm_{self.arch}  {self.config:<58} regs={self.registers:<4} "
            f"spill_st={self.spill_stores:<5} spill_ld={self.spill_loads:<5} stack={self.stack_bytes:<5} "
            f"v4_loads={self.vector_loads:<4} ({self.seconds:.2f}s)"
        )


def _ptxas_binaries() -> list[str]:
    """The ptxas executables inside the triton wheel (newer one first: it accepts newer PTX versions)."""
    from triton import knobs

    found = []
    for name in ("ptxas_blackwell", "ptxas"):
        tool = getattr(knobs.nvidia, name, None)
        path = getattr(tool, "path", None) if tool is not None else None
        if path and os.path.exists(path) and path not in found:
            found.append(path)
    if not found:
        raise RuntimeError("no ptxas found inside the triton wheel (triton/backends/nvidia/bin)")
    return found


_RE_STACK = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_RE_REGS = re.compile(r"Used (\d+) registers")


def run_ptxas(ptx: str, arch: int) -> tuple[int, int, int, int]:
    """(registers, spill_stores, spill_loads, stack_bytes) from `ptxas -v` on the PTX text."""
    gpu = f"sm_{arch}a" if arch >= 90 else f"sm_{arch}"
    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "kernel.ptx")
        with open(src, "w") as f:
            f.write(ptx)
        for binary in _ptxas_binaries():
            proc = subprocess.run(
                [binary, "-v", "--gpu-name", gpu, src, "-o", os.path.join(tmp, "kernel.cubin")],
                capture_output=True,
                text=True,
            )
            log = proc.stdout + proc.stderr
            if proc.returncode == 0:
                stack = _RE_STACK.search(log)
                regs = _RE_REGS.search(log)
                if not (stack and regs):
                    raise RuntimeError(f"could not parse ptxas output:\n{log}")
                return int(regs.group(1)), int(stack.group(2)), int(stack.group(3)), int(stack.group(1))
            errors.append(f"{binary}: {log.strip()}")
    raise RuntimeError("ptxas failed:\n" + "\n".join(errors))


def compile_kernel(fn, signature: dict, constexprs: dict, num_warps: int, arch: int, num_stages: int | None = None) -> str:
    """Compile `fn` for CUDA sm_<arch> and return its PTX (no GPU needed; not under TRITON_INTERPRET=1).

    Every pointer argument is declared 16-byte aligned, as a launch with PyTorch tensors specialises it
    (their storage is 16-byte aligned); integer arguments get no divisibility (V = 30522, 250002 are not
    multiples of 16, and those launches get none either)."""
    full_signature = dict(signature)
    full_signature.update({name: "constexpr" for name in constexprs})
    names = list(full_signature)
    attrs = {(fn.arg_names.index(name),): [["tt.divisibility", 16]] for name in names if signature.get(name, "").startswith("*")}
    source = ASTSource(fn=fn, signature=full_signature, constexprs=dict(constexprs), attrs=attrs)
    options = {"num_warps": num_warps} if num_stages is None else {"num_warps": num_warps, "num_stages": num_stages}
    compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32), options=options)
    return compiled.asm["ptx"]


def logits_kernel_cases(dtype_pairs=None, flags=None):
    """Every (BLOCK_V, num_warps) the launcher can choose x term flags x (student, teacher) dtypes."""
    dtype_pairs = dtype_pairs or [(s, t) for s in DTYPES for t in DTYPES]
    flags = flags or list(product((True, False), repeat=3))
    for (block, warps), (s_dt, t_dt), (has_kl, has_ce, write_grad) in product(
        distill_logits.CONFIGS, dtype_pairs, flags
    ):
        if not (has_kl or has_ce):
            continue  # the launcher is never called with both terms off
        signature = {
            "student_ptr": f"*{s_dt}",
            "teacher_ptr": f"*{t_dt}",
            "labels_ptr": "*i64",
            "kl_mask_ptr": "*i1",
            "grad_scales_ptr": "*fp64",
            "kl_rows_ptr": "*fp32",
            "ce_rows_ptr": "*fp32",
            "grad_ptr": f"*{s_dt}",
            "student_row_stride": "i64",
            "teacher_row_stride": "i64",
            "grad_row_stride": "i64",
            "vocab": "i32",
            "inv_temperature": "fp32",
        }
        constexprs = {
            "HAS_KL": has_kl,
            "HAS_CE": has_ce,
            "WRITE_GRAD": write_grad,
            "IGNORE": IGNORE_INDEX,
            "BLOCK_V": block,
        }
        name = f"BLOCK_V={block} warps={warps} s={s_dt} t={t_dt} kl={int(has_kl)} ce={int(has_ce)} grad={int(write_grad)}"
        yield name, distill_logits.distill_logits_kernel, signature, constexprs, warps


def stream_kernel_cases(configs, dtype="bf16", align=8):
    """The streaming kernel (distill_logits_stream.py) for `configs` (tuning.KernelConfig), training flags,
    16-byte aligned rows (ALIGN = 16 bytes / element) as the launcher passes them for contiguous logits."""
    from distilx.triton_kernels import distill_logits_stream as stream

    for config in configs:
        split = config.kernel == "split"
        signature = {
            "student_ptr": f"*{dtype}", "teacher_ptr": f"*{dtype}", "labels_ptr": "*i64", "kl_mask_ptr": "*i1",
            "grad_scales_ptr": "*fp64", "kl_rows_ptr": "*fp32", "ce_rows_ptr": "*fp32", "grad_ptr": f"*{dtype}",
            "stats_ptr": "*fp32", "count_ptr": "*i32", "student_row_stride": "i64", "teacher_row_stride": "i64",
            "grad_row_stride": "i64", "vocab": "i32", "inv_temperature": "fp32", "n_chunks": "i32", "spin_limit": "i32",
        }
        tiles = config.chunk_v // config.block_v if split else stream.WHOLE_ROW
        constexprs = {
            "HAS_KL": True, "HAS_CE": True, "WRITE_GRAD": True, "IGNORE": IGNORE_INDEX,
            "ROWS": config.block_v // config.group, "GROUP": config.group, "ALIGN": align, "SPLIT": split,
            "TILES_PER_CHUNK": tiles, "CHUNKS_POW2": 16 if split else 1,
        }
        name = f"{config.name} {dtype} align={align} kl=1 ce=1 grad=1"
        yield name, stream.stream_kernel, signature, constexprs, config.num_warps, config.num_stages


def cosine_kernel_cases(dtypes=DTYPES):
    for (block, warps), dt, write_grad in product(cosine.CONFIGS, dtypes, (True, False)):
        signature = {
            "student_ptr": f"*{dt}",
            "teacher_ptr": f"*{dt}",
            "row_mask_ptr": "*i1",
            "grad_scale_ptr": "*fp64",
            "rows_ptr": "*fp32",
            "grad_ptr": f"*{dt}",
            "hidden": "i32",
            "eps": "fp32",
        }
        constexprs = {"WRITE_GRAD": write_grad, "BLOCK_H": block}
        name = f"BLOCK_H={block} warps={warps} dtype={dt} grad={int(write_grad)}"
        yield name, cosine.cosine_kernel, signature, constexprs, warps


def report(case, arch: int) -> PtxasReport:
    name, fn, signature, constexprs, warps, *stages = case  # the streaming kernel's cases name their stages
    start = time.perf_counter()
    ptx = compile_kernel(fn, signature, constexprs, warps, arch, stages[0] if stages else None)
    regs, spill_st, spill_ld, stack = run_ptxas(ptx, arch)
    vector_loads = len(re.findall(r"ld\.global(?:\.\w+)*\.v4\.", ptx))
    return PtxasReport(fn.__name__, arch, name, regs, spill_st, spill_ld, stack, time.perf_counter() - start,
                       vector_loads)


def ci_cases():
    """The selection tests/test_kernel_compile.py checks: (arch, case) pairs.

    Every (block, warps) configuration x every term-flag combination for bf16 logits on sm_80 and sm_90;
    every other (student, teacher) dtype pair for the training flags at V = 30522's block on sm_90;
    every cosine block size for bf16 on both, plus fp32/fp16 at H <= 1024 on sm_90; one streaming and one
    split configuration of the streaming kernel (bf16, aligned rows) on sm_90.
    """
    block_30522 = distill_logits.config_for(30522)[0]
    other_pairs = [(s, t) for s in DTYPES for t in DTYPES if (s, t) != ("bf16", "bf16")]
    selected = []
    for arch in ARCHS:
        selected += [(arch, c) for c in logits_kernel_cases(dtype_pairs=[("bf16", "bf16")])]
        selected += [(arch, c) for c in cosine_kernel_cases(dtypes=("bf16",)) if "grad=1" in c[0]]
    selected += [
        (90, c)
        for c in logits_kernel_cases(dtype_pairs=other_pairs, flags=[(True, True, True)])
        if c[0].startswith(f"BLOCK_V={block_30522} ")
    ]
    selected += [(90, c) for c in cosine_kernel_cases(dtypes=("fp32", "fp16")) if c[0].startswith("BLOCK_H=1024 ")]
    selected += [(90, c) for c in stream_kernel_cases(STREAM_CI_CONFIGS())]
    return selected


def STREAM_CI_CONFIGS():  # noqa: N802 - a constant that needs an import
    """One streaming and one split configuration (the first of each kind the run-time tuning tries)."""
    from distilx.triton_kernels import tuning

    configs = tuning.candidates(30522)
    return [next(c for c in configs if c.kernel == kind) for kind in ("stream", "split")]


def main(argv=None) -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="the full cross product (slow: ~250 compiles)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        raise SystemExit("run without TRITON_INTERPRET=1: the interpreter replaces the compiler")
    if args.all:
        from distilx.triton_kernels import tuning

        streaming = [c for c in tuning.all_candidates() if c.kernel != "rowwise"]
        every = list(logits_kernel_cases()) + list(cosine_kernel_cases()) + list(stream_kernel_cases(streaming))
        selected = [(arch, c) for arch in ARCHS for c in every]
    else:
        selected = ci_cases()
    for arch, case in selected:
        r = report(case, arch)
        print(json.dumps(r.__dict__) if args.json else r.line(), flush=True)


if __name__ == "__main__":
    main()
