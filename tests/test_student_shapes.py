"""Narrower students on every architecture of the adapter table (tiny random teachers fed real English text,
tests/tiny_models.py; MiniLM's real weights): weight selection keeping every unit reproduces the teacher
exactly; a narrower student's tensors are the teacher's at the chosen units (checked against this file's own
transcription of which dims are hidden units, heads and intermediate units); dropping intermediate units is
exactly the teacher without them; importance keeps the largest units; GQA keeps query heads with their
key/value head; random init has the shape; bad shapes are refused in one line; the students save and load
with AutoModel… and run in pipeline()."""

import copy
import json

import pytest
import torch
import transformers
from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, pipeline

from distilx.models import adapter_for, init_student, load_teacher
from distilx.models.classification import init_classifier_student
from distilx.models.shapes import ShapeRequest, shape_of, shaped_student
from pipeline_helpers import english_batch, max_logit_diff
from tiny_models import ARCHITECTURES, AVAILABLE, declared_ids, hf_tokenizer, tiny_teacher

TABLE = [name for name in AVAILABLE if name not in ("mpnet", "roformer")]  # the generic entry keeps widths
# the architectures whose student is the teacher's own class (BERT's default student is a DistilBERT)
CLASS = {name: ("same" if name == "bert" else "auto") for name in TABLE}


@pytest.fixture(scope="module")
def english(tokenizer_json, english_lines):
    return english_batch(tokenizer_json, english_lines)


def evenly(n, k):
    return [j * n // k for j in range(k)]


def test_keeping_every_unit_reproduces_the_teacher_exactly(english):
    for name in TABLE:
        teacher = tiny_teacher(name)
        full = init_student(teacher, n_layers=4, student_class=CLASS[name])
        shape = shape_of(full.config)
        for selection in ("uniform", "importance"):
            selected = init_student(teacher, n_layers=4, student_class=CLASS[name], hidden=shape.hidden,
                                    heads=shape.heads, intermediate=shape.intermediate, init="weight-selection",
                                    selection=selection)
            for key, tensor in full.state_dict().items():
                assert torch.equal(selected.state_dict()[key], tensor), (name, selection, key)
            assert max_logit_diff(teacher, selected, *english) < 1e-4, (name, selection)


# this file's own transcription of which units each dim of a few tensors holds, per architecture:
# (key with {L} for the layer, axes) with axes as in models/shapes.py
def _bert_like(base, head):
    return [(f"{base}.embeddings.word_embeddings.weight", (None, "h")),
            (f"{base}.encoder.layer.{{L}}.attention.self.query.weight", ("q", "h")),
            (f"{base}.encoder.layer.{{L}}.attention.self.value.bias", ("q",)),
            (f"{base}.encoder.layer.{{L}}.attention.output.dense.weight", ("h", "q")),
            (f"{base}.encoder.layer.{{L}}.intermediate.dense.weight", ("i", "h")),
            (f"{base}.encoder.layer.{{L}}.output.dense.weight", ("h", "i")),
            (f"{base}.encoder.layer.{{L}}.output.LayerNorm.weight", ("h",)),
            (head, ("h", "h"))]


EXPECTED = {
    "bert": _bert_like("bert", "cls.predictions.transform.dense.weight"),
    "roberta": _bert_like("roberta", "lm_head.dense.weight"),
    # the generator's embeddings (16) are narrower than its hidden size and keep their width
    "electra": [(k, ax) for k, ax in _bert_like("electra", "generator_predictions.dense.weight")[1:-1]]
    + [("generator_predictions.dense.weight", (None, "h")), ("electra.embeddings_project.weight", ("h", None))],
    "deberta-v2": [(k.replace("self.query.", "self.query_proj.").replace("self.value.", "self.value_proj."), ax)
                   for k, ax in _bert_like("deberta", "lm_predictions.lm_head.dense.weight")]
    + [("deberta.encoder.rel_embeddings.weight", (None, "h"))],
    "modernbert": [("model.embeddings.tok_embeddings.weight", (None, "h")),
                   ("model.layers.{L}.attn.Wqkv.weight", ("3q", "h")), ("model.layers.{L}.attn.Wo.weight", ("h", "q")),
                   ("model.layers.{L}.mlp.Wi.weight", ("2i", "h")), ("model.layers.{L}.mlp.Wo.weight", ("h", "i")),
                   ("model.layers.{L}.mlp_norm.weight", ("h",)), ("head.dense.weight", ("h", "h")),
                   ("decoder.weight", (None, "h"))],
    "distilbert": [("distilbert.embeddings.position_embeddings.weight", (None, "h")),
                   ("distilbert.transformer.layer.{L}.attention.k_lin.weight", ("q", "h")),
                   ("distilbert.transformer.layer.{L}.attention.out_lin.weight", ("h", "q")),
                   ("distilbert.transformer.layer.{L}.ffn.lin1.bias", ("i",)),
                   ("distilbert.transformer.layer.{L}.ffn.lin2.weight", ("h", "i")),
                   ("distilbert.transformer.layer.{L}.sa_layer_norm.bias", ("h",)),
                   ("vocab_transform.weight", ("h", "h")), ("vocab_projector.weight", (None, "h"))],
    "eurobert": [("model.embed_tokens.weight", (None, "h")), ("model.layers.{L}.self_attn.q_proj.weight", ("q", "h")),
                 ("model.layers.{L}.self_attn.k_proj.weight", ("kv", "h")),
                 ("model.layers.{L}.self_attn.o_proj.weight", ("h", "q")),
                 ("model.layers.{L}.mlp.gate_proj.weight", ("i", "h")),
                 ("model.layers.{L}.mlp.down_proj.weight", ("h", "i")),
                 ("model.layers.{L}.post_attention_layernorm.weight", ("h",)), ("lm_head.weight", (None, "h"))],
}
EXPECTED["xlm-roberta"] = EXPECTED["camembert"] = EXPECTED["roberta"]
EXPECTED["deberta-v2-legacy"] = [(k.replace("lm_predictions.lm_head", "cls.predictions.transform"), ax)
                                 for k, ax in EXPECTED["deberta-v2"]] + [("deberta.encoder.conv.conv.weight",
                                                                         ("h", "h", None))]


@pytest.mark.parametrize("name", TABLE)
def test_a_narrower_student_holds_the_teachers_selected_units(name, english):
    teacher = tiny_teacher(name)  # hidden 32, 2 heads of 16, intermediate 48, 4 layers
    # ELECTRA's embeddings (16) are narrower than its hidden size: a 16-wide student would drop the projection
    hidden, heads = (24, 2) if name == "electra" else (16, None)
    student = init_student(teacher, n_layers=2, student_class=CLASS[name], hidden=hidden, heads=heads,
                           intermediate=24, init="weight-selection")
    d_t, d_s = 16, hidden // (heads or 1)
    kept_heads = [0] if heads is None else [0, 1]
    units = {"h": evenly(32, hidden), "i": evenly(48, 24),
             "q": [h * d_t + j for h in kept_heads for j in evenly(d_t, d_s)]}
    units.update({"kv": units["q"], "3q": [o + u for o in (0, 32, 64) for u in units["q"]],
                  "2i": units["i"] + [48 + u for u in units["i"]]})
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for template, axes in EXPECTED[name]:
        for s_layer, t_layer in ((0, 0), (1, 3)):  # kept layers [0, 3]
            expected = t_state[template.format(L=t_layer)]
            for dim, axis in enumerate(axes):
                if axis is not None:
                    expected = expected.index_select(dim, torch.tensor(units[axis]))
            assert torch.equal(s_state[template.format(L=s_layer)], expected), template
    assert shape_of(student.config).hidden == hidden and student.config.distilx_student_init == "weight-selection:uniform"
    student.eval()
    with torch.no_grad():
        assert torch.isfinite(student(input_ids=english[0], attention_mask=english[1]).logits).all()


# the down projection (rows: hidden units, columns: intermediate units) of layer {L}
DOWN = {"bert": "bert.encoder.layer.{L}.output.dense.weight", "roberta": "roberta.encoder.layer.{L}.output.dense.weight",
        "electra": "electra.encoder.layer.{L}.output.dense.weight",
        "deberta-v2": "deberta.encoder.layer.{L}.output.dense.weight", "modernbert": "model.layers.{L}.mlp.Wo.weight",
        "distilbert": "distilbert.transformer.layer.{L}.ffn.lin2.weight", "eurobert": "model.layers.{L}.mlp.down_proj.weight"}


@pytest.mark.parametrize("name", [n for n in DOWN if n in TABLE])
def test_fewer_intermediate_units_are_the_teacher_without_them(name, english):
    """An intermediate unit reaches the output only through its column of the down projection: zeroing the
    dropped units' columns in the teacher must give the student's function exactly."""
    teacher = tiny_teacher(name).double()  # float64: the equality is exact up to rounding, far below the effect
    student = init_student(teacher, n_layers=4, student_class=CLASS[name], intermediate=20,
                           init="weight-selection").double()
    reference = copy.deepcopy(teacher)
    dropped = [u for u in range(48) if u not in evenly(48, 20)]
    with torch.no_grad():
        for layer in range(4):
            reference.get_parameter(DOWN[name].format(L=layer))[:, dropped] = 0
    assert max_logit_diff(reference, student, *english) < 1e-9
    assert max_logit_diff(teacher, student, *english) > 1e-5  # the units mattered


def test_kept_heads_attend_as_in_the_teacher():
    """BERT self-attention on an input that is zero outside the kept hidden units: the student's context of
    each kept head is the teacher's for that head (whole heads keep their scores)."""
    teacher = tiny_teacher("bert", hidden_size=64, num_attention_heads=4, intermediate_size=48)  # heads of 16
    student = init_student(teacher, n_layers=4, student_class="same", hidden=32, init="weight-selection").eval()
    torch.manual_seed(1)
    x = torch.randn(2, 7, 64)
    hidden = evenly(64, 32)
    x[..., [u for u in range(64) if u not in hidden]] = 0
    with torch.no_grad():
        t_ctx = teacher.bert.encoder.layer[2].attention.self(x)[0]
        s_ctx = student.bert.encoder.layer[2].attention.self(x[..., hidden])[0]
    kept = [h * 16 + j for h in evenly(4, 2) for j in range(16)]  # heads 0 and 2
    assert torch.allclose(s_ctx, t_ctx[..., kept], atol=1e-5)


def test_importance_keeps_the_largest_units():
    teacher = tiny_teacher("bert", num_hidden_layers=2)
    big_hidden = sorted(torch.randperm(32, generator=torch.Generator().manual_seed(3))[:16].tolist())
    big_inter = [1, 5, 7, 11, 20, 30, 31, 40, 41, 42, 43, 47]
    with torch.no_grad():
        for name, p in teacher.named_parameters():
            if name.endswith(("LayerNorm.weight", "word_embeddings.weight", "position_embeddings.weight")):
                p[..., big_hidden] *= 10
        layers = teacher.bert.encoder.layer
        layers[0].attention.output.dense.weight[:, 16:] *= 10  # head 1 matters in layer 0, head 0 in layer 1
        layers[1].attention.output.dense.weight[:, :16] *= 10
        for layer in layers:
            layer.output.dense.weight[:, big_inter] *= 10
    student = init_student(teacher, n_layers=2, student_class="same", hidden=16, intermediate=12,
                           init="weight-selection", selection="importance")
    t, s = teacher.state_dict(), student.state_dict()
    assert torch.equal(s["bert.embeddings.LayerNorm.weight"], t["bert.embeddings.LayerNorm.weight"][big_hidden])
    for layer, head in ((0, 1), (1, 0)):
        q = f"bert.encoder.layer.{layer}.attention.self.query.weight"
        assert torch.equal(s[q], t[q][head * 16:(head + 1) * 16][:, big_hidden])
        down = f"bert.encoder.layer.{layer}.output.dense.weight"
        assert torch.equal(s[down], t[down][big_hidden][:, big_inter])


def test_grouped_query_attention_keeps_query_heads_with_their_key_value_head():
    if "eurobert" not in AVAILABLE:
        pytest.skip("this transformers version has no EuroBERT")
    # 4 query heads of 16 in 2 groups of 2 (key/value heads 0 and 1)
    teacher = tiny_teacher("eurobert", hidden_size=64, num_attention_heads=4, num_key_value_heads=2)
    with torch.no_grad():
        teacher.model.layers[0].self_attn.o_proj.weight[:, 48:] *= 10  # query head 3, of key/value head 1
    prefix = "model.layers.0.self_attn."
    t = teacher.state_dict()
    for selection, group in (("uniform", 0), ("importance", 1)):
        student = init_student(teacher, n_layers=4, hidden=32, init="weight-selection", selection=selection)
        shape = shape_of(student.config)
        assert (shape.heads, shape.kv_heads, shape.head_dim) == (2, 1, 16)  # groups no larger than the teacher's
        s = student.state_dict()
        hidden = _kept_hidden(t["model.embed_tokens.weight"], s["model.embed_tokens.weight"])
        rows = slice(group * 16, (group + 1) * 16)
        assert torch.equal(s[prefix + "k_proj.weight"], t[prefix + "k_proj.weight"][rows][:, hidden])
        assert torch.equal(s[prefix + "v_proj.weight"], t[prefix + "v_proj.weight"][rows][:, hidden])
        heads = slice(group * 32, (group + 1) * 32)  # both query heads of that group
        assert torch.equal(s[prefix + "q_proj.weight"], t[prefix + "q_proj.weight"][heads][:, hidden])
    with pytest.raises(ValueError, match="must divide its 2 query heads"):
        target = tmp_config(teacher, {"hidden_size": 32, "num_attention_heads": 2, "num_key_value_heads": 3})
        init_student(teacher, n_layers=4, student_config=target, init="weight-selection")


def _kept_hidden(teacher_matrix: torch.Tensor, student_matrix: torch.Tensor) -> list[int]:
    """Which teacher columns the student's columns are (random weights: every column is unique)."""
    return [next(u for u in range(teacher_matrix.shape[1]) if torch.equal(teacher_matrix[:, u], column))
            for column in student_matrix.T]


def tmp_config(model, values: dict, folder=None) -> str:
    import tempfile
    from pathlib import Path

    folder = Path(folder or tempfile.mkdtemp())
    path = folder / "student_config.json"
    path.write_text(json.dumps({"model_type": model.config.model_type, **values}))
    return str(path)


def test_a_student_config_file_gives_the_same_student_as_the_flags(tmp_path):
    teacher = tiny_teacher("roberta")
    flags = init_student(teacher, hidden=16, heads=2, intermediate=24, init="weight-selection")
    path = tmp_config(teacher, {"hidden_size": 16, "num_attention_heads": 2, "intermediate_size": 24,
                                "num_hidden_layers": 2, "vocab_size": teacher.config.vocab_size}, tmp_path)
    from_file = init_student(teacher, student_config=path, init="weight-selection")
    assert from_file.config.num_hidden_layers == 2
    for key, tensor in flags.state_dict().items():
        assert torch.equal(from_file.state_dict()[key], tensor), key


def test_random_init_has_the_shape_and_follows_the_seed():
    teacher = tiny_teacher("modernbert")
    a, b, c = (init_student(teacher, hidden=16, intermediate=20, init="random", seed=s) for s in (3, 3, 4))
    selected = init_student(teacher, hidden=16, intermediate=20, init="weight-selection")
    assert shape_of(a.config) == shape_of(selected.config)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in selected.state_dict().items()}
    key = "model.layers.0.attn.Wqkv.weight"
    assert torch.equal(a.state_dict()[key], b.state_dict()[key]) and not torch.equal(a.state_dict()[key], c.state_dict()[key])
    assert not torch.equal(a.state_dict()[key], selected.state_dict()[key])


BAD_SHAPES = [
    ("bert", dict(hidden=20, heads=3), "hidden size 20 is not a multiple of its 3 attention heads"),
    ("bert", dict(hidden=20), "not a multiple of the teacher's head size 16: give the student's heads too"),
    ("bert", dict(hidden=16, heads=32), "choose a hidden size of e.g. 32, or 16 heads"),  # not "e.g. 0"
    ("modernbert", dict(hidden=18, heads=2), "head size 18 / 2 = 9 is odd"),
    ("modernbert", dict(hidden=16, heads=2, init="weight-selection"), "keeps whole heads of the teacher's head size 16"),
    ("roberta", dict(hidden=64, heads=4, init="weight-selection"), "hidden size 64 exceeds the teacher's 32"),
    ("roberta", dict(intermediate=96, init="weight-selection"), "intermediate size 96 exceeds the teacher's 48"),
    ("deberta-v2", dict(hidden=16), "student_init='teacher' copies the teacher's layers whole"),
    ("mpnet", dict(hidden=16, init="random"), "generic entry, whose students keep the teacher's width"),
    ("electra", dict(hidden=16, init="weight-selection"), "lacks the teacher's electra.embeddings_project.bias"),
]


@pytest.mark.parametrize("name, kwargs, message", BAD_SHAPES, ids=[f"{n}-{m[:20]}" for n, _, m in BAD_SHAPES])
def test_bad_shapes_are_refused_in_one_line(name, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        init_student(tiny_teacher(name), **kwargs)
    assert "\n" not in str(info.value)


def test_a_student_config_file_may_change_only_the_shape(tmp_path):
    teacher = tiny_teacher("bert")
    cases = [({"dim": 16, "vocab_size": 100}, "changes vocab_size=100"),
             ({"dim": 16, "max_position_embeddings": 512}, "changes max_position_embeddings=512"),
             ({"model_type": "bert", "hidden_size": 16}, "is a 'bert' config but this teacher's student is a 'distilbert'"),
             ({"dim": 16, "n_layers": 3}, "sets n_layers=3 but the student keeps 2 layers"),
             ({"dim": 16, "flux_capacitor": 1}, "['flux_capacitor'] is not a setting of DistilBertConfig"),
             ({"dim": "16"}, "dim='16' must be an integer >= 1"),  # not a TypeError from the arithmetic
             ({"dim": 16, "n_heads": True, "hidden_dim": 0}, "n_heads=True, hidden_dim=0 must be integers >= 1")]
    for values, message in cases:
        path = tmp_path / "c.json"
        path.write_text(json.dumps({"model_type": "distilbert", **values}))
        with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
            init_student(teacher, n_layers=2, student_config=str(path), init="random")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        init_student(teacher, student_config=str(tmp_path / "missing.json"), init="random")


@pytest.mark.parametrize("name", TABLE)
def test_a_narrower_student_saves_loads_with_automodel_and_fills_masks(name, tmp_path):
    hidden, heads = (24, 2) if name == "electra" else (16, None)
    student = init_student(tiny_teacher(name), hidden=hidden, heads=heads, intermediate=24,
                           init="weight-selection").eval()
    student.save_pretrained(tmp_path)
    tokenizer = hf_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(student) and shape_of(loaded.config) == shape_of(student.config)
    text = "the capital of france is [MASK]."
    inputs = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        assert torch.equal(loaded(**inputs).logits, student(**inputs).logits)
    assert len(pipeline("fill-mask", model=str(tmp_path), device="cpu")(text)) == 5


def tiny_classifier(name, labels=("a", "b", "c")):
    _, config_class, kwargs = ARCHITECTURES[name]
    from tiny_models import CLS, MASK, PAD, SEP, VOCAB

    torch.manual_seed(0)
    config = getattr(transformers, config_class)(**kwargs, vocab_size=VOCAB, **declared_ids(name, PAD, CLS, SEP, MASK),
                                                 id2label=dict(enumerate(labels)),
                                                 label2id={l: i for i, l in enumerate(labels)})
    return AutoModelForSequenceClassification.from_config(config).eval()


@pytest.mark.parametrize("name", TABLE)
def test_classifier_students_narrow_the_same_way(name, english, tmp_path):
    teacher = tiny_classifier(name)
    full = init_classifier_student(teacher, n_layers=4)
    shape = shape_of(full.config)
    same = init_classifier_student(teacher, n_layers=4, hidden=shape.hidden, heads=shape.heads,
                                   intermediate=shape.intermediate, init="weight-selection")
    ids, mask = english
    with torch.no_grad():
        assert torch.allclose(same.eval()(input_ids=ids, attention_mask=mask).logits,
                              teacher(input_ids=ids, attention_mask=mask).logits, atol=1e-5)
    hidden, heads = (24, 2) if name == "electra" else (16, None)
    narrow = init_classifier_student(teacher, n_layers=2, hidden=hidden, heads=heads, init="weight-selection").eval()
    narrow.save_pretrained(tmp_path)
    hf_tokenizer().save_pretrained(tmp_path)
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(loaded(input_ids=ids, attention_mask=mask).logits,
                           narrow(input_ids=ids, attention_mask=mask).logits)
    got = pipeline("text-classification", model=str(tmp_path), device="cpu")("a sentence of real english text")
    assert got[0]["label"] in ("a", "b", "c")


def test_minilm_weight_selection_starts_as_its_sub_network(minilm_dir, english):
    """Real weights (all-MiniLM-L6-v2, 6 x 384, 12 heads): keeping every unit is exact; the 6 x 192 student
    (6 heads of 32) by weight selection starts far closer to the teacher's hidden states (at the kept units)
    than the same shape drawn at random."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        teacher = load_teacher(minilm_dir, require_mlm_head=False)
    ids, mask = english
    assert max_logit_diff(teacher, init_student(teacher, n_layers=6, hidden=384, heads=12, intermediate=1536,
                                                init="weight-selection"), ids, mask) < 1e-4
    adapter = adapter_for(teacher)
    with torch.no_grad():
        t_hidden = adapter.last_hidden(teacher, ids, mask)[..., evenly(384, 192)][mask.bool()]
    similarity = {}
    for init in ("weight-selection", "random"):
        student = init_student(teacher, n_layers=6, hidden=192, init=init).eval()
        assert shape_of(student.config).heads == 6 and type(student).__name__ == "DistilBertForMaskedLM"
        with torch.no_grad():
            s_hidden = adapter_for(student).last_hidden(student, ids, mask)[mask.bool()]
        similarity[init] = torch.nn.functional.cosine_similarity(s_hidden, t_hidden, dim=-1).mean().item()
    # measured: 0.30 against -0.01 (docs/narrow_students.md)
    assert similarity["weight-selection"] > 0.2 > abs(similarity["random"]) + 0.1, similarity


def test_shaped_student_refuses_unknown_choices():
    student = init_student(tiny_teacher("roberta"))
    with pytest.raises(ValueError, match="student_init='copy'"):
        shaped_student(student, ShapeRequest(hidden=16), init="copy")
    with pytest.raises(ValueError, match="student_selection='largest'"):
        shaped_student(student, ShapeRequest(hidden=16), init="weight-selection", selection="largest")
