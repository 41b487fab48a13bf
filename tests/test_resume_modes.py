"""--resume never|always|auto, a resume from the output folder alone (its train_config.json, the flags given again
checked against it), and the learning rate when a resume changes the run's length (a larger --max-steps)."""

import json

import pytest

from distilx import train
from distilx.cli import main
from distilx.run_dir import OutputDirError
from pipeline_helpers import make_tiny_teacher, run_config


def config_for(tiny_run_inputs, out, **kw):
    return run_config(*tiny_run_inputs, out, **{"eval_batches": 0, "max_steps": 4, "save_every": 2, **kw})


def lrs(out):
    return {r["step"]: r["lr"] for r in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())}


def test_auto_starts_fresh_then_continues_and_keeps_every_refusal(tiny_run_inputs, tmp_path, capsys):
    out = tmp_path / "run"
    first = train(config_for(tiny_run_inputs, out, resume="auto"), stop_after=2)
    assert first.steps == 2 and "resume=auto: no checkpoint of this run" in capsys.readouterr().out
    resumed = train(config_for(tiny_run_inputs, out, resume="auto"))
    assert resumed.steps == 4 and "resuming from step 2" in capsys.readouterr().out
    # a changed configuration: refused, every difference named
    with pytest.raises(ValueError, match="written by another configuration: seq_len: 48 in the checkpoint, 32 now"):
        train(config_for(tiny_run_inputs, out, resume="auto", seq_len=32))
    # foreign files, the teacher's folder: refused as without auto
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(OutputDirError, match="files distilx did not write"):
        train(config_for(tiny_run_inputs, foreign, resume="auto"))
    with pytest.raises(OutputDirError, match="is the teacher's folder"):
        train(config_for(tiny_run_inputs, tiny_run_inputs[0], resume="auto"))
    # resume and overwrite exclude each other, whatever the mode
    with pytest.raises(ValueError, match="exclude each other"):
        config_for(tiny_run_inputs, out, resume="auto", overwrite_output_dir=True).validated()


def test_always_warns_when_there_is_nothing_to_continue(tiny_run_inputs, tmp_path):
    with pytest.warns(UserWarning, match="resume=always but .* holds no checkpoint: starting from scratch"):
        assert train(config_for(tiny_run_inputs, tmp_path / "new", resume=True, max_steps=1)).steps == 1


def test_the_mode_reads_booleans_and_names_its_choices(tiny_run_inputs, tmp_path):
    for given, mode in ((True, "always"), ("true", "always"), (False, "never"), ("no", "never"), ("auto", "auto")):
        assert config_for(tiny_run_inputs, tmp_path, resume=given).resume == mode
    with pytest.raises(ValueError, match="resume='sometimes'; choose one of \\('never', 'always', 'auto'\\)"):
        config_for(tiny_run_inputs, tmp_path, resume="sometimes").validated()


def cli_flags(tiny_run_inputs, out, **kw):
    teacher, train_file, _ = tiny_run_inputs
    flags = {**dict(teacher=teacher, train_files=train_file, output_dir=out, student_layers=2, seq_len=48, batch_size=8,
                    max_steps=4, save_every=2, log_every=1, seed=7, kl_on="targets", progress="false",
                    tensorboard="false", eval_batches=0, device="cpu"), **kw}
    return [part for k, v in flags.items() for part in ("--" + k.replace("_", "-"), str(v))]


def test_a_resume_from_the_folder_alone_and_a_longer_schedule(tiny_run_inputs, tmp_path, capsys):
    """`--output-dir RUN --resume` reads RUN/train_config.json. A finished 4-step run trained to 8: before, the
    schedule was rebuilt for 8 steps and the rate jumped from 0.0 to 3/7 of the peak; now the added steps run a
    new cycle (warmup 1 step, then linear decay to 0 at step 8), and the resume says so."""
    out = tmp_path / "run"
    assert main(["train", *cli_flags(tiny_run_inputs, out)]) == 0
    assert lrs(out)[4] == 0.0
    capsys.readouterr()
    assert main(["train", "--output-dir", str(out), "--resume", "--max-steps", "8"]) == 0
    printed = capsys.readouterr().out
    assert "resuming from step 4" in printed and "steps 5-8 run a new cycle: warmup over 1 step to 0.0005" in printed
    rates = lrs(out)
    assert [rates[s] for s in range(5, 9)] == pytest.approx([5e-4 * f for f in (1.0, 2 / 3, 1 / 3, 0.0)])
    # the flags given again must agree with the run's; those a resume may change may differ
    assert main(["train", "--output-dir", str(out), "--resume", "auto", "--seq-len", "48", "--log-every", "2"]) == 0
    capsys.readouterr()
    assert main(["train", "--output-dir", str(out), "--resume", "--seq-len", "32", "--lr", "1e-4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"lr: 0.0005 in {out / 'train_config.json'}, 0.0001 given; seq_len: 48 in" in err and "32 given" in err


def test_a_longer_run_resumed_midway_continues_its_learning_rate(tiny_run_inputs, tmp_path, capsys):
    """Planned for 8 steps, stopped at 4, resumed for 16: the rate of step 4 carries on and falls linearly to 0
    at step 16 (before: the schedule of a 16-step run, a jump up at step 5)."""
    out = tmp_path / "run"
    train(config_for(tiny_run_inputs, out, max_steps=8, save_every=4), stop_after=4)
    before = lrs(out)[4]
    assert before == pytest.approx(5e-4 * (8 - 4) / (8 - 1))
    train(config_for(tiny_run_inputs, out, max_steps=16, save_every=4, resume=True))
    assert "planned for 8 steps, now 16: the learning rate continues from its value at step 4" in capsys.readouterr().out
    rates = lrs(out)
    assert [rates[s] for s in range(5, 17)] == pytest.approx([before * (16 - s) / 12 for s in range(5, 17)])


def test_a_run_started_by_another_teacher_folder_is_named(tiny_run_inputs, tmp_path, capsys):
    """The folder's own configuration is the reference: a teacher given again that differs is a difference."""
    out = tmp_path / "run"
    assert main(["train", *cli_flags(tiny_run_inputs, out, max_steps=1)]) == 0
    other = make_tiny_teacher(tmp_path / "other-teacher", seed=1)
    capsys.readouterr()
    assert main(["train", "--output-dir", str(out), "--resume", "--teacher", str(other)]) == 2
    assert f"teacher: '{tiny_run_inputs[0]}' in" in capsys.readouterr().err
