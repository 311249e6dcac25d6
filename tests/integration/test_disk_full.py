"""A job that cannot write: a real full disk (a 40 MB tmpfs as results/) and a read-only one,
in a private mount namespace. The job stops with a message that says what happened and what to
do; no half-written output is left as if complete; the results already made are kept and the
same command, with space again, plans only the unfinished job."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest
from helpers import copy_workflow, snakemake_env

pytestmark = pytest.mark.e2e

MODEL_DIR = "results/models/smollm2-135m-instruct"
DATA = ("results/data/train_pairs.jsonl", "results/data/alpaca_eval.json")

# Runs inside the namespace: the tmpfs and everything on it vanish when it exits, so the
# evidence is copied out to evidence/ (on the real disk) as it goes.
SCRIPT = r"""
set -u
smk() { "$PY" -m snakemake "$@" --workflow-profile none --cores 1 \
        --configfile tests/config.tiny.yaml; }
mkdir -p results evidence
mount -t tmpfs -o size=40m tmpfs results
smk $DATA > evidence/data.out 2>&1; echo $? > evidence/data.rc
smk $MODEL > evidence/full.out 2>&1; echo $? > evidence/full.rc
ls -A results/models > evidence/models_after_full.txt 2>/dev/null
cp -a results/data evidence/data_after_full
mount -o remount,ro results
smk results/data/mt_bench_questions.jsonl > evidence/ro.out 2>&1; echo $? > evidence/ro.rc
test -e results/data/mt_bench_questions.jsonl && touch evidence/ro_output_exists
mount -o remount,rw,size=2g results
smk $DATA $MODEL -n --quiet rules > evidence/again.out 2>&1; echo $? > evidence/again.rc
"""


def _namespace() -> list[str] | None:
    """`unshare` arguments that give this process a mount namespace it may mount tmpfs in:
    as root a plain one, else a user namespace that maps us to root; None if neither works."""
    if shutil.which("unshare") is None:
        return None
    for args in (["unshare", "-m"], ["unshare", "-rm"]):
        probe = subprocess.run(
            [*args, "sh", "-c", "d=$(mktemp -d) && mount -t tmpfs tmpfs $d && umount $d"],
            capture_output=True,
        )
        if probe.returncode == 0:
            return args
    return None


def test_full_and_read_only_results_stop_the_job_and_keep_what_was_made(tmp_path):
    namespace = _namespace()
    if namespace is None:
        pytest.skip("no mount namespace here (unshare -m / -rm): cannot make a small disk")
    work = copy_workflow(tmp_path / "repo")
    env = snakemake_env(PY=sys.executable, DATA=" ".join(DATA), MODEL=MODEL_DIR)
    subprocess.run([*namespace, "bash", "-c", SCRIPT], cwd=work, env=env, timeout=1500, check=False)
    ev = work / "evidence"
    read = lambda name: (ev / name).read_text()  # noqa: E731

    assert read("data.rc").strip() == "0", read("data.out")[-3000:]
    # Full disk: the model job fails, says why and what to do, and leaves no model folder.
    assert read("full.rc").strip() != "0"
    full = read("full.out")
    assert "Error in rule prepare_model" in full
    assert "this job could not write" in full and "the disk is full" in full, full[-3000:]
    assert "rerun the same command" in full
    assert read("models_after_full.txt").strip() == ""
    for rel in DATA:  # what was made before is intact
        assert (ev / "data_after_full" / os.path.basename(rel)).stat().st_size > 0
    # Read-only: refused before any job starts, in one line that says why; no output appears.
    ro = read("ro.out")
    assert read("ro.rc").strip() != "0"
    assert "results/ is not writable: it is on a read-only file system" in ro, ro[-3000:]
    assert "No job was started" in ro and "localrule prepare_mt_bench" not in ro
    assert not (ev / "ro_output_exists").exists()
    # With space again, the same command plans only the unfinished job.
    again = read("again.out")
    assert read("again.rc").strip() == "0", again[-3000:]
    planned = set(re.findall(r"^(\w+)\s+\d+$", again, flags=re.M)) - {"job", "total"}
    assert planned == {"prepare_model"}, again[-3000:]
