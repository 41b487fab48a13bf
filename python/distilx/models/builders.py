"""Student builders: a shallower student from a teacher and the teacher layers it keeps.

Each takes (teacher, layers, tied, adapter) — `tied`: the teacher's vocabulary projection is its word
embedding matrix, so the student's is too; `adapter`: the teacher's `ModelAdapter` — and returns the
student in the teacher's dtype (init_student makes it fp32), without gradients being recorded.
`student_config` (the teacher's config for the kept layers) and `check_layers_match` (each student
block is built like the teacher block it copies) serve the same-class builder.
"""

from __future__ import annotations

import copy
import warnings

from torch import nn


def _copy(dst: nn.Module, src: nn.Module) -> None:
    dst.weight.copy_(src.weight)
    if getattr(dst, "bias", None) is not None:
        dst.bias.copy_(src.bias)


def bert_to_distilbert(teacher: nn.Module, layers: list[int], tied: bool, adapter) -> nn.Module:
    """BERT -> DistilBertForMaskedLM, the mapping of DistilBERT's own extraction (docs/recipe.md)."""
    from transformers import DistilBertConfig, DistilBertForMaskedLM

    tcfg = teacher.config
    if getattr(tcfg, "position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"teacher position_embedding_type={tcfg.position_embedding_type!r}: DistilBERT students "
                         "support absolute position embeddings only; student_class='same' gives a shallower BERT")
    if tcfg.hidden_act not in ("gelu", "relu"):
        raise ValueError(f"teacher hidden_act={tcfg.hidden_act!r}: DistilBERT supports 'gelu' and 'relu'; "
                         "student_class='same' gives a shallower BERT")
    if abs(tcfg.layer_norm_eps - 1e-12) > 1e-15:
        warnings.warn(f"teacher layer_norm_eps={tcfg.layer_norm_eps} but DistilBERT's LayerNorms use "
                      "1e-12: the student's outputs will differ slightly from the teacher's", stacklevel=3)
    scfg = DistilBertConfig(
        vocab_size=tcfg.vocab_size, max_position_embeddings=tcfg.max_position_embeddings,
        sinusoidal_pos_embds=False, n_layers=len(layers), n_heads=tcfg.num_attention_heads,
        dim=tcfg.hidden_size, hidden_dim=tcfg.intermediate_size, dropout=tcfg.hidden_dropout_prob,
        attention_dropout=tcfg.attention_probs_dropout_prob, activation=tcfg.hidden_act,
        initializer_range=tcfg.initializer_range, pad_token_id=tcfg.pad_token_id,
        tie_word_embeddings=tied)
    student = DistilBertForMaskedLM(scfg)
    temb, semb = adapter.embeddings(teacher), student.distilbert.embeddings
    _copy(semb.word_embeddings, temb.word_embeddings)
    # BERT adds token_type_embeddings[0] to every single-segment token; DistilBERT has no token
    # types, so fold that row into the positions to keep the embedding output identical.
    semb.position_embeddings.weight.copy_(temb.position_embeddings.weight + temb.token_type_embeddings.weight[0])
    _copy(semb.LayerNorm, temb.LayerNorm)
    teacher_layers = adapter.layers(teacher)
    for s_layer, t_index in zip(student.distilbert.transformer.layer, layers):
        t = teacher_layers[t_index]
        _copy(s_layer.attention.q_lin, t.attention.self.query)
        _copy(s_layer.attention.k_lin, t.attention.self.key)
        _copy(s_layer.attention.v_lin, t.attention.self.value)
        _copy(s_layer.attention.out_lin, t.attention.output.dense)
        _copy(s_layer.sa_layer_norm, t.attention.output.LayerNorm)
        _copy(s_layer.ffn.lin1, t.intermediate.dense)
        _copy(s_layer.ffn.lin2, t.output.dense)
        _copy(s_layer.output_layer_norm, t.output.LayerNorm)
    transform = teacher.cls.predictions.transform
    _copy(student.vocab_transform, transform.dense)
    _copy(student.vocab_layer_norm, transform.LayerNorm)
    weight, bias = adapter.decoder(teacher)
    if not tied:
        student.vocab_projector.weight.copy_(weight)
    student.vocab_projector.bias.copy_(bias)
    return student


# config entries holding one value per layer (checked against num_hidden_layers): ModernBERT's (and
# most recent models') global/sliding `layer_types`, Longformer's per-layer `attention_window`
PER_LAYER_CONFIG = ("layer_types", "attention_window")
# module attributes that name a block's position, not what it computes
_POSITION_ATTRIBUTES = frozenset({"layer_idx", "layer_id", "layer_index", "layer_number", "training"})


def student_config(config, layers: list[int]):
    """A copy of the teacher's config for the kept `layers`: the layer count, and every per-layer entry
    (PER_LAYER_CONFIG) reduced to the kept layers' values, so that student layer i is built like
    teacher layer layers[i] (e.g. a global-attention layer stays global, with the teacher's window)."""
    n_teacher = config.num_hidden_layers
    new = copy.deepcopy(config)
    for key in PER_LAYER_CONFIG:
        values = getattr(config, key, None)
        if isinstance(values, (list, tuple)) and len(values) == n_teacher:
            setattr(new, key, [values[i] for i in layers])
    new.num_hidden_layers = len(layers)
    return new


def _plain(value) -> bool:
    if isinstance(value, (list, tuple)):
        return all(map(_plain, value))
    return value is None or isinstance(value, (bool, int, float, str))


def layer_signature(layer: nn.Module) -> dict:
    """What a block computes, position aside: its modules' classes, their plain settings (attention type,
    window, scaling...) and its tensors' shapes."""
    signature = {}
    for name, module in layer.named_modules():
        signature[f"{name or '.'}: class"] = type(module).__name__
        for key, value in vars(module).items():
            if not key.startswith("_") and key not in _POSITION_ATTRIBUTES and _plain(value):
                signature[f"{name}.{key}".lstrip(".")] = value
    for name, tensor in layer.state_dict().items():
        signature[f"{name}: shape"] = tuple(tensor.shape)
    return signature


def check_layers_match(student_layers: nn.ModuleList, teacher_layers: nn.ModuleList, layers: list[int]) -> None:
    """Raise unless each student block is built like the teacher block it copies."""
    for i, t in enumerate(layers):
        s_sig, t_sig = layer_signature(student_layers[i]), layer_signature(teacher_layers[t])
        diff = sorted(k for k in s_sig.keys() | t_sig.keys() if s_sig.get(k, "<none>") != t_sig.get(k, "<none>"))
        if diff:
            shown = ", ".join(f"{k}: {t_sig.get(k, '<none>')!r} in the teacher, {s_sig.get(k, '<none>')!r} in the "
                              "student" for k in diff[:4])
            raise ValueError(f"student layer {i} would not compute what teacher layer {t} computes ({shown}): this "
                             f"architecture (in this transformers version) builds layers by their position in a way "
                             f"its config cannot express for layers={layers}; keep other layers")


def same_class_fewer_layers(teacher: nn.Module, layers: list[int], tied: bool, adapter) -> nn.Module:
    """The teacher's own class with `len(layers)` layers, from `student_config`: every tensor outside the
    layer stack is copied, student layer i is teacher layer layers[i] (checked to be built alike)."""
    pinned = adapter.pinned_first_layer(teacher.config)
    if pinned and layers[0] != 0:
        raise ValueError(f"layers={layers}: the student must keep the teacher's layer 0 first: {pinned}")
    config = student_config(teacher.config, layers)
    config.tie_word_embeddings = tied
    student = type(teacher)(config)
    stack = adapter.layers(teacher)
    check_layers_match(adapter.layers(student), stack, layers)
    prefix = next(name for name, module in teacher.named_modules() if module is stack) + "."
    source_of = {str(s): str(t) for s, t in enumerate(layers)}
    state = teacher.state_dict()
    remapped = {}
    for key in student.state_dict():
        if key.startswith(prefix):
            index, rest = key[len(prefix):].split(".", 1)
            key_in_teacher = f"{prefix}{source_of[index]}.{rest}"
        else:
            key_in_teacher = key
        remapped[key] = state[key_in_teacher]
    # a tied student's projection is its embedding matrix: loading the teacher's (equal) values is a no-op
    student.load_state_dict(remapped, strict=True)
    return student
