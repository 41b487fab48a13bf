"""distilx's Triton kernels: one fused op per module (kernel + launcher).

Imported lazily by `distilx.losses.autograd` only when backend="triton" is used, so `import distilx` never
needs Triton. With no GPU the kernels run under TRITON_INTERPRET=1 (set it before this import).
"""

from .cosine import fused_cosine_loss
from .distill_logits import fused_logits_loss

__all__ = ["fused_logits_loss", "fused_cosine_loss"]
