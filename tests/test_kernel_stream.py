"""The streaming logits kernels (python/distilx/triton_kernels/distill_logits_stream.py) against the PyTorch
path, under the interpreter at tiny shapes: the same edge cases as the first kernel's tests, through
`distillation_loss` (the configuration forced with DISTILX_LOSS_KERNEL), and every configuration a tuning may
try. Block sizes here are small so that a row spans several tiles (and, split, several programs whose
statistics merge, or which time out and read the whole row: the interpreter runs programs one at a time, so
every program but a row's last takes that path)."""

from __future__ import annotations

import pytest
import torch

from distilx.losses.chunked import chunked_logits_loss
from distilx.triton_kernels import tuning
from distilx.triton_kernels.distill_logits import alignment, fused_logits_loss
import test_kernel_distill_logits as dl
from test_kernel_distill_logits import GRAD_TOL, _synthetic
from test_loss_torch import single_torch_thread  # noqa: F401 (autouse fixture)

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

SMALL = {"stream": "stream-b256-g8-w2-s1", "split": "split-c512-b256-g8-w2-s1"}


@pytest.fixture(params=sorted(SMALL))
def kernel(request, monkeypatch):
    monkeypatch.setenv("DISTILX_LOSS_KERNEL", SMALL[request.param])
    return request.param


FIRST_KERNEL_CASES = [  # the first kernel's tests, run again with each streaming kernel forced
    (dl.test_odd_vocabularies_padding_and_grad_output, dict(vocab=1021, kl_on="tokens")),
    (dl.test_odd_vocabularies_padding_and_grad_output, dict(vocab=2039, kl_on="targets")),
    (dl.test_half_precision_student_and_mixed_teacher, dict(dtype=torch.float16)),
    (dl.test_half_precision_student_and_mixed_teacher, dict(dtype=torch.bfloat16)),
    (dl.test_zero_weight_terms, dict(alphas=(0.0, 2.0))),
    (dl.test_zero_weight_terms, dict(alphas=(5.0, 0.0))),
    (dl.test_forward_without_gradient_matches, {}),
    (dl.test_no_labels_and_all_padding, {}),
    (dl.test_non_finite_logits_agree_with_torch_path, dict(bad=float("nan"), side=0)),
    (dl.test_non_finite_logits_agree_with_torch_path, dict(bad=float("-inf"), side=1)),
    # the same in an interior tile (aligned, unmasked: column 600 of 1021) rather than the masked first one
    (dl.test_non_finite_logits_agree_with_torch_path, dict(bad=float("nan"), side=0, column=600)),
    (dl.test_non_finite_logits_agree_with_torch_path, dict(bad=float("inf"), side=0, column=600)),
    (dl.test_non_finite_logits_agree_with_torch_path, dict(bad=float("-inf"), side=1, column=600)),
    (dl.test_non_finite_logits_agree_with_torch_path, dict(bad=float("inf"), side=1, column=600)),
    (dl.test_out_of_range_label_gives_nan_when_validation_is_skipped, {}),
    (dl.test_strided_one_d_labels, {}),
    (dl.test_empty_batch, {}),
]


@pytest.mark.parametrize("case", FIRST_KERNEL_CASES,
                         ids=lambda c: c[0].__name__.removeprefix("test_") + "".join(f"-{v}" for v in c[1].values()))
def test_first_kernel_cases(kernel, case):
    test, arguments = case
    test(**arguments)


def test_gradient_written_in_place_over_the_student(kernel):
    """The fused-linear loss hands its student buffer as the gradient buffer: split falls back to one program
    per row there (a timed-out program would read columns a sibling already overwrote)."""
    s, t, labels, _ = _synthetic(2, 3, 1021, seed=23)
    s2, t2, labels2 = s.detach().reshape(6, -1), t.reshape(6, -1), labels.reshape(6)
    kl_mask = torch.ones(6, dtype=torch.bool)
    scales = torch.tensor([0.7, 0.3], dtype=torch.float64)
    expected = chunked_logits_loss(s2.clone(), t2, labels2, kl_mask, scales, 2.0, True, True, True)
    buffer = s2.clone()
    got = fused_logits_loss(buffer, t2, labels2, kl_mask, scales, 2.0, True, True, True, grad_buffer=buffer)
    assert got[2].data_ptr() == buffer.data_ptr()
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def _case(n_rows, vocab, seed, dtype=torch.bfloat16):
    s, t, labels, kl_mask, scales = tuning.synthetic_case(n_rows, vocab, dtype, dtype, torch.device("cpu"), seed=seed)
    labels[0] = vocab - 1  # a labelled row whose label sits in the last (masked) tile
    kl_mask[-1] = False  # and a row in neither term (zero gradient, nothing read)
    labels[-1] = -100
    return s, t, labels, kl_mask, scales


@pytest.mark.parametrize("config", tuning.all_candidates(), ids=lambda c: c.name)
def test_every_configuration_a_tuning_may_try(config):
    """Each candidate, at a vocabulary with an odd row stride that spans >= 3 of its tiles (>= 2 programs per
    row when split), reproduces the PyTorch path (bf16, the slot tunings measure)."""
    vocab = max(3 * config.block_v, 2 * config.chunk_v) + 37
    case = _case(3, vocab, seed=config.block_v + config.chunk_v)
    assert alignment(case[0], case[1]) == 8  # bf16: interior tiles 16-byte aligned, edges masked
    got = tuning.run_config(config, case, write_grad=True)
    s, t, labels, kl_mask, scales = case
    expected = chunked_logits_loss(s, t, labels, kl_mask, scales, 2.0, True, True, True)
    torch.testing.assert_close(got[0], expected[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[1], expected[1], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(got[2].float(), expected[2].float(), **GRAD_TOL[torch.bfloat16])
    assert torch.count_nonzero(got[2][-1]) == 0


def test_alignment_rule():
    bf16 = torch.zeros(4, 1021, dtype=torch.bfloat16)
    assert alignment(bf16, torch.zeros(4, 1021)) == 8  # the narrowest dtype sets the unit
    assert alignment(torch.zeros(4, 1021), torch.zeros(4, 1021)) == 4
    assert alignment(bf16[:, 1:]) == 1  # starts 2 bytes past a boundary
    assert alignment(bf16, torch.zeros(4, 1024, dtype=torch.bfloat16)) == 1  # strides 1021 vs 1024 differ mod 8
    assert alignment(bf16, torch.zeros(4, 1029, dtype=torch.bfloat16)) == 8  # 1021 = 1029 mod 8
