"""The benchmark answers, whichever engine generates them: the entry points of generation.

`load_engine` makes the engine `generation.engine` names (`hf_engine.HfEngine`, our decoding loop,
or `vllm_engine.VllmEngine`); `generate_alpaca_eval` and `generate_mt_bench` turn the benchmark's
prompts into conversations with the paper's system prompt, ask the engine for each answer with
its own seed and the benchmark's `Sampling` (read from the config by the rule script), and
return alpaca_eval `model_outputs.json` records and FastChat `model_answer` rows.
`engine_texts` is the step between (conversations -> answer texts, on any engine),
`generate_texts` the same on a model with the HF engine.

The only module that knows both engines: they share `prefopt.generation.interface` and never
import each other or this module.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from prefopt.generation.hf_engine import HfEngine
from prefopt.generation.interface import (
    PER_CATEGORY,
    GenerationEngine,
    Sampling,
    answer_seed,
    chat_prompt_ids,
)
from prefopt.generation.vllm_engine import VllmEngine
from prefopt.judging.mt_bench import FASTCHAT_TEMPERATURE
from prefopt.modeling import check_context


def _messages(system_prompt: str, turns: list[str], answers: list[str]) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": system_prompt}]
    for i, turn in enumerate(turns):
        msgs.append({"role": "user", "content": turn})
        if i < len(answers):
            msgs.append({"role": "assistant", "content": answers[i]})
    return msgs


def engine_texts(
    engine: GenerationEngine,
    conversations: list[list[dict[str, str]]],
    sampling: Sampling,
    *,
    seeds: list[int],
    temperatures: list[float] | None = None,
) -> list[str]:
    """Each conversation's answer as text (special tokens dropped, stripped), in their order:
    the same templating and decoding whatever the engine. Answer i is drawn with `sampling` and
    `seeds[i]`, at `temperatures[i]` where given, else at `sampling.temperature` (0 = greedy)."""
    answers = engine.token_ids(
        chat_prompt_ids(engine.tokenizer, conversations),
        sampling,
        seeds=seeds,
        temperatures=temperatures,
    )
    return [t.strip() for t in engine.tokenizer.batch_decode(answers, skip_special_tokens=True)]


def check_answers_fit(
    engine: GenerationEngine,
    conversations: list[list[dict[str, str]]],
    new_tokens: int,
    *,
    key: str,
    names: list[str],
) -> None:
    """Before any answer is generated: every conversation's prompt plus `new_tokens` fits the
    engine's context (the hf engine would run past the positions the model was trained on, vLLM
    stops on the first prompt too long, after the answers before it). The first that does not
    fit stops the job, naming `key` and the item."""
    context = getattr(engine, "context_length", None)
    if context is None:
        return
    for name, ids in zip(names, chat_prompt_ids(engine.tokenizer, conversations), strict=True):
        check_context(
            context,
            len(ids) + new_tokens,
            key=key,
            what=f"{name} ({len(ids)} prompt tokens + {new_tokens} new)",
        )


def generate_texts(
    model: Any,
    tokenizer: Any,
    conversations: list[list[dict[str, str]]],
    sampling: Sampling,
    *,
    seeds: list[int],
    batch_size: int,
) -> list[str]:
    """`engine_texts` with the HF engine on `model`, all at `sampling.temperature`."""
    engine = HfEngine(model, tokenizer, batch_size)
    return engine_texts(engine, conversations, sampling, seeds=seeds)


def generate_alpaca_eval(
    engine: GenerationEngine,
    items: list[dict[str, Any]],
    *,
    generator: str,
    system_prompt: str,
    sampling: Sampling,
    seed: int,
) -> list[dict[str, Any]]:
    """alpaca_eval model outputs for `items` (instruction, dataset), in the benchmark order,
    every answer at `sampling.temperature`."""
    conversations = [_messages(system_prompt, [it["instruction"]], []) for it in items]
    check_answers_fit(
        engine,
        conversations,
        sampling.max_new_tokens,
        key="generation.alpaca_eval.max_new_tokens",
        names=[f"AlpacaEval item {i}" for i in range(len(items))],
    )
    texts = engine_texts(
        engine,
        conversations,
        sampling,
        seeds=[answer_seed(seed, "alpaca_eval", i) for i in range(len(items))],
    )
    return [
        {
            "instruction": it["instruction"],
            "output": text,
            "generator": generator,
            "dataset": it.get("dataset", ""),
        }
        for it, text in zip(items, texts, strict=True)
    ]


def mt_bench_temperature(sampling: Sampling, category: str) -> float:
    """The temperature an MT-Bench answer is drawn at: FastChat's for its category when
    `sampling.temperature` is "fastchat" (`PER_CATEGORY`), else that number."""
    t = sampling.temperature
    return FASTCHAT_TEMPERATURE[category] if t == PER_CATEGORY else float(t)


def generate_mt_bench(
    engine: GenerationEngine,
    questions: list[dict[str, Any]],
    *,
    model_id: str,
    system_prompt: str,
    sampling: Sampling,
    seed: int,
) -> list[dict[str, Any]]:
    """Both MT-Bench turns; turn 2 sees the model's own turn-1 answer, as in FastChat.

    Each turn is one engine call over every question, each at its category's temperature
    (greedy rows and sampled rows share the batch): one decoding loop per turn instead of one
    per temperature group, so the questions of the three FastChat temperatures no longer wait
    for each other's loops."""
    # the longest turn-2 prompt: both questions around a turn-1 answer of max_new_tokens
    new = sampling.max_new_tokens
    check_answers_fit(
        engine,
        [_messages(system_prompt, q["turns"][:2], [""]) for q in questions],
        2 * new,
        key="generation.mt_bench.max_new_tokens",
        names=[f"MT-Bench question {q['question_id']}, turns 1 + 2" for q in questions],
    )
    answers: dict[int, list[str]] = {q["question_id"]: [] for q in questions}
    for turn in range(2):
        texts = engine_texts(
            engine,
            [
                _messages(system_prompt, q["turns"][: turn + 1], answers[q["question_id"]])
                for q in questions
            ],
            sampling,
            seeds=[answer_seed(seed, "mt_bench", q["question_id"], turn) for q in questions],
            temperatures=[mt_bench_temperature(sampling, q["category"]) for q in questions],
        )
        for q, text in zip(questions, texts, strict=True):
            answers[q["question_id"]].append(text)
    now = time.time()
    return [
        {
            "question_id": q["question_id"],
            "answer_id": uuid.uuid5(uuid.NAMESPACE_URL, f"{model_id}/{q['question_id']}").hex,
            "model_id": model_id,
            "choices": [{"index": 0, "turns": answers[q["question_id"]]}],
            "tstamp": now,
        }
        for q in questions
    ]


def load_engine(model_dir: str, generation: dict[str, Any], *, seed: int) -> GenerationEngine:
    """The engine `generation.engine` names, on the model in `model_dir` (`generation`: the
    rule's params from `prefopt.config.generation_params`)."""
    if generation["engine"] == "vllm":
        return VllmEngine(model_dir, dtype=generation["dtype"], seed=seed, **generation["vllm"])
    from prefopt.modeling import load_model

    model, tokenizer = load_model(
        model_dir, dtype=generation["dtype"], cpu_dtype=generation["cpu_dtype"]
    )
    return HfEngine(model, tokenizer, generation["batch_size"])


def engine_of_job(snakemake: Any, benchmark: str) -> tuple[GenerationEngine, Sampling, int]:
    """(engine, sampling, seed) of a generation rule: the benchmark's sampling settings,
    checked before the model loads (a bad value names its key), then the engine
    `generation.engine` names, seeded with the job's seed."""
    gen = snakemake.params.generation
    seed = int(snakemake.wildcards.seed)
    sampling = Sampling.from_config(gen[benchmark], key=f"generation.{benchmark}")
    return load_engine(snakemake.input.model, gen, seed=seed), sampling, seed
