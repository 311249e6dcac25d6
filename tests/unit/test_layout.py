"""The package's layout holds (issue 27): no import circle among prefopt's modules, the pipeline
never imports a hand-run tool, every module sits in a stage, and every tool is run from
workflow/bin/.

How the module graph is built (`import_targets`): each ``.py`` under workflow/prefopt is parsed
(``ast``, nothing is imported), and every import statement counts wherever it stands: at the top,
inside a function (a lazy import still closes a circle when it runs), under ``if TYPE_CHECKING``.
``from x import y`` points at the submodule ``x.y`` when there is one, else at ``x`` (names read
from ``x``, a package's ``__init__``); relative imports are resolved against the importing
module's package. A package is the node of its ``__init__.py``.

Package ``__init__`` rule. Importing ``a.b.c`` runs ``a/__init__``, ``a/b/__init__`` and then
``c``, so an import points explicitly at the module it names and implicitly at each package
above it: ``q`` importing ``pkg.c`` while ``pkg/__init__`` imports ``q`` is a circle. The
implicit edges to the packages that contain the importer itself are left out: they have already
started running before the importer runs, so they are never imported again because of it (with
them, every ``__init__`` that imports one of its submodules would be a circle). An explicit read
of a name from such a package is kept: ``pkg/__init__`` importing ``pkg.sub`` while ``pkg.sub``
does ``from pkg import NAME`` is a circle (it works only while NAME happens to be set above that
import in ``__init__``). `test_the_cycle_finder_finds_a_planted_cycle` checks these rules on a
package written for the test.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest
from helpers import REPO

WORKFLOW = REPO / "workflow"
#: The stage subpackages, in the order the data flows (prefopt/__init__.py says what each holds).
STAGES = ("data", "training", "generation", "judging", "evaluation", "reporting")
#: The top-level modules every stage may use.
SHARED = ("config", "runtime", "modeling", "plan", "resources")
TOOLS = "prefopt_tools"


# -- the module graph ---------------------------------------------------------------------------
def package_modules(root: Path, package: str) -> dict[str, tuple[Path, bool]]:
    """Every module of the package in folder `root`: dotted name -> (file, is a package)."""
    modules = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        modules[".".join(parts)] = (path, is_package)
    return modules


def _within(name: str, package: str) -> bool:
    """`name` is `package` or a module under it."""
    return name == package or name.startswith(package + ".")


def _known_prefix(name: str, known: Iterable[str]) -> str:
    """The longest prefix of `name` that is a known module, else `name` (an outside package)."""
    parts = name.split(".")
    for end in range(len(parts), 0, -1):
        if ".".join(parts[:end]) in known:
            return ".".join(parts[:end])
    return name


def import_targets(source: str, module: str, is_package: bool, known: Iterable[str]) -> set[str]:
    """The modules that running `module` (its `source`) may import, by the rules above: module
    names of `known` where the import names one of them (outside modules as written); no edge
    to `module` itself, no implicit edge to a package that contains it."""
    known = set(known)
    package = module if is_package else module.rpartition(".")[0]
    explicit: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            explicit.update(_known_prefix(alias.name, known) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                explicit.add(submodule if submodule in known else _known_prefix(base, known))
    targets = {t for t in explicit if t != module}
    for target in explicit:
        parts = target.split(".")
        for end in range(1, len(parts)):
            parent = ".".join(parts[:end])
            if not _within(module, parent):  # a package above the importer: already running
                targets.add(parent)
    return targets


def tool_references(source: str, module: str, is_package: bool) -> set[str]:
    """The `prefopt_tools` modules that `module` imports, or names as a whole string the way
    ``importlib.import_module`` and `prefopt.training.ddp.launch` take a module by name
    (``"prefopt_tools.x"``, ``"prefopt_tools.x:function"``)."""
    found = {t for t in import_targets(source, module, is_package, ()) if _within(t, TOOLS)}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if re.fullmatch(rf"{TOOLS}(\.\w+)*(:[\w.]+)?", node.value):
                found.add(node.value.partition(":")[0])
    return found


def module_graph(root: Path, package: str) -> dict[str, set[str]]:
    """The package's modules and, for each, the package's modules it imports."""
    modules = package_modules(root, package)
    return {
        name: import_targets(path.read_text(), name, is_package, modules) & modules.keys()
        for name, (path, is_package) in modules.items()
    }


def find_cycle(graph: Mapping[str, Iterable[str]]) -> list[str] | None:
    """One import circle as its path (first module repeated at the end), or None. Depth-first,
    in sorted order, so the same tree reports the same circle."""
    done: set[str] = set()
    for start in sorted(graph):
        if start in done:
            continue
        path, on_path = [start], {start}
        stack = [iter(sorted(graph[start]))]
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                stack.pop()
                done.add(path[-1])
                on_path.discard(path.pop())
            elif nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            elif nxt not in done:
                path.append(nxt)
                on_path.add(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


# -- the tree's layout --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def prefopt_graph() -> dict[str, set[str]]:
    return module_graph(WORKFLOW / "prefopt", "prefopt")


def test_no_import_circle_among_prefopt_modules(prefopt_graph):
    assert len(prefopt_graph) > 30  # the whole package was read
    cycle = find_cycle(prefopt_graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_engines_and_the_trainer_are_layered(prefopt_graph):
    """The two circles issue 27 broke stay broken, one layer over the other: ddp launches the
    function it is given and imports no trainer; each generation engine imports the shared
    interface, neither the other engine nor the entry points (`answers`), which import both."""
    assert "prefopt.training.trainer" not in prefopt_graph["prefopt.training.ddp"]
    assert "prefopt.training.ddp" in prefopt_graph["prefopt.training.trainer"]
    gen = "prefopt.generation"
    for engine, other in (("hf_engine", "vllm_engine"), ("vllm_engine", "hf_engine")):
        assert f"{gen}.interface" in prefopt_graph[f"{gen}.{engine}"]
        assert not {f"{gen}.{other}", f"{gen}.answers"} & prefopt_graph[f"{gen}.{engine}"]
    assert {f"{gen}.hf_engine", f"{gen}.vllm_engine"} <= prefopt_graph[f"{gen}.answers"]
    assert not {n for n in prefopt_graph[f"{gen}.interface"] if _within(n, gen)}


def _code_lines(text: str) -> str:
    """A rule file or shell script without its comments (a ``#`` and what follows it)."""
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def test_the_pipeline_never_imports_a_tool(repo):
    """Nothing under workflow/prefopt, workflow/scripts or the rules (workflow/rules/*.smk, the
    Snakefile) imports `prefopt_tools` or runs one of its modules: tools are run by hand
    (workflow/bin/), and a pipeline that needed one would break where it is not installed."""
    offenders = []
    for folder in ("prefopt", "scripts"):
        for path in sorted((WORKFLOW / folder).rglob("*.py")):
            name = ".".join(path.relative_to(WORKFLOW).with_suffix("").parts)
            tools = tool_references(path.read_text(), name, path.stem == "__init__")
            offenders += [f"{path.relative_to(repo)}: {t}" for t in sorted(tools)]
    snakefiles = [p for p in (repo / "Snakefile", WORKFLOW / "Snakefile") if p.exists()]
    assert snakefiles
    rule_files = [*snakefiles, *sorted((WORKFLOW / "rules").glob("*.smk"))]
    for path in rule_files:
        for n, line in enumerate(_code_lines(path.read_text()).splitlines(), 1):
            if re.search(rf"\b{TOOLS}\b", line):
                offenders.append(f"{path.relative_to(repo)}:{n}: {line.strip()}")
    assert offenders == []


def test_every_module_is_in_a_stage_or_shared(prefopt_graph):
    """A module of prefopt is in a stage subpackage, or one of the shared top-level modules; a
    new flat module (or an unlisted subpackage) has to be placed, or listed here and in
    prefopt/__init__.py."""
    misplaced = []
    for name in prefopt_graph:
        parts = name.split(".")
        if len(parts) == 1:
            continue  # prefopt/__init__.py
        if parts[1] in STAGES and (WORKFLOW / "prefopt" / parts[1] / "__init__.py").exists():
            continue
        if len(parts) == 2 and parts[1] in SHARED:
            continue
        misplaced.append(name)
    assert misplaced == []
    assert {n.split(".")[1] for n in prefopt_graph if n.count(".") == 1} >= {*STAGES, *SHARED}


def test_every_tool_is_run_from_workflow_bin():
    """Each module of prefopt_tools is run by a workflow/bin/ script (``python -m
    prefopt_tools.X``) or imported by a tool that is: no orphan tool."""
    graph = module_graph(WORKFLOW / TOOLS, TOOLS)
    run = set()
    for script in sorted((WORKFLOW / "bin").iterdir()):
        for match in re.finditer(rf"-m\s+({TOOLS}(?:\.\w+)+)", _code_lines(script.read_text())):
            assert match[1] in graph, f"{script.name} runs {match[1]}, which does not exist"
            run.add(match[1])
    assert run  # the scripts were read
    reached, todo = set(), list(run)
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo += graph[module]
    assert sorted(set(graph) - reached - {TOOLS}) == []


# -- the checks can fail ------------------------------------------------------------------------
def _write_package(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "pkg"


def test_the_cycle_finder_finds_a_planted_cycle(tmp_path):
    acyclic = {
        # an __init__ importing its submodules is no circle by itself...
        "pkg/__init__.py": "from pkg.sub import f\nfrom . import other\n",
        "pkg/sub.py": "from . import other\nimport pkg.deep.leaf\n",
        "pkg/other.py": "import os\n",
        "pkg/deep/__init__.py": "",
        "pkg/deep/leaf.py": "from .. import other\nfrom ..other import os\n",
    }
    graph = module_graph(_write_package(tmp_path / "acyclic", acyclic), "pkg")
    assert graph["pkg"] == {"pkg.sub", "pkg.other"}
    assert graph["pkg.sub"] == {"pkg.other", "pkg.deep", "pkg.deep.leaf"}
    assert graph["pkg.deep.leaf"] == {"pkg.other"}  # relative imports resolved
    assert find_cycle(graph) is None

    planted = {
        # a lazy import inside a function closes a circle too
        **acyclic,
        "pkg/other.py": "def g():\n    from pkg.deep import leaf\n",
    }
    graph = module_graph(_write_package(tmp_path / "lazy", planted), "pkg")
    assert find_cycle(graph) == ["pkg.other", "pkg.deep.leaf", "pkg.other"]

    # ...unless the submodule reads a name back from the package
    back = {**acyclic, "pkg/other.py": "from pkg import f\n"}
    graph = module_graph(_write_package(tmp_path / "back", back), "pkg")
    assert find_cycle(graph) == ["pkg", "pkg.other", "pkg"]

    # pkg.sub imports pkg.deep.leaf, which runs pkg/deep/__init__ first: a circle through it
    through_init = {**acyclic, "pkg/deep/__init__.py": "from pkg import sub\n"}
    graph = module_graph(_write_package(tmp_path / "init", through_init), "pkg")
    assert find_cycle(graph) == ["pkg.sub", "pkg.deep", "pkg.sub"]


def test_a_tool_import_is_seen_wherever_it_stands():
    source = (
        "import importlib\n"
        "def run():\n"
        "    from prefopt_tools.faults import main\n"
        "    importlib.import_module('prefopt_tools.gpu_smoke')\n"
        "'''A docstring may name prefopt_tools.'''\n"
    )
    assert tool_references(source, "scripts.x", False) == {
        TOOLS,  # `from prefopt_tools.faults import main` runs prefopt_tools/__init__ first
        "prefopt_tools.faults",
        "prefopt_tools.gpu_smoke",
    }


def test_every_rule_script_does_its_work_under_a_main_guard():
    """Issue 29 item 1: vLLM may start its workers with spawn, which imports the parent's main
    module again (Snakemake runs a rule's script as __main__); work at module level would run
    once more in every worker. A script holds its docstring, imports and definitions, and
    calls its work under `if __name__ == "__main__":` (as vLLM's docs ask)."""
    offenders = []
    for path in sorted((WORKFLOW / "scripts").glob("*.py")):
        body = ast.parse(path.read_text()).body
        allowed = (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.ClassDef)
        for i, node in enumerate(body):
            docstring = (
                i == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            )
            guard = (
                i == len(body) - 1
                and isinstance(node, ast.If)
                and ast.unparse(node.test) in ("__name__ == '__main__'", '__name__ == "__main__"')
            )
            if not (docstring or guard or isinstance(node, allowed)):
                offenders.append(f"{path.name}:{node.lineno}: {ast.unparse(node).splitlines()[0]}")
        if not (body and isinstance(body[-1], ast.If)):
            offenders.append(f"{path.name}: no main guard")
    assert offenders == []


def test_every_training_resource_key_reaches_the_training_scripts():
    """Keys that change how a training job runs, not its results (prefopt.config.RESOURCE_KEYS),
    stay out of the rules' params (so changing them reruns nothing), so the training scripts
    must hand them to the trainer themselves (prefopt.training.trainer.job_training); one left
    out would be silently ignored (as training.checkpoint_minutes was, at first)."""
    from types import SimpleNamespace

    from prefopt.config import RESOURCE_KEYS
    from prefopt.training.trainer import job_training

    keys = {key for section, key in RESOURCE_KEYS if section == "training"}
    job = SimpleNamespace(
        params=SimpleNamespace(training={"epochs": 2}),
        threads=3,
        config={"training": {key: f"<{key}>" for key in keys - {"threads"}}},
    )
    assert job_training(job, ddp=True) == {
        "epochs": 2,
        "threads": 3,  # the job's own, which Snakemake may have scaled down
        **{key: f"<{key}>" for key in keys - {"threads"}},
    }
    # seed-method jobs take one GPU (config.schema.yaml)
    assert set(job_training(job)) == {"epochs"} | keys - {"gpus_per_job"}
    scripts = WORKFLOW / "scripts"
    assert "job_training(snakemake, ddp=True)" in (scripts / "train_policy.py").read_text()
    assert "job_training(snakemake)" in (scripts / "train_seed_method.py").read_text()


def gpu_rule_scripts() -> dict[str, str]:
    """Rule -> script file name, for every rule whose resources come from a GPU record of
    prefopt.resources (`rule_resources(config, "<rule>")` in its block)."""
    scripts = {}
    for smk in sorted((WORKFLOW / "rules").glob("*.smk")):
        for block in re.split(r"^(?=(?:rule|checkpoint) \w+:)", smk.read_text(), flags=re.M):
            need = re.search(r'rule_resources\(\s*config,\s*"(\w+)"', block)
            script = re.search(r'script:\s*"\.\./scripts/(\w+\.py)"', block)
            if need and script:
                scripts[need[1]] = script[1]
    return scripts


def test_every_gpu_rule_script_starts_with_start_gpu_job():
    """Every GPU rule's script begins the same way, in one function (prefopt.runtime's
    start_gpu_job): its log, the GPU check that stops a job without a GPU unless the config
    allows the CPU (require_gpu), torch's threads. A script that skipped the check would run
    the paper's jobs on the CPU for days without a word."""
    from prefopt.resources import RULE_NEEDS

    scripts = gpu_rule_scripts()
    assert set(scripts) == set(RULE_NEEDS), set(RULE_NEEDS) ^ set(scripts)
    offenders = []
    for rule, name in sorted(scripts.items()):
        tree = ast.parse((WORKFLOW / "scripts" / name).read_text())
        main = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main")
        first = main.body[0]
        call = getattr(first, "value", None)
        if not (isinstance(call, ast.Call) and ast.unparse(call.func) == "start_gpu_job"):
            offenders.append(f"{rule} ({name}): starts with {ast.unparse(first)}")
    assert offenders == []
