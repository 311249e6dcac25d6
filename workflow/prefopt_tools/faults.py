"""Fault injection: bad input must be refused before any work, with a message that names it.

`workflow/bin/fault-report` prints every campaign's figures (`cli`): this module's config fuzz,
the corrupted inputs (`prefopt_tools.corrupt_inputs`) and, with `--kill`, the kill-anywhere campaign
(`prefopt_tools.kill_anywhere`); the tests assert them.

Config fuzz (`config_mutations`, `fuzz_config`): every key of a layered config is mutated the
ways a user gets it wrong, driven by the schema itself (`workflow/schemas/config.schema.yaml`):
a value of the wrong type, a negative or fractional size, a choice that does not exist, a typo
as an extra key, a required key left out; plus the cross-key mistakes the schema cannot see
(an unknown variant or judge, a seed that is not a number). Each mutation must raise
`ConfigError` naming the key.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from prefopt.config import SCHEMA_PATH, ConfigError, validate_config

Path_ = tuple[str | int, ...]


#: Mutations that produce a valid config on purpose, and why (reported, not counted as misses).
EXPECTED_VALID = {
    ("training.epochs", "fractional count"): (
        "transformers trains fractional epochs (num_train_epochs is a float): 2.5 is meaningful"
    ),
    ("training.checkpoint_minutes", "fractional count"): (
        "a wall-time interval, not a count: 2.5 minutes is meaningful"
    ),
}


@dataclass(frozen=True)
class ConfigMutation:
    """One way to get the config wrong, and the key its error message must name."""

    key: str
    kind: str
    apply: Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class FuzzResult:
    key: str
    kind: str
    rejected: bool
    names_key: bool
    message: str


def dotted(path: Path_) -> str:
    """("training", "learning_rate") -> "training.learning_rate"; list indices as [i]."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _get_parent(cfg: dict[str, Any], path: Path_) -> Any:
    node = cfg
    for part in path[:-1]:
        node = node[part]
    return node


def _setter(path: Path_, value: Any) -> Callable[[dict[str, Any]], None]:
    def apply(cfg: dict[str, Any]) -> None:
        _get_parent(cfg, path)[path[-1]] = copy.deepcopy(value)

    return apply


def _deleter(path: Path_) -> Callable[[dict[str, Any]], None]:
    def apply(cfg: dict[str, Any]) -> None:
        del _get_parent(cfg, path)[path[-1]]

    return apply


def _sub_schema(schema: dict[str, Any], key: str) -> dict[str, Any] | None:
    """The schema of `key` inside an object schema (its property, or additionalProperties)."""
    props = schema.get("properties", {})
    if key in props:
        return props[key]
    extra = schema.get("additionalProperties")
    return extra if isinstance(extra, dict) else None


def _types(schema: dict[str, Any]) -> set[str]:
    if "enum" in schema:
        return {"enum"}
    kind = schema.get("type")
    return set(kind) if isinstance(kind, list) else ({kind} if kind else set())


def _walk(
    node: Any, schema: dict[str, Any] | None, path: Path_
) -> Iterator[tuple[Path_, Any, dict[str, Any]]]:
    """(path, value, schema) for every config value that has a schema, depth first."""
    if schema is None:
        return
    yield path, node, schema
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, _sub_schema(schema, key), (*path, key))


def _value_mutations(path: Path_, value: Any, schema: dict[str, Any]) -> list[ConfigMutation]:
    """Mutations chosen by the value's own type, not by what the schema promises, so a key the
    schema leaves unconstrained shows up as a mutation that is not refused."""
    key = dotted(path)
    out: list[ConfigMutation] = []
    if isinstance(value, bool):
        out.append(ConfigMutation(key, "wrong type (text)", _setter(path, "yes")))
    elif isinstance(value, int | float):
        out.append(ConfigMutation(key, "wrong type (text)", _setter(path, "ten")))
        out.append(ConfigMutation(key, "not a number (NaN)", _setter(path, float("nan"))))
        out.append(ConfigMutation(key, "infinite", _setter(path, float("inf"))))
        if value > 0:
            out.append(ConfigMutation(key, "negative", _setter(path, -3)))
        if isinstance(value, int):
            out.append(ConfigMutation(key, "fractional count", _setter(path, 2.5)))
    elif isinstance(value, str):
        out.append(ConfigMutation(key, "wrong type (list)", _setter(path, ["a", "b"])))
        if "enum" in schema:
            out.append(ConfigMutation(key, "not a choice", _setter(path, "no-such-choice")))
    elif isinstance(value, list):
        out.append(ConfigMutation(key, "wrong type (text)", _setter(path, "not-a-list")))
    elif isinstance(value, dict):
        typo = (*path, "typo_key")
        out.append(ConfigMutation(dotted(typo), "unknown key", _setter(typo, 1)))
        for required in schema.get("required", []):
            if required in value:
                out.append(
                    ConfigMutation(
                        dotted((*path, required)),
                        "required key missing",
                        _deleter((*path, required)),
                    )
                )
    return out


def _pair(**changes: Any) -> Callable[[dict[str, Any]], None]:
    """Set several keys at once (`section__key=value`): each value valid alone, the pair not."""

    def apply(cfg: dict[str, Any]) -> None:
        for key, value in changes.items():
            section, name = key.split("__")
            cfg[section][name] = copy.deepcopy(value)

    return apply


def _cross_key_mutations(cfg: dict[str, Any]) -> list[ConfigMutation]:
    """Mistakes only the cross-key checks see: names that must refer to something, and pairs
    of keys each valid alone that contradict each other (workflow/docs/configuration.md)."""
    training = cfg["training"]

    def add_variant(c: dict[str, Any]) -> None:
        c["run"]["variants"].append("dpo_typo")

    def same_label(c: dict[str, Any]) -> None:
        first, second = c["run"]["variants"][:2]
        c["variants"][second]["label"] = c["variants"][first]["label"]

    def heldout_from_trained_rows(c: dict[str, Any]) -> None:
        c["data"]["heldout"] = {**c["data"].get("heldout", {}), "first_row": 0}
        c["data"]["heldout"]["split"] = c["data"]["train"]["split"]

    def vllm_shorter_than_an_answer(c: dict[str, Any]) -> None:
        gen = c["generation"]
        gen["engine"] = "vllm"
        gen["vllm"] = {**gen.get("vllm", {}), "max_model_len": gen["alpaca_eval"]["max_new_tokens"]}

    pairs = [
        ConfigMutation(
            "training.max_prompt_length",
            "pair: prompt as long as the whole sequence",
            _pair(training__max_prompt_length=training["max_length"]),
        ),
        ConfigMutation(
            "training.checkpoint_steps",
            "pair: checkpoint off the logging steps",
            _pair(training__logging_steps=3, training__checkpoint_steps=10),
        ),
        ConfigMutation(
            "training.gpus_per_job",
            "pair: batch not divisible by the GPUs",
            _pair(training__per_device_train_batch_size=3, training__gpus_per_job=2),
        ),
        ConfigMutation(
            "generation.vllm.max_model_len",
            "pair: vLLM's sequence no longer than an answer",
            vllm_shorter_than_an_answer,
        ),
        ConfigMutation("run.variants", "pair: two variants of the run, one label", same_label),
        ConfigMutation(
            "data.heldout.first_row",
            "pair: held-out rows among the trained rows",
            heldout_from_trained_rows,
        ),
        ConfigMutation(
            "judges.repeats",
            "pair: repeats with the local judge",
            _pair(judges__repeats=3, judges__alpaca_eval="local"),
        ),
        ConfigMutation(
            "judges.local_model",
            "pair: local judge model not among teacher_models",
            _pair(judges__local_model="not-fetched-model", judges__alpaca_eval="local"),
        ),
    ]
    return pairs + [
        ConfigMutation("run.variants", "unknown variant", add_variant),
        ConfigMutation("run.seeds[0]", "seed not a number", _setter(("run", "seeds", 0), "one")),
        ConfigMutation(
            "judges.alpaca_eval", "unknown judge", _setter(("judges", "alpaca_eval"), "gpt5")
        ),
        ConfigMutation(
            "judges.mt_bench", "floating alias", _setter(("judges", "mt_bench"), "gpt-4")
        ),
    ]


def config_mutations(cfg: dict[str, Any], schema_path: Path = SCHEMA_PATH) -> list[ConfigMutation]:
    """Every mutation of `cfg` (a layered, valid config) that the schema and checks must refuse."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    out: list[ConfigMutation] = []
    for path, value, sub in _walk(cfg, schema, ()):
        out.extend(_value_mutations(path, value, sub))
    return out + _cross_key_mutations(cfg)


def _names(message: str, key: str) -> bool:
    """The message names the key: its dotted path, or its parent's path and its own name."""
    if key in message:
        return True
    parent, _, leaf = key.rpartition(".")
    return leaf in message and (not parent or parent in message or "<top level>" in message)


def fuzz_config(cfg: dict[str, Any], schema_path: Path = SCHEMA_PATH) -> list[FuzzResult]:
    """Apply each mutation to a copy of `cfg` and validate it: refused, and does it say where?
    The mutations in `EXPECTED_VALID` are left out (they are valid configs)."""
    results = []
    for mutation in config_mutations(cfg, schema_path):
        if (mutation.key, mutation.kind) in EXPECTED_VALID:
            continue
        broken = copy.deepcopy(cfg)
        mutation.apply(broken)
        try:
            validate_config(broken, schema_path)
        except ConfigError as err:
            message = str(err)
            results.append(
                FuzzResult(
                    mutation.key, mutation.kind, True, _names(message, mutation.key), message
                )
            )
        else:
            results.append(FuzzResult(mutation.key, mutation.kind, False, False, ""))
    return results


def layered_config(*files: str | Path) -> dict[str, Any]:
    """config/config.yaml with overlays, merged as Snakemake merges --configfile (nested dicts)."""

    def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
        for key, value in top.items():
            if isinstance(value, dict) and isinstance(base.get(key), dict):
                merge(base[key], value)
            else:
                base[key] = value
        return base

    cfg: dict[str, Any] = {}
    for f in files:
        merge(cfg, yaml.safe_load(Path(f).read_text()) or {})
    return cfg


#: Overlays the report fuzzes (each layered on config/config.yaml, as the workflow layers them).
REPORT_LAYERS = {
    "paper (config/config.yaml)": ["config/config.yaml"],
    "embedded": ["config/config.yaml", "config/embedded.yaml"],
    "tiny test": ["config/config.yaml", "tests/config.tiny.yaml"],
}
#: Issue 15's other categories, which this report does not measure yet.
#: Fault categories checked by the test suite rather than by this report (where, what).
CHECKED_BY_TESTS = (
    "kill -9 of a training job (mid-step; Snakemake and its job together): resumed to the "
    "uninterrupted run's weights (tests/unit/training/test_resume.py, "
    "tests/integration/test_e2e_tiny.py)",
    "secrets: API judges through the DAG with a sentinel key, a server echoing it: 0 files "
    "holding it under the run's folder (test_e2e_tiny.py::test_api_judges_leave_no_secret_behind)",
    "kill -9 at 3 points of the tiny DAG (prepare, judge, render), results/ "
    "compared file by file with the uninterrupted run (test_e2e_tiny.py::"
    "test_killed_anywhere_the_rerun_ends_where_an_uninterrupted_run_ends, marked heavy: "
    "workflow/bin/test --heavy; --kill runs all 12 points)",
    "disk full and read-only results/ (a 40 MB tmpfs, then remounted read-only, in a mount "
    "namespace): the job stops saying why and what to do, no half-written output is kept, "
    "earlier results stay, the same command then plans only the unfinished job "
    "(tests/integration/test_disk_full.py)",
    "a changed mirror file through Snakemake: its stage stops naming the file and both "
    "checksums, other results untouched (tests/integration/test_corrupt_inputs_dag.py)",
)
NOT_YET_MEASURED: tuple[str, ...] = ()


def report_corruptions(root: Path) -> int:
    """Print the corrupted-inputs campaign (`prefopt_tools.corrupt_inputs`); the number that
    slipped."""
    import tempfile

    from prefopt_tools.corrupt_inputs import run_campaign

    with tempfile.TemporaryDirectory(prefix="prefopt-corrupt-") as work:
        results = run_campaign(work, root)
        # messages name the scratch folder: shown relative to it
        shown = [r.message.replace(f"{work}/", "") for r in results]
    ok = [r.caught and r.names_file and r.names_where for r in results]
    print(
        "corrupted inputs: each made in a scratch folder and read by the check its stage runs "
        "before loading any model"
    )
    print(
        f"  caught {sum(r.caught for r in results)}/{len(results)}, message names the file "
        f"and the row/line/key {sum(ok)}/{len(results)}"
    )
    for r, good, message in zip(results, ok, shown, strict=True):
        print(f"    {'caught' if good else 'NOT CAUGHT'}: {r.name} [{r.stage}]: {message[:150]}")
    return len(results) - sum(ok)


def main(root: str | Path = ".") -> int:
    """Print the fault campaign's figures (workflow/bin/fault-report); 1 if anything slipped."""
    root = Path(root)
    failed = 0
    print("config fuzz: each mutation validated as the Snakefile validates it, before any job")
    for name, files in REPORT_LAYERS.items():
        cfg = validate_config(layered_config(*(root / f for f in files)))
        results = fuzz_config(cfg)
        rejected = sum(r.rejected for r in results)
        named = sum(r.rejected and r.names_key for r in results)
        print(
            f"  {name}: rejected {rejected}/{len(results)}, "
            f"message names the key {named}/{len(results)}"
        )
        for r in results:
            if not (r.rejected and r.names_key):
                failed += 1
                print(f"    NOT CAUGHT: {r.key} ({r.kind}) {r.message[:100]}")
    counts: dict[str, int] = {}
    for r in results:
        counts[r.kind] = counts.get(r.kind, 0) + 1
    print("  mutations by kind (last config): " + ", ".join(f"{k} {n}" for k, n in counts.items()))
    for (key, kind), why in EXPECTED_VALID.items():
        print(f"  not a mistake, left out: {key} ({kind}): {why}")
    failed += report_corruptions(root)
    for category in CHECKED_BY_TESTS:
        print(f"checked by the test suite, not by this report: {category}")
    for category in NOT_YET_MEASURED:
        print(f"not measured by this report yet: {category}")
    return 1 if failed else 0


def cli(argv: list[str] | None = None) -> int:
    """workflow/bin/fault-report [--kill [--work DIR]]."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(prog="fault-report", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--kill",
        action="store_true",
        help="also run the kill-anywhere campaign on the tiny config (two runs, ~20 min on 2 "
        "cores): SIGKILL at points over the DAG, rerun, compare results/ file by file",
    )
    parser.add_argument("--work", help="keep the campaign's two runs in this folder")
    args = parser.parse_args(argv)
    failed = main()
    if not args.kill:
        print("kill anywhere: not run (fault-report --kill runs it, ~20 min on 2 cores)")
        return failed
    from prefopt_tools.kill_anywhere import campaign

    if args.work:
        Path(args.work).mkdir(parents=True, exist_ok=True)
        return failed + campaign(".", args.work)
    with tempfile.TemporaryDirectory(prefix="prefopt-kill-") as work:
        return failed + campaign(".", work)


if __name__ == "__main__":
    raise SystemExit(1 if cli() else 0)
