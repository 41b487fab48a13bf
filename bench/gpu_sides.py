"""The three sides of bench/gpu_train.py, each one run at a given batch size: `run_side(ctx, side, ...)`.

Each returns {"tokens_per_s", "peak_memory_bytes" (CUDA; None on the CPU), "model_bytes" (allocated before
the run: teacher + student), "loss_last", and for distilx "data_wait_share"}; tokens/s counts the real
tokens of the timed steps (after `warmup` untimed ones) over their wall time, the GPU synchronised at both
ends. Every run starts from the same student weights (`Context.student_state`) and one frozen teacher.
Optimizer and loss settings come from distilx's own defaults (TrainConfig, distilx.losses), so the sides
cannot drift apart.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from gpu_baselines import KDTrainer, research_mlm_batch, research_step, token_probabilities
from gpu_common import packed_blocks

from distilx import TrainConfig, train
from distilx.losses import ALPHA_COS, ALPHA_KL, ALPHA_MLM, TEMPERATURE

SIDES = ("distilx", "trainer-eager-kd", "research-loop")
DATA_PATHS = {  # how each side is fed (bench/gpu_train.py's docstring says why this is fair)
    "distilx": "raw text file; distilx's Rust stream tokenizes, packs and masks (uniform 15%, BERT's: no counting "
               "pass) inside the timed steps",
    "trainer-eager-kd": "pre-tokenized packed rows in memory; DataCollatorForLanguageModeling in 2 DataLoader "
                        "workers, pinned memory",
    "research-loop": "pre-tokenized packed rows in memory; DistilBERT's prepare_batch_mlm masking on the device",
}
_DEFAULTS = TrainConfig()  # the one home of the optimizer settings every side uses
LR, BETAS, EPS = _DEFAULTS.lr, tuple(_DEFAULTS.adam_betas), _DEFAULTS.adam_eps
CLIP, WARMUP_RATIO, MLM_P = _DEFAULTS.max_grad_norm, _DEFAULTS.warmup_ratio, _DEFAULTS.mlm_probability
LOSS = dict(temperature=TEMPERATURE, alpha_kl=ALPHA_KL, alpha_mlm=ALPHA_MLM, alpha_cos=ALPHA_COS)
TRAINER_WORKERS = 2


@dataclass
class Context:
    """One model's shared state: tokenizer, corpus, frozen teacher, student (reset before every run)."""

    name: str
    device: str
    device_name: str
    tmp: Path
    tokenizer_json: Path
    corpus: Path
    tok: object  # distilx.Tokenizer
    teacher: torch.nn.Module
    student: torch.nn.Module
    student_state: dict
    stream: list
    seed: int
    _blocks: dict = field(default_factory=dict)
    _cache: dict = field(default_factory=dict)

    @property
    def vocab(self) -> int:
        return self.teacher.get_output_embeddings().weight.shape[0]

    @property
    def teacher_layers(self) -> int:
        return self.teacher.config.num_hidden_layers

    @property
    def student_layers(self) -> int:
        config = self.student.config
        return getattr(config, "num_hidden_layers", None) or getattr(config, "n_layers")

    @property
    def precision(self) -> str:
        return "bf16" if self.device == "cuda" else "fp32"

    def amp(self):
        return torch.autocast("cuda", dtype=torch.bfloat16) if self.device == "cuda" else contextlib.nullcontext()

    def blocks(self, seq_len: int, n_blocks: int) -> torch.Tensor:
        """Pre-tokenized packed rows (CPU), at least n_blocks of them, made once per seq_len and grown as needed."""
        have = self._blocks.get(seq_len)
        if have is None or have.shape[0] < n_blocks:
            have = packed_blocks(self.stream, seq_len, max(n_blocks, 2 * (0 if have is None else have.shape[0])),
                                 self.tok.cls_id, self.tok.sep_id)
            self._blocks[seq_len] = have
        return have

    def token_probs(self) -> torch.Tensor:
        if "probs" not in self._cache:
            counts = torch.bincount(torch.tensor(self.stream), minlength=self.tok.vocab_size)
            self._cache["probs"] = token_probabilities(counts, self.tok.special_ids).to(self.device)
        return self._cache["probs"]

    def hf_tokenizer(self):
        if "hf" not in self._cache:
            from transformers import PreTrainedTokenizerFast

            self._cache["hf"] = PreTrainedTokenizerFast(
                tokenizer_file=str(self.tokenizer_json), unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                pad_token="[PAD]", mask_token="[MASK]", model_input_names=["input_ids", "attention_mask"])
        return self._cache["hf"]

    def reset_student(self) -> None:
        self.student.load_state_dict(self.student_state)
        for p in self.student.parameters():
            p.grad = None


def warmup_steps(total: int) -> int:
    """distilx's schedule: linear warmup over warmup_ratio of the steps (at least one), then linear decay."""
    return max(1, math.ceil(total * WARMUP_RATIO)) if WARMUP_RATIO > 0 else 0


def _sync(ctx):
    if ctx.device == "cuda":
        torch.cuda.synchronize()


def _memory_start(ctx) -> int | None:
    if ctx.device != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    return torch.cuda.memory_allocated()


def _peak(ctx) -> int | None:
    return torch.cuda.max_memory_allocated() if ctx.device == "cuda" else None


# ---------------------------------------------------------------- distilx
def run_distilx(ctx: Context, seq_len: int, batch: int, warmup: int, steps: int) -> dict:
    ctx.reset_student()
    total = warmup + steps
    out_dir = Path(ctx.tmp) / f"distilx-run-{time.monotonic_ns()}"
    config = TrainConfig(teacher="gpu-train-teacher", tokenizer=str(ctx.tokenizer_json), train_files=[str(ctx.corpus)],
                         output_dir=str(out_dir), seq_len=seq_len, batch_size=batch, packing=True, masking="uniform",
                         precision=ctx.precision, device=ctx.device, max_steps=total, log_every=warmup,
                         save_every=10**9, keep_last=1, eval_batches=0, progress=False, tensorboard=False,
                         seed=ctx.seed, kl_on="tokens")
    model_bytes = _memory_start(ctx)
    result = train(config, teacher=ctx.teacher, student=ctx.student, stop_after=total)
    peak = _peak(ctx)
    timed = result.history[1:]  # the first window holds the warm-up (and compiles)
    if len(timed) != steps // warmup:
        raise RuntimeError(f"distilx logged {len(result.history)} windows, {1 + steps // warmup} expected")
    return dict(tokens_per_s=sum(r["tokens_per_s"] for r in timed) / len(timed),
                data_wait_share=sum(r["data_wait_share"] for r in timed) / len(timed),
                peak_memory_bytes=peak, model_bytes=model_bytes, loss_last=timed[-1]["loss"],
                skipped_steps=result.skipped_steps)


# ---------------------------------------------------------------- transformers.Trainer + tutorial KD loss
class _Blocks(torch.utils.data.Dataset):
    def __init__(self, rows: torch.Tensor):
        self.rows = rows

    def __len__(self):
        return self.rows.shape[0]

    def __getitem__(self, i):
        row = self.rows[i]
        return {"input_ids": row, "attention_mask": torch.ones_like(row)}


def _trainer_arguments(ctx: Context, out_dir: Path, batch: int, total: int):
    """TrainingArguments equal to distilx's settings; options this transformers lacks are dropped and named."""
    import inspect

    from transformers import TrainingArguments

    wanted = dict(output_dir=str(out_dir), max_steps=total, per_device_train_batch_size=batch, learning_rate=LR,
                  adam_beta1=BETAS[0], adam_beta2=BETAS[1], adam_epsilon=EPS, weight_decay=0.0, max_grad_norm=CLIP,
                  lr_scheduler_type="linear", warmup_steps=warmup_steps(total), optim="adamw_torch_fused",
                  bf16=ctx.device == "cuda", use_cpu=ctx.device == "cpu", seed=ctx.seed, report_to="none",
                  save_strategy="no", logging_strategy="no", eval_strategy="no", disable_tqdm=True,
                  remove_unused_columns=False, dataloader_drop_last=True,
                  dataloader_num_workers=TRAINER_WORKERS if ctx.device == "cuda" else 0,
                  dataloader_persistent_workers=ctx.device == "cuda", dataloader_pin_memory=ctx.device == "cuda")
    if ctx.device == "cpu":
        wanted["optim"] = "adamw_torch"  # the fused kernel is CUDA's
    known = inspect.signature(TrainingArguments.__init__).parameters
    dropped = sorted(k for k in wanted if k not in known)
    if dropped:
        print(f"    (TrainingArguments of this transformers lacks {dropped}: left at their defaults)", flush=True)
    return TrainingArguments(**{k: v for k, v in wanted.items() if k in known})


def run_trainer(ctx: Context, seq_len: int, batch: int, warmup: int, steps: int) -> dict:
    from transformers import DataCollatorForLanguageModeling, TrainerCallback

    ctx.reset_student()
    total = warmup + steps
    marks: dict[int, float] = {}

    class StepTimer(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in (warmup, total):
                _sync(ctx)
                marks[state.global_step] = time.perf_counter()

    rows = ctx.blocks(seq_len, batch * total)
    collator = DataCollatorForLanguageModeling(ctx.hf_tokenizer(), mlm_probability=MLM_P)
    out_dir = Path(ctx.tmp) / f"trainer-run-{time.monotonic_ns()}"
    model_bytes = _memory_start(ctx)
    trainer = KDTrainer(model=ctx.student, args=_trainer_arguments(ctx, out_dir, batch, total),
                        train_dataset=_Blocks(rows), data_collator=collator, callbacks=[StepTimer()],
                        teacher=ctx.teacher, loss_options=LOSS)
    try:
        output = trainer.train()
    finally:  # its optimizer state goes with this run (accelerate keeps references until told otherwise)
        if hasattr(trainer, "accelerator") and hasattr(trainer.accelerator, "free_memory"):
            trainer.accelerator.free_memory()
        trainer.optimizer = trainer.lr_scheduler = None
        del trainer
    peak = _peak(ctx)
    seconds = marks[total] - marks[warmup]
    return dict(tokens_per_s=steps * batch * seq_len / seconds, peak_memory_bytes=peak, model_bytes=model_bytes,
                loss_last=float(output.training_loss))


# ---------------------------------------------------------------- the research loop
def run_research(ctx: Context, seq_len: int, batch: int, warmup: int, steps: int) -> dict:
    ctx.reset_student()
    total = warmup + steps
    rows = ctx.blocks(seq_len, batch * total)
    probs = ctx.token_probs()
    student = ctx.student.train()
    torch.manual_seed(ctx.seed)
    kwargs = {"fused": True} if ctx.device == "cuda" else {}
    optimizer = torch.optim.AdamW(student.parameters(), lr=LR, betas=BETAS, eps=EPS, weight_decay=0.0, **kwargs)
    n_warm = warmup_steps(total)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / n_warm if s < n_warm else max(0.0, (total - s) / max(1, total - n_warm)))
    model_bytes = _memory_start(ctx)
    loss = None
    for step in range(total):
        if step == warmup:
            _sync(ctx)
            t0 = time.perf_counter()
        ids = rows[step * batch:(step + 1) * batch].to(ctx.device, non_blocking=True)
        ids, labels = research_mlm_batch(ids, probs, mlm_probability=MLM_P, mask_id=ctx.tok.mask_id,
                                         vocab=ctx.tok.vocab_size)
        loss = research_step(ctx.teacher, student, optimizer, scheduler, ids, torch.ones_like(ids), labels,
                             amp=ctx.amp(), loss_options=LOSS, max_grad_norm=CLIP)
    _sync(ctx)
    seconds = time.perf_counter() - t0
    peak = _peak(ctx)
    del optimizer, scheduler
    return dict(tokens_per_s=steps * batch * seq_len / seconds, peak_memory_bytes=peak, model_bytes=model_bytes,
                loss_last=float(loss))


RUNNERS = {"distilx": run_distilx, "trainer-eager-kd": run_trainer, "research-loop": run_research}


def run_side(ctx: Context, side: str, seq_len: int, batch: int, warmup: int, steps: int) -> dict:
    return RUNNERS[side](ctx, seq_len, batch, warmup, steps)
