"""The `distilx` command: train | eval | plot | demo.

    distilx train --config run.toml --lr 3e-4 --max-steps 1000      # flags override the file
    torchrun --nproc-per-node 8 -m distilx.cli train --config run.toml
    distilx train --task sequence-classification --teacher FINETUNED_DIR --train-files train.jsonl
    distilx eval --teacher TEACHER_DIR --student RUN_DIR --files heldout.txt
    distilx eval --task sequence-classification --teacher FINETUNED_DIR --student RUN_DIR --files test.jsonl
    distilx eval --task question-answering --teacher QA_DIR --student RUN_DIR --files dev-v1.1.json --seq-len 384
    distilx eval --task token-classification --teacher NER_DIR --student RUN_DIR --files test.conll
    distilx plot RUN_DIR
    distilx demo                                                   # the embedded default

Every TrainConfig field is a `train` flag (`student_layers` -> `--student-layers`, its help and
default from config.py, listed in docs/config.md); lists are comma-separated (`--train-files
a.txt,b.txt`). Errors print one line and exit with status 2 (bad usage or input, paths that cannot be
read or written) or 1 (the run failed), never a traceback for a user mistake. A run stopped by a
preemption signal or its time limit writes a checkpoint and exits with status 75 (EXIT_PREEMPTED):
requeue it with `--resume auto`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

__all__ = ["main"]


# TrainConfig booleans given as bare flags (`--overwrite-output-dir`, not `--overwrite-output-dir true`)
_SWITCHES = ("overwrite_output_dir",)
# fields whose flag may be given bare, meaning this value (`--resume` is `--resume always`)
_BARE_VALUES = {"resume": "always"}

_EXIT_STATUSES = ("exit status: 0 done; 1 the run failed (a full disk, non-finite losses); 2 bad usage or input; "
                  "75 stopped by a preemption signal or the time limit, with a checkpoint: start it again with "
                  "--resume auto (docs/pipeline.md, 'Clusters')")


def _train_parser(sub) -> None:
    from .config import TrainConfig, default_text

    p = sub.add_parser("train", help="distil a teacher into a student (every TrainConfig field is a flag)",
                       description="Distil a masked-LM teacher into a shallower student. Flags override "
                                   "the --config file; the fields are listed in docs/config.md. Without --config, "
                                   "`--output-dir RUN --resume` continues the run from RUN/train_config.json.",
                       epilog=_EXIT_STATUSES)
    p.add_argument("--config", help="a .toml / .json / .yaml file with TrainConfig fields")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        text = f.metadata["help"].replace("%", "%%")  # argparse formats help strings with %
        if f.name in _SWITCHES:
            p.add_argument(flag, dest=f.name, action="store_const", const="true", default=None, help=text)
            continue
        if f.name in _BARE_VALUES:
            p.add_argument(flag, dest=f.name, nargs="?", const=_BARE_VALUES[f.name], default=None, metavar="VALUE",
                           help=f"{text} (default: {default_text(f)})")
            continue
        repeatable = f.default_factory is not dataclasses.MISSING and isinstance(f.default_factory(), dict)
        p.add_argument(flag, dest=f.name, default=None, metavar="NAME=VALUE" if repeatable else "VALUE",
                       action="append" if repeatable else "store", help=f"{text} (default: {default_text(f)})")


def _qa_eval_arguments(e, defaults) -> None:
    """`distilx eval --task question-answering`'s options: TrainConfig's question-answering fields (their help
    and defaults from config.py), and where the student's answers go."""
    from .config import TrainConfig

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    for name in TrainConfig._TASK_FIELDS["question-answering"]:
        kind = {"squad_v2": lambda v: v.lower() in ("1", "true", "yes", "on")}.get(name, type(getattr(defaults, name)))
        e.add_argument("--" + name.replace("_", "-"), type=kind, default=getattr(defaults, name),
                       help=f"{fields[name].metadata['help']} (default: {getattr(defaults, name)})".replace("%", "%%"))


def _knob_help(name: str, defaults) -> str:
    """A TrainConfig field's help (its one home) with its default, for a flag of another command."""
    field = next(f for f in dataclasses.fields(defaults) if f.name == name)
    return f"{field.metadata['help']} (default: {getattr(defaults, name)})".replace("%", "%%")


def _build_parser() -> argparse.ArgumentParser:
    from .config import TrainConfig
    from .tasks import TASKS

    defaults = TrainConfig()
    parser = argparse.ArgumentParser(prog="distilx", description="Distil masked-LM teachers into shallower students.")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)

    e = sub.add_parser("eval", help="held-out metrics of a teacher and a student on the same examples")
    e.add_argument("--task", choices=TASKS, default=TASKS[0],
                   help="masked-lm: masked-token accuracy and perplexity on the same masks; sequence-classification: "
                        "accuracy and macro-F1 (multi-label: micro/macro-F1; regression: Pearson/Spearman) and the "
                        "student/teacher retention on labelled examples; question-answering: SQuAD exact match and F1 "
                        "and their retention; token-classification: entity P/R/F1 and token accuracy on tagged sentences")
    e.add_argument("--teacher", required=True, help="teacher folder")
    e.add_argument("--student", required=True, help="student folder (a train run's output_dir)")
    e.add_argument("--files", required=True, nargs="+",
                   help="held-out files: text, one document per line (masked-lm); labelled .jsonl/.csv; "
                        "SQuAD-layout .json/.jsonl (question-answering)")
    e.add_argument("--tokenizer", help="tokenizer.json / vocab.txt / folder (default: the student folder)")
    e.add_argument("--text-fields", default=",".join(defaults.text_fields),
                   help=f"sequence-classification: the text field(s), comma-separated (default: {','.join(defaults.text_fields)})")
    e.add_argument("--label-field", default=defaults.label_field,
                   help=f"sequence-classification: the label field (default: {defaults.label_field})")
    e.add_argument("--threshold", type=float, default=defaults.multi_label_threshold,
                   help=_knob_help("multi_label_threshold", defaults))
    for name in ("tokens_field", "tags_field", "tag_scheme"):
        e.add_argument("--" + name.replace("_", "-"), default=getattr(defaults, name), help=_knob_help(name, defaults))
    e.add_argument("--strict-entities", action="store_true", help=_knob_help("strict_entities", defaults))
    e.add_argument("--predictions", help="question-answering: write the student's answers there, {id: answer text} "
                                         '("" for no answer), as the Hugging Face examples do; token-classification: '
                                         "the student's tags, one JSON list of tags per sentence, in input order")
    e.add_argument("--seq-len", type=int, default=128)
    e.add_argument("--batch-size", type=int, default=32)
    e.add_argument("--max-batches", type=int, default=None,
                   help="evaluate that many batches (default: 20 for masked-lm, every example for the other tasks; "
                        "question-answering: the first MAX_BATCHES x BATCH_SIZE questions)")
    e.add_argument("--seed", type=int, default=0, help="masked-lm: the seed of the masks")
    e.add_argument("--device", default="cpu")
    e.add_argument("--json", help="also write the metrics to this file")
    _qa_eval_arguments(e, defaults)

    pl = sub.add_parser("plot", help="draw RUN_DIR/loss_curves.png from RUN_DIR/metrics.jsonl")
    pl.add_argument("run_dir")

    d = sub.add_parser("demo", help="the embedded default: MiniLM-L6 teacher -> 3-layer student on English text")
    d.add_argument("--output-dir", default=None, help="where the student goes (default: a folder in the cache)")
    d.add_argument("--steps", type=int, default=None, help="distillation steps (default: the demo's budget)")
    d.add_argument("--head-steps", type=int, default=None, help="MLM-head fitting steps if not cached")
    d.add_argument("--refit-teacher", action="store_true", help="ignore the cached fitted teacher")
    return parser


def _train_config(args):
    """--config and the flags; without --config, a resume reads the run's own train_config.json."""
    from pathlib import Path

    from .config import TrainConfig, resume_mode
    from .resume import CONFIG_FILE, folder_config

    overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config") and v is not None}
    if args.config:
        return TrainConfig.load(args.config).override(overrides)
    output_dir = overrides.get("output_dir", TrainConfig().output_dir)
    if resume_mode(overrides.get("resume", "never")) != "never":
        if (Path(output_dir) / CONFIG_FILE).is_file():
            return folder_config(output_dir, overrides)
        if "train_files" not in overrides:  # nothing to resume from, nothing to start: say so, not "train_files is empty"
            raise FileNotFoundError(f"--resume without --config continues the run in {output_dir} as its {CONFIG_FILE} "
                                    "describes it, but there is no such file: give the run's folder, its --config, or "
                                    "the flags of a new run")
    return TrainConfig().override(overrides)


def _cmd_train(args) -> int:
    from .preemption import EXIT_PREEMPTED
    from .report import plural
    from .tasks import task_for
    from .training import train

    config = _train_config(args)
    result = train(config)
    if result.preempted:
        return EXIT_PREEMPTED
    if result.eval_metrics is not None:
        print(task_for(config.task).table(result.eval_metrics))
        print(json.dumps(result.eval_metrics, indent=2))
    print(f"student saved to {result.output_dir} after {plural(result.steps, 'step')} "
          f"({result.skipped_steps} skipped)")
    return 0


def _cmd_eval(args) -> int:
    from .evaluation import check_output_file

    if args.predictions and args.task not in ("question-answering", "token-classification"):
        raise ValueError(f"--predictions writes a question-answering student's answers or a token classifier's tags; "
                         f"it does not apply to --task {args.task}")
    for flag, path in (("--json", args.json), ("--predictions", args.predictions)):
        if path:
            check_output_file(path, flag)  # now, not after the evaluation
    if args.task == "sequence-classification":
        from .classification_eval import evaluate_classification
        from .report import classification_table

        fields = [f for f in args.text_fields.split(",") if f.strip()]
        metrics = evaluate_classification(args.teacher, args.student, args.files, args.tokenizer or args.student,
                                          text_fields=fields, label_field=args.label_field, seq_len=args.seq_len,
                                          batch_size=args.batch_size, max_batches=args.max_batches,
                                          device=args.device, threshold=args.threshold)
        print(classification_table(metrics))
    elif args.task == "question-answering":
        from .qa_eval import evaluate_question_answering
        from .report import question_answering_table

        metrics = evaluate_question_answering(
            args.teacher, args.student, args.files, args.tokenizer or args.student, seq_len=args.seq_len,
            doc_stride=args.doc_stride, max_query_len=args.max_query_len, max_answer_len=args.max_answer_len,
            n_best_size=args.n_best_size, null_score_diff_threshold=args.null_score_diff_threshold,
            squad_version=None if args.squad_v2 is None else ("2.0" if args.squad_v2 else "1.1"),
            batch_size=args.batch_size, max_questions=None if args.max_batches is None else args.max_batches * args.batch_size,
            device=args.device, predictions_file=args.predictions)
        print(question_answering_table(metrics))
    elif args.task == "token-classification":
        from .report import token_classification_table
        from .token_classification_eval import evaluate_token_classification

        metrics = evaluate_token_classification(
            args.teacher, args.student, args.files, args.tokenizer or args.student, tokens_field=args.tokens_field,
            tags_field=args.tags_field, seq_len=args.seq_len, batch_size=args.batch_size,
            max_batches=args.max_batches, device=args.device, tag_scheme=args.tag_scheme,
            strict=args.strict_entities, predictions=args.predictions)
        print(token_classification_table(metrics))
    else:
        from .evaluation import evaluate

        metrics = evaluate(args.teacher, args.student, args.files, args.tokenizer or args.student,
                           seq_len=args.seq_len, batch_size=args.batch_size,
                           max_batches=20 if args.max_batches is None else args.max_batches,
                           seed=args.seed, device=args.device)
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    return 0


def _cmd_plot(args) -> int:
    from .plots import plot_run

    print(plot_run(args.run_dir))
    return 0


def _cmd_demo(args) -> int:
    from .demo import run_demo

    run_demo(output_dir=args.output_dir, steps=args.steps, head_steps=args.head_steps,
             refit_teacher=args.refit_teacher)
    return 0


def _early_signals(args) -> list[str]:
    from .config import TrainConfig, _coerce

    if args.preempt_signals is None:
        return TrainConfig().preempt_signals
    return _coerce("preempt_signals", args.preempt_signals, list[str])


def _quiet_transformers() -> None:
    """Hide transformers' per-load reports and progress bars; distilx prints what matters."""
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    from .diskfull import DiskFullError

    args = _build_parser().parse_args(argv)
    handler = {"train": _cmd_train, "eval": _cmd_eval, "plot": _cmd_plot, "demo": _cmd_demo}[args.command]
    try:
        if args.command == "train":  # before the slow imports: a signal while they run still stops cleanly
            from .preemption import install_early
            install_early(_early_signals(args))
        if args.command in ("train", "eval", "demo"):
            _quiet_transformers()
        return handler(args)
    except (FloatingPointError, DiskFullError) as exc:  # before OSError: a full disk is no bad input
        print(f"distilx {args.command}: the run stopped: {exc}", file=sys.stderr)
        return 1
    except (ValueError, OSError, ModuleNotFoundError) as exc:  # bad input, unreadable/unwritable paths
        print(f"distilx {args.command}: error: {exc}", file=sys.stderr)
        return 2
    finally:
        from .distributed import teardown_distributed
        from .preemption import uninstall_early
        teardown_distributed()
        uninstall_early()


if __name__ == "__main__":
    sys.exit(main())
