"""Task-stage distillation (issue 11): classifier students from the teacher, labelled data (labels, framing,
resumable batches), the loss on class logits, the evaluation metrics, and runs through the CLI."""

import json
import re

import pytest
import torch
import transformers
import torch.nn.functional as F
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForMaskedLM,
                          BertForSequenceClassification, DistilBertForSequenceClassification, pipeline)

from distilx import TrainConfig, assets, evaluate_classification, init_classifier_student, train
from distilx.cli import main
from distilx.distributed import DistEnv
from distilx.models.classification import load_classifier, pretrained_classifier_student
from distilx.tasks import task_for
from distilx.tasks.labelled_data import ClassificationBatches, LabelledExamples, LabelSet, read_examples
from tiny_models import ARCHITECTURES, AVAILABLE, CLS, MASK, PAD, SEP, VOCAB, declared_ids
from pipeline_helpers import classification_config, kernel_doc_slice, make_tiny_classifier

LABELS = ("admin-guide", "driver-api", "filesystems", "hwmon", "networking", "trace", "userspace-api", "virt")
SMALL = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=48,
             max_position_embeddings=66, id2label=dict(enumerate(LABELS[:3])))
# every architecture of the adapter table (tests/tiny_models.py; not the generic fallback's, which serves
# masked-LM teachers only), as a tiny random …ForSequenceClassification
TABLE_ARCHITECTURES = [name for name in AVAILABLE if name not in ("bert", "mpnet", "roformer")]


def tiny_classifier(name: str) -> torch.nn.Module:
    model_class, config_class, kwargs = ARCHITECTURES[name]
    config = getattr(transformers, config_class)(**kwargs, vocab_size=VOCAB, **declared_ids(name, PAD, CLS, SEP, MASK),
                                                 id2label=dict(enumerate(LABELS[:3])))
    return getattr(transformers, model_class.replace("ForMaskedLM", "ForSequenceClassification"))(config)


@pytest.fixture(scope="module")
def kernel_docs(tmp_path_factory):
    """(labels, train.jsonl, held-out.jsonl): a slice of the kernel-documentation task."""
    return kernel_doc_slice(tmp_path_factory.mktemp("kernel-docs"))


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory, kernel_docs):
    return make_tiny_classifier(tmp_path_factory.mktemp("classifier") / "teacher", kernel_docs[0])


def real_pairs(n=6):
    """Pairs of real kernel-doc paragraphs of different lengths (some truncated at 32 tokens)."""
    lines = assets.kernel_doc_classification()["dev"].read_text().splitlines()[:2 * n]
    texts = [json.loads(line)["text"] for line in lines]
    return list(zip(texts[::2], texts[1::2]))


def minilm_classifier(num_labels=5, seed=0):
    """all-MiniLM-L6-v2 (real weights) with a seeded classification head."""
    torch.manual_seed(seed)
    return BertForSequenceClassification.from_pretrained(str(assets.minilm_dir()), num_labels=num_labels).eval()


# ---------------------------------------------------------------- students from the teacher


def test_bert_keeping_every_layer_reproduces_the_class_logits_on_text_pairs():
    teacher = minilm_classifier()
    student = init_classifier_student(teacher, layers=list(range(6))).eval()
    assert type(student) is BertForSequenceClassification  # docs/tasks.md: why not DistilBERT's classifier
    tokenizer = AutoTokenizer.from_pretrained(str(assets.minilm_dir()))
    a, b = zip(*real_pairs(), ("A short first text.", "And a second."))
    inputs = tokenizer(list(a), list(b), truncation=True, max_length=32, padding=True, return_tensors="pt")
    assert inputs["token_type_ids"].any() and not inputs["attention_mask"].all()  # segment B and padding present
    with torch.no_grad():
        expected, got = teacher(**inputs).logits, student(**inputs).logits
    assert expected.abs().max() > 0.05  # a head that says something
    assert (got - expected).abs().max() < 1e-4


@pytest.mark.parametrize("name", TABLE_ARCHITECTURES)
def test_other_architectures_keeping_every_layer_reproduce_the_class_logits(name):
    torch.manual_seed(0)
    teacher = tiny_classifier(name).eval()
    with torch.no_grad():
        for p in teacher.parameters():  # away from the init's tiny head: logits of a useful size
            p.add_(torch.randn_like(p) * 0.05)
    student = init_classifier_student(teacher, layers=[0, 1, 2, 3]).eval()
    assert type(student) is type(teacher)
    ids = torch.randint(5, 30000, (3, 20), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    ids[1, 12:] = teacher.config.pad_token_id
    with torch.no_grad():
        expected = teacher(input_ids=ids, attention_mask=mask).logits
        got = student(input_ids=ids, attention_mask=mask).logits
    assert expected.abs().max() > 0.05
    assert (got - expected).abs().max() < 1e-4


def test_half_depth_student_copies_the_kept_layers_and_the_whole_head():
    teacher = minilm_classifier()
    student = init_classifier_student(teacher, n_layers=3)
    assert student.config.distilx_teacher_layers == [0, 3, 5] and student.config.num_hidden_layers == 3
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for key, value in s_state.items():
        if key.startswith("bert.encoder.layer."):
            index, rest = key[len("bert.encoder.layer."):].split(".", 1)
            source = f"bert.encoder.layer.{[0, 3, 5][int(index)]}.{rest}"
        else:  # embeddings, pooler, classifier
            source = key
        assert torch.equal(value, t_state[source]), key
    assert {"bert.pooler.dense.weight", "classifier.weight", "classifier.bias"} <= set(s_state)
    assert student.config.id2label == teacher.config.id2label


def test_random_init_and_masked_lm_teachers_are_told_apart(tmp_path, tiny_teacher, kernel_docs):
    # the MiniLM folder holds a bare BertModel: no classification head
    with pytest.raises(ValueError, match="not a fine-tuned classifier.*BertModel"):
        load_classifier(assets.minilm_dir())
    # regression and multi-label heads are served (tests/test_multilabel_regression.py); a multi-output
    # regression head is not
    regression = BertForSequenceClassification(BertConfig(**SMALL, problem_type="regression"))
    with pytest.raises(ValueError, match="regression heads with one output"):
        init_classifier_student(regression)
    config = classification_config(tiny_teacher, kernel_docs[1], kernel_docs[2], tmp_path / "r", max_steps=1,
                                   eval_batches=0, student_init="random")
    student = train(config).student
    teacher = load_classifier(tiny_teacher)
    assert not torch.equal(student.classifier.weight, teacher.classifier.weight)


# ---------------------------------------------------------------- labelled files


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_labels_by_name_or_id_in_jsonl_and_csv(tmp_path):
    labels = LabelSet(LABELS[:3])
    jsonl = write(tmp_path / "a.jsonl", '{"t": "x", "y": "filesystems"}\n\n{"t": "y", "y": 1}\n')
    csv = write(tmp_path / "b.csv", 't,y\n"a, quoted, text",admin-guide\nz,2\n')
    texts, ids = read_examples([jsonl, csv], ["t"], "y", labels)
    assert texts == [("x",), ("y",), ("a, quoted, text",), ("z",)]
    assert ids == [2, 1, 0, 2]
    pairs = write(tmp_path / "p.jsonl", '{"q": "first", "a": "second", "label": 0}\n')
    assert read_examples([pairs], ["q", "a"], "label", labels) == ([("first", "second")], [0])


@pytest.mark.parametrize("content, message", [
    ('{"text": "a", "label": "admin-guide"}\n{"text": "b", "label": "kernel"}\n',
     r"b.jsonl:2: label 'kernel' is not one the teacher knows: its labels .* are \['admin-guide', 'driver-api', "
     r"'filesystems'\], or their ids 0..2"),
    ('{"text": "a", "label": 3}\n', r"b.jsonl:1: label 3 is not one"),
    ('{"text": "a", "label": true}\n', r"b.jsonl:1: label True is not one"),
    ('{"text": "a", "label": 1.0}\n', r"b.jsonl:1: label 1.0 is not one"),
    ('{"text": "a", "label": "1 "}\n', r"b.jsonl:1: label '1 ' is not one"),
    ('{"body": "a", "label": 0}\n', r"b.jsonl:1: no field 'text' \(fields here: \['body', 'label'\]\).*--text-fields"),
    ('{"text": "a"}\n', r"b.jsonl:1: no field 'label'.*--label-field"),
    ('{"text": 7, "label": 0}\n', r"b.jsonl:1: field 'text' holds 7, not a text"),
    ('{"text": "a", "label": 0}\n{"text": "b", "label": 0\n', r"b.jsonl:2: not valid JSON"),
    ('["a", 0]\n', r"b.jsonl:1: a JSON list, not an object"),
])
def test_bad_labelled_lines_name_the_file_and_line(tmp_path, content, message):
    path = write(tmp_path / "b.jsonl", content)
    with pytest.raises(ValueError, match=message):
        read_examples([path], ["text"], "label", LabelSet(LABELS[:3]))


def test_bad_csv_and_files_are_named(tmp_path):
    labels = LabelSet(LABELS[:3])
    with pytest.raises(ValueError, match=r"c.csv:3: label 'nine' is not one"):
        read_examples([write(tmp_path / "c.csv", "text,label\na,0\nb,nine\n")], ["text"], "label", labels)
    with pytest.raises(ValueError, match=r"d.csv:2: 3 cells but the header names 2 columns"):
        read_examples([write(tmp_path / "d.csv", "text,label\na,0,extra\n")], ["text"], "label", labels)
    with pytest.raises(ValueError, match=r"e.txt: labelled files must be .jsonl or .csv"):
        read_examples([write(tmp_path / "e.txt", "a\n")], ["text"], "label", labels)
    with pytest.raises(FileNotFoundError, match="missing.jsonl"):
        read_examples([tmp_path / "missing.jsonl"], ["text"], "label", labels)
    with pytest.raises(ValueError, match="one field .* or two"):
        read_examples([], ["a", "b", "c"], "label", labels)


@pytest.mark.parametrize("pair", [False, True])
def test_framing_is_the_tokenizers_librarys(tmp_path, pair):
    """Ids and segment ids as the `tokenizers` library frames and truncates them (longest_first for pairs)."""
    from tokenizers import Tokenizer

    pairs = real_pairs(20)
    path = write(tmp_path / "x.jsonl", "".join(json.dumps({"a": a, "b": b, "label": 0}) + "\n" for a, b in pairs))
    examples = LabelledExamples([path], assets.minilm_dir(), text_fields=["a", "b"] if pair else ["a"],
                                label_field="label", labels=LabelSet(LABELS[:3]), seq_len=32)
    oracle = Tokenizer.from_file(str(assets.minilm_tokenizer_json()))
    oracle.no_padding()
    oracle.enable_truncation(max_length=32)
    truncated = 0
    for i, (a, b) in enumerate(pairs):
        expected = oracle.encode(a, b) if pair else oracle.encode(a)
        assert examples.features["input_ids"][i] == expected.ids
        assert examples.features["token_type_ids"][i] == expected.type_ids
        truncated += len(oracle.encode(a, b) if pair else oracle.encode(a)) == 32
    assert truncated > 3  # truncation was exercised
    batch = examples.batch([0, 1, 2])
    lengths = [len(examples.features["input_ids"][i]) for i in range(3)]
    assert batch["input_ids"].shape == (3, max(lengths)) and batch["attention_mask"].sum(1).tolist() == lengths
    assert (batch["input_ids"][batch["attention_mask"] == 0] == 0).all()  # [PAD] is id 0


# ---------------------------------------------------------------- resumable batches


def test_batches_shuffle_per_epoch_split_across_ranks_and_resume(kernel_docs, tmp_path):
    # real paragraphs, each made unique by its line number (the corpus repeats some paragraphs)
    records = [json.loads(line) for line in kernel_docs[1].read_text().splitlines()]
    numbered = write(tmp_path / "n.jsonl", "".join(json.dumps({**r, "text": f"{i} {r['text']}"}) + "\n"
                                                   for i, r in enumerate(records)))
    examples = LabelledExamples([numbered], assets.minilm_dir(), text_fields=["text"], label_field="label",
                                labels=LabelSet(kernel_docs[0]), seq_len=24)
    index = {tuple(ids): i for i, ids in enumerate(examples.features["input_ids"])}
    assert len(index) == len(examples)

    def ids_of(batch):
        return [index[tuple(row[mask.bool()].tolist())] for row, mask in zip(batch["input_ids"],
                                                                             batch["attention_mask"])]

    one = ClassificationBatches(examples, batch_size=8, seed=5)
    assert one.batches_per_epoch == len(examples) // 8
    epoch0 = [i for b in one for i in ids_of(b)]
    epoch1 = [i for b in one for i in ids_of(b)]
    assert len(set(epoch0)) == len(epoch0) == 8 * one.batches_per_epoch  # no example twice in an epoch
    assert epoch0 != epoch1 and one.epoch == 2

    ranks = [ClassificationBatches(examples, batch_size=8, seed=5, rank=r, world_size=2) for r in (0, 1)]
    seen = [[i for b in stream for i in ids_of(b)] for stream in ranks]
    assert ranks[0].batches_per_epoch == ranks[1].batches_per_epoch == len(examples) // 16
    assert len(seen[0]) == len(seen[1]) and not set(seen[0]) & set(seen[1])

    # a position taken mid-epoch (and one at an epoch's end) continues exactly
    for cut in (3, one.batches_per_epoch):
        stream = ClassificationBatches(examples, batch_size=8, seed=5)
        it = iter(stream)
        for _ in range(cut):
            next(it)
        state = json.loads(json.dumps(stream.state_dict()))  # plain data
        rest = [ids_of(b) for b in it] + [ids_of(b) for b in stream][:2]
        resumed = ClassificationBatches(examples, batch_size=8, seed=5)
        resumed.load_state_dict(state)
        again = [ids_of(b) for b in resumed] + [ids_of(b) for b in resumed][:2]
        assert again == rest
    with pytest.raises(ValueError, match="saved for"):
        ClassificationBatches(examples, batch_size=4, seed=5).load_state_dict(state)


# ---------------------------------------------------------------- the loss


def test_training_loss_on_class_logits_is_the_plain_formula(tmp_path, kernel_docs):
    """What the loop computes for a batch (the task's loss: the teacher's side, then the student's forward with
    distillation_loss) equals KL(T)·T² + CE + cosine written out in PyTorch from the models' own outputs, with
    non-default weights."""
    labels, train_file, heldout = kernel_docs
    teacher = load_classifier(make_tiny_classifier(tmp_path / "t", labels, dropout=0.0))
    with torch.no_grad():
        teacher.classifier.weight.mul_(40)  # confident class logits
    torch.manual_seed(2)
    student = init_classifier_student(teacher, n_layers=2)
    student = type(student)(student.config).eval()  # far from the teacher: every term well above noise
    temperature, weights = 3.0, dict(alpha_kl=0.6, alpha_mlm=1.7, alpha_cos=0.8)
    config = classification_config(tmp_path / "t", train_file, heldout, tmp_path / "run", temperature=temperature,
                                   **weights)
    task = task_for("sequence-classification")
    batch = next(iter(task.make_stream(config, None, DistEnv(0, 1, 0, torch.device("cpu")), teacher)))
    assert not batch["attention_mask"].all()
    loss_options = dict(temperature=temperature, kl_on="tokens", backend="torch", **weights)
    out = task.loss(teacher, task.student_forward(student, loss_options, config), batch, torch.device("cpu"), config)

    with torch.no_grad():
        s = student(**{k: v for k, v in batch.items() if k != "labels"}, output_hidden_states=True)
        t = teacher(**{k: v for k, v in batch.items() if k != "labels"}, output_hidden_states=True)
    s_log, t_log = s.logits.double(), t.logits.double()
    p_t = torch.softmax(t_log / temperature, -1)
    kl = (p_t * (p_t.log() - torch.log_softmax(s_log / temperature, -1))).sum(-1).mean() * temperature ** 2
    ce = F.cross_entropy(s_log, batch["labels"])
    real = batch["attention_mask"].bool()
    cos = 1 - F.cosine_similarity(s.hidden_states[-1][real].double(), t.hidden_states[-1][real].double(), dim=-1)
    assert min(kl, ce, cos.mean()) > 0.05
    torch.testing.assert_close(out.kl.double(), kl, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.mlm.double(), ce, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.cos.double(), cos.mean(), rtol=1e-5, atol=1e-6)
    expected = weights["alpha_kl"] * kl + weights["alpha_mlm"] * ce + weights["alpha_cos"] * cos.mean()
    torch.testing.assert_close(out.loss.double(), expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- evaluation


def macro_f1_by_hand(predicted, gold):
    """Per class from a confusion matrix: precision, recall, F1 (0 when undefined), averaged over the classes
    seen in gold or predictions (scikit-learn's macro average)."""
    classes = sorted(set(gold) | set(predicted))
    matrix = {(g, p): 0 for g in classes for p in classes}
    for g, p in zip(gold, predicted):
        matrix[g, p] += 1
    scores = []
    for c in classes:
        tp = matrix[c, c]
        precision = tp / sum(matrix[g, c] for g in classes) if sum(matrix[g, c] for g in classes) else 0.0
        recall = tp / sum(matrix[c, p] for p in classes) if sum(matrix[c, p] for p in classes) else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(scores) / len(scores)


def test_eval_metrics_equal_a_plain_recomputation(tmp_path, kernel_docs):
    labels, _, all_heldout = kernel_docs
    heldout = write(tmp_path / "heldout.jsonl", "".join(all_heldout.read_text().splitlines(True)[::3]))
    teacher_dir = make_tiny_classifier(tmp_path / "t", labels, dropout=0.0, seed=3)
    teacher = load_classifier(teacher_dir)
    torch.manual_seed(0)
    with torch.no_grad():  # a random tiny model predicts one class for every text: spread its predictions
        for name, p in teacher.named_parameters():
            if "LayerNorm" not in name:
                p.add_(torch.randn_like(p) * 0.3)
        teacher.classifier.weight.mul_(40)
    student = init_classifier_student(teacher, n_layers=2).eval()
    metrics = evaluate_classification(teacher, student, heldout, teacher_dir, seq_len=40, batch_size=16)

    tokenizer = AutoTokenizer.from_pretrained(str(teacher_dir))
    records = [json.loads(line) for line in heldout.read_text().splitlines()]
    gold = [labels.index(r["label"]) for r in records]
    predictions = {}
    for name, model in (("teacher", teacher), ("student", student)):
        with torch.no_grad():  # one example at a time: no padding involved
            predictions[name] = [int(model(**tokenizer(r["text"], truncation=True, max_length=40,
                                                          return_tensors="pt")).logits.argmax())
                                 for r in records]
    assert len(set(predictions["teacher"])) > 2 and len(set(predictions["student"])) > 2
    assert predictions["teacher"] != predictions["student"]
    assert metrics["examples"] == len(records)
    for name in ("teacher", "student"):
        p = predictions[name]
        assert metrics[f"{name}_accuracy"] == pytest.approx(sum(a == b for a, b in zip(p, gold)) / len(gold))
        assert metrics[f"{name}_macro_f1"] == pytest.approx(macro_f1_by_hand(p, gold))
    assert metrics["accuracy_retention"] == pytest.approx(metrics["student_accuracy"] / metrics["teacher_accuracy"])
    assert metrics["agreement"] == pytest.approx(
        sum(a == b for a, b in zip(predictions["teacher"], predictions["student"])) / len(gold))
    assert metrics["student_params"] == sum(p.numel() for p in student.parameters()) < metrics["teacher_params"]
    assert (metrics["teacher_layers"], metrics["student_layers"]) == (4, 2)
    assert metrics["speedup"] == pytest.approx(metrics["teacher_forward_s"] / metrics["student_forward_s"])


# ---------------------------------------------------------------- runs


def metric_lines(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_cli_run_resumes_exactly_and_the_output_is_a_transformers_classifier(tmp_path, tiny_teacher, kernel_docs,
                                                                           capsys):
    _, train_file, heldout = kernel_docs
    flags = ["--task", "sequence-classification", "--teacher", str(tiny_teacher), "--train-files", str(train_file),
             "--eval-files", str(heldout), "--student-layers", "2", "--seq-len", "48", "--batch-size", "8",
             "--max-steps", "6", "--save-every", "3", "--log-every", "1", "--eval-batches", "2", "--seed", "7",
             "--device", "cpu", "--progress", "false", "--tensorboard", "false"]
    assert main(["train", *flags, "--output-dir", str(tmp_path / "full")]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "macro-F1" in printed and "retention" in printed
    # the same run killed after step 4 (its last checkpoint: step 3), then resumed through the CLI
    cut = TrainConfig.load(tmp_path / "full" / "train_config.json").override({"output_dir": str(tmp_path / "cut")})
    assert train(cut, stop_after=4).steps == 4
    assert main(["train", "--config", str(tmp_path / "cut" / "train_config.json"), "--resume"]) == 0
    assert "resuming from step 3" in capsys.readouterr().out
    full, resumed = metric_lines(tmp_path / "full"), metric_lines(tmp_path / "cut")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6] and "ce" in resumed[0] and "mlm" not in resumed[0]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in full]  # bit-identical on CPU, dropout included
    assert len({r["loss"] for r in full}) > 1
    a = AutoModelForSequenceClassification.from_pretrained(tmp_path / "full")
    b = AutoModelForSequenceClassification.from_pretrained(tmp_path / "cut")
    assert type(a) is BertForSequenceClassification and a.config.num_hidden_layers == 2
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert a.config.id2label == load_classifier(tiny_teacher).config.id2label
    summary = json.loads((tmp_path / "full" / "metrics.json").read_text())
    assert summary["eval"]["examples"] == 16 and summary["eval"]["student_layers"] == 2
    assert (tmp_path / "full" / "loss_curves.png").stat().st_size > 1000
    classify = pipeline("text-classification", model=str(tmp_path / "full"))
    (prediction,) = classify("The ext4 journal is replayed at mount time.")
    assert prediction["label"] in a.config.id2label.values()

    capsys.readouterr()
    assert main(["eval", "--task", "sequence-classification", "--teacher", str(tiny_teacher), "--student",
                 str(tmp_path / "full"), "--files", str(heldout), "--seq-len", "48",
                 "--json", str(tmp_path / "eval.json")]) == 0
    printed = capsys.readouterr().out
    table, _, text = printed.partition("\n{")
    assert "student/teacher accuracy retention" in table
    metrics = json.loads("{" + text)
    assert metrics == json.loads((tmp_path / "eval.json").read_text())
    assert metrics["examples"] == len(heldout.read_text().splitlines())  # every example by default


def test_a_student_of_another_label_set_is_refused(tmp_path, tiny_teacher, kernel_docs):
    """Training (a ready student object) and evaluation refuse a classifier whose labels are not the
    teacher's, before any step or prediction."""
    labels, train_file, heldout = kernel_docs
    other = make_tiny_classifier(tmp_path / "other", tuple(reversed(labels)))
    with pytest.raises(ValueError, match="student's labels .* are not the teacher's"):
        evaluate_classification(tiny_teacher, other, [heldout])
    config = classification_config(tiny_teacher, train_file, heldout, tmp_path / "run")
    with pytest.raises(ValueError, match="student's labels .* are not the teacher's"):
        train(config, student=load_classifier(other).train())
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_cli_classification_errors_are_one_line(tmp_path, tiny_teacher, kernel_docs, capsys):
    _, train_file, _ = kernel_docs
    bad = write(tmp_path / "bad.jsonl", '{"text": "a", "label": "admin-guide"}\n{"text": "b", "label": "misc"}\n')
    base = ["train", "--task", "sequence-classification", "--teacher", str(tiny_teacher), "--device", "cpu",
            "--max-steps", "1"]
    for extra, message in [
        (["--train-files", str(bad), "--output-dir", str(tmp_path / "a")], "bad.jsonl:2: label 'misc'"),
        (["--train-files", str(train_file), "--eval-files", str(bad), "--output-dir", str(tmp_path / "b")],
         "--eval-files: .*bad.jsonl:2"),
        (["--train-files", str(train_file), "--packing", "true", "--output-dir", str(tmp_path / "c")],
         "packing applies to task masked-lm"),
        (["--train-files", str(train_file), "--teacher", str(assets.minilm_dir()), "--output-dir", str(tmp_path / "d")],
         "not a fine-tuned classifier"),
    ]:
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and re.search(message, err), err


def test_distil_while_fine_tuning_from_pre_trained_students(tmp_path, tiny_teacher, kernel_docs):
    """A pre-trained (not fine-tuned) student folder + the fine-tuned teacher, the same command. A student of
    another class (DistilBERT) starts with a fresh head; one of the teacher's class gets the teacher's."""
    from distilx import init_student
    from distilx.models import load_teacher
    from pipeline_helpers import make_tiny_teacher

    _, train_file, heldout = kernel_docs
    teacher = load_classifier(tiny_teacher)
    mlm_teacher = load_teacher(make_tiny_teacher(tmp_path / "mlm-teacher"))
    folders = {"distilbert": tmp_path / "distil-mlm", "bert": tmp_path / "bert-mlm"}
    init_student(mlm_teacher, n_layers=2).save_pretrained(folders["distilbert"])  # a DistilBertForMaskedLM
    torch.manual_seed(4)
    BertForMaskedLM(BertConfig(**{**SMALL, "num_hidden_layers": 2, "max_position_embeddings": 128})).save_pretrained(
        folders["bert"])
    for name, folder in folders.items():
        torch.manual_seed(0)
        student = pretrained_classifier_student(folder, teacher)
        pre_trained = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=8).state_dict()
        encoder = [k for k in student.state_dict() if k.startswith(("distilbert.transformer", "bert.encoder"))]
        assert encoder and all(torch.equal(student.state_dict()[k], pre_trained[k]) for k in encoder)
        head = student.config.distilx_head_from_teacher
        if name == "distilbert":
            assert type(student) is DistilBertForSequenceClassification and head == []
        else:
            assert head == ["bert.pooler.dense.bias", "bert.pooler.dense.weight", "classifier.bias", "classifier.weight"]
            assert all(torch.equal(student.state_dict()[k], teacher.state_dict()[k]) for k in head)
        config = classification_config(tiny_teacher, train_file, heldout, tmp_path / f"run-{name}", student=str(folder),
                                       student_layers=None, max_steps=2, eval_batches=1)
        result = train(config)
        assert type(result.student) is type(student) and result.steps == 2
        assert result.eval_metrics["student_layers"] == 2
    with pytest.raises(ValueError, match="pre-trained student"):  # student_layers=2 would initialise another
        classification_config(tiny_teacher, train_file, heldout, tmp_path / "x", student=str(folders["bert"])).validated()
