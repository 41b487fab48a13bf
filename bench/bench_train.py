"""Training throughput: the distilx loop vs a plain transcription of DistilBERT's distiller loop.

The "reference" side is the recipe's own training step (docs/recipe.md). Both sides use the same
teacher, the same student shape and the same batch shape, in one process:
- reference: pre-tokenized sequences (the reference binarizes offline, so tokenization is NOT
  timed for it), a Python collator (pad + prepare_batch_mlm's frequency-smoothed multinomial
  masking, 80/10/10), full-vocabulary logits of teacher and student at every position, and the
  eager loss (distilx.losses.reference: KLDivLoss(batchmean) x T^2,
  CrossEntropy, CosineEmbeddingLoss), AdamW, clip 5;
- distilx: `distilx.train` (Rust stream that also tokenizes on the fly, MLM head only on the loss
  rows, the fused/chunked loss), same optimizer settings, KL on every real token (same semantics).
Reported: tokens/s (real tokens) and the share of step time spent waiting for data, steady state
(the first `--warmup` steps are not timed), and the distilx/reference ratio.

    python bench/bench_train.py                 # CPU: MiniLM-L6 shape 6 -> 3, 16 x 64 tokens
    python bench/bench_train.py --device cuda   # GPU: BERT-base shape 12 -> 6, V=30522, bf16, 32 x 128
"""

import argparse
import contextlib
import random
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import torch

from distilx import TrainConfig, assets, train
from distilx.data import Tokenizer, encode
from distilx.losses.reference import reference_distillation_loss
from distilx.models import init_student, load_teacher


def make_teacher(device: str):
    from transformers import BertConfig, BertForMaskedLM
    if device == "cuda":  # BERT-base shape, random weights (throughput only)
        torch.manual_seed(0)
        return BertForMaskedLM(BertConfig(vocab_size=30522, hidden_size=768, num_hidden_layers=12,
                                          num_attention_heads=12, intermediate_size=3072))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_teacher(assets.minilm_dir(), require_mlm_head=False)  # 6 layers, hidden 384, V=30522


class ReferenceCollator:
    """prepare_batch_mlm of the reference, in Python/torch: pad, draw targets by smoothed frequency."""

    def __init__(self, counts: torch.Tensor, cls_id, sep_id, pad_id, mask_id, special_ids, vocab, mlm_p=0.15):
        probs = torch.maximum(counts.double(), torch.ones_like(counts.double())) ** -0.7
        probs[list(special_ids)] = 0.0
        self.token_probs, self.pad_id, self.mask_id, self.vocab, self.mlm_p = probs, pad_id, mask_id, vocab, mlm_p

    def __call__(self, sequences):
        lengths = torch.tensor([len(s) for s in sequences])
        ids = torch.full((len(sequences), int(lengths.max())), self.pad_id, dtype=torch.long)
        for i, s in enumerate(sequences):
            ids[i, :len(s)] = torch.tensor(s)
        attention_mask = torch.arange(ids.shape[1])[None, :] < lengths[:, None]
        x_prob = self.token_probs[ids.flatten()]
        n_tgt = int(self.mlm_p * lengths.sum().item())
        tgt_ids = torch.multinomial(x_prob / x_prob.sum(), n_tgt, replacement=False)
        pred_mask = torch.zeros(ids.numel(), dtype=torch.bool)
        pred_mask[tgt_ids] = True
        pred_mask = pred_mask.view_as(ids) & attention_mask
        masked = ids[pred_mask]
        choice = torch.multinomial(torch.tensor([0.8, 0.1, 0.1]), len(masked), replacement=True)
        replaced = torch.where(choice == 0, torch.full_like(masked, self.mask_id),
                               torch.where(choice == 1, torch.randint(0, self.vocab, masked.shape), masked))
        labels = torch.where(pred_mask, ids, torch.full_like(ids, -100))
        ids = ids.masked_scatter(pred_mask, replaced)
        return ids, attention_mask.long(), labels


def reference_loop(teacher, student, sequences, collator, args, device, amp):
    """The reference distiller's step, transcribed: full logits, eager loss, AdamW, clip."""
    opt = torch.optim.AdamW(student.parameters(), lr=5e-4, betas=(0.9, 0.98), eps=1e-6)
    order = list(range(len(sequences)))
    random.Random(0).shuffle(order)
    tokens = data_time = 0.0
    start = None
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            if device == "cuda":
                torch.cuda.synchronize()
            start, tokens, data_time = time.perf_counter(), 0, 0.0
        t0 = time.perf_counter()
        batch = [sequences[i] for i in order[step * args.batch_size:(step + 1) * args.batch_size]]
        ids, mask, labels = (t.to(device) for t in collator(batch))
        data_time += time.perf_counter() - t0
        tokens += int(mask.sum())
        with amp:
            with torch.no_grad():
                t_out = teacher(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            s_out = student(input_ids=ids, attention_mask=mask, output_hidden_states=True)
            loss = reference_distillation_loss(s_out.logits, t_out.logits, labels, mask, s_out.hidden_states[-1],
                                               t_out.hidden_states[-1])[0]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 5.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - start
    return tokens / elapsed, data_time / elapsed


def main():
    from transformers.utils import logging as hf_logging
    hf_logging.set_verbosity_error()  # no per-load reports in the benchmark output
    hf_logging.disable_progress_bar()
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--steps", type=int, default=None, help="timed steps per side")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--seq-len", type=int, default=None)
    args = ap.parse_args()
    gpu = args.device == "cuda"
    args.steps = args.steps or (30 if gpu else 8)
    args.batch_size = args.batch_size or (32 if gpu else 16)
    args.seq_len = args.seq_len or (128 if gpu else 64)
    device = args.device
    amp = torch.autocast("cuda", dtype=torch.bfloat16) if gpu else contextlib.nullcontext()
    tokenizer_json = assets.minilm_tokenizer_json()
    train_file, _ = assets.english_corpus()
    teacher = make_teacher(device)
    n_layers = teacher.config.num_hidden_layers // 2
    machine = torch.cuda.get_device_name() if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"machine: {machine}; teacher {teacher.config.num_hidden_layers} layers, hidden {teacher.config.hidden_size}, "
          f"student {n_layers} layers, V=30522, batch {args.batch_size} x {args.seq_len}, "
          f"{args.steps} timed steps after {args.warmup} warm-up")

    # --- reference side: offline tokenization (untimed), Python collator, eager loss ---
    tok = Tokenizer(str(tokenizer_json))
    n_seq = (args.warmup + args.steps) * args.batch_size
    lines = []
    with open(train_file, encoding="utf-8") as f:
        for line in f:
            lines.append(line)
            if len(lines) >= 4 * n_seq:
                break
    # [CLS] text [SEP], cut to seq_len, sequences of <= 11 tokens dropped (the reference's rules)
    sequences = [[tok.cls_id] + ids[:args.seq_len - 2] + [tok.sep_id] for ids in encode(lines, tok)]
    sequences = [s for s in sequences if len(s) > 11][:n_seq]
    counts = torch.zeros(tok.vocab_size, dtype=torch.long)
    for s in sequences:
        counts += torch.bincount(torch.tensor(s), minlength=tok.vocab_size)
    collator = ReferenceCollator(counts, tok.cls_id, tok.sep_id, tok.pad_id, tok.mask_id, tok.special_ids,
                                 tok.vocab_size)
    teacher.to(device).eval().requires_grad_(False)
    student = init_student(teacher, n_layers=n_layers).to(device)
    if gpu:
        teacher.to(torch.bfloat16)
    ref_tps, ref_wait = reference_loop(teacher, student, sequences, collator, args, device, amp)
    print(f"reference loop : {ref_tps:12.0f} tokens/s   data wait {ref_wait:6.1%}", flush=True)

    # --- distilx side: the real training loop ---
    teacher.float()
    tmp = Path(tempfile.mkdtemp(prefix="distilx-bench-"))
    try:
        config = TrainConfig(teacher="bench-teacher", tokenizer=str(tokenizer_json), train_files=[str(train_file)],
                             output_dir=str(tmp), student_layers=n_layers, seq_len=args.seq_len,
                             batch_size=args.batch_size, masking="uniform",  # frequency needs a corpus count pass
                             max_steps=args.warmup + args.steps, log_every=args.warmup, save_every=10**9,
                             keep_last=1, eval_batches=0, progress=False, tensorboard=False, device=device,
                             kl_on="tokens", lr=5e-4)
        result = train(config, teacher=teacher)
        timed = result.history[1:]  # the first window is the warm-up
        seconds = sum((r["step"] - p["step"]) for p, r in zip(result.history, timed))
        tps = sum(r["tokens_per_s"] * (r["step"] - p["step"]) for p, r in zip(result.history, timed)) / seconds
        wait = sum(r["data_wait_share"] * (r["step"] - p["step"]) for p, r in zip(result.history, timed)) / seconds
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"distilx loop   : {tps:12.0f} tokens/s   data wait {wait:6.1%}")
    print(f"ratio distilx/reference: {tps / ref_tps:.2f}x tokens/s")


if __name__ == "__main__":
    main()
