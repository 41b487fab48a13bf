"""Task-stage distillation of a token classifier (NER, POS, chunking): a fine-tuned
…ForTokenClassification teacher, tagged sentences (tagged_data.py), docs/tasks.md.

The loss reads one row per LABELLED position (a word's first sub-token, or every sub-token with
label_all_subtokens): KL(teacher || student) at temperature T on the tag logits (times T^2) + the
cross-entropy on the gold tag — `distillation_loss` on those rows (losses/heads.py) — and optionally the
cosine between the last hidden states of every real token.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ..models.heads import TOKEN_CLASSIFICATION
from ..models.token_classification import check_token_classifier, untrained_token_classifier
from ..report import token_classification_table
from .head_task import HeadTask
from .labelled_data import LabelSet
from .tagged_data import TaggedExamples, read_sentences, tag_order

__all__ = ["TokenClassificationTask", "TASK", "tags_of_files"]


def tags_of_files(files, config) -> list[str]:
    """The tags written in `files`, in `tag_order` (names; integer ids as their decimal text)."""
    found = {tag for sentence in read_sentences(files, config.tokens_field, config.tags_field) for tag in sentence.tags}
    if any(isinstance(t, int) for t in found) and any(isinstance(t, str) for t in found):
        raise ValueError(f"{list(files)} mix tag names and integer tag ids: write every tag one way")
    return [str(tag) for tag in sorted(found, key=tag_order)]


class TokenClassificationTask(HeadTask):
    name = "token-classification"
    kind = TOKEN_CLASSIFICATION

    def check(self, model: nn.Module, role: str = "teacher") -> None:
        check_token_classifier(model, role)

    def examples(self, files, config, labels: LabelSet) -> TaggedExamples:
        return TaggedExamples(files, config.tokenizer or config.teacher, tokens_field=config.tokens_field,
                              tags_field=config.tags_field, labels=labels, seq_len=config.seq_len,
                              label_all_subtokens=config.label_all_subtokens)

    def check_eval_input(self, config, tokenizer, teacher) -> None:
        super().check_eval_input(config, tokenizer, teacher)
        if config.eval_files and config.eval_batches != 0:  # the scheme against the tag set, not after the run
            from ..token_classification_eval import checked_scheme

            checked_scheme(config.tag_scheme, config.strict_entities, LabelSet.of(teacher.config).names, [])

    def evaluate(self, teacher, student, config, tokenizer, device) -> dict:
        from ..token_classification_eval import evaluate_token_classification

        return evaluate_token_classification(teacher, student, config.eval_files, config.tokenizer or config.teacher,
                                             tokens_field=config.tokens_field, tags_field=config.tags_field,
                                             seq_len=config.seq_len, batch_size=config.batch_size,
                                             max_batches=config.eval_batches, device=device,
                                             tag_scheme=config.tag_scheme, strict=config.strict_entities)

    def table(self, metrics: dict) -> str:
        return token_classification_table(metrics)

    def finetune_model(self, encoder_path: str, config) -> nn.Module:
        """A …ForTokenClassification on the encoder folder's weights, its head fresh (seeded by config.seed),
        its tags config.labels when the config has that list, else the tags of config.train_files in
        `tag_order` ("O" first, then by entity type, B before I before E before S)."""
        tags = list(getattr(config, "labels", None) or []) or tags_of_files(config.train_files, config)
        if len(tags) < 2:
            raise ValueError(f"train_files {list(config.train_files)} hold {len(tags)} distinct tag(s) {tags}: a token "
                             "classifier needs at least two")
        return untrained_token_classifier(Path(encoder_path), tags, seed=config.seed)


TASK = TokenClassificationTask()
