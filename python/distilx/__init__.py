"""distilx: distil masked-language encoders into smaller students, fast.

Public API (imported lazily so that `import distilx` stays cheap and each part loads only
what it needs):

- data engine: `MaskedLMStream`, `StreamOptions`, `encode`, `Tokenizer`, `build_cache`
- fused loss: `distillation_loss`, `DistillationLoss`, `DistillationLossOutput`
- fused-linear loss (from the vocabulary projection's inputs, no N x V logits):
  `fused_linear_distillation_loss`, `FusedLinearDistillationLoss`
- MiniLMv2 self-attention relation loss (students of another width): `relation_distillation_loss`,
  `RelationLossOutput`
- pipeline: `init_student`, `TrainConfig`, `train`, `evaluate`
- task stage (docs/tasks.md): `init_classifier_student`, `evaluate_classification`, `DistillationTrainer`
  (a transformers.Trainer that distils)
"""

from importlib import import_module

# public name -> module (relative to this package) that defines it
_EXPORTS = {
    "MaskedLMStream": "data",
    "encode": "data",
    "Tokenizer": "data",
    "build_cache": "data",
    "StreamOptions": "data",
    "distillation_loss": "losses",
    "DistillationLoss": "losses",
    "DistillationLossOutput": "losses",
    "fused_linear_distillation_loss": "losses",
    "FusedLinearDistillationLoss": "losses",
    "relation_distillation_loss": "losses",
    "RelationLossOutput": "losses",
    "init_student": "models",
    "init_classifier_student": "models.classification",
    "evaluate_classification": "classification_eval",
    "DistillationTrainer": "trainer",
    "TrainConfig": "config",
    "train": "training",
    "evaluate": "evaluation",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name == "__version__":
        # compiled into the extension from Cargo.toml, which maturin also writes into the wheel's metadata
        from ._native import __version__
        return __version__
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'distilx' has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # cache: later lookups skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
