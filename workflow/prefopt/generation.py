"""Batched generation with the model's own chat template and the paper's system prompt.

Writes alpaca_eval `model_outputs.json` and FastChat `model_answer` JSONL. Left padding keeps
batched greedy outputs identical to batch size 1; sampling is seeded per batch.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import torch

from prefopt.mt_bench import FASTCHAT_TEMPERATURE


def _messages(system_prompt: str, turns: list[str], answers: list[str]) -> list[dict[str, str]]:
    msgs = [{"role": "system", "content": system_prompt}]
    for i, turn in enumerate(turns):
        msgs.append({"role": "user", "content": turn})
        if i < len(answers):
            msgs.append({"role": "assistant", "content": answers[i]})
    return msgs


@torch.no_grad()
def generate_batch(
    model: Any,
    tokenizer: Any,
    conversations: list[list[dict[str, str]]],
    *,
    temperature: float,
    top_p: float,
    max_new_tokens: int,
    repetition_penalty: float,
    seed: int,
) -> list[str]:
    """One padded batch through `model.generate`; returns the decoded completions."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    texts = [
        tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
        for c in conversations
    ]
    enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(
        model.device
    )
    torch.manual_seed(seed)
    do_sample = temperature > 0
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "repetition_penalty": repetition_penalty,
        "do_sample": do_sample,
        "pad_token_id": tokenizer.pad_token_id,
    }
    if do_sample:
        kwargs.update(temperature=temperature, top_p=top_p)
    else:
        kwargs.update(temperature=None, top_p=None, top_k=None)
    out = model.generate(**enc, **kwargs)
    new_tokens = out[:, enc["input_ids"].shape[1] :]
    return [t.strip() for t in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


def _batched(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def generate_alpaca_eval(
    model: Any,
    tokenizer: Any,
    items: list[dict[str, Any]],
    *,
    generator: str,
    system_prompt: str,
    settings: dict[str, Any],
    batch_size: int,
    seed: int,
) -> list[dict[str, Any]]:
    """alpaca_eval model outputs for `items` (instruction, dataset), in the benchmark order."""
    outputs: list[dict[str, Any]] = []
    for b, batch in enumerate(_batched(items, batch_size)):
        convs = [_messages(system_prompt, [it["instruction"]], []) for it in batch]
        texts = generate_batch(
            model,
            tokenizer,
            convs,
            temperature=settings["temperature"],
            top_p=settings["top_p"],
            max_new_tokens=settings["max_new_tokens"],
            repetition_penalty=settings["repetition_penalty"],
            seed=seed * 1_000_003 + b,
        )
        for it, text in zip(batch, texts, strict=True):
            outputs.append(
                {
                    "instruction": it["instruction"],
                    "output": text,
                    "generator": generator,
                    "dataset": it.get("dataset", ""),
                }
            )
    return outputs


def generate_mt_bench(
    model: Any,
    tokenizer: Any,
    questions: list[dict[str, Any]],
    *,
    model_id: str,
    system_prompt: str,
    settings: dict[str, Any],
    batch_size: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Both MT-Bench turns; turn 2 sees the model's own turn-1 answer, as in FastChat."""
    answers: dict[int, list[str]] = {q["question_id"]: [] for q in questions}

    def temperature_of(q: dict[str, Any]) -> float:
        t = settings["temperature"]
        return FASTCHAT_TEMPERATURE[q["category"]] if t == "fastchat" else float(t)

    for turn in range(2):
        by_temp: dict[float, list[dict[str, Any]]] = {}
        for q in questions:
            by_temp.setdefault(temperature_of(q), []).append(q)
        for temp, qs in sorted(by_temp.items()):
            for b, batch in enumerate(_batched(qs, batch_size)):
                convs = [
                    _messages(system_prompt, q["turns"][: turn + 1], answers[q["question_id"]])
                    for q in batch
                ]
                texts = generate_batch(
                    model,
                    tokenizer,
                    convs,
                    temperature=temp,
                    top_p=settings["top_p"],
                    max_new_tokens=settings["max_new_tokens"],
                    repetition_penalty=settings["repetition_penalty"],
                    seed=seed * 1_000_003 + turn * 10_007 + int(temp * 100) * 101 + b,
                )
                for q, text in zip(batch, texts, strict=True):
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
