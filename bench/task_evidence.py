"""Issue 11's evidence: task-stage distillation on the kernel-documentation subsystem task (docs/evidence.md).

Data: `distilx.assets.kernel_doc_classification()` — paragraphs of the Linux kernel documentation
(Debian linux-doc-6.1, translations excluded) labelled by their top-level folder, the 8 largest, split
by FILE into train/dev/test. Evaluation on a fixed random sample of the chosen split (`--split`,
`--eval-examples`).

Teacher: all-MiniLM-L6-v2 with a classification head, fine-tuned on the train split by distilx itself
(`distilx train --task sequence-classification` keeping all 6 layers with the cross-entropy term alone,
from an untrained head, which is then never run; embeddings frozen), cached under the distilx cache dir.

Students, 3 of the teacher's 6 layers ([0, 3, 5]), one run per seed each, all for the same steps on the
same batches (per seed):
  (a) distilled: initialised from the teacher (encoder layers and head), the task-stage loss defaults;
  (b) fine-tuned alone: the same initialisation, the cross-entropy on the gold labels only;
  (c) random init: the same shape with fresh weights, distilled as (a).
(a) and (b) keep the teacher's embeddings fixed (`freeze_embeddings`: half the cost of a step on CPU);
(c) trains its embeddings, which start random.

    python bench/task_evidence.py --json docs/task_evidence.json   # the defaults are docs/evidence.md's run

prints the table that docs/evidence.md quotes and writes every number to the JSON file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import resource
import shutil
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

from distilx import TrainConfig, assets, train
from distilx.classification_eval import accuracy, macro_f1, predict
from distilx.evaluation import count_parameters, forward_seconds
from distilx.models.classification import load_classifier
from distilx.tasks.labelled_data import LabelledExamples, LabelSet

VARIANTS = {
    "a": "distilled (teacher init)",
    "b": "fine-tuned alone, CE (teacher init)",
    "c": "distilled (random init)",
}
CE_ONLY = {"alpha_kl": 0.0, "alpha_cos": 0.0, "alpha_mlm": 1.0}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seq-len", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=150, help="optimizer steps of each student")
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate of the students")
    p.add_argument("--teacher-steps", type=int, default=300, help="fine-tuning steps of the teacher")
    p.add_argument("--teacher-lr", type=float, default=3e-4)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--variants", default="a,b,c", help=f"which students: {VARIANTS}")
    p.add_argument("--split", default="test", choices=("dev", "test"), help="the split evaluated")
    p.add_argument("--eval-examples", type=int, default=2000, help="a fixed random sample of that split")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a TrainConfig field for the distilled students (a) and (c), e.g. temperature=4")
    p.add_argument("--work-dir", default=None, help="student runs go here (default: a folder in the cache)")
    p.add_argument("--json", help="write every number here")
    return p.parse_args(argv)


def log(message: str) -> None:
    print(message, flush=True)


def untrained_classifier(folder: Path, labels: list[str], seed: int) -> Path:
    """all-MiniLM-L6-v2 with a fresh classification head for `labels`, and its tokenizer files."""
    from transformers import BertForSequenceClassification
    from distilx.training import _copy_tokenizer_files

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "classifier.* newly initialized": that is the point
        model = BertForSequenceClassification.from_pretrained(
            str(assets.minilm_dir()), id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)})
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    _copy_tokenizer_files(assets.minilm_dir(), folder)
    return folder


def fine_tuned_teacher(args, splits: dict, labels: list[str]) -> tuple[Path, dict]:
    """The cached fine-tuned MiniLM classifier (fine-tuned now if missing) and what its fit recorded."""
    key = (f"{args.teacher_steps}:{args.teacher_lr}:{args.seq_len}:{args.batch_size}:{splits['train'].parent.name}:"
           f"{labels}:v2")
    folder = assets.cache_dir() / f"teacher-minilm-kernel-docs-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
    if (folder / "teacher_fit.json").is_file():
        log(f"[teacher] cached: {folder}")
        return folder, json.loads((folder / "teacher_fit.json").read_text())
    log(f"[teacher] fine-tuning all-MiniLM-L6-v2 + head for {args.teacher_steps} steps (cached in {folder})")
    start = time.perf_counter()
    scratch = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    untrained = untrained_classifier(scratch / "untrained", labels, seed=0)
    config = TrainConfig(task="sequence-classification", teacher=str(untrained), train_files=[str(splits["train"])],
                         output_dir=str(scratch / "run"), student_layers=6, seq_len=args.seq_len,
                         batch_size=args.batch_size, max_steps=args.teacher_steps, lr=args.teacher_lr,
                         warmup_ratio=0.1, log_every=25, save_every=args.teacher_steps, keep_last=1, eval_batches=0,
                         freeze_embeddings=True, progress=False, tensorboard=False, seed=0, device="cpu", **CE_ONLY)
    train(config)
    fit = {"base": "all-MiniLM-L6-v2", "steps": args.teacher_steps, "lr": args.teacher_lr, "seq_len": args.seq_len,
           "batch_size": args.batch_size, "seconds": round(time.perf_counter() - start, 1)}
    (scratch / "run" / "teacher_fit.json").write_text(json.dumps(fit, indent=2) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    (scratch / "run").rename(folder)  # the cache entry appears complete or not at all
    shutil.rmtree(scratch)
    return folder, fit


def eval_sample(splits: dict, split: str, n: int, work: Path) -> Path:
    """A fixed random sample of `n` examples of `split` (all of them if it has fewer)."""
    lines = splits[split].read_text(encoding="utf-8").splitlines()
    chosen = sorted(random.Random(1234).sample(range(len(lines)), min(n, len(lines))))
    path = work / f"{split}-sample-{len(chosen)}.jsonl"
    path.write_text("".join(lines[i] + "\n" for i in chosen), encoding="utf-8")
    return path


def student_config(args, variant: str, seed: int, teacher: Path, train_file: Path, out: Path,
                   task: str = "sequence-classification") -> TrainConfig:
    base = dict(task=task, teacher=str(teacher), train_files=[str(train_file)],
                output_dir=str(out), student_layers=3, seq_len=args.seq_len, batch_size=args.batch_size,
                max_steps=args.steps, lr=args.lr, warmup_ratio=0.1, log_every=10, save_every=args.steps, keep_last=1,
                eval_batches=0, progress=False, tensorboard=False, seed=seed, device="cpu", overwrite_output_dir=True)
    if variant == "b":
        return TrainConfig(**base, **CE_ONLY, freeze_embeddings=True)
    config = TrainConfig(**base, student_init="random" if variant == "c" else "teacher", freeze_embeddings=variant == "a")
    return config.override(dict(item.split("=", 1) for item in args.set))


def spread(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "runs": values}


def finish(result: dict, start: float, json_path: str | None) -> None:
    """Wall and CPU seconds and the load average into `result`, logged; `result` written to json_path."""
    result["seconds"] = round(time.perf_counter() - start, 1)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 1)
    result["load_average_at_end"] = os.getloadavg()
    log(f"total {result['seconds']:.0f} s wall, {result['cpu_seconds']:.0f} s CPU (this process), load average "
        f"{result['load_average_at_end'][1]:.1f} over the last 5 minutes")
    if json_path:
        Path(json_path).write_text(json.dumps(result, indent=2) + "\n")


def main(argv=None) -> int:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    args = parse_args(argv)
    start = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = args.variants.split(",")
    work = Path(args.work_dir) if args.work_dir else assets.cache_dir() / "task-evidence"
    work.mkdir(parents=True, exist_ok=True)
    splits = assets.kernel_doc_classification()
    labels = sorted({json.loads(line)["label"] for line in splits["train"].read_text().splitlines()})
    log(f"torch threads: {torch.get_num_threads()}; labels: {labels}")

    teacher_dir, fit = fine_tuned_teacher(args, splits, labels)
    teacher = load_classifier(teacher_dir)
    sample = eval_sample(splits, args.split, args.eval_examples, work)
    examples = LabelledExamples([sample], teacher_dir, text_fields=["text"], label_field="label",
                                labels=LabelSet.of(teacher.config), seq_len=args.seq_len)
    gold = examples.labels
    t_pred = predict(teacher, examples, batch_size=args.batch_size)
    result = {"setup": {**vars(args), "train_examples": sum(1 for _ in open(splits["train"])),
                        "eval_file": str(sample), "eval_examples": len(gold), "labels": labels},
              "teacher": {"fit": fit, "accuracy": accuracy(t_pred, gold), "macro_f1": macro_f1(t_pred, gold),
                          "params": count_parameters(teacher)},
              "runs": []}
    log(f"[teacher] {args.split} accuracy {result['teacher']['accuracy']:.2%}, macro-F1 "
        f"{result['teacher']['macro_f1']:.3f} on {len(gold)} examples")

    for seed in seeds:
        for variant in variants:
            out = work / f"student-{variant}-seed{seed}"
            run_start = time.perf_counter()
            trained = train(student_config(args, variant, seed, teacher_dir, splits["train"], out))
            seconds = time.perf_counter() - run_start
            s_pred = predict(trained.student, examples, batch_size=args.batch_size)
            run = {"variant": variant, "seed": seed, "accuracy": accuracy(s_pred, gold),
                   "macro_f1": macro_f1(s_pred, gold), "agreement": accuracy(s_pred, t_pred),
                   "train_seconds": round(seconds, 1), "final_loss": trained.history[-1]}
            result["runs"].append(run)
            log(f"[{variant} seed {seed}] accuracy {run['accuracy']:.2%}, macro-F1 {run['macro_f1']:.3f}, "
                f"agreement {run['agreement']:.2%} ({seconds:.0f} s)")
            if variant == variants[0] and seed == seeds[0]:  # the speed-up, measured once
                student = trained.student.eval()
                batches = [b for b, _ in zip(examples.in_order(args.batch_size), range(5))]
                t_time, s_time = forward_seconds(teacher, student, batches, torch.device("cpu"))
                result["speed"] = {"teacher_forward_s": t_time, "student_forward_s": s_time,
                                   "speedup": t_time / s_time, "student_params": count_parameters(student)}

    t_acc = result["teacher"]["accuracy"]
    result["summary"] = {}
    log("")
    log(f"{'model':<42}{'accuracy (mean ± std)':>24}{'retention':>11}{'macro-F1':>10}")
    log(f"{'teacher (6 layers, fine-tuned)':<42}{t_acc:>24.2%}{'':>11}{result['teacher']['macro_f1']:>10.3f}")
    for variant in variants:
        runs = [r for r in result["runs"] if r["variant"] == variant]
        acc, f1 = spread([r["accuracy"] for r in runs]), spread([r["macro_f1"] for r in runs])
        result["summary"][variant] = {"name": VARIANTS[variant], "accuracy": acc, "macro_f1": f1,
                                      "retention": acc["mean"] / t_acc}
        text = f"{acc['mean']:.2%} ± {acc['std']:.2%}"
        log(f"{'(' + variant + ') ' + VARIANTS[variant]:<42}{text:>24}{acc['mean'] / t_acc:>11.1%}{f1['mean']:>10.3f}")
    finish(result, start, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
