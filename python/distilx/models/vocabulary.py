"""Is the tokenizer in use the teacher's own? One check for the CLI, the training loop, eval and the Trainer.

A student learns the teacher's outputs over the teacher's vocabulary, so every side of a run must agree
on which token each id means. A size and the special ids are not enough: a vocabulary whose ids above
1000 are permuted has both and trains a student on the wrong tokens without a word. So each side's whole
token -> id map is read and digested (sha256 of its sorted (id, token) pairs) and compared:

- the teacher folder's tokenizer files: the reference;
- the tokenizer in use (`--tokenizer`, or for eval the student folder's), a file or a folder, or a
  Hugging Face tokenizer object (the Trainer's `processing_class`);
- a `--student` folder's tokenizer files, when it has any.

A folder's vocabulary is read as the data engine reads it: tokenizer.json, else vocab.txt; else any other
format transformers reads (vocab.json + merges.txt, a SentencePiece model) through AutoTokenizer; a folder
without tokenizer files has no vocabulary to compare. When the teacher folder has none (or the teacher is
a module), the tokenizer in use is the reference (a student folder is compared with it), and a warning
says that only its size and special ids can be checked against the teacher.

Then the model side (`check_vocab`): every id the tokenizer can produce has an embedding in the
teacher and in the student, and the special ids the models' configs declare are the tokenizer's. Every
message names the side at fault: the tokenizer, the teacher or the student.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

from torch import nn

__all__ = ["Vocabulary", "vocabulary_of", "check_same_vocabulary", "check_vocab", "check_vocabulary"]

_OTHER_FORMATS = ("vocab.json", "sentencepiece.bpe.model", "spm.model", "spiece.model", "tokenizer.model")


class Vocabulary(NamedTuple):
    source: str  # what was read, for messages
    ids: dict[str, int]  # token -> id
    digest: str  # sha256 of the sorted (id, token) pairs


def _digest(ids: dict[str, int]) -> str:
    h = hashlib.sha256()
    for token, i in sorted(ids.items(), key=lambda item: (item[1], item[0])):
        h.update(f"{i}\t{token}\n".encode("utf-8", "surrogatepass"))
    return h.hexdigest()


@lru_cache(maxsize=16)
def _file_vocabulary(path: str, size: int, mtime_ns: int) -> dict[str, int]:
    """The token -> id map of a tokenizer.json (added tokens included) or a vocab.txt, read by the
    `tokenizers` library (as the engine's Rust side reads them)."""
    from tokenizers import Tokenizer
    from tokenizers.models import WordPiece

    try:
        if path.endswith(".txt"):
            return dict(WordPiece.read_file(path))
        return Tokenizer.from_file(path).get_vocab(with_added_tokens=True)
    except Exception as exc:  # the library's own errors (a file that does not parse) carry no file name
        raise ValueError(f"{path}: not a tokenizer file the `tokenizers` library reads ({exc}); pass a "
                         "tokenizer.json or vocab.txt") from None


def _read_file(path: Path) -> Vocabulary:
    st = path.stat()
    ids = _file_vocabulary(str(path), st.st_size, st.st_mtime_ns)
    return Vocabulary(str(path), ids, _digest(ids))


def vocabulary_of(source) -> Vocabulary | None:
    """The vocabulary of `source`: a tokenizer.json / vocab.txt file, a folder holding tokenizer files, or a
    Hugging Face tokenizer object. None: a folder without tokenizer files (nothing to compare)."""
    if source is None:
        return None
    if hasattr(source, "get_vocab"):  # a transformers / tokenizers tokenizer object
        ids = dict(source.get_vocab())
        return Vocabulary(f"a {type(source).__name__} object", ids, _digest(ids))
    path = Path(source)
    if path.is_file():
        return _read_file(path)
    if not path.is_dir():
        return None
    for name in ("tokenizer.json", "vocab.txt"):
        if (path / name).is_file():
            return _read_file(path / name)
    if any((path / name).is_file() for name in _OTHER_FORMATS):
        from transformers import AutoTokenizer

        try:
            ids = dict(AutoTokenizer.from_pretrained(str(path)).get_vocab())
        except Exception as exc:  # e.g. a SentencePiece model without the sentencepiece package
            warnings.warn(f"{path}: cannot read its tokenizer files ({type(exc).__name__}: {exc}); its vocabulary "
                          "is not compared with the others", stacklevel=3)
            return None
        return Vocabulary(str(path), ids, _digest(ids))
    return None


def _same_path(a, b) -> bool:
    try:
        return a is not None and b is not None and os.path.samefile(a, b)
    except (OSError, TypeError):
        return False


def _inside(tokenizer, folder) -> bool:
    """Is `tokenizer` the folder itself or a file in it (then the folder's side speaks for it)?"""
    return _same_path(tokenizer, folder) or (isinstance(tokenizer, (str, os.PathLike)) and
                                            _same_path(Path(tokenizer).parent, folder) and Path(tokenizer).is_file())


def _difference(reference: Vocabulary, role: str, other: Vocabulary) -> str:
    """How `other` differs from the `role`'s `reference` vocabulary, in a few words, with one example."""
    moved = sorted((i, t) for t, i in other.ids.items() if t in reference.ids and reference.ids[t] != i)
    if moved:
        i, token = moved[0]
        return (f"{len(moved)} of its {len(other.ids)} tokens have other ids (e.g. {token!r} is id {i} in it, "
                f"{reference.ids[token]} in the {role}'s)")
    extra = sorted((i, t) for t, i in other.ids.items() if t not in reference.ids)
    missing = len(set(reference.ids) - set(other.ids))
    example = f" (e.g. {extra[0][1]!r}, id {extra[0][0]})" if extra else ""
    return (f"it has {len(other.ids)} tokens, the {role}'s {len(reference.ids)}: {len(extra)} not in the {role}'s"
            f"{example}, {missing} of the {role}'s missing")


_FIX = {
    "tokenizer": "pass the teacher's own tokenizer (on the command line: leave --tokenizer unset, the teacher "
                 "folder's is used)",
    "student": "distil a student made for this teacher's vocabulary (one initialised from this teacher, or a "
               "distilx run of it), or evaluate with the student's own teacher",
}


def check_same_vocabulary(*, teacher=None, tokenizer=None, student=None) -> None:
    """Raise unless every side given that has a vocabulary has the same token -> id map (module doc).

    teacher, student: model folders (None, or no tokenizer files there: not compared); tokenizer: the
    tokenizer in use (a file, a folder or a tokenizer object; None: the teacher folder's own)."""
    sides = {"teacher": teacher, "tokenizer": tokenizer, "student": student}
    if _inside(tokenizer, teacher) or _inside(tokenizer, student):  # (eval's default: the student folder's)
        sides["tokenizer"] = None
    read = {role: vocabulary_of(source) for role, source in sides.items()
            if source is not None and not (role != "teacher" and _same_path(source, teacher))}
    read = {role: v for role, v in read.items() if v is not None}
    if "teacher" not in read and teacher is not None and tokenizer is not None:
        warnings.warn(f"the teacher folder {teacher} has no tokenizer files: the tokenizer {tokenizer} is checked "
                      "against the teacher by its size and special ids only; save the teacher's tokenizer in its "
                      "folder to have its whole vocabulary checked", stacklevel=2)
    if not read:
        return
    reference_role = next(iter(read))
    reference = read[reference_role]
    for role, vocab in read.items():
        if vocab.digest == reference.digest:
            continue
        whose = {"tokenizer": "the tokenizer", "student": "the student folder's tokenizer"}[role]
        raise ValueError(f"{whose} ({vocab.source}) is not the {reference_role}'s vocabulary ({reference.source}): "
                         f"{_difference(reference, reference_role, vocab)}; {_FIX[role]}")


# (tokenizer attribute, config entries that declare the same token, the first one set decides)
_DECLARED_IDS = (("pad_id", ("pad_token_id",)), ("mask_id", ("mask_token_id",)),
                 ("cls_id", ("cls_token_id", "bos_token_id")), ("sep_id", ("sep_token_id", "eos_token_id")))
_HF_NAMES = {"pad_id": "pad_token_id", "mask_id": "mask_token_id", "cls_id": "cls_token_id",
             "sep_id": "sep_token_id"}


def _tokenizer_ids(tokenizer) -> tuple[int, dict[str, int | None]]:
    """(ids the tokenizer can produce, its special ids) of a distilx.Tokenizer or a Hugging Face tokenizer."""
    if hasattr(tokenizer, "get_vocab"):
        return len(tokenizer), {name: getattr(tokenizer, hf, None) for name, hf in _HF_NAMES.items()}
    return tokenizer.vocab_size, {name: getattr(tokenizer, name, None) for name, _ in _DECLARED_IDS}


def check_vocab(model: nn.Module, tokenizer, role: str = "teacher") -> None:
    """Raise if the tokenizer can produce ids `model` (the `role`: teacher or student) has no embedding for,
    or its special tokens' ids differ from those the model's config declares (pad_token_id, mask_token_id,
    cls/bos_token_id, sep/eos_token_id; undeclared ones are not checked). The message names the role."""
    size, special = _tokenizer_ids(tokenizer)
    model_vocab = model.get_input_embeddings().weight.shape[0]
    fix = ("pass the teacher's own tokenizer (tokenizer = the teacher folder)" if role == "teacher" else
           "the student was made for another vocabulary: use a student of this teacher's vocabulary (e.g. one "
           "initialised from the teacher)")
    if size > model_vocab:
        raise ValueError(f"tokenizer vocabulary ({size} ids) is larger than the {role}'s ({model_vocab} embeddings): "
                         f"the {role} cannot embed its ids; {fix}")
    for name, keys in _DECLARED_IDS:
        token_id = special.get(name)
        if token_id is None:
            continue
        if token_id >= model_vocab:
            raise ValueError(f"tokenizer {name}={token_id} is outside the {role}'s {model_vocab} embeddings; {fix}")
        key = next((k for k in keys if getattr(model.config, k, None) is not None), None)
        if key is None:
            continue
        expected = getattr(model.config, key)
        if token_id not in (expected if isinstance(expected, (list, tuple)) else [expected]):
            raise ValueError(f"the tokenizer's {name.removesuffix('_id')} token is id {token_id}, but the {role}'s "
                             f"config declares {key}={expected}: the tokenizer does not belong to the {role} ({fix}), "
                             f"or its config.json declares the wrong id (fix {key})")


def check_vocabulary(tokenizer, *, teacher: nn.Module, student: nn.Module | None = None, teacher_folder=None,
                     tokenizer_source=None, student_folder=None) -> None:
    """The whole check before a run or an evaluation: the vocabularies' identity (`check_same_vocabulary`
    of the folders and the tokenizer source), then the models' embeddings and declared ids against
    `tokenizer` (`check_vocab`). tokenizer None (the Trainer without a processing_class): the
    student must have the teacher's number of embeddings."""
    check_same_vocabulary(teacher=teacher_folder or None, tokenizer=tokenizer_source, student=student_folder or None)
    if tokenizer is None:
        sizes = [m.get_input_embeddings().weight.shape[0] for m in (teacher, student)]
        if student is not None and sizes[0] != sizes[1]:
            raise ValueError(f"the student has {sizes[1]} embeddings and the teacher {sizes[0]}: a student distils "
                             "its teacher's vocabulary; use a student of this teacher's vocabulary (or pass the "
                             "tokenizer, processing_class=..., if the student's embeddings were only padded)")
        return
    check_vocab(teacher, tokenizer, "teacher")
    if student is not None:
        check_vocab(student, tokenizer, "student")
