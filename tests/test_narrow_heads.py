"""Narrower students of the fine-tuned heads of token classification and question answering (issues 19 and
20): weight selection keeping every unit reproduces the teacher's token / start-end logits; a narrower one's
head is the teacher's head at the kept hidden units (this file's own index arithmetic: evenly spaced units);
`distilx train` distils a narrower student of a tiny token-classification and QA teacher with the relation and
projected hidden-state terms on, and the student loads with AutoModelFor… at its new width."""

import json

import pytest
import torch
import transformers
from transformers import AutoModelForQuestionAnswering, AutoModelForTokenClassification

from distilx.cli import main
from distilx.models.question_answering import init_qa_student
from distilx.models.token_classification import init_token_classifier_student
from qa_helpers import span_records, tiny_qa_teacher, wiki_texts, write_jsonl, write_squad_json
from test_token_classification import TAGS, conll_slice, make_tiny_token_classifier
from tiny_models import ARCHITECTURES, CLS, MASK, PAD, SEP, VOCAB, declared_ids

# (init function, class suffix, the head's output projection: ModernBERT's QA head calls it "classifier");
# task students are the teacher's own class, and EuroBERT has no QA class
HEADS = {"token": (init_token_classifier_student, "ForTokenClassification", "classifier.weight"),
         "qa": (init_qa_student, "ForQuestionAnswering", "qa_outputs.weight")}
NAMES = ["bert", "roberta", "deberta-v2", "modernbert", "distilbert"]
NARROW = ["--student-hidden", "16", "--student-intermediate", "32", "--student-init", "weight-selection",
          "--alpha-cos", "0", "--alpha-relation", "1", "--relation-heads", "4", "--alpha-hidden", "1"]


def tiny_head_model(name: str, head: str) -> torch.nn.Module:
    model_class, config_class, kwargs = ARCHITECTURES[name]
    labels = dict(id2label=dict(enumerate(TAGS))) if head == "token" else {}
    config = getattr(transformers, config_class)(**kwargs, vocab_size=VOCAB, **declared_ids(name, PAD, CLS, SEP, MASK),
                                                 **labels)
    torch.manual_seed(0)
    model = getattr(transformers, model_class.replace("ForMaskedLM", HEADS[head][1]))(config).eval()
    with torch.no_grad():  # a head whose logits say something (transformers starts biases at 0)
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def logits(model, ids, mask):
    with torch.no_grad():
        out = model.eval()(input_ids=ids, attention_mask=mask)
    return out.logits if hasattr(out, "logits") else torch.stack([out.start_logits, out.end_logits], -1)


@pytest.mark.parametrize("head", list(HEADS))
@pytest.mark.parametrize("name", NAMES)
def test_head_students_narrow_by_weight_selection(name, head):
    init, _, out_key = HEADS[head]
    teacher = tiny_head_model(name, head)
    out_key = out_key if out_key in teacher.state_dict() else "classifier.weight"
    ids = torch.randint(5, 30000, (3, 20), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    ids[1, 12:] = PAD
    shape = dict(hidden=32, heads=2, intermediate=48)
    same = init(teacher, n_layers=4, init="weight-selection", **shape)
    expected = logits(teacher, ids, mask)
    assert expected.abs().max() > 0.05
    assert (logits(same, ids, mask) - expected)[mask.bool()].abs().max() < 1e-5
    narrow = init(teacher, n_layers=2, hidden=16, intermediate=24, init="weight-selection")
    assert type(narrow) is type(teacher) and narrow.config.distilx_teacher_layers == [0, 3]
    kept = [j * 32 // 16 for j in range(16)]  # the uniform choice: unit floor(j * 32 / 16)
    assert torch.equal(narrow.state_dict()[out_key], teacher.state_dict()[out_key][:, kept])
    got = logits(narrow, ids, mask)
    assert got.shape == expected.shape and torch.isfinite(got).all()


def metric_lines(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def check_narrow_run(run_dir, auto_class, teacher_hidden=32):
    lines = metric_lines(run_dir)
    assert len(lines) == 4 and all(r["rel"] > 0 and r["hid"] > 0 for r in lines)
    student, info = auto_class.from_pretrained(run_dir, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    assert (student.config.hidden_size, student.config.num_hidden_layers) == (16, 2) != (teacher_hidden, 2)
    assert not any("projection" in k for k in student.state_dict())
    return student


def test_token_classification_narrow_student_trains(tmp_path, capsys):
    teacher = make_tiny_token_classifier(tmp_path / "teacher")
    train_file, heldout = conll_slice(tmp_path / "train.conll", 40), conll_slice(tmp_path / "dev.conll", 12, skip=200)
    assert main(["train", "--task", "token-classification", "--teacher", str(teacher), "--train-files", str(train_file),
                 "--eval-files", str(heldout), "--student-layers", "2", "--seq-len", "64", "--batch-size", "8",
                 "--max-steps", "4", "--log-every", "1", "--eval-batches", "1", "--device", "cpu", "--progress", "false",
                 "--tensorboard", "false", "--output-dir", str(tmp_path / "run"), *NARROW]) == 0
    assert "entity F1" in capsys.readouterr().out
    student = check_narrow_run(tmp_path / "run", AutoModelForTokenClassification)
    assert student.config.id2label == {i: t for i, t in enumerate(TAGS)}
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["eval"]["student_hidden"] == 16


def test_question_answering_narrow_student_trains(tmp_path, capsys):
    teacher = tiny_qa_teacher(tmp_path / "teacher", scale=20.0)
    train_file = write_jsonl(tmp_path / "train.jsonl", span_records(wiki_texts(6), 3))
    heldout = write_squad_json(tmp_path / "dev.json", span_records(wiki_texts(8)[6:], 2, seed=5))
    assert main(["train", "--task", "question-answering", "--teacher", str(teacher), "--train-files", str(train_file),
                 "--eval-files", str(heldout), "--student-layers", "2", "--seq-len", "64", "--doc-stride", "16",
                 "--max-query-len", "32", "--batch-size", "8", "--max-steps", "4", "--log-every", "1",
                 "--eval-batches", "1", "--device", "cpu", "--progress", "false", "--tensorboard", "false",
                 "--output-dir", str(tmp_path / "run"), *NARROW]) == 0
    assert "F1 retention" in capsys.readouterr().out
    check_narrow_run(tmp_path / "run", AutoModelForQuestionAnswering)
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())["eval"]["student_hidden"] == 16


def test_check_pair_takes_a_narrower_student_of_the_same_vocabulary(tmp_path):
    """DistillationTrainer's checks (trainer.check_pair: head, labels, widths for the cosine, the vocabulary
    from the folders and the tokenizer) accept a narrower student that keeps the vocabulary; the cosine term
    alone is refused, naming the widths."""
    from transformers import AutoTokenizer

    from distilx.models.token_classification import load_token_classifier
    from distilx.trainer import check_pair

    folder = make_tiny_token_classifier(tmp_path / "teacher")
    teacher = load_token_classifier(folder)
    student = init_token_classifier_student(teacher, n_layers=2, hidden=16, init="weight-selection")
    student.save_pretrained(tmp_path / "student")
    AutoTokenizer.from_pretrained(folder).save_pretrained(tmp_path / "student")
    student = AutoModelForTokenClassification.from_pretrained(tmp_path / "student")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    for processing_class in (tokenizer, None):  # with the tokenizer, and by embedding counts without one
        check_pair(teacher, student, processing_class, alpha_cos=0.0)
    with pytest.raises(ValueError, match="the teacher's are 32 wide and the student's 16"):
        check_pair(teacher, student, tokenizer, alpha_cos=1.0)
