"""DistillationTrainer makes the checks `distilx train` makes (issue 18 row 3): no teacher, a classifier
student whose labels are the teacher's in another order, a student of another vocabulary or width, a
tokenizer that is not the teacher's — each a one-line error at construction, before any step."""

import pytest
import torch
from transformers import (AutoTokenizer, BertConfig, BertForMaskedLM, BertForSequenceClassification,
                          PreTrainedTokenizerFast, TrainingArguments)

from distilx import DistillationTrainer, init_classifier_student
from distilx.models.classification import load_classifier
from pipeline_helpers import make_tiny_classifier
from test_vocabulary import permuted_tokenizer

LABELS = ("negative", "neutral", "positive")


def config(vocab=1000, width=32, labels=LABELS, **kw):
    return BertConfig(vocab_size=vocab, hidden_size=width, num_hidden_layers=1, num_attention_heads=2,
                      intermediate_size=48, max_position_embeddings=64, id2label=dict(enumerate(labels)), **kw)


def trainer(tmp_path, student, teacher, **kw):
    args = TrainingArguments(output_dir=str(tmp_path / "hf"), max_steps=1, report_to=[], use_cpu=True,
                             save_strategy="no", disable_tqdm=True)
    return DistillationTrainer(model=student, teacher=teacher, args=args, train_dataset=[], **kw)


def test_no_teacher_is_one_line(tmp_path):
    torch.manual_seed(0)
    with pytest.raises(TypeError, match=r"teacher=NoneType: DistillationTrainer needs the teacher model"):
        trainer(tmp_path, BertForSequenceClassification(config()), None)


def test_a_student_whose_labels_are_permuted_is_refused(tmp_path):
    torch.manual_seed(0)
    teacher = BertForSequenceClassification(config())
    student = BertForSequenceClassification(config(labels=("positive", "neutral", "negative")))
    with pytest.raises(ValueError, match=r"the student's labels \['positive', 'neutral', 'negative'\] are not the "
                                         r"teacher's \['negative', 'neutral', 'positive'\]"):
        trainer(tmp_path, student, teacher, alpha_cos=0.0)


def test_a_student_of_another_vocabulary_is_refused(tmp_path):
    """A 40,000-id student of a 1,000-id teacher was a raw IndexError inside the teacher's embedding."""
    torch.manual_seed(0)
    teacher, student = BertForSequenceClassification(config()), BertForSequenceClassification(config(vocab=40_000))
    with pytest.raises(ValueError, match=r"the student has 40000 embeddings and the teacher 1000: a student distils "
                                         "its teacher's vocabulary"):
        trainer(tmp_path, student, teacher, alpha_cos=0.0)


def test_widths_and_head_kinds(tmp_path):
    torch.manual_seed(0)
    teacher = BertForSequenceClassification(config())
    with pytest.raises(ValueError, match=r"alpha_cos=1.0 compares hidden states, but the teacher's are 32 wide and the "
                                         "student's 16"):
        trainer(tmp_path, BertForSequenceClassification(config(width=16)), teacher, alpha_cos=1.0)
    trainer(tmp_path, BertForSequenceClassification(config(width=16)), teacher, alpha_cos=0.0)  # allowed
    with pytest.raises(ValueError, match=r"the teacher is a BertForSequenceClassification and the student a "
                                         "BertForMaskedLM"):
        trainer(tmp_path, BertForMaskedLM(config()), teacher, alpha_cos=0.0)


def test_a_processing_class_that_is_not_the_teacher_s_tokenizer(tmp_path, minilm_dir):
    """The tokenizer passed to the Trainer is compared with the teacher folder's tokenizer files."""
    teacher = load_classifier(make_tiny_classifier(tmp_path / "teacher", LABELS))
    student = init_classifier_student(teacher, n_layers=1)
    own = AutoTokenizer.from_pretrained(str(minilm_dir))
    trainer(tmp_path, student, teacher, processing_class=own)
    other = PreTrainedTokenizerFast(tokenizer_file=str(permuted_tokenizer(minilm_dir, tmp_path / "perm")
                                                       / "tokenizer.json"))
    with pytest.raises(ValueError, match=r"the tokenizer \(a \w+ object\) is not the teacher's vocabulary "
                                         r"\(.*teacher/tokenizer.json\)"):
        trainer(tmp_path, student, teacher, processing_class=other)
