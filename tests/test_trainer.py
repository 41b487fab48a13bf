"""DistillationTrainer really trains (a few CPU steps through transformers.Trainer + accelerate), with the
loss equal to a plain PyTorch transcription of the formula, for a classification and a masked-LM head."""

import copy
import inspect
import json

import pytest
import torch
import torch.nn.functional as F
from transformers import (AutoTokenizer, DataCollatorForLanguageModeling, DataCollatorWithPadding,
                          TrainingArguments)

from distilx import DistillationTrainer, init_classifier_student, init_student
from distilx.models import load_teacher
from distilx.models.classification import load_classifier
from pipeline_helpers import kernel_doc_slice, make_tiny_classifier, make_tiny_teacher

T, A_KL, A_CE, A_COS = 3.0, 0.7, 0.4, 0.9  # not the defaults: the weights must really reach the loss


def plain_loss(s_logits, t_logits, labels, s_hidden, t_hidden, real):
    """The triple loss written out: rows = real tokens (token logits) or examples (class logits)."""
    if s_logits.dim() == 3:
        s_rows, t_rows = s_logits[real], t_logits[real]
    else:
        s_rows, t_rows = s_logits, t_logits
    p_t = torch.softmax(t_rows.double() / T, -1)
    kl = (p_t * (torch.log(p_t) - torch.log_softmax(s_rows.double() / T, -1))).sum(-1).mean() * T * T
    ce = F.cross_entropy(s_logits.double().reshape(-1, s_logits.shape[-1]), labels.reshape(-1), ignore_index=-100)
    a, b = s_hidden[real].double(), t_hidden[real].double()
    cos = (a * b).sum(-1) / torch.sqrt(((a * a).sum(-1) + 1e-12) * ((b * b).sum(-1) + 1e-12))
    return A_KL * kl + A_CE * ce + A_COS * (1 - cos).mean()


@pytest.fixture(scope="module")
def data(tmp_path_factory, minilm_dir):
    root = tmp_path_factory.mktemp("trainer")
    labels, train_file, _ = kernel_doc_slice(root, every=200)
    records = [json.loads(line) for line in train_file.read_text().splitlines()][:48]
    tokenizer = AutoTokenizer.from_pretrained(str(minilm_dir))
    return root, labels, records, tokenizer


def fresh(student):
    """The student's shape with other weights: far from the teacher, so that every loss term is large."""
    torch.manual_seed(1)
    return type(student)(student.config)


def tokenize(tokenizer, i, text):
    """Lengths 12..40 tokens: every batch has padding, which the loss must leave out."""
    return tokenizer(text, truncation=True, max_length=12 + 7 * (i % 5))


def run(trainer_kwargs, tmp_path, student, teacher, dataset, collator):
    args = TrainingArguments(output_dir=str(tmp_path / "hf"), per_device_train_batch_size=8, max_steps=3,
                             learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to=[], use_cpu=True,
                             seed=0, disable_tqdm=True)
    trainer = DistillationTrainer(model=student, teacher=teacher, args=args, train_dataset=dataset,
                                  data_collator=collator, temperature=T, alpha_kl=A_KL, alpha_mlm=A_CE,
                                  alpha_cos=A_COS, **trainer_kwargs)
    batch = next(iter(trainer.get_train_dataloader()))
    assert not batch["attention_mask"].all()
    loss = trainer.compute_loss(student, batch)
    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        t_out = teacher(**inputs, output_hidden_states=True)
        if "token_type_ids" not in inspect.signature(student.forward).parameters:  # DistilBERT
            del inputs["token_type_ids"]
        s_out = student(**inputs, output_hidden_states=True)
    expected = plain_loss(s_out.logits, t_out.logits, batch["labels"], s_out.hidden_states[-1],
                          t_out.hidden_states[-1], batch["attention_mask"].bool())
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
    assert float(expected) > 1.0  # every term weighs: KL, cross-entropy and cosine are all far from 0
    before, teacher_before = copy.deepcopy(student.state_dict()), copy.deepcopy(teacher.state_dict())
    trainer.train()
    assert trainer.state.global_step == 3
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses)))
    changed = [k for k, v in student.state_dict().items() if not torch.equal(v, before[k])]
    assert len(changed) > len(before) // 2  # the student trained
    assert all(torch.equal(v, teacher_before[k]) for k, v in teacher.state_dict().items())  # the teacher did not
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    return trainer


def test_classification_head(data, tmp_path):
    root, labels, records, tokenizer = data
    teacher = load_classifier(make_tiny_classifier(tmp_path / "teacher", labels, dropout=0.0))
    with torch.no_grad():
        teacher.classifier.weight.mul_(50)  # confident logits: a random tiny head's are ~0 (KL ~1e-6)
    student = fresh(init_classifier_student(teacher, n_layers=2))
    label_id = {name: i for i, name in enumerate(labels)}
    dataset = [{**tokenize(tokenizer, i, r["text"]), "labels": label_id[r["label"]]} for i, r in enumerate(records)]
    run({}, tmp_path, student, teacher, dataset, DataCollatorWithPadding(tokenizer))


def test_masked_lm_head_with_a_distilbert_student(data, tmp_path):
    """The BERT teacher reads token_type_ids, its DistilBERT student is not given them."""
    root, _, records, tokenizer = data
    teacher = load_teacher(make_tiny_teacher(tmp_path / "teacher", dropout=0.0))
    with torch.no_grad():
        teacher.cls.predictions.transform.LayerNorm.weight.mul_(30)  # confident logits, as in the other test
    student = fresh(init_student(teacher, n_layers=2))  # a DistilBertForMaskedLM without dropout, like its teacher
    dataset = [tokenize(tokenizer, i, r["text"]) for i, r in enumerate(records)]
    torch.manual_seed(0)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=0.3)
    trainer = run({"kl_on": "tokens"}, tmp_path, student, teacher, dataset, collator)
    assert trainer.loss_options["kl_on"] == "tokens"
