"""Configuration validation: fail in seconds, naming the offending key, before any work starts."""

from __future__ import annotations

import copy
import functools
import math
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator, validators

SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


#: Values of mirror_dir that mean "no mirror: download every source".
NO_MIRROR = ("", "null", "none")


class ConfigError(ValueError):
    """A configuration problem, with the dotted path of the offending key in the message."""


def _with_defaults(validator_class: type) -> type:
    """A validator that also fills in `default`s, so every optional knob has one value."""
    validate_properties = validator_class.VALIDATORS["properties"]

    def set_defaults(validator, properties, instance, schema):  # noqa: ANN001
        if isinstance(instance, dict):
            for name, sub in properties.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from validate_properties(validator, properties, instance, schema)

    return validators.extend(validator_class, {"properties": set_defaults})


def _dotted(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "<top level>"


@functools.lru_cache(maxsize=8)
def _validator(schema_path: str) -> Any:
    """The schema's validator, built once per process (the config fuzz validates hundreds)."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    return _with_defaults(Draft202012Validator)(schema)


def _non_finite(value: Any, path: tuple = ()) -> Any:
    """(path, value) of every NaN or infinite number in a parsed config (YAML's .nan, .inf)."""
    if isinstance(value, float) and not math.isfinite(value):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _non_finite(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _non_finite(item, (*path, i))


def validate_config(config: dict[str, Any], schema_path: Path = SCHEMA_PATH) -> dict[str, Any]:
    """Validate `config` in place (schema + cross-key rules) and return it with defaults."""
    # `--config mirror_dir=null` arrives as a string: it means "no mirror" (download).
    if str(config.get("mirror_dir")).strip().lower() in NO_MIRROR:
        config["mirror_dir"] = None
    non_finite = list(_non_finite(config))
    if non_finite:  # JSON Schema's number bounds let NaN through (NaN < minimum is False)
        raise ConfigError(
            "\n".join(
                f"config error at {_dotted(path)}: {value!r} is not a finite number"
                for path, value in non_finite[:10]
            )
        )
    validator = _validator(str(schema_path))
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        lines = []
        for err in errors[:10]:
            where = _dotted(err.absolute_path)
            if err.validator == "additionalProperties":
                lines.append(f"config error at {where}: {err.message} (unknown key)")
            else:
                lines.append(f"config error at {where}: {err.message}")
        raise ConfigError("\n".join(lines))
    _check_cross_keys(config)
    return config


def _check_cross_keys(config: dict[str, Any]) -> None:
    from prefopt.judging import FLOATING_ALIASES, JUDGES

    for benchmark, known in JUDGES.items():
        name = config["judges"][benchmark]
        if name not in known:
            hint = ""
            if FLOATING_ALIASES.get(name) in known:
                hint = (
                    f" ({name!r} is a floating alias whose model may change; the judge is pinned "
                    f"to the snapshot {FLOATING_ALIASES[name]!r})"
                )
            raise ConfigError(
                f"config error at judges.{benchmark}: {name!r} is not one of {list(known)}{hint}"
            )
    _check_judge_repeats(config)
    judge_model = config["judges"].get("local_model")
    teachers = config.get("teacher_models") or {}
    if judge_model is not None and judge_model != config["model"]["slug"]:
        if judge_model not in teachers:
            raise ConfigError(
                f"config error at judges.local_model: {judge_model!r} is neither the policy's "
                f"base model (model.slug {config['model']['slug']!r}) nor an entry of "
                f"teacher_models (defined: {sorted(teachers)}); add it to teacher_models "
                "(source, id, revision) so that prepare_teacher_model fetches it, or use null "
                "for the base model"
            )
    every, logging = config["training"]["checkpoint_steps"], config["training"]["logging_steps"]
    if every % logging:
        raise ConfigError(
            f"config error at training.checkpoint_steps: {every} is not a multiple of "
            f"training.logging_steps ({logging}); a checkpoint must fall on a logging step, "
            "where the diagnostics and the loss total are complete"
        )
    training = config["training"]
    prompt, total = training["max_prompt_length"], training["max_length"]
    if prompt >= total:
        raise ConfigError(
            f"config error at training.max_prompt_length: {prompt} leaves no room for an answer "
            f"within training.max_length ({total}); prompts are cut to max_prompt_length "
            "tokens and prompt + answer to max_length, so max_prompt_length must be smaller "
            "(the paper: 256 of 1024)"
        )
    _check_vllm_model_len(config["generation"])
    gpus, batch = training["gpus_per_job"], training["per_device_train_batch_size"]
    if batch % gpus:
        raise ConfigError(
            f"config error at training.gpus_per_job: {gpus} processes cannot split "
            f"training.per_device_train_batch_size ({batch}) evenly; the global batch stays the "
            "configured one, so each process takes per_device_train_batch_size / gpus_per_job "
            "pairs (prefopt.training.ddp)"
        )
    variants = config["variants"]
    for i, name in enumerate(config["run"]["variants"]):
        if name not in variants:
            raise ConfigError(
                f"config error at run.variants[{i}]: unknown variant {name!r}; "
                f"defined variants are {sorted(variants)}"
            )
    for name, spec in variants.items():
        if spec["loss"] in SEED_METHOD_KEYS:
            _check_seed_method(config, name, spec)
    _check_run_labels(config)
    _check_heldout_rows(config["data"])
    try:
        from prefopt.training.losses import LOSSES, LossConfigError, validate_params
    except ImportError:  # a Snakemake process without torch: the training job re-checks
        return
    for name, spec in variants.items():
        loss = spec["loss"]
        if loss is None or loss in SEED_METHOD_KEYS:
            continue
        extra = sorted(set(spec) & SEED_ONLY_KEYS)
        if extra:
            raise ConfigError(
                f"config error at variants.{name}.{extra[0]}: only seed-method variants "
                f"(loss in {sorted(SEED_METHOD_KEYS)}) take {extra}"
            )
        if loss not in LOSSES:
            raise ConfigError(
                f"config error at variants.{name}.loss: unknown loss {loss!r}; "
                f"known losses are {sorted(LOSSES)}"
            )
        try:
            validate_params(loss, train_params(config, name))
        except LossConfigError as err:
            raise ConfigError(f"config error at variants.{name}: {err}") from None


# Seed-method objectives (prefopt.training.seed_methods.trainer) and the variant keys each one
# requires.
SEED_METHOD_KEYS: dict[str, tuple[str, ...]] = {
    "lambda_dpo": (
        "beta", "lambda_scheme", "dirichlet_alpha", "length_normalize", "target_temperature",
    ),
    "dckd": ("topk", "distill_weight", "chosen_weight", "rejected_weight", "sft_weight"),
    "adpa": ("topk", "adpa_weight", "student_generation"),
}  # fmt: skip
# DCKD/ADPA also need a teacher: `teacher` (a trained variant) or `teacher_model` (external).
TEACHER_KEYS = ("teacher", "teacher_model", "reference_teacher_model")
SEED_ONLY_KEYS = {k for keys in SEED_METHOD_KEYS.values() for k in keys} - {"beta"} | {
    "init",
    "advantage_clip",
    *TEACHER_KEYS,
}


def _check_seed_method(config: dict[str, Any], name: str, spec: dict[str, Any]) -> None:
    variants = config["variants"]
    loss = spec["loss"]
    for key in SEED_METHOD_KEYS[loss]:
        if spec.get(key) is None:
            raise ConfigError(
                f"config error at variants.{name}.{key}: loss {loss!r} requires {key!r}"
            )
    allowed = set(SEED_METHOD_KEYS[loss]) | {"loss", "label", "group", "learning_rate"}
    if loss in {"dckd", "adpa"}:
        allowed |= {"init", "teacher", "teacher_model"}
        if (spec.get("teacher") is None) == (spec.get("teacher_model") is None):
            raise ConfigError(
                f"config error at variants.{name}: loss {loss!r} needs exactly one of 'teacher' "
                "(a trained variant) or 'teacher_model' (an entry of teacher_models)"
            )
        for key in ("teacher_model", "reference_teacher_model"):
            slug = spec.get(key)
            if slug is not None and slug not in config.get("teacher_models", {}):
                raise ConfigError(
                    f"config error at variants.{name}.{key}: {slug!r} is not an entry of "
                    f"teacher_models (defined: {sorted(config.get('teacher_models', {}))})"
                )
    if loss == "adpa":
        allowed |= {"advantage_clip", "reference_teacher_model"}
        if spec.get("teacher_model") is not None and spec.get("reference_teacher_model") is None:
            raise ConfigError(
                f"config error at variants.{name}.reference_teacher_model: an external "
                "teacher_model needs its own starting point for the advantage"
            )
    extra = sorted(set(spec) - allowed)
    if extra:
        raise ConfigError(
            f"config error at variants.{name}.{extra[0]}: not a key of loss {loss!r} "
            f"(its keys: {sorted(allowed)})"
        )
    for key in ("teacher", "init"):
        ref = spec.get(key)
        if ref is None:
            continue
        if ref not in variants:
            raise ConfigError(f"config error at variants.{name}.{key}: unknown variant {ref!r}")
        if ref == name or variants[ref]["loss"] is None:
            raise ConfigError(
                f"config error at variants.{name}.{key}: {ref!r} must be another trained variant"
            )
        if key == "init" and variants[ref]["loss"] in {"adpa", "lambda_dpo"}:
            raise ConfigError(
                f"config error at variants.{name}.init: a student starts from the base model "
                f"or a dckd student, not {ref!r} (loss {variants[ref]['loss']!r})"
            )
    teacher = spec.get("teacher")
    if teacher is not None and variants[teacher]["loss"] in SEED_METHOD_KEYS:
        raise ConfigError(
            f"config error at variants.{name}.teacher: the teacher must be a pairwise-trained "
            f"(DPO-family) variant, not {teacher!r}"
        )
    clip = spec.get("advantage_clip")
    if clip is not None and not clip[0] < clip[1]:
        raise ConfigError(f"config error at variants.{name}.advantage_clip: need [low, high]")


def _check_vllm_model_len(generation: dict[str, Any]) -> None:
    """vLLM holds at most `max_model_len` tokens of prompt + answer per sequence: an answer is
    cut where that ends, and a prompt that reaches it stops the whole job. MT-Bench's turn-2
    prompt holds the turn-1 answer, so two full answers must fit besides the questions. (The
    model's own context is checked when a generation job starts, before any answer.)"""
    limit = (generation.get("vllm") or {}).get("max_model_len")
    if generation.get("engine") != "vllm" or limit is None:
        return
    for benchmark, answers in (("alpaca_eval", 1), ("mt_bench", 2)):
        new = generation[benchmark]["max_new_tokens"]
        if answers * new >= limit:
            what = "an answer" if answers == 1 else "the turn-1 and turn-2 answers"
            raise ConfigError(
                f"config error at generation.vllm.max_model_len: {limit} tokens cannot hold "
                f"{what} of generation.{benchmark}.max_new_tokens ({new}) with a prompt: "
                f"vLLM cuts answers at max_model_len and stops on a prompt that reaches it; "
                f"raise max_model_len above {answers * new} plus the longest prompt, or null "
                "(the model's own limit)"
            )


def _check_run_labels(config: dict[str, Any]) -> None:
    """Every table and figure names a variant by its label: two variants of the run with one
    label would be one row name twice, one bar place in a figure."""
    seen: dict[str, str] = {}
    for i, name in enumerate(config["run"]["variants"]):
        label = config["variants"][name]["label"]
        if label in seen:
            raise ConfigError(
                f"config error at run.variants[{i}]: {name!r} and {seen[label]!r} share the "
                f"label {label!r} (variants.{name}.label, variants.{seen[label]}.label); tables "
                "and figures name variants by label, so each variant of a run needs its own"
            )
        seen[label] = name


def _check_heldout_rows(data: dict[str, Any]) -> None:
    """Held-out pairs taken from the training split must start after the rows training reads
    (the first data.train.max_pairs valid rows; all of them when null). prepare_heldout_pairs
    checks the prompts themselves; this catches the certain overlap before any job."""
    heldout, train = data.get("heldout") or {}, data["train"]
    if heldout.get("split", "test") != train["split"]:
        return
    first, read = heldout.get("first_row", 0), train.get("max_pairs")
    if read is None or first < read:
        reads = "every row" if read is None else f"its first {read} rows (data.train.max_pairs)"
        raise ConfigError(
            f"config error at data.heldout.first_row: held-out pairs from row {first} of the "
            f"training split {train['split']!r} (data.heldout.split = data.train.split) overlap "
            f"the pairs training reads, {reads}; start data.heldout.first_row at or after "
            "data.train.max_pairs, or take another split"
        )


def _check_judge_repeats(config: dict[str, Any]) -> None:
    """`judges.repeats` > 1 only with API judges: the local judge reads token probabilities with
    greedy, fixed-seed inference, so every repeat would give the same verdict, cost k times the
    compute and report a judge noise of zero that measures nothing."""
    from prefopt.judging import LOCAL_JUDGE

    repeats = config["judges"].get("repeats", 1)
    local = [b for b in ("alpaca_eval", "mt_bench") if config["judges"].get(b) == LOCAL_JUDGE]
    if repeats > 1 and local:
        keys = " and ".join(f"judges.{b}" for b in local)
        raise ConfigError(
            f"config error at judges.repeats: {repeats} repeats, but {keys} = {LOCAL_JUDGE!r}: "
            "the local judge is deterministic (it reads the judge model's token probabilities, "
            "no sampling), so repeating it gives the same verdicts k times and a judge noise of "
            "zero that measures nothing. Repeats are for API judges; set judges.repeats: 1, or "
            "choose an API judge for every benchmark"
        )


def local_judge_model(config: dict[str, Any]) -> str:
    """Slug of the local judge's model: `judges.local_model`, or the policy's base model."""
    return config["judges"].get("local_model") or config["model"]["slug"]


def external_local_judge_model(config: dict[str, Any]) -> str | None:
    """The teacher_models entry the local judge runs on, or None when it is the base model."""
    slug = local_judge_model(config)
    return None if slug == config["model"]["slug"] else slug


def load_config(*paths: str | Path) -> dict[str, Any]:
    """Merge YAML files like Snakemake's --configfile does (later files override), then validate."""
    merged: dict[str, Any] = {}
    for path in paths:
        _deep_update(merged, yaml.safe_load(Path(path).read_text()) or {})
    return validate_config(merged)


def _deep_update(base: dict[str, Any], new: dict[str, Any]) -> None:
    for key, value in new.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def train_params(config: dict[str, Any], variant: str) -> dict[str, Any]:
    """The loss hyperparameters of one variant (everything but bookkeeping keys)."""
    return loss_params(config["variants"][variant])


def loss_params(spec: dict[str, Any]) -> dict[str, Any]:
    """The loss hyperparameters in a variant's spec (everything but bookkeeping keys)."""
    return {
        k: v
        for k, v in spec.items()
        if k not in {"loss", "label", "group", "learning_rate"} and v is not None
    }


# --------------------------------------------------------------------------- rule params
# What each rule family reads from the config, and nothing more. Snakemake reruns a job when its
# params change, so a rule handed a whole section reruns for edits that cannot change its output
# (a new learning rate would redo the reference cache: hours of GPU time on the paper config).

#: Keys that change how a job runs (its speed, what it can resume from), never its results:
#: left out of rule params (changing them reruns nothing), of the provenance config hash and of
#: a training job's checkpoint fingerprint.
RESOURCE_KEYS = (
    ("training", "threads"),
    ("training", "checkpoint_steps"),
    ("training", "checkpoint_minutes"),
    (
        "training",
        "gpus_per_job",
    ),  # the global batch stays the configured one (prefopt.training.ddp)
    ("generation", "threads"),
    ("judges", "threads"),
    ("judges", "max_concurrency"),
)
#: Training settings that shape a reference or teacher cache (tokenisation, batching, numerics).
CACHE_TRAINING_KEYS = ("precision", "max_length", "max_prompt_length", "reference_batch_size")
#: Variant keys that only name a result in tables and figures; they never change it.
PRESENTATION_KEYS = ("label", "group")


def checkpoints_asked(training: dict[str, Any]) -> bool:
    """Whether training jobs save checkpoints: by wall time, by steps, or both."""
    return bool(training.get("checkpoint_minutes") or training.get("checkpoint_steps"))


def cache_params(config: dict[str, Any]) -> dict[str, Any]:
    """Training settings of the reference and teacher caches."""
    return {k: config["training"][k] for k in CACHE_TRAINING_KEYS}


def training_params(config: dict[str, Any]) -> dict[str, Any]:
    """Training settings of a training job, without the keys that change how it runs but not
    its results (`RESOURCE_KEYS`: threads, checkpoint interval)."""
    skip = {key for section, key in RESOURCE_KEYS if section == "training"}
    return {k: v for k, v in config["training"].items() if k not in skip}


def variant_params(config: dict[str, Any], variant: str, *keys: str) -> dict[str, Any]:
    """A variant's spec without its presentation keys, or only `keys` of it when given."""
    spec = config["variants"][variant]
    if keys:
        return {k: spec[k] for k in keys}
    return {k: v for k, v in spec.items() if k not in PRESENTATION_KEYS}


def generation_params(config: dict[str, Any], benchmark: str) -> dict[str, Any]:
    """Generation settings shared by both benchmarks, plus `benchmark`'s own section."""
    gen = config["generation"]
    params = {
        "engine": gen["engine"],
        "system_prompt": gen["system_prompt"],
        "dtype": gen["dtype"],
        benchmark: gen[benchmark],
    }
    # only what the engine reads: changing the other engine's settings reruns nothing
    if gen["engine"] == "vllm":
        params["vllm"] = gen["vllm"]
    else:
        params.update(cpu_dtype=gen["cpu_dtype"], batch_size=gen["batch_size"])
    return params
