"""Issue 18's second probe, on the surfaces issue 19 and 21 added: question-answering records and windows,
token-classification schemes, labelled training sets smaller than a batch, preemption signals and time limits,
evaluation output files, a resume from a folder without its train_config.json. Each test reproduces a fault
the probe found (docs: the issue's closing note)."""

import json
import re
import warnings
from types import SimpleNamespace

import pytest
from transformers import BertConfig, BertForTokenClassification

from distilx import TrainConfig, assets
from distilx.cli import main
from distilx.preemption import Preemption, signal_of
from distilx.qa_eval import evaluate_question_answering
from distilx.tasks import task_for
from distilx.tasks.labelled_data import ClassificationBatches
from distilx.tasks.qa_records import read_qa_records
from distilx.tasks.qa_windows import QAWindows
from distilx.token_classification_eval import resolve_scheme

IOB2 = ["O", "B-ORG", "I-ORG", "B-PER", "I-PER"]
IOBES = ["O", "B-ORG", "I-ORG", "E-ORG", "S-ORG"]


def qa_file(tmp_path, *records, name="q.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def qa_record(context, answer, start, qid="a", question="Which one?"):
    return {"id": qid, "question": question, "context": context, "answers": {"text": [answer], "answer_start": [start]}}


def windows_of(path, seq_len=64):
    return QAWindows(read_qa_records([path]), assets.minilm_dir(), seq_len=seq_len, doc_stride=8, max_query_len=16)


# ---------------------------------------------------------------- question answering


def test_an_answer_ending_on_an_accent_the_normaliser_drops_targets_its_own_token(tmp_path):
    # "Cafe" + U+0301: MiniLM's normaliser strips the accent, so the token "cafe" ends one character early;
    # the target used to stretch to the next token ("Café de").
    windows = windows_of(qa_file(tmp_path, qa_record("Cafe\u0301 de Flore is in Paris.", "Cafe\u0301", 0)))
    start, end = windows.starts[0], windows.ends[0]
    assert start == end and start != windows.cls_index[0]
    assert tuple(windows.offsets[0][start]) == (0, 4)


@pytest.mark.parametrize("answer, start", [("\x01", 4), (" ", 3), ("\u200b", 4)])
def test_an_answer_of_characters_the_tokenizer_drops_is_refused(tmp_path, answer, start):
    context = "Ada " + answer + " Lovelace" if answer != " " else "Ada  Lovelace"
    path = qa_file(tmp_path, qa_record(context, answer, start))
    with pytest.raises(ValueError, match=r"q.jsonl:1 \(id 'a'\): answer .* covers no token of the context"):
        windows_of(path)


def test_answers_that_no_window_holds_whole_are_counted_in_a_warning(tmp_path):
    long = " ".join(["word"] * 120)
    path = qa_file(tmp_path, qa_record("Ada wrote it.", "Ada", 0, qid="short"),
                   qa_record(long + " end", long, 0, qid="long"))
    with pytest.warns(UserWarning, match=r"1 of 2 answered questions have an answer that no window .* id 'long'"):
        windows = windows_of(path)
    assert all(windows.starts[w] == windows.cls_index[w] for w in range(len(windows)) if windows.record_of[w] == 1)


def test_is_impossible_must_be_a_boolean(tmp_path):
    tree = {"data": [{"paragraphs": [{"context": "Ada wrote it.", "qas": [
        {"id": "s", "question": "Who?", "is_impossible": "true", "answers": [{"text": "Ada", "answer_start": 0}]}]}]}]}
    path = tmp_path / "v2.json"
    path.write_text(json.dumps(tree))
    with pytest.raises(ValueError, match=r"qas\[0\]: is_impossible holds 'true', not true or false"):
        read_qa_records([path])


@pytest.mark.parametrize("setting, message", [
    ({"n_best_size": 0}, "n_best_size=0: decoding needs a whole number of at least 1"),
    ({"max_answer_len": 0}, "max_answer_len=0: decoding needs"),
    ({"null_score_diff_threshold": float("nan")}, "null_score_diff_threshold=nan is not a number"),
])
def test_decoding_settings_that_cannot_give_an_answer_are_refused(tmp_path, setting, message):
    with pytest.raises(ValueError, match=message):  # before any model is read
        evaluate_question_answering(tmp_path / "none", tmp_path / "none", [], **setting)
    config = SimpleNamespace(n_best_size=20, max_answer_len=30, null_score_diff_threshold=0.0, eval_files=[],
                             eval_batches=0)
    config.__dict__.update(setting)
    with pytest.raises(ValueError, match=message):  # a run checks them before its first step, evaluation or not
        task_for("question-answering").check_eval_input(config, None, None)


def test_a_token_classifier_as_question_answering_teacher_is_named_for_what_it_is(tmp_path):
    from distilx.models.question_answering import load_qa_model

    config = BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, num_labels=9)
    BertForTokenClassification(config).save_pretrained(tmp_path / "tagger")
    with pytest.raises(ValueError, match="not a fine-tuned question-answering model: .* holds a "
                                         "BertForTokenClassification"):
        load_qa_model(tmp_path / "tagger")


def test_a_training_set_smaller_than_one_batch_is_named_at_once(tmp_path):
    windows = windows_of(qa_file(tmp_path, qa_record("Ada wrote it.", "Ada", 0)))
    with pytest.raises(ValueError, match=r"give 1 question windows, fewer than one batch of batch_size=4: add "
                                         r"examples or lower --batch-size"):
        ClassificationBatches(windows, batch_size=4, seed=0)
    with pytest.raises(ValueError, match=r"fewer than one batch of batch_size=1 x 2 processes"):
        ClassificationBatches(windows, batch_size=1, seed=0, rank=1, world_size=2)
    assert ClassificationBatches(windows, batch_size=1, seed=0).batches_per_epoch == 1


# ---------------------------------------------------------------- token classification


def test_a_forced_tag_scheme_the_tag_set_contradicts_is_refused():
    with pytest.raises(ValueError, match=r"tag_scheme='IOBES', but the teacher's tag set has no E- or S- tag"):
        resolve_scheme("IOBES", IOB2, [])
    with pytest.raises(ValueError, match=r"tag_scheme='IOB2', but the teacher's tag set has 'E-ORG', an IOBES tag"):
        resolve_scheme("IOB2", IOBES, [])
    assert resolve_scheme("IOBES", IOBES, []) == "IOBES" and resolve_scheme("IOB1", IOB2, []) == "IOB1"
    assert resolve_scheme("auto", IOBES, []) == "IOBES"


def test_a_run_checks_the_tag_scheme_before_its_first_step(tmp_path):
    heldout = tmp_path / "heldout.conll"
    heldout.write_text("EU B-ORG\nrejects O\n", encoding="utf-8")
    config = SimpleNamespace(eval_files=[str(heldout)], eval_batches=1, tokenizer=str(assets.minilm_dir()), teacher=None,
                             tokens_field="tokens", tags_field="tags", seq_len=32, label_all_subtokens=False,
                             tag_scheme="IOBES", strict_entities=True)
    teacher = SimpleNamespace(config=BertConfig(id2label=dict(enumerate(IOB2)), label2id={t: i for i, t in enumerate(IOB2)}))
    with pytest.raises(ValueError, match="tag_scheme='IOBES', but the teacher's tag set has no E- or S- tag"):
        task_for("token-classification").check_eval_input(config, None, teacher)


# ---------------------------------------------------------------- signals and time limits


@pytest.mark.parametrize("name, reason", [("SEGV", "fault of the process itself"), ("FPE", "fault"), ("BUS", "fault"),
                                          ("CHLD", "sent for other reasons"), ("WINCH", "sent for other reasons")])
def test_signals_that_are_no_preemption_are_refused(name, reason):
    with pytest.raises(ValueError, match=f"preempt_signals: SIG{name} .*{reason}"):
        signal_of(name)
    with pytest.raises(ValueError, match=f"SIG{name}"):
        TrainConfig(preempt_signals=[name]).validated()


@pytest.mark.parametrize("limit, margin", [("0", "5m"), ("1m", "5m"), ("10", "10s")])
def test_a_time_limit_within_its_margin_is_refused(limit, margin):
    # such a run stopped before its first step with status 75, and a requeue script started it again forever
    with pytest.raises(ValueError, match=f"time_limit='{limit}' is not longer than time_limit_margin='{margin}'"):
        TrainConfig(time_limit=limit, time_limit_margin=margin).validated()
    TrainConfig(time_limit="6m", time_limit_margin=margin).validated()


@pytest.mark.parametrize("value", ["abc", "1.7e9", "-1"])
def test_a_slurm_end_time_that_is_not_a_unix_time_is_named(monkeypatch, value):
    monkeypatch.setenv("SLURM_JOB_END_TIME", value)
    with pytest.warns(UserWarning, match=f"SLURM_JOB_END_TIME='{re.escape(value)}' is not a Unix time"):
        preemption = Preemption.for_run(TrainConfig())
    assert preemption.deadline is None
    monkeypatch.setenv("SLURM_JOB_END_TIME", " 4102444800 ")  # SLURM's own value, spaces around it: read
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Preemption.for_run(TrainConfig(time_limit_margin="0")).deadline == 4102444800.0


# ---------------------------------------------------------------- the CLI


@pytest.mark.parametrize("flag", ["--predictions", "--json"])
def test_eval_output_files_are_checked_before_the_evaluation(tmp_path, capsys, flag):
    args = ["eval", "--task", "question-answering", "--teacher", str(tmp_path / "no-teacher"), "--student",
            str(tmp_path / "no-student"), "--files", str(tmp_path / "dev.json")]
    assert main(args + [flag, str(tmp_path / "missing" / "out.json")]) == 2
    err = capsys.readouterr().err
    assert f"error: {flag} {tmp_path}/missing/out.json: the folder {tmp_path}/missing does not exist" in err
    assert main(args + [flag, str(tmp_path)]) == 2
    assert f"{flag} {tmp_path} is a folder" in capsys.readouterr().err


def test_a_resume_from_a_folder_without_its_config_says_so(tmp_path, capsys):
    assert main(["train", "--output-dir", str(tmp_path / "run"), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"continues the run in {tmp_path}/run as its train_config.json describes it, but there is no such file" in err

