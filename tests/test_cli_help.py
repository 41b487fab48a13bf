"""One CLI convention, generated from one table: every boolean flag is `--flag` / `--flag true|false`, every
list flag comma- or space-separated, every TrainConfig flag's help and default come from config.py — in
train, finetune and eval alike; eval and train print the same kind of table and JSON."""

import argparse
import dataclasses
import json

import pytest

from distilx import cli
from distilx.config import TrainConfig, default_text
from distilx.finetune import FINETUNE_DEFAULTS
from pipeline_helpers import make_tiny_classifier, make_tiny_teacher, kernel_doc_slice, corpus_slice

FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = cli._build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def test_every_boolean_and_list_flag_follows_the_convention():
    checked = {"bool": 0, "list": 0}
    for command, parser in subparsers().items():
        for action in parser._actions:
            if action.dest in ("help",) or not action.option_strings:
                continue
            where = f"{command} {action.option_strings[0]}"
            # no flag anywhere is a bare switch without a value
            assert not isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction,
                                           argparse._StoreConstAction)), where
            field = FIELDS.get(getattr(action, "config_field", None))  # flags generated from the table
            if command in ("train", "finetune"):  # every TrainConfig field's flag comes from the table
                assert action.dest not in FIELDS or field is not None, where
            kind = cli._field_kind(field) if field else None
            if action.nargs == "?" or kind == "bool":
                if action.dest in cli._BARE_VALUES:  # --resume: its bare form is one of its values
                    assert action.const == cli._BARE_VALUES[action.dest] in field.metadata["choices"], where
                    assert action.metavar == "|".join(field.metadata["choices"]), where
                else:
                    assert action.nargs == "?" and action.const == "true" and action.metavar == "true|false", where
                    checked["bool"] += 1
            if kind == "list":
                assert action.nargs == "+" and isinstance(action, cli._JoinList), where
                checked["list"] += 1
            if field is not None and action.required is False:
                shown = FINETUNE_DEFAULTS.get(action.dest, dataclasses.MISSING) if command == "finetune" \
                    else dataclasses.MISSING
                assert action.help.endswith(f"(default: {default_text(field, shown)})"), where
                if command == "train":  # train's help is the field's own help, word for word
                    assert action.help == field.metadata["help"].replace("%", "%%") + \
                        f" (default: {default_text(field)})", where
    assert checked["bool"] >= 6 + 5 + 1 and checked["list"] >= 6 + 5 + 2  # train, finetune, eval (+ demo)


def test_the_cluster_flags_follow_the_convention():
    """--resume, --preempt-signals, --time-limit, --time-limit-margin (the preemption work) are generated
    from the table in train and finetune alike, and read the way every flag of their kind reads."""
    for command in ("train", "finetune"):
        parser = subparsers()[command]
        flags = {a.option_strings[0]: a for a in parser._actions if a.option_strings}
        for name in ("resume", "preempt_signals", "time_limit", "time_limit_margin"):
            action = flags["--" + name.replace("_", "-")]
            assert action.config_field == name and action.help.startswith(FIELDS[name].metadata["help"][:40])
        extra = ["--model", "m"] if command == "finetune" else []
        _, config = parse(command, *extra, "--resume")
        assert config.resume == "always"
        _, config = parse(command, *extra, "--resume", "auto", "--preempt-signals", "TERM,USR1", "INT",
                          "--time-limit", "2h", "--time-limit-margin", "10m")
        assert (config.resume, config.preempt_signals, config.time_limit, config.time_limit_margin) == \
            ("auto", ["TERM", "USR1", "INT"], "2h", "10m")
        assert parse(command, *extra)[1].resume == "never"


def parse(*argv):
    args = cli._build_parser().parse_args(list(argv))
    return args, TrainConfig().override(cli._config_values(args, skip=("model", "teacher", "student", "max_batches",
                                                                       "json")))


def test_booleans_and_lists_read_the_same_way_in_every_command():
    for command in ("train", "finetune"):
        extra = ["--model", "m"] if command == "finetune" else []
        _, config = parse(command, *extra, "--progress", "--tensorboard", "false", "--freeze-embeddings", "true",
                          "--train-files", "a.txt,b.txt", "c.txt", "--adam-betas", "0.8", "0.9")
        assert config.progress is True and config.tensorboard is False and config.freeze_embeddings is True
        assert config.train_files == ["a.txt", "b.txt", "c.txt"] and config.adam_betas == [0.8, 0.9]
        _, config = parse(command, *extra, "--overwrite-output-dir")
        assert config.overwrite_output_dir is True
    args, config = parse("eval", "--task", "sequence-classification", "--teacher", "t", "--student", "s",
                         "--files", "a.txt", "b.txt,c.txt", "--text-fields", "q,p")
    assert config.eval_files == ["a.txt", "b.txt", "c.txt"] and config.text_fields == ["q", "p"]
    args = cli._build_parser().parse_args(["demo", "--refit-teachers"])
    assert args.refit_teachers == "true"
    with pytest.raises(ValueError, match="refit_teachers"):
        from distilx.config import _coerce
        _coerce("refit_teachers", "maybe", bool)


def test_eval_defaults_are_trains():
    args, config = parse("eval", "--teacher", "t", "--student", "s", "--files", "a.txt")
    defaults = TrainConfig()
    assert (config.seq_len, config.batch_size, config.device, config.seed, config.task) == \
        (defaults.seq_len, defaults.batch_size, "auto", defaults.seed, "masked-lm")
    help_text = subparsers()["eval"].format_help()
    assert "(default: 128)" in help_text and "(default: auto)" in help_text


def test_top_level_help_names_both_stages(capsys):
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "masked-LM teachers at pre-training time, fine-tuned task models at the task stage" in text
    assert "finetune" in text and "demo" in text


def printed_table_and_json(out: str):
    table, text = out[:out.index("\n{")], out[out.index("\n{") + 1:]
    return table, json.loads(text)


def test_both_eval_tasks_print_the_same_kind_of_table_and_json(tmp_path, capsys):
    teacher = make_tiny_teacher(tmp_path / "mlm-teacher")
    _, heldout = corpus_slice(tmp_path)
    labels, _, test_file = kernel_doc_slice(tmp_path, every=200)
    classifier = make_tiny_classifier(tmp_path / "classifier", labels)
    runs = {"masked-lm": (teacher, heldout), "sequence-classification": (classifier, test_file)}
    for task, (model, files) in runs.items():
        capsys.readouterr()
        out_json = tmp_path / f"{task}.json"
        assert cli.main(["eval", "--task", task, "--teacher", str(model), "--student", str(model), "--files",
                         str(files), "--seq-len", "32", "--batch-size", "8", "--max-batches", "2", "--device", "cpu",
                         "--json", str(out_json)]) == 0
        table, metrics = printed_table_and_json(capsys.readouterr().out)
        assert metrics == json.loads(out_json.read_text()) and metrics["task"] == task
        lines = table.splitlines()
        assert lines[0].startswith("held-out (") and "teacher (4 layers)" in lines[0]
        for row in ("parameters", "forward time (batch)", "student speed-up (same run)"):
            assert any(line.startswith(row) for line in lines), (task, row)
        assert f"{metrics['teacher_accuracy']:.1%}" in table  # the model against itself: the same both sides
        assert metrics["teacher_accuracy"] == metrics["student_accuracy"]


@pytest.mark.parametrize("command", [[], ["train"], ["finetune"], ["eval"], ["demo"]])
def test_help_imports_no_torch(command):
    """`--help` answers at once: building the parsers from the config table imports neither torch nor
    transformers (seconds on a cold machine)."""
    import subprocess
    import sys

    code = ("import sys\nfrom distilx.cli import main\ntry:\n    main(sys.argv[1:] + ['--help'])\nexcept SystemExit:\n"
            "    pass\nprint(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]" and "usage: distilx" in done.stdout
