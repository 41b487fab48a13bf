"""Model access: the one place that knows each supported architecture.

- `adapters.py`: the adapter table — embeddings, layer stack, last hidden state, MLM head
  (`head_transform` + `decoder`, `mlm_logits`) per architecture (BERT, RoBERTa/XLM-R/CamemBERT,
  DistilBERT);
- `loading.py`: `load_teacher` (a local folder) and `check_vocab` (tokenizer vs embeddings);
- `builders.py`: teacher -> student weight copies; `student.py`: `init_student` and the layer rule.
"""

from .adapters import ADAPTERS, ModelAdapter, UnsupportedModelError, adapter_for, adapter_for_type
from .loading import check_vocab, load_teacher
from .student import init_student, student_layer_indices

__all__ = ["ADAPTERS", "ModelAdapter", "UnsupportedModelError", "adapter_for", "adapter_for_type", "check_vocab",
           "init_student", "load_teacher", "student_layer_indices"]
