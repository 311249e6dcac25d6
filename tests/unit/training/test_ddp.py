"""DDP on purpose (prefopt.training.ddp): one training job in two processes under torchrun trains as
one process with the same global batch: same steps, same weights to float tolerance, the same
diagnostics rows (summed over the processes), and the summary says so.

Two CPU processes with gloo stand in for two GPUs with NCCL: the launcher, the batch split,
accelerate's data sharding, DDP's gradient averaging and rank 0's writing are the same code.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from helpers import tiny_training_job, training_job_args
from safetensors.torch import load_file

from prefopt.config import ConfigError, load_config, validate_config
from prefopt.training.ddp import (
    launch,
    per_device_batch,
    require_job_gpus,
    result_path,
    target_name,
)
from prefopt.training.trainer import train_policy

# 8 pairs, a global batch of 4, 2 epochs: 4 optimiser steps, each seeing 4 pairs; in two
# processes 2 pairs each. Gradient checkpointing on, as the paper trains.
TRAINING = {
    "max_length": 40,
    "max_prompt_length": 24,
    "reference_batch_size": 4,
    "epochs": 2,
    "per_device_train_batch_size": 4,
    "gradient_accumulation_steps": 1,
    "learning_rate": 1e-3,
    "lr_scheduler_type": "linear",
    "warmup_ratio": 0.0,
    "gradient_checkpointing": True,
    "precision": "fp32",
    "logging_steps": 1,
    "checkpoint_steps": 0,
    "threads": 1,
}
LOSS = {"loss_name": "apo_hinge_zero", "loss_params": {"beta": 0.1, "margin": 1.0}, "seed": 5}


@pytest.fixture(scope="module")
def job(smollm2_dir, module_tmp_path):
    return tiny_training_job(module_tmp_path, smollm2_dir, TRAINING)


def _args(job, out, **training):
    return training_job_args(job, out, {**TRAINING, **training}, LOSS)


def test_two_processes_train_as_one_with_the_same_global_batch(job, tmp_path):
    one = train_policy(**_args(job, tmp_path / "one"))
    args_path = tmp_path / "two" / "ddp_args.json"
    log_path = tmp_path / "two.log"
    two_args = {**_args(job, tmp_path / "two"), "log_path": str(log_path)}
    two = launch(train_policy, 2, two_args, args_path)

    assert (one["processes"], two["processes"]) == (1, 2)
    assert one["global_batch_size"] == two["global_batch_size"] == 4  # 4 x 1, and 2 x 2
    assert one["global_steps"] == two["global_steps"] == 4
    assert two["train_loss"] == pytest.approx(one["train_loss"], rel=1e-5)
    assert two["reference_check"]["max_abs_diff_nats"] <= two["reference_check"]["tolerance_nats"]
    single, ddp = (
        load_file(str(tmp_path / d / "model" / "model.safetensors")) for d in ("one", "two")
    )
    assert single.keys() == ddp.keys()
    for name, tensor in single.items():
        torch.testing.assert_close(ddp[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    initial = load_file(str(job["model_dir"] / "model.safetensors"))
    assert any(not torch.equal(initial[k], single[k]) for k in single)  # the weights moved

    # one row per step over the global batch: rank 0 wrote the sums of both processes
    rows_one = pd.read_csv(tmp_path / "one" / "diagnostics.csv")
    rows_two = pd.read_csv(tmp_path / "two" / "diagnostics.csv")
    assert list(rows_one.columns) == list(rows_two.columns)
    assert rows_two["n_pairs"].tolist() == [4, 4, 4, 4]
    counts = [c for c in rows_one.columns if c.startswith(("n_", "pairs_", "active_pairs_"))]
    pd.testing.assert_frame_equal(rows_two[counts], rows_one[counts])
    # step 1: policy == reference, so whether a reward margin is > 0 is float noise (~1e-8)
    rows_one.loc[0, "rewards_accuracy"] = rows_two.loc[0, "rewards_accuracy"]
    pd.testing.assert_frame_equal(rows_two, rows_one, rtol=1e-4, atol=1e-5, check_dtype=False)
    assert not args_path.exists()  # the launcher's argument file goes once the job is done
    assert not result_path(args_path).exists()  # and rank 0's return value, once read
    assert "DDP: 2 processes (gloo), one per CPU process" in log_path.read_text()


def test_a_batch_the_processes_cannot_split_stops_the_job(job, tmp_path):
    with pytest.raises(ValueError, match=r"per_device_train_batch_size \(3\) is not divisible"):
        per_device_batch({"per_device_train_batch_size": 3}, processes=2)
    args = _args(job, tmp_path, per_device_train_batch_size=3)
    with pytest.raises(RuntimeError, match=r"distributed training \(2 processes, training\.gpus"):
        launch("prefopt.training.trainer:train_policy", 2, args, tmp_path / "ddp_args.json")
    assert not (tmp_path / "model").exists()


def test_config_check_names_gpus_per_job(repo):
    config = load_config(repo / "config/config.yaml")
    config["training"].update(gpus_per_job=3)  # the paper's batch of 8 does not split in 3
    with pytest.raises(ConfigError, match=r"training\.gpus_per_job: 3 processes cannot split"):
        validate_config(config)
    config["training"].update(gpus_per_job=2)
    validate_config(config)


def test_a_job_granted_fewer_gpus_than_processes_is_refused_before_launch():
    with pytest.raises(RuntimeError, match=r"granted 1 GPU\(s\).*--resources gpu=2"):
        require_job_gpus(1, 2, allow_cpu=False)
    require_job_gpus(2, 2, allow_cpu=False)
    require_job_gpus(1, 2, allow_cpu=True)  # CPU processes: no GPU to grant


def test_launch_takes_the_function_by_a_name_the_processes_can_import():
    """`launch` is given what to run; each torchrun process imports it by "module:function",
    so a function they could not import is refused before any process starts."""
    assert target_name(train_policy) == "prefopt.training.trainer:train_policy"
    assert target_name("prefopt.training.trainer:train_policy") == target_name(train_policy)

    def nested(**kwargs):
        return kwargs

    with pytest.raises(ValueError, match="module-level function"):
        target_name(nested)
    with pytest.raises(ValueError, match="'module:function'"):
        target_name("prefopt.training.trainer.train_policy")
    with pytest.raises(AttributeError):
        target_name("prefopt.training.trainer:no_such_function")
