"""Which configuration the fused logits kernel launches (`select`), and the tuner that finds it (`autotune`).

Order of lookup, per (device, V, dtypes, gradient or not), memoised in the process:
  1. DISTILX_LOSS_KERNEL=<name> (e.g. "stream-b4096-g8-w8-s1"): that configuration, for experiments;
  2. the committed table `tuned_configs.json` beside this file, keyed by device name and compute capability
     (written by bench/tune_loss_kernels.py on a GPU; the nearest vocabulary within 2x is used);
  3. the cache of an earlier run-time tuning on this machine (<distilx cache dir>/kernel-tuning/);
  4. a device in neither: tuned once now (`autotune`, a few seconds of compiles and timings on synthetic
     logits of this shape), stored in the cache. DISTILX_AUTOTUNE=0 skips it; it never runs while a CUDA
     graph is being captured, nor on the CPU interpreter unless DISTILX_AUTOTUNE=force (tests);
  5. otherwise the first kernel's default configuration (`default_config`).
A candidate is eligible only if it reproduces the first kernel's outputs on the tuning logits, so a
configuration that miscompiles on some GPU or Triton version is never chosen.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

TABLE_PATH = Path(__file__).with_name("tuned_configs.json")
KERNELS = ("rowwise", "stream", "split")
SMALL_VOCAB = 2048  # chemistry / protein / byte vocabularies: one small tile per row
TUNE_BYTES = 2 << 30  # run-time tuning: student + teacher + gradient of the synthetic logits stay under this
TUNE_MAX_ROWS = 16384
TUNE_REPS = 10  # timed launches per candidate (median), after TUNE_WARMUP untimed ones
TUNE_WARMUP = 2


@dataclass(frozen=True)
class KernelConfig:
    kernel: str  # "rowwise" (the first kernel), "stream" (one program per row), "split" (chunk_v columns per program)
    block_v: int  # columns per tile
    num_warps: int
    num_stages: int = 1
    group: int = 8  # stream/split: consecutive columns per thread-row of a tile
    chunk_v: int = 0  # split: columns per program

    @property
    def name(self) -> str:
        if self.kernel == "rowwise":
            return f"rowwise-b{self.block_v}-w{self.num_warps}"
        head = f"split-c{self.chunk_v}-" if self.kernel == "split" else "stream-"
        return f"{head}b{self.block_v}-g{self.group}-w{self.num_warps}-s{self.num_stages}"

    @classmethod
    def parse(cls, name: str) -> "KernelConfig":
        """The inverse of `name` ("stream-b4096-g8-w8-s1", "split-c16384-b4096-g8-w8-s1", "rowwise-b4096-w8")."""
        kernel, *parts = name.strip().split("-")
        fields = {p[0]: int(p[1:]) for p in parts if p[:1] in "bgwsc" and p[1:].isdigit()}
        if kernel not in KERNELS or "b" not in fields or "w" not in fields or (kernel == "split") != ("c" in fields):
            raise ValueError(f"not a loss-kernel configuration name: {name!r} (e.g. 'stream-b4096-g8-w8-s1', "
                             "'split-c16384-b4096-g8-w8-s1', 'rowwise-b4096-w8')")
        config = cls(kernel, fields["b"], fields["w"], fields.get("s", 1), fields.get("g", 8), fields.get("c", 0))
        config.check()
        return config

    def check(self) -> None:
        pow2 = lambda x: x > 0 and x & (x - 1) == 0  # noqa: E731
        ok = pow2(self.block_v) and pow2(self.num_warps) and self.num_stages >= 1
        if self.kernel != "rowwise":
            ok &= pow2(self.group) and self.block_v % self.group == 0 and self.block_v // self.group >= 1
        if self.kernel == "split":
            ok &= self.chunk_v >= self.block_v and self.chunk_v % self.block_v == 0
        if not ok:
            raise ValueError(f"invalid loss-kernel configuration {self}")


def default_config(vocab: int) -> KernelConfig:
    """The first kernel's configuration (what ran on the first H200 run): the fallback everywhere."""
    from .distill_logits import config_for

    block, warps = config_for(vocab)
    return KernelConfig("rowwise", block, warps)


_S, _SP = "stream", "split"
_RUNTIME = [KernelConfig(_S, 4096, 8), KernelConfig(_S, 8192, 16), KernelConfig(_S, 2048, 4),
            KernelConfig(_S, 4096, 8, 2), KernelConfig(_SP, 4096, 8, chunk_v=16384),
            KernelConfig(_SP, 4096, 8, chunk_v=32768), KernelConfig(_SP, 2048, 4, chunk_v=8192)]
_EXTRA = [KernelConfig(_S, 4096, 8, group=16), KernelConfig(_S, 8192, 8, group=16), KernelConfig(_S, 16384, 16, group=16),
          KernelConfig(_S, 2048, 4, 2), KernelConfig(_SP, 8192, 16, chunk_v=65536),
          KernelConfig(_SP, 2048, 4, chunk_v=16384), KernelConfig(_SP, 8192, 8, group=16, chunk_v=32768)]
_SMALL = [KernelConfig(_S, 1024, 4), KernelConfig(_S, 512, 2), KernelConfig(_S, 2048, 4)]


def candidates(vocab: int, full: bool = False) -> list[KernelConfig]:
    """The configurations a tuning tries (the first kernel's default first): the run-time list, or with `full`
    the tuning script's longer one."""
    if vocab <= SMALL_VOCAB:
        return [default_config(vocab)] + _SMALL
    return [default_config(vocab)] + _RUNTIME + (_EXTRA if full else [])


def all_candidates() -> list[KernelConfig]:
    """Every configuration any tuning may try (tests run each one)."""
    seen = []
    for config in candidates(SMALL_VOCAB) + candidates(SMALL_VOCAB + 1, full=True):
        if config not in seen:
            seen.append(config)
    return seen


# ---------------------------------------------------------------- keys, table, cache
_DTYPE = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16", torch.float64: "fp64"}


def dtype_key(student_dtype: torch.dtype, teacher_dtype: torch.dtype) -> str:
    return f"{_DTYPE.get(student_dtype, str(student_dtype))}/{_DTYPE.get(teacher_dtype, str(teacher_dtype))}"


def device_key(device: torch.device) -> str:
    """'<device name>|sm_<major><minor>' for CUDA; 'interpreter' for the CPU (Triton's interpreter)."""
    if device.type != "cuda":
        return "interpreter"
    major, minor = torch.cuda.get_device_capability(device)
    return f"{torch.cuda.get_device_name(device)}|sm_{major}{minor}"


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def table() -> dict:
    """{device key: [entry, ...]} of the committed table."""
    return {key: dev.get("entries", []) for key, dev in _read(TABLE_PATH).get("devices", {}).items()}


def cache_path(key: str) -> Path:
    from ..assets import cache_dir

    slug = "".join(c if c.isalnum() else "_" for c in key)
    return cache_dir() / "kernel-tuning" / f"{slug}.json"


def cached_entries(key: str) -> list[dict]:
    return _read(cache_path(key)).get("entries", [])


def store(key: str, entry: dict) -> None:
    """Add (or replace) an entry in this machine's cache for `key` (atomic write: concurrent ranks are safe)."""
    path = cache_path(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = [e for e in cached_entries(key) if not _same_slot(e, entry)] + [entry]
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"device": key, "entries": entries}, indent=1) + "\n")
    os.replace(tmp, path)


def _same_slot(a: dict, b: dict) -> bool:
    return (a.get("vocab"), a.get("dtypes"), a.get("write_grad")) == (b.get("vocab"), b.get("dtypes"), b.get("write_grad"))


def lookup(entries: list[dict], vocab: int, dtypes: str, write_grad: bool) -> KernelConfig | None:
    """The entry for this slot: exact vocabulary first, else the nearest one within 2x (same dtypes, gradient
    or not preferred; then either), or None."""
    for want_grad in (write_grad, not write_grad):
        pool = [e for e in entries if e.get("dtypes") == dtypes and bool(e.get("write_grad")) == want_grad]
        pool = [e for e in pool if e.get("config")]
        if not pool:
            continue
        best = min(pool, key=lambda e: abs(math.log(e["vocab"] / vocab)))
        if abs(math.log(best["vocab"] / vocab)) <= math.log(2) and (best["vocab"] <= SMALL_VOCAB) == (vocab <= SMALL_VOCAB):
            return KernelConfig(**best["config"])
    return None


# ---------------------------------------------------------------- selection
_MEMO: dict[tuple, tuple[KernelConfig, str]] = {}


def config_with_source(device: torch.device, vocab: int, student_dtype, teacher_dtype, write_grad: bool,
                       tune: bool = True) -> tuple[KernelConfig, str]:
    """(configuration, where it came from: "override", "table", "cache", "autotuned" or "default")."""
    override = os.environ.get("DISTILX_LOSS_KERNEL")
    if override:
        return KernelConfig.parse(override), "override"
    slot = (device_key(device), vocab, dtype_key(student_dtype, teacher_dtype), bool(write_grad))
    if slot in _MEMO:
        return _MEMO[slot]
    key, _, dtypes, _ = slot
    found = lookup(table().get(key, []), vocab, dtypes, write_grad)
    result = (found, "table") if found else None
    if result is None:
        found = lookup(cached_entries(key), vocab, dtypes, write_grad)
        result = (found, "cache") if found else None
    if result is None and tune and _may_tune(device):
        try:
            entry = autotune(device, vocab, student_dtype, teacher_dtype, write_grad)
            result = (KernelConfig(**entry["config"]), "autotuned")
        except torch.cuda.OutOfMemoryError:  # the run itself left too little room: keep the default, do not retry
            torch.cuda.empty_cache()
            result = (default_config(vocab), "default (tuning ran out of memory)")
    if result is None:
        return default_config(vocab), "default"  # not memoised: a later call may tune (after a graph capture)
    _MEMO[slot] = result
    return result


def select(student: torch.Tensor, teacher: torch.Tensor, write_grad: bool) -> KernelConfig:
    return config_with_source(student.device, student.shape[1], student.dtype, teacher.dtype, write_grad)[0]


def _may_tune(device: torch.device) -> bool:
    mode = os.environ.get("DISTILX_AUTOTUNE", "auto").lower()
    if mode in ("0", "off", "false", "no"):
        return False
    if device.type == "cuda":
        return not torch.cuda.is_current_stream_capturing()
    return mode == "force" and os.environ.get("TRITON_INTERPRET") == "1"


def forget() -> None:
    """Drop the in-process memo (tests; the tuning script after it wrote the cache)."""
    _MEMO.clear()


# ---------------------------------------------------------------- tuning
def tune_rows(vocab: int, element_bytes: int, device: torch.device) -> int:
    """Rows of synthetic logits for a run-time tuning: within TUNE_BYTES (and 1/8 of the free memory)."""
    budget = TUNE_BYTES
    if device.type == "cuda":
        budget = min(budget, torch.cuda.mem_get_info(device)[0] // 8)
    return max(1, min(TUNE_MAX_ROWS, budget // (3 * vocab * element_bytes)))


def synthetic_case(n_rows: int, vocab: int, student_dtype, teacher_dtype, device, seed: int = 0):
    """Logits like a distillation step's (teacher = student + noise, std ~3), 15% of rows labelled, every row
    in the KL: (student, teacher, labels, kl_mask, grad_scales)."""
    gen = torch.Generator(device=device).manual_seed(seed)
    # filled in place in their own dtypes: no full-size fp32 temporaries
    s = torch.empty(n_rows, vocab, device=device, dtype=student_dtype).normal_(0, 3, generator=gen)
    t = torch.empty(n_rows, vocab, device=device, dtype=teacher_dtype).normal_(0, 1, generator=gen).add_(s)
    labels = torch.randint(0, vocab, (n_rows,), device=device, generator=gen)
    labels[torch.rand(n_rows, device=device, generator=gen) < 0.85] = -100
    kl_mask = torch.ones(n_rows, dtype=torch.bool, device=device)
    n_mlm = max(1, int((labels != -100).sum()))
    scales = torch.tensor([5.0 * 2.0 / n_rows, 2.0 / n_mlm], dtype=torch.float64, device=device)
    return s, t, labels, kl_mask, scales


def run_config(config, case, write_grad, temperature=2.0, grad=None):
    """Outputs (kl_rows, ce_rows, grad) of `config` on `case`."""
    from .distill_logits import launch

    s, t, labels, kl_mask, scales = case
    kl_rows = torch.zeros(s.shape[0], dtype=torch.float32, device=s.device)
    ce_rows = torch.zeros_like(kl_rows)
    if write_grad and grad is None:
        grad = torch.empty_like(s)
    launch(config, s, t, labels, kl_mask, scales, kl_rows, ce_rows, grad, temperature, True, True, write_grad)
    return kl_rows, ce_rows, grad


def same_outputs(a, b, rows_per_check: int = 1024) -> bool:
    """a and b (outputs of run_config) agree: row values to 1e-4, gradients to the bf16 tests' tolerance."""
    if not (torch.allclose(a[0], b[0], rtol=1e-4, atol=1e-5) and torch.allclose(a[1], b[1], rtol=1e-4, atol=1e-5)):
        return False
    if a[2] is None:
        return b[2] is None
    rtol = {torch.float32: 1e-4, torch.float16: 2**-9}.get(a[2].dtype, 2**-6)
    for r0 in range(0, a[2].shape[0], rows_per_check):  # in slices: no second full-size temporary
        x, y = a[2][r0:r0 + rows_per_check].float(), b[2][r0:r0 + rows_per_check].float()
        if not torch.allclose(x, y, rtol=rtol, atol=1e-6):
            return False
    return True


def time_config(config, case, write_grad, reps: int, grad=None) -> float:
    """Median seconds of one launch (CUDA events on the GPU, a wall clock on the interpreter)."""
    device = case[0].device
    grad = torch.empty_like(case[0]) if write_grad and grad is None else grad
    for _ in range(TUNE_WARMUP):
        run_config(config, case, write_grad, grad=grad)
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            run_config(config, case, write_grad, grad=grad)
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end) / 1e3)
        else:
            t0 = time.perf_counter()
            run_config(config, case, write_grad, grad=grad)
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def sweep(case, write_grad: bool, configs: list[KernelConfig], reps: int, log=None, deadline=None) -> list[dict]:
    """Check and time each configuration on `case` against the first kernel's outputs: [{name, config,
    seconds | error | skipped}]. One gradient buffer serves every candidate (memory: the case, the reference
    outputs and one buffer). deadline: time.monotonic() after which the remaining ones are skipped."""
    reference = run_config(default_config(case[0].shape[1]), case, write_grad)
    work = torch.empty_like(case[0]) if write_grad else None
    results = []
    for config in configs:
        row = {"name": config.name, "config": asdict(config)}
        if deadline is not None and time.monotonic() > deadline:
            row["skipped"] = "time budget"
        else:
            try:
                if not same_outputs(run_config(config, case, write_grad, grad=work), reference):
                    row["error"] = "outputs differ from the first kernel's"
                else:
                    row["seconds"] = time_config(config, case, write_grad, reps, grad=work)
            except Exception as exc:  # noqa: BLE001 - a configuration that does not compile or run is skipped
                row["error"] = f"{type(exc).__name__}: {str(exc)[:200]}"
        results.append(row)
        if log:
            log(row)
    return results


def autotune(device, vocab: int, student_dtype, teacher_dtype, write_grad: bool, *, rows: int | None = None,
             configs: list[KernelConfig] | None = None, reps: int | None = None, key: str | None = None,
             write_cache: bool = True) -> dict:
    """Tune one slot on synthetic logits of this shape; returns its entry (and stores it in the cache)."""
    device = torch.device(device)
    rows = rows or tune_rows(vocab, torch.finfo(student_dtype).bits // 8, device)
    case = synthetic_case(rows, vocab, student_dtype, teacher_dtype, device)
    results = sweep(case, write_grad, configs or candidates(vocab), reps or TUNE_REPS)
    del case
    timed = [r for r in results if "seconds" in r]
    best = min(timed, key=lambda r: r["seconds"]) if timed else {"config": asdict(default_config(vocab))}
    entry = {"vocab": vocab, "dtypes": dtype_key(student_dtype, teacher_dtype), "write_grad": bool(write_grad),
             "rows": rows, "config": best["config"], "tried": results,
             "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if write_cache:
        store(key or device_key(device), entry)
    return entry
