"""Job logs without machine paths (prefopt.runtime.setup_logging, machine_free)."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path

from prefopt.runtime import machine_free, setup_logging


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
