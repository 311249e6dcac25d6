"""One training job on several devices with DistributedDataParallel, on purpose.

`training.gpus_per_job: N` (default 1) makes each `train_policy` job ask for N GPUs and run N
processes under torchrun, one per GPU (NCCL), or N CPU processes (gloo) where the config allows
the CPU; this is how the tests check it. The global batch stays what the config says for one
device (``per_device_train_batch_size x gradient_accumulation_steps``, the paper's 8): each
process takes ``per_device_train_batch_size / N`` pairs per micro-batch, accelerate hands the
processes consecutive slices of the same shuffled order, and DDP averages their gradients, so
every optimiser step sees the pairs a one-device step sees. Never DataParallel
(`prefopt.training.trainer.check_one_gpu`). Rank 0 writes the job's files; the diagnostics are
summed over the processes before each row is written.

Only the pairwise trainer runs distributed; the seed-method jobs (DCKD, ADPA, λ-DPO) take one
GPU each. `launch` runs the function it is given (`workflow/scripts/train_policy.py` gives it
`prefopt.training.trainer.train_policy`; each torchrun process imports it by name), so this
module, whose helpers the trainer imports, imports no trainer: no import circle.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

#: The config key; `prefopt.config.RESOURCE_KEYS` keeps it out of the results' hash.
GPUS_PER_JOB = "gpus_per_job"


def world_size() -> int:
    """Processes of this job (torchrun's WORLD_SIZE; 1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def per_device_batch(training: dict[str, Any], processes: int | None = None) -> int:
    """Each process's micro-batch: the configured one-device batch split over the processes,
    so the global batch (logged as `global_batch_size`) does not change with the GPU count."""
    processes = world_size() if processes is None else processes
    batch = int(training["per_device_train_batch_size"])
    if batch % processes:
        raise ValueError(
            f"training.per_device_train_batch_size ({batch}) is not divisible by the "
            f"{processes} processes of training.{GPUS_PER_JOB}: the global batch must stay "
            f"{batch} x gradient_accumulation_steps"
        )
    return batch // processes


def require_job_gpus(granted: int, processes: int, allow_cpu: bool) -> None:
    """Stop before launching when Snakemake granted the job fewer GPUs than it runs processes:
    it caps a job's `gpu` resource at the run's ``--resources gpu=N`` (profiles/workstation: 1),
    and a ``--set-resources train_policy:gpu=M`` replaces what the rule asks for."""
    if allow_cpu or granted >= processes:
        return
    raise RuntimeError(
        f"training.{GPUS_PER_JOB} is {processes} but this train_policy job was granted "
        f"{granted} GPU(s) (resources: gpu={granted}). Snakemake caps a job's GPUs at the run's "
        f"--resources gpu=N (profiles/workstation sets 1): run with --resources gpu={processes}, "
        "and set no other gpu for train_policy in a profile or --set-resources"
    )


def init_process_group() -> bool:
    """Join torchrun's process group before the trainer does (the checkpoint folder is set up
    by rank 0 alone); accelerate reuses it. False outside torchrun."""
    if world_size() == 1:
        return False
    import torch.distributed as dist

    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            if torch.cuda.device_count() < world_size():
                raise RuntimeError(
                    f"training.{GPUS_PER_JOB} runs {world_size()} processes but this job sees "
                    f"{torch.cuda.device_count()} GPU(s) (CUDA_VISIBLE_DEVICES="
                    f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); give train_policy "
                    f"that many GPUs (its rule asks for training.gpus_per_job; under "
                    "SLURM nothing else is needed)"
                )
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
        if is_main_process():
            logging.getLogger(__name__).info(
                "DDP: %d processes (%s), one per %s", world_size(), backend,
                "GPU" if backend == "nccl" else "CPU process (allow_cpu)",
            )  # fmt: skip
    return True


def barrier() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def sum_across_processes(values: Sequence[float]) -> list[float]:
    """Element-wise sum over the job's processes (every process must call it; unchanged
    outside a process group)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    device = (
        torch.device("cuda", torch.cuda.current_device())
        if dist.get_backend() == "nccl"
        else torch.device("cpu")
    )
    tensor = torch.tensor(list(values), dtype=torch.float64, device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def target_name(target: Callable[..., Any] | str) -> str:
    """The ``"module:function"`` a torchrun process imports to find `target`: a module-level
    function of an importable module (not a script's ``__main__``, not a nested function), or
    such a string, checked here, before any process starts."""
    if isinstance(target, str):
        name = target
    else:
        name = f"{target.__module__}:{target.__qualname__}"
        if target.__module__ == "__main__" or "<locals>" in target.__qualname__:
            raise ValueError(
                f"cannot launch {name} in torchrun processes: they import the function by "
                f"name, so it must be a module-level function of an importable module"
            )
    found = resolve_target(name)
    if not isinstance(target, str) and found is not target:
        raise ValueError(f"{name} names another object than the function given to launch")
    return name


def resolve_target(name: str) -> Callable[..., Any]:
    """The function a ``"module:function"`` string names (imported)."""
    module, sep, qualname = name.partition(":")
    if not (module and sep and qualname):
        raise ValueError(f"launch target {name!r} is not of the form 'module:function'")
    found: Any = importlib.import_module(module)
    for part in qualname.split("."):
        found = getattr(found, part)
    if not callable(found):
        raise ValueError(f"launch target {name!r} is not callable")
    return found


def result_path(args_path: str | Path) -> Path:
    """Where rank 0 writes the launched function's return value (JSON) for `launch`."""
    args_path = Path(args_path)
    return args_path.with_name(f"{args_path.stem}.result.json")


def launch(
    target: Callable[..., Any] | str,
    processes: int,
    args: dict[str, Any],
    args_path: str | Path,
) -> Any:
    """Run ``target(**args)`` in `processes` torchrun processes on this node and return what it
    returned on rank 0 (through JSON). `target`: a module-level function or its
    ``"module:function"`` name (`target_name`), which each process imports: the caller says what
    to run (`workflow/scripts/train_policy.py`: `prefopt.training.trainer.train_policy`), so this
    module imports no trainer. `args_path` holds the arguments meanwhile (a file beside the job's
    checkpoints, which Snakemake does not delete), the return value beside it (`result_path`).
    An ``args["log_path"]`` is taken out and given to the processes' logging, not to `target`."""
    name = target_name(target)
    args_path = Path(args_path)
    args_path.parent.mkdir(parents=True, exist_ok=True)
    args_path.write_text(json.dumps(args, indent=1))
    result_file = result_path(args_path)
    result_file.unlink(missing_ok=True)  # a failed run's leftover is not this run's result
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        f"--nproc-per-node={processes}",
        "-m",
        __name__,
        name,
        str(args_path),
    ]
    run = subprocess.run(command, check=False)
    if run.returncode != 0:
        raise RuntimeError(
            f"distributed training ({processes} processes, training.{GPUS_PER_JOB}) failed "
            f"with exit status {run.returncode}; each process's error is above in this log"
        )
    result = json.loads(result_file.read_text())
    args_path.unlink(missing_ok=True)
    result_file.unlink(missing_ok=True)
    return result


def main(argv: Sequence[str]) -> None:
    """A torchrun process (``python -m prefopt.training.ddp module:function args.json``): log to
    the job's log (rank 0) or stderr, import the function `launch` was given and call it with
    the arguments; rank 0 writes its return value for `launch`."""
    from prefopt.runtime import setup_logging

    name, args_path = argv
    target = resolve_target(name)
    args = json.loads(Path(args_path).read_text())
    log_path = args.pop("log_path", None)
    setup_logging(log_path if is_main_process() else None, append=True)
    result = target(**args)
    if is_main_process():
        result_path(args_path).write_text(json.dumps(result, indent=1))
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
