"""The loss terms that bridge widths (tasks/width_terms.py) and their Q/K/V access (models/attention_access.py):
the captured projections are each layer's own, computed here by hand from its input; the projected hidden-state
term is a plain PyTorch transcription; the bridge adds exactly those terms to the task's loss; bad settings are
refused before a step; `distilx train` distils a narrower student with relations on (masked-lm and
classification), resumes bit-exactly, keeps the learned projection in checkpoints but out of the student's
folder, and `distilx eval` reports the student's shape."""

import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification, pipeline

from distilx import TrainConfig, train
from distilx.checkpoint import latest_checkpoint, load_checkpoint
from distilx.cli import main
from distilx.losses import relation_distillation_loss
from distilx.models import adapter_for, init_student
from distilx.models.attention_access import AttentionTap
from distilx.tasks.masked_lm import MaskedLMDistiller, teacher_side
from distilx.tasks.width_terms import WidthBridge, hidden_projection_loss
from pipeline_helpers import (classification_config, corpus_slice, english_batch, kernel_doc_slice,
                              make_tiny_classifier, make_tiny_teacher, run_config)
from tiny_models import AVAILABLE, tiny_teacher

TABLE = [name for name in AVAILABLE if name not in ("mpnet", "roformer")]


@pytest.fixture(scope="module")
def english(tokenizer_json, english_lines):
    return english_batch(tokenizer_json, english_lines)


def hook_count(model) -> int:
    return sum(len(m._forward_hooks) for m in model.modules())


def manual_qkv(model, name, layer, ids, mask):
    """Q, K, V of `layer` by hand: the layer's input (output_hidden_states[layer]), its pre-attention norm where
    it has one, then F.linear with the projections' weights; GQA's K/V given to each query head of its group."""
    with torch.no_grad():
        x = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[layer]
        block = adapter_for(model).layers(model)[layer]
        if name == "modernbert":
            q, k, v = F.linear(block.attn_norm(x), block.attn.Wqkv.weight, block.attn.Wqkv.bias).chunk(3, -1)
            return q, k, v
        if name == "eurobert":
            attn, x = block.self_attn, block.input_layernorm(x)
            q, k, v = (F.linear(x, m.weight, m.bias) for m in (attn.q_proj, attn.k_proj, attn.v_proj))
            d, group = attn.head_dim, attn.num_key_value_groups
            heads = q.shape[-1] // d
            k, v = (torch.cat([t[..., (h // group) * d:(h // group + 1) * d] for h in range(heads)], -1) for t in (k, v))
            return q, k, v
        if name == "distilbert":
            mods = block.attention.q_lin, block.attention.k_lin, block.attention.v_lin
        elif name.startswith("deberta"):
            a = block.attention.self
            mods = a.query_proj, a.key_proj, a.value_proj
        else:
            a = block.attention.self
            mods = a.query, a.key, a.value
        return tuple(F.linear(x, m.weight, m.bias) for m in mods)


@pytest.mark.parametrize("name", TABLE)
def test_captured_qkv_is_the_layers_own_projection(name, english):
    overrides = dict(num_attention_heads=4, num_key_value_heads=2) if name == "eurobert" else {}  # groups of 2
    model = tiny_teacher(name, **overrides).eval()
    ids, mask = english
    manual_qkv(model, name, 0, ids, mask)  # transformers adds hooks of its own at the first output_hidden_states
    hooks = hook_count(model)
    for layer in (1, -1):
        tap = AttentionTap(model, layer)
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask)
        got = tap.qkv()
        tap.remove()
        expected = manual_qkv(model, name, layer % 4, ids, mask)
        for a, b in zip(got, expected):
            assert a.shape == b.shape == (*ids.shape, 32)
            torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    assert hook_count(model) == hooks  # remove() took every hook of ours off


def test_the_projected_hidden_term_is_the_plain_formula():
    g = torch.Generator().manual_seed(0)
    student = torch.randn(9, 6, dtype=torch.float64, generator=g, requires_grad=True)
    teacher = torch.randn(9, 10, dtype=torch.float64, generator=g, requires_grad=True)
    projection = torch.nn.Linear(6, 10).double()
    for kind in ("mse", "cosine"):
        got = hidden_projection_loss(student, teacher, projection, kind)
        p = student @ projection.weight.T + projection.bias
        if kind == "mse":
            expected = ((p - teacher.detach()) ** 2).sum() / (9 * 10)
        else:
            expected = (1 - (p * teacher.detach()).sum(-1) / (p.norm(dim=-1) * teacher.detach().norm(dim=-1))).mean()
        grads = torch.autograd.grad(got, [student, projection.weight, projection.bias])
        want = torch.autograd.grad(expected, [student, projection.weight, projection.bias])
        assert got.dtype == torch.float64
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)
        for a, b in zip(grads, want):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        assert teacher.grad is None
    empty = hidden_projection_loss(student[:0], teacher[:0], projection, "mse")
    assert empty.item() == 0.0


def bridge_config(**kw):
    return TrainConfig(alpha_cos=0.0, **kw)


def test_the_bridge_adds_relations_and_the_projected_term(english):
    teacher = tiny_teacher("bert").eval()  # 4 layers, 32 wide, 2 heads of 16
    student = init_student(teacher, n_layers=2, hidden=16, intermediate=24, init="weight-selection").eval()
    config = bridge_config(alpha_relation=2.0, relation_teacher_layer=1, relation_heads=4, alpha_hidden=0.5)
    ids, mask = english
    rows = (torch.rand(ids.shape, generator=torch.Generator().manual_seed(0)) < 0.3) & mask.bool()
    options = dict(kl_on="targets", alpha_cos=0.0)
    for model in (teacher, student):  # transformers adds hooks of its own at the first output_hidden_states
        model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    hooks = hook_count(teacher), hook_count(student)
    bridge = WidthBridge(MaskedLMDistiller(student, options), config, teacher, student)
    assert hook_count(teacher) > hooks[0] and hook_count(student) > hooks[1]
    out = bridge(ids, mask, rows, ids[rows], teacher_side(teacher, ids, mask, rows))
    bridge.remove_hooks()
    inner = MaskedLMDistiller(student, options)(ids, mask, rows, ids[rows], teacher_side(teacher, ids, mask, rows))
    relation = relation_distillation_loss(*manual_qkv(student, "distilbert", 1, ids, mask),
                                          *manual_qkv(teacher, "bert", 1, ids, mask), mask, relation_heads=4).loss
    with torch.no_grad():
        s_last = student(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        t_last = teacher(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states[-1]
        p = bridge.projection(s_last[mask.bool()])
        hid = ((p - t_last[mask.bool()]) ** 2).mean()
    torch.testing.assert_close(out.rel, relation, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out.hid, hid, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out.loss.detach(), inner.loss + 2.0 * relation + 0.5 * hid, rtol=1e-5, atol=1e-6)
    assert out.rel > 0 and out.hid > 0
    out.loss.backward()
    assert bridge.projection.weight.grad.abs().sum() > 0
    assert student.distilbert.transformer.layer[1].attention.q_lin.weight.grad.abs().sum() > 0  # via the relations
    assert (hook_count(teacher), hook_count(student)) == hooks


def test_width_settings_are_refused_before_a_step():
    teacher = tiny_teacher("bert")
    student = init_student(teacher, n_layers=2, hidden=16, init="weight-selection")
    forward = MaskedLMDistiller(student, {})
    cases = [(dict(alpha_relation=1.0, relation_heads=3), "relation_heads=3 must divide both models' attention "
                                                          "widths (the teacher's 32, the student's 16)"),
             (dict(alpha_relation=1.0, relation_teacher_layer=4), "layer 4 is outside BertForMaskedLM's 4 layers"),
             (dict(alpha_relation=1.0, relation_teacher_layer=-5), "layer -5 is outside")]
    for settings, message in cases:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            WidthBridge(forward, bridge_config(**settings), teacher, student)
    generic = tiny_teacher("mpnet")
    with pytest.raises(ValueError, match="does not know where MPNetForMaskedLM keeps its attention's Q/K/V"):
        WidthBridge(forward, bridge_config(alpha_relation=1.0), generic, init_student(generic))


# --- whole runs through the command line ------------------------------------------------------------------

NARROW = ["--student-hidden", "16", "--student-intermediate", "32", "--student-init", "weight-selection",
          "--alpha-cos", "0", "--alpha-relation", "1", "--relation-heads", "4", "--alpha-hidden", "1",
          "--hidden-loss", "cosine"]


def cli_args(config: TrainConfig) -> list[str]:
    args = ["train"]
    for key, value in config.to_dict().items():
        if value == getattr(TrainConfig(), key) or key == "output_dir":
            continue
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value).lower() if isinstance(value, bool) \
            else str(value)
        args += [f"--{key.replace('_', '-')}", text]
    return args + ["--output-dir", config.output_dir]


def lines(run_dir):
    return [{k: v for k, v in json.loads(line).items() if k not in ("tokens_per_s", "data_wait_share")}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def check_narrow_run(base: TrainConfig, tmp_path, auto_class, capsys):
    """`distilx train` uninterrupted, and interrupted at step 4 then resumed by `distilx train --resume`:
    identical per-step terms (rel and hid included) and weights; the projection rides in the checkpoints."""
    full, cut = base.override({"output_dir": str(tmp_path / "full")}), base.override({"output_dir": str(tmp_path / "cut")})
    assert main(cli_args(full) + NARROW) == 0
    narrow = full.override(dict(zip([a[2:].replace("-", "_") for a in NARROW[::2]], NARROW[1::2])))
    train(narrow.override({"output_dir": str(tmp_path / "cut")}), stop_after=4)
    assert main(cli_args(cut) + NARROW + ["--resume"]) == 0
    assert "resuming from step 3" in capsys.readouterr().out
    run, resumed = lines(tmp_path / "full"), lines(tmp_path / "cut")
    assert run == resumed and len(run) == 6 and all(r["rel"] > 0 and r["hid"] > 0 for r in run)
    _, state = load_checkpoint(latest_checkpoint(tmp_path / "full" / "checkpoints"))
    _, other = load_checkpoint(latest_checkpoint(tmp_path / "cut" / "checkpoints"))
    assert state["projection"]["weight"].shape == (32, 16)
    assert torch.equal(state["projection"]["weight"], other["projection"]["weight"])
    student, info = auto_class.from_pretrained(tmp_path / "full", output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert student.config.hidden_size == 16 and not any("projection" in k for k in student.state_dict())
    cut_student = auto_class.from_pretrained(tmp_path / "cut")
    for (key, a), b in zip(student.state_dict().items(), cut_student.state_dict().values()):
        assert torch.equal(a, b), key
    return narrow


@pytest.mark.slow
def test_masked_lm_narrow_student_with_relations_trains_resumes_and_evaluates(tmp_path, capsys):
    teacher = make_tiny_teacher(tmp_path / "teacher")
    train_file, heldout_file = corpus_slice(tmp_path, every=80)
    base = run_config(teacher, train_file, heldout_file, tmp_path / "x", eval_batches=0)
    narrow = check_narrow_run(base, tmp_path, AutoModelForMaskedLM, capsys)
    # a resume that changes a width setting is refused with the difference named (the run identity)
    with pytest.raises(ValueError, match="alpha_relation: 1.0 in the checkpoint, 2.0 now"):
        train(narrow.override({"output_dir": str(tmp_path / "cut"), "resume": True, "alpha_relation": 2.0,
                               "max_steps": 8}))
    assert main(["eval", "--teacher", str(teacher), "--student", str(tmp_path / "full"), "--files", str(heldout_file),
                 "--seq-len", "48", "--batch-size", "4", "--max-batches", "2"]) == 0
    out = capsys.readouterr().out  # the table, then the JSON
    assert "shape (hidden / heads / FFN)" in out[:out.index("\n{")] and "16 / 1 / 32" in out[:out.index("\n{")]
    metrics = json.loads(out[out.index("\n{") + 1:])
    assert (metrics["student_hidden"], metrics["student_heads"], metrics["student_intermediate"]) == (16, 1, 32)
    assert (metrics["teacher_hidden"], metrics["student_layers"]) == (32, 2) and metrics["speedup"] > 0
    student = AutoModelForMaskedLM.from_pretrained(tmp_path / "full")
    assert metrics["student_params"] == sum(p.numel() for p in student.parameters()) < metrics["teacher_params"]
    assert len(pipeline("fill-mask", model=str(tmp_path / "full"), device="cpu")("the cat sat on the [MASK].")) == 5


@pytest.mark.slow
def test_classification_narrow_student_with_relations_trains_resumes_and_evaluates(tmp_path, capsys):
    labels, train_file, heldout_file = kernel_doc_slice(tmp_path, every=100)
    teacher = make_tiny_classifier(tmp_path / "teacher", labels)
    base = classification_config(teacher, train_file, heldout_file, tmp_path / "x", eval_batches=0)
    check_narrow_run(base, tmp_path, AutoModelForSequenceClassification, capsys)
    assert main(["eval", "--task", "sequence-classification", "--teacher", str(teacher), "--student",
                 str(tmp_path / "full"), "--files", str(heldout_file), "--seq-len", "48", "--max-batches", "2"]) == 0
    out = capsys.readouterr().out
    assert "shape (hidden / heads / FFN)" in out and "32 / 2 / 64" in out and "16 / 1 / 32" in out
    got = pipeline("text-classification", model=str(tmp_path / "full"), device="cpu")("the scheduler runs tasks")
    assert got[0]["label"] in labels


def test_a_narrow_student_with_the_plain_cosine_is_refused_before_a_step(tmp_path, capsys):
    teacher = make_tiny_teacher(tmp_path / "teacher")
    train_file, heldout_file = corpus_slice(tmp_path, every=200)
    config = run_config(teacher, train_file, heldout_file, tmp_path / "run", eval_batches=0)
    capsys.readouterr()
    assert main(cli_args(config) + ["--student-hidden", "16", "--student-init", "weight-selection"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("distilx train: error: alpha_cos=1.0 compares hidden states, but the teacher's "
                          "are 32 wide and the student's 16")
    assert "--alpha-hidden" in err and len(err.strip().splitlines()) == 1
    assert main(cli_args(config) + ["--student-hidden", "16", "--alpha-cos", "0"]) == 2
    assert "student_init='teacher' copies the teacher's layers whole" in capsys.readouterr().err
    assert main(cli_args(config) + ["--student-selection", "importance"]) == 2
    assert "applies only with --student-init weight-selection" in capsys.readouterr().err
