"""`distilx train` then `distilx eval`, end to end through the CLI, on every supported architecture
(tiny random teachers of tests/tiny_models.py, real text, whole-word masking): the loss goes down over 20
steps; on held-out text the trained student's perplexity falls clearly below its random teacher's (which
the untrained student, a copy of teacher layers, shares: about the vocabulary size); the run folder loads
as the right class and fills masks in pipeline("fill-mask") with the student's own distribution.
Architectures whose own tokenizers are byte-level BPE or SentencePiece Unigram run with a tokenizer of
that kind (distilx.sample_tokenizers) on text in seven languages; the others with bert-base-uncased's
WordPiece on English."""

import json
import statistics

import pytest
import torch
from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline

from distilx.cli import main
from distilx.models import load_teacher
from pipeline_helpers import corpus_slice
from tiny_models import AVAILABLE, save_teacher

# architecture -> the sample tokenizer of its own kind: RoBERTa's byte-level BPE (<s> </s> <pad> <mask>),
# ModernBERT's ([CLS] [SEP] ... over byte-level BPE), XLM-R's / CamemBERT's Unigram, DeBERTa-v3's
# ([PAD] 0, [CLS] 1 over Unigram); EuroBERT's is a byte-level BPE too. Others: WordPiece.
OWN_KINDS = {"roberta": "roberta", "modernbert": "modernbert", "xlm-roberta": "xlmr", "camembert": "xlmr",
             "deberta-v2": "deberta", "eurobert": "roberta"}
CASES = [(name, "auto") for name in AVAILABLE] + [("bert", "same")]
STEPS = 20


@pytest.fixture(scope="module")
def english_corpus_slice(tmp_path_factory):
    return corpus_slice(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def multilingual_corpus(multilingual_texts, tmp_path_factory):
    """(train, held-out) files of real text in seven languages the sample tokenizers were not trained on."""
    folder = tmp_path_factory.mktemp("multilingual")
    files = folder / "train.txt", folder / "heldout.txt"
    for start, file in enumerate(files):
        file.write_text("".join(" ".join(t.split()) + "\n" for t in multilingual_texts[start::2]), encoding="utf-8")
    return files


@pytest.mark.parametrize("name, student_class", CASES, ids=[f"{n}-{c}" for n, c in CASES])
def test_train_and_eval_through_the_cli(name, student_class, request, tmp_path):
    if name in OWN_KINDS:
        tokenizer_folder = request.getfixturevalue("sample_tokenizers")[OWN_KINDS[name]]
        train_file, heldout = request.getfixturevalue("multilingual_corpus")
    else:
        tokenizer_folder, (train_file, heldout) = None, request.getfixturevalue("english_corpus_slice")
    teacher = save_teacher(name, tmp_path / "teacher", tokenizer_folder=tokenizer_folder)
    out = tmp_path / "run"
    assert main(["train", "--teacher", str(teacher), "--train-files", str(train_file), "--output-dir", str(out),
                 "--student-class", student_class, "--seq-len", "32", "--batch-size", "4", "--max-steps", str(STEPS),
                 "--log-every", "1", "--lr", "5e-3", "--masking", "whole_word", "--kl-on", "targets", "--seed", "3",
                 "--progress", "false", "--tensorboard", "false", "--eval-batches", "0", "--device", "cpu"]) == 0
    losses = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == STEPS
    assert statistics.mean(losses[-5:]) < statistics.mean(losses[:5]) - 0.5, losses

    assert main(["eval", "--teacher", str(teacher), "--student", str(out), "--files", str(heldout), "--seq-len", "32",
                 "--batch-size", "4", "--max-batches", "4", "--json", str(tmp_path / "eval.json")]) == 0
    metrics = json.loads((tmp_path / "eval.json").read_text())
    assert metrics["targets"] > 0 and (metrics["teacher_layers"], metrics["student_layers"]) == (4, 2)
    teacher_model = load_teacher(teacher)
    assert metrics["teacher_perplexity"] > 0.5 * len(teacher_model.get_input_embeddings().weight)  # a random teacher
    assert metrics["student_perplexity"] < 0.8 * metrics["teacher_perplexity"], metrics
    assert metrics["student_params"] < metrics["teacher_params"]

    student = AutoModelForMaskedLM.from_pretrained(out).eval()
    distilbert = (name, student_class) == ("bert", "auto")
    assert type(student).__name__ == ("DistilBertForMaskedLM" if distilbert else type(teacher_model).__name__)
    assert student.config.distilx_teacher_layers == [0, 3]
    tokenizer = AutoTokenizer.from_pretrained(out)
    text = f"The capital of France is {tokenizer.mask_token}, and Madrid is the capital of Spain."
    inputs = tokenizer(text, return_tensors="pt", return_token_type_ids=False)
    with torch.no_grad():
        logits = student(**inputs).logits
    position = inputs["input_ids"][0].tolist().index(tokenizer.mask_token_id)
    expected = logits[0, position].softmax(-1).topk(5)
    got = pipeline("fill-mask", model=str(out), device="cpu")(text)
    assert [p["token"] for p in got] == expected.indices.tolist()
    assert [p["score"] for p in got] == pytest.approx(expected.values.tolist(), rel=1e-4)
