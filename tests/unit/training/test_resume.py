"""Checkpoint and resume (prefopt.training.resume): a training job killed with SIGKILL mid-step and
run again ends with the weights, steps, loss and diagnostics of an uninterrupted run.

The model is a small random Llama with SmolLM2's tokenizer and chat template (the real data
path, a fast step); training runs two epochs so the resumed run must also replay the epoch
boundary's data order. The kill is a real SIGKILL of a separate process, sent by that process
to itself in the middle of an optimiser step after a checkpoint, so the test does not race.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import textwrap

import pytest
import torch
from helpers import tiny_training_job, training_job_args
from safetensors.torch import load_file

# 8 pairs, batch 2, 2 epochs: 8 optimiser steps; a checkpoint every 2
TRAINING = {
    "max_length": 40,
    "max_prompt_length": 24,
    "reference_batch_size": 4,
    "epochs": 2,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "learning_rate": 1e-3,
    "lr_scheduler_type": "linear",
    "warmup_ratio": 0.0,
    "gradient_checkpointing": False,
    "precision": "fp32",
    "logging_steps": 2,
    "checkpoint_steps": 2,
    "threads": 1,
}
LOSS = {"loss_name": "apo_hinge_zero", "loss_params": {"beta": 0.1, "margin": 1.0}, "seed": 3}
KILL_DURING_STEP = 6  # after checkpoint-4 was completed; step 5's work is lost and redone

KILLED_RUN = """
import json, os, signal, sys
from prefopt.training.trainer import PrefOptDPOTrainer, train_policy

compute_loss = PrefOptDPOTrainer.compute_loss

def dying_compute_loss(self, model, inputs, *args, **kwargs):
    if model.training and self.state.global_step == {kill_at} - 1:
        os.kill(os.getpid(), signal.SIGKILL)  # the node dies in the middle of a step
    return compute_loss(self, model, inputs, *args, **kwargs)

PrefOptDPOTrainer.compute_loss = dying_compute_loss
args = json.loads(sys.argv[1])
train_policy(**args)
"""


@pytest.fixture(scope="module")
def job(smollm2_dir, module_tmp_path):
    """A small random model, the pairs and their reference cache."""
    return tiny_training_job(module_tmp_path, smollm2_dir, TRAINING)


def _args(job, out, **training):
    return training_job_args(job, out, {**TRAINING, **training}, LOSS)


def _train(args):
    from prefopt.training.trainer import train_policy

    return train_policy(**args)


def _kill_mid_run(args, tmp_path):
    script = tmp_path / "killed_run.py"
    script.write_text(textwrap.dedent(KILLED_RUN).replace("{kill_at}", str(KILL_DURING_STEP)))
    run = subprocess.run(
        [sys.executable, str(script), json.dumps(args)], capture_output=True, text=True
    )
    assert run.returncode == -signal.SIGKILL, run.stderr[-3000:]


def _weights(out):
    return load_file(str(out / "model" / "model.safetensors"))


@pytest.fixture(scope="module")
def uninterrupted(job, module_tmp_path):
    out = module_tmp_path / "uninterrupted"
    summary = _train(_args(job, out))
    return out, summary


def test_killed_run_resumes_to_the_uninterrupted_result(job, uninterrupted, tmp_path):
    reference_out, reference_summary = uninterrupted
    args = _args(job, tmp_path)
    _kill_mid_run(args, tmp_path)
    checkpoints = tmp_path / "checkpoints"
    # one complete checkpoint (older ones rotated out), nothing of the outputs
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == ["checkpoint-4"]
    assert not (tmp_path / "model").exists()
    # a checkpoint the kill interrupted while saving is never resumed from
    (checkpoints / "checkpoint-6").mkdir()
    (checkpoints / "checkpoint-6" / "model.safetensors").write_bytes(b"half written")

    summary = _train(args)

    assert summary["resumed_from_step"] == 4 and reference_summary["resumed_from_step"] is None
    assert summary["global_steps"] == reference_summary["global_steps"] == 8
    assert summary["global_batch_size"] == 2 and summary["gpus"] == 0  # batch 2 x 1 process
    assert summary["train_loss"] == pytest.approx(reference_summary["train_loss"], rel=1e-6)
    assert summary["reference_check"] == reference_summary["reference_check"]
    logged = [(h["step"], h["loss"]) for h in summary["log_history"] if "loss" in h]
    assert logged == [
        (h["step"], h["loss"]) for h in reference_summary["log_history"] if "loss" in h
    ]
    resumed, straight = _weights(tmp_path), _weights(reference_out)
    assert resumed.keys() == straight.keys()
    for name, tensor in straight.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=1e-5, atol=1e-6, msg=name)
    # the weights moved: the comparison above is not between two untouched models
    initial = load_file(str(job["model_dir"] / "model.safetensors"))
    assert any(not torch.equal(initial[k], straight[k]) for k in straight)
    diagnostics = (tmp_path / "diagnostics.csv").read_text()
    assert diagnostics == (reference_out / "diagnostics.csv").read_text()
    assert not checkpoints.exists()  # deleted once the outputs are written


def test_checkpoints_of_other_settings_are_not_resumed(job, uninterrupted, tmp_path):
    """A rerun with another learning rate (or data, loss, seed) starts from step 0."""
    _kill_mid_run(_args(job, tmp_path), tmp_path)
    summary = _train(_args(job, tmp_path, learning_rate=5e-4))
    assert summary["resumed_from_step"] is None and summary["global_steps"] == 8
    assert summary["train_loss"] != pytest.approx(uninterrupted[1]["train_loss"], rel=1e-6)


def test_wall_clock_checkpoints_resume_to_the_uninterrupted_result(job, uninterrupted, tmp_path):
    """Issue 29 item 7: `training.checkpoint_minutes` alone (no step interval) saves at logging
    steps once the time has passed (here at once: every logging step), and a killed run
    resumes from the newest to the same weights."""
    args = _args(job, tmp_path, checkpoint_steps=0, checkpoint_minutes=1e-9)
    _kill_mid_run(args, tmp_path)
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("checkpoint-*")) == [
        "checkpoint-4"
    ]
    summary = _train(args)
    assert summary["resumed_from_step"] == 4 and summary["global_steps"] == 8
    straight = _weights(uninterrupted[0])
    resumed = _weights(tmp_path)
    for name, tensor in straight.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=1e-5, atol=1e-6, msg=name)


def test_a_training_job_logs_its_progress_with_an_eta(job, tmp_path, caplog):
    """Issue 30: the job's log says steps done of the total, s/step, the ETA, the loss and
    the memory: at the start, at least every minute (prefopt.runtime.Progress) and at the end."""
    with caplog.at_level(logging.INFO, logger="prefopt.progress"):
        _train(_args(job, tmp_path, checkpoint_steps=0))
    lines = [r.getMessage() for r in caplog.records if r.name == "prefopt.progress"]
    head = "training loss apo_hinge_zero seed 3: "
    assert lines[0].startswith(head + "0/8 steps (0.0 %)")
    assert lines[-1].startswith(head + "8/8 steps (100.0 %)") and "ETA done" in lines[-1]
    assert "s/step" in lines[-1] and "; loss " in lines[-1] and "peak RSS" in lines[-1]
    assert not (tmp_path / "checkpoints").exists()  # no checkpoints asked for: no folder left


def test_wall_clock_save_waits_for_the_time_and_a_logging_step():
    from types import SimpleNamespace

    from prefopt.training.resume import WallClockSave

    now = [0.0]
    save = WallClockSave(30, clock=lambda: now[0])
    args = SimpleNamespace(logging_steps=10)
    saved = []
    for step in range(1, 200):
        now[0] += 20.0  # 20 s a step: 30 min = 90 steps, saved at the next logging step
        state, control = SimpleNamespace(global_step=step), SimpleNamespace(should_save=False)
        save.on_step_end(args, state, control)
        if control.should_save:
            saved.append(step)
            save.on_save(args, state, control)
    assert saved == [90, 180]
    now[0] = 0.0
    save = WallClockSave(30, clock=lambda: now[0])
    now[0] = 1805.0  # past the time, but not a logging step: wait for one
    control = SimpleNamespace(should_save=False)
    save.on_step_end(args, SimpleNamespace(global_step=91), control)
    assert not control.should_save
    save.on_step_end(args, SimpleNamespace(global_step=100), control)
    assert control.should_save


def test_checkpoint_interval_must_fall_on_logging_steps():
    from helpers import REPO

    from prefopt.config import ConfigError, load_config, validate_config

    config = load_config(REPO / "config/config.yaml")
    config["training"].update(logging_steps=50, checkpoint_steps=120)
    with pytest.raises(
        ConfigError,
        match=r"training\.checkpoint_steps: 120 is not a multiple of training\.logging_steps",
    ):
        validate_config(config)
