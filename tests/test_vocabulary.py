"""One vocabulary identity check (issue 18 rows 2 and 18): a tokenizer that is not the teacher's — the same
size and special ids, ids above 1000 permuted — is refused by `distilx train` (both tasks, `--tokenizer`
and `--student`) and `distilx eval`, naming the side at fault; real bert-base-uncased tokenizer files."""

import json
import shutil

import pytest
import torch
from transformers import BertConfig, BertForMaskedLM

from distilx.cli import main
from distilx.models.vocabulary import check_same_vocabulary, vocabulary_of
from pipeline_helpers import TOKENIZER_FILES, kernel_doc_slice, make_tiny_classifier

PERMUTED_FROM = 1000  # every special token of bert-base-uncased lies below


def permuted_tokenizer(minilm_dir, folder):
    """bert-base-uncased's tokenizer files with the ids from 1000 up reversed: same size, same specials."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        shutil.copyfile(minilm_dir / name, folder / name)
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = data["model"]["vocab"]
    top = max(vocab.values())
    data["model"]["vocab"] = {t: (i if i < PERMUTED_FROM else top + PERMUTED_FROM - i) for t, i in vocab.items()}
    (folder / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    by_id = sorted(data["model"]["vocab"].items(), key=lambda item: item[1])
    (folder / "vocab.txt").write_text("".join(t + "\n" for t, _ in by_id), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def permuted(tmp_path_factory, minilm_dir):
    return permuted_tokenizer(minilm_dir, tmp_path_factory.mktemp("permuted") / "tok")


def train_args(teacher, train_file, out, *extra):
    """A one-step run; a `--student` folder replaces --student-layers."""
    layers = [] if "--student" in extra else ["--student-layers", "1"]
    return ["train", "--teacher", str(teacher), "--train-files", str(train_file), "--output-dir", str(out),
            "--max-steps", "1", "--seq-len", "32", "--batch-size", "4", "--eval-batches", "0", "--progress", "false",
            "--tensorboard", "false", "--device", "cpu", *layers, *extra]


def one_line_error(capsys, args) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    return err


def test_the_permuted_vocabulary_passes_size_and_special_ids(permuted, minilm_dir):
    """The fixture is the hard case: only the token -> id maps tell them apart."""
    from distilx import Tokenizer

    ours, theirs = Tokenizer(str(permuted)), Tokenizer(str(minilm_dir))
    assert ours.vocab_size == theirs.vocab_size
    assert ours.special_tokens == theirs.special_tokens
    assert ours.token_to_id("hello") != theirs.token_to_id("hello")
    assert vocabulary_of(permuted / "vocab.txt").digest == vocabulary_of(permuted).digest  # both files agree
    assert vocabulary_of(permuted).digest != vocabulary_of(minilm_dir).digest


def test_train_refuses_a_tokenizer_that_is_not_the_teacher_s(tiny_run_inputs, permuted, tmp_path, capsys):
    teacher, train_file, _ = tiny_run_inputs
    err = one_line_error(capsys, train_args(teacher, train_file, tmp_path / "out", "--tokenizer",
                                            str(permuted / "tokenizer.json")))
    assert "error: the tokenizer (" in err and "is not the teacher's vocabulary" in err
    assert "tokens have other ids (e.g. " in err and "pass the teacher's own tokenizer" in err
    assert not (tmp_path / "out" / "config.json").exists()


def test_train_refuses_a_student_folder_of_another_vocabulary(tiny_run_inputs, permuted, tmp_path, capsys):
    teacher, train_file, _ = tiny_run_inputs
    student = tmp_path / "student"
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=128)).save_pretrained(student)
    permuted_tokenizer_files = [permuted / name for name in TOKENIZER_FILES]
    for f in permuted_tokenizer_files:
        shutil.copyfile(f, student / f.name)
    err = one_line_error(capsys, train_args(teacher, train_file, tmp_path / "out", "--student", str(student)))
    assert "error: the student folder's tokenizer (" in err and "is not the teacher's vocabulary" in err
    assert "distil a student made for this teacher's vocabulary" in err


def test_classification_train_refuses_a_tokenizer_that_is_not_the_teacher_s(permuted, tmp_path, capsys):
    labels, train_file, _ = kernel_doc_slice(tmp_path, every=400)
    teacher = make_tiny_classifier(tmp_path / "teacher", labels)
    err = one_line_error(capsys, train_args(teacher, train_file, tmp_path / "out", "--task",
                                            "sequence-classification", "--tokenizer", str(permuted)))
    assert "the tokenizer (" in err and "is not the teacher's vocabulary" in err


def test_a_student_with_too_few_embeddings_is_named(tiny_run_inputs, tmp_path, capsys):
    """Row 18: a student with 1,000 embeddings was blamed on the tokenizer ("does not belong to this teacher")."""
    teacher, train_file, _ = tiny_run_inputs
    student = tmp_path / "student"
    BertForMaskedLM(BertConfig(vocab_size=1000, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=128)).save_pretrained(student)
    err = one_line_error(capsys, train_args(teacher, train_file, tmp_path / "out", "--student", str(student)))
    assert "larger than the student's (1000 embeddings)" in err and "use a student of this teacher's vocabulary" in err
    assert "teacher (" not in err


def test_eval_names_the_student_whose_tokenizer_is_not_the_teacher_s(tiny_run_inputs, permuted, tmp_path, capsys):
    """`distilx eval` reads the student folder's tokenizer by default: a student folder of another vocabulary."""
    teacher, _, heldout = tiny_run_inputs
    student = tmp_path / "student"
    shutil.copytree(teacher, student)
    for name in TOKENIZER_FILES:
        shutil.copyfile(permuted / name, student / name)
    err = one_line_error(capsys, ["eval", "--teacher", str(teacher), "--student", str(student), "--files",
                                  str(heldout), "--max-batches", "1"])
    assert "is not the teacher's vocabulary" in err and "student folder's tokenizer" in err


def test_a_teacher_folder_without_tokenizer_files_warns_and_checks_size_only(minilm_dir, permuted, tmp_path):
    """Decided: nothing to compare with is a warning, not an error (the size and special ids are still checked)."""
    bare = tmp_path / "bare-teacher"
    bare.mkdir()
    with pytest.warns(UserWarning, match="has no tokenizer files: the tokenizer .* is checked against the teacher by "
                                         "its size and special ids only"):
        check_same_vocabulary(teacher=bare, tokenizer=permuted)
    with pytest.raises(ValueError, match=r"the student folder's tokenizer .* is not the tokenizer's vocabulary"):
        with pytest.warns(UserWarning):
            check_same_vocabulary(teacher=bare, tokenizer=minilm_dir, student=permuted)
    check_same_vocabulary(teacher=minilm_dir, tokenizer=minilm_dir / "vocab.txt", student=minilm_dir)


def test_classification_eval_of_a_masked_lm_student_names_the_student(tiny_run_inputs, tmp_path, capsys):
    """Row 18: the classification eval of a masked-LM student called it "the teacher"."""
    mlm_student, _, _ = tiny_run_inputs
    labels, _, test_file = kernel_doc_slice(tmp_path, every=400)
    teacher = make_tiny_classifier(tmp_path / "teacher", labels)
    err = one_line_error(capsys, ["eval", "--task", "sequence-classification", "--teacher", str(teacher),
                                  "--student", str(mlm_student), "--files", str(test_file)])
    assert f"the student {mlm_student} is not a fine-tuned classifier" in err
    assert "Evaluate a student trained with --task sequence-classification" in err
