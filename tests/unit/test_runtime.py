"""Job logs without machine paths (prefopt.runtime.setup_logging, machine_free)."""

from __future__ import annotations

import json
import logging
import sys
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
