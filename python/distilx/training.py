"""The training loop: `train(config)` distils a teacher into a student, top to bottom in one file.

Order of a run: set up processes -> load teacher, tokenizer, student -> data stream -> optimizer
and schedule -> resume from the newest checkpoint (optional) -> loop over optimizer steps (each one
`grad_accum` micro-batches) with a non-finite guard, logging and periodic checkpoints -> save the
student in Hugging Face format, tokenizer files, resolved config, metrics, loss plot -> evaluate.
A preemption (a signal, the time limit: distilx.preemption) ends the loop at a step boundary with a
checkpoint instead.

What differs between tasks — which models, which data, which rows the loss reads, which evaluation —
belongs to the task (`distilx.tasks`: masked-lm, sequence- and token-classification); the loss terms to
`distillation_loss`. This file only wires them together.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .checkpoint import capture_rng, save_checkpoint
from .config import TrainConfig
from .diskfull import reporting_disk_full
from .distributed import DistEnv, run_on_main, setup_distributed
from .metrics_log import MetricsLog
from .models import check_vocabulary
from .models.adapters import encoder_adapter
from .preemption import Preemption
from .preflight import check_output_outside_inputs, training_batches
from .resume import restore
from .run_dir import RunFolder
from .run_identity import resume_point, run_identity
from .schedule import Schedule
from .tasks import task_for
from .tasks.width_terms import WidthBridge, logged_terms

__all__ = ["train", "TrainResult", "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError):
    """Raised after `max_nonfinite` consecutive optimizer steps had a non-finite loss or gradient."""


@dataclass
class TrainResult:
    output_dir: Path
    steps: int  # optimizer steps taken in total (resumed ones included)
    skipped_steps: int  # steps skipped because the loss or the gradient was not finite
    history: list[dict] = field(default_factory=list)  # the metric lines written by this process
    eval_metrics: dict | None = None  # distilx.evaluate's result on config.eval_files (rank 0)
    student: nn.Module | None = None  # the trained student (this process's copy, on its device)
    preempted: str | None = None  # why the run stopped early with a checkpoint (a signal, the time limit)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _autocast(env: DistEnv, precision: str):
    if precision in ("bf16", "fp16"):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        return torch.autocast(device_type=env.device.type, dtype=dtype)
    return contextlib.nullcontext()


def _resolve_precision(config: TrainConfig, env: DistEnv) -> str:
    if config.precision == "auto":
        return "bf16" if env.device.type == "cuda" else "fp32"
    return config.precision


def _optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW with no weight decay on biases and LayerNorm weights (1-D tensors)."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 else decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    kwargs = {"fused": True} if next(model.parameters()).is_cuda else {}
    return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.adam_betas), eps=config.adam_eps, **kwargs)


def _endless(stream):
    """Batches across epoch boundaries; re-iterating the stream starts its next epoch."""
    empty_passes = 0
    while True:
        got = False
        for batch in stream:
            got = True
            yield batch
        empty_passes = 0 if got else empty_passes + 1
        # one empty pass is legal (a resume positioned exactly at an epoch's end); two is an empty corpus
        if empty_passes >= 2:
            raise ValueError("the training stream yields no batches: the corpus is empty or every document "
                             "was filtered out (too short / too many [UNK]); check train_files and the tokenizer")


def _agree(flags: torch.Tensor, env: DistEnv) -> list[bool]:
    """Flags every rank holds true when any rank does (one all-reduce; the step's one host sync)."""
    if env.distributed:
        dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    return [bool(v) for v in flags.tolist()]


def _gather(obj, env: DistEnv) -> list:
    """Every rank's `obj` (picklable, in-process only) on every rank."""
    if not env.distributed:
        return [obj]
    out = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def _tokenizer_files(source: Path) -> list[Path]:
    """The tokenizer files of `source` (a folder or one file) that belong next to the student."""
    names = ("tokenizer.json", "vocab.txt", "vocab.json", "merges.txt", "tokenizer_config.json",
             "special_tokens_map.json")
    return [source / n for n in names if (source / n).is_file()] if source.is_dir() else [source]


def _copy_tokenizer_files(source: Path, output_dir: Path) -> None:
    """Tokenizer files next to the student so that AutoTokenizer / pipeline() load the folder."""
    for f in _tokenizer_files(source):
        if f.name == "tokenizer.json":
            # packaged tokenizer.json files may force truncation/padding to a fixed length: drop them
            data = json.loads(f.read_text(encoding="utf-8"))
            data["truncation"], data["padding"] = None, None
            (output_dir / "tokenizer.json").write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
        else:
            shutil.copyfile(f, output_dir / f.name)


def train(config: TrainConfig, *, teacher: nn.Module | None = None, student: nn.Module | None = None,
          stop_after: int | None = None) -> TrainResult:
    """Distil `config.teacher` into a student as `config` describes; returns a TrainResult.

    teacher: an already loaded teacher (skips loading `config.teacher`; the demo passes its fitted
    one). student: a ready student sharing the teacher's vocabulary, of any shape (skips
    init_student and student_init; e.g. a custom initialisation). stop_after: end this process after that many optimizer steps without the final save,
    as if it had been killed (tests of `resume`).
    Launch with `torchrun --nproc-per-node N -m distilx.cli train ...` for several processes.
    """
    # the output folder stays locked until the run ends, however it ends; a full disk is named
    with contextlib.ExitStack() as cleanup, reporting_disk_full(config.output_dir, "the run's outputs"):
        return _train(config, cleanup, teacher=teacher, student=student, stop_after=stop_after)


def _train(config: TrainConfig, cleanup: contextlib.ExitStack, *, teacher: nn.Module | None,
           student: nn.Module | None, stop_after: int | None) -> TrainResult:
    from .data import Tokenizer

    config = config.validated()
    task = task_for(config.task)
    if not config.train_files:
        raise ValueError("train_files is empty: give the corpus (files, folders or globs) or, for task "
                         "sequence-classification, the labelled .jsonl/.csv files (token-classification: tagged files)")
    if teacher is None and not config.teacher:
        raise ValueError("no teacher: set `teacher` to a folder with a masked-LM checkpoint (the supported "
                         "architectures: docs/pipeline.md), or a fine-tuned classifier for tasks sequence-/token-classification")
    check_output_outside_inputs(config)  # before anything is created
    # signals stop the run at a step boundary from now on (the handlers only take note)
    preemption = cleanup.enter_context(Preemption.for_run(config))
    env = setup_distributed(config.device)
    precision = _resolve_precision(config, env)
    output_dir = Path(config.output_dir)
    # rank 0 locks and owns the output folder: refused if it is the teacher's, busy or another run's
    run: RunFolder | None = run_on_main(env, lambda: cleanup.enter_context(RunFolder.claim(
        output_dir, resume=config.resume != "never", overwrite=config.overwrite_output_dir,
        protected={"teacher": config.teacher, "tokenizer": config.tokenizer, "student": config.student})))
    _seed_everything(config.seed)

    # --- models: the teacher is frozen, in eval mode, without gradients (bf16 on GPU) ---
    teacher_source = config.teacher if teacher is None else teacher  # what the run's identity digests
    if teacher is None:
        teacher = task.load_teacher(config.teacher)
    teacher.eval().requires_grad_(False)
    teacher.to(env.device)
    tokenizer_source = Path(config.tokenizer or config.teacher)
    tokenizer = Tokenizer(str(tokenizer_source))
    if student is None:
        student = task.build_student(teacher, config)  # from the teacher, random, or config.student's folder
    # one vocabulary: the tokenizer's token -> id map is the teacher folder's (and a student folder's), and
    # both models embed its ids; the message names the side at fault
    check_vocabulary(tokenizer, teacher=teacher, student=student, teacher_folder=config.teacher,
                     tokenizer_source=config.tokenizer, student_folder=config.student)
    task.check_models(config, teacher, student)  # positions, widths, labels: before any step
    if env.device.type == "cuda" and precision != "fp32":
        teacher.to(dtype=torch.bfloat16)  # after the student copied its fp32 weights
    if config.freeze_embeddings:
        encoder_adapter(student).embeddings(student).requires_grad_(False)  # the optimizer takes what has grads
    student.to(env.device).train()
    loss_options = dict(temperature=config.temperature, alpha_kl=config.alpha_kl, alpha_mlm=config.alpha_mlm,
                        alpha_cos=config.alpha_cos, kl_on=config.kl_on, backend=config.loss_backend)
    # the student's loss and the width-bridging terms (and their learned projection), the module DDP wraps
    bridge = WidthBridge(task.student_forward(student, loss_options, config), config, teacher, student).to(env.device)
    cleanup.callback(bridge.remove_hooks)
    distiller: nn.Module = bridge
    if env.distributed:
        distiller = nn.parallel.DistributedDataParallel(
            distiller, device_ids=[env.device.index] if env.device.type == "cuda" else None)
    # a teacher that no loss term reads is not run (e.g. the cross-entropy-only baseline)
    run_teacher = any(w > 0 for w in (config.alpha_kl, config.alpha_cos, config.alpha_relation, config.alpha_hidden))

    # --- data, optimizer, schedule ---
    stream = task.make_stream(config, tokenizer, env, teacher)
    if env.is_main:
        task.check_eval_input(config, tokenizer, teacher)  # now, not after hours of training
    if config.max_steps is not None:
        total_steps = config.max_steps
    else:
        per_epoch = stream.batches_per_epoch
        if per_epoch is None:  # raw text on one rank: one tokenization pass to learn the epoch length
            per_epoch = stream.count_batches()
        if per_epoch == 0:
            raise ValueError(f"train_files {config.train_files} give no full batch of batch_size={config.batch_size} "
                             "sequences: add text or lower --batch-size")
        total_steps = max(1, math.ceil(config.epochs * per_epoch / config.grad_accum))
    optimizer = _optimizer(bridge, config)  # the student's parameters, then the projection's
    schedule = Schedule(total_steps, config.warmup_ratio)  # warmup, then linear decay to 0
    scheduler = schedule.lambda_lr(optimizer)
    scaler = torch.amp.GradScaler(env.device.type, enabled=precision == "fp16")

    # --- resume: weights, optimizer, schedule, scaler, stream position, RNGs, counters ---
    step, skipped, tokens_seen = 0, 0, 0
    ckpt_root = output_dir / "checkpoints"
    identity = (run_identity(config.to_dict(), teacher_source, student, tokenizer.path, stream.files)
                if env.is_main else None)
    if config.resume != "never":
        # the newest intact checkpoint of this run (damaged ones are named and skipped), if it was
        # written by this configuration (else every difference is named)
        ckpt = run_on_main(env, lambda: resume_point(ckpt_root, run.run_id, identity), share=True)
        if ckpt is None and config.resume == "always":
            warnings.warn(f"resume=always but {ckpt_root} holds no checkpoint: starting from scratch", stacklevel=2)
        elif ckpt is None and env.is_main:
            print(f"resume=auto: no checkpoint of this run in {ckpt_root}: starting from step 0", flush=True)
        if ckpt is not None:  # on another number of processes too; the schedule follows a changed length
            restored = restore(ckpt, config=config, env=env, student=student, optimizer=optimizer, scheduler=scheduler,
                               scaler=scaler, schedule=schedule, bridge=bridge, stream=stream, total_steps=total_steps)
            stream, step, skipped, tokens_seen = restored.stream, restored.step, restored.skipped, restored.tokens_seen
            total_steps = restored.total_steps
            if env.is_main:
                print(f"resuming from step {step} ({ckpt})", *restored.notes, sep="\n", flush=True)

    last_saved = None

    def checkpoint() -> None:
        nonlocal last_saved
        last_saved = step
        streams = _gather(stream.state_dict(), env)  # each rank's own position and RNGs
        rngs = _gather(capture_rng(), env)
        if env.is_main:
            trainer_state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                             "schedule": schedule.state_dict(), "scaler": scaler.state_dict(), "stream": streams,
                             "rng": rngs, "step": step,
                             "skipped": skipped, "tokens_seen": tokens_seen, "world_size": env.world_size,
                             "projection": bridge.projection_state()}
            with run.writing(ckpt_root.name):
                save_checkpoint(ckpt_root, step, student.state_dict(), trainer_state, keep_last=config.keep_last,
                                run_id=run.run_id, identity=identity)
        if env.distributed:
            dist.barrier()  # nobody runs ahead (or exits) while rank 0 is still writing

    log = MetricsLog(run, step, config.tensorboard) if env.is_main else None
    if env.is_main:
        with run.writing("train_config.json"):
            config.save(output_dir / "train_config.json")
    bar = None
    if env.is_main and config.progress:
        from tqdm.auto import tqdm
        gold_only = config.alpha_kl == 0 and config.alpha_cos == 0  # no teacher term: plain fine-tuning
        bar = tqdm(total=total_steps, initial=step, desc="fine-tune" if gold_only else "distil", unit="step",
                   dynamic_ncols=True)

    # --- the loop: one optimizer step = grad_accum micro-batches ---
    batches = training_batches(_endless(stream), config)  # an empty corpus is named at the first batch
    params = [p for p in bridge.parameters() if p.requires_grad]
    history: list[dict] = []
    consecutive_bad = 0
    terms_logged = logged_terms(config, task.gold_term)  # (index in StepLoss, name)
    window_terms = torch.zeros(6, dtype=torch.float64, device=env.device)  # summed on device: no sync per step
    window_steps, window_tokens, window_wait, window_start = 0, 0, 0.0, time.perf_counter()
    steps_this_run = 0

    def preempted() -> TrainResult:
        """A signal or the time limit: a checkpoint of this step (unless just written), then the end."""
        if last_saved != step:
            checkpoint()
        for closing in (bar, log):
            if closing is not None:
                closing.close()
        if env.is_main:
            print(f"stopped by {preemption.reason} after step {step}: checkpoint written to {ckpt_root}; continue "
                  "with --resume auto", flush=True)
        return TrainResult(output_dir, step, skipped, history, None, student, preempted=preemption.reason)

    # a signal during start-up, or a deadline already passed: end before the first step (what is on disk
    # is where the next attempt starts)
    if _agree(preemption.flags(torch.zeros((), device=env.device)), env)[1]:
        last_saved = step
        return preempted()
    while step < total_steps:
        step_start = time.perf_counter()
        step_terms = torch.zeros(6, dtype=torch.float64, device=env.device)
        for micro in range(config.grad_accum):
            wait_start = time.perf_counter()
            batch = next(batches)
            window_wait += time.perf_counter() - wait_start
            n_tokens = int(batch["attention_mask"].sum())  # CPU tensors: no device sync
            window_tokens += n_tokens
            tokens_seen += n_tokens * env.world_size
            # DDP: all-reduce gradients only on the last micro-batch of the step
            sync = micro == config.grad_accum - 1 or not env.distributed
            with (contextlib.nullcontext() if sync else distiller.no_sync()), _autocast(env, precision):
                out = task.loss(teacher if run_teacher else None, distiller, batch, env.device, config)
                scaler.scale(out.loss / config.grad_accum).backward()
            step_terms += torch.stack([t.detach().double() for t in out]) / config.grad_accum

        # --- non-finite guard: skip the step, count it, stop after max_nonfinite in a row ---
        scaler.unscale_(optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm if config.max_grad_norm > 0 else float("inf"))
        bad = (~torch.isfinite(step_terms[0])) | (~torch.isfinite(grad_norm) & (not scaler.is_enabled()))
        # every rank takes the same decisions: skip this step? stop after it (a signal, the time limit)?
        preemption.step_took(time.perf_counter() - step_start)
        bad, stopping = _agree(preemption.flags(bad), env)
        if bad:
            optimizer.zero_grad(set_to_none=True)
            scaler.update()
            skipped += 1
            consecutive_bad += 1
            if consecutive_bad >= config.max_nonfinite:
                raise NonFiniteLossError(
                    f"{consecutive_bad} consecutive steps had a non-finite loss or gradient (step {step}, "
                    f"{skipped} skipped in total); lower lr, check the teacher's outputs for NaN/inf, or use "
                    "precision='fp32'. The last checkpoint holds the last finite weights.")
            if stopping:
                return preempted()
            continue
        consecutive_bad = 0
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        steps_this_run += 1
        window_terms += step_terms
        window_steps += 1

        if step % config.log_every == 0 or step == total_steps:
            terms = (window_terms / window_steps).tolist()
            window_terms.zero_()
            elapsed = time.perf_counter() - window_start
            record = {"step": step, **{name: terms[i] for i, name in terms_logged},
                      "lr": scheduler.get_last_lr()[0], "grad_norm": float(grad_norm),
                      "tokens_per_s": window_tokens * env.world_size / max(elapsed, 1e-9),
                      "data_wait_share": window_wait / max(elapsed, 1e-9), "skipped": skipped}
            history.append(record)
            if log is not None:
                log.write(record)
            if bar is not None:
                bar.set_postfix({**{name: f"{terms[i]:.3f}" for i, name in terms_logged},
                                 "tok_s": f"{record['tokens_per_s']:.0f}"})
            window_steps, window_tokens, window_wait, window_start = 0, 0, 0.0, time.perf_counter()
        if bar is not None:
            bar.update(1)
        if step % config.save_every == 0 and step < total_steps:
            checkpoint()
        if stopping:
            return preempted()
        if stop_after is not None and steps_this_run >= stop_after:
            if bar is not None:
                bar.close()
            if log is not None:
                log.close()
            return TrainResult(output_dir, step, skipped, history, None, student)

    if bar is not None:
        bar.close()
    checkpoint()  # the final state, resumable (e.g. to train longer with a larger max_steps)
    bridge.remove_hooks()  # the saved student and the evaluation run without them

    # --- outputs (rank 0): HF folder, tokenizer, config, metrics, plot; then evaluation ---
    eval_metrics = None
    if env.is_main:
        copied = [f.name for f in _tokenizer_files(tokenizer_source)]
        with run.writing("config.json", "model.safetensors", *copied):  # and whatever else save_pretrained writes
            student.save_pretrained(output_dir, safe_serialization=True)
            _copy_tokenizer_files(tokenizer_source, output_dir)
        log.close()
        # the summary and the plot first: they stay even if the evaluation fails
        summary = {"steps": step, "skipped_steps": skipped, "tokens_seen": tokens_seen,
                   "final": history[-1] if history else None, "eval": None}
        with run.writing("metrics.json"):
            (output_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
        try:
            from .plots import plot_run
            with run.writing("loss_curves.png"):  # recorded only if written
                plot_run(output_dir)
        except ImportError:  # matplotlib is optional
            pass
        if config.eval_files and config.eval_batches > 0:
            eval_metrics = task.evaluate(teacher, student, config, tokenizer, env.device)
            summary["eval"] = eval_metrics
            (output_dir / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
    if env.distributed:
        dist.barrier()
    return TrainResult(output_dir, step, skipped, history, eval_metrics, student)
