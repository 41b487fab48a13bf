"""Multi-label and regression sequence classification (issue 19): their losses against plain PyTorch and
float64 gradcheck, labels in files, students that reproduce the teacher, metrics against independent
computations, runs through the CLI (exact resume, pipeline()), and DistillationTrainer on both heads."""

import json
import math
import re
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification,
                          pipeline)

from distilx import TrainConfig, assets, evaluate_classification, init_classifier_student, train
from distilx.cli import main
from distilx.losses import head_distillation_loss, multi_label_distillation_loss, regression_distillation_loss
from distilx.losses.heads import MULTI_LABEL, REGRESSION, TOKENS
from distilx.models.classification import load_classifier
from distilx.tasks.labelled_data import LabelSet, read_examples
from pipeline_helpers import TOKENIZER_FILES, kernel_doc_slice

TOPICS = ("drivers", "memory", "network", "security")


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------- the losses


def plain_multi_label(s, t, y, hs, ht, temperature, alpha_kl, alpha_mlm, alpha_cos):
    """The per-label binary KL at T (× T²) + BCE + cosine, written with explicit probabilities."""
    p_t, p_s = torch.sigmoid(t / temperature), torch.sigmoid(s / temperature)
    kl = (p_t * torch.log(p_t / p_s) + (1 - p_t) * torch.log((1 - p_t) / (1 - p_s))).mean() * temperature ** 2
    q = torch.sigmoid(s)
    bce = -(y * torch.log(q) + (1 - y) * torch.log(1 - q)).mean()
    cos = (1 - (hs * ht).sum(-1) / (hs.norm(dim=-1) * ht.norm(dim=-1))).mean()
    return alpha_kl * kl + alpha_mlm * bce + alpha_cos * cos, kl, bce, cos


def plain_regression(s, t, y, hs, ht, alpha_kl, alpha_mlm, alpha_cos):
    to_teacher, to_gold = ((s - t) ** 2).mean(), ((s - y) ** 2).mean()
    cos = (1 - (hs * ht).sum(-1) / (hs.norm(dim=-1) * ht.norm(dim=-1))).mean()
    return alpha_kl * to_teacher + alpha_mlm * to_gold + alpha_cos * cos, to_teacher, to_gold, cos


def tensors(seed, shape, hidden=(7, 5)):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(shape, generator=g, dtype=torch.float64) * 3, torch.randn(shape, generator=g, dtype=torch.float64) * 3,
            torch.randn(hidden, generator=g, dtype=torch.float64), torch.randn(hidden, generator=g, dtype=torch.float64))


def test_multi_label_loss_is_the_plain_formula_and_its_gradient_checks():
    s, t, hs, ht = tensors(0, (6, 4))
    y = (torch.rand(6, 4, generator=torch.Generator().manual_seed(1)) > 0.5).double()
    weights = dict(temperature=2.5, alpha_kl=0.7, alpha_mlm=1.3, alpha_cos=0.4)
    out = multi_label_distillation_loss(s, t, y, hs, ht, **weights)
    expected = plain_multi_label(s, t, y, hs, ht, *weights.values())
    for got, want in zip(out, expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    assert min(expected[1:]) > 0.05
    # float64 gradcheck through every term, the teacher a constant
    s_, hs_ = s.clone().requires_grad_(), hs.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: multi_label_distillation_loss(a, t, y, b, ht, **weights).loss, (s_, hs_))
    # large logits stay finite (log-sigmoid forms), the teacher gets no gradient, an empty batch gives 0
    s_grad, t_grad = s.clone().requires_grad_(), t.clone().requires_grad_()
    big = multi_label_distillation_loss(s_grad * 100, t_grad * 100, y, **weights)
    big.loss.backward()
    assert torch.isfinite(big.loss) and torch.isfinite(s_grad.grad).all() and t_grad.grad is None
    assert multi_label_distillation_loss(s[:0], t[:0], y[:0], **weights).loss == 0
    with pytest.raises(ValueError, match=r"must all be \[B, C\]"):
        multi_label_distillation_loss(s, t, y[:, :2])
    with pytest.raises(TypeError, match="labels must be a floating-point"):
        multi_label_distillation_loss(s, t, y.long())


def test_regression_loss_is_the_plain_formula_and_its_gradient_checks():
    s, t, hs, ht = tensors(2, (6, 1))
    y = torch.randn(6, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    weights = dict(alpha_kl=0.7, alpha_mlm=1.3, alpha_cos=0.4)
    out = regression_distillation_loss(s, t, y, hs, ht, **weights)
    expected = plain_regression(s[:, 0], t[:, 0], y, hs, ht, *weights.values())
    for got, want in zip(out, expected):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    s_, hs_ = s.clone().requires_grad_(), hs.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: regression_distillation_loss(a, t, y, b, ht, **weights).loss, (s_, hs_))
    with pytest.raises(ValueError, match="one output per example"):
        regression_distillation_loss(torch.zeros(6, 2), torch.zeros(6, 2), torch.zeros(6))


def test_head_loss_dispatch():
    s, t, _, _ = tensors(4, (2, 5, 3))
    labels = torch.tensor([[-100, 2, -100, 0, 1], [-100, 1, 1, -100, -100]])
    options = dict(temperature=2.0, alpha_kl=1.0, alpha_mlm=1.0, alpha_cos=0.0, backend="torch")
    out = head_distillation_loss(TOKENS, s, t, labels, torch.ones(2, 5), **options)
    rows = labels != -100
    p_t = torch.softmax(t[rows] / 2, -1)
    kl = (p_t * (p_t.log() - torch.log_softmax(s[rows] / 2, -1))).sum(-1).mean() * 4
    torch.testing.assert_close(out.kl.double(), kl, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(out.mlm.double(), F.cross_entropy(s[rows], labels[rows]), rtol=1e-6, atol=1e-8)
    with pytest.raises(ValueError, match="problem='other'"):
        head_distillation_loss("other", s, t, labels)


# ---------------------------------------------------------------- labels in files


def test_multi_label_and_regression_labels_in_jsonl_and_csv(tmp_path):
    multi = LabelSet(TOPICS, MULTI_LABEL)
    jsonl = write(tmp_path / "m.jsonl", '{"text": "a", "label": ["memory", 3]}\n{"text": "b", "label": []}\n')
    csv = write(tmp_path / "m.csv", 'text,label\nc,drivers|network\nd,\n')
    assert read_examples([jsonl, csv], ["text"], "label", multi)[1] == [[0, 1, 0, 1], [0, 0, 0, 0], [1, 0, 1, 0],
                                                                         [0, 0, 0, 0]]
    regression = LabelSet(("score",), REGRESSION)
    jsonl = write(tmp_path / "r.jsonl", '{"text": "a", "label": 0.25}\n{"text": "b", "label": -3}\n')
    csv = write(tmp_path / "r.csv", "text,label\nc,4.5e-1\n")
    assert read_examples([jsonl, csv], ["text"], "label", regression)[1] == [0.25, -3.0, 0.45]
    for labels, content, message in [
        (multi, '{"text": "a", "label": "memory"}\n', r"x.jsonl:1: label 'memory' is not a list: .*multi-label"),
        (multi, '{"text": "a", "label": ["disk"]}\n', r"x.jsonl:1: label 'disk' is not one the teacher knows"),
        (regression, '{"text": "a", "label": "high"}\n', r"x.jsonl:1: label 'high' is not a finite number"),
        (regression, '{"text": "a", "label": NaN}\n', r"x.jsonl:1: label nan is not a finite number"),
        (regression, '{"text": "a", "label": true}\n', r"x.jsonl:1: label True is not a finite number"),
    ]:
        with pytest.raises(ValueError, match=message):
            read_examples([write(tmp_path / "x.jsonl", content)], ["text"], "label", labels)
    with pytest.raises(ValueError, match=r"y.csv:3: label 'much' is not a finite number"):
        read_examples([write(tmp_path / "y.csv", "text,label\na,1\nb,much\n")], ["text"], "label", regression)


# ---------------------------------------------------------------- models


def minilm_head(problem, num_labels, seed=0):
    """all-MiniLM-L6-v2 (real weights) with a seeded head, scaled up so that its outputs say something."""
    torch.manual_seed(seed)
    names = TOPICS[:num_labels] if num_labels > 1 else ("score",)
    model = BertForSequenceClassification.from_pretrained(str(assets.minilm_dir()), problem_type=problem,
                                                          id2label=dict(enumerate(names))).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(30)
    return model


@pytest.mark.parametrize("problem, num_labels", [(MULTI_LABEL, 4), (REGRESSION, 1)])
def test_keeping_every_layer_reproduces_the_heads_on_minilm(problem, num_labels):
    teacher = minilm_head(problem, num_labels)
    student = init_classifier_student(teacher, layers=list(range(6))).eval()
    assert student.config.problem_type == problem
    lines = assets.kernel_doc_classification()["dev"].read_text().splitlines()[:6]
    tokenizer = AutoTokenizer.from_pretrained(str(assets.minilm_dir()))
    inputs = tokenizer([json.loads(line)["text"] for line in lines], truncation=True, max_length=48, padding=True,
                       return_tensors="pt")
    with torch.no_grad():
        expected, got = teacher(**inputs).logits, student(**inputs).logits
    assert expected.abs().max() > 0.05 and (got - expected).abs().max() < 1e-4


def test_problem_types_are_checked():
    small = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=48)
    init_classifier_student(BertForSequenceClassification(BertConfig(**small, num_labels=1)))  # regression, inferred
    for config, message in [(BertConfig(**small, num_labels=3, problem_type="regression"), "one output"),
                            (BertConfig(**small, num_labels=3, problem_type="ranking"), "problem types")]:
        with pytest.raises(ValueError, match=message):
            init_classifier_student(BertForSequenceClassification(config))


# ---------------------------------------------------------------- metrics


def test_multi_label_and_regression_metrics_equal_independent_computations(tmp_path):
    from sklearn.metrics import f1_score

    labels, train_file, _ = kernel_doc_slice(tmp_path, every=60)
    records = [json.loads(line) for line in train_file.read_text().splitlines()][:48]
    rng = np.random.default_rng(0)
    multi = write(tmp_path / "multi.jsonl", "".join(json.dumps({"text": r["text"], "label": [
        t for t in TOPICS if rng.random() < 0.4]}) + "\n" for r in records))
    values = rng.normal(size=len(records)).round(3)
    values[:4] = values[4]  # ties, for Spearman's averaged ranks
    scores = write(tmp_path / "scores.jsonl", "".join(json.dumps({"text": r["text"], "label": float(v)}) + "\n"
                                                      for r, v in zip(records, values)))
    for problem, num_labels, path in [(MULTI_LABEL, 4, multi), (REGRESSION, 1, scores)]:
        teacher = minilm_head(problem, num_labels, seed=1)
        student = init_classifier_student(teacher, n_layers=2).eval()
        metrics = evaluate_classification(teacher, student, path, assets.minilm_dir(), seq_len=48, batch_size=16,
                                          threshold=0.6)
        tokenizer = AutoTokenizer.from_pretrained(str(assets.minilm_dir()))
        texts = [json.loads(line)["text"] for line in path.read_text().splitlines()]
        for role, model in (("teacher", teacher), ("student", student)):
            with torch.no_grad():  # one example at a time: no padding
                out = torch.cat([model(**tokenizer(t, truncation=True, max_length=48, return_tensors="pt")).logits
                                 for t in texts]).numpy()
            if problem == MULTI_LABEL:
                gold = np.array([[t in json.loads(line)["label"] for t in TOPICS]
                                 for line in path.read_text().splitlines()])
                predicted = 1 / (1 + np.exp(-out)) >= 0.6
                present = np.flatnonzero(gold.any(0) | predicted.any(0))
                assert predicted.any() and not predicted.all()
                assert metrics[f"{role}_micro_f1"] == pytest.approx(f1_score(gold, predicted, average="micro"))
                assert metrics[f"{role}_macro_f1"] == pytest.approx(
                    f1_score(gold, predicted, average="macro", labels=present))
                assert metrics[f"{role}_subset_accuracy"] == pytest.approx((gold == predicted).all(1).mean())
            else:
                reference = pearson_spearman(out[:, 0], values)
                assert metrics[f"{role}_pearson"] == pytest.approx(reference[0], abs=1e-6)
                assert metrics[f"{role}_spearman"] == pytest.approx(reference[1], abs=1e-6)
                assert metrics[f"{role}_mse"] == pytest.approx(float(((out[:, 0] - values) ** 2).mean()), rel=1e-5)


def pearson_spearman(x, y):
    """scipy's when importable, else a transcription of the textbook formulas (ranks with ties averaged)."""
    try:
        from scipy.stats import pearsonr, spearmanr
        return pearsonr(x, y)[0], spearmanr(x, y)[0]
    except ImportError:
        def ranks(v):
            return np.array([np.mean([j + 1 for j, w in enumerate(sorted(v)) if w == a]) for a in v])

        def r(a, b):
            return float(np.sum((a - a.mean()) * (b - b.mean())) / math.sqrt(np.sum((a - a.mean()) ** 2) *
                                                                              np.sum((b - b.mean()) ** 2)))
        return r(np.asarray(x, float), np.asarray(y, float)), r(ranks(x), ranks(y))


# ---------------------------------------------------------------- runs


def head_folder(folder, problem, num_labels):
    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, problem_type=problem,
                        id2label=dict(enumerate(TOPICS[:num_labels])) if num_labels > 1 else {0: "score"})
    BertForSequenceClassification(config).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copyfile(assets.minilm_dir() / name, folder / name)
    return folder


@pytest.mark.parametrize("problem", [MULTI_LABEL, REGRESSION])
def test_cli_runs_resume_exactly_and_load_in_a_pipeline(tmp_path, problem, capsys):
    labels, train_file, heldout = kernel_doc_slice(tmp_path, every=40)
    rng = np.random.default_rng(1)

    def relabel(src, dst):
        records = [json.loads(line) for line in src.read_text().splitlines()]
        label = (lambda r: [t for t in TOPICS if rng.random() < 0.3]) if problem == MULTI_LABEL else \
            (lambda r: len(r["text"]) / 100)
        return write(dst, "".join(json.dumps({"text": r["text"], "label": label(r)}) + "\n" for r in records))

    train_file, heldout = relabel(train_file, tmp_path / "train.jsonl"), relabel(heldout, tmp_path / "heldout.jsonl")
    teacher = head_folder(tmp_path / "teacher", problem, 4 if problem == MULTI_LABEL else 1)
    flags = ["--task", "sequence-classification", "--teacher", str(teacher), "--train-files", str(train_file),
             "--eval-files", str(heldout), "--student-layers", "2", "--seq-len", "48", "--batch-size", "8",
             "--max-steps", "6", "--save-every", "3", "--log-every", "1", "--eval-batches", "2", "--seed", "7",
             "--device", "cpu", "--progress", "false", "--tensorboard", "false"]
    assert main(["train", *flags, "--output-dir", str(tmp_path / "full")]) == 0
    printed = capsys.readouterr().out
    assert ("micro-F1" if problem == MULTI_LABEL else "Spearman") in printed
    cut = TrainConfig.load(tmp_path / "full" / "train_config.json").override({"output_dir": str(tmp_path / "cut")})
    assert train(cut, stop_after=4).steps == 4
    assert main(["train", "--config", str(tmp_path / "cut" / "train_config.json"), "--resume"]) == 0
    lines = [[json.loads(x) for x in (tmp_path / run / "metrics.jsonl").read_text().splitlines()] for run in ("full", "cut")]
    assert [r["loss"] for r in lines[0]] == [r["loss"] for r in lines[1]] and len({r["loss"] for r in lines[0]}) > 1
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "full")
    assert model.config.problem_type == problem and model.config.num_hidden_layers == 2
    classify = pipeline("text-classification", model=str(tmp_path / "full"))
    assert classify("The page cache holds file data.")[0]["label"] in (*TOPICS, "score")
    capsys.readouterr()
    assert main(["eval", "--task", "sequence-classification", "--teacher", str(teacher), "--student",
                 str(tmp_path / "full"), "--files", str(heldout), "--seq-len", "48", "--threshold", "0.3"]) == 0
    metrics = json.loads("{" + capsys.readouterr().out.partition("\n{")[2])
    assert metrics["problem_type"] == problem
    if problem == MULTI_LABEL:
        assert metrics["threshold"] == 0.3


@pytest.mark.parametrize("problem", [MULTI_LABEL, REGRESSION])
def test_distillation_trainer_on_multi_label_and_regression_heads(tmp_path, problem):
    from transformers import DataCollatorWithPadding, TrainingArguments

    from distilx import DistillationTrainer

    num_labels = 4 if problem == MULTI_LABEL else 1
    teacher = load_classifier(head_folder(tmp_path / "teacher", problem, num_labels))
    student = init_classifier_student(teacher, n_layers=2)
    tokenizer = AutoTokenizer.from_pretrained(str(assets.minilm_dir()))
    lines = assets.kernel_doc_classification()["dev"].read_text().splitlines()[:16]
    g = torch.Generator().manual_seed(0)
    rows = []
    for line in lines:
        row = dict(tokenizer(json.loads(line)["text"], truncation=True, max_length=32))
        row["labels"] = ((torch.rand(4, generator=g) > 0.5).float().tolist() if problem == MULTI_LABEL
                         else float(torch.randn(1, generator=g)))
        rows.append(row)
    args = TrainingArguments(output_dir=str(tmp_path / "out"), per_device_train_batch_size=8, max_steps=2,
                             learning_rate=1e-3, report_to=[], use_cpu=True, save_strategy="no", logging_steps=1)
    options = dict(temperature=3.0, alpha_kl=0.5, alpha_mlm=1.5, alpha_cos=0.0)
    trainer = DistillationTrainer(model=student, teacher=teacher, args=args, train_dataset=rows,
                                  data_collator=DataCollatorWithPadding(tokenizer), **options)
    batch = trainer.data_collator(rows[:8])
    student.eval()
    loss = trainer.compute_loss(student, batch)
    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        s, t = student(**inputs).logits.double(), teacher(**inputs).logits.double()
    y = batch["labels"].double()
    if problem == MULTI_LABEL:
        expected = plain_multi_label(s, t, y, s, s, 3.0, 0.5, 1.5, 0.0)[0]
    else:
        expected = plain_regression(s[:, 0], t[:, 0], y, s, s, 0.5, 1.5, 0.0)[0]
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
    before = {k: v.clone() for k, v in student.state_dict().items()}
    trainer.train()
    assert any(not torch.equal(before[k], v) for k, v in student.state_dict().items())
    assert all(not p.requires_grad for p in teacher.parameters())
