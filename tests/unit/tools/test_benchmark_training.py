"""workflow/bin/benchmark-training's engine on a tiny setting: every case trains the same data
for the same steps, and the printed table says so. Times are printed, never asserted."""

from __future__ import annotations

import json
import math

import pytest

from prefopt_tools.benchmark_training import main

# ~4 min on a CPU without native bf16: stock TRL's CPU default is bf16 autocast, emulated there
pytestmark = pytest.mark.heavy


def test_cases_do_the_same_work_and_the_table_compares_them(smollm2_dir, tmp_path, capsys):
    out = tmp_path / "rows.json"
    main(
        [
            *("--cases", "trl_default,prefopt", "--pairs", "4", "--batch-size", "2"),
            *("--max-length", "64", "--max-prompt-length", "32", "--threads", "2"),
            *("--work-dir", str(tmp_path / "work"), "--model-dir", str(smollm2_dir)),
            *("--jobs-sharing-cache", "2", "--json", str(out)),
        ]
    )
    data = json.loads(out.read_text())
    stock, ours = data["results"]
    assert (stock["case"], ours["case"]) == ("trl_default", "prefopt")
    # same batches: the same real and padded tokens, the same number of optimiser steps
    for key in ("tokens", "padded_tokens", "batches"):
        assert stock[key] == ours[key] > 0
    assert len(stock["step_s"]) == len(ours["step_s"]) == 2
    # both start from the reference: the first batch's DPO loss is ln 2 (ours up to bf16's
    # batch-shape noise, since our cache was computed in other batches than training's)
    assert math.isclose(stock["losses"][0], math.log(2), abs_tol=1e-4)
    assert math.isclose(ours["losses"][0], math.log(2), abs_tol=0.05)
    rows = {r["case"]: r for r in data["rows"]}
    assert rows["trl_default"]["speedup_step"] == 1.0
    assert rows["prefopt"]["one_off_s"] > 0  # our shared cache, divided by the jobs sharing it
    assert rows["prefopt"]["max_loss_diff_to_prefopt"] == 0.0
    printed = capsys.readouterr().out
    assert "| trl_default | bf16 | on | every step | 2 |" in printed
    assert "| prefopt |" in printed and "× floor" in printed
