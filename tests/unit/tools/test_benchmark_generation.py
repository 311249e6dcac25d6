"""workflow/bin/benchmark-generation's engine on a tiny greedy setting: the former `generate`
path and our engine in float32 give the same answers, the judge's cases the same probabilities
(within the stated tolerances), and the tables compare them. Times are printed, never asserted."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import REPO

from prefopt_tools.benchmark_generation import main


def test_cases_do_the_same_work_and_the_tables_compare_them(smollm2_dir, tmp_path, capsys):
    greedy = tmp_path / "greedy.yaml"
    # bfloat16 named, not `auto`: the comparison of dtypes is what is tested, on any CPU
    greedy.write_text(
        "generation:\n  alpaca_eval: {temperature: 0}\n  cpu_dtype: bfloat16\n"
        "judges:\n  local_cpu_dtype: bfloat16\n"
    )
    out = tmp_path / "report.json"
    main(
        [
            *("--configfile", str(REPO / "config/embedded.yaml")),
            *("--configfile", str(greedy), "--prompts", "3", "--max-new-tokens", "6"),
            *("--judge-pairs", "2", "--repeats", "1", "--threads", "1"),
            # one question of each FastChat temperature (0.7, 0, 0.1): the MT-Bench cases still
            # mix temperature groups in one batch, at a third of the cost of all 8 categories
            *("--mt-bench-per-category", "1", "--mt-bench-categories", "writing,math,stem"),
            *("--work-dir", str(tmp_path / "work"), "--model-dir", str(smollm2_dir)),
            *("--json", str(out)),
        ]
    )
    report = json.loads(out.read_text())
    gen = report["generation"]
    assert list(gen) == ["baseline float32", "engine float32", "engine bfloat16"]
    # greedy: our engine answers exactly what `generate` answered, in the same order
    assert gen["engine float32"]["result"] == gen["baseline float32"]["result"]
    assert [len(a) for a in gen["engine bfloat16"]["result"]] == [6, 6, 6]
    assert report["distribution"]["kl"] < 0.01
    judge = {k: torch.tensor(v["result"]) for k, v in report["judge"].items()}
    assert list(judge) == [
        "baseline float32",
        "whole float32",
        "engine float32",
        "whole bfloat16",
        "engine bfloat16",
    ]
    before = judge["baseline float32"]
    assert before.shape == (2, 2)
    assert (judge["whole float32"] - before).abs().max() < 1e-4
    assert (judge["engine float32"] - before).abs().max() < 1e-4
    assert (judge["engine bfloat16"] - before).abs().max() < 0.075
    # MT-Bench judge: a score per question and turn, the shared prefix changing none in float32
    mt_judge = {k: torch.tensor(v["result"]) for k, v in report["judge_mt_bench"].items()}
    assert list(mt_judge) == [
        "whole float32",
        "engine float32",
        "whole bfloat16",
        "engine bfloat16",
    ]
    assert mt_judge["whole float32"].shape == (6,)
    assert (mt_judge["engine float32"] - mt_judge["whole float32"]).abs().max() < 1e-3
    assert ((mt_judge["engine bfloat16"] >= 1) & (mt_judge["engine bfloat16"] <= 10)).all()
    # MT-Bench: both cases answer both turns of every question (in float32 alike: see
    # test_generation; the case runs in the configured bfloat16, where rounding may differ)
    mt = report["mt_bench"]
    assert list(mt) == ["baseline", "engine"]
    assert len(mt["baseline"]["result"]) == 3 and all(len(t) == 2 for t in mt["baseline"]["result"])
    printed = capsys.readouterr().out
    assert "| one batch per turn (now) | 6 |" in printed
    assert "| HF generate, float32, benchmark order (before) | 18 |" in printed
    assert "| prefopt engine, bfloat16 (config) | 18 |" in printed
    assert "| last position only, bfloat16, shared prefix (config) | 2 |" in printed
    assert "| bfloat16, shared prefix (config) | 6 |" in printed


def test_an_unknown_mt_bench_category_stops_before_any_model_loads(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--mt-bench-categories", "writing,maths", "--work-dir", str(tmp_path / "work")])
    assert exit_info.value.code == 2
    assert "no MT-Bench category ['maths']" in capsys.readouterr().err
    assert not (tmp_path / "work").exists()
