"""The judge registry (prefopt.judging.registry): one record per judge, from which the config
check, the rules' wildcard constraints, the preflight and every judge label follow."""

from __future__ import annotations

import copy
import re
from datetime import date

import pytest
import yaml
from helpers import REPO

from prefopt.config import ConfigError, validate_config
from prefopt.judging import JUDGES
from prefopt.judging.registry import (
    BENCHMARKS,
    OPEN_WEIGHTS_JUDGES,
    PROTOCOLS,
    REGISTRY,
    api_judges,
    judge_pattern,
    judge_spec,
    open_weights_judge,
    paper_judge,
    spec_of,
)


def test_each_benchmark_has_exactly_one_paper_judge_and_it_is_an_api_judge():
    for benchmark in BENCHMARKS:
        papers = [s for s in REGISTRY if s.benchmark == benchmark and s.paper]
        assert len(papers) == 1 and papers[0].is_api and papers[0].model


def test_ids_are_unique_and_api_ids_name_one_judge_across_benchmarks():
    keys = [(s.benchmark, s.id) for s in REGISTRY]
    assert len(keys) == len(set(keys))
    api_ids = [s.id for s in REGISTRY if s.is_api]
    assert len(api_ids) == len(set(api_ids)), "spec_of(id) must be unambiguous"


def test_every_record_is_complete():
    for s in REGISTRY:
        assert s.benchmark in BENCHMARKS and s.kind in ("local", "api")
        assert s.protocol in PROTOCOLS
        if s.is_api:
            assert s.model and s.price_per_mtok is not None
        else:
            assert s.model is None
        if s.shutdown is not None:
            date.fromisoformat(s.shutdown)


def test_the_papers_retired_judges_name_live_substitutes_of_the_same_benchmark_and_protocol():
    for benchmark in BENCHMARKS:
        paper = paper_judge(benchmark)
        assert paper.shutdown, f"{paper.id}: the retirement date is what the preflight names"
        assert paper.substitutes
        for sub_id in paper.substitutes:
            sub = judge_spec(benchmark, sub_id)
            assert sub.is_api and not sub.paper and sub.shutdown is None
            assert sub.protocol == paper.protocol, "a substitute asks the same prompt"


def test_alpaca_eval_protocols_are_vendored_annotator_configs():
    for s in REGISTRY:
        if s.is_api and s.benchmark == "alpaca_eval":
            config = REPO / "workflow" / "resources" / "alpaca_eval" / s.protocol / "configs.yaml"
            assert config.is_file(), config


def test_the_papers_alpaca_eval_judge_asks_the_model_its_vendored_config_pins():
    paper = paper_judge("alpaca_eval")
    config = REPO / "workflow" / "resources" / "alpaca_eval" / paper.protocol / "configs.yaml"
    pinned = yaml.safe_load(config.read_text())[paper.protocol]["completions_kwargs"]
    assert pinned["model_name"] == paper.model


def test_judge_pattern_matches_exactly_the_ids():
    pattern = judge_pattern(["gpt-4.1-2025-04-14", "local"])
    assert re.fullmatch(pattern, "gpt-4.1-2025-04-14")
    assert not re.fullmatch(pattern, "gpt-4x1-2025-04-14"), "dots are escaped"
    assert not re.fullmatch(pattern, "gpt-4.1")


def test_lookups():
    assert spec_of("local") is None and spec_of("unknown") is None
    assert spec_of("gpt-4-0613").benchmark == "mt_bench"
    assert set(api_judges("mt_bench")) == set(JUDGES["mt_bench"]) - {"local"}
    with pytest.raises(KeyError, match="known"):
        judge_spec("alpaca_eval", "gpt-4-0613")


@pytest.fixture(scope="module")
def paper_config() -> dict:
    return yaml.safe_load((REPO / "config/config.yaml").read_text())


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_config_accepts_every_registered_judge_and_refuses_others(paper_config, benchmark):
    for judge in JUDGES[benchmark]:
        config = copy.deepcopy(paper_config)
        config["judges"][benchmark] = judge
        validate_config(config)
    config = copy.deepcopy(paper_config)
    config["judges"][benchmark] = "gpt-5-judge"
    with pytest.raises(ConfigError, match=rf"judges\.{benchmark}: 'gpt-5-judge' is not one of"):
        validate_config(config)


def test_a_floating_alias_is_refused_with_the_pinned_snapshot_named(paper_config):
    config = copy.deepcopy(paper_config)
    config["judges"]["mt_bench"] = "gpt-4.1"
    with pytest.raises(ConfigError, match="floating alias.*gpt-4.1-2025-04-14"):
        validate_config(config)


# ------------------------------------------------------------- issue 28 item 5: open-weights judge

OPEN_JUDGE_OVERLAY = REPO / "config" / "open-judge.yaml"


def test_open_weights_judges_are_pinned_to_a_full_commit():
    for judge in OPEN_WEIGHTS_JUDGES:
        assert re.fullmatch(r"[0-9a-f]{40}", judge.revision), judge
        assert judge.hf_id.count("/") == 1 and judge.licence
        assert judge.label == f"open judge {judge.slug} ({judge.hf_id}@{judge.revision[:7]})"
    assert len({j.slug for j in OPEN_WEIGHTS_JUDGES}) == len(OPEN_WEIGHTS_JUDGES)


def test_open_weights_judge_lookup_leaves_other_local_models_alone():
    first = OPEN_WEIGHTS_JUDGES[0]
    assert open_weights_judge(first.slug) is first
    assert open_weights_judge(f" {first.slug} ") is first
    for other in (None, "", "smollm2-135m-instruct", "qwen2.5-1.5b-instruct"):
        assert open_weights_judge(other) is None


def test_open_judge_overlay_validates_and_names_the_registered_pin(paper_config):
    """The overlay on config/config.yaml: both benchmarks on the local judge, whose model is the
    registry's open-weights judge, fetched at the very commit the registry (and so the label)
    names; no API judge remains."""
    overlay = yaml.safe_load(OPEN_JUDGE_OVERLAY.read_text())
    config = copy.deepcopy(paper_config)
    config["judges"].update(overlay["judges"])
    config["teacher_models"].update(overlay["teacher_models"])
    config = validate_config(config)
    judges = config["judges"]
    assert judges["alpaca_eval"] == judges["mt_bench"] == "local"
    judge = open_weights_judge(judges["local_model"])
    assert judge is not None
    entry = config["teacher_models"][judge.slug]
    assert entry == {"source": "huggingface", "id": judge.hf_id, "revision": judge.revision}
    # the paper's teachers stay as they were
    assert set(paper_config["teacher_models"]) < set(config["teacher_models"])


def test_a_placeholder_revision_of_the_open_judge_is_refused(paper_config):
    overlay = yaml.safe_load(OPEN_JUDGE_OVERLAY.read_text())
    config = copy.deepcopy(paper_config)
    config["judges"].update(overlay["judges"])
    config["teacher_models"].update(overlay["teacher_models"])
    config["teacher_models"]["qwen2.5-7b-instruct"]["revision"] = "main"
    with pytest.raises(ConfigError, match="revision"):
        validate_config(config)
