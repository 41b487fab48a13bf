"""The training loop on real text with the real data engine and loss: exact resume, the non-finite
guard, and the Hugging Face outputs."""

import copy
import json

import pytest
import torch
from transformers import AutoModelForMaskedLM, pipeline

from distilx import TrainConfig, train
from distilx.checkpoint import list_checkpoints
from distilx.data import Tokenizer
from distilx.distributed import DistEnv
from distilx.tasks.masked_lm import masked_lm_stream
from distilx.training import NonFiniteLossError
from pipeline_helpers import corpus_slice, make_tiny_teacher, run_config


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipeline")
    teacher = make_tiny_teacher(root / "teacher")
    train_file, heldout_file = corpus_slice(root)
    return teacher, train_file, heldout_file


def config_for(setup, out, **kw):
    return run_config(*setup, out, **kw)


def losses(run_dir):
    return [json.loads(line)["loss"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_resume_reproduces_the_uninterrupted_run(setup, tmp_path):
    full = train(config_for(setup, tmp_path / "full", eval_batches=0))
    assert full.steps == 6 and full.skipped_steps == 0
    # interrupted after step 4 (the last checkpoint is step 3), then resumed
    interrupted = config_for(setup, tmp_path / "cut", eval_batches=0)
    part = train(interrupted, stop_after=4)
    assert part.steps == 4
    resumed = train(interrupted.override({"resume": True}))
    assert resumed.steps == 6
    assert len(losses(tmp_path / "cut")) == 6
    assert losses(tmp_path / "cut") == losses(tmp_path / "full")  # bit-identical on CPU, dropout included
    assert len(set(losses(tmp_path / "full"))) > 1
    for (name, a), b in zip(full.student.state_dict().items(), resumed.student.state_dict().values()):
        assert torch.equal(a, b), name


def test_outputs_load_in_transformers(setup, tmp_path):
    out = tmp_path / "run"
    result = train(config_for(setup, out, max_steps=5, save_every=2, kl_on="tokens"))
    assert [p.name for p in list_checkpoints(out / "checkpoints")] == ["step-00000004", "step-00000005"]
    for name in ("model.safetensors", "config.json", "tokenizer.json", "vocab.txt", "train_config.json",
                 "metrics.json", "metrics.jsonl", "loss_curves.png"):
        assert (out / name).is_file(), name
    assert TrainConfig.load(out / "train_config.json") == config_for(setup, out, max_steps=5, save_every=2,
                                                                     kl_on="tokens")
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4, 5]
    assert all(r["tokens_per_s"] > 0 and 0 <= r["data_wait_share"] <= 1 for r in records)
    summary = json.loads((out / "metrics.json").read_text())
    assert summary["eval"]["student_params"] < summary["eval"]["teacher_params"]
    assert result.eval_metrics == summary["eval"]

    model = AutoModelForMaskedLM.from_pretrained(out)
    assert model.config.n_layers == 2
    for a, b in zip(model.state_dict().values(), result.student.state_dict().values()):
        assert torch.equal(a, b.cpu())
    fill = pipeline("fill-mask", model=str(out))
    predictions = fill("The capital of France is [MASK].")
    assert len(predictions) == 5 and all("token_str" in p for p in predictions)


def test_random_init_ablation_differs_from_teacher_init(setup, tmp_path):
    a = train(config_for(setup, tmp_path / "a", max_steps=1, eval_batches=0))
    b = train(config_for(setup, tmp_path / "b", max_steps=1, eval_batches=0, student_init="random"))
    wa = a.student.distilbert.transformer.layer[0].ffn.lin1.weight
    wb = b.student.distilbert.transformer.layer[0].ffn.lin1.weight
    assert wa.shape == wb.shape and not torch.allclose(wa, wb)


def test_a_pre_trained_student_folder_continues_and_frozen_embeddings_stay(setup, tmp_path):
    """--student: an earlier run's student is the starting point (not a new one from the teacher);
    --freeze-embeddings: its embedding layer does not move while the layers do."""
    first = train(config_for(setup, tmp_path / "first", max_steps=2, eval_batches=0))
    config = config_for(setup, tmp_path / "second", max_steps=2, eval_batches=0, student=str(tmp_path / "first"),
                        student_layers=None, freeze_embeddings=True)
    second = train(config).student
    before = first.student.state_dict()
    after = second.state_dict()
    assert type(second) is type(first.student)
    embeddings = [k for k in after if k.startswith("distilbert.embeddings.")]
    layers = [k for k in after if k.startswith("distilbert.transformer.")]
    assert embeddings and all(torch.equal(after[k], before[k].cpu()) for k in embeddings)
    assert sum(not torch.equal(after[k], before[k].cpu()) for k in layers) > len(layers) // 2


@pytest.mark.parametrize("kl_on", ["targets", "tokens"])
def test_loop_loss_is_distilberts_step(setup, tmp_path, kl_on):
    """The first step's logged terms equal DistilBERT's distiller on the same batch, transcribed from full
    model outputs: KL on the masked targets (kl_on="targets", restrict_ce_to_mask) or every real token,
    MLM on the targets, and the cosine on EVERY real token in both modes (dropout off: deterministic)."""
    from distilx.models import init_student, load_teacher
    from pipeline_helpers import make_tiny_teacher

    teacher_dir = make_tiny_teacher(tmp_path / "teacher", dropout=0.0)
    config = config_for((teacher_dir, *setup[1:]), tmp_path / "run", max_steps=1, eval_batches=0, kl_on=kl_on)
    teacher = load_teacher(teacher_dir)
    student = init_student(teacher, n_layers=2)
    torch.manual_seed(3)
    with torch.no_grad():  # move the student away from the teacher: a cosine term well above fp32 noise
        for p in student.distilbert.transformer.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    logged = train(config, student=copy.deepcopy(student)).history[0]
    batch = next(iter(masked_lm_stream(config, Tokenizer(str(teacher_dir)), DistEnv(0, 1, 0, torch.device("cpu")))))
    student.eval()
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    with torch.no_grad():
        s = student(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        t = teacher(input_ids=ids, attention_mask=mask, output_hidden_states=True)
    vocab, temperature = s.logits.shape[-1], 2.0
    kl_rows = (labels != -100) if kl_on == "targets" else mask.bool()
    kl = torch.nn.functional.kl_div(torch.log_softmax(s.logits[kl_rows] / temperature, -1),
                                    torch.softmax(t.logits[kl_rows] / temperature, -1),
                                    reduction="batchmean") * temperature**2
    mlm = torch.nn.functional.cross_entropy(s.logits.view(-1, vocab), labels.view(-1), ignore_index=-100)
    real = mask.bool()
    hs, ht = s.hidden_states[-1][real], t.hidden_states[-1][real]
    cos = torch.nn.functional.cosine_embedding_loss(hs, ht, hs.new_ones(hs.shape[0]))
    targets = labels != -100
    cos_on_targets = torch.nn.functional.cosine_embedding_loss(
        s.hidden_states[-1][targets], t.hidden_states[-1][targets], hs.new_ones(int(targets.sum())))
    assert abs(cos_on_targets - cos) > 1e-3 * cos  # the two row sets give different terms: the test can tell
    assert logged["cos"] == pytest.approx(cos.item(), rel=1e-5)
    # fp32 sums in another order: the KL of near-equal distributions is a difference of large terms
    assert logged["kl"] == pytest.approx(kl.item(), rel=1e-5, abs=1e-6)
    assert logged["mlm"] == pytest.approx(mlm.item(), rel=1e-5)
    assert logged["loss"] == pytest.approx((5 * kl + 2 * mlm + cos).item(), rel=1e-5)


def poison(teacher_dir, out_dir, token_id=None):
    """A copy of the teacher whose embedding row `token_id` (all rows if None) is NaN."""
    from distilx.models import load_teacher

    model = load_teacher(teacher_dir)
    with torch.no_grad():
        emb = model.bert.embeddings.word_embeddings.weight
        # untie the decoder first: a NaN row in a tied decoder would poison every logit row
        model.cls.predictions.decoder.weight = torch.nn.Parameter(emb.detach().clone())
        if token_id is None:
            emb.fill_(float("nan"))
        else:
            emb[token_id] = float("nan")
    return model


def test_non_finite_steps_are_skipped_and_counted(setup, tmp_path):
    config = config_for(setup, tmp_path / "nan", max_steps=4, eval_batches=0, save_every=100)
    # pick a token that shows up in some but not all of the batches this run will see
    stream = masked_lm_stream(config, Tokenizer(str(setup[0])), DistEnv(0, 1, 0, torch.device("cpu")))
    batches = [b["input_ids"] for _, b in zip(range(16), stream)]
    counts = {}
    for ids in batches:
        for t in set(ids.flatten().tolist()):
            counts[t] = counts.get(t, 0) + 1
    # present in the second batch but not the first, and rare otherwise
    in_second = set(batches[1].flatten().tolist()) - set(batches[0].flatten().tolist())
    token = min(in_second, key=lambda t: (abs(counts[t] - 2), t))
    poisoned = [bool((ids == token).any()) for ids in batches]
    from distilx.models import init_student, load_teacher
    student = init_student(load_teacher(setup[0]), n_layers=2)  # from the clean teacher
    teacher = poison(setup[0], tmp_path, token)
    result = train(config, teacher=teacher, student=student)
    assert result.steps == 4
    used = 0  # batches consumed until 4 clean steps were taken
    clean = 0
    while clean < 4:
        clean += not poisoned[used]
        used += 1
    assert result.skipped_steps == sum(poisoned[:used]) > 0
    assert all(torch.isfinite(p).all() for p in result.student.parameters())
    assert json.loads((tmp_path / "nan" / "metrics.json").read_text())["skipped_steps"] == result.skipped_steps


def test_consecutive_non_finite_steps_stop_the_run(setup, tmp_path):
    config = config_for(setup, tmp_path / "allnan", max_nonfinite=3, eval_batches=0)
    from distilx.models import init_student, load_teacher
    student = init_student(load_teacher(setup[0]), n_layers=2)
    with pytest.raises(NonFiniteLossError, match="3 consecutive steps"):
        train(config, teacher=poison(setup[0], tmp_path), student=student)
    assert list_checkpoints(tmp_path / "allnan" / "checkpoints") == []  # nothing non-finite was saved


def test_config_errors_are_clear(setup, tmp_path):
    with pytest.raises(ValueError, match="kl_on"):
        config_for(setup, tmp_path, kl_on="everything").validated()
    with pytest.raises(ValueError, match="unknown config field"):
        TrainConfig().override({"learning_rate": 1e-4})
    with pytest.raises(ValueError, match="train_files is empty"):
        train(config_for(setup, tmp_path, train_files=[]))
    with pytest.raises(ValueError, match="is not the teacher.s vocabulary"):  # the 30522-id English tokenizer on rxnfp (591 ids)
        from distilx import assets
        rx = str(assets.rxnfp_dir())
        train(config_for(setup, tmp_path, teacher=rx, tokenizer=str(setup[0] / "tokenizer.json")))


def test_fused_linear_path_trains_like_the_logits_path(setup, tmp_path, kl_on="targets"):
    """fused_linear="on" (projections chunked together with the loss, never holding N x V logits) takes the
    same steps as "off" (explicit logits + distillation_loss): the same logged loss terms and the same
    weights, up to fp32 summation order. Chunks of 16 rows force several chunks per batch."""
    import distilx.losses.fused_linear as fl

    runs = {}
    for mode in ("off", "on"):
        budget = fl.CHUNK_BUDGET_BYTES["cpu"]
        fl.CHUNK_BUDGET_BYTES["cpu"] = 16 * 30522 * 8  # two fp32 [16, V] buffers
        try:
            runs[mode] = train(config_for(setup, tmp_path / mode, max_steps=3, eval_batches=0, kl_on=kl_on,
                                          fused_linear=mode))
        finally:
            fl.CHUNK_BUDGET_BYTES["cpu"] = budget
    logged = {mode: [json.loads(line) for line in (tmp_path / mode / "metrics.jsonl").read_text().splitlines()]
              for mode in runs}
    for off, on in zip(logged["off"], logged["on"]):
        for term in ("loss", "kl", "mlm", "cos"):
            assert on[term] == pytest.approx(off[term], rel=1e-4, abs=1e-6), term
    for (name, a), b in zip(runs["off"].student.state_dict().items(), runs["on"].student.state_dict().values()):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-6, msg=name)
