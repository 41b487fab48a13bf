"""`distilx finetune`: a fresh classification head on a pre-trained encoder, trained on the gold labels by the
distillation loop, whose output is a teacher `distilx train --task sequence-classification` takes."""

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from distilx.cli import main
from distilx.classification_eval import accuracy, predict
from distilx.config import TrainConfig
from distilx.finetune import finetune, finetune_config
from distilx.models.classification import classifier_to_fine_tune, load_classifier
from distilx.tasks.labelled_data import LabelledExamples, LabelSet, labels_in_files
from pipeline_helpers import kernel_doc_slice, make_tiny_classifier, make_tiny_teacher


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("finetune")
    labels, train, test = kernel_doc_slice(root, every=100)
    return root, labels, train, test, make_tiny_teacher(root / "mlm-encoder", layers=2)


def base_flags(train, out):
    return ["--train-files", str(train), "--output-dir", str(out), "--seq-len", "32", "--batch-size", "8",
            "--progress", "false", "--tensorboard", "false", "--log-every", "1", "--save-every", "2"]


def test_cli_fine_tunes_a_teacher_that_train_then_distils(data, capsys):
    root, labels, train, test, encoder = data
    out = root / "teacher"
    assert main(["finetune", "--model", str(encoder), *base_flags(train, out), "--eval-files", str(test),
                 "--max-steps", "4", "--eval-batches", "3", "--lr", "1e-3"]) == 0
    printed = capsys.readouterr().out
    assert f"fine-tuned model saved to {out} after 4 steps" in printed

    model = load_classifier(out)  # a fine-tuned classifier folder: every tensor present, labels in config.json
    assert list(LabelSet.of(model.config).names) == list(labels)  # the train file's labels, sorted
    # the gold-label loss alone: no KL, no cosine, the loss is the cross-entropy
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [1, 2, 3, 4]
    assert all(r["kl"] == 0 and r["cos"] == 0 and r["loss"] == pytest.approx(r["ce"]) for r in logged)
    # the encoder learnt from the folder's weights (the word embeddings are the encoder's, moved a little)
    encoder_words = load_file(encoder / "model.safetensors")["bert.embeddings.word_embeddings.weight"]
    words = model.bert.embeddings.word_embeddings.weight.detach()
    assert (words - encoder_words).abs().max() < 0.05 and not torch.equal(words, encoder_words)

    # the evaluation printed and recorded is the model's accuracy on the first 3 x 8 held-out examples
    summary = json.loads((out / "metrics.json").read_text())
    examples = LabelledExamples([test], out, text_fields=["text"], label_field="label",
                                labels=LabelSet.of(model.config), seq_len=32)
    gold = examples.labels[:24]
    expected = accuracy(predict(model, examples, batch_size=8, max_batches=3), gold)
    assert summary["eval"]["examples"] == 24 and summary["eval"]["teacher_accuracy"] == pytest.approx(expected)
    assert f"{expected:.1%}" in printed and "model" in printed.splitlines()[0]
    saved = TrainConfig.load(out / "train_config.json")
    assert saved.eval_batches == 3 and saved.alpha_kl == 0 and saved.teacher == str(encoder)

    # the output is a teacher of task-stage distillation
    assert main(["train", "--task", "sequence-classification", "--teacher", str(out), *base_flags(train, root / "student"),
                 "--student-layers", "1", "--max-steps", "1", "--eval-batches", "0"]) == 0
    assert "student saved to" in capsys.readouterr().out


def test_the_head_is_fresh_and_the_encoder_is_the_folders(data, tmp_path):
    root, labels, train, _, encoder = data
    # a classifier folder as the starting point: its encoder is kept, its head is not
    old = make_tiny_classifier(tmp_path / "old-classifier", ("x", "y", "z"), layers=2)
    model = classifier_to_fine_tune(old, list(labels), seed=3)
    old_state = load_file(old / "model.safetensors")
    state = model.state_dict()
    layer = "bert.encoder.layer.1.attention.self.query.weight"
    assert torch.equal(state[layer], old_state[layer]) and torch.equal(state["bert.pooler.dense.weight"],
                                                                       old_state["bert.pooler.dense.weight"])
    assert state["classifier.weight"].shape == (len(labels), 32)
    again = classifier_to_fine_tune(old, list(labels), seed=3).state_dict()
    other = classifier_to_fine_tune(old, list(labels), seed=4).state_dict()
    assert torch.equal(again["classifier.weight"], state["classifier.weight"])  # seeded
    assert not torch.equal(other["classifier.weight"], state["classifier.weight"])
    same_shape = classifier_to_fine_tune(old, ["x", "y", "z"], seed=3).state_dict()
    assert not torch.equal(same_shape["classifier.weight"], old_state["classifier.weight"])  # fresh even then
    # a masked-LM folder: its encoder, with BERT's pooler and the classifier new
    from_mlm = classifier_to_fine_tune(encoder, list(labels), seed=0).state_dict()
    mlm_state = load_file(encoder / "model.safetensors")
    assert torch.equal(from_mlm[layer], mlm_state[layer])


def test_labels_come_from_the_train_files_in_a_documented_order(tmp_path):
    def write(name, rows):
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    text = write("text.jsonl", [{"text": "a", "label": "zeta"}, {"text": "b", "label": "alpha"},
                                {"text": "c", "label": "Mid"}])
    assert labels_in_files([text], "label") == ["Mid", "alpha", "zeta"]  # sorted as text
    ints = write("ints.jsonl", [{"text": "a", "label": 2}, {"text": "b", "label": "0"}])
    assert labels_in_files([ints], "label") == ["0", "1", "2"]  # integers: ids 0..max keep their meaning
    csv = tmp_path / "ints.csv"
    csv.write_text("text,label\na,3\nb,1\n")
    assert labels_in_files([csv], "label") == ["0", "1", "2", "3"]
    bad = write("bad.jsonl", [{"text": "a", "label": 1.5}])
    with pytest.raises(ValueError, match=r"bad.jsonl:1: label 1.5 is neither a name nor an integer id"):
        labels_in_files([bad], "label")
    with pytest.raises(ValueError, match="no field 'tag'"):
        labels_in_files([text], "tag")


def test_labels_given_and_bad_requests_are_one_line_errors(data, capsys, tmp_path):
    root, labels, train, _, encoder = data
    config = finetune_config({"train_files": [str(train)], "output_dir": str(tmp_path / "given"), "max_steps": 1,
                              "labels": list(reversed(labels)), "seq_len": 32, "batch_size": 8, "progress": False,
                              "tensorboard": False})
    result = finetune(encoder, config, log=lambda *_: None)
    assert list(LabelSet.of(load_classifier(result.output_dir).config).names) == list(reversed(labels))
    capsys.readouterr()  # transformers' own loading bars (the CLI hides them)

    flags = base_flags(train, tmp_path / "o")
    cases = [(["--task", "masked-lm"], "task masked-lm cannot fine-tune a teacher"),
             (["--labels", "only-one"], "needs at least two classes"),
             (["--labels", "admin-guide,virt"], "is not one the teacher knows"),
             ]
    for extra, message in cases:
        assert main(["finetune", "--model", str(encoder), *flags, "--max-steps", "1", *extra]) == 2
        err = capsys.readouterr().err
        assert message in err and err.startswith("distilx finetune: error:") and "Traceback" not in err, extra
    assert main(["finetune", "--model", str(tmp_path / "missing"), *flags]) == 2
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "ft.toml").write_text("alpha_kl = 1.0\ntemperature = 3.0\n")
    assert main(["finetune", "--model", str(encoder), "--config", str(tmp_path / "ft.toml"), *flags]) == 2
    assert "temperature, alpha_kl describe a teacher or a distilled student" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # not a flag of finetune at all
        main(["finetune", "--model", str(encoder), "--teacher", str(encoder), *flags])
    assert "unrecognized arguments: --teacher" in capsys.readouterr().err


def test_finetune_defaults_and_a_config_file(tmp_path):
    (tmp_path / "ft.toml").write_text("seq_len = 64\n")
    config = finetune_config({"max_steps": 5}, tmp_path / "ft.toml")
    assert (config.task, config.lr, config.warmup_ratio, config.seq_len, config.max_steps) == \
        ("sequence-classification", 5e-5, 0.1, 64, 5)
    assert finetune_config({"lr": 5e-4}).lr == 5e-4  # an explicit value equal to train's default is kept


def test_outputs_share_the_umasks_permissions(data, tmp_path):
    root, labels, train, _, encoder = data
    old = os.umask(0o027)
    try:
        config = finetune_config({"train_files": [str(train)], "output_dir": str(tmp_path / "run"), "max_steps": 1,
                                  "seq_len": 32, "batch_size": 8, "progress": False, "tensorboard": False})
        finetune(encoder, config)
    finally:
        os.umask(old)
    out = tmp_path / "run"
    files = [p for p in out.rglob("*") if p.is_file() and p.name != ".distilx.lock"]
    assert out / "model.safetensors" in files and any(p.parent.parent.name == "checkpoints" for p in files)
    modes = {p.relative_to(out).as_posix(): oct(p.stat().st_mode & 0o777) for p in files}
    assert set(modes.values()) == {oct(0o640)}, modes  # safetensors alone would write 0600


def test_cli_fine_tunes_a_token_classifier_and_resumes_from_the_folder_alone(data, capsys, tmp_path):
    """--task token-classification through the same command: the tags of the CoNLL file in tag_order, a fresh
    classifier on the encoder; `--output-dir OUT --resume` with more steps continues it from its own config."""
    from distilx import assets
    from distilx.models.token_classification import load_token_classifier
    from distilx.tasks.tagged_data import read_sentences, tag_order

    _, _, _, _, encoder = data
    sentences = read_sentences([assets.conll2003_english()["train"]])[:24]
    conll = tmp_path / "train.conll"
    conll.write_text("\n\n".join("\n".join(f"{w} X X {t}" for w, t in zip(s.words, s.tags)) for s in sentences) + "\n")
    out = tmp_path / "tagger"
    flags = ["--task", "token-classification", "--train-files", str(conll), "--output-dir", str(out), "--seq-len",
             "64", "--batch-size", "4", "--progress", "false", "--tensorboard", "false", "--log-every", "1",
             "--save-every", "2", "--lr", "1e-3"]
    assert main(["finetune", "--model", str(encoder), *flags, "--max-steps", "2"]) == 0
    model = load_token_classifier(out)
    tags = {t for s in sentences for t in s.tags}
    assert list(model.config.id2label.values()) == sorted(tags, key=tag_order) and model.config.id2label[0] == "O"
    # the folder alone (no --model, no --config): its train_config.json, the steps extended
    assert main(["finetune", "--output-dir", str(out), "--resume", "--max-steps", "3"]) == 0
    assert "after 3 steps" in capsys.readouterr().out
    logged = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert logged == [1, 2, 3]
    # a flag that changes what defines the run is named, not silently applied
    assert main(["finetune", "--output-dir", str(out), "--resume", "--seq-len", "32"]) == 2
    assert "seq_len" in capsys.readouterr().err
    assert main(["finetune", "--output-dir", str(tmp_path / "none"), "--resume"]) == 2
    assert "--model ENCODER_FOLDER is required" in capsys.readouterr().err
