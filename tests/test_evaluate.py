"""evaluate(): metrics checked against a plain recomputation from full model logits."""

import math

import pytest
import torch

from distilx.data import MaskedLMStream, Tokenizer
from distilx.evaluation import evaluate
from distilx.models import init_student, load_teacher
from pipeline_helpers import corpus_slice, make_tiny_teacher


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    teacher_dir = make_tiny_teacher(root / "teacher")
    _, heldout = corpus_slice(root)
    teacher = load_teacher(teacher_dir)
    torch.manual_seed(5)
    student = init_student(teacher, n_layers=2).eval()
    with torch.no_grad():  # move the student away from the teacher so the metrics differ
        for p in student.distilbert.transformer.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return teacher_dir, teacher, student, heldout


def plain_metrics(teacher, student, heldout, tokenizer, batches):
    stream = MaskedLMStream([str(heldout)], tokenizer, seq_len=48, batch_size=8, masking="uniform", seed=11)
    n = t_ok = s_ok = agree = 0
    t_nll = s_nll = 0.0
    with torch.no_grad():
        for _, b in zip(range(batches), stream):
            t = teacher(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            s = student(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
            rows = b["labels"] != -100
            y, t, s = b["labels"][rows], t[rows].double(), s[rows].double()
            n += y.numel()
            t_ok += (t.argmax(-1) == y).sum().item()
            s_ok += (s.argmax(-1) == y).sum().item()
            agree += (t.argmax(-1) == s.argmax(-1)).sum().item()
            t_nll -= t.log_softmax(-1).gather(1, y[:, None]).sum().item()
            s_nll -= s.log_softmax(-1).gather(1, y[:, None]).sum().item()
    return n, t_ok / n, s_ok / n, agree / n, math.exp(t_nll / n), math.exp(s_nll / n)


@pytest.mark.parametrize("chunk_rows", [None, 7])
def test_metrics_match_a_plain_recomputation(models, monkeypatch, chunk_rows):
    """chunk_rows=7: the head is projected a few rows at a time (how a 250k vocabulary is evaluated)."""
    teacher_dir, teacher, student, heldout = models
    if chunk_rows is not None:
        import distilx.losses.fused_linear as fl
        monkeypatch.setitem(fl.CHUNK_BUDGET_BYTES, "cpu", chunk_rows * 30522 * 8)
    tokenizer = Tokenizer(str(teacher_dir))
    got = evaluate(teacher, student, [heldout], tokenizer, seq_len=48, batch_size=8, max_batches=4, seed=11)
    n, t_acc, s_acc, agree, t_ppl, s_ppl = plain_metrics(teacher, student, heldout, tokenizer, 4)
    assert got["targets"] == n > 0
    assert got["teacher_accuracy"] == pytest.approx(t_acc, abs=1e-9)
    assert got["student_accuracy"] == pytest.approx(s_acc, abs=1e-9)
    assert got["top1_agreement"] == pytest.approx(agree, abs=1e-9) and agree < 1.0
    assert got["teacher_perplexity"] == pytest.approx(t_ppl, rel=1e-4)
    assert got["student_perplexity"] == pytest.approx(s_ppl, rel=1e-4)
    assert got["teacher_params"] == sum(p.numel() for p in teacher.parameters())
    assert got["student_params"] == sum(p.numel() for p in student.parameters()) < got["teacher_params"]
    assert got["speed_ratio"] > 0 and got["speedup"] == pytest.approx(1 / got["speed_ratio"])


def test_a_model_agrees_with_itself_and_folders_load(models, tmp_path):
    teacher_dir, teacher, student, heldout = models
    student.save_pretrained(tmp_path)
    got = evaluate(teacher_dir, tmp_path, heldout, teacher_dir, seq_len=48, batch_size=8, max_batches=2, seed=3)
    import distilx
    import distilx.evaluation  # importing the submodule must not shadow the public function
    same = distilx.evaluate(teacher_dir, teacher_dir, heldout, seq_len=48, batch_size=8, max_batches=2, seed=3)
    assert same["top1_agreement"] == 1.0 and same["teacher_accuracy"] == same["student_accuracy"]
    assert got["teacher_accuracy"] == same["teacher_accuracy"]  # same seed, same masks


def test_empty_heldout_is_a_clear_error(models, tmp_path):
    teacher_dir, teacher, student, _ = models
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(ValueError):
        evaluate(teacher, student, [empty], Tokenizer(str(teacher_dir)), seq_len=48, batch_size=8)
