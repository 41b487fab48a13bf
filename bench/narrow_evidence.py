"""Issue 20's evidence: narrower students of a real teacher (docs/evidence.md, "Narrower students").

Teacher (masked-LM part): all-MiniLM-L6-v2 (6 x 384, 12 heads of 32) with its MLM head fitted as in the
demo (`distilx.demo.demo_teacher`, cached). Teacher (task part): the same encoder fine-tuned on the
kernel-documentation subsystem task as bench/task_evidence.py does it (cached). Students: 6 layers x
--hidden (192: 6 heads of 32, intermediate --intermediate), three variants, one run per seed each, the
same steps on the same batches per seed, the cosine off (the widths differ):

  (a) weight selection (uniform), relations (alpha_relation, the teacher's last layer, 12 relation heads)
      + logits KL + the gold-label CE (MLM / class);
  (b) weight selection (uniform), logits KL + the gold-label CE only;
  (c) as (a) from random initialisation.

Masked-LM: held-out masked-token accuracy, perplexity and top-1 agreement with the teacher (the demo's
held-out file and masks). Task: test accuracy, macro-F1 and agreement on task_evidence's fixed sample.
Also measured: what each initialisation computes at step 0 (before any training).

    python bench/narrow_evidence.py --json docs/narrow_evidence.json
    # or one process per seed and part, then: python bench/narrow_evidence.py --merge a.json b.json ... --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from distilx import TrainConfig, assets, train
from distilx.classification_eval import accuracy, macro_f1, predict
from distilx.demo import DEMO_DEFAULTS, demo_teacher
from distilx.evaluation import count_parameters, evaluate, forward_seconds
from distilx.models import init_student, load_teacher
from distilx.models.classification import load_classifier
from distilx.tasks.labelled_data import LabelledExamples, LabelSet

sys.path.insert(0, str(Path(__file__).resolve().parent))
import task_evidence  # noqa: E402  (the task's teacher and evaluation sample, shared with issue 11's evidence)

VARIANTS = {"a": "weight selection, relations + KL + CE", "b": "weight selection, KL + CE",
            "c": "random init, relations + KL + CE"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=int, default=192)
    p.add_argument("--intermediate", type=int, default=768)
    p.add_argument("--alpha-relation", type=float, default=5.0)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--parts", default="mlm,task")
    p.add_argument("--mlm-steps", type=int, default=60)
    p.add_argument("--mlm-batch-size", type=int, default=16)
    p.add_argument("--mlm-seq-len", type=int, default=64)
    p.add_argument("--mlm-lr", type=float, default=3e-4, help="the demo's distillation lr")
    p.add_argument("--eval-batches", type=int, default=8)
    p.add_argument("--task-steps", type=int, default=150)
    p.add_argument("--task-lr", type=float, default=5e-4)
    p.add_argument("--no-step0", action="store_true", help="skip the step-0 measurement (a second process of a run "
                   "split by seed)")
    p.add_argument("--work-dir", default=str(assets.cache_dir() / "narrow-evidence"))
    p.add_argument("--json", help="write every number here")
    p.add_argument("--merge", nargs="+", metavar="JSON", help="no runs: merge these files' runs (one process per "
                   "seed or part) into --json, with the summaries")
    return p.parse_args(argv)


def log(message: str) -> None:
    print(message, flush=True)


def spread(values: list[float]) -> dict:
    return {"mean": statistics.mean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0,
            "runs": values}


def variant_settings(variant: str, alpha_relation: float) -> dict:
    settings = dict(student_init="random" if variant == "c" else "weight-selection", alpha_cos=0.0)
    if variant in ("a", "c"):
        settings["alpha_relation"] = alpha_relation
    return settings


def mlm_part(args, seeds: list[int], work: Path) -> dict:
    d = DEMO_DEFAULTS
    teacher_dir = demo_teacher(head_steps=d["head_steps"], seq_len=d["seq_len"], batch_size=d["batch_size"],
                               lr=d["head_lr"], seed=d["seed"], log=log)
    train_file, heldout_file = assets.english_corpus()
    teacher = load_teacher(teacher_dir)

    def held_out(student) -> dict:
        return evaluate(teacher, student, [heldout_file], teacher_dir, seq_len=d["seq_len"], batch_size=32,
                        max_batches=args.eval_batches, seed=1234, speed_batches=3)

    result = {"teacher": str(teacher_dir), "step0": {}, "runs": []}

    def keep_teacher(m: dict) -> None:
        result["teacher_metrics"] = {k: m[k] for k in ("teacher_accuracy", "teacher_perplexity", "teacher_params",
                                                        "student_params", "targets")}

    for init, selection in () if args.no_step0 else (("weight-selection", "uniform"), ("weight-selection", "importance"),
                                                      ("random", "uniform")):
        student = init_student(teacher, n_layers=6, hidden=args.hidden, intermediate=args.intermediate, init=init,
                               selection=selection, seed=0)
        m = held_out(student)
        result["step0"][f"{init}:{selection}"] = {k: m[k] for k in ("student_accuracy", "student_perplexity",
                                                                     "top1_agreement")}
        log(f"[mlm step 0] {init} ({selection}): agreement {m['top1_agreement']:.1%}, accuracy "
            f"{m['student_accuracy']:.1%}, perplexity {m['student_perplexity']:.0f}")
        keep_teacher(m)
    for seed in seeds:
        for variant in VARIANTS:
            out = work / f"mlm-{variant}-seed{seed}"
            config = TrainConfig(teacher=str(teacher_dir), train_files=[str(train_file)], output_dir=str(out),
                                 student_layers=6, student_hidden=args.hidden, student_intermediate=args.intermediate,
                                 seq_len=args.mlm_seq_len, batch_size=args.mlm_batch_size, kl_on="targets",
                                 lr=args.mlm_lr, max_steps=args.mlm_steps, log_every=10, save_every=args.mlm_steps,
                                 keep_last=1, eval_batches=0, seed=seed, device="cpu", progress=False,
                                 tensorboard=False, overwrite_output_dir=True,
                                 **variant_settings(variant, args.alpha_relation))
            start = time.perf_counter()
            trained = train(config)
            seconds = time.perf_counter() - start
            m = held_out(trained.student)
            keep_teacher(m)
            run = {"variant": variant, "seed": seed, "train_seconds": round(seconds, 1), "final": trained.history[-1],
                   **{k: m[k] for k in ("student_accuracy", "student_perplexity", "top1_agreement", "speedup")}}
            result["runs"].append(run)
            log(f"[mlm {variant} seed {seed}] accuracy {run['student_accuracy']:.2%}, perplexity "
                f"{run['student_perplexity']:.0f}, agreement {run['top1_agreement']:.2%} ({seconds:.0f} s)")
    return result


def task_part(args, seeds: list[int], work: Path) -> dict:
    targs = task_evidence.parse_args([])  # its defaults: the teacher and sample of docs/evidence.md
    splits = assets.kernel_doc_classification()
    labels = sorted({json.loads(line)["label"] for line in splits["train"].read_text().splitlines()})
    teacher_dir, fit = task_evidence.fine_tuned_teacher(targs, splits, labels)
    teacher = load_classifier(teacher_dir)
    sample = task_evidence.eval_sample(splits, targs.split, targs.eval_examples, work)
    examples = LabelledExamples([sample], teacher_dir, text_fields=["text"], label_field="label",
                                labels=LabelSet.of(teacher.config), seq_len=targs.seq_len)
    gold = examples.labels
    t_pred = predict(teacher, examples, batch_size=targs.batch_size)
    result = {"teacher": {"fit": fit, "accuracy": accuracy(t_pred, gold), "macro_f1": macro_f1(t_pred, gold),
                          "params": count_parameters(teacher)}, "runs": []}
    log(f"[task teacher] accuracy {result['teacher']['accuracy']:.2%} on {len(gold)} examples")
    for seed in seeds:
        for variant in VARIANTS:
            out = work / f"task-{variant}-seed{seed}"
            config = TrainConfig(task="sequence-classification", teacher=str(teacher_dir),
                                 train_files=[str(splits["train"])], output_dir=str(out), student_layers=6,
                                 student_hidden=args.hidden, student_intermediate=args.intermediate,
                                 seq_len=targs.seq_len, batch_size=targs.batch_size, max_steps=args.task_steps,
                                 lr=args.task_lr, warmup_ratio=0.1, log_every=10, save_every=args.task_steps,
                                 keep_last=1, eval_batches=0, progress=False, tensorboard=False, seed=seed,
                                 device="cpu", overwrite_output_dir=True, freeze_embeddings=variant != "c",
                                 **variant_settings(variant, args.alpha_relation))
            start = time.perf_counter()
            trained = train(config)
            seconds = time.perf_counter() - start
            s_pred = predict(trained.student, examples, batch_size=targs.batch_size)
            run = {"variant": variant, "seed": seed, "accuracy": accuracy(s_pred, gold),
                   "macro_f1": macro_f1(s_pred, gold), "agreement": accuracy(s_pred, t_pred),
                   "train_seconds": round(seconds, 1), "final": trained.history[-1]}
            if "speed" not in result:
                batches = [b for b, _ in zip(examples.in_order(targs.batch_size), range(5))]
                t_s, s_s = forward_seconds(teacher, trained.student.eval(), batches, torch.device("cpu"))
                result["speed"] = {"speedup": t_s / s_s, "student_params": count_parameters(trained.student)}
            result["runs"].append(run)
            log(f"[task {variant} seed {seed}] accuracy {run['accuracy']:.2%}, macro-F1 {run['macro_f1']:.3f}, "
                f"agreement {run['agreement']:.2%} ({seconds:.0f} s)")
    return result


def summarise(part: dict, metrics: tuple[str, ...]) -> dict:
    return {variant: {m: spread([r[m] for r in part["runs"] if r["variant"] == variant]) for m in metrics}
            for variant in VARIANTS if any(r["variant"] == variant for r in part["runs"])}


def merged(files: list[str]) -> dict:
    """One result from the JSON files of processes that each ran some seeds or parts: runs concatenated, the
    step-0 measurement, teachers and settings from whichever file has them, load averages and seconds of each."""
    parts = [json.loads(Path(f).read_text()) for f in files]
    seeds = sorted({int(seed) for p in parts for seed in p["setup"]["seeds"].split(",")})
    setup = {**parts[0]["setup"], "seeds": ",".join(map(str, seeds)), "no_step0": False, "json": None,
             "parts": ",".join(name for name in ("mlm", "task") if any(name in p for p in parts))}
    result = {"setup": setup, "merged_from": [Path(f).name for f in files],
              "processes": [{k: p.get(k) for k in ("load_average_at_start", "load_average_at_end", "seconds")}
                            for p in parts]}
    for name in ("mlm", "task"):
        mine = [p[name] for p in parts if name in p]
        if mine:
            result[name] = {**{k: v for m in mine for k, v in m.items() if k != "runs" and v},
                            "runs": [r for m in mine for r in m["runs"]]}
    return result


def report(result: dict) -> None:
    if "mlm" in result:
        result["mlm"]["summary"] = summarise(result["mlm"], ("student_accuracy", "student_perplexity", "top1_agreement"))
        for variant, s in result["mlm"]["summary"].items():
            log(f"mlm ({variant}) {VARIANTS[variant]}: accuracy {s['student_accuracy']['mean']:.2%} ± "
                f"{s['student_accuracy']['std']:.2%}, perplexity {s['student_perplexity']['mean']:.0f} ± "
                f"{s['student_perplexity']['std']:.0f}, agreement {s['top1_agreement']['mean']:.2%} ± "
                f"{s['top1_agreement']['std']:.2%}")
    if "task" in result:
        result["task"]["summary"] = summarise(result["task"], ("accuracy", "macro_f1", "agreement"))
        for variant, s in result["task"]["summary"].items():
            log(f"task ({variant}) {VARIANTS[variant]}: accuracy {s['accuracy']['mean']:.2%} ± "
                f"{s['accuracy']['std']:.2%}, macro-F1 {s['macro_f1']['mean']:.3f} ± {s['macro_f1']['std']:.3f}, "
                f"agreement {s['agreement']['mean']:.2%}")


def main(argv=None) -> int:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    args = parse_args(argv)
    if args.merge:
        result = merged(args.merge)
        report(result)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        return 0
    seeds = [int(s) for s in args.seeds.split(",")]
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    log(f"torch threads: {torch.get_num_threads()}; load average at start {os.getloadavg()}")
    result = {"setup": vars(args), "load_average_at_start": os.getloadavg()}
    if "mlm" in args.parts:
        result["mlm"] = mlm_part(args, seeds, work)
    if "task" in args.parts:
        result["task"] = task_part(args, seeds, work)
    report(result)
    result["seconds"] = round(time.perf_counter() - start, 1)
    result["load_average_at_end"] = os.getloadavg()
    log(f"total {result['seconds']:.0f} s wall; load average {result['load_average_at_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
