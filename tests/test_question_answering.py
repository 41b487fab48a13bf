"""Extractive question answering (issue 19): records and their checks, windows and offsets against the Hugging
Face examples' preprocessing, decoding against their post-processing, scoring against the official SQuAD
scripts, and the loss against a plain PyTorch transcription. Models and runs: test_question_answering_runs.py."""

import json
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoTokenizer

from distilx import TrainConfig, assets
from distilx.distributed import DistEnv
from distilx.qa_eval import decode_answers
from distilx.qa_metrics import squad_scores
from distilx.tasks import task_for
from distilx.tasks.qa_records import read_qa_records
from distilx.tasks.qa_windows import QAWindows
from qa_helpers import (hf_postprocess, hf_prepare_train_features, hf_validation_offsets, official_v1_evaluate,
                        official_v2_evaluate, span_records, tiny_qa_teacher, wiki_texts, write_jsonl, write_squad_json)

# multi-byte text inside a real context: accents, CJK, an emoji (4 bytes in UTF-8, 1 character in Python)
MULTIBYTE = "Zürich, São Paulo and Kraków — 東京 (Tōkyō) 🙂 naïve café façade. "


def records_of(path):
    return read_qa_records([path])


# ---------------------------------------------------------------- records


def test_json_and_jsonl_layouts_read_the_same_records(tmp_path):
    raw = span_records([MULTIBYTE + t for t in wiki_texts(3)], impossible_every=4)
    from_jsonl = records_of(write_jsonl(tmp_path / "a.jsonl", raw))
    from_json = records_of(write_squad_json(tmp_path / "a.json", raw))
    assert [(r.id, r.question, r.context, r.answers) for r in from_jsonl] == \
        [(r.id, r.question, r.context, r.answers) for r in from_json]
    assert sum(not r.answers for r in from_jsonl) == 3 and len(from_jsonl) == 12
    assert from_jsonl[0].where.endswith("a.jsonl:1") and from_json[1].where.endswith("data[0].paragraphs[1].qas[0]")
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + (tmp_path / "a.json").read_bytes())
    assert [r.id for r in records_of(bom)] == [r.id for r in from_json]


def jsonl_record(**changes):
    record = {"id": "q1", "question": "Who?", "context": "Ada Lovelace wrote the first program.",
              "answers": {"text": ["Ada Lovelace"], "answer_start": [0]}}
    record.update(changes)
    return {k: v for k, v in record.items() if v is not None}


@pytest.mark.parametrize("record, message", [
    (jsonl_record(answers={"text": ["Lovelace"], "answer_start": [0]}),
     r"b.jsonl:2: answer 'Lovelace' is not at answer_start 0: the context there reads 'Ada Love'; the text occurs at "
     r"character 4. Fix answer_start"),
    (jsonl_record(answers={"text": ["Babbage"], "answer_start": [3]}), r"b.jsonl:2: .*does not occur in the context"),
    (jsonl_record(answers={"text": ["Ada"], "answer_start": ["0"]}), r"b.jsonl:2: answer_start '0' .* not an integer"),
    (jsonl_record(answers={"text": ["Ada"], "answer_start": [0, 4]}), r"b.jsonl:2: 'answers' holds .*same length"),
    (jsonl_record(answers={"text": [""], "answer_start": [0]}), r"b.jsonl:2: an answer text is ''"),
    (jsonl_record(context=None), r"b.jsonl:2: no field 'context' \(fields here: \['answers', 'id', 'question'\]\)"),
    (jsonl_record(question="  "), r"b.jsonl:2: field 'question' holds '  ', not a non-empty text"),
    (jsonl_record(answers=None), r"b.jsonl:2: no field 'answers'"),
    (jsonl_record(id=None), r"b.jsonl:2: no field 'id'"),
    (jsonl_record(id="q0"), r"b.jsonl:2: id 'q0' was already used at .*b.jsonl:1"),
])
def test_bad_jsonl_records_are_named_with_the_fix(tmp_path, record, message):
    first = jsonl_record(id="q0")
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps(first) + "\n" + json.dumps(record) + "\n", encoding="utf-8")
    with pytest.raises(ValueError, match=message):
        records_of(path)


def test_bad_squad_json_records_are_named(tmp_path):
    def squad(qa, context="Ada Lovelace wrote the first program."):
        path = tmp_path / "s.json"
        path.write_text(json.dumps({"data": [{"paragraphs": [{"context": context, "qas": [
            {"id": "ok", "question": "Who?", "answers": [{"text": "Ada", "answer_start": 0}]}, qa]}]}]}))
        return path

    with pytest.raises(ValueError, match=r"s.json: data\[0\].paragraphs\[0\].qas\[1\]: answer 'wrote' is not at "
                                         r"answer_start 12.*occurs at character 13"):
        records_of(squad({"id": "x", "question": "What?", "answers": [{"text": "wrote", "answer_start": 12}]}))
    with pytest.raises(ValueError, match=r"qas\[1\]: is_impossible is true but the question lists 1 answer"):
        records_of(squad({"id": "x", "question": "What?", "is_impossible": True,
                          "answers": [{"text": "Ada", "answer_start": 0}]}))
    with pytest.raises(ValueError, match=r"qas\[1\]: an answer has no field 'answer_start'"):
        records_of(squad({"id": "x", "question": "What?", "answers": [{"text": "Ada"}]}))
    path = tmp_path / "broken.json"
    path.write_text('{"data": [\n{"paragraphs": }]}')
    with pytest.raises(ValueError, match=r"broken.json:2: not valid JSON"):
        records_of(path)
    path.write_text('{"version": "1.1"}')
    with pytest.raises(ValueError, match=r"broken.json: expected an object with a list 'data'"):
        records_of(path)
    with pytest.raises(ValueError, match=r"x.txt: question-answering files are .json .* or .jsonl"):
        records_of(tmp_path / "x.txt")


def test_questions_and_windows_that_do_not_fit_are_refused(tmp_path):
    long_question = jsonl_record(id="long", question="Who " + "really " * 70 + "wrote it?")
    path = write_jsonl(tmp_path / "q.jsonl", [jsonl_record(), long_question])
    with pytest.raises(ValueError, match=r"q.jsonl:2 \(id 'long'\): the question is 7\d tokens long, more than "
                                         r"max_query_len=64: raise --max-query-len"):
        QAWindows(records_of(path), assets.minilm_dir(), seq_len=128, doc_stride=32, max_query_len=64)
    with pytest.raises(ValueError, match=r"seq_len=96 .* leave 29 context tokens .* must be more than doc_stride=32"):
        QAWindows(records_of(path), assets.minilm_dir(), seq_len=96, doc_stride=32, max_query_len=64)


# ---------------------------------------------------------------- windows against the HF examples


def check_against_hf(records, tokenizer_source, seq_len, stride):
    windows = QAWindows(records, tokenizer_source, seq_len=seq_len, doc_stride=stride, max_query_len=40)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_source))
    questions, contexts = [r.question for r in records], [r.context for r in records]
    answers = [{"text": [t for t, _ in r.answers], "answer_start": [s for _, s in r.answers]} for r in records]
    hf = hf_prepare_train_features(tokenizer, questions, contexts, answers, seq_len, stride)
    hf_offsets, hf_examples = hf_validation_offsets(tokenizer, questions, contexts, seq_len, stride)
    assert len(windows) == len(hf["input_ids"]) and windows.record_of == hf["example"] == hf_examples
    edge_cases = 0
    for w in range(len(windows)):
        n = len(windows.input_ids[w])
        assert windows.input_ids[w].tolist() == hf["input_ids"][w][:n] and hf["attention_mask"][w][:n] == [1] * n
        if windows.token_type_ids is not None:
            assert windows.token_type_ids[w].tolist() == hf["token_type_ids"][w][:n]
        assert [tuple(o) if o[0] >= 0 else None for o in windows.offsets[w].tolist()] == \
            [tuple(o) if o is not None else None for o in hf_offsets[w][:n]]
        ours, theirs = (windows.starts[w], windows.ends[w]), (hf["start_positions"][w], hf["end_positions"][w])
        context_tokens = np.flatnonzero(windows.offsets[w][:, 0] >= 0)
        if theirs[0] > context_tokens[-1]:  # run_qa.py's scan ran past the window's last context token
            edge_cases += 1
            assert ours == (context_tokens[-1], theirs[1])
        else:
            assert ours == theirs
        if ours[0] != windows.cls_index[w]:  # the target span covers exactly the answer's characters
            text, start = records[windows.record_of[w]].answers[0]
            first, last = windows.offsets[w][ours[0], 0], windows.offsets[w][ours[1], 1]
            assert first <= start and start + len(text) <= last
            assert windows.offsets[w][ours[0], 1] > start and windows.offsets[w][ours[1], 0] < start + len(text)
    return windows, edge_cases


def test_windows_offsets_and_targets_equal_the_hf_examples_on_english_text():
    texts = [MULTIBYTE + t for t in wiki_texts(12)]
    records = [r for r in read_qa_records_from(span_records(texts, n_per_text=12, impossible_every=7))]
    windows, edge_cases = check_against_hf(records, assets.minilm_dir(), seq_len=64, stride=16)
    per_record = np.bincount(windows.record_of)
    assert per_record.max() >= 4  # long contexts: several windows each
    targets = list(zip(windows.starts, windows.ends))
    assert sum(s != c for (s, _), c in zip(targets, windows.cls_index)) > 50  # answers found in windows
    straddling = {windows.record_of[w] for w in range(len(windows)) if windows.starts[w] == windows.cls_index[w]}
    assert len(straddling) > 20  # answers outside some of their record's windows: the classifier token
    assert edge_cases >= 1, "no answer started at a window's last context token: the edge case was not exercised"
    unanswerable = [w for w in range(len(windows)) if not records[windows.record_of[w]].answers]
    assert unanswerable and all(windows.starts[w] == windows.ends[w] == 0 for w in unanswerable)


def read_qa_records_from(raw, tmp=None):
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        return read_qa_records([write_jsonl(Path(folder) / "r.jsonl", raw)])


def test_windows_equal_the_hf_examples_with_a_byte_level_tokenizer_on_multilingual_text(sample_tokenizers,
                                                                                       multilingual_texts):
    """RoBERTa's framing (<s> q </s></s> c </s>, no segment ids) and byte-level BPE on French, Chinese, Japanese
    and Korean documents: offsets stay in characters although tokens split multi-byte characters."""
    texts = [t for t in multilingual_texts if len(t) > 300 and not t.isascii()][:10]
    records = read_qa_records_from(span_records(texts, n_per_text=8, seed=3, impossible_every=5))
    windows, _ = check_against_hf(records, sample_tokenizers["roberta"], seq_len=64, stride=16)
    assert windows.token_type_ids is None and np.bincount(windows.record_of).max() >= 3


# ---------------------------------------------------------------- decoding and scoring


@pytest.mark.parametrize("v2", [False, True])
def test_decoding_equals_the_hf_postprocessing(v2):
    records = read_qa_records_from(span_records(wiki_texts(8), n_per_text=6, seed=1, impossible_every=3 if v2 else 0))
    windows = QAWindows(records, assets.minilm_dir(), seq_len=64, doc_stride=16, max_query_len=40)
    rng = np.random.default_rng(0)
    logits = [(rng.normal(size=len(ids)).astype(np.float32) * 3, rng.normal(size=len(ids)).astype(np.float32) * 3)
              for ids in windows.input_ids]
    for w in range(len(logits)):  # every window of every 3rd question confident about the classifier token
        if windows.record_of[w] % 3 == 0:
            logits[w][0][0] += 8
            logits[w][1][0] += 8
    tokenizer = AutoTokenizer.from_pretrained(str(assets.minilm_dir()))
    offsets, examples = hf_validation_offsets(tokenizer, [r.question for r in records], [r.context for r in records],
                                              64, 16)
    for threshold, max_len, n_best in ((0.0, 30, 20), (2.5, 5, 3)):
        ours = decode_answers(windows, logits, n_best_size=n_best, max_answer_len=max_len,
                              null_score_diff_threshold=threshold, version="2.0" if v2 else "1.1")
        padded = [(np.pad(s, (0, 64 - len(s)), constant_values=-1e4), np.pad(e, (0, 64 - len(e)), constant_values=-1e4))
                  for s, e in logits]
        theirs = hf_postprocess([(r.id, r.context) for r in records], examples, offsets, [s for s, _ in padded],
                                [e for _, e in padded], version_2_with_negative=v2, n_best_size=n_best,
                                max_answer_length=max_len, null_score_diff_threshold=threshold)
        # no allowed span in any window: HF writes the placeholder "empty", distilx "" (qa_eval.py)
        assert ours == {qid: "" if text == "empty" else text for qid, text in theirs.items()}
        assert sum(a == "" for a in ours.values()) > (2 if v2 else -1)
        assert len(set(ours.values())) > len(records) // 2


def squad_dataset(records):
    return [{"paragraphs": [{"context": r.context, "qas": [
        {"id": r.id, "answers": [{"text": t, "answer_start": s} for t, s in r.answers]}]} for r in records]}]


def perturbed_predictions(records, seed):
    """Predictions of every kind the scorers treat differently: exact, case/punctuation/article variants,
    partial overlaps, other words, empty answers."""
    rng = random.Random(seed)
    out = {}
    for r in records:
        gold = r.answers[0][0] if r.answers else rng.choice(r.context.split())
        kind = rng.randrange(7)
        out[r.id] = [gold, f"The {gold.upper()}!", gold.split()[0], f"{gold} and more words", "",
                     rng.choice(r.context.split()), f"an {gold}, a"][kind]
    return out


@pytest.mark.parametrize("version", ["1.1", "2.0"])
def test_scores_equal_the_official_scripts(version):
    raw = span_records(wiki_texts(20), n_per_text=10, seed=2, impossible_every=4 if version == "2.0" else 0)
    for i, r in enumerate(raw):  # several gold answers per question, as SQuAD's dev set has
        if r["answers"]["text"] and i % 3 == 0:
            text, start = r["answers"]["text"][0], r["answers"]["answer_start"][0]
            word = text.split()[0]
            r["answers"]["text"].append(word)
            r["answers"]["answer_start"].append(start)
    records = read_qa_records_from(raw)
    gold = {r.id: [t for t, _ in r.answers] for r in records}
    official = official_v1_evaluate if version == "1.1" else official_v2_evaluate
    for seed in range(3):
        predictions = perturbed_predictions(records, seed)
        ours = squad_scores(predictions, gold, version)
        theirs = official(squad_dataset(records), predictions)
        assert ours["exact_match"] == pytest.approx(theirs["exact_match" if version == "1.1" else "exact"], abs=1e-9)
        assert ours["f1"] == pytest.approx(theirs["f1"], abs=1e-9)
        assert 5 < ours["exact_match"] < ours["f1"] < 95
        if version == "2.0":
            assert ours["has_answer_f1"] == pytest.approx(theirs["HasAns_f1"], abs=1e-9)
            assert ours["no_answer_exact_match"] == pytest.approx(theirs["NoAns_exact"], abs=1e-9)
            assert ours["no_answer_questions"] == theirs["NoAns_total"] > 0
    with pytest.raises(ValueError, match="no gold answer, which SQuAD v1.1 scoring cannot score"):
        squad_scores({}, {"x": []}, "1.1")


# ---------------------------------------------------------------- the loss


def test_training_loss_is_the_plain_formula_over_each_windows_real_positions(tmp_path):
    """The task's loss for a padded batch of windows equals KL(T)·T² over each window's real positions (start and
    end rows), the cross-entropy on the gold start/end and the cosine, written out in PyTorch: padding takes no part."""
    from distilx.models.question_answering import init_qa_student, load_qa_model

    teacher_dir = tiny_qa_teacher(tmp_path / "t", dropout=0.0, scale=30.0)
    teacher = load_qa_model(teacher_dir)
    torch.manual_seed(3)
    student = init_qa_student(teacher, n_layers=2)
    student = type(student)(student.config).eval()
    train_file = write_jsonl(tmp_path / "train.jsonl", span_records(wiki_texts(6), n_per_text=3, impossible_every=4))
    temperature, weights = 3.0, dict(alpha_kl=0.6, alpha_mlm=1.7, alpha_cos=0.8)
    config = TrainConfig(task="question-answering", teacher=str(teacher_dir), train_files=[str(train_file)],
                         output_dir=str(tmp_path / "run"), seq_len=64, doc_stride=16, max_query_len=40, batch_size=8,
                         temperature=temperature, **weights)
    task = task_for("question-answering")
    stream = task.make_stream(config, None, DistEnv(0, 1, 0, torch.device("cpu")), teacher)
    batch = next(b for b in stream if not b["attention_mask"].all())
    loss_options = dict(temperature=temperature, kl_on="tokens", backend="torch", **weights)
    out = task.loss(teacher, task.student_forward(student, loss_options, config), batch, torch.device("cpu"), config)

    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
    with torch.no_grad():
        s, t = student(**inputs, output_hidden_states=True), teacher(**inputs, output_hidden_states=True)
    kl, ce = [], []
    for w in range(batch["input_ids"].shape[0]):
        n = int(batch["attention_mask"][w].sum())
        for s_row, t_row, gold in ((s.start_logits[w, :n], t.start_logits[w, :n], batch["start_positions"][w]),
                                   (s.end_logits[w, :n], t.end_logits[w, :n], batch["end_positions"][w])):
            p_t = torch.softmax(t_row.double() / temperature, -1)
            kl.append((p_t * (p_t.log() - torch.log_softmax(s_row.double() / temperature, -1))).sum() * temperature ** 2)
            ce.append(F.cross_entropy(s_row.double()[None], gold[None]))
    kl, ce = torch.stack(kl).mean(), torch.stack(ce).mean()
    real = batch["attention_mask"].bool()
    cos = (1 - F.cosine_similarity(s.hidden_states[-1][real].double(), t.hidden_states[-1][real].double(), dim=-1)).mean()
    assert min(kl, ce, cos) > 0.05
    torch.testing.assert_close(out.kl.double(), kl, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.mlm.double(), ce, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.cos.double(), cos, rtol=1e-5, atol=1e-6)
    expected = weights["alpha_kl"] * kl + weights["alpha_mlm"] * ce + weights["alpha_cos"] * cos
    torch.testing.assert_close(out.loss.double(), expected, rtol=1e-5, atol=1e-6)
