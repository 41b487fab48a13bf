"""Extractive question answering (issue 19): teachers and students on real MiniLM weights and tiny models of the
adapter table's other architectures, "distil while fine-tuning", a head to fine-tune, runs through the CLI
(exact resume, the output folder, eval with predictions), DistillationTrainer on QA heads, the SQuAD asset."""

import hashlib
import json
import re

import pytest
import torch
import transformers
from transformers import AutoModelForQuestionAnswering, AutoTokenizer, BertConfig, BertForMaskedLM, \
    BertForQuestionAnswering

from distilx import TrainConfig, assets, train
from distilx.cli import main
from distilx.models.question_answering import init_qa_student, load_qa_model, pretrained_qa_student
from distilx.qa_eval import decode_answers, evaluate_question_answering, window_logits
from distilx.tasks import task_for
from distilx.tasks.qa_records import read_qa_records
from distilx.tasks.qa_windows import QAWindows
from qa_helpers import (official_v1_evaluate, official_v2_evaluate, span_records, tiny_qa_teacher, wiki_texts,
                        write_jsonl, write_squad_json)
from tiny_models import ARCHITECTURES, AVAILABLE, CLS, MASK, PAD, SEP, VOCAB, declared_ids

# the adapter table's architectures with a …ForQuestionAnswering in transformers (EuroBERT has none)
QA_ARCHITECTURES = [name for name in AVAILABLE if name not in ("bert", "mpnet", "roformer", "eurobert")]


def tiny_qa_model(name: str) -> torch.nn.Module:
    model_class, config_class, kwargs = ARCHITECTURES[name]
    config = getattr(transformers, config_class)(**kwargs, vocab_size=VOCAB, **declared_ids(name, PAD, CLS, SEP, MASK))
    return getattr(transformers, model_class.replace("ForMaskedLM", "ForQuestionAnswering"))(config)


def real_windows(n_texts=4, seq_len=48):
    """A padded batch of windows of real questions on Wikipedia text, framed by the MiniLM tokenizer."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        records = read_qa_records([write_jsonl(Path(folder) / "r.jsonl", span_records(wiki_texts(n_texts), 2))])
    windows = QAWindows(records, assets.minilm_dir(), seq_len=seq_len, doc_stride=8, max_query_len=24)
    lengths = [len(ids) for ids in windows.input_ids]
    short = min(range(len(windows)), key=lengths.__getitem__)
    batch = windows.batch([short] + list(range(5)))
    assert not batch["attention_mask"].all()  # padding present
    return {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}


# ---------------------------------------------------------------- students from the teacher


def test_minilm_keeping_every_layer_reproduces_the_start_and_end_logits():
    torch.manual_seed(0)
    teacher = BertForQuestionAnswering.from_pretrained(str(assets.minilm_dir())).eval()
    with torch.no_grad():
        teacher.qa_outputs.weight.mul_(20)  # a head whose logits say something
    student = init_qa_student(teacher, layers=list(range(6))).eval()
    assert type(student) is BertForQuestionAnswering
    inputs = real_windows()
    with torch.no_grad():
        expected, got = teacher(**inputs), student(**inputs)
    real = inputs["attention_mask"].bool()
    for name in ("start_logits", "end_logits"):
        assert getattr(expected, name)[real].abs().max() > 0.5
        assert (getattr(got, name)[real] - getattr(expected, name)[real]).abs().max() < 1e-4


@pytest.mark.parametrize("name", QA_ARCHITECTURES)
def test_other_architectures_keeping_every_layer_reproduce_the_start_and_end_logits(name):
    torch.manual_seed(0)
    teacher = tiny_qa_model(name).eval()
    with torch.no_grad():
        for p in teacher.parameters():  # away from the init's tiny head: logits of a useful size
            p.add_(torch.randn_like(p) * 0.05)
    student = init_qa_student(teacher, layers=[0, 1, 2, 3]).eval()
    assert type(student) is type(teacher)
    ids = torch.randint(5, 30000, (3, 20), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    ids[1, 12:] = teacher.config.pad_token_id
    with torch.no_grad():
        expected, got = teacher(input_ids=ids, attention_mask=mask), student(input_ids=ids, attention_mask=mask)
    for key in ("start_logits", "end_logits"):
        assert getattr(expected, key)[mask.bool()].abs().max() > 0.05
        assert (getattr(got, key)[mask.bool()] - getattr(expected, key)[mask.bool()]).abs().max() < 1e-4


def test_half_depth_student_copies_the_kept_layers_and_the_head_and_bad_teachers_are_refused(tmp_path):
    torch.manual_seed(0)
    teacher = BertForQuestionAnswering.from_pretrained(str(assets.minilm_dir()))
    student = init_qa_student(teacher, n_layers=3)
    assert student.config.distilx_teacher_layers == [0, 3, 5]
    t_state = teacher.state_dict()
    for key, value in student.state_dict().items():
        if key.startswith("bert.encoder.layer."):
            index, rest = key[len("bert.encoder.layer."):].split(".", 1)
            key = f"bert.encoder.layer.{[0, 3, 5][int(index)]}.{rest}"
        assert torch.equal(value, t_state[key]), key
    # a bare encoder (all-MiniLM-L6-v2 is a BertModel) and a masked-LM folder hold no trained QA head
    with pytest.raises(ValueError, match=r"not a fine-tuned question-answering model: .*qa_outputs.*BertModel.*"
                                         r"Fine-tune one first"):
        load_qa_model(assets.minilm_dir())
    BertForMaskedLM(BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=48)).save_pretrained(tmp_path / "mlm")
    with pytest.raises(ValueError, match=r"not a fine-tuned question-answering model.*BertForMaskedLM"):
        load_qa_model(tmp_path / "mlm")
    with pytest.raises(ValueError, match=r"is a BertForMaskedLM: task question-answering takes a …ForQuestionAnswering"):
        init_qa_student(BertForMaskedLM(BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2,
                                                   num_attention_heads=2, intermediate_size=48)))


def test_distil_while_fine_tuning_and_a_head_to_fine_tune(tmp_path):
    """--student FOLDER: a pre-trained BERT (no QA head) gets the teacher's head; finetune_model: the encoder
    folder's weights with a fresh, seeded head, which distilx then trains with the cross-entropy alone."""
    teacher_dir = tiny_qa_teacher(tmp_path / "teacher")
    teacher = load_qa_model(teacher_dir)
    torch.manual_seed(4)
    BertForMaskedLM(BertConfig(vocab_size=VOCAB, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=128)).save_pretrained(tmp_path / "mlm")
    student = pretrained_qa_student(tmp_path / "mlm", teacher)
    assert student.config.distilx_head_from_teacher == ["qa_outputs.bias", "qa_outputs.weight"]
    assert torch.equal(student.qa_outputs.weight, teacher.qa_outputs.weight)
    pre_trained = BertForMaskedLM.from_pretrained(tmp_path / "mlm").state_dict()
    assert torch.equal(student.bert.encoder.layer[1].output.dense.weight,
                       pre_trained["bert.encoder.layer.1.output.dense.weight"])

    task = task_for("question-answering")
    config = TrainConfig(task="question-answering", seed=3)
    model = task.finetune_model(str(assets.minilm_dir()), config)
    encoder = transformers.BertModel.from_pretrained(str(assets.minilm_dir())).state_dict()
    assert type(model) is BertForQuestionAnswering and model.training
    assert all(torch.equal(model.bert.state_dict()[k], v) for k, v in encoder.items() if k in model.bert.state_dict())
    again = task.finetune_model(str(assets.minilm_dir()), config)
    assert torch.equal(model.qa_outputs.weight, again.qa_outputs.weight)  # seeded by config.seed
    with pytest.raises(ValueError, match="cannot fine-tune"):
        task_for("masked-lm").finetune_model(str(assets.minilm_dir()), config)

    train_file = write_jsonl(tmp_path / "train.jsonl", span_records(wiki_texts(4), 4))
    model.save_pretrained(tmp_path / "untrained")
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json"):
        (tmp_path / "untrained" / name).write_bytes((assets.minilm_dir() / name).read_bytes())
    run = train(TrainConfig(task="question-answering", teacher=str(tmp_path / "untrained"), train_files=[str(train_file)],
                            output_dir=str(tmp_path / "ft"), student_layers=6, seq_len=64, doc_stride=16,
                            max_query_len=32, batch_size=4, max_steps=2, alpha_kl=0.0, alpha_cos=0.0, alpha_mlm=1.0,
                            freeze_embeddings=True, eval_batches=0, progress=False, tensorboard=False, device="cpu"))
    assert run.steps == 2 and run.history[-1]["kl"] == 0.0 and run.history[-1]["ce"] > 0
    assert not torch.equal(run.student.qa_outputs.weight, model.qa_outputs.weight)


# ---------------------------------------------------------------- runs through the CLI


def metric_lines(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def qa_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("qa")
    teacher = tiny_qa_teacher(root / "teacher", scale=20.0)
    train_file = write_jsonl(root / "train.jsonl", span_records(wiki_texts(10), 4))
    heldout = write_squad_json(root / "dev.json", span_records(wiki_texts(16)[10:], 3, seed=5))
    return teacher, train_file, heldout


def test_cli_run_resumes_exactly_and_eval_writes_predictions(tmp_path, qa_inputs, capsys):
    teacher, train_file, heldout = qa_inputs
    flags = ["--task", "question-answering", "--teacher", str(teacher), "--train-files", str(train_file),
             "--eval-files", str(heldout), "--student-layers", "2", "--seq-len", "64", "--doc-stride", "16",
             "--max-query-len", "32", "--batch-size", "8", "--max-steps", "6", "--save-every", "3", "--log-every", "1",
             "--eval-batches", "1", "--seed", "7", "--device", "cpu", "--progress", "false", "--tensorboard", "false"]
    assert main(["train", *flags, "--output-dir", str(tmp_path / "full")]) == 0
    printed = capsys.readouterr().out
    assert "exact match" in printed and "F1 retention" in printed and "SQuAD v1.1, 8 questions" in printed
    cut = TrainConfig.load(tmp_path / "full" / "train_config.json").override({"output_dir": str(tmp_path / "cut")})
    assert train(cut, stop_after=4).steps == 4
    assert main(["train", "--config", str(tmp_path / "cut" / "train_config.json"), "--resume"]) == 0
    assert "resuming from step 3" in capsys.readouterr().out
    full, resumed = metric_lines(tmp_path / "full"), metric_lines(tmp_path / "cut")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6] and "ce" in resumed[0]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in full]  # bit-identical on CPU, dropout included
    assert len({r["loss"] for r in full}) > 1
    a = AutoModelForQuestionAnswering.from_pretrained(tmp_path / "full")
    b = AutoModelForQuestionAnswering.from_pretrained(tmp_path / "cut")
    assert type(a) is BertForQuestionAnswering and a.config.num_hidden_layers == 2
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    # what pipeline("question-answering") loads (transformers 5 removed that pipeline): the model and its tokenizer
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "full")
    encoded = tokenizer("Who wrote it?", "Ada Lovelace wrote it.", return_tensors="pt")
    assert a(**encoded).start_logits.shape == encoded["input_ids"].shape
    from transformers.pipelines import SUPPORTED_TASKS
    if "question-answering" in SUPPORTED_TASKS:  # transformers 4
        answer = transformers.pipeline("question-answering", model=str(tmp_path / "full"))(
            question="Who wrote it?", context="Ada Lovelace wrote it.")
        assert answer["answer"] in "Ada Lovelace wrote it."

    capsys.readouterr()
    assert main(["eval", "--task", "question-answering", "--teacher", str(teacher), "--student", str(tmp_path / "full"),
                 "--files", str(heldout), "--seq-len", "64", "--doc-stride", "16", "--max-query-len", "32",
                 "--json", str(tmp_path / "eval.json"), "--predictions", str(tmp_path / "predictions.json")]) == 0
    table, _, text = capsys.readouterr().out.partition("\n{")
    assert "student/teacher F1 retention" in table
    metrics = json.loads("{" + text)
    assert metrics == json.loads((tmp_path / "eval.json").read_text())
    predictions = json.loads((tmp_path / "predictions.json").read_text())
    dataset = json.loads(heldout.read_text())["data"]
    assert set(predictions) == {qa["id"] for p in dataset[0]["paragraphs"] for qa in p["qas"]} and len(predictions) == 18
    official = official_v1_evaluate(dataset, predictions)
    assert metrics["student_exact_match"] == pytest.approx(official["exact_match"])
    assert metrics["student_f1"] == pytest.approx(official["f1"]) and metrics["questions"] == 18


def test_squad_v2_evaluation_scores_no_answer_questions(tmp_path, qa_inputs):
    teacher, _, _ = qa_inputs
    raw = span_records(wiki_texts(12)[6:], 3, seed=8, impossible_every=3)
    heldout = write_jsonl(tmp_path / "v2.jsonl", raw)
    model = load_qa_model(teacher)
    student = init_qa_student(model, n_layers=2).eval()
    records = read_qa_records([heldout])
    windows = QAWindows(records, teacher, seq_len=64, doc_stride=16, max_query_len=32)
    logits = window_logits(student, windows)
    # a threshold at which this random student answers some questions and declines others
    threshold = next(t for t in range(-20, 20) if 3 <= sum(a == "" for a in decode_answers(
        windows, logits, null_score_diff_threshold=t, version="2.0").values()) <= 15)
    predictions = tmp_path / "p.json"
    metrics = evaluate_question_answering(model, student, heldout, teacher, seq_len=64, doc_stride=16, max_query_len=32,
                                          null_score_diff_threshold=threshold, predictions_file=predictions)
    answers = json.loads(predictions.read_text())
    assert metrics["squad_version"] == "2.0" and metrics["no_answer_questions"] == 6 and "" in answers.values()
    dataset = [{"paragraphs": [{"context": r.context, "qas": [{"id": r.id, "answers": [
        {"text": t, "answer_start": s} for t, s in r.answers]}]} for r in records]}]
    official = official_v2_evaluate(dataset, answers)
    assert metrics["student_f1"] == pytest.approx(official["f1"])
    assert metrics["student_no_answer_exact_match"] == pytest.approx(official["NoAns_exact"])


def test_cli_question_answering_errors_are_one_line(tmp_path, qa_inputs, capsys):
    teacher, train_file, _ = qa_inputs
    bad = tmp_path / "bad.jsonl"
    records = span_records(wiki_texts(2), 2)
    records[2]["answers"]["answer_start"][0] += 1
    write_jsonl(bad, records)
    base = ["train", "--task", "question-answering", "--teacher", str(teacher), "--device", "cpu", "--max-steps", "1",
            "--seq-len", "64", "--doc-stride", "16", "--max-query-len", "32"]
    for extra, message in [
        (["--train-files", str(bad), "--output-dir", str(tmp_path / "a")], r"bad.jsonl:3: answer .* is not at answer_start"),
        (["--train-files", str(train_file), "--eval-files", str(bad), "--output-dir", str(tmp_path / "b")],
         r"--eval-files: .*bad.jsonl:3"),
        (["--train-files", str(train_file), "--max-query-len", "4", "--output-dir", str(tmp_path / "c")],
         r"train.jsonl:1 \(id 'q0-0'\): the question is \d+ tokens long, more than max_query_len=4"),
        (["--train-files", str(train_file), "--teacher", str(assets.minilm_dir()), "--output-dir", str(tmp_path / "d")],
         "not a fine-tuned question-answering model"),
        (["--train-files", str(train_file), "--text-fields", "a", "--output-dir", str(tmp_path / "e")],
         "text_fields applies to task sequence-classification"),
    ]:
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and re.search(message, err), err
    assert main(["train", "--doc-stride", "8", "--teacher", str(teacher), "--train-files", str(train_file)]) == 2
    assert "doc_stride applies to task question-answering" in capsys.readouterr().err


# ---------------------------------------------------------------- DistillationTrainer


def test_distillation_trainer_on_question_answering_heads(tmp_path, qa_inputs):
    """compute_loss on a QA batch equals the task's loss on it (KL·T² + CE on start/end rows over real positions
    + cosine), and a few Trainer steps move the student, not the teacher."""
    from transformers import TrainingArguments, default_data_collator

    from distilx import DistillationTrainer

    teacher_dir, train_file, _ = qa_inputs
    teacher = load_qa_model(teacher_dir)
    student = init_qa_student(teacher, n_layers=2)
    options = dict(temperature=2.0, alpha_kl=1.0, alpha_mlm=0.5, alpha_cos=0.3)
    windows = QAWindows(read_qa_records([train_file]), teacher_dir, seq_len=64, doc_stride=16, max_query_len=32)
    dataset = [{k: v[0] for k, v in windows.batch([i], pad_to=64).items()} for i in range(16)]
    args = TrainingArguments(output_dir=str(tmp_path / "hf"), per_device_train_batch_size=4, max_steps=3,
                             learning_rate=1e-3, report_to=[], save_strategy="no", use_cpu=True, logging_steps=1)
    trainer = DistillationTrainer(model=student, teacher=teacher, args=args, train_dataset=dataset,
                                  data_collator=default_data_collator, **options)
    batch = windows.batch(range(6))
    assert not batch["attention_mask"].all()
    student.eval()
    got = trainer.compute_loss(student, batch)
    task = task_for("question-answering")
    config = TrainConfig(task="question-answering", alpha_cos=0.3)
    expected = task.loss(teacher, task.student_forward(student, dict(kl_on="tokens", backend="auto", **options), config),
                         batch, torch.device("cpu"), config)
    torch.testing.assert_close(got, expected.loss)
    before_s = {k: v.clone() for k, v in student.state_dict().items()}
    before_t = {k: v.clone() for k, v in teacher.state_dict().items()}
    trainer.train()
    assert any(not torch.equal(before_s[k], v) for k, v in student.state_dict().items())
    assert all(torch.equal(before_t[k], v) for k, v in teacher.state_dict().items())


# ---------------------------------------------------------------- the SQuAD asset


def test_the_squad_asset_is_the_official_v1_1_release():
    for split, path in assets.squad_v1().items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == assets.SQUAD_V1_SHA256[split]
    assert len(read_qa_records([assets.squad_v1()["dev"]])) == 10570  # every record passes the checks
