"""The streaming fused KL + CE logits kernel (same contract as `distill_logits.distill_logits_kernel`).

Why it exists (docs/kernel_notes.md has the roofline and the predictions): the first kernel streams a row in
[BLOCK_V] tiles with seven block-wide reductions (each a barrier) per tile, and at V = 30522 or 250002 (not
multiples of 8) every row starts off a 16-byte boundary, so Triton proves no alignment and issues 2-byte
loads. This one
  * tiles a row as [ROWS, GROUP] (GROUP consecutive columns per thread-row) and keeps the online-softmax
    statistics per thread-row: the max and sum over GROUP stay inside a thread, so the loop over a row has no
    barrier; the [ROWS] accumulators are merged once per row;
  * aligns the tiles: they start `mis` columns before the row (the row's offset modulo ALIGN = 16 bytes), so
    every interior tile is 16-byte aligned (vector loads, no mask) and only the first and last tiles are
    masked;
  * works in the log2 domain (one multiply folds 1/T and log2(e); exp2 is the hardware instruction);
  * optionally splits a row over several programs (SPLIT, `chunk_v` columns each): each publishes its partial
    statistics, waits (bounded) for its siblings, merges them, then writes the gradient of its own columns
    while they are still in L1/L2 — one pass over the logits from memory instead of two. A program that
    waits past `spin_limit` polls computes the whole row's statistics itself (correct, slower): it never
    deadlocks, whatever the scheduler does.
"""

from __future__ import annotations

import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)
LN2 = tl.constexpr(0.6931471805599453)
N_STATS = tl.constexpr(8)  # per (row, chunk) in the split scratch: m_s, z_s, m_t, z_t, a_t, m_1, z_1, padding
WHOLE_ROW = 1 << 20  # TILES_PER_CHUNK without SPLIT: one program covers every tile of its row


@triton.jit
def _load(ptr, row_off, cols, vocab, MASKED: tl.constexpr, GROUP: tl.constexpr, ALIGN: tl.constexpr):
    """The [ROWS, GROUP] tile at `cols` of the row starting at element `row_off`, as fp32."""
    offs = row_off + cols
    offs = tl.max_contiguous(tl.multiple_of(offs, [1, ALIGN]), [1, GROUP])
    if MASKED:
        x = tl.load(ptr + offs, mask=(cols >= 0) & (cols < vocab), other=0.0)
    else:
        x = tl.load(ptr + offs)
    return x.to(tl.float32)


@triton.jit
def _online(m, z, x):
    """Fold the [ROWS, GROUP] log2-domain values x into per-thread-row (max, sum of 2^(x - max))."""
    m_new = tl.maximum(m, tl.max(x, axis=1))
    ref = tl.where(m_new == float("-inf"), 0.0, m_new)  # a group that is all -inf (masked) adds nothing
    z = z * tl.exp2(m - ref) + tl.sum(tl.exp2(x - ref[:, None]), axis=1)
    return m_new, z


@triton.jit
def _stats_tile(m_s, z_s, m_t, z_t, a_t, m_1, z_1, s_ptr, t_ptr, s_off, t_off, cols, vocab, k_t, k_1,
                DO_KL: tl.constexpr, DO_CE: tl.constexpr, MASKED: tl.constexpr, GROUP: tl.constexpr,
                ALIGN: tl.constexpr):
    """Pass 1 on one tile: student and teacher at T (+ sum p_t (t - s)/T), the student at T = 1."""
    s = _load(s_ptr, s_off, cols, vocab, MASKED, GROUP, ALIGN)
    if DO_KL:
        t = _load(t_ptr, t_off, cols, vocab, MASKED, GROUP, ALIGN)
        ss = s * k_t
        tt = t * k_t
        if MASKED:
            inside = (cols >= 0) & (cols < vocab)
            ss = tl.where(inside, ss, float("-inf"))
            tt = tl.where(inside, tt, float("-inf"))
        m_s, z_s = _online(m_s, z_s, ss)
        m_new = tl.maximum(m_t, tl.max(tt, axis=1))
        ref = tl.where(m_new == float("-inf"), 0.0, m_new)
        rescale = tl.exp2(m_t - ref)
        e_t = tl.exp2(tt - ref[:, None])
        contrib = e_t * (tt - ss)
        if MASKED:
            contrib = tl.where(inside, contrib, 0.0)
        z_t = z_t * rescale + tl.sum(e_t, axis=1)
        a_t = a_t * rescale + tl.sum(contrib, axis=1)
        m_t = m_new
    if DO_CE:
        s1 = s * k_1
        if MASKED:
            s1 = tl.where((cols >= 0) & (cols < vocab), s1, float("-inf"))
        m_1, z_1 = _online(m_1, z_1, s1)
    return m_s, z_s, m_t, z_t, a_t, m_1, z_1


@triton.jit
def _merge(m, z):
    """[K] partial (max, sum) pairs -> one (max, sum)."""
    top = tl.max(m, axis=0)
    ref = tl.where(top == float("-inf"), 0.0, top)
    return top, tl.sum(z * tl.exp2(m - ref), axis=0)


@triton.jit
def _merge_teacher(m, z, a):
    """[K] partial teacher (max, sum, sum e (t - s)) -> one, both sums rescaled to the common max."""
    top = tl.max(m, axis=0)
    scale = tl.exp2(m - tl.where(top == float("-inf"), 0.0, top))
    return top, tl.sum(z * scale, axis=0), tl.sum(a * scale, axis=0)


@triton.jit
def _stats_range(s_ptr, t_ptr, s_off, t_off, mis, t_lo, t_hi, n_tiles, vocab, k_t, k_1,
                 DO_KL: tl.constexpr, DO_CE: tl.constexpr, ROWS: tl.constexpr, GROUP: tl.constexpr,
                 ALIGN: tl.constexpr):
    """Pass 1 over tiles [t_lo, t_hi) of a row: (m_s, z_s, m_t, z_t, a_t, m_1, z_1), log2 domain, scalars."""
    BLOCK: tl.constexpr = ROWS * GROUP
    grid = (tl.arange(0, ROWS) * GROUP)[:, None] + tl.arange(0, GROUP)[None, :]
    m_s = tl.full([ROWS], float("-inf"), tl.float32)
    z_s = tl.zeros([ROWS], tl.float32)
    m_t = m_s
    z_t = z_s
    a_t = z_s
    m_1 = m_s
    z_1 = z_s
    last = n_tiles - 1
    if (t_lo == 0) & (t_hi > 0):  # the first tile holds the columns before the row: masked
        m_s, z_s, m_t, z_t, a_t, m_1, z_1 = _stats_tile(
            m_s, z_s, m_t, z_t, a_t, m_1, z_1, s_ptr, t_ptr, s_off, t_off, grid - mis, vocab, k_t, k_1,
            DO_KL, DO_CE, True, GROUP, ALIGN)
    for t in range(tl.maximum(t_lo, 1), tl.minimum(t_hi, last)):  # interior tiles: aligned, unmasked
        m_s, z_s, m_t, z_t, a_t, m_1, z_1 = _stats_tile(
            m_s, z_s, m_t, z_t, a_t, m_1, z_1, s_ptr, t_ptr, s_off, t_off, t * BLOCK - mis + grid, vocab, k_t, k_1,
            DO_KL, DO_CE, False, GROUP, ALIGN)
    if (last > 0) & (t_lo <= last) & (last < t_hi):  # the last tile runs past the row: masked
        m_s, z_s, m_t, z_t, a_t, m_1, z_1 = _stats_tile(
            m_s, z_s, m_t, z_t, a_t, m_1, z_1, s_ptr, t_ptr, s_off, t_off, last * BLOCK - mis + grid, vocab, k_t,
            k_1, DO_KL, DO_CE, True, GROUP, ALIGN)
    m_s, z_s = _merge(m_s, z_s)
    m_t, z_t, a_t = _merge_teacher(m_t, z_t, a_t)
    m_1, z_1 = _merge(m_1, z_1)
    return m_s, z_s, m_t, z_t, a_t, m_1, z_1


@triton.jit
def _grad_tile(s_ptr, t_ptr, g_ptr, s_off, t_off, g_off, cols, vocab, label, k_t, k_1, lse_s, lse_t, lse_1,
               c_kl, c_ce, DO_KL: tl.constexpr, DO_CE: tl.constexpr, MASKED: tl.constexpr, GROUP: tl.constexpr,
               ALIGN: tl.constexpr):
    """Pass 2 on one tile: d total / d s = c_kl (p_s - p_t) + c_ce (p_1 - onehot), rounded once."""
    g = tl.zeros(cols.shape, tl.float32)
    if DO_KL | DO_CE:
        s = _load(s_ptr, s_off, cols, vocab, MASKED, GROUP, ALIGN)
        if DO_KL:
            t = _load(t_ptr, t_off, cols, vocab, MASKED, GROUP, ALIGN)
            g = c_kl * (tl.exp2(s * k_t - lse_s) - tl.exp2(t * k_t - lse_t))
        if DO_CE:
            g = g + c_ce * (tl.exp2(s * k_1 - lse_1) - tl.where(cols == label, 1.0, 0.0))
    offs = g_off + cols
    offs = tl.max_contiguous(tl.multiple_of(offs, [1, ALIGN]), [1, GROUP])
    if MASKED:
        tl.store(g_ptr + offs, g.to(g_ptr.dtype.element_ty), mask=(cols >= 0) & (cols < vocab))
    else:
        tl.store(g_ptr + offs, g.to(g_ptr.dtype.element_ty))


@triton.jit
def _grad_range(s_ptr, t_ptr, g_ptr, s_off, t_off, g_off, mis, t_lo, t_hi, n_tiles, vocab, label, k_t, k_1,
                lse_s, lse_t, lse_1, c_kl, c_ce, DO_KL: tl.constexpr, DO_CE: tl.constexpr, ROWS: tl.constexpr,
                GROUP: tl.constexpr, ALIGN: tl.constexpr):
    BLOCK: tl.constexpr = ROWS * GROUP
    grid = (tl.arange(0, ROWS) * GROUP)[:, None] + tl.arange(0, GROUP)[None, :]
    last = n_tiles - 1
    if (t_lo == 0) & (t_hi > 0):
        _grad_tile(s_ptr, t_ptr, g_ptr, s_off, t_off, g_off, grid - mis, vocab, label, k_t, k_1, lse_s, lse_t, lse_1,
                   c_kl, c_ce, DO_KL, DO_CE, True, GROUP, ALIGN)
    for t in range(tl.maximum(t_lo, 1), tl.minimum(t_hi, last)):
        _grad_tile(s_ptr, t_ptr, g_ptr, s_off, t_off, g_off, t * BLOCK - mis + grid, vocab, label, k_t, k_1, lse_s,
                   lse_t, lse_1, c_kl, c_ce, DO_KL, DO_CE, False, GROUP, ALIGN)
    if (last > 0) & (t_lo <= last) & (last < t_hi):
        _grad_tile(s_ptr, t_ptr, g_ptr, s_off, t_off, g_off, last * BLOCK - mis + grid, vocab, label, k_t, k_1,
                   lse_s, lse_t, lse_1, c_kl, c_ce, DO_KL, DO_CE, True, GROUP, ALIGN)


@triton.jit
def _row_stats(s_ptr, t_ptr, s_off, t_off, mis, t_lo, t_hi, n_tiles, vocab, k_t, k_1, kl_on, ce_on,
               HAS_KL: tl.constexpr, HAS_CE: tl.constexpr, ROWS: tl.constexpr, GROUP: tl.constexpr,
               ALIGN: tl.constexpr):
    """_stats_range specialised for the row's terms (KL and CE, KL only, CE only): branch-free loops."""
    neg = tl.full([], float("-inf"), tl.float32)
    zero = tl.zeros([], tl.float32)
    m_s, z_s, m_t, z_t, a_t, m_1, z_1 = neg, zero, neg, zero, zero, neg, zero
    if kl_on & ce_on:
        if HAS_KL and HAS_CE:
            m_s, z_s, m_t, z_t, a_t, m_1, z_1 = _stats_range(s_ptr, t_ptr, s_off, t_off, mis, t_lo, t_hi, n_tiles,
                                                             vocab, k_t, k_1, True, True, ROWS, GROUP, ALIGN)
    elif kl_on:
        if HAS_KL:
            m_s, z_s, m_t, z_t, a_t, m_1, z_1 = _stats_range(s_ptr, t_ptr, s_off, t_off, mis, t_lo, t_hi, n_tiles,
                                                             vocab, k_t, k_1, True, False, ROWS, GROUP, ALIGN)
    elif ce_on:
        if HAS_CE:
            m_s, z_s, m_t, z_t, a_t, m_1, z_1 = _stats_range(s_ptr, t_ptr, s_off, t_off, mis, t_lo, t_hi, n_tiles,
                                                             vocab, k_t, k_1, False, True, ROWS, GROUP, ALIGN)
    return m_s, z_s, m_t, z_t, a_t, m_1, z_1


@triton.jit
def stream_kernel(
    student_ptr, teacher_ptr, labels_ptr, kl_mask_ptr, grad_scales_ptr, kl_rows_ptr, ce_rows_ptr, grad_ptr,
    stats_ptr,  # SPLIT: [N, n_chunks, N_STATS] fp32 scratch (partial statistics)
    count_ptr,  # SPLIT: [N] int32, zeroed: programs of the row that have published
    student_row_stride, teacher_row_stride, grad_row_stride, vocab, inv_temperature,
    n_chunks,  # programs per row (1 without SPLIT)
    spin_limit,  # SPLIT: polls before a program computes the whole row's statistics itself
    HAS_KL: tl.constexpr, HAS_CE: tl.constexpr, WRITE_GRAD: tl.constexpr, IGNORE: tl.constexpr,
    ROWS: tl.constexpr, GROUP: tl.constexpr, ALIGN: tl.constexpr, SPLIT: tl.constexpr,
    TILES_PER_CHUNK: tl.constexpr, CHUNKS_POW2: tl.constexpr,
):
    BLOCK: tl.constexpr = ROWS * GROUP
    pid = tl.program_id(0).to(tl.int64)
    row = pid // n_chunks
    chunk = pid % n_chunks
    s_off = row * student_row_stride
    t_off = row * teacher_row_stride
    g_off = row * grad_row_stride
    mis = (s_off % ALIGN).to(tl.int32)  # the launcher makes the three offsets agree modulo ALIGN
    n_tiles = tl.cdiv(vocab + mis, BLOCK)
    t_lo = (chunk * TILES_PER_CHUNK).to(tl.int32)  # without SPLIT: chunk 0, every tile
    t_hi = tl.minimum(t_lo + TILES_PER_CHUNK, n_tiles)

    label = tl.load(labels_ptr + row)
    kl_on = (tl.load(kl_mask_ptr + row) != 0) & HAS_KL
    ce_on = (label != IGNORE) & HAS_CE
    k_t = inv_temperature * LOG2E
    k_1 = LOG2E

    m_s, z_s, m_t, z_t, a_t, m_1, z_1 = _row_stats(student_ptr, teacher_ptr, s_off, t_off, mis, t_lo, t_hi, n_tiles,
                                                   vocab, k_t, k_1, kl_on, ce_on, HAS_KL, HAS_CE, ROWS, GROUP, ALIGN)
    if SPLIT:
        if kl_on | ce_on:
            base = stats_ptr + pid * N_STATS
            tl.store(base + 0, m_s)
            tl.store(base + 1, z_s)
            tl.store(base + 2, m_t)
            tl.store(base + 3, z_t)
            tl.store(base + 4, a_t)
            tl.store(base + 5, m_1)
            tl.store(base + 6, z_1)
            tl.debug_barrier()  # every thread's stores before the release below
            arrived = tl.atomic_add(count_ptr + row, 1, sem="release", scope="gpu") + 1
            polls = 0
            while (arrived < n_chunks) & (polls < spin_limit):
                arrived = tl.atomic_add(count_ptr + row, 0, sem="acquire", scope="gpu")
                polls += 1
            if arrived >= n_chunks:  # every sibling published: merge their statistics
                k = tl.arange(0, CHUNKS_POW2)
                have = k < n_chunks
                part = stats_ptr + row * n_chunks * N_STATS + k * N_STATS
                pm_s = tl.load(part + 0, mask=have, other=float("-inf"), volatile=True)
                pz_s = tl.load(part + 1, mask=have, other=0.0, volatile=True)
                pm_t = tl.load(part + 2, mask=have, other=float("-inf"), volatile=True)
                pz_t = tl.load(part + 3, mask=have, other=0.0, volatile=True)
                pa_t = tl.load(part + 4, mask=have, other=0.0, volatile=True)
                pm_1 = tl.load(part + 5, mask=have, other=float("-inf"), volatile=True)
                pz_1 = tl.load(part + 6, mask=have, other=0.0, volatile=True)
                m_s, z_s = _merge(pm_s, pz_s)
                m_t, z_t, a_t = _merge_teacher(pm_t, pz_t, pa_t)
                m_1, z_1 = _merge(pm_1, pz_1)
            else:  # a sibling did not arrive in time (not resident): the whole row, read by this program.
                # One variant for every kind of row (rare path, less code to compile): statistics of a term the
                # row is not in are computed and never used.
                m_s, z_s, m_t, z_t, a_t, m_1, z_1 = _stats_range(
                    student_ptr, teacher_ptr, s_off, t_off, mis, 0, n_tiles, n_tiles, vocab, k_t, k_1, HAS_KL, HAS_CE,
                    ROWS, GROUP, ALIGN)

    lse_s = m_s + tl.log2(z_s)  # log2 domain
    lse_t = m_t + tl.log2(z_t)
    lse_1 = m_1 + tl.log2(z_1)
    valid_label = (label >= 0) & (label < vocab)
    if chunk == 0:
        if HAS_KL:
            # KL = sum p_t (t - s)/T - lse_t + lse_s (natural log), from the log2-domain statistics
            kl = LN2 * (a_t / z_t - lse_t + lse_s)
            tl.store(kl_rows_ptr + row, tl.where(kl_on, kl, 0.0))
        if HAS_CE:
            s_label = tl.load(student_ptr + s_off + tl.where(valid_label & ce_on, label, 0)).to(tl.float32)
            ce = tl.where(valid_label, LN2 * lse_1 - s_label, float("nan"))
            tl.store(ce_rows_ptr + row, tl.where(ce_on, ce, 0.0))

    if WRITE_GRAD:
        c_kl = tl.load(grad_scales_ptr).to(tl.float32)
        c_ce = tl.load(grad_scales_ptr + 1).to(tl.float32)
        if kl_on & ce_on:
            _grad_range(student_ptr, teacher_ptr, grad_ptr, s_off, t_off, g_off, mis, t_lo, t_hi, n_tiles, vocab,
                        label, k_t, k_1, lse_s, lse_t, lse_1, c_kl, c_ce, HAS_KL, HAS_CE, ROWS, GROUP, ALIGN)
        elif kl_on:
            _grad_range(student_ptr, teacher_ptr, grad_ptr, s_off, t_off, g_off, mis, t_lo, t_hi, n_tiles, vocab,
                        label, k_t, k_1, lse_s, lse_t, lse_1, c_kl, c_ce, HAS_KL, False, ROWS, GROUP, ALIGN)
        elif ce_on:
            _grad_range(student_ptr, teacher_ptr, grad_ptr, s_off, t_off, g_off, mis, t_lo, t_hi, n_tiles, vocab,
                        label, k_t, k_1, lse_s, lse_t, lse_1, c_kl, c_ce, False, HAS_CE, ROWS, GROUP, ALIGN)
        else:  # a row with no contribution: its zero gradient, without reading the logits
            _grad_range(student_ptr, teacher_ptr, grad_ptr, s_off, t_off, g_off, mis, t_lo, t_hi, n_tiles, vocab,
                        label, k_t, k_1, lse_s, lse_t, lse_1, c_kl, c_ce, False, False, ROWS, GROUP, ALIGN)


def next_power_of_2(x: int) -> int:
    return triton.next_power_of_2(max(1, x))
