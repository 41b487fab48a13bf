"""DistilBERT's triple loss: the public call and module, its constants, and both backends.

- `api.py`: `distillation_loss`, `DistillationLoss`, `DistillationLossOutput` (validation + dispatch);
- `autograd.py`: the autograd functions (gradient formed in the forward, scaled in the backward);
- `checks.py`: option and tensor validation shared by every entry point;
- `chunked.py`: the chunked PyTorch path; the Triton kernels live in `distilx.triton_kernels`;
- `fused_linear.py`: `fused_linear_distillation_loss`, `FusedLinearDistillationLoss` (the same loss from
  the vocabulary projection's inputs, never holding the N x V logits) and its chunk-size and `auto` rules;
- `relation.py`: `relation_distillation_loss`, `RelationLossOutput` (MiniLMv2's Q-Q/K-K/V-V relation KL:
  validation, dispatch, autograd), `relation_chunked.py` its PyTorch path, `relation_reference.py` its
  eager formula; its Triton kernels are `distilx.triton_kernels.relation`;
- `multi_label.py`, `regression.py`: the losses of multi-label and regression heads (per-label binary
  KL · T² + BCE; MSE to the teacher + to the gold), and `heads.py`: one entry choosing the loss by what a
  head's logits mean (token classification: `distillation_loss` on the labelled positions);
- `reference.py`: the eager formula, the oracle of the tests and the benchmarks' baseline;
- `defaults.py`: IGNORE_INDEX and the defaults (T = 2, alphas 5 / 2 / 1, kl_on="tokens").

The constants import without torch; the rest loads on first use (so `distilx.config` stays light).
"""

from importlib import import_module

from .defaults import (ALPHA_COS, ALPHA_KL, ALPHA_MLM, BACKENDS, COS_EPS, IGNORE_INDEX, KL_ON, KL_ON_CHOICES,
                       RELATION_HEADS, TEMPERATURE)

_LAZY = {"distillation_loss": "api", "DistillationLoss": "api", "DistillationLossOutput": "api",
         "fused_linear_distillation_loss": "fused_linear", "FusedLinearDistillationLoss": "fused_linear",
         "reference_distillation_loss": "reference", "multi_label_distillation_loss": "multi_label",
         "regression_distillation_loss": "regression", "head_distillation_loss": "heads",
         "relation_distillation_loss": "relation", "RelationLossOutput": "relation",
         "reference_relation_loss": "relation_reference"}

__all__ = sorted(_LAZY) + ["ALPHA_COS", "ALPHA_KL", "ALPHA_MLM", "BACKENDS", "COS_EPS", "IGNORE_INDEX", "KL_ON",
                           "KL_ON_CHOICES", "RELATION_HEADS", "TEMPERATURE"]


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'distilx.losses' has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)
