"""results/provenance.json and the stamp every artifact carries (prefopt.reporting.provenance)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from prefopt.reporting import artifacts, provenance

CONFIG = {
    "model": {"slug": "m", "source": "huggingface", "id": "org/m", "revision": "abc"},
    "run": {"variants": ["base", "dpo"], "seeds": [0, 1]},
    "training": {"learning_rate": 1e-6, "threads": 4},
    "generation": {"threads": 2, "batch_size": 8},
    "judges": {"alpaca_eval": "local", "mt_bench": "local", "threads": 1},
}


def test_config_hash_is_order_free_and_ignores_resources_only():
    reordered = {k: CONFIG[k] for k in reversed(list(CONFIG))}
    assert provenance.config_hash(reordered) == provenance.config_hash(CONFIG)
    threads = json.loads(json.dumps(CONFIG))
    threads["training"]["threads"] = 1
    threads["judges"]["threads"] = 8
    assert provenance.config_hash(threads) == provenance.config_hash(CONFIG)
    lr = json.loads(json.dumps(CONFIG))
    lr["training"]["learning_rate"] = 2e-6
    assert provenance.config_hash(lr) != provenance.config_hash(CONFIG)
    assert "threads" not in provenance.results_config(CONFIG)["training"]


def _git(root: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
        check=True,
        capture_output=True,
    )


def test_code_state_commit_dirty_and_not_a_checkout(tmp_path):
    assert provenance.code_state(tmp_path) == {"commit": "unknown", "dirty": None}
    _git(tmp_path, "init", "-q")
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / ".gitignore").write_text("/results/\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "one")
    state = provenance.code_state(tmp_path)
    assert len(state["commit"]) == 40 and state["dirty"] is False
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "out.csv").write_text("a\n")  # outputs are not code
    (tmp_path / "notes.txt").write_text("untracked\n")  # nor are untracked files
    assert provenance.code_state(tmp_path)["dirty"] is False
    (tmp_path / "code.py").write_text("x = 2\n")
    assert provenance.code_state(tmp_path) == {"commit": state["commit"], "dirty": True}


def test_build_provenance_hashes_files_and_reads_served_judges(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "weights.bin").write_bytes(b"\x00" * 10)
    (model / ".snakemake_timestamp").write_bytes(b"")
    data = tmp_path / "pairs.jsonl"
    data.write_text('{"a": 1}\n')
    scores = tmp_path / "alpaca_eval.csv"
    pd.DataFrame(
        {"judge": ["api", "api"], "served_model": ["gpt-4-1106-preview", None], "x": [1, 2]}
    ).to_csv(scores, index=False)
    code = {"commit": "f" * 40, "dirty": False}
    hf = {"engine": "hf", "engine_version": "transformers 5.23.0", "dtype": "float32"}
    engines = []
    for i, rec in enumerate([hf, {**hf, "dtype": "float32"}, {**hf, "dtype": "bfloat16"}]):
        engines.append(tmp_path / f"seed{i}.engine.json")
        engines[-1].write_text(json.dumps(rec))
    record = provenance.build_provenance(
        CONFIG, code, [data], [model], [scores], snakemake_version="9.9",
        generation_engine_files=engines,
    )  # fmt: skip
    # one entry per distinct engine record, whatever the number of generation jobs
    assert record["generation_engines"] == [{**hf, "dtype": "bfloat16"}, hf]
    assert record["data_sha256"] == {data.as_posix(): provenance.sha256_file(data)}
    assert list(record["model"]["files_sha256"]) == [(model / "weights.bin").as_posix()]
    assert record["model"]["revision"] == "abc"
    assert record["judges"]["served"] == {"api": ["gpt-4-1106-preview"]}
    assert record["packages"]["snakemake"] == "9.9" and record["packages"]["pandas"]
    assert record["seeds"] == [0, 1]
    assert record["stamp"] == f"code {'f' * 12}, config {record['config_hash'][:12]}"
    assert "threads" not in record["config"]["training"]


def test_stamp_round_trip_and_rejects_garbage():
    text = provenance.stamp_text("0123456789abcdef" * 2, True, "ab" * 32)
    assert text == "code 0123456789ab+dirty, config abababababab"
    assert provenance.parse_stamp(text) == {
        "code_commit": "0123456789ab",
        "code_dirty": True,
        "config_hash": "abababababab",
    }
    assert (
        provenance.parse_stamp(provenance.stamp_text("unknown", None, "0" * 64))["code_commit"]
        == "unknown"
    )
    with pytest.raises(ValueError, match="not a provenance stamp"):
        provenance.provenance_note("commit 123")


def test_tables_and_figures_carry_the_stamp(tmp_path):
    text = provenance.stamp_text("f" * 40, False, "1" * 64)
    data = pd.DataFrame({"x": [1.0, 2.0]})
    paths = {ext: tmp_path / f"t.{ext}" for ext in ("csv", "md", "tex")}
    artifacts.write_table(data, data, *paths.values(), "cap", "tab:t", ["n"], text)
    csv = pd.read_csv(paths["csv"], dtype=str)
    assert (csv["code_commit"] == "f" * 12).all() and (csv["config_hash"] == "1" * 12).all()
    for ext in ("md", "tex"):
        assert text in paths[ext].read_text(), ext
    plt = pytest.importorskip("matplotlib.pyplot")
    fig, _ = plt.subplots()
    artifacts.save_figure(fig, tmp_path / "f.png", tmp_path / "f.pdf", text)
    assert any(text in t.get_text() for t in fig.texts)
