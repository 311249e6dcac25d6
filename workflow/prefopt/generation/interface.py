"""What a generation engine is, and the rules every engine follows.

`GenerationEngine` is what the benchmark answers (`prefopt.generation.answers`) ask of an engine;
`Sampling` is how the answers are drawn, one record built once from the config
(`Sampling.from_config`) and handed unchanged from the rule script through the entry points to
the engine. The helpers here make the two engines, our Hugging Face decoding loop
(`prefopt.generation.hf_engine`) and vLLM (`prefopt.generation.vllm_engine`), run the same
experiment: prompt token ids from the model's own chat template (`chat_prompt_ids`), one seeded
random stream per answer (`answer_seed`), the end-of-sequence tokens and default top-k that
`generate` reads from the model's generation config (`eos_ids`, `default_top_k`), and one check
of the per-prompt arguments (`prompt_temperatures`).

A module of its own so that each engine imports it and neither engine imports the other (nor
the entry points that choose between them); it needs neither torch nor transformers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
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


#: `Sampling.temperature` for FastChat's per-category MT-Bench temperatures (given per prompt)
PER_CATEGORY = "fastchat"


@dataclass(frozen=True)
class Sampling:
    """How a job draws its answers: one benchmark's section of the config
    (`generation.alpaca_eval`, `generation.mt_bench`), read once (`from_config`).

    `temperature` is a number >= 0 for every answer (0 = greedy), or `PER_CATEGORY` ("fastchat",
    MT-Bench): each answer at its category's FastChat temperature, which the caller then gives
    the engine per prompt. top-k is not a setting: both engines take the model's own
    (`default_top_k`), as `generate` does; the seeds are per answer (`answer_seed`)."""

    temperature: float | str
    top_p: float
    max_new_tokens: int
    repetition_penalty: float

    @classmethod
    def from_config(cls, settings: Mapping[str, Any], *, key: str) -> Sampling:
        """The record of the config section `settings`, found at `key` (e.g.
        "generation.alpaca_eval"); a value the schema would refuse stops here too, naming its
        key (a section made by hand, as workflow/bin/benchmark-generation makes one, meets no
        schema). A plain ValueError, as `prefopt.modeling.ContextError` is: the engines' module
        does not import the config's (YAML, schema)."""

        def number(name: str, ok: Any, need: str) -> Any:
            value = settings.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not ok(value):
                raise ValueError(f"config error at {key}.{name}: {value!r}; need {need}")
            return value

        temperature = settings.get("temperature")
        if temperature != PER_CATEGORY:
            need = f'a number >= 0 (0 = greedy) or "{PER_CATEGORY}"'
            temperature = float(number("temperature", lambda t: t >= 0, need))
        return cls(
            temperature=temperature,
            top_p=float(number("top_p", lambda p: 0 < p <= 1, "a number in (0, 1]")),
            max_new_tokens=int(
                number("max_new_tokens", lambda n: n >= 1 and n == int(n), "a whole number >= 1")
            ),
            repetition_penalty=float(number("repetition_penalty", lambda r: r > 0, "a number > 0")),
        )


def prompt_temperatures(
    prompts: list[list[int]],
    sampling: Sampling,
    *,
    seeds: list[int],
    temperatures: list[float] | None = None,
) -> list[float]:
    """The temperature of each prompt's answer: `temperatures[i]` where the caller gives one a
    prompt (MT-Bench's per-category ones), else `sampling.temperature` for all. Checks that each
    per-prompt list (seeds, temperatures) has one entry per prompt and that every temperature is
    a number >= 0 (0 = greedy)."""
    if temperatures is None:
        temperatures = [sampling.temperature] * len(prompts)  # type: ignore[list-item]
    for name, values in (("seeds", seeds), ("temperatures", temperatures)):
        if len(values) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(values)} {name}")
    for t in temperatures:
        if isinstance(t, str) or not t >= 0:
            raise ValueError(f"temperature {t!r}: must be a number >= 0 (0 = greedy)")
    return temperatures


class GenerationEngine(Protocol):
    """What the benchmark generators need of an engine (`generation.engine`): the tokenizer the
    prompts are made with, the answers' token ids, and what to record about itself."""

    tokenizer: Any
    #: the longest prompt + answer in tokens the engine can hold (None: unknown)
    context_length: int | None

    def token_ids(
        self,
        prompts: list[list[int]],
        sampling: Sampling,
        *,
        seeds: list[int],
        temperatures: list[float] | None = None,
    ) -> list[list[int]]:
        """Each prompt's answer, drawn with `sampling` and `seeds[i]`, at `temperatures[i]`
        where given (`prompt_temperatures`)."""
        ...

    def describe(self) -> dict[str, str]: ...
