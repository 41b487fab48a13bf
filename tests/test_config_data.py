"""TrainConfig reaches every stream option (its data fields, plus a `data` table checked by the
engine), from Python, TOML and the command line, with the engine's rules and defaults."""

import json
import typing

import pytest

import distilx
from distilx.cli import _build_parser
from distilx.config import TrainConfig


def other_value(field: dict):
    """A valid value of a stream option that is not its default."""
    kind, default = field["type"], field["default"]
    if kind.startswith("Literal["):
        return next(c for c in typing.get_args(eval(kind, vars(typing))) if c != default)  # noqa: S307
    if kind == "bool":
        return not default
    if kind == "float":
        return default / 2  # stays inside every [0, 1] rule
    if kind == "str":
        return default + "_x"
    return (default or 0) + 1  # int, Optional[int]


def test_every_stream_option_is_reachable_from_a_train_config(tmp_path):
    """Main's TrainConfig reached 8 of the stream's options (no `data`, no stream_options())."""
    fields = distilx.StreamOptions.fields()
    own = set(TrainConfig._STREAM_FIELDS) | {"num_threads", "rank", "world_size"}
    data = {f["name"]: other_value(f) for f in fields if f["name"] not in own}
    config = TrainConfig(data=data, data_threads=3, seq_len=64).validated()
    options = distilx.StreamOptions(**config.stream_options(rank=1, world_size=2)).to_dict()
    assert set(options) == {f["name"] for f in fields}
    assert {k: options[k] for k in data} == data
    assert (options["num_threads"], options["seq_len"], options["rank"], options["world_size"]) == (3, 64, 1, 2)
    assert (options["masking"], options["padding"], options["seed"]) == (config.masking, config.padding, config.seed)
    # The same table from TOML, and from `distilx train --data NAME=VALUE` (strings read as each option's type).
    toml = "seq_len = 64\n[data]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in data.items())
    (tmp_path / "run.toml").write_text(toml)
    assert TrainConfig.load(tmp_path / "run.toml").data == data
    cli = ",".join(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in data.items())
    args = _build_parser().parse_args(["train", "--data", cli])
    assert TrainConfig().override({"data": args.data}).data == data
    assert TrainConfig().override({"data": [f"{k}={v}" for k, v in data.items()]}).data == data


def test_data_is_checked_by_the_engine_and_cannot_shadow_the_run():
    with pytest.raises(ValueError, match='unknown stream option "min_len"'):
        TrainConfig(data={"min_len": 3}).validated()
    with pytest.raises(ValueError, match="max_unk_ratio must lie in"):
        TrainConfig().override({"data": "max_unk_ratio=2"})
    with pytest.raises(ValueError, match=r"data sets \['seq_len'\]"):
        TrainConfig(data={"seq_len": 64}).validated()
    with pytest.raises(ValueError, match="not NAME=VALUE"):
        TrainConfig().override({"data": "min_seq_len"})


def test_masking_defaults():
    """The decision item 6 asked for, pinned: a distillation run follows the recipe (frequency
    smoothing; main defaulted TrainConfig to "uniform"), while the engine's own default stays
    "uniform" (it needs no counting pass over the corpus)."""
    assert TrainConfig().masking == "frequency"
    assert TrainConfig().stream_options()["masking"] == "frequency"
    assert distilx.StreamOptions().masking == "uniform"
    assert distilx.StreamOptions().frequency_targets == "eligible"


def test_one_mlm_probability_rule_everywhere(tmp_path, english_lines, tokenizer_json):
    """[0, 1] in the engine, the config and the docs (main: (0, 1) in TrainConfig, [0, 1] in Rust)."""
    (tmp_path / "c.txt").write_text("\n".join(english_lines[:50]) + "\n")
    for p in (0.0, 1.0):
        TrainConfig(mlm_probability=p).validated()
        batch = next(iter(distilx.MaskedLMStream(tmp_path / "c.txt", tokenizer_json, mlm_probability=p, batch_size=4)))
        targets = batch["labels"] != -100
        assert targets.any() == (p == 1.0)
    for p in (-0.1, 1.5):
        with pytest.raises(ValueError, match=r"mlm_probability must lie in \[0, 1\]"):
            TrainConfig(mlm_probability=p).validated()
        with pytest.raises(ValueError, match=r"mlm_probability must lie in \[0, 1\]"):
            distilx.StreamOptions(mlm_probability=p)
