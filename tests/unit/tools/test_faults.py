"""Config fuzz (prefopt_tools.faults): every way of getting a key wrong is refused, naming the
key."""

from __future__ import annotations

from collections import Counter

import pytest
import yaml

from prefopt.config import SCHEMA_PATH, validate_config
from prefopt_tools.faults import EXPECTED_VALID, config_mutations, fuzz_config, layered_config

LAYERS = {
    "paper": ["config/config.yaml"],
    "embedded": ["config/config.yaml", "config/embedded.yaml"],
    "tiny": ["config/config.yaml", "tests/config.tiny.yaml"],
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_config_mutation_is_refused_naming_the_key(repo, name):
    cfg = validate_config(layered_config(*(repo / f for f in LAYERS[name])))
    results = fuzz_config(cfg)
    kinds = Counter(r.kind for r in results)
    assert len(results) >= 150, len(results)
    assert {"wrong type (text)", "negative", "unknown key", "required key missing"} <= set(kinds)
    assert {"unknown variant", "unknown judge", "floating alias", "not a choice"} <= set(kinds)
    # issue 31: non-finite numbers, and pairs of keys each valid alone (docs/configuration.md)
    assert {"not a number (NaN)", "infinite"} <= set(kinds)
    assert sum(kind.startswith("pair: ") for kind in kinds) == 8
    missed = [(r.key, r.kind) for r in results if not r.rejected]
    unnamed = [(r.key, r.kind, r.message[:120]) for r in results if r.rejected and not r.names_key]
    assert missed == [] and unnamed == [], (missed, unnamed)


def test_the_fuzz_finds_a_key_the_schema_leaves_open(repo, tmp_path):
    """The mutations come from the values, not from the schema: drop a constraint and the
    fuzz reports the mutation that is no longer refused."""
    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    del schema["properties"]["training"]["properties"]["learning_rate"]["exclusiveMinimum"]
    loose = tmp_path / "schema.yaml"
    loose.write_text(yaml.safe_dump(schema))
    cfg = validate_config(layered_config(repo / "config/config.yaml"))
    missed = [(r.key, r.kind) for r in fuzz_config(cfg, loose) if not r.rejected]
    assert missed == [("training.learning_rate", "negative")]


def test_expected_valid_mutations_are_valid_configs(repo):
    cfg = validate_config(layered_config(repo / "config/config.yaml"))
    for mutation in config_mutations(cfg):
        if (mutation.key, mutation.kind) in EXPECTED_VALID:
            broken = yaml.safe_load(yaml.safe_dump(cfg))
            mutation.apply(broken)
            validate_config(broken)  # no error: a legitimate value


def test_every_corrupted_input_is_caught_naming_the_file_and_row(repo, tmp_path):
    """The corrupted-inputs campaign (prefopt_tools.corrupt_inputs, printed by fault-report): each
    case is refused, or for a bad source row left out and logged, with the file and the
    row/line/key in the message."""
    from prefopt_tools.corrupt_inputs import CORRUPTIONS, run_campaign

    results = run_campaign(tmp_path, repo)
    assert len(results) == len(CORRUPTIONS) >= 7
    slipped = [(r.name, r.message[:200]) for r in results if not (r.names_file and r.names_where)]
    assert slipped == []


def test_the_campaign_reports_a_check_that_is_gone(repo, tmp_path, monkeypatch):
    """Without the model-folder check, or with a cache record that never differs, the cases they
    catch are reported as not caught (the campaign can fail)."""
    from prefopt.training import reference_cache
    from prefopt_tools import corrupt_inputs

    monkeypatch.setattr(corrupt_inputs, "check_model_dir", lambda path: None)
    monkeypatch.setattr(reference_cache, "_differences", lambda got, expected: [])
    missed = {r.name for r in corrupt_inputs.run_campaign(tmp_path, repo) if not r.caught}
    assert missed == {
        "model folder missing a shard",
        "model weights cut short",
        "cache made with another tokenizer",
        "cache made with another max length",
    }
