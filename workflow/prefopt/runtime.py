"""Glue for Snakemake scripts: logging into the rule's log file, JSON helpers, provenance."""

from __future__ import annotations

import json
import logging
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any


def setup_logging(log_path: str | Path | None) -> logging.Logger:
    """Send this job's logging and warnings to its Snakemake `log:` file (and stderr)."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w"))
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )
    logging.captureWarnings(True)
    logger = logging.getLogger("prefopt")

    def log_uncaught(kind: type[BaseException], err: BaseException, tb: Any) -> None:
        # The error that stops a job belongs in its log file, not only on the terminal.
        logger.error("%s: %s", kind.__name__, err, exc_info=(kind, err, tb))

    if log_path:
        sys.excepthook = log_uncaught
    return logger


def versions() -> dict[str, Any]:
    """Library versions and device, recorded next to outputs so a number can be traced."""
    out: dict[str, Any] = {"python": platform.python_version()}
    for pkg in ("torch", "transformers", "trl", "datasets", "alpaca_eval"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    try:
        import torch

        out["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return out


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_json(obj: Any, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, indent=2, ensure_ascii=False), encoding="utf-8")
