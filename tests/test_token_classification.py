"""Token classification (issue 19): tagged files (.jsonl, CoNLL), word/sub-token alignment against the Hugging
Face example's rule, students that reproduce the teacher, the loss on labelled positions, entity scoring
against seqeval, runs through the CLI (exact resume, pipeline()), and the `finetune_model` hook."""

import json
import random
import re
import shutil
import warnings
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import transformers
from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, BertForTokenClassification, pipeline

from distilx import TrainConfig, assets, train
from distilx.cli import main
from distilx.distributed import DistEnv
from distilx.entity_scores import detect_scheme, entity_scores, token_accuracy
from distilx.models.token_classification import (init_token_classifier_student, load_token_classifier,
                                                 pretrained_token_classifier_student)
from distilx.tasks import task_for
from distilx.tasks.labelled_data import LabelSet
from distilx.tasks.tagged_data import TaggedExamples, read_sentences
from distilx.token_classification_eval import evaluate_token_classification
from pipeline_helpers import TOKENIZER_FILES
from tiny_models import ARCHITECTURES, AVAILABLE, CLS, MASK, PAD, SEP, VOCAB, declared_ids

TAGS = ("O", "B-LOC", "I-LOC", "B-MISC", "I-MISC", "B-ORG", "I-ORG", "B-PER", "I-PER")
TABLE_ARCHITECTURES = [name for name in AVAILABLE if name not in ("bert", "mpnet", "roformer")]


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def conll_slice(path, sentences, skip=0):
    """The first `sentences` sentences (after `skip`) of a real CoNLL-2003 split, as a CoNLL file."""
    chosen = read_sentences([assets.conll2003_english()["train"]])[skip:skip + sentences]
    return write(path, "\n\n".join("\n".join(f"{w} X X {t}" for w, t in zip(s.words, s.tags)) for s in chosen) + "\n")


def make_tiny_token_classifier(folder, tags=TAGS, seed=0, dropout=0.1, layers=4):
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256, hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout, id2label=dict(enumerate(tags)),
                        label2id={t: i for i, t in enumerate(tags)})
    BertForTokenClassification(config).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copyfile(assets.minilm_dir() / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def conll(tmp_path_factory):
    folder = tmp_path_factory.mktemp("conll")
    return conll_slice(folder / "train.conll", 120), conll_slice(folder / "heldout.conll", 40, skip=200)


@pytest.fixture(scope="module")
def tiny_teacher(tmp_path_factory):
    return make_tiny_token_classifier(tmp_path_factory.mktemp("token-classifier") / "teacher")


def minilm_token_classifier(num_labels=len(TAGS), seed=0):
    """all-MiniLM-L6-v2 (real weights) with a seeded token-classification head."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return BertForTokenClassification.from_pretrained(str(assets.minilm_dir()), num_labels=num_labels).eval()


# ---------------------------------------------------------------- students from the teacher


def test_minilm_keeping_every_layer_reproduces_the_token_logits(conll):
    teacher = minilm_token_classifier()
    student = init_token_classifier_student(teacher, layers=list(range(6))).eval()
    assert type(student) is BertForTokenClassification
    sentences = read_sentences([conll[0]])[:6]
    tokenizer = AutoTokenizer.from_pretrained(str(assets.minilm_dir()))
    inputs = tokenizer([list(s.words) for s in sentences], is_split_into_words=True, padding=True, return_tensors="pt")
    assert not inputs["attention_mask"].all()
    with torch.no_grad():
        expected, got = teacher(**inputs).logits, student(**inputs).logits
    assert expected.abs().max() > 0.05
    assert (got - expected).abs().max() < 1e-4
    half = init_token_classifier_student(teacher, n_layers=3)
    assert half.config.distilx_teacher_layers == [0, 3, 5]
    assert torch.equal(half.classifier.weight, teacher.classifier.weight)


@pytest.mark.parametrize("name", TABLE_ARCHITECTURES)
def test_other_architectures_keeping_every_layer_reproduce_the_token_logits(name):
    model_class, config_class, kwargs = ARCHITECTURES[name]
    config = getattr(transformers, config_class)(**kwargs, vocab_size=VOCAB, **declared_ids(name, PAD, CLS, SEP, MASK),
                                                 id2label=dict(enumerate(TAGS)))
    torch.manual_seed(0)
    teacher = getattr(transformers, model_class.replace("ForMaskedLM", "ForTokenClassification"))(config).eval()
    with torch.no_grad():
        for p in teacher.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    student = init_token_classifier_student(teacher, layers=[0, 1, 2, 3]).eval()
    assert type(student) is type(teacher)
    ids = torch.randint(5, 30000, (3, 20), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 12:] = 0
    ids[1, 12:] = teacher.config.pad_token_id
    with torch.no_grad():
        expected = teacher(input_ids=ids, attention_mask=mask).logits
        got = student(input_ids=ids, attention_mask=mask).logits
    assert expected.abs().max() > 0.05
    assert (got - expected)[mask.bool()].abs().max() < 1e-4


def test_teacher_folders_without_a_token_head_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not a fine-tuned token classifier.*BertModel"):
        load_token_classifier(assets.minilm_dir())
    from pipeline_helpers import make_tiny_classifier
    with pytest.raises(ValueError, match="not a fine-tuned token classifier: config.json says it holds a "
                                         "BertForSequenceClassification"):
        load_token_classifier(make_tiny_classifier(tmp_path / "seq", ("a", "b")))


# ---------------------------------------------------------------- tagged files and alignment


def test_conll_and_jsonl_give_the_same_sentences(tmp_path):
    conll = write(tmp_path / "a.conll", "\ufeff-DOCSTART- -X- -X- O\r\n\r\nEU NNP B-NP B-ORG\r\nrejects VBZ B-VP O\r\n"
                                        "\r\nNew York\tNNP\tB-LOC\nis O\n-DOCSTART- O\nPeter B-PER\n")
    jsonl = write(tmp_path / "b.jsonl", json.dumps({"w": ["EU", "rejects"], "t": ["B-ORG", "O"]}) + "\n\n" +
                  json.dumps({"w": ["New York", "is"], "t": ["B-LOC", 0]}) + "\n" + json.dumps({"w": ["Peter"], "t": [7]}))
    a, b = read_sentences([conll]), read_sentences([jsonl], "w", "t")
    assert [s.words for s in a] == [s.words for s in b] == [("EU", "rejects"), ("New York", "is"), ("Peter",)]
    assert [s.tags for s in a] == [("B-ORG", "O"), ("B-LOC", "O"), ("B-PER",)]
    assert [s.where_word(1) for s in a[:2]] == [f"{conll}:4", f"{conll}:7"]
    labels = LabelSet(TAGS)
    ids = [TaggedExamples([f], assets.minilm_dir(), tokens_field="w", tags_field="t", labels=labels, seq_len=16).tags
           for f in (conll, jsonl)]
    assert ids[0] == ids[1] == [[5, 0], [1, 0], [7]]


def hf_example_alignment(tokenizer, words, tags, label_all_tokens, label_list):
    """run_ner.py's tokenize_and_align_labels (transformers' examples), for one sentence."""
    b_to_i_label = []
    for idx, label in enumerate(label_list):
        if label.startswith("B-") and label.replace("B-", "I-") in label_list:
            b_to_i_label.append(label_list.index(label.replace("B-", "I-")))
        else:
            b_to_i_label.append(idx)
    tokenized = tokenizer(words, truncation=True, max_length=512, is_split_into_words=True)
    previous_word_idx, label_ids = None, []
    for word_idx in tokenized.word_ids(batch_index=0):
        if word_idx is None:
            label_ids.append(-100)
        elif word_idx != previous_word_idx:
            label_ids.append(tags[word_idx])
        else:
            label_ids.append(b_to_i_label[tags[word_idx]] if label_all_tokens else -100)
        previous_word_idx = word_idx
    return tokenized["input_ids"], label_ids


@pytest.mark.parametrize("all_subtokens", [False, True])
def test_alignment_is_the_hugging_face_examples(tmp_path, conll, all_subtokens):
    """Ids and per-sub-token labels equal the HF example's on real sentences, plus words of multi-byte
    characters and words that split into many pieces."""
    extra = [(["Zürich", "straße", "東京", "Ελλάδα", "São", "Paulo"], ["B-LOC", "O", "B-LOC", "B-LOC", "B-LOC", "I-LOC"]),
             (["Pneumonoultramicroscopicsilicovolcanoconiosis", "Schwarzwälderkirschtorte", "x"],
              ["B-MISC", "B-PER", "O"])]
    path = write(tmp_path / "x.jsonl", "".join(json.dumps({"tokens": w, "tags": t}) + "\n" for w, t in extra))
    files = [conll[1], path]
    labels = LabelSet(TAGS)
    examples = TaggedExamples(files, assets.minilm_dir(), tokens_field="tokens", tags_field="tags", labels=labels,
                              seq_len=256, label_all_subtokens=all_subtokens)
    tokenizer = AutoTokenizer.from_pretrained(str(assets.minilm_dir()))
    sentences = read_sentences(files)
    assert len(examples) == len(sentences) > 40
    pieces = 0
    for i, sentence in enumerate(sentences):
        tags = [TAGS.index(t) for t in sentence.tags]
        ids, expected = hf_example_alignment(tokenizer, list(sentence.words), tags, all_subtokens, list(TAGS))
        assert examples.features["input_ids"][i] == ids
        assert examples.labels[i] == expected
        pieces = max(pieces, max(examples.word_ids[i].count(w) for w in range(len(sentence.words))))
    assert pieces >= 8  # a word split into many pieces was exercised
    batch = examples.batch([len(examples) - 1, 0])
    assert batch["labels"].shape == batch["input_ids"].shape
    assert (batch["labels"][batch["attention_mask"] == 0] == -100).all()


@pytest.mark.parametrize("name, content, message", [
    ("a.conll", "EU B-ORG\nrejects B-VERB\n",
     r"a.conll:2: tag 'B-VERB' is not one the teacher knows: its tags .* are \['O', 'B-LOC'"),
    ("b.conll", "EU B-ORG\nrejects\n", r"b.conll:2: 'rejects' is not `word ... tag`"),
    ("c.jsonl", '{"tokens": ["a", "b"], "tags": ["O"]}\n', r"c.jsonl:1: 2 words but 1 tags"),
    ("d.jsonl", '{"words": ["a"], "tags": ["O"]}\n', r"d.jsonl:1: no field 'tokens'.*--tokens-field"),
    ("e.jsonl", '{"tokens": "a b", "tags": ["O"]}\n', r"e.jsonl:1: field 'tokens' must be a list of words"),
    ("f.jsonl", '{"tokens": ["a"], "tags": [true]}\n', r"f.jsonl:1: field 'tags' must be a list of tags"),
    ("g.jsonl", '{"tokens": ["a"], "tags": ["O"]}\n{"tokens": [\n', r"g.jsonl:2: not valid JSON"),
    ("h.conll", "EU B-ORG\n\nrejects O\n\u00ad O\n", r"h.conll:4: word 2 of the sentence \('\\xad'\) gives the tokenizer no"),
    ("i.conll", "a O\n\n" + "word O\n" * 30, r"i.conll:3: a sentence of 30 words is 32 tokens with the framing, more "
                                               r"than seq_len=24.*raise --seq-len to 32"),
    ("j.csv", "tokens,tags\n", r"j.csv: tagged files must be .jsonl"),
])
def test_bad_tagged_records_are_named(tmp_path, name, content, message):
    path = write(tmp_path / name, content)
    with pytest.raises(ValueError, match=message):
        TaggedExamples([path], assets.minilm_dir(), tokens_field="tokens", tags_field="tags", labels=LabelSet(TAGS),
                       seq_len=24)


# ---------------------------------------------------------------- entity scoring against seqeval


def random_tags(rng, prefixes, n):
    tags = ["O"] + [f"{p}-{t}" for p in prefixes for t in ("PER", "LOC", "ORG")]
    gold = [[rng.choice(tags) for _ in range(rng.randint(1, 9))] for _ in range(n)]
    predicted = [[rng.choice(tags) if rng.random() < 0.4 else g for g in s] for s in gold]
    return gold, predicted


@pytest.mark.parametrize("scheme", ["IOB1", "IOB2", "IOBES"])
def test_entity_scores_equal_seqeval(scheme):
    """Random (mostly invalid) tag sequences: micro P/R/F1 and per-type scores equal seqeval's, by its default
    (conlleval) rules and in strict mode with the scheme; token accuracy equals seqeval's."""
    from seqeval import scheme as seqeval_schemes
    from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score

    rng = random.Random(hash(scheme) % 1000)
    prefixes = "BIES" if scheme == "IOBES" else "BI"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # seqeval warns about undefined precision/recall (0, as ours)
        for _ in range(300):
            gold, predicted = random_tags(rng, prefixes, rng.randint(1, 5))
            for strict in (False, True):
                ours = entity_scores(gold, predicted, scheme, strict)
                kw = dict(mode="strict", scheme=getattr(seqeval_schemes, scheme)) if strict else {}
                assert ours["precision"] == pytest.approx(precision_score(gold, predicted, **kw), abs=1e-12)
                assert ours["recall"] == pytest.approx(recall_score(gold, predicted, **kw), abs=1e-12)
                assert ours["f1"] == pytest.approx(f1_score(gold, predicted, **kw), abs=1e-12)
                report = classification_report(gold, predicted, output_dict=True, **kw)
                for kind, scores in ours["per_type"].items():
                    if scores["support"] or kind in report:
                        assert scores["f1"] == pytest.approx(report[kind]["f1-score"], abs=1e-12)
                        assert scores["support"] == report[kind]["support"]
            assert token_accuracy(gold, predicted) == pytest.approx(accuracy_score(gold, predicted))


def test_scheme_detection():
    names = list(TAGS)
    assert detect_scheme(names, [["B-PER", "I-PER", "O", "B-LOC"]]) == "IOB2"
    assert detect_scheme(names, [["O", "I-PER", "I-PER", "B-PER"]]) == "IOB1"  # an entity starting with I-
    assert detect_scheme(names, [["B-PER", "I-LOC"]]) == "IOB1"
    assert detect_scheme(names + ["S-PER", "E-PER"], [["S-PER"]]) == "IOBES"
    assert detect_scheme(["NN", "VB", "DT"], [["NN"]]) is None  # POS tags: token accuracy only


# ---------------------------------------------------------------- the loss


def test_training_loss_is_the_plain_formula_on_labelled_positions(tmp_path, conll):
    teacher_dir = make_tiny_token_classifier(tmp_path / "t", dropout=0.0)
    teacher = load_token_classifier(teacher_dir)
    with torch.no_grad():
        teacher.classifier.weight.mul_(30)
    torch.manual_seed(2)
    student = init_token_classifier_student(teacher, n_layers=2)
    student = type(student)(student.config).eval()
    temperature, weights = 3.0, dict(alpha_kl=0.6, alpha_mlm=1.7, alpha_cos=0.8)
    config = TrainConfig(task="token-classification", teacher=str(teacher_dir), train_files=[str(conll[0])],
                         seq_len=128, batch_size=8, temperature=temperature, label_all_subtokens=True, **weights)
    task = task_for("token-classification")
    batch = next(iter(task.make_stream(config, None, DistEnv(0, 1, 0, torch.device("cpu")), teacher)))
    labelled = batch["labels"] != -100
    assert not batch["attention_mask"].all() and (batch["attention_mask"].bool() & ~labelled).any()
    options = dict(temperature=temperature, kl_on="tokens", backend="torch", **weights)
    out = task.loss(teacher, task.student_forward(student, options, config), batch, torch.device("cpu"), config)

    inputs = {k: v for k, v in batch.items() if k != "labels"}
    with torch.no_grad():
        s, t = student(**inputs, output_hidden_states=True), teacher(**inputs, output_hidden_states=True)
    s_log, t_log = s.logits[labelled].double(), t.logits[labelled].double()
    p_t = torch.softmax(t_log / temperature, -1)
    kl = (p_t * (p_t.log() - torch.log_softmax(s_log / temperature, -1))).sum(-1).mean() * temperature ** 2
    ce = F.cross_entropy(s_log, batch["labels"][labelled])
    real = batch["attention_mask"].bool()
    cos = (1 - F.cosine_similarity(s.hidden_states[-1][real].double(), t.hidden_states[-1][real].double(), dim=-1)).mean()
    assert min(kl, ce, cos) > 0.05
    torch.testing.assert_close(out.kl.double(), kl, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.mlm.double(), ce, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.cos.double(), cos, rtol=1e-5, atol=1e-6)
    expected = weights["alpha_kl"] * kl + weights["alpha_mlm"] * ce + weights["alpha_cos"] * cos
    torch.testing.assert_close(out.loss.double(), expected, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- runs


def metric_lines(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_cli_run_resumes_exactly_evaluates_and_loads_in_a_pipeline(tmp_path, tiny_teacher, conll, capsys):
    train_file, heldout = conll
    flags = ["--task", "token-classification", "--teacher", str(tiny_teacher), "--train-files", str(train_file),
             "--eval-files", str(heldout), "--student-layers", "2", "--seq-len", "128", "--batch-size", "8",
             "--max-steps", "6", "--save-every", "3", "--log-every", "1", "--eval-batches", "2", "--seed", "7",
             "--device", "cpu", "--progress", "false", "--tensorboard", "false"]
    assert main(["train", *flags, "--output-dir", str(tmp_path / "full")]) == 0
    assert "entity F1 (IOB2, conlleval)" in capsys.readouterr().out
    cut = TrainConfig.load(tmp_path / "full" / "train_config.json").override({"output_dir": str(tmp_path / "cut")})
    assert train(cut, stop_after=4).steps == 4
    assert main(["train", "--config", str(tmp_path / "cut" / "train_config.json"), "--resume"]) == 0
    assert "resuming from step 3" in capsys.readouterr().out
    full, resumed = metric_lines(tmp_path / "full"), metric_lines(tmp_path / "cut")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in full] and len({r["loss"] for r in full}) > 1
    a = transformers.AutoModelForTokenClassification.from_pretrained(tmp_path / "full")
    b = transformers.AutoModelForTokenClassification.from_pretrained(tmp_path / "cut")
    assert type(a) is BertForTokenClassification and a.config.num_hidden_layers == 2
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    tagger = pipeline("token-classification", model=str(tmp_path / "full"))
    assert all(entity["entity"] in TAGS for entity in tagger("EU rejects German call to boycott British lamb ."))

    capsys.readouterr()
    predictions = tmp_path / "predictions.jsonl"
    assert main(["eval", "--task", "token-classification", "--teacher", str(tiny_teacher), "--student",
                 str(tmp_path / "full"), "--files", str(heldout), "--seq-len", "128", "--predictions", str(predictions),
                 "--json", str(tmp_path / "eval.json")]) == 0
    table = capsys.readouterr().out.partition("\n{")[0]
    assert "student/teacher entity-F1 retention" in table and "token accuracy" in table
    metrics = json.loads((tmp_path / "eval.json").read_text())
    gold = [list(s.tags) for s in read_sentences([heldout])]
    tags = [json.loads(line) for line in predictions.read_text().splitlines()]
    assert [len(t) for t in tags] == [len(g) for g in gold] and metrics["sentences"] == len(gold) == 40
    from seqeval.metrics import accuracy_score, f1_score
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert metrics["student_entity_f1"] == pytest.approx(f1_score(gold, tags), abs=1e-12)
    assert metrics["student_token_accuracy"] == pytest.approx(accuracy_score(gold, tags))
    assert metrics["tag_scheme"] == "IOB2" and metrics["student_layers"] == 2


def test_cli_token_errors_are_one_line(tmp_path, tiny_teacher, conll, capsys):
    bad = write(tmp_path / "bad.conll", "EU B-ORG\nrejects B-VERB\n")
    base = ["train", "--task", "token-classification", "--teacher", str(tiny_teacher), "--device", "cpu",
            "--max-steps", "1", "--seq-len", "128"]
    for extra, message in [
        (["--train-files", str(bad), "--output-dir", str(tmp_path / "a")], "bad.conll:2: tag 'B-VERB'"),
        (["--train-files", str(conll[0]), "--eval-files", str(bad), "--output-dir", str(tmp_path / "b")],
         "--eval-files: .*bad.conll:2"),
        (["--train-files", str(conll[0]), "--text-fields", "x", "--output-dir", str(tmp_path / "c")],
         "text_fields applies to task sequence-classification"),
        (["--train-files", str(conll[0]), "--teacher", str(assets.minilm_dir()), "--output-dir", str(tmp_path / "d")],
         "not a fine-tuned token classifier"),
    ]:
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and re.search(message, err), err
    assert not (tmp_path / "a" / "metrics.jsonl").exists()


def test_distil_while_fine_tuning_copies_the_teachers_head(tmp_path, tiny_teacher, conll):
    folder = tmp_path / "bert-mlm"
    torch.manual_seed(4)
    BertForMaskedLM(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=256)).save_pretrained(folder)
    teacher = load_token_classifier(tiny_teacher)
    student = pretrained_token_classifier_student(folder, teacher)
    assert student.config.distilx_head_from_teacher == ["classifier.bias", "classifier.weight"]
    assert torch.equal(student.classifier.weight, teacher.classifier.weight)
    assert student.config.id2label == teacher.config.id2label
    config = TrainConfig(task="token-classification", teacher=str(tiny_teacher), train_files=[str(conll[0])],
                         eval_files=[str(conll[1])], student=str(folder), output_dir=str(tmp_path / "run"), seq_len=128,
                         batch_size=8, max_steps=2, eval_batches=1, progress=False, tensorboard=False, device="cpu")
    result = train(config)
    assert result.steps == 2 and result.eval_metrics["student_layers"] == 2


def test_finetune_model_starts_from_the_encoder_with_the_files_tags(tmp_path, conll):
    task = task_for("token-classification")
    config = TrainConfig(task="token-classification", train_files=[str(conll[0])], seed=3)
    model = task.finetune_model(str(assets.minilm_dir()), config)
    assert type(model) is BertForTokenClassification and model.training
    assert list(model.config.id2label.values()) == list(TAGS)  # O, then by type, B before I
    encoder = transformers.AutoModel.from_pretrained(str(assets.minilm_dir())).state_dict()
    assert all(torch.equal(model.bert.state_dict()[k], v) for k, v in encoder.items() if k in model.bert.state_dict())
    again = task.finetune_model(str(assets.minilm_dir()), config)
    assert torch.equal(again.classifier.weight, model.classifier.weight)  # seeded
    given = task.finetune_model(str(assets.minilm_dir()), SimpleNamespace(labels=["O", "B-X"], seed=0))
    assert given.config.id2label == {0: "O", 1: "B-X"}
    with pytest.raises(ValueError, match="cannot fine-tune"):
        task_for("masked-lm").finetune_model(str(assets.minilm_dir()), config)


def test_evaluation_of_pos_tags_reports_token_accuracy_only(tmp_path):
    pos = ("DT", "NN", "VBZ", ".")
    teacher = make_tiny_token_classifier(tmp_path / "pos", tags=pos, dropout=0.0)
    path = write(tmp_path / "pos.conll", "The DT\ndog NN\nbarks VBZ\n. .\n\nA DT\ncat NN\n")
    metrics = evaluate_token_classification(teacher, teacher, [path], seq_len=32)
    assert metrics["tag_scheme"] == "none" and metrics["teacher_entity_f1"] is None
    assert metrics["agreement"] == 1.0 and metrics["words"] == 6
    with pytest.raises(ValueError, match="not all entity tags"):
        evaluate_token_classification(teacher, teacher, [path], seq_len=32, tag_scheme="IOB2")
