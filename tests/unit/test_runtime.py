"""Job logs without machine paths (prefopt.runtime.setup_logging, machine_free); GPU jobs on a
GPU of their own or stopped (require_gpu, claim_gpus, check_one_gpu)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest

from prefopt.runtime import ALLOW_CPU_ENV, machine_free, require_gpu, setup_logging


def test_machine_free_rewrites_working_copy_environment_and_home(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    text = (
        f"{tmp_path}/results/x.csv {sys.prefix}/lib/site.py {Path.home()}/.cache/y "
        "relative/path /etc/hosts"
    )
    assert machine_free(text) == (
        "results/x.csv <python>/lib/site.py ~/.cache/y relative/path /etc/hosts"
    )


def test_job_logs_carry_no_machine_paths(tmp_path, monkeypatch):
    """Messages, captured warnings and tracebacks alike."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # setup_logging replaces it
    log_file = tmp_path / "results" / "logs" / "job.log"
    log = setup_logging(log_file)
    try:
        log.info("wrote %s", tmp_path / "results" / "out.json")
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.warn(f"deprecated in {sys.prefix}/lib/pkg.py", FutureWarning, stacklevel=1)
        try:
            json.loads("{")
        except ValueError:
            log.exception("failed reading %s", tmp_path / "in.json")
    finally:
        logging.captureWarnings(False)
        logging.basicConfig(force=True, handlers=[logging.NullHandler()])
    text = log_file.read_text()
    assert "wrote results/out.json" in text and "failed reading in.json" in text
    assert "<python>/" in text and "Traceback" in text
    assert str(tmp_path) not in text and sys.prefix not in text


def _job(gpu: int):
    return SimpleNamespace(rule="train_policy", resources=SimpleNamespace(gpu=gpu))


def test_a_gpu_job_without_a_gpu_stops_naming_nv_unless_the_cpu_is_allowed(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv(ALLOW_CPU_ENV, "0")
    with pytest.raises(RuntimeError, match=r"rule train_policy needs a CUDA GPU.*--nv.*--gpus"):
        require_gpu(_job(gpu=1))
    require_gpu(_job(gpu=0))  # a CPU rule is never stopped
    monkeypatch.setenv(ALLOW_CPU_ENV, "1")
    require_gpu(_job(gpu=1))  # allow_cpu: true (the embedded and test configs)
    monkeypatch.delenv(ALLOW_CPU_ENV)
    with pytest.raises(RuntimeError, match="allow_cpu: true"):
        require_gpu(_job(gpu=1))  # unset: the paper's default, no fallback
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    require_gpu(_job(gpu=1))


HOLD_GPUS = """
import sys, time
from pathlib import Path
from prefopt.runtime import claim_gpus

ids = claim_gpus(int(sys.argv[2]), Path(sys.argv[1]), gpu_ids=lambda: ["0", "1", "2"], poll_s=0.05)
Path(sys.argv[3]).write_text(",".join(ids) + "|" + __import__("os").environ["CUDA_VISIBLE_DEVICES"])
time.sleep(300)
"""


def _claimant(tmp_path, name: str, n: int, **extra_env: str):
    """A job process that claims `n` of 3 GPUs, writes what it got, and holds them."""
    env = {k: v for k, v in os.environ.items() if k not in ("CUDA_VISIBLE_DEVICES", "SLURM_JOB_ID")}
    env.update(extra_env)
    script = tmp_path / "hold_gpus.py"
    script.write_text(HOLD_GPUS)
    out = tmp_path / f"{name}.txt"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "locks"), str(n), str(out)], env=env
    )
    return proc, out


def _wait_for(out, proc, seconds: float = 60.0) -> str | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if out.exists() and out.read_text():
            return out.read_text()
        assert proc.poll() is None, f"claimant exited {proc.returncode}"
        time.sleep(0.05)
    return None


def test_each_gpu_job_gets_gpus_no_other_job_holds(tmp_path):
    """Three jobs on a 3-GPU machine: 2 + 1 GPUs, the third waits until a holder dies (SIGKILL
    releases its locks) and then gets the freed GPU; each sees only its own."""
    procs = []
    try:
        first, first_out = _claimant(tmp_path, "first", 2)
        procs.append(first)
        assert _wait_for(first_out, first) == "0,1|0,1"
        second, second_out = _claimant(tmp_path, "second", 1)
        procs.append(second)
        assert _wait_for(second_out, second) == "2|2"
        third, third_out = _claimant(tmp_path, "third", 1)
        procs.append(third)
        assert _wait_for(third_out, third, seconds=2.0) is None  # every GPU is held: it waits
        first.send_signal(signal.SIGKILL)
        first.wait()
        assert _wait_for(third_out, third) == "0|0"
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_jobs_inside_one_slurm_allocation_share_its_gpus_and_other_allocations_never_wait(
    tmp_path,
):
    """Issue 29 item 9: inside one allocation (salloc with 3 GPUs, Snakemake running the jobs
    locally) each job gets a GPU no other job holds; before, claiming was skipped under SLURM and
    every job crowded onto GPU 0. A job of another SLURM job on the same node, whose GPU cgroups
    also number 0, does not wait for them."""
    procs = []
    try:
        for name in ("a", "b"):
            proc, out = _claimant(tmp_path, name, 1, SLURM_JOB_ID="100")
            procs.append(proc)
            assert _wait_for(out, proc) == {"a": "0|0", "b": "1|1"}[name]
        other, other_out = _claimant(tmp_path, "other", 2, SLURM_JOB_ID="200")
        procs.append(other)
        assert _wait_for(other_out, other) == "0,1|0,1"
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def test_visible_devices_and_slurm_are_respected(tmp_path, monkeypatch):
    from prefopt import runtime

    monkeypatch.setattr(runtime, "_held_gpu_locks", [])
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")  # set by the user or a container
    assert runtime.claim_gpus(1, tmp_path, gpu_ids=lambda: ["0"]) == ["5"]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5"
    with pytest.raises(RuntimeError, match=r"asks for 2 GPUs .* 1 are visible \(5\)"):
        runtime.claim_gpus(2, tmp_path)
    monkeypatch.setenv("SLURM_JOB_ID", "42")  # SLURM gave the job its own GPU: it is the one
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3")
    assert runtime.claim_gpus(1, tmp_path) == ["3"] and os.environ["CUDA_VISIBLE_DEVICES"] == "3"
    assert (tmp_path / "slurm-job-42" / "gpu-3.lock").exists()  # locks of that SLURM job only
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert runtime.claim_gpus(1, tmp_path, gpu_ids=list) == []  # no GPU: nothing to claim
    assert "CUDA_VISIBLE_DEVICES" not in os.environ


def test_a_training_job_that_sees_two_gpus_stops_rather_than_data_parallel(monkeypatch):
    import torch

    from prefopt.training.trainer import check_one_gpu

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    with pytest.raises(RuntimeError, match=r"sees 2 GPUs.*DataParallel.*2x the configured batch"):
        check_one_gpu()
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    check_one_gpu()


def test_a_refused_write_is_explained_and_other_errors_are_not():
    """The line a job's log ends with when the file system refused a write: the file, the
    reason, and that a rerun of the same command resumes; also for a library that wraps the
    OS error in its own (safetensors' writer); nothing for other errors."""
    import errno

    from prefopt.runtime import write_failure_message

    full = write_failure_message(OSError(errno.ENOSPC, "No space left on device", "results/x"))
    assert full.startswith("this job could not write results/x: the disk is full")
    assert "rerun the same command" in full
    wrapped = RuntimeError("Error while serializing: I/O error: File too large (os error 27)")
    assert "size limit" in write_failure_message(wrapped)
    assert "read-only" in write_failure_message(OSError(errno.EROFS, "Read-only file system"))
    assert write_failure_message(ValueError("No space in the prompt")) is None
    assert write_failure_message(OSError(errno.ENOENT, "No such file or directory")) is None


def test_peak_rss_of_a_child_is_its_own_not_its_parents():
    """A benchmark case runs in a child process; its peak memory must not include what the
    parent held when it spawned the child (getrusage's ru_maxrss does on Linux)."""
    held = bytearray(400 * 2**20)  # the parent holds 400 MiB, touched
    held[::4096] = b"x" * len(held[::4096])
    code = "from prefopt.runtime import peak_rss_mib; print(peak_rss_mib())"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2] / "workflow")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert 1 < float(out.stdout) < 200, out.stdout
    del held


def test_progress_logs_at_the_start_at_most_every_minute_and_at_the_end(caplog):
    """Issue 30: long jobs say how far they are and when they end (prefopt.runtime.Progress)."""
    from prefopt.runtime import Progress, duration_text

    now = [0.0]
    with caplog.at_level(logging.INFO, logger="prefopt.progress"):
        progress = Progress("training dpo", 100, "steps", clock=lambda: now[0])
        logged = []
        for step in range(1, 101):
            now[0] += 25.0  # 25 s a step: a line every third step (>= 60 s apart), and the end
            if progress.update(step, "loss 0.5"):
                logged.append(step)
    assert logged == list(range(3, 100, 3)) + [100]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == (
        "training dpo: 0/100 steps (0.0 %), s/step after the first, elapsed 0 s, ETA unknown"
    )
    assert lines[1] == (
        "training dpo: 3/100 steps (3.0 %), 25 s/step, elapsed 1 min 15 s, ETA 40 min 25 s; "
        "loss 0.5"
    )
    assert lines[-1].startswith("training dpo: 100/100 steps (100.0 %), 25 s/step") and (
        "ETA done" in lines[-1]
    )
    assert duration_text(2 * 3600 + 5 * 60 + 7) == "2 h 05 min"


def test_progress_of_a_resumed_loop_counts_only_its_own_rate(caplog):
    from prefopt.runtime import Progress

    now = [0.0]
    with caplog.at_level(logging.INFO, logger="prefopt.progress"):
        progress = Progress("training", 1000, "steps", first=900, clock=lambda: now[0])
        now[0] = 100.0
        progress.update(950, force=True)
    assert caplog.records[-1].getMessage() == (
        "training: 950/1,000 steps (95.0 %), 2 s/step, elapsed 1 min 40 s, ETA 1 min 40 s"
    )
