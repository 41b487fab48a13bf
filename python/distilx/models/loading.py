"""Loading a supported masked-LM model from a local folder, and the tokenizer/vocabulary check."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from torch import nn

from ..safe_loading import refusing_code
from .adapters import adapter_for_type

__all__ = ["load_teacher", "check_vocab"]


def load_teacher(path: str | Path) -> nn.Module:
    """Load a masked-LM model of a supported architecture from a local folder (config.json + weights),
    in eval mode: a teacher, or a distilx student folder.

    A config.json without `model_type` (rxnfp) is read as BERT. A checkpoint without trained MLM-head
    weights (a sentence encoder such as all-MiniLM-L6-v2) loads with a freshly initialised head and a
    warning: its logits mean nothing until the head is fitted. Weights load through safetensors or
    `torch.load(weights_only=True)` (transformers' own loader).
    """
    from transformers import AutoModelForMaskedLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    path = Path(path)
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path} has no config.json: pass a folder saved by save_pretrained "
                                "(config.json + model.safetensors or pytorch_model.bin)")
    model_type = json.loads(config_file.read_text()).get("model_type", "bert")
    adapter = adapter_for_type(model_type, where=str(config_file))
    config = CONFIG_MAPPING[model_type].from_json_file(str(config_file))
    with refusing_code(path):  # a hostile pickle: one line naming the file
        model, info = AutoModelForMaskedLM.from_pretrained(str(path), config=config, output_loading_info=True)
    head_missing = [k for k in info.get("missing_keys", []) if k.startswith(adapter.head_prefixes)]
    if head_missing:
        warnings.warn(f"{path}: the checkpoint has no trained MLM head ({len(head_missing)} head tensors "
                      "freshly initialised); fit the head before using it as a teacher "
                      "(see distilx.demo.fit_teacher_head)", stacklevel=2)
    return model.eval()


def check_vocab(model: nn.Module, tokenizer) -> None:
    """Raise if the tokenizer can produce ids the model has no embedding for."""
    model_vocab = model.get_input_embeddings().weight.shape[0]
    if tokenizer.vocab_size > model_vocab:
        raise ValueError(f"tokenizer vocabulary ({tokenizer.vocab_size} ids) is larger than the model's "
                         f"({model_vocab} embeddings): the tokenizer does not belong to this teacher; "
                         "pass the teacher's own tokenizer (tokenizer = the teacher folder)")
    for name in ("cls_id", "sep_id", "mask_id", "pad_id"):
        token_id = getattr(tokenizer, name, None)
        if token_id is not None and token_id >= model_vocab:
            raise ValueError(f"tokenizer {name}={token_id} is outside the model's {model_vocab} embeddings")
