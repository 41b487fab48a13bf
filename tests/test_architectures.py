"""init_student on every supported architecture (tiny random teachers, tests/tiny_models.py, fed real
English text): keeping every layer reproduces the teacher; the half-depth student holds the kept teacher
layers' tensors and computes what those very layers compute inside the teacher (each kept layer keeps its
attention type, window, relative positions...); tying follows the teacher; the student saves, reloads
with AutoModelForMaskedLM and runs in pipeline("fill-mask")."""

import copy

import pytest
import torch
from transformers import AutoModelForMaskedLM, pipeline

from distilx.models import adapter_for, init_student
from distilx.models.builders import check_layers_match
from pipeline_helpers import english_batch, max_logit_diff
from tiny_models import AVAILABLE, hf_tokenizer, tiny_teacher

# (architecture, student_class): every architecture with the default student, and BERT's "same" option
CASES = [(name, "auto") for name in AVAILABLE] + [("bert", "same")]
IDS = [f"{name}-{cls}" for name, cls in CASES]


@pytest.fixture(scope="module")
def english(tokenizer_json, english_lines):
    return english_batch(tokenizer_json, english_lines)


def same_class(name, student_class):
    return name != "bert" or student_class == "same"


def teacher_with_only(teacher, layers):
    """The reference: the teacher itself with its layer stack cut down to the kept layer objects, in order —
    every kept block is the teacher's own module, carrying whatever its position gave it."""
    reference = copy.deepcopy(teacher)
    stack = adapter_for(reference).layers(reference)
    kept = [stack[i] for i in layers]
    del stack[len(kept):]
    for i, block in enumerate(kept):
        stack[i] = block
    reference.config.num_hidden_layers = len(layers)
    return reference.eval()


@pytest.mark.parametrize("name, student_class", CASES, ids=IDS)
def test_keeping_every_layer_reproduces_the_teacher(name, student_class, english):
    teacher = tiny_teacher(name)
    student = init_student(teacher, n_layers=4, student_class=student_class)
    assert (type(student) is type(teacher)) == same_class(name, student_class)
    assert max_logit_diff(teacher, student, *english) < 1e-4


@pytest.mark.parametrize("name, student_class", CASES, ids=IDS)
def test_the_half_depth_student_is_the_kept_layers(name, student_class, english):
    teacher = tiny_teacher(name)
    student = init_student(teacher, student_class=student_class).eval()
    layers = [0, 3]
    assert student.config.distilx_teacher_layers == layers
    t_stack, s_stack = adapter_for(teacher).layers(teacher), adapter_for(student).layers(student)
    assert len(s_stack) == student.config.num_hidden_layers == 2
    # it computes what the kept teacher layers compute, in the teacher, on real text
    assert max_logit_diff(teacher_with_only(teacher, layers), student, *english) < 1e-4
    if not same_class(name, student_class):
        return  # BERT -> DistilBERT: the tensor mapping is tests/test_student.py's
    # which teacher tensor went where: each student layer tensor is its teacher layer's, and no other layer's
    for i, t in enumerate(layers):
        t_state = t_stack[t].state_dict()
        other_states = [t_stack[j].state_dict() for j in range(len(t_stack)) if j != t]
        for key, value in s_stack[i].state_dict().items():
            assert torch.equal(value, t_state[key]), (i, key)
            # (tensors initialised alike in every layer, e.g. LayerNorm weights of ones, say nothing)
            distinct = [other[key] for other in other_states
                        if key in other and not torch.equal(other[key], t_state[key])]
            assert not any(torch.equal(value, other) for other in distinct)
    stack_prefix = next(n for n, m in student.named_modules() if m is s_stack) + "."
    t_state = teacher.state_dict()
    for key, value in student.state_dict().items():
        if not key.startswith(stack_prefix):
            assert torch.equal(value, t_state[key]), key  # embeddings, final norms, relative positions, head


@pytest.mark.parametrize("name, student_class", CASES, ids=IDS)
def test_tying_follows_the_teacher(name, student_class):
    for tie in (True, False):
        teacher = tiny_teacher(name, tie_word_embeddings=tie)
        t_adapter = adapter_for(teacher)
        tied = t_adapter.decoder(teacher)[0] is teacher.get_input_embeddings().weight
        student = init_student(teacher, student_class=student_class)
        s_tied = adapter_for(student).decoder(student)[0] is student.get_input_embeddings().weight
        assert s_tied == tied
        assert torch.equal(adapter_for(student).decoder(student)[0], t_adapter.decoder(teacher)[0])


@pytest.mark.parametrize("name, student_class", CASES, ids=IDS)
def test_the_student_saves_reloads_and_fills_masks(name, student_class, tmp_path):
    student = init_student(tiny_teacher(name), student_class=student_class).eval()
    student.save_pretrained(tmp_path)
    tokenizer = hf_tokenizer()
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    assert type(loaded) is type(student)
    text = "the capital of france is [MASK], and the capital of spain is madrid."
    inputs = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        logits = student(**inputs).logits
        assert torch.equal(loaded(**inputs).logits, logits)
    position = inputs["input_ids"][0].tolist().index(tokenizer.mask_token_id)
    expected = logits[0, position].softmax(-1).topk(5)
    got = pipeline("fill-mask", model=str(tmp_path), device="cpu")(text)
    assert [p["token"] for p in got] == expected.indices.tolist()
    assert [p["score"] for p in got] == pytest.approx(expected.values.tolist(), rel=1e-4)


def test_modernbert_layers_keep_their_attention_type_and_window(english):
    teacher = tiny_teacher("modernbert")  # global attention at layers 0 and 3, a 4-token window elsewhere
    assert teacher.config.layer_types == ["full_attention", "sliding_attention", "sliding_attention", "full_attention"]
    student = init_student(teacher, layers=[0, 1, 3]).eval()
    assert student.config.layer_types == ["full_attention", "sliding_attention", "full_attention"]
    assert student.config.local_attention == teacher.config.local_attention
    windows = [block.attn.sliding_window for block in student.model.layers]
    assert windows == [teacher.model.layers[i].attn.sliding_window for i in (0, 1, 3)] and windows[1] is not None
    assert max_logit_diff(teacher_with_only(teacher, [0, 1, 3]), student, *english) < 1e-4
    # a period-derived pattern (global every 3rd layer of the student) would make student layer 2 local:
    # the layer check refuses such a student, and its logits would differ (the window matters here)
    naive = copy.deepcopy(student.config)
    naive.layer_types = ["full_attention", "sliding_attention", "sliding_attention"]
    periodic = type(student)(naive).eval()
    periodic.load_state_dict(student.state_dict())
    with pytest.raises(ValueError, match="student layer 2 would not compute what teacher layer 3 computes"):
        check_layers_match(periodic.model.layers, teacher.model.layers, [0, 1, 3])
    assert max_logit_diff(student, periodic, *english) > 1e-3


@pytest.mark.parametrize("name, reason", [("modernbert", "no attention LayerNorm"),
                                          ("deberta-v2-legacy", r"convolution \(conv_kernel_size=3\)")])
def test_a_first_layer_built_differently_must_stay_first(name, reason, english):
    teacher = tiny_teacher(name)
    with pytest.raises(ValueError, match=f"layers=\\[1, 3\\]: the student must keep the teacher's layer 0 first: .*"
                                         f"{reason}"):
        init_student(teacher, layers=[1, 3])
    free = tiny_teacher("deberta-v2")  # no convolution: any layers may be kept
    assert max_logit_diff(teacher_with_only(free, [1, 3]), init_student(free, layers=[1, 3]), *english) < 1e-4


def test_a_bert_distilbert_cannot_mirror_gets_the_same_class_option(english):
    teacher = tiny_teacher("bert", hidden_act="silu")  # DistilBERT has gelu and relu only
    with pytest.raises(ValueError, match="hidden_act='silu'.*student_class='same' gives a shallower BERT"):
        init_student(teacher)
    assert max_logit_diff(teacher, init_student(teacher, n_layers=4, student_class="same"), *english) < 1e-4


@pytest.mark.parametrize("name", AVAILABLE)
def test_the_preflight_position_limit_is_what_the_model_can_embed(name):
    from distilx.preflight import usable_positions

    model = tiny_teacher(name)
    limit = usable_positions(model)
    with torch.no_grad():
        model(input_ids=torch.full((1, limit), 2000))
        if isinstance(getattr(adapter_for(model).embeddings(model), "position_embeddings", None), torch.nn.Embedding):
            with pytest.raises((IndexError, RuntimeError)):  # one more token runs off the position table
                model(input_ids=torch.full((1, limit + 1), 2000))
        else:  # rotary / relative positions: held to the length the model was built for
            assert limit == model.config.max_position_embeddings


@pytest.mark.parametrize("name", AVAILABLE)
def test_the_fused_loss_reads_each_head_like_the_logits_path(name, english):
    """The training step's two paths through the adapter (fused-linear: head_transform + decoder chunk by
    chunk; off: explicit logits) agree on every head layout: ELECTRA's narrow projection input, EuroBERT's
    bias-free projection, DeBERTa's word-embedding decoder, the generic heads."""
    from distilx.tasks.masked_lm import MaskedLMDistiller, teacher_side

    teacher = tiny_teacher(name)
    student = init_student(teacher).eval()  # no dropout: both paths see the same activations
    ids, mask = english
    rows = (torch.rand(ids.shape, generator=torch.Generator().manual_seed(0)) < 0.3) & mask.bool()
    side = teacher_side(teacher, ids, mask, rows)
    results = {}
    for mode in ("off", "on"):
        student.zero_grad(set_to_none=True)
        out = MaskedLMDistiller(student, dict(kl_on="targets"), mode)(ids, mask, rows, ids[rows], side)
        out.loss.backward()
        grads = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
        results[mode] = out.loss.item(), grads
    (off_loss, off_grads), (on_loss, on_grads) = results["off"], results["on"]
    assert on_loss == pytest.approx(off_loss, rel=1e-5) and off_loss > 0
    assert on_grads.keys() == off_grads.keys()
    for key, grad in off_grads.items():
        torch.testing.assert_close(on_grads[key], grad, rtol=1e-4, atol=1e-6, msg=key)
