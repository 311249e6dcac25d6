"""What a generation engine is, and the rules every engine follows.

`GenerationEngine` is what the benchmark answers (`prefopt.generation.answers`) ask of an engine;
the helpers here make the two engines, our Hugging Face decoding loop
(`prefopt.generation.hf_engine`) and vLLM (`prefopt.generation.vllm_engine`), run the same
experiment: prompt token ids from the model's own chat template (`chat_prompt_ids`), one seeded
random stream per answer (`answer_seed`), the end-of-sequence tokens and default top-k that
`generate` reads from the model's generation config (`eos_ids`, `default_top_k`), and one check
of the per-prompt arguments (`check_per_prompt`).

A module of its own so that each engine imports it and neither engine imports the other (nor
the entry points that choose between them); it needs neither torch nor transformers.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

HF_DEFAULT_TOP_K = 50  # what `generate` uses when neither the call nor the model sets top_k


def answer_seed(seed: int, *key: Any) -> int:
    """The seed of one answer's random stream: a stable hash of the run seed and the item key."""
    digest = hashlib.sha256("/".join(map(str, (seed, *key))).encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1  # 63 bits: any torch.Generator accepts it


def eos_ids(generation_config: Any, tokenizer: Any) -> set[int]:
    """The tokens that end an answer: the model's generation config, as `generate` reads it
    (both engines stop on exactly these)."""
    eos = generation_config.eos_token_id
    if eos is None:
        eos = tokenizer.eos_token_id
    return set(eos) if isinstance(eos, list | tuple) else {int(eos)}


def default_top_k(generation_config: Any) -> int:
    """The top-k `generate` applies when sampling and the call does not set it (0 = off); the
    vLLM engine is given the same."""
    top_k = generation_config.top_k
    return HF_DEFAULT_TOP_K if top_k is None else int(top_k)


def chat_prompt_ids(tokenizer: Any, conversations: list[list[dict[str, str]]]) -> list[list[int]]:
    """Each conversation through the model's own chat template, ready for the answer: the
    prompt token ids both engines are given."""
    texts = [
        tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
        for c in conversations
    ]
    return tokenizer(texts, add_special_tokens=False)["input_ids"] if texts else []


def check_per_prompt(prompts: list[list[int]], **per_prompt: list[Any]) -> None:
    """Each per-prompt list (seeds, temperatures) has one entry per prompt; a temperature is a
    number >= 0 (0 = greedy)."""
    for name, values in per_prompt.items():
        if len(values) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(values)} {name}")
    for t in per_prompt.get("temperatures", []):
        if not t >= 0:
            raise ValueError(f"temperature {t!r}: must be a number >= 0 (0 = greedy)")


class GenerationEngine(Protocol):
    """What the benchmark generators need of an engine (`generation.engine`): the tokenizer the
    prompts are made with, the answers' token ids, and what to record about itself."""

    tokenizer: Any
    #: the longest prompt + answer in tokens the engine can hold (None: unknown)
    context_length: int | None

    def token_ids(
        self,
        prompts: list[list[int]],
        *,
        temperatures: list[float],
        top_p: float,
        max_new_tokens: int,
        repetition_penalty: float,
        seeds: list[int],
    ) -> list[list[int]]: ...

    def describe(self) -> dict[str, str]: ...
