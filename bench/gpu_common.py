"""What the GPU scripts build at run time from the checkout alone (the lent machines have no asset package).

- `repository_paragraphs`: the repository's own prose (README.md, docs/*.md), one paragraph per line;
- `train_wordpiece`: a lowercase WordPiece tokenizer trained on it with the `tokenizers` library;
- `token_stream` / `packed_blocks`: the same text pre-tokenized and packed into fixed-length rows in memory;
- `write_corpus`: those paragraphs repeated (in a shuffled order per repetition) into a text file of at
  least a given number of bytes, so that a training stream does not wrap around during a timed run;
- `device_summary` / `write_json`: one line naming the machine, and results written where the device
  tool brings them back ($OUT).

Used by bench/gpu_train_smoke.py and bench/gpu_train.py.
"""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def repository_paragraphs(root: Path = REPO) -> list[str]:
    """The prose paragraphs of README.md and docs/*.md, each on one line (code blocks and tables dropped)."""
    paragraphs = []
    for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))]:
        for block in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
            block = block.strip()
            if block.startswith(("```", "|")):
                continue
            text = " ".join(block.split())
            if len(text) >= 80:
                paragraphs.append(text)
    if not paragraphs:
        raise FileNotFoundError(f"no prose paragraphs in {root}/README.md or {root}/docs/*.md: run from a checkout")
    return paragraphs


def train_wordpiece(folder: Path, paragraphs: list[str], vocab_size: int):
    """A lowercase WordPiece tokenizer trained on `paragraphs` (at most `vocab_size` units: fewer when the text
    holds fewer), saved in `folder` as tokenizer.json and vocab.txt. Returns the `tokenizers` object."""
    from tokenizers import BertWordPieceTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = BertWordPieceTokenizer(lowercase=True)
    tokenizer.train_from_iterator(paragraphs, vocab_size=vocab_size, min_frequency=1, show_progress=False)
    tokenizer.save(str(folder / "tokenizer.json"))
    tokenizer.save_model(str(folder))  # vocab.txt
    return tokenizer


def write_corpus(path: Path, paragraphs: list[str], min_bytes: int, seed: int = 0) -> Path:
    """`paragraphs` repeated, each repetition in its own shuffled order, until the file holds >= min_bytes."""
    rng = random.Random(seed)
    written = 0
    with open(path, "w", encoding="utf-8") as f:
        while True:
            order = list(paragraphs)
            rng.shuffle(order)
            text = "\n".join(order) + "\n"
            f.write(text)
            written += len(text.encode("utf-8"))
            if written >= min_bytes:
                return path


def token_stream(tokenizer_json: Path, paragraphs: list[str]) -> list[int]:
    """The paragraphs' ids without framing, concatenated (a pre-tokenized source)."""
    from tokenizers import Tokenizer

    hf = Tokenizer.from_file(str(tokenizer_json))
    ids: list[int] = []
    for enc in hf.encode_batch(paragraphs, add_special_tokens=False):
        ids.extend(enc.ids)
    return ids


def packed_blocks(stream: list[int], seq_len: int, n_blocks: int, cls_id: int, sep_id: int):
    """[n_blocks, seq_len] int64 rows [CLS] + seq_len - 2 ids + [SEP], taken from `stream` round and round
    (packed: every token real)."""
    import torch

    body = seq_len - 2
    ids = torch.tensor(stream, dtype=torch.long)
    reps = -(-n_blocks * body // ids.numel())
    flat = ids.repeat(reps)[: n_blocks * body].view(n_blocks, body)
    frame = lambda token: torch.full((n_blocks, 1), token, dtype=torch.long)  # noqa: E731
    return torch.cat([frame(cls_id), flat, frame(sep_id)], dim=1)


def device_summary(device: str) -> str:
    import torch

    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        return (f"{props.name} (sm_{props.major}{props.minor}, {props.total_memory / 2**30:.0f} GiB, "
                f"{props.multi_processor_count} SMs), torch {torch.__version__}")
    return f"CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads), torch {torch.__version__}"


def default_out(name: str) -> Path | None:
    """$OUT/<name> when the device tool's OUT is set, else None (no file)."""
    return Path(os.environ["OUT"]) / name if os.environ.get("OUT") else None


def write_json(path: Path | None, data) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        os.replace(tmp, path)  # a run cut short by its time limit leaves a whole file, never half of one
