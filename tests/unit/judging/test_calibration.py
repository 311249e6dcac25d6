"""Judge calibration against the retired judge's recorded verdicts (prefopt.judging.calibration):
every statistic against hand-computed values, the selection rule, the judge records of both
kinds, the artifacts, and the sample shipped in workflow/resources/data/alpaca_eval_calibration."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"  # before anything imports alpaca_eval / huggingface_hub

import hashlib
import json
import math

import pandas as pd
import pytest
from helpers import EMBEDDED_DATA
from standins import FakeOpenAI, StandInGitHubRaw

from prefopt.data import download
from prefopt.judging import calibration as cal
from prefopt.runtime import write_json

SAMPLE = EMBEDDED_DATA / cal.LAYOUT_DIR
STAMP = "code 0123456789ab, config abcdef012345"


# --------------------------------------------------------------------------- verdicts


@pytest.mark.parametrize(
    ("preference", "expected"),
    [(1, 1), (1.0, 1), (2, 2), (2.0, 2), (1.5, cal.DRAW), (0, cal.DRAW), (None, None),
     (math.nan, None), (1.2, 1), (1.49, 1), (1.51, 2), (1.8, 2)],
)  # fmt: skip
def test_verdict_follows_alpaca_eval(preference, expected):
    assert cal.verdict(preference) == expected


@pytest.mark.parametrize("bad", [0.5, 2.5, -1, 3])
def test_verdict_refuses_what_alpaca_eval_never_writes(bad):
    with pytest.raises(ValueError, match="not 0, null or in"):
        cal.verdict(bad)


def test_swap_preference_maps_back_to_the_original_orientation():
    assert [cal.swap_preference(p) for p in (1.0, 2.0, 1.5, 0, 1.25, None, math.nan)] == [
        2.0, 1.0, 1.5, 0.0, 1.75, None, None,
    ]  # fmt: skip


# --------------------------------------------------------------------------- statistics


def test_agreement_counts_only_pairs_both_judges_decided():
    ref = [1, 2, 2, 1, cal.DRAW, None, 2]
    judge = [1, 2, 1, cal.DRAW, cal.DRAW, 2, None]
    # decisive on both sides: (1, 1), (2, 2), (2, 1)
    assert cal.agreement(ref, judge) == (2, 3)
    # no failure on either side: those three, (1, draw) and (draw, draw)
    assert cal.agreement_with_draws(ref, judge) == (3, 5)


def test_cohen_kappa_by_hand_and_as_scikit_learn():
    a = [1, 1, 2, 2, 1, 2, 1, 1]
    b = [1, 2, 2, 2, 1, 1, 1, 1]
    # p_o = 6/8; each rater 5 x "1", 3 x "2": p_e = (5*5 + 3*3) / 64 = 34/64
    assert cal.cohen_kappa(a, b) == pytest.approx((6 / 8 - 34 / 64) / (1 - 34 / 64))
    assert cal.cohen_kappa(a, b) == pytest.approx(7 / 15)
    assert cal.cohen_kappa([1, 2, 1, 2], [1, 2, 1, 2]) == 1.0
    assert cal.cohen_kappa([1, 2, 1, 2], [2, 1, 2, 1]) == -1.0
    assert math.isnan(cal.cohen_kappa([], []))
    assert math.isnan(cal.cohen_kappa([2, 2, 2], [2, 2, 2]))  # p_e = 1: undefined
    assert cal.cohen_kappa([1, 1, 1, 1], [1, 1, 2, 1]) == 0.0  # one rater constant
    sklearn = pytest.importorskip("sklearn.metrics")
    for x, y in [(a, b), ([1, 2, 2, 1, 2, 1], [2, 2, 2, 1, 1, 1]), ([0, 1, 2, 1], [0, 2, 2, 1])]:
        assert cal.cohen_kappa(x, y) == pytest.approx(sklearn.cohen_kappa_score(x, y))
    with pytest.raises(ValueError, match="labels against"):
        cal.cohen_kappa([1], [1, 2])


def test_kappa_bootstrap_interval_is_seeded_and_brackets_the_estimate():
    a = [1, 1, 2, 2, 1, 2, 1, 1] * 3
    b = [1, 2, 2, 2, 1, 1, 1, 1] * 3
    lo, hi = cal.kappa_bootstrap_interval(a, b)
    assert -1 <= lo < cal.cohen_kappa(a, b) < hi <= 1
    assert (lo, hi) == cal.kappa_bootstrap_interval(a, b)  # same seed, same interval
    assert (lo, hi) != cal.kappa_bootstrap_interval(a, b, seed=1)
    assert all(math.isnan(x) for x in cal.kappa_bootstrap_interval([], []))
    assert all(math.isnan(x) for x in cal.kappa_bootstrap_interval([1, 1], [1, 1]))


def test_position_consistency_counts_draws_in_both_orders_as_the_same():
    original = [1, 2, cal.DRAW, 1, None, 2]
    swapped = [1, 1, cal.DRAW, 2, 2, 2]
    # both orders judged: (1, 1) same, (2, 1), (draw, draw) same, (1, 2), (2, 2) same
    assert cal.position_consistency(original, swapped) == (3, 5)


def test_length_preference_counts_decisive_verdicts_on_unequal_lengths():
    verdicts = [1, 2, 2, 1, cal.DRAW, None, 1]
    len_1 = [10, 10, 5, 5, 3, 3, 4]
    len_2 = [5, 20, 1, 5, 9, 9, 8]
    # 0: 1 wins, longer (yes); 1: 2 wins, longer (yes); 2: 2 wins, shorter; 3: equal (left
    # out); 4, 5: no decisive verdict; 6: 1 wins, shorter
    assert cal.length_preference(verdicts, len_1, len_2) == (2, 4)


def test_wilson_interval_by_hand():
    lo, hi = cal.wilson_interval(7, 10)
    assert (lo, hi) == pytest.approx((0.3968, 0.8922), abs=1e-4)
    assert cal.wilson_interval(0, 8)[0] == 0.0 and cal.wilson_interval(8, 8)[1] == 1.0
    assert all(math.isnan(x) for x in cal.wilson_interval(0, 0))


def _records() -> pd.DataFrame:
    """Six pairs of two sources, with a retired-judge draw and a judge failure."""
    rows = [
        # source, reference, judge (averaged), original order, swapped order, len_1, len_2
        ("s1", 1.0, 1.2, 1.1, 1.3, 30, 10),
        ("s1", 2.0, 1.7, 1.9, 1.2, 10, 30),
        ("s1", 1.0, 1.9, 1.9, 1.9, 30, 10),
        ("s2", 2.0, 1.6, 1.6, 1.6, 10, 10),
        ("s2", 1.5, 1.3, 1.4, 1.2, 20, 20),
        ("s2", 1.0, None, None, None, 5, 40),
    ]
    return pd.DataFrame(
        [
            {
                "source": s,
                "reference_annotator": "alpaca_eval_gpt4_turbo_fn",
                "reference_preference": r,
                "preference": j,
                "preference_original_order": o,
                "preference_swapped_order": w,
                "output_1": "x" * n1,
                "output_2": "y" * n2,
                "judge_model": "m",
            }
            for s, r, j, o, w, n1, n2 in rows
        ]
    )


def test_group_statistics_by_hand():
    stats = {r["statistic"]: r for r in cal.group_statistics(_records())}
    assert list(stats) == list(cal.STATISTICS)
    value = {k: r["value"] for k, r in stats.items()}
    n = {k: r["n"] for k, r in stats.items()}
    assert value["pairs"] == 6 and value["reference_draws"] == 1 and value["judge_draws"] == 0
    assert value["reference_failures"] == 0 and value["judge_failures"] == 1
    # decisive on both sides: pairs 0-3; verdicts ref 1, 2, 1, 2 vs judge 1, 2, 2, 2
    assert (value["agreement"], n["agreement"]) == (0.75, 4)
    assert (stats["agreement"]["ci_low"], stats["agreement"]["ci_high"]) == pytest.approx(
        cal.wilson_interval(3, 4)
    )
    assert stats["agreement"]["ci_method"] == "wilson"
    # ...and pair 4 (retired draw, judge 1): 3 of 5
    assert (value["agreement_with_draws"], n["agreement_with_draws"]) == (0.6, 5)
    # kappa on ref [1, 2, 1, 2] vs judge [1, 2, 2, 2]: p_o 3/4, p_e (2*1 + 2*3)/16 = 1/2
    assert value["cohen_kappa"] == pytest.approx(0.5) and n["cohen_kappa"] == 4
    assert stats["cohen_kappa"]["ci_method"] == "bootstrap"
    # orders: (1, 1), (2, 1), (2, 2), (2, 2), (1, 1); pair 5 failed
    assert (value["position_consistency"], n["position_consistency"]) == (0.8, 5)
    # judge's decisive verdicts on unequal lengths: pair 0 (1, longer), 1 (2, longer),
    # 2 (2, shorter); pair 3 equal, 4 equal, 5 failed
    assert (value["length_preference_judge"], n["length_preference_judge"]) == (2 / 3, 3)
    # retired judge: 0 (1, longer), 1 (2, longer), 2 (1, longer), 5 (1, shorter)
    assert (value["length_preference_reference"], n["length_preference_reference"]) == (0.75, 4)
    no_swap = {r["statistic"]: r for r in cal.group_statistics(_records(), swap=False)}
    assert math.isnan(no_swap["position_consistency"]["value"])
    assert no_swap["position_consistency"]["n"] == 0


def test_calibration_table_is_long_per_source_and_overall():
    table = cal.calibration_table(_records(), "local", "local judge x, pipeline check", "x")
    assert list(table.columns) == list(cal.COLUMNS)
    assert list(dict.fromkeys(table["source"])) == ["s1", "s2", cal.ALL]
    assert len(table) == 3 * len(cal.STATISTICS)
    assert set(table["benchmark"]) == {"alpaca_eval"}
    assert set(table["reference_judge"]) == {"alpaca_eval_gpt4_turbo_fn"}
    assert set(table["reference_model"]) == {"gpt-4-1106-preview"}
    value = table.set_index(["source", "statistic"])["value"]
    assert value["s1", "pairs"] == 3 and value["s2", "pairs"] == 3 and value[cal.ALL, "pairs"] == 6
    assert value["s1", "agreement"] == pytest.approx(2 / 3)  # ref 1, 2, 1 vs judge 1, 2, 2
    assert value["s2", "agreement"] == 1.0  # only pair 3 is decisive on both sides
    assert value[cal.ALL, "agreement"] == 0.75


# --------------------------------------------------------------------------- selection


def _rows(n: int = 40) -> list[dict]:
    prefs = [1.0, 2.0, 1.0, 1.0, 1.5, None, 2.0, 1.0]
    return [
        {
            "instruction": f"instruction {i}",
            "output_1": "a" * (10 + 7 * i),
            "output_2": "b" * (5 + 3 * i),
            "preference": prefs[i % len(prefs)],
        }
        for i in range(n)
    ]


def test_select_rows_all_by_default_and_by_length():
    rows = _rows()
    assert cal.select_rows(rows, "src") == list(range(len(rows)))
    short = cal.select_rows(rows, "src", max_chars=100)
    assert short == [i for i in range(len(rows)) if 15 + 10 * i <= 100]


def test_select_rows_alternates_the_retired_judges_verdicts_in_hash_order():
    rows = _rows()
    key = lambda i: cal.selection_key("src", rows[i]["instruction"])  # noqa: E731
    baseline = sorted((i for i, r in enumerate(rows) if r["preference"] == 1.0), key=key)
    model = sorted((i for i, r in enumerate(rows) if r["preference"] == 2.0), key=key)
    assert cal.select_rows(rows, "src", max_pairs=5) == sorted(baseline[:3] + model[:2])
    # a class that runs out leaves the rest to the other; draws and failures are never drawn
    picked = cal.select_rows(rows, "src", max_pairs=len(rows))
    assert picked == sorted(baseline + model)
    # another source draws other rows
    assert cal.select_rows(rows, "src", 4) != cal.select_rows(rows, "other", 4)


def test_select_rows_is_stable_under_itself():
    rows = _rows()
    sample = [rows[i] for i in cal.select_rows(rows, "src", max_pairs=8, max_chars=250)]
    assert cal.select_rows(sample, "src", max_pairs=8) == list(range(8))
    for k in (1, 2, 5):
        from_sample = [sample[i] for i in cal.select_rows(sample, "src", max_pairs=k)]
        short = [rows[i] for i in cal.select_rows(rows, "src", max_chars=250)]
        from_file = [short[i] for i in cal.select_rows(short, "src", max_pairs=k)]
        assert from_sample == from_file


def test_calibration_pairs_keep_the_recorded_verdict_and_refuse_empty_outputs():
    rows = _rows(8)
    pairs = cal.calibration_pairs(rows, "src", max_pairs=2)
    assert [p["row"] for p in pairs] == cal.select_rows(rows, "src", 2)
    assert {p["reference_preference"] for p in pairs} == {1.0, 2.0}
    assert all(p["source"] == "src" for p in pairs)
    rows[0]["output_2"] = "  "
    with pytest.raises(ValueError, match=r"row 0: 'output_2' is missing or empty"):
        cal.calibration_pairs(rows, "src")


# --------------------------------------------------------------------------- judge records


def test_local_judge_records_give_both_orders_in_the_original_orientation():
    annotation = {"instruction": "i", "output_1": "a", "output_2": "b", "preference": 1.55,
                  "p_model_better_order1": 0.8, "p_model_better_order2": 0.3}  # fmt: skip
    (rec,) = cal.local_judge_records([annotation])
    assert rec["preference"] == 1.55  # the average of the two orders is the verdict
    assert rec["preference_original_order"] == pytest.approx(1.8)
    assert rec["preference_swapped_order"] == pytest.approx(1.3)
    assert not any(k.startswith("p_model_better") for k in rec)
    assert cal.verdict(rec["preference_original_order"]) != cal.verdict(
        rec["preference_swapped_order"]
    )  # a position-biased judge: the winner changes with the order


def test_api_judge_records_map_the_swapped_answer_back():
    pairs = [{"source": "s", "instruction": f"i{k}"} for k in range(3)]
    original = [
        {"preference": 1.0, "judge_model": "g", "served_model": "g-1", "judge_error": None},
        {"preference": 2.0, "judge_model": "g", "served_model": "g-1", "judge_error": None},
        {"preference": None, "judge_model": "g", "served_model": None, "judge_error": "HTTP 400"},
    ]
    swapped = [
        {"preference": 2.0, "judge_error": None},  # output_1 of the pair wins again
        {"preference": 2.0, "judge_error": None},  # the pair's output_1 wins: inconsistent
        {"preference": None, "judge_error": "HTTP 400"},
    ]
    recs = cal.api_judge_records(original, swapped, pairs)
    assert [r["preference_original_order"] for r in recs] == [1.0, 2.0, None]
    assert [r["preference_swapped_order"] for r in recs] == [1.0, 1.0, None]
    assert [r["judge_error"] for r in recs] == [None, None, "HTTP 400"]
    assert recs[0]["source"] == "s" and recs[0]["served_model"] == "g-1"
    alone = cal.api_judge_records(original, None, pairs)
    assert all(r["preference_swapped_order"] is None for r in alone)


def test_an_api_judge_is_asked_in_both_orders(tmp_path, monkeypatch):
    """Against the local fake OpenAI server, whose judge prefers the output saying GOOD
    whatever its place: every pair has the same winner in both orders, two requests each."""
    from prefopt.judging.api import DEFAULT_ALPACA_EVAL_CONFIG, ApiJudgeClient

    monkeypatch.setenv("PREFOPT_TEST_KEY", "sk-test")
    pairs = [
        {"source": "s", "row": k, "instruction": f"Say something {k}.", "dataset": "d",
         "output_1": "GOOD one" if good == 1 else "plain one", "generator_1": "base",
         "output_2": "GOOD two" if good == 2 else "plain two", "generator_2": "model",
         "reference_annotator": "alpaca_eval_gpt4_turbo_fn", "reference_preference": ref}
        for k, (good, ref) in enumerate([(1, 1.0), (2, 2.0), (2, 1.0), (1, 2.0)])
    ]  # fmt: skip
    with FakeOpenAI() as server:
        client = ApiJudgeClient(
            model="fake-judge", base_url=server.base_url, cache_path=tmp_path / "cache.jsonl",
            api_key_env="PREFOPT_TEST_KEY",
        )  # fmt: skip
        records = cal.judge_pairs_with_api(client, pairs, DEFAULT_ALPACA_EVAL_CONFIG)
        assert server.total == 2 * len(pairs)
        once = cal.judge_pairs_with_api(client, pairs, DEFAULT_ALPACA_EVAL_CONFIG, swap=False)
        assert server.total == 2 * len(pairs)  # cached
    assert [r["preference"] for r in records] == [1.0, 2.0, 2.0, 1.0]
    assert [r["preference_swapped_order"] for r in records] == [1.0, 2.0, 2.0, 1.0]
    assert [r["preference"] for r in once] == [1.0, 2.0, 2.0, 1.0]
    assert all(r["preference_swapped_order"] is None for r in once)
    table = cal.calibration_table(pd.DataFrame(records), "j", "judge j", "fake-judge")
    value = table[table["source"] == cal.ALL].set_index("statistic")["value"]
    assert value["agreement"] == 0.5 and value["position_consistency"] == 1.0


# --------------------------------------------------------------------------- artifacts


def test_outputs_carry_the_judge_label_the_notes_and_the_stamp(tmp_path):
    records = _records()
    records["reference_annotator"] = ["alpaca_eval_cot_gpt4_turbo_fn"] * 3 + [
        "alpaca_eval_gpt4_turbo_fn"
    ] * 3
    records["served_model"] = ["m-2024"] * 5 + [None]  # none for the failed pair
    out = {k: tmp_path / f"judge_calibration.{k}" for k in ("csv", "md", "png", "pdf")}
    table = cal.write_calibration_outputs(
        records.to_dict("records"), *map(str, out.values()), judge="local",
        local_judge_model="smollm2-135m-instruct", sources=["s2", "s1"],
        pairs_note="Pairs per source: all.", provenance=STAMP,
    )  # fmt: skip
    csv = pd.read_csv(out["csv"], dtype={"code_commit": str, "config_hash": str})
    assert list(csv.columns) == [*cal.COLUMNS, "code_commit", "code_dirty", "config_hash"]
    assert (csv["code_commit"] == "0123456789ab").all() and len(csv) == len(table)
    assert set(csv["judge_label"]) == {"local judge smollm2-135m-instruct, pipeline check"}
    assert set(csv["judge_model"]) == {"m"} and set(csv["served_model"]) == {"m-2024"}
    assert list(dict.fromkeys(csv["source"])) == ["s2", "s1", cal.ALL]
    assert set(csv.loc[csv["source"] == "s1", "reference_annotators"]) == {
        "alpaca_eval_cot_gpt4_turbo_fn"
    }
    md = out["md"].read_text()
    assert "pipeline check, not comparable with GPT-4 numbers" in md
    assert "| 75.0 [30.1, 95.4]" in md  # the pooled agreement, 3 of 4, with its Wilson interval
    assert "s1: alpaca_eval_cot_gpt4_turbo_fn" in md and "Pairs per source: all." in md
    assert "MT-Bench calibration" in md and md.rstrip().endswith(
        f"Provenance: {STAMP} (full record: results/provenance.json)."
    )
    assert out["png"].stat().st_size > 10_000 and out["pdf"].read_bytes().startswith(b"%PDF")
    api = cal.write_calibration_outputs(
        records.to_dict("records"), *map(str, out.values()), judge="alpaca_eval_fn_x",
        local_judge_model=None,
    )  # fmt: skip
    assert set(api["judge_label"]) == {"judge alpaca_eval_fn_x"}


def test_pairs_note_says_how_many_rows_were_read():
    report = {"max_pairs": 2, "sources": {"a": {"rows_in_file": 8, "pairs": 2}}}
    assert cal.pairs_note(report) == (
        "Pairs per source: a: 2 of the 8 rows of the file read (a stratified draw, max_pairs = 2)."
    )


# --------------------------------------------------------------------------- the shipped sample


def _sums() -> dict[str, str]:
    lines = (EMBEDDED_DATA / "SHA256SUMS").read_text().splitlines()
    return {name: digest for digest, name in (line.split(maxsplit=1) for line in lines)}


@pytest.mark.parametrize("source", cal.SOURCES)
def test_shipped_sample_is_intact_and_complete(source):
    rel = cal.source_path(source)
    data = (EMBEDDED_DATA / rel).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    assert _sums()[rel] == digest
    assert digest in (SAMPLE / "PROVENANCE.md").read_text()
    rows = json.loads(data)
    assert len(rows) == 8
    for row in rows:
        for key in ("instruction", "output_1", "output_2"):
            assert isinstance(row[key], str) and row[key].strip(), (source, key)
        assert row["preference"] in (1, 2) and row["generator_1"] == "gpt4_1106_preview"
        assert row["generator_2"] and len(row["output_1"]) + len(row["output_2"]) <= 1000
    assert sorted(r["preference"] for r in rows) == [1] * 4 + [2] * 4
    # the selection rule, applied to the sample, keeps it whole (and max_pairs picks from it)
    assert cal.select_rows(rows, source, max_pairs=8) == list(range(8))
    assert len(cal.calibration_pairs(rows, source, max_pairs=2)) == 2


def test_shipped_sample_is_documented_licensed_and_downloadable():
    provenance = (SAMPLE / "PROVENANCE.md").read_text()
    assert (
        (SAMPLE / "LICENSE")
        .read_text()
        .startswith((EMBEDDED_DATA / "alpaca_eval" / "LICENSE").read_text()[:200])
    )
    src = download.GITHUB_SOURCES["alpaca_eval_calibration"]
    assert src.commit == download.GITHUB_SOURCES["alpaca_eval"].commit in provenance
    assert set(src.files) == {cal.source_path(s) for s in cal.SOURCES}
    for local, (remote, blob) in src.files.items():
        assert remote == local.replace(f"{cal.LAYOUT_DIR}/", "results/", 1)
        assert f"`{remote}` (`{blob}`)" in provenance
    assert cal.LAYOUT_DIR in (EMBEDDED_DATA / "README.md").read_text()


@pytest.mark.mirror
def test_sample_is_drawn_from_the_full_files_and_these_download(tmp_path, mirror, monkeypatch):
    """With the full files in a mirror: they are the pinned upstream bytes, the shipped sample is
    what the documented rule draws from them, and the download rule's code fetches them."""
    src = download.GITHUB_SOURCES["alpaca_eval_calibration"]
    if not all((mirror / local).is_file() for local in src.files):
        pytest.skip(f"the mirror has no {cal.LAYOUT_DIR}/ files")
    for source in cal.SOURCES:
        local = cal.source_path(source)
        assert download.git_blob_id((mirror / local).read_bytes()) == src.files[local][1]
        rows = json.loads((mirror / local).read_text(encoding="utf-8"))
        keep = cal.select_rows(rows, source, max_pairs=8, max_chars=1000)
        write_json([rows[i] for i in keep], tmp_path / "drawn" / local)
        assert (tmp_path / "drawn" / local).read_bytes() == (EMBEDDED_DATA / local).read_bytes()
    with StandInGitHubRaw() as github:
        github.add_tree(
            src.repo, src.commit, {r: mirror / loc for loc, (r, _) in src.files.items()}
        )
        monkeypatch.setenv(download.GITHUB_RAW_URL_ENV, github.url)
        record = download.download_github("alpaca_eval_calibration", tmp_path / "fetched")
    assert {e["git_blob"] for e in record["files"].values()} == {b for _, b in src.files.values()}
