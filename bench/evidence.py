"""Evidence that distillation works: the DistilBERT ablation at small scale, equal steps.

Three students of the demo teacher (all-MiniLM-L6-v2 + fitted MLM head, see distilx.demo_pretrain), 3 layers:
  triple  : initialised from teacher layers [0, 3, 5], loss 5*KL + 2*MLM + 1*COS (the recipe)
  mlm     : same initialisation, MLM loss alone (alpha_kl = alpha_cos = 0)
  random  : random initialisation, the triple loss
All see the same batches for the same steps; all are evaluated on the same held-out masks.
Writes docs/evidence.json and docs/evidence.png; prints a markdown table.

    python bench/evidence.py --steps 60 --batch-size 16
"""

import argparse
import json
import time
from pathlib import Path

from distilx import TrainConfig, assets, train
from distilx.demo_pretrain import PRETRAIN, pretrain_teacher
from distilx.evaluation import evaluate
from distilx.plots import plot_runs

VARIANTS = {
    "triple": dict(),
    "mlm": dict(alpha_kl=0.0, alpha_cos=0.0),
    "random": dict(student_init="random"),
}


def main():
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()  # no per-load reports in the benchmark output
    hf_logging.disable_progress_bar()
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=64)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--eval-batches", type=int, default=8)
    ap.add_argument("--out", default=str(assets.cache_dir() / "evidence"))
    ap.add_argument("--docs", default=str(Path(__file__).resolve().parent.parent / "docs"))
    args = ap.parse_args()
    teacher = pretrain_teacher(PRETRAIN)
    train_file, heldout_file = assets.english_corpus()
    results, runs = {}, {}
    for name, extra in VARIANTS.items():
        out = Path(args.out) / name
        start = time.perf_counter()
        config = TrainConfig(teacher=str(teacher), train_files=[str(train_file)], output_dir=str(out),
                             student_layers=3, seq_len=args.seq_len, batch_size=args.batch_size, kl_on="targets",
                             lr=args.lr, max_steps=args.steps, log_every=5, save_every=args.steps, keep_last=1,
                             eval_batches=0, seed=0, device="cpu", progress=False, tensorboard=False,
                             overwrite_output_dir=True, **extra)
        train(config)
        metrics = evaluate(teacher, out, [heldout_file], seq_len=args.seq_len, batch_size=32,
                           max_batches=args.eval_batches, seed=1234, speed_batches=1)
        metrics["train_seconds"] = round(time.perf_counter() - start, 1)
        results[name] = metrics
        runs[name] = out
        print(name, json.dumps({k: metrics[k] for k in ("student_accuracy", "top1_agreement", "student_perplexity")}),
              flush=True)
    docs = Path(args.docs)
    docs.mkdir(exist_ok=True)
    (docs / "evidence.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2) + "\n")
    plot_runs(runs, docs / "evidence.png", title=f"3-layer students of MiniLM-L6, {args.steps} steps each")
    t = results["triple"]
    print(f"\nteacher: accuracy {t['teacher_accuracy']:.1%}, perplexity {t['teacher_perplexity']:.0f} "
          f"({t['targets']} held-out targets)\n")
    print("| student | held-out accuracy | perplexity | top-1 agreement with teacher |")
    print("|---|---|---|---|")
    for name, m in results.items():
        print(f"| {name} | {m['student_accuracy']:.1%} | {m['student_perplexity']:.0f} | {m['top1_agreement']:.1%} |")


if __name__ == "__main__":
    main()
