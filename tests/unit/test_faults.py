"""Config fuzz (prefopt.faults): every way of getting a key wrong is refused, naming the key."""

from __future__ import annotations

from collections import Counter

import pytest
import yaml

from prefopt.config import SCHEMA_PATH, validate_config
from prefopt.faults import EXPECTED_VALID, config_mutations, fuzz_config, layered_config

LAYERS = {
    "paper": ["config.yaml"],
    "embedded": ["config.yaml", "workflow/configs/embedded.yaml"],
    "tiny": ["config.yaml", "tests/config.tiny.yaml"],
}


@pytest.mark.parametrize("name", sorted(LAYERS))
def test_every_config_mutation_is_refused_naming_the_key(repo, name):
    cfg = validate_config(layered_config(*(repo / f for f in LAYERS[name])))
    results = fuzz_config(cfg)
    kinds = Counter(r.kind for r in results)
    assert len(results) >= 150, len(results)
    assert {"wrong type (text)", "negative", "unknown key", "required key missing"} <= set(kinds)
    assert {"unknown variant", "unknown judge", "floating alias", "not a choice"} <= set(kinds)
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
    cfg = validate_config(layered_config(repo / "config.yaml"))
    missed = [(r.key, r.kind) for r in fuzz_config(cfg, loose) if not r.rejected]
    assert missed == [("training.learning_rate", "negative")]


def test_expected_valid_mutations_are_valid_configs(repo):
    cfg = validate_config(layered_config(repo / "config.yaml"))
    for mutation in config_mutations(cfg):
        if (mutation.key, mutation.kind) in EXPECTED_VALID:
            broken = yaml.safe_load(yaml.safe_dump(cfg))
            mutation.apply(broken)
            validate_config(broken)  # no error: a legitimate value
