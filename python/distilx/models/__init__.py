"""Model access: the one place that knows each supported architecture.

- `adapters.py`: the adapter table — embeddings, layer stack, last hidden state, MLM head
  (`head_transform` + `decoder`, `mlm_logits`) per architecture (BERT, RoBERTa/XLM-R/CamemBERT,
  DistilBERT, ELECTRA, DeBERTa-v2, ModernBERT, EuroBERT); `generic.py`: the entry of any other
  masked-LM encoder whose layer stack and head can be found and checked;
- `loading.py`: `load_teacher` (a local folder); `vocabulary.py`: `check_vocabulary`, the one check that
  the tokenizer, the teacher and the student share one vocabulary (token -> id maps, embeddings, special ids);
- `builders.py`: teacher -> student weight copies and the per-layer config; `student.py`:
  `init_student` and the layer rule; `defaults.py`: its choices;
- `shapes.py`: a student's width (hidden size, heads, intermediate size) and `shaped_student`;
  `weight_selection.py`: a narrower student as a sub-network of the teacher; `attention_access.py`: a
  layer's Q/K/V projections (the adapter table's `qkv`).

The choices import without torch; the rest loads on first use (so `distilx.config` stays light).
"""

from importlib import import_module

from .defaults import STUDENT_CLASSES

_LAZY = {"ADAPTERS": "adapters", "ModelAdapter": "adapters", "UnsupportedModelError": "adapters",
         "adapter_for": "adapters", "adapter_for_type": "adapters", "supported_types": "adapters",
         "check_vocab": "vocabulary", "check_vocabulary": "vocabulary", "load_teacher": "loading",
         "init_student": "student", "student_layer_indices": "student"}

__all__ = sorted(_LAZY) + ["STUDENT_CLASSES"]


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'distilx.models' has no attribute {name!r}")
    return getattr(import_module(f".{module}", __name__), name)
