"""Run by test_distributed.py under torchrun: one rank of a 2-process gloo distillation run.

Writes REPORT_DIR/rank{R}.json (the test's own channel, not a run output): a digest of the student's
parameters after training, and the original token sequences of the first batches this rank read.
"""

import hashlib
import json
import sys
from pathlib import Path

import torch

from distilx import TrainConfig, train
from distilx.data import Tokenizer
from distilx.distributed import setup_distributed
from distilx.tasks.masked_lm import masked_lm_stream

teacher, train_file, out_dir, report_dir = sys.argv[1:5]
config = TrainConfig(teacher=teacher, train_files=[train_file], output_dir=out_dir, student_layers=2, seq_len=48,
                     batch_size=4, grad_accum=2, max_steps=3, log_every=1, save_every=2, eval_batches=0,
                     progress=False, tensorboard=False, kl_on="targets", seed=3, device="cpu")
result = train(config)
env = setup_distributed("cpu")
digest = hashlib.sha256()
for p in result.student.parameters():
    digest.update(p.detach().contiguous().numpy().tobytes())
# what this rank reads: original ids (masks undone) of the first 6 batches of its shard
stream = masked_lm_stream(config, Tokenizer(teacher), env)
sequences = []
for _, batch in zip(range(6), stream):
    original = torch.where(batch["labels"] != -100, batch["labels"], batch["input_ids"])
    for row, mask in zip(original, batch["attention_mask"]):
        sequences.append(row[mask.bool()].tolist())
Path(report_dir, f"rank{env.rank}.json").write_text(json.dumps(
    {"rank": env.rank, "world_size": env.world_size, "params": digest.hexdigest(), "steps": result.steps,
     "sequences": sequences}))
