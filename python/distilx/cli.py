"""The `distilx` command: train | finetune | eval | plot | demo.

    distilx train --config run.toml --lr 3e-4 --max-steps 1000      # flags override the file
    torchrun --nproc-per-node 8 -m distilx.cli train --config run.toml
    distilx train --output-dir RUN --resume                          # continue RUN from RUN/train_config.json
    distilx finetune --task sequence-classification --model ENCODER_DIR --train-files train.jsonl --output-dir teacher
    distilx train --task sequence-classification --teacher FINETUNED_DIR --train-files train.jsonl
    distilx eval --teacher TEACHER_DIR --student RUN_DIR --files heldout.txt
    distilx eval --task sequence-classification --teacher FINETUNED_DIR --student RUN_DIR --files test.jsonl
    distilx plot RUN_DIR
    distilx demo --stage both                                        # the embedded default, both stages

Flags follow one convention, generated from one table: every TrainConfig field is a flag of `train`
(`student_layers` -> `--student-layers`; its help and default from config.py, listed in docs/config.md),
of `finetune` except the fields about a teacher and its student, and of `eval` where eval reads it.
A boolean is `--flag` (true), `--flag true` or `--flag false`; a list is comma-separated (`--train-files
a.txt,b.txt`), space-separated works too (`--train-files data/*.txt`); a field with a bare form
(`--resume`, meaning `--resume always`) takes its value as well. Errors print one line and exit with
status 2 (bad usage or input, paths that cannot be read or written) or 1 (the run failed), never a
traceback for a user mistake. A run stopped by a preemption signal or its time limit writes a
checkpoint and exits with status 75 (EXIT_PREEMPTED): requeue it with `--resume auto`.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import types
import typing

__all__ = ["main", "config_flag"]

# fields whose flag may be given bare, meaning this value (`--resume` is `--resume always`)
_BARE_VALUES = {"resume": "always"}
_UNSET = dataclasses.MISSING  # config_flag's shown_default when the field's own default is shown

_EXIT_STATUSES = ("exit status: 0 done; 1 the run failed (a full disk, non-finite losses); 2 bad usage or input; "
                  "75 stopped by a preemption signal or the time limit, with a checkpoint: start it again with "
                  "--resume auto (docs/pipeline.md, 'Clusters')")


def _field_kind(f: dataclasses.Field) -> str:
    """'bool', 'list', 'dict' or 'value': how a TrainConfig field is spelled on the command line."""
    from .config import TrainConfig

    hint = typing.get_type_hints(TrainConfig)[f.name]
    base = hint
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None: the X
        base = next(a for a in typing.get_args(hint) if a is not type(None))
    if base is bool:
        return "bool"
    return {list: "list", dict: "dict"}.get(typing.get_origin(base), "value")


class _JoinList(argparse.Action):
    """A list flag: its values (space-separated, each maybe comma-separated) as one comma-separated text,
    which TrainConfig reads as the list."""

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, ",".join(values))


def bool_flag(parser, *flags: str, dest: str, help: str, default=None) -> argparse.Action:
    """A boolean flag of the convention: bare `--flag` is true, or `--flag true|false`."""
    return parser.add_argument(*flags, dest=dest, nargs="?", const="true", default=default, metavar="true|false",
                               help=help)


def config_flag(parser, name: str, *, flag: str | None = None, aliases: tuple[str, ...] = (), help: str | None = None,
                shown_default=_UNSET, required: bool = False) -> None:
    """Add TrainConfig field `name` to `parser` as a flag (default None: unset, the config decides), with the
    field's help from config.py and "(default: ...)" (`shown_default`: another default to show, e.g.
    finetune's). Booleans, lists, NAME=VALUE tables and bare forms follow the module's convention."""
    from .config import TrainConfig, default_text

    f = TrainConfig.__dataclass_fields__[name]
    flags = (flag or "--" + name.replace("_", "-"), *aliases)
    text = (help or f.metadata["help"]).replace("%", "%%")  # argparse formats help strings with %
    if not required:
        text += f" (default: {default_text(f, shown_default)})"
    kind = _field_kind(f)
    choices = f.metadata.get("choices")
    metavar = "|".join(choices) if choices and len(choices) <= 4 else "VALUE"
    if name in _BARE_VALUES:
        action = parser.add_argument(*flags, dest=name, nargs="?", const=_BARE_VALUES[name], default=None,
                                     metavar=metavar, help=text)
    elif kind == "bool":
        action = bool_flag(parser, *flags, dest=name, help=text)
    elif kind == "list":
        action = parser.add_argument(*flags, dest=name, nargs="+", action=_JoinList, default=None, metavar="A,B",
                                     help=text, required=required)
    elif kind == "dict":
        action = parser.add_argument(*flags, dest=name, action="append", default=None, metavar="NAME=VALUE", help=text)
    else:
        action = parser.add_argument(*flags, dest=name, default=None, metavar=metavar, help=text, required=required)
    action.config_field = name  # tests/test_cli_help.py checks every such flag against the table


def _train_parser(sub) -> None:
    from .config import TrainConfig

    p = sub.add_parser("train", help="distil a teacher into a student (every TrainConfig field is a flag)",
                       description="Distil a teacher — a masked-LM model (pre-training distillation) or a fine-tuned "
                                   "task model (--task sequence-classification, token-classification, "
                                   "question-answering) — into a shallower student. Flags override the --config file; "
                                   "the fields are listed in docs/config.md. Without --config, `--output-dir RUN "
                                   "--resume` continues the run from RUN/train_config.json.",
                       epilog=_EXIT_STATUSES)
    p.add_argument("--config", help="a .toml / .json / .yaml file with TrainConfig fields")
    for f in dataclasses.fields(TrainConfig):
        config_flag(p, f.name)


# finetune's reading of a field where train's help names the teacher
_FINETUNE_HELP = {"tokenizer": "tokenizer.json, vocab.txt or folder; None = the --model folder"}


def _finetune_parser(sub) -> None:
    from .config import TrainConfig
    from .finetune import FINETUNE_DEFAULTS, NOT_FINETUNE

    p = sub.add_parser("finetune", help="fine-tune a fresh task head on a pre-trained encoder: a teacher to distil",
                       description="Fine-tune a fresh head of --task on a pre-trained encoder or masked-LM folder with "
                                   "the gold-label loss, by the same loop as train (checkpoints, --resume, run folder, "
                                   "metrics, plot); the output folder is a teacher for distilx train --task "
                                   "(docs/tasks.md). Flags override the --config file.",
                       epilog=_EXIT_STATUSES)
    p.add_argument("--model", help="the pre-trained encoder or masked-LM folder whose weights the model starts from "
                                   "(its tokenizer files too, unless --tokenizer); required, except that `--output-dir "
                                   "RUN --resume` reads it from RUN/train_config.json")
    p.add_argument("--config", help="a .toml / .json / .yaml file with TrainConfig fields")
    masked_lm_only = TrainConfig._TASK_FIELDS["masked-lm"]  # masked-lm has no head to fine-tune
    for f in dataclasses.fields(TrainConfig):
        if f.name not in NOT_FINETUNE and f.name not in masked_lm_only:
            config_flag(p, f.name, shown_default=FINETUNE_DEFAULTS.get(f.name, _UNSET), help=_FINETUNE_HELP.get(f.name))


def _eval_parser(sub) -> None:
    from .config import TrainConfig

    default_batches = TrainConfig().eval_batches
    e = sub.add_parser("eval", help="held-out metrics of a teacher and a student on the same examples",
                       description="Evaluate a teacher and its student on the same held-out examples and print "
                                   "the teacher-vs-student table and its JSON (every task the same way). Defaults "
                                   "are train's: with a run's own --seq-len, --batch-size and --seed, an eval of its "
                                   "output on its eval files repeats the run's closing table (timings aside).")
    config_flag(e, "task", help="masked-lm: masked-token accuracy, perplexity and KL to the teacher on the same "
                                "masks; sequence-classification: accuracy and macro-F1 (multi-label: micro/macro-F1; "
                                "regression: Pearson/Spearman) and the student/teacher retention on labelled "
                                "examples; question-answering: SQuAD exact match and F1 and their retention; "
                                "token-classification: entity P/R/F1 and token accuracy on tagged sentences")
    e.add_argument("--teacher", required=True, help="teacher folder")
    e.add_argument("--student", required=True, help="student folder (a train run's output_dir)")
    config_flag(e, "eval_files", flag="--files", required=True,
                help="held-out files: text, one document per line (masked-lm); labelled .jsonl/.csv; tagged "
                     ".jsonl/CoNLL (token-classification); SQuAD-layout .json/.jsonl (question-answering)")
    config_flag(e, "tokenizer", help="tokenizer.json / vocab.txt / folder; None = the student's folder")
    for name in ("seq_len", "batch_size", "seed", "device", "text_fields", "label_field"):
        config_flag(e, name)
    config_flag(e, "multi_label_threshold", aliases=("--threshold",))
    for name in ("tokens_field", "tags_field", "tag_scheme", "strict_entities",
                 *TrainConfig._TASK_FIELDS["question-answering"]):
        config_flag(e, name)
    e.add_argument("--max-batches", type=int, default=None,
                   help=f"evaluate that many batches (default: train's eval_batches, {default_batches}, for "
                        "masked-lm; every example for the labelled tasks, whose files are small and whose numbers "
                        "are quoted; question-answering: the first MAX_BATCHES x BATCH_SIZE questions)")
    e.add_argument("--predictions", metavar="FILE",
                   help="question-answering: write the student's answers there, {id: answer text} (\"\" for no "
                        "answer), as the Hugging Face examples do; token-classification: the student's tags, one "
                        "JSON list of tags per sentence, in input order")
    e.add_argument("--json", metavar="FILE", help="also write the metrics to FILE (they are printed too)")


def _demo_parser(sub) -> None:
    from .demo import STAGES

    d = sub.add_parser("demo", help="the embedded default: both distillation stages on a real teacher and real "
                                    "text, beside DistilBERT's claims",
                       description="Pre-training distillation of all-MiniLM-L6-v2 (an MLM head fitted and cached on "
                                   "first run) into 3 layers on English text, and task-stage distillation of the same "
                                   "encoder fine-tuned on the kernel-docs subsystems (fitted by distilx finetune, "
                                   "cached); then the table beside DistilBERT's claims (README, docs/pipeline.md).")
    d.add_argument("--stage", choices=STAGES, default="both",
                   help="which stage to run (default: both)")
    d.add_argument("--output-dir", default=None,
                   help="where the students go, one subfolder per stage (default: demo-run in the distilx cache)")
    d.add_argument("--pretrain-steps", type=int, default=None, help="pre-training distillation steps (default: the "
                                                                     "demo's budget, see docs/pipeline.md)")
    d.add_argument("--task-steps", type=int, default=None, help="task-stage distillation steps (default: the demo's "
                                                                 "budget)")
    bool_flag(d, "--refit-teachers", dest="refit_teachers", default="false",
              help="fit both teachers again instead of reusing the cached ones (default: false)")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distilx", description="Distil encoders into shallower students: masked-LM "
                                     "teachers at pre-training time, fine-tuned task models at the task stage; "
                                     "fine-tune a task teacher; evaluate; run the demo.")
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _finetune_parser(sub)
    _eval_parser(sub)
    pl = sub.add_parser("plot", help="draw RUN_DIR/loss_curves.png from RUN_DIR/metrics.jsonl")
    pl.add_argument("run_dir")
    _demo_parser(sub)
    return parser


def _config_values(args, skip=()) -> dict:
    """The TrainConfig fields given as flags."""
    return {k: v for k, v in vars(args).items() if k not in ("command", "config", *skip) and v is not None}


def _train_config(args):
    """--config and the flags; without --config, a resume reads the run's own train_config.json."""
    from pathlib import Path

    from .config import TrainConfig, resume_mode
    from .resume import CONFIG_FILE, folder_config

    overrides = _config_values(args)
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
    from .report import emit, plural
    from .tasks import task_for
    from .training import train

    config = _train_config(args)
    result = train(config)
    if result.preempted:
        return EXIT_PREEMPTED
    if result.eval_metrics is not None:
        emit(result.eval_metrics, task_for(config.task).table(result.eval_metrics))
    print(f"student saved to {result.output_dir} after {plural(result.steps, 'step')} "
          f"({result.skipped_steps} skipped)")
    return 0


def _cmd_finetune(args) -> int:
    from .finetune import finetune, finetune_config, model_of_run
    from .report import emit, plural
    from .tasks import task_for

    config = finetune_config(_config_values(args, skip=("model",)), args.config)
    result = finetune(args.model or model_of_run(config), config)
    if result.train_result.preempted:
        from .preemption import EXIT_PREEMPTED

        return EXIT_PREEMPTED
    if result.eval_metrics is not None:
        emit(result.eval_metrics, task_for(config.task).table_one(result.eval_metrics))
    print(f"fine-tuned model saved to {result.output_dir} after {plural(result.steps, 'step')}: a teacher for "
          f"distilx train --task {config.task} --teacher {result.output_dir}")
    return 0


# --- distilx eval: one evaluator per task, (args, config, device) -> (metrics, table) ----------------
def _eval_masked_lm(args, config, device):
    from .evaluation import evaluate
    from .report import metrics_table

    metrics = evaluate(args.teacher, args.student, config.eval_files, config.tokenizer,
                       seq_len=config.seq_len, batch_size=config.batch_size,
                       max_batches=config.eval_batches if args.max_batches is None else args.max_batches,
                       seed=config.seed, device=device)
    return metrics, metrics_table(metrics)


def _eval_sequence_classification(args, config, device):
    from .classification_eval import evaluate_classification
    from .report import classification_table

    metrics = evaluate_classification(args.teacher, args.student, config.eval_files, config.tokenizer,
                                      text_fields=config.text_fields, label_field=config.label_field,
                                      seq_len=config.seq_len, batch_size=config.batch_size,
                                      max_batches=args.max_batches, device=device,
                                      threshold=config.multi_label_threshold)
    return metrics, classification_table(metrics)


def _eval_question_answering(args, config, device):
    from .qa_eval import evaluate_question_answering
    from .report import question_answering_table

    metrics = evaluate_question_answering(
        args.teacher, args.student, config.eval_files, config.tokenizer, seq_len=config.seq_len,
        doc_stride=config.doc_stride, max_query_len=config.max_query_len, max_answer_len=config.max_answer_len,
        n_best_size=config.n_best_size, null_score_diff_threshold=config.null_score_diff_threshold,
        squad_version=None if config.squad_v2 is None else ("2.0" if config.squad_v2 else "1.1"),
        batch_size=config.batch_size,
        max_questions=None if args.max_batches is None else args.max_batches * config.batch_size,
        device=device, predictions_file=args.predictions)
    return metrics, question_answering_table(metrics)


def _eval_token_classification(args, config, device):
    from .report import token_classification_table
    from .token_classification_eval import evaluate_token_classification

    metrics = evaluate_token_classification(
        args.teacher, args.student, config.eval_files, config.tokenizer, tokens_field=config.tokens_field,
        tags_field=config.tags_field, seq_len=config.seq_len, batch_size=config.batch_size,
        max_batches=args.max_batches, device=device, tag_scheme=config.tag_scheme,
        strict=config.strict_entities, predictions=args.predictions)
    return metrics, token_classification_table(metrics)


_EVALUATORS = {"masked-lm": _eval_masked_lm, "sequence-classification": _eval_sequence_classification,
               "question-answering": _eval_question_answering, "token-classification": _eval_token_classification}


def _cmd_eval(args) -> int:
    from .config import TrainConfig
    from .distributed import setup_distributed
    from .evaluation import check_output_file
    from .report import emit

    if args.predictions and args.task not in ("question-answering", "token-classification"):
        raise ValueError(f"--predictions writes a question-answering student's answers or a token classifier's tags; "
                         f"it does not apply to --task {args.task}")
    for flag, path in (("--json", args.json), ("--predictions", args.predictions)):
        if path:
            check_output_file(path, flag)  # now, not after the evaluation
    values = _config_values(args, skip=("teacher", "student", "max_batches", "json", "predictions"))
    values.setdefault("tokenizer", args.student)
    config = TrainConfig().override(values)  # the flags read and checked as train reads them
    device = setup_distributed(config.device).device  # "auto": the GPU when there is one, as train
    metrics, table = _EVALUATORS[config.task](args, config, device)
    emit(metrics, table, args.json)
    return 0


def _cmd_plot(args) -> int:
    from .plots import plot_run

    print(plot_run(args.run_dir))
    return 0


def _cmd_demo(args) -> int:
    from .config import _coerce
    from .demo import run_demo

    run_demo(output_dir=args.output_dir, stage=args.stage, pretrain_steps=args.pretrain_steps,
             task_steps=args.task_steps, refit_teachers=_coerce("refit_teachers", args.refit_teachers, bool))
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


_COMMANDS = {"train": _cmd_train, "finetune": _cmd_finetune, "eval": _cmd_eval, "plot": _cmd_plot, "demo": _cmd_demo}


def main(argv: list[str] | None = None) -> int:
    from .diskfull import DiskFullError

    args = _build_parser().parse_args(argv)
    try:
        if args.command in ("train", "finetune"):  # before the slow imports: a signal while they run stops cleanly
            from .preemption import install_early
            install_early(_early_signals(args))
        if args.command != "plot":
            _quiet_transformers()
        return _COMMANDS[args.command](args)
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
