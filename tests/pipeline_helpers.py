"""Shared set-up for the pipeline tests: a tiny BERT teacher with the real bert-base-uncased
vocabulary (random weights, so a step costs milliseconds), a slice of the real English corpus, a padded
batch of real English text tokenized by the reference `tokenizers` library, the logits comparison, and
the config of a cheap CPU run."""

import shutil
from pathlib import Path

import torch
from tokenizers import Tokenizer as HFTokenizer
from transformers import BertConfig, BertForMaskedLM

from distilx import TrainConfig, assets

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


def make_tiny_teacher(folder: Path, layers: int = 4, seed: int = 0, dropout: float = 0.1) -> Path:
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout)
    BertForMaskedLM(config).save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copyfile(assets.minilm_dir() / name, folder / name)
    return folder


def corpus_slice(folder: Path, every: int = 40) -> tuple[Path, Path]:
    """Every `every`-th document of the real train / held-out files."""
    train, heldout = assets.english_corpus()
    out = []
    for src in (train, heldout):
        dst = folder / src.name
        with open(src, encoding="utf-8") as f:
            dst.write_text("".join(line for i, line in enumerate(f) if i % every == 0), encoding="utf-8")
        out.append(dst)
    return out[0], out[1]


def run_config(teacher, train_file, heldout_file, out, /, **kw) -> TrainConfig:
    """A run of a few cheap CPU steps: KL on ~50 target rows; on CPU the resume is bit-exact."""
    base = dict(teacher=str(teacher), train_files=[str(train_file)], eval_files=[str(heldout_file)],
                output_dir=str(out), student_layers=2, seq_len=48, batch_size=8, max_steps=6, log_every=1,
                save_every=3, keep_last=2, eval_batches=2, progress=False, tensorboard=False, seed=7,
                kl_on="targets", device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def make_tiny_classifier(folder: Path, labels: tuple[str, ...], layers: int = 4, seed: int = 0,
                         dropout: float = 0.1) -> Path:
    """A tiny BertForSequenceClassification "fine-tuned" on `labels` (random weights, every tensor saved,
    so distilx loads it as a trained classifier) with the real bert-base-uncased tokenizer files."""
    from transformers import BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout, id2label=dict(enumerate(labels)),
                        label2id={name: i for i, name in enumerate(labels)})
    model = BertForSequenceClassification(config)
    torch.nn.init.normal_(model.classifier.bias, std=0.02)  # as fine-tuning leaves it (a zero bias: untrained)
    model.save_pretrained(folder)
    for name in TOKENIZER_FILES:
        shutil.copyfile(assets.minilm_dir() / name, folder / name)
    return folder


def kernel_doc_slice(folder: Path, every: int = 40) -> tuple[tuple[str, ...], Path, Path]:
    """(labels, train.jsonl, heldout.jsonl): every `every`-th paragraph of the kernel-documentation
    task's train and test splits (distilx.assets.kernel_doc_classification)."""
    import json

    splits = assets.kernel_doc_classification()
    out = []
    for split in ("train", "test"):
        dst = folder / f"{split}.jsonl"
        with open(splits[split], encoding="utf-8") as f:
            dst.write_text("".join(line for i, line in enumerate(f) if i % every == 0), encoding="utf-8")
        out.append(dst)
    labels = tuple(sorted({json.loads(line)["label"] for line in out[0].read_text().splitlines()}))
    return labels, out[0], out[1]


def classification_config(teacher, train_file, heldout_file, out, /, **kw) -> TrainConfig:
    """A sequence-classification run of a few cheap CPU steps."""
    base = dict(task="sequence-classification", teacher=str(teacher), train_files=[str(train_file)],
                eval_files=[str(heldout_file)], output_dir=str(out), student_layers=2, seq_len=48, batch_size=8,
                max_steps=6, log_every=1, save_every=3, keep_last=2, eval_batches=2, progress=False,
                tensorboard=False, seed=7, device="cpu")
    base.update(kw)
    return TrainConfig(**base)


def english_batch(tokenizer_json, lines, n=6):
    """Real English sentences tokenized by the reference `tokenizers` library, padded per batch."""
    tok = HFTokenizer.from_file(str(tokenizer_json))
    tok.no_truncation()
    tok.enable_truncation(max_length=48)
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    texts = [line for line in lines if len(line) > 300][:n - 1] + [next(line for line in lines if 40 < len(line) < 90)]
    enc = tok.encode_batch(texts)
    ids = torch.tensor([e.ids for e in enc])
    mask = torch.tensor([e.attention_mask for e in enc])
    assert (mask == 0).any(), "the batch should contain padding"
    return ids, mask


def max_logit_diff(teacher, student, ids, mask):
    teacher.eval(), student.eval()
    with torch.no_grad():
        t = teacher(input_ids=ids, attention_mask=mask).logits
        s = student(input_ids=ids, attention_mask=mask).logits
    real = mask.bool()
    return (t[real] - s[real]).abs().max().item()
