"""Loading a masked-LM model from a local folder (the tokenizer-vs-model checks: vocabulary.py)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from torch import nn

from ..safe_loading import refusing_code
from .adapters import UnsupportedModelError, adapter_for, supported_types

__all__ = ["load_teacher", "read_config_json"]

def _holds(architectures) -> str:
    """What config.json says the folder holds, for the no-MLM-head message."""
    if not architectures:
        return ""
    name = architectures[0]
    if name.endswith("Model"):
        return f"; config.json says it holds a {name}, a bare encoder without an MLM head"
    return f"; config.json says it holds a {name}, whose head is not a masked-LM head"


def read_config_json(path: Path) -> tuple[dict, str, Path]:
    """A model folder's config.json: (what it declares, its model_type — absent: BERT, as rxnfp's —, its path)."""
    config_file = path / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{path} has no config.json: pass a folder saved by save_pretrained "
                                "(config.json + model.safetensors or pytorch_model.bin)")
    declared = json.loads(config_file.read_text())
    return declared, declared.get("model_type", "bert"), config_file


def load_teacher(path: str | Path, *, require_mlm_head: bool = True) -> nn.Module:
    """Load a masked-LM model of a supported architecture from a local folder (config.json + weights),
    in eval mode: a teacher, or a distilx student folder.

    A config.json without `model_type` (rxnfp) is read as BERT. A folder whose weights hold no MLM head
    (a bare encoder such as the sentence encoder all-MiniLM-L6-v2, or a fine-tuned classifier) is a
    ValueError saying what the folder holds; with require_mlm_head=False it loads with a freshly
    initialised head and a warning (its logits mean nothing until the head is fitted: the demo does
    that). Weights load through safetensors or `torch.load(weights_only=True)` (transformers' own loader).
    """
    import transformers
    from transformers import AutoModelForMaskedLM
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING
    from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

    path = Path(path)
    declared, model_type, config_file = read_config_json(path)
    if model_type not in CONFIG_MAPPING:
        raise UnsupportedModelError(f"unsupported model_type {model_type!r} in {config_file}: transformers "
                                    f"{transformers.__version__} does not know it (a newer version may); "
                                    f"distilx takes {supported_types()}")
    if model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        raise UnsupportedModelError(f"unsupported model_type {model_type!r} in {config_file}: transformers has "
                                    f"no masked-LM class for it; distilx takes {supported_types()}")
    config = CONFIG_MAPPING[model_type].from_json_file(str(config_file))
    with refusing_code(path):  # a hostile pickle: one line naming the file
        model, info = AutoModelForMaskedLM.from_pretrained(str(path), config=config, output_loading_info=True)
    adapter_for(model)  # an architecture distilx can serve (a generic one is checked here, once)
    base = model.base_model_prefix + "."
    head_missing = [k for k in info.get("missing_keys", []) if not k.startswith(base)]
    if head_missing:
        what = (f"{path}: its weights hold no trained masked-LM head ({len(head_missing)} head tensors would be "
                f"freshly initialised){_holds(declared.get('architectures'))}")
        if require_mlm_head:
            raise ValueError(f"{what}. A teacher must be a masked-LM model: a folder saved from a …ForMaskedLM "
                             f"({type(model).__name__} here) with its MLM head weights. To start from this encoder "
                             "anyway, load it with load_teacher(path, require_mlm_head=False) and fit the head first "
                             "(distilx.demo.fit_teacher_head)")
        warnings.warn(f"{what}; fit the head before using it as a teacher (see distilx.demo.fit_teacher_head)",
                      stacklevel=2)
    return model.eval()
