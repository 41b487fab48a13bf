"""Model access: the one place that knows each supported architecture.

- `adapters.py`: the adapter table — embeddings, layer stack, last hidden state, MLM head
  (`head_transform` + `decoder`, `mlm_logits`) per architecture (BERT, RoBERTa/XLM-R/CamemBERT,
  DistilBERT, ELECTRA, DeBERTa-v2, ModernBERT, EuroBERT); `generic.py`: the entry of any other
  masked-LM encoder whose layer stack and head can be found and checked;
- `loading.py`: `load_teacher` (a local folder) and `check_vocab` (tokenizer vs model);
- `builders.py`: teacher -> student weight copies and the per-layer config; `student.py`:
  `init_student` and the layer rule.
"""

from .adapters import ADAPTERS, ModelAdapter, UnsupportedModelError, adapter_for, adapter_for_type, supported_types
from .loading import check_vocab, load_teacher
from .student import STUDENT_CLASSES, init_student, student_layer_indices

__all__ = ["ADAPTERS", "ModelAdapter", "STUDENT_CLASSES", "UnsupportedModelError", "adapter_for", "adapter_for_type",
           "check_vocab", "init_student", "load_teacher", "student_layer_indices", "supported_types"]
