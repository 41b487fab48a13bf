"""The one home of the loss's constants and defaults (imported by the loss, the config, the kernels).

Defaults are DistilBERT's (docs/recipe.md): temperature 2, weights 5 / 2 / 1 for KL / MLM / cosine,
the KL over every real token. No torch import here, so `distilx.config` stays cheap to import.
"""

IGNORE_INDEX = -100  # a label that is not a masked-LM target (PyTorch's and transformers' convention)
# CosineEmbeddingLoss's epsilon: cos = <a,b> / sqrt((|a|^2 + eps) (|b|^2 + eps)). Keeping that form (not
# F.cosine_similarity's clamp) makes the term smooth and identical to DistilBERT's.
COS_EPS = 1e-12

TEMPERATURE = 2.0  # softmax temperature of the KL term (the KL is scaled by T^2)
ALPHA_KL = 5.0  # weight of KL(teacher || student)
ALPHA_MLM = 2.0  # weight of the student's masked-LM cross-entropy
ALPHA_COS = 1.0  # weight of 1 - cos(h_student, h_teacher)
KL_ON = "tokens"  # rows of the KL term: every real token (DistilBERT); "targets" = masked positions only

KL_ON_CHOICES = ("tokens", "targets")
BACKENDS = ("auto", "triton", "torch")

# MiniLMv2 relation distillation (losses/relation.py): relation heads each side's Q/K/V is re-split into
# when the caller does not say. 12 is MiniLMv2's choice for base-size teachers and the head count of
# BERT-base and of the MiniLM-L6/L12 family; callers that know the teacher pass its head count.
RELATION_HEADS = 12
