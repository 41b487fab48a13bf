"""Shared set-up for the question-answering tests: SQuAD-layout records built from real text (Wikipedia lead
sections and the multilingual documents the sample tokenizers are checked on), tiny QA teachers, and
INDEPENDENT transcriptions of what the tests compare against:

- the Hugging Face examples' preprocessing (run_qa.py's prepare_train_features / prepare_validation_features)
  and post-processing (utils_qa.py's postprocess_qa_predictions), written from their published definitions;
- the official SQuAD v1.1 and v2.0 evaluation scripts' scoring (normalize_answer, exact match, F1, totals).
"""

import collections
import json
import random
import re
import shutil
import string
from pathlib import Path

import numpy as np
import torch

from distilx import assets

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


# ---------------------------------------------------------------- records from real text


def span_records(texts, n_per_text=4, seed=0, impossible_every=0, prefix="q"):
    """jsonl-layout records: each question asks for a run of 1-4 words of its context, at seeded random places
    (so some answers fall at window edges); every `impossible_every`-th question has no answer."""
    rng = random.Random(seed)
    records = []
    for t, text in enumerate(texts):
        words = [(m.start(), m.group()) for m in re.finditer(r"\S+", text)]
        for k in range(n_per_text):
            i = rng.randrange(len(words))
            j = min(len(words), i + rng.randint(1, 4))
            start = words[i][0]
            answer = text[start:words[j - 1][0] + len(words[j - 1][1])]
            before = " ".join(w for _, w in words[max(0, i - 3):i]) or "the start"
            qid = f"{prefix}{t}-{k}"
            if impossible_every and len(records) % impossible_every == impossible_every - 1:
                records.append({"id": qid, "question": f"What is said about {before} elsewhere?", "context": text,
                                "answers": {"text": [], "answer_start": []}})
            else:
                records.append({"id": qid, "question": f" What follows {before}?", "context": text,
                                "answers": {"text": [answer], "answer_start": [start]}})
    return records


def wiki_texts(n, min_chars=400, language="en-us"):
    return [t for t in assets.wiki_documents(language) if len(t) >= min_chars][:n]


def write_jsonl(path: Path, records) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def write_squad_json(path: Path, records) -> Path:
    """The same records in the SQuAD .json layout (one paragraph per record)."""
    paragraphs = [{"context": r["context"], "qas": [{
        "id": r["id"], "question": r["question"], "is_impossible": not r["answers"]["text"],
        "answers": [{"text": t, "answer_start": s} for t, s in zip(r["answers"]["text"], r["answers"]["answer_start"])]}]}
        for r in records]
    path.write_text(json.dumps({"version": "test", "data": [{"title": "t", "paragraphs": paragraphs}]},
                               ensure_ascii=False), encoding="utf-8")
    return path


# ---------------------------------------------------------------- tiny teachers


def tiny_qa_teacher(folder: Path, layers=4, seed=0, dropout=0.1, scale=1.0) -> Path:
    """A tiny BertForQuestionAnswering "fine-tuned" (random weights, every tensor saved) with the real
    bert-base-uncased tokenizer files."""
    from transformers import BertConfig, BertForQuestionAnswering

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout)
    model = BertForQuestionAnswering(config)
    with torch.no_grad():
        model.qa_outputs.weight.mul_(scale)
    model.save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copyfile(assets.minilm_dir() / name, folder / name)
    return folder


# ---------------------------------------------------------------- the Hugging Face examples, transcribed


def hf_tokenized(tokenizer, questions, contexts, max_length, stride):
    """The tokenizer call both of run_qa.py's prepare_*_features make (questions left-stripped first)."""
    pad_on_right = tokenizer.padding_side == "right"
    questions = [q.lstrip() for q in questions]
    return tokenizer(questions if pad_on_right else contexts, contexts if pad_on_right else questions,
                     truncation="only_second" if pad_on_right else "only_first", max_length=max_length,
                     stride=stride, return_overflowing_tokens=True, return_offsets_mapping=True,
                     padding="max_length")


def hf_prepare_train_features(tokenizer, questions, contexts, answers, max_length, stride):
    """run_qa.py's prepare_train_features, literally (padding to max_length, as its default)."""
    pad_on_right = tokenizer.padding_side == "right"
    tokenized = hf_tokenized(tokenizer, questions, contexts, max_length, stride)
    sample_mapping = tokenized.pop("overflow_to_sample_mapping")
    offset_mapping = tokenized.pop("offset_mapping")
    tokenized["start_positions"], tokenized["end_positions"], tokenized["example"] = [], [], []
    for i, offsets in enumerate(offset_mapping):
        input_ids = tokenized["input_ids"][i]
        cls_index = input_ids.index(tokenizer.cls_token_id) if tokenizer.cls_token_id in input_ids else 0
        sequence_ids = tokenized.sequence_ids(i)
        sample_index = sample_mapping[i]
        tokenized["example"].append(sample_index)
        answer = answers[sample_index]
        if len(answer["answer_start"]) == 0:
            tokenized["start_positions"].append(cls_index)
            tokenized["end_positions"].append(cls_index)
            continue
        start_char = answer["answer_start"][0]
        end_char = start_char + len(answer["text"][0])
        token_start_index = 0
        while sequence_ids[token_start_index] != (1 if pad_on_right else 0):
            token_start_index += 1
        token_end_index = len(input_ids) - 1
        while sequence_ids[token_end_index] != (1 if pad_on_right else 0):
            token_end_index -= 1
        if not (offsets[token_start_index][0] <= start_char and offsets[token_end_index][1] >= end_char):
            tokenized["start_positions"].append(cls_index)
            tokenized["end_positions"].append(cls_index)
        else:
            while token_start_index < len(offsets) and offsets[token_start_index][0] <= start_char:
                token_start_index += 1
            tokenized["start_positions"].append(token_start_index - 1)
            while offsets[token_end_index][1] >= end_char:
                token_end_index -= 1
            tokenized["end_positions"].append(token_end_index + 1)
    return tokenized


def hf_validation_offsets(tokenizer, questions, contexts, max_length, stride):
    """run_qa.py's prepare_validation_features: per window, the offset mapping with None outside the context,
    and the example it belongs to."""
    pad_on_right = tokenizer.padding_side == "right"
    tokenized = hf_tokenized(tokenizer, questions, contexts, max_length, stride)
    context_index = 1 if pad_on_right else 0
    offsets = [[o if tokenized.sequence_ids(i)[k] == context_index else None for k, o in enumerate(offsets)]
               for i, offsets in enumerate(tokenized["offset_mapping"])]
    return offsets, list(tokenized["overflow_to_sample_mapping"])


def hf_postprocess(examples, feature_examples, feature_offsets, all_start_logits, all_end_logits, *,
                   version_2_with_negative, n_best_size=20, max_answer_length=30, null_score_diff_threshold=0.0):
    """utils_qa.py's postprocess_qa_predictions, transcribed: {id: answer text}. examples: (id, context)."""
    features_per_example = collections.defaultdict(list)
    for i, e in enumerate(feature_examples):
        features_per_example[e].append(i)
    out = {}
    for example_index, (qid, context) in enumerate(examples):
        min_null_prediction, prelim = None, []
        for feature_index in features_per_example[example_index]:
            start_logits, end_logits = all_start_logits[feature_index], all_end_logits[feature_index]
            offset_mapping = feature_offsets[feature_index]
            feature_null_score = start_logits[0] + end_logits[0]
            if min_null_prediction is None or min_null_prediction["score"] > feature_null_score:
                min_null_prediction = {"offsets": (0, 0), "score": feature_null_score,
                                       "start_logit": start_logits[0], "end_logit": end_logits[0]}
            start_indexes = np.argsort(start_logits)[-1:-n_best_size - 1:-1].tolist()
            end_indexes = np.argsort(end_logits)[-1:-n_best_size - 1:-1].tolist()
            for start_index in start_indexes:
                for end_index in end_indexes:
                    if (start_index >= len(offset_mapping) or end_index >= len(offset_mapping)
                            or offset_mapping[start_index] is None or len(offset_mapping[start_index]) < 2
                            or offset_mapping[end_index] is None or len(offset_mapping[end_index]) < 2):
                        continue
                    if end_index < start_index or end_index - start_index + 1 > max_answer_length:
                        continue
                    prelim.append({"offsets": (offset_mapping[start_index][0], offset_mapping[end_index][1]),
                                   "score": start_logits[start_index] + end_logits[end_index],
                                   "start_logit": start_logits[start_index], "end_logit": end_logits[end_index]})
        if version_2_with_negative and min_null_prediction is not None:
            prelim.append(min_null_prediction)
            null_score = min_null_prediction["score"]
        predictions = sorted(prelim, key=lambda x: x["score"], reverse=True)[:n_best_size]
        if (version_2_with_negative and min_null_prediction is not None
                and not any(p["offsets"] == (0, 0) for p in predictions)):
            predictions.append(min_null_prediction)
        for pred in predictions:
            pred["text"] = context[pred["offsets"][0]:pred["offsets"][1]]
        if len(predictions) == 0 or (len(predictions) == 1 and predictions[0]["text"] == ""):
            predictions.insert(0, {"text": "empty", "start_logit": 0.0, "end_logit": 0.0, "score": 0.0})
        if not version_2_with_negative:
            out[qid] = predictions[0]["text"]
        else:
            i = 0
            while predictions[i]["text"] == "":
                i += 1
            best = predictions[i]
            score_diff = null_score - best["start_logit"] - best["end_logit"]
            out[qid] = "" if score_diff > null_score_diff_threshold else best["text"]
    return out


# ---------------------------------------------------------------- the official SQuAD scripts, transcribed


def official_normalize_answer(s):
    def remove_articles(text):
        return re.sub(r"\b(a|an|the)\b", " ", text)

    def white_space_fix(text):
        return " ".join(text.split())

    def remove_punc(text):
        exclude = set(string.punctuation)
        return "".join(ch for ch in text if ch not in exclude)

    return white_space_fix(remove_articles(remove_punc(s.lower())))


def official_v1_evaluate(dataset, predictions):
    """evaluate-v1.1.py's evaluate(dataset, predictions)."""
    def f1_score(prediction, ground_truth):
        prediction_tokens = official_normalize_answer(prediction).split()
        ground_truth_tokens = official_normalize_answer(ground_truth).split()
        common = collections.Counter(prediction_tokens) & collections.Counter(ground_truth_tokens)
        num_same = sum(common.values())
        if num_same == 0:
            return 0
        precision = 1.0 * num_same / len(prediction_tokens)
        recall = 1.0 * num_same / len(ground_truth_tokens)
        return (2 * precision * recall) / (precision + recall)

    def exact_match_score(prediction, ground_truth):
        return official_normalize_answer(prediction) == official_normalize_answer(ground_truth)

    def metric_max_over_ground_truths(metric_fn, prediction, ground_truths):
        return max(metric_fn(prediction, gt) for gt in ground_truths)

    f1 = exact_match = total = 0
    for article in dataset:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                total += 1
                if qa["id"] not in predictions:
                    continue
                ground_truths = [x["text"] for x in qa["answers"]]
                prediction = predictions[qa["id"]]
                exact_match += metric_max_over_ground_truths(exact_match_score, prediction, ground_truths)
                f1 += metric_max_over_ground_truths(f1_score, prediction, ground_truths)
    return {"exact_match": 100.0 * exact_match / total, "f1": 100.0 * f1 / total}


def official_v2_evaluate(dataset, preds):
    """evaluate-v2.0.py's get_raw_scores + make_eval_dict (no na_probs: threshold 1.0 changes nothing)."""
    def get_tokens(s):
        if not s:
            return []
        return official_normalize_answer(s).split()

    def compute_exact(a_gold, a_pred):
        return int(official_normalize_answer(a_gold) == official_normalize_answer(a_pred))

    def compute_f1(a_gold, a_pred):
        gold_toks, pred_toks = get_tokens(a_gold), get_tokens(a_pred)
        common = collections.Counter(gold_toks) & collections.Counter(pred_toks)
        num_same = sum(common.values())
        if len(gold_toks) == 0 or len(pred_toks) == 0:
            return int(gold_toks == pred_toks)
        if num_same == 0:
            return 0
        precision = 1.0 * num_same / len(pred_toks)
        recall = 1.0 * num_same / len(gold_toks)
        return (2 * precision * recall) / (precision + recall)

    exact_scores, f1_scores, has_ans = {}, {}, {}
    for article in dataset:
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                qid = qa["id"]
                has_ans[qid] = bool(qa["answers"])
                gold_answers = [a["text"] for a in qa["answers"] if official_normalize_answer(a["text"])]
                if not gold_answers:
                    gold_answers = [""]
                if qid not in preds:
                    continue
                exact_scores[qid] = max(compute_exact(a, preds[qid]) for a in gold_answers)
                f1_scores[qid] = max(compute_f1(a, preds[qid]) for a in gold_answers)

    def make_eval_dict(qid_list):
        total = len(qid_list)
        return {"exact": 100.0 * sum(exact_scores[k] for k in qid_list) / total,
                "f1": 100.0 * sum(f1_scores[k] for k in qid_list) / total, "total": total}

    out = make_eval_dict(list(exact_scores))
    for name, wanted in (("HasAns", True), ("NoAns", False)):
        ids = [k for k in exact_scores if has_ans[k] == wanted]
        if ids:
            for key, value in make_eval_dict(ids).items():
                out[f"{name}_{key}"] = value
    return out
