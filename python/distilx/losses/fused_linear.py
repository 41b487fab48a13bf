"""Fused-linear distillation: DistilBERT's triple loss straight from the inputs of the vocabulary
projection, never holding the N x V logits.

    student logits = student_input @ student_weight.T + student_bias      (the teacher likewise)
    total = alpha_kl * KL + alpha_mlm * MLM + alpha_cos * COS               (exactly `distillation_loss`)

The rows that reach the vocabulary (every real token, or only the MLM targets with kl_on="targets",
plus any labelled row) are processed in chunks of C rows. Per chunk: the two projections into two
reused [C, V] buffers (torch matmul: bf16 with fp32 accumulation on GPU when the model is bf16), then the
fused logits loss that distillation_loss uses (the Triton kernel on CUDA, the chunked PyTorch path
elsewhere) computes the rows' KL and CE and writes d loss / d student logits over the student buffer;
that chunk gradient is turned into the input gradient (g @ W) and accumulated into the weight and bias
gradients (g^T @ x and sum(g), in fp32) before the next chunk overwrites it. The normalisers of the
terms (number of KL rows, of labels) are the GLOBAL counts, kept on the device, so a chunk's gradient is
already final and the backward only multiplies the three stored gradients by grad_output.

Memory: two [C, V] buffers (rows padded to 64 columns, 16-byte aligned for cuBLAS and the kernel) plus the
chunked path's temporaries (<= 15% of one buffer) plus the [N, H] input gradient, whatever N is; the weight
gradient is [V, H] (fp32 accumulator, cast at the end when the weight is bf16/fp16; `weight_grad_path` says
how each chunk is added into it). `fused_linear_chunk_rows` picks C, `fused_linear_pays` says when this path
beats materialising the logits.

Host synchronisation: as in distillation_loss, only the labels-in-range check reads data. The same read
returns the number of rows to project, so the rows outside the selection (padding; with
kl_on="targets" every unlabelled row) are never projected. Without that check on CUDA (validate=False,
alpha_mlm == 0 with kl_on="tokens", or a CUDA graph being captured) every row is projected and the
unselected ones get a zero gradient row from the kernel: no sync, more matmul work.

The hidden-state cosine term needs no projection; it is distillation_loss's own: over the real tokens
for hidden states row-aligned with student_input, over every row for hidden states with rows of their
own (e.g. every real token while the projection inputs hold only the masked targets).
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch
from torch import nn

from .api import DistillationLossOutput, cosine_term
from .autograd import logits_impl
from .checks import check_options, check_row_tensors, check_tensor, resolve_backend
from .defaults import ALPHA_COS, ALPHA_KL, ALPHA_MLM, IGNORE_INDEX, KL_ON, TEMPERATURE

__all__ = [
    "fused_linear_distillation_loss",
    "FusedLinearDistillationLoss",
    "fused_linear_chunk_rows",
    "fused_linear_pays",
    "free_memory_bytes",
    "weight_grad_path",
]

# Chunk budget: the two [C, V] logit buffers of one chunk get at most this many bytes, and at most
# 1/_FREE_MEMORY_SHARE of the free memory. 256 MiB on CPU keeps the peak extra memory of N = 4096 x
# V = 250002 fp32 under 10% of one logits tensor (C = 128); 1 GiB on GPU gives C = 1024 rows at V = 250002
# bf16, enough rows for the projections to be compute-bound (a matmul with C rows does ~C flops per
# weight byte read; an H100/H200 needs ~300).
CHUNK_BUDGET_BYTES = {"cpu": 256 << 20, "cuda": 1 << 30}
_FREE_MEMORY_SHARE = 8
# Rows per chunk are rounded down to a multiple of this (matmul tiles), when the budget allows it.
_ROW_ALIGN = {"cpu": 16, "cuda": 128}
# The chunk buffers' rows are padded to a multiple of this many columns: with V = 30522 or 250002 (not
# multiples of 8) unpadded bf16 rows start off 16-byte boundaries, which sends cuBLAS to its unaligned GEMM
# kernels for all three [C, V] products and the loss kernel to narrow loads (docs/kernel_notes.md).
_COLUMN_PAD = 64
# `fused_linear_pays`: the logits path needs three N x V tensors (student logits, teacher logits, the
# stored gradient); the fused-linear path is chosen when they would exceed this share of free memory or
# this many bytes (see its docstring for the measurements behind the threshold).
_LOGITS_PATH_TENSORS = 3
_PAYS_FREE_SHARE = 0.25
_PAYS_MIN_LOGITS_BYTES = 1 << 30

# CUDA only, torch >= 2.8: bf16/fp16 matrices multiplied into an fp32 output (`out_dtype`), no upcast copies
_HAS_MM_OUT_DTYPE = "dtype" in torch.ops.aten.mm.overloads()
_ADDMM_INTO_FP32: dict[torch.device, bool] = {}  # `_addmm_accumulates_into_fp32`'s answer per device


def free_memory_bytes(device: torch.device | str) -> int:
    """Free memory where tensors of `device` live: torch.cuda.mem_get_info on CUDA, otherwise the host's
    MemAvailable (/proc/meminfo; sysconf's available pages where there is no /proc)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def fused_linear_chunk_rows(
    n_rows: int,
    vocab: int,
    *,
    device: torch.device | str,
    student_dtype: torch.dtype,
    teacher_dtype: torch.dtype | None = None,
    free_bytes: int | None = None,
) -> int:
    """Rows per chunk C: the chunk's two [C, V] logit buffers take at most min(CHUNK_BUDGET_BYTES[device],
    free memory / 8) bytes; C <= n_rows (one chunk when everything fits), C >= 1, rounded down to a multiple
    of 16 (CPU) / 128 (GPU) rows when that leaves at least one multiple. The budget does not grow with N,
    so neither does the peak memory. free_bytes: measured with `free_memory_bytes` when None.
    """
    device = torch.device(device)
    kind = "cuda" if device.type == "cuda" else "cpu"
    if free_bytes is None:
        free_bytes = free_memory_bytes(device)
    teacher_dtype = teacher_dtype or student_dtype
    row_bytes = max(vocab, 1) * (student_dtype.itemsize + teacher_dtype.itemsize)
    budget = min(CHUNK_BUDGET_BYTES[kind], free_bytes // _FREE_MEMORY_SHARE)
    rows = max(1, budget // row_bytes)
    align = _ROW_ALIGN[kind]
    if rows >= align:
        rows -= rows % align
    return max(1, min(n_rows, rows))


def fused_linear_pays(
    n_rows: int,
    vocab: int,
    hidden: int,
    *,
    device: torch.device | str,
    dtype: torch.dtype,
    weight_dtype: torch.dtype | None = None,
    free_bytes: int | None = None,
) -> bool:
    """True when fused_linear_distillation_loss should replace "project, then distillation_loss".

    n_rows: rows that reach the vocabulary; dtype: the logits' dtype (the projection's: bf16 under
    autocast); weight_dtype: the student decoder weight's (its fp32 gradient accumulator costs 4*V*H bytes
    when it is not fp32).

    The logits path holds three N x V tensors (student logits, teacher logits, the stored gradient):
    L = 3 * N * V * itemsize bytes. The fused-linear path holds two [C, V] chunk buffers (C from
    `fused_linear_chunk_rows`) plus the fp32 accumulator, F bytes. It pays when
      * it needs more than one chunk (with one chunk both paths do the same work in the same memory), and
      * it saves memory at all (L > F: false for small N with a wide bf16 head, where 4*V*H dominates), and
      * the logits would be large: L > 1/4 of the free memory (they crowd out activations or do not
        fit), or L >= 1 GiB: from there on fused-linear measured 0.43-1.08x the logits path's time on
        CPU (docs/benchmarks.md: L = 1.5 GB at V = 30522, 6 and 12 GB at V = 250002), and on GPU it does
        the same matmul flops in C >= 1024-row chunks.
    On GPU the speed part is an estimate until bench/gpu_checks.sh has been run on a lent GPU.
    """
    device = torch.device(device)
    if free_bytes is None:
        free_bytes = free_memory_bytes(device)
    chunk = fused_linear_chunk_rows(n_rows, vocab, device=device, student_dtype=dtype, free_bytes=free_bytes)
    if chunk >= n_rows:
        return False
    logits_bytes = _LOGITS_PATH_TENSORS * n_rows * vocab * dtype.itemsize
    accumulator = 4 * vocab * hidden if (weight_dtype or dtype) != torch.float32 else 0
    fused_bytes = 2 * chunk * vocab * dtype.itemsize + accumulator
    if logits_bytes <= fused_bytes:
        return False
    return logits_bytes > _PAYS_FREE_SHARE * free_bytes or logits_bytes >= _PAYS_MIN_LOGITS_BYTES


def _project(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor) -> torch.Tensor:
    """out = x @ weight.T + bias, written into a reused chunk buffer (no allocation, no page faults)."""
    if bias is None:
        return torch.mm(x, weight.t(), out=out)
    return torch.addmm(bias, x, weight.t(), out=out)


def _padded_buffer(rows: int, vocab: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A [rows, vocab] view of a [rows, vocab rounded up to _COLUMN_PAD] buffer: every row 16-byte aligned."""
    padded = -(-vocab // _COLUMN_PAD) * _COLUMN_PAD
    return torch.empty(rows, padded, dtype=dtype, device=device)[:, :vocab]


def _addmm_accumulates_into_fp32(device: torch.device) -> bool:
    """Whether this torch's CUDA addmm(out_dtype=float32) accepts an fp32 accumulator with bf16/fp16 factors
    (recent releases; torch 2.8 wants the accumulator in the factors' dtype). Probed once per device, on
    2 x 2 matrices, at the first weight-gradient accumulation (a warm-up call, before any graph capture)."""
    if device not in _ADDMM_INTO_FP32:
        acc = torch.ones(2, 2, device=device)
        try:
            torch.addmm(acc, torch.ones(2, 3, dtype=torch.bfloat16, device=device),
                        torch.ones(3, 2, dtype=torch.bfloat16, device=device), out_dtype=torch.float32, out=acc)
            _ADDMM_INTO_FP32[device] = bool((acc == 4).all())
        except RuntimeError:
            _ADDMM_INTO_FP32[device] = False
    return _ADDMM_INTO_FP32[device]


def weight_grad_path(acc: torch.Tensor, factor_dtype: torch.dtype) -> str:
    """How `_accumulate_mm` adds a chunk's weight gradient into the fp32/fp64 accumulator:
    "same-dtype" (factors in the accumulator's dtype), "addmm-fp32" (CUDA: one GEMM accumulating into it),
    "partials" (CUDA, a torch whose addmm cannot: the chunk's product in the factors' dtype, fp32 inside the
    GEMM, into one reused [V, H] buffer, then added), "upcast" (CPU: the chunk's operands upcast)."""
    if factor_dtype == acc.dtype:
        return "same-dtype"
    if acc.is_cuda and _HAS_MM_OUT_DTYPE and _addmm_accumulates_into_fp32(acc.device):
        return "addmm-fp32"
    return "partials" if acc.is_cuda else "upcast"


def _accumulate_mm(acc: torch.Tensor, a: torch.Tensor, b: torch.Tensor, path: str, scratch: dict) -> None:
    """acc += a @ b with acc's (fp32/fp64) precision, for a, b in the projection dtype, along `path`
    (`weight_grad_path`). No fp32 copy of the weight per chunk: `scratch` keeps the one partials buffer."""
    if path == "same-dtype":
        acc.addmm_(a, b)
    elif path == "addmm-fp32":
        torch.addmm(acc, a, b, out_dtype=acc.dtype, out=acc)
    elif path == "partials":
        if "partial" not in scratch:
            scratch["partial"] = torch.empty(acc.shape, dtype=a.dtype, device=acc.device)
        acc.add_(torch.mm(a, b, out=scratch["partial"]))
    else:  # CPU (or torch < 2.8): upcast the chunk's operands, O(C x V) memory
        acc.addmm_(a.to(acc.dtype), b.to(acc.dtype))


class _Chunking(NamedTuple):
    rows: torch.Tensor | None  # [n_sel] indices of the rows to project, or None = every row
    chunk_rows: int
    student_dtype: torch.dtype  # the projections' dtypes (autocast's, or the tensors' own)
    teacher_dtype: torch.dtype


class _FusedLinearLogitsLoss(torch.autograd.Function):
    """alpha_kl * KL + alpha_mlm * MLM from the projection inputs; every gradient formed in the forward.

    Forward returns (weighted, kl, mlm) like autograd.LogitsLoss. Stored: d weighted / d student_input
    [N, H_s], d / d student_weight [V, H_s] (fp32, fp64 for fp64 weights), d / d student_bias [V]; the
    backward multiplies them by grad_output (in place: one backward per forward; float64 excepted).
    """

    @staticmethod
    def forward(ctx, x_s, w_s, b_s, x_t, w_t, b_t, labels, kl_mask, temperature, alpha_kl, alpha_mlm, backend, plan):
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        write_grad = need_x or need_w or need_b
        has_kl, has_ce = alpha_kl > 0, alpha_mlm > 0
        # global normalisers, on the device (no host sync): each chunk's gradient is final when written
        n_kl = kl_mask.sum().clamp_min(1).double()
        n_mlm = (labels != IGNORE_INDEX).sum().clamp_min(1).double()
        grad_scales = torch.stack([alpha_kl * temperature / n_kl, alpha_mlm / n_mlm])
        ctx.weight_dtype, ctx.bias_dtype, ctx.input_dtype = w_s.dtype, (b_s.dtype if b_s is not None else None), x_s.dtype

        with torch.autocast(x_s.device.type, enabled=False):  # dtypes are chosen below, once
            rows = plan.rows
            pick = (lambda t: t) if rows is None else (lambda t: t.index_select(0, rows))
            xs, xt = pick(x_s).to(plan.student_dtype), pick(x_t).to(plan.teacher_dtype)
            lab, sel = pick(labels), pick(kl_mask)
            ws, wt = w_s.to(plan.student_dtype), w_t.to(plan.teacher_dtype)
            bs = b_s.to(plan.student_dtype) if b_s is not None else None
            bt = b_t.to(plan.teacher_dtype) if b_t is not None else None
            n, vocab = xs.shape[0], ws.shape[0]

            row_dtype = torch.promote_types(plan.student_dtype, torch.float32)
            kl_rows = torch.zeros(n, dtype=row_dtype, device=xs.device)
            ce_rows = torch.zeros(n, dtype=row_dtype, device=xs.device)
            acc_dtype = torch.promote_types(w_s.dtype, torch.float32)
            grad_x = torch.empty(n, xs.shape[1], dtype=plan.student_dtype, device=xs.device) if need_x else None
            grad_w = torch.zeros(ws.shape, dtype=acc_dtype, device=xs.device) if need_w else None
            grad_b = torch.zeros(vocab, dtype=acc_dtype, device=xs.device) if need_b else None
            step = plan.chunk_rows
            s_buf = _padded_buffer(min(step, n), vocab, plan.student_dtype, xs.device)
            t_buf = _padded_buffer(min(step, n), vocab, plan.teacher_dtype, xs.device)
            loss_rows = logits_impl(backend)
            w_path = weight_grad_path(grad_w, plan.student_dtype) if need_w else None
            scratch: dict = {}

            for r0 in range(0, n, step):
                r1 = min(r0 + step, n)
                s = _project(xs[r0:r1], ws, bs, out=s_buf[: r1 - r0])
                t = _project(xt[r0:r1], wt, bt, out=t_buf[: r1 - r0])
                # the chunk's gradient overwrites its student logits (s_buf): one buffer less
                kl_c, ce_c, g = loss_rows(
                    s, t, lab[r0:r1], sel[r0:r1], grad_scales, temperature, has_kl, has_ce, write_grad, grad_buffer=s
                )
                kl_rows[r0:r1] = kl_c
                ce_rows[r0:r1] = ce_c
                if need_x:
                    torch.mm(g, ws, out=grad_x[r0:r1])
                if need_w:
                    _accumulate_mm(grad_w, g.t(), xs[r0:r1], w_path, scratch)
                if need_b:
                    grad_b += g.sum(0, dtype=acc_dtype)
            del s_buf, t_buf, scratch

            if need_x:
                if rows is not None:  # unprojected rows have a zero gradient
                    grad_x = grad_x.new_zeros(x_s.shape).index_copy_(0, rows, grad_x)
                grad_x = grad_x.to(x_s.dtype)

        kl = (kl_rows.sum() * (temperature * temperature) / n_kl).to(row_dtype)
        mlm = (ce_rows.sum() / n_mlm).to(row_dtype)
        weighted = alpha_kl * kl + alpha_mlm * mlm if (has_kl and has_ce) else (alpha_kl * kl if has_kl else alpha_mlm * mlm)
        ctx.save_for_backward(grad_x, grad_w, grad_b)
        ctx.mark_non_differentiable(kl, mlm)
        return weighted, kl, mlm

    @staticmethod
    def backward(ctx, grad_weighted, _grad_kl, _grad_mlm):
        if getattr(ctx, "grad_consumed", False):  # checked before unpacking: autograd's own error is cryptic
            raise RuntimeError(
                "distilx's fused-linear loss was back-propagated twice through one forward: its gradients are "
                "computed in the forward and scaled in place, so call fused_linear_distillation_loss again"
            )
        grad_x, grad_w, grad_b = ctx.saved_tensors
        scaled = []
        for grad, dtype in ((grad_x, ctx.input_dtype), (grad_w, ctx.weight_dtype), (grad_b, ctx.bias_dtype)):
            if grad is None:
                scaled.append(None)
            elif grad.dtype == torch.float64:  # verification only (gradcheck): out of place, repeatable
                scaled.append(grad * grad_weighted)
            else:
                scaled.append(grad.mul_(grad_weighted.to(grad.dtype)).to(dtype))
        ctx.grad_consumed = any(g is not None and g.dtype != torch.float64 for g in (grad_x, grad_w, grad_b))
        return (scaled[0], scaled[1], scaled[2]) + (None,) * 10


def _projection_dtype(side: str, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.dtype:
    """The dtype a side is projected in: autocast's when it is on (as nn.Linear would), else the tensors' one."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.get_autocast_dtype(x.device.type)
    dtypes = [x.dtype, weight.dtype] + ([bias.dtype] if bias is not None else [])
    if len(set(dtypes)) > 1:
        names = f"{side}_input, {side}_weight" + (f", {side}_bias" if bias is not None else "")
        raise TypeError(
            f"{names} must share one dtype, got {', '.join(str(d) for d in dtypes)}; cast them to one dtype, or "
            "call under torch.autocast (then the projection runs in autocast's dtype, like nn.Linear)"
        )
    return x.dtype


def _check_projection(side: str, x, weight, bias, rows_shape, vocab) -> None:
    check_tensor(f"{side}_input", x, floating=True)
    check_tensor(f"{side}_weight", weight, floating=True)
    if weight.dim() != 2:
        raise ValueError(f"{side}_weight must be the decoder weight [V, H], got shape {tuple(weight.shape)}")
    if x.dim() < 2 or x.shape[:-1] != rows_shape:
        raise ValueError(
            f"{side}_input must be [B, L, H] or [N, H] with leading shape {tuple(rows_shape)} (student_input's), "
            f"got {tuple(x.shape)}"
        )
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(
            f"{side}_input has H={x.shape[-1]} but {side}_weight is [V, H] = {tuple(weight.shape)}; pass the "
            "vocabulary projection's input (after the MLM head's transform) and its weight [V, H]"
        )
    if weight.shape[0] != vocab:
        raise ValueError(
            f"vocabulary mismatch: student_weight has V={vocab} rows but teacher_weight has V={weight.shape[0]}; "
            "student and teacher must share one tokenizer/vocabulary"
        )
    if bias is not None:
        check_tensor(f"{side}_bias", bias, floating=True)
        if bias.shape != (vocab,):
            raise ValueError(f"{side}_bias must be [V] = [{vocab}], got shape {tuple(bias.shape)}")


def _check_chunk_size(chunk_size) -> None:
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive int (rows per chunk) or None (automatic), got {chunk_size!r}")


def _plan_rows(selected: torch.Tensor, labels: torch.Tensor, vocab: int, check_labels: bool) -> torch.Tensor | None:
    """Indices of the `selected` rows (those to project), or None when that is every row; with check_labels,
    raises on labels outside [0, V) (other than -100).

    Called only where distillation_loss would read data anyway (its labels check, or CPU tensors): one
    host read returns both the count of bad labels and the number of selected rows; the rows' indices
    then come from a sort, without a second sync.
    """
    target = labels != IGNORE_INDEX
    bad = (target & ((labels < 0) | (labels >= vocab))).sum() if check_labels else torch.zeros_like(target.sum())
    n_bad, n_selected = torch.stack([bad, selected.sum()]).tolist()
    if n_bad:
        raise ValueError(
            f"labels must be -100 (ignored) or token ids in [0, {vocab}); found {n_bad} outside that range "
            "(was the batch built with another tokenizer?)"
        )
    if n_selected == selected.numel():
        return None
    # the selected rows first, in order (a stable sort): their indices without a second host read
    return torch.argsort(selected.logical_not().to(torch.uint8), stable=True)[:n_selected]


def fused_linear_distillation_loss(
    student_input: torch.Tensor,
    student_weight: torch.Tensor,
    teacher_input: torch.Tensor,
    teacher_weight: torch.Tensor,
    labels: torch.Tensor,
    *,
    student_bias: torch.Tensor | None = None,
    teacher_bias: torch.Tensor | None = None,
    student_hidden: torch.Tensor | None = None,
    teacher_hidden: torch.Tensor | None = None,
    attention_mask: torch.Tensor | None = None,
    temperature: float = TEMPERATURE,
    alpha_kl: float = ALPHA_KL,
    alpha_mlm: float = ALPHA_MLM,
    alpha_cos: float = ALPHA_COS,
    kl_on: str = KL_ON,
    chunk_size: int | None = None,
    backend: str = "auto",
    validate: bool = True,
) -> DistillationLossOutput:
    """distillation_loss(student_input @ student_weight.T + student_bias, teacher_input @ teacher_weight.T +
    teacher_bias, labels, attention_mask, student_hidden, teacher_hidden, ...) without the N x V logits.

    student_input [B, L, H_s] or [N, H_s], teacher_input [..., H_t]: what enters the vocabulary projection
    (after the MLM head's transform). *_weight [V, H], *_bias [V] or None. labels, attention_mask,
    hidden states (row-aligned with student_input, or [M, H] rows of their own), temperature, alpha_*,
    kl_on, backend, validate: as in distillation_loss (the same DistillationLossOutput, the same terms). Gradients reach student_input, student_weight,
    student_bias and student_hidden; the teacher's tensors are constants (they may be the student's own
    tensors: tied weights get the student-side gradient only).
    chunk_size: rows projected at a time; None = `fused_linear_chunk_rows` (adapts to N, V, free memory).
    Under torch.autocast the projections run in autocast's dtype (as nn.Linear would); otherwise each
    side's input, weight and bias must share one dtype.
    """
    temperature, alpha_kl, alpha_mlm, alpha_cos = check_options(temperature, alpha_kl, alpha_mlm, alpha_cos, kl_on, backend)
    _check_chunk_size(chunk_size)
    check_tensor("student_input", student_input, floating=True)
    check_tensor("student_weight", student_weight, floating=True)
    if student_weight.dim() != 2:
        raise ValueError(f"student_weight must be the decoder weight [V, H], got shape {tuple(student_weight.shape)}")
    if student_input.dim() not in (2, 3):
        raise ValueError(f"student_input must be [B, L, H] or [N, H], got shape {tuple(student_input.shape)}")
    rows_shape, vocab = student_input.shape[:-1], student_weight.shape[0]
    _check_projection("student", student_input, student_weight, student_bias, rows_shape, vocab)
    _check_projection("teacher", teacher_input, teacher_weight, teacher_bias, rows_shape, vocab)
    use_cos = check_row_tensors(rows_shape, "student_input", labels, attention_mask, student_hidden, teacher_hidden,
                                alpha_cos)
    tensors = [student_input, student_weight, teacher_input, teacher_weight, labels]
    tensors += [t for t in (student_bias, teacher_bias, attention_mask, student_hidden, teacher_hidden) if t is not None]
    devices = {t.device for t in tensors}
    if len(devices) > 1:
        raise ValueError(f"all tensors must be on one device, got {sorted(map(str, devices))}")
    student_dtype = _projection_dtype("student", student_input, student_weight, student_bias)
    teacher_dtype = _projection_dtype("teacher", teacher_input, teacher_weight, teacher_bias)
    backend = resolve_backend(
        backend, [student_input, teacher_input] + ([student_hidden, teacher_hidden] if use_cos else [])
    )

    n_rows = rows_shape.numel()
    device = student_input.device
    flat_labels = labels.reshape(n_rows).to(torch.int64).contiguous()
    real = (
        torch.ones(n_rows, dtype=torch.bool, device=device)
        if attention_mask is None
        else attention_mask.reshape(n_rows) != 0
    )
    kl_mask = real if kl_on == "tokens" else flat_labels != IGNORE_INDEX

    zero = torch.zeros((), dtype=torch.float32, device=device)
    total, kl, mlm = zero, zero, zero.clone()
    if alpha_kl > 0 or alpha_mlm > 0:
        check_labels = validate and (alpha_mlm > 0 or kl_on == "targets")
        capturing = device.type == "cuda" and torch.cuda.is_current_stream_capturing()
        rows = None
        if device.type == "cpu" or (check_labels and not capturing):
            # the rows the kernel reads: KL rows (if that term is on) and labelled rows (if MLM is)
            no_row = torch.zeros_like(kl_mask)
            selected = (kl_mask if alpha_kl > 0 else no_row) | ((flat_labels != IGNORE_INDEX) if alpha_mlm > 0 else no_row)
            rows = _plan_rows(selected, flat_labels, vocab, check_labels)
        n_projected = n_rows if rows is None else rows.numel()
        # while a CUDA graph is captured its private pool serves the buffers: the budget alone sizes them
        free = CHUNK_BUDGET_BYTES["cuda"] * _FREE_MEMORY_SHARE if capturing else None
        chunk = chunk_size or fused_linear_chunk_rows(
            n_projected, vocab, device=device, student_dtype=student_dtype, teacher_dtype=teacher_dtype, free_bytes=free
        )
        plan = _Chunking(rows, max(1, min(chunk, n_projected)), student_dtype, teacher_dtype)
        total, kl, mlm = _FusedLinearLogitsLoss.apply(
            student_input.reshape(n_rows, student_input.shape[-1]),  # not -1: 0 rows (no target) is legal
            student_weight,
            student_bias,
            teacher_input.detach().reshape(n_rows, teacher_input.shape[-1]),
            teacher_weight.detach(),
            teacher_bias.detach() if teacher_bias is not None else None,
            flat_labels,
            kl_mask,
            temperature,
            alpha_kl,
            alpha_mlm,
            backend,
            plan,
        )
    cos = zero.clone()
    if use_cos:
        weighted_cos, cos = cosine_term(student_hidden, teacher_hidden, real, rows_shape, alpha_cos, backend)
        total = total + weighted_cos
    return DistillationLossOutput(total, kl, mlm, cos)


class FusedLinearDistillationLoss(nn.Module):
    """nn.Module holding the options of `fused_linear_distillation_loss`; call it with the tensors
    (student_input, student_weight, teacher_input, teacher_weight, labels, and the keyword tensors)."""

    def __init__(
        self,
        *,
        temperature: float = TEMPERATURE,
        alpha_kl: float = ALPHA_KL,
        alpha_mlm: float = ALPHA_MLM,
        alpha_cos: float = ALPHA_COS,
        kl_on: str = KL_ON,
        chunk_size: int | None = None,
        backend: str = "auto",
        validate: bool = True,
    ):
        super().__init__()
        # validate once, at construction, so a bad config fails before training starts
        temperature, alpha_kl, alpha_mlm, alpha_cos = check_options(temperature, alpha_kl, alpha_mlm, alpha_cos, kl_on, backend)
        _check_chunk_size(chunk_size)
        self.options = dict(temperature=temperature, alpha_kl=alpha_kl, alpha_mlm=alpha_mlm, alpha_cos=alpha_cos,
                            kl_on=kl_on, chunk_size=chunk_size, backend=backend, validate=bool(validate))

    def forward(self, student_input, student_weight, teacher_input, teacher_weight, labels, **tensors) -> DistillationLossOutput:
        """tensors: student_bias, teacher_bias, student_hidden, teacher_hidden, attention_mask (all optional)."""
        return fused_linear_distillation_loss(
            student_input, student_weight, teacher_input, teacher_weight, labels, **tensors, **self.options
        )

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.options.items())
