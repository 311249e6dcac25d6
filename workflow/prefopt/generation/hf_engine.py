"""`generation.engine: hf`: our own decoding loop on a transformers model (`HfEngine`).

The decoding loop is our own rather than `model.generate`: on this project's CPU, `generate`
spent half of each decoding step outside the model in bfloat16 (a third in float32) on a
full-vocabulary sort for top-p and a full-vocabulary multinomial draw per row, it concatenates
its KV cache anew every token, and it keeps computing rows that already finished. This loop
samples from the same distribution with the same settings (repetition penalty, temperature,
top-k: the model's `generation_config.top_k`, else Hugging Face's default 50; top-p) but works
on the top-k candidates only, grows its KV cache in place, and drops finished rows from the
batch. Prompts run in batches of similar token length (less padding), answers come back in
the caller's order.

Each answer draws from its own seeded random stream, and left padding with per-row positions
keeps a row's arithmetic independent of the other rows: in float32 neither the batch size nor
the length sorting changes an answer (tested). bfloat16 kernels round differently for different
batch shapes, so there an answer can change with the batch size; never between runs of the same
config. `workflow/bin/benchmark-generation` measures the speed and the dtype's effect.
"""

from __future__ import annotations

from typing import Any

import torch

from prefopt.generation.interface import (
    Sampling,
    chat_prompt_ids,
    default_top_k,
    eos_ids,
    prompt_temperatures,
)
from prefopt.modeling import model_context
from prefopt.runtime import Progress


def penalise_repeats(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """`generate`'s repetition penalty: the logits of the token ids in `seen` (one row of ids
    per row of logits; repeats allowed) divided by `penalty` if positive, else multiplied.

    Gathers and scatters the seen ids only, as `generate` does, rather than passing over the
    whole vocabulary.
    """
    score = logits.gather(1, seen)
    return logits.scatter(1, seen, torch.where(score < 0, score * penalty, score / penalty))


def sampling_candidates(
    logits: torch.Tensor, *, temperature: float | torch.Tensor, top_k: int, top_p: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """(probabilities, token ids) of each row's candidates, most likely first; 0 = cut by top-p.
    `temperature`: one for every row, or a column (rows x 1) of one per row.

    `generate`'s warpers in its order (Temperature, TopK, TopP with min_tokens_to_keep=1), but
    top-p works on the k sorted candidates instead of sorting the whole vocabulary: the same
    set, since tokens outside the top k have probability 0 there.
    """
    logits = logits / temperature
    k = top_k if 0 < top_k < logits.shape[-1] else logits.shape[-1]
    values, candidates = logits.topk(k, dim=-1)  # sorted, most likely first
    probs = values.softmax(dim=-1)
    if top_p < 1.0:
        # generate drops a token when the ascending cumulative mass up to it is <= 1 - top_p,
        # i.e. when the mass strictly above it is >= top_p.
        probs = probs.masked_fill(probs.cumsum(dim=-1) - probs >= top_p, 0.0)
    return probs, candidates


def _next_tokens(
    logits: torch.Tensor,
    seen: torch.Tensor | None,
    *,
    repetition_penalty: float,
    temperatures: torch.Tensor,
    top_k: int,
    top_p: float,
    generators: list[torch.Generator | None],
) -> torch.Tensor:
    """One token per row: greedy where the row's generator is None (temperature 0), else row r
    draws at `temperatures[r]` with `generators[r]`."""
    if seen is not None:
        logits = penalise_repeats(logits, seen, repetition_penalty)
    tokens = logits.argmax(dim=-1)
    sampled = [r for r, g in enumerate(generators) if g is not None]
    if sampled:
        rows = torch.tensor(sampled, device=logits.device)
        probs, candidates = sampling_candidates(
            logits[rows], temperature=temperatures[rows, None], top_k=top_k, top_p=top_p
        )
        picks = [
            torch.multinomial(probs[k], 1, generator=generators[r]) for k, r in enumerate(sampled)
        ]
        tokens[rows] = candidates.gather(1, torch.stack(picks)).squeeze(1)
    return tokens


def _growing_cache() -> Any:
    """A KV cache whose per-layer buffers grow by doubling and are written in place.

    Hugging Face's DynamicCache concatenates at every step, copying the whole cache each token
    (quadratic in the answer length: 10% of a CPU step at 80 new tokens; this cache gave 1.2-1.3x
    the tokens/s at 256). A static cache avoids the copies but attends over its whole reserved
    length from the first step (no faster than the dynamic one here). Here a layer copies only
    when its buffer doubles, and attention sees a view of the filled part. (A factory, so that
    transformers is imported only when generating.)
    """
    from transformers.cache_utils import Cache, DynamicLayer

    class GrowingLayer(DynamicLayer):
        def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            super().lazy_initialization(key_states, value_states)
            self.length = 0
            self.key_buffer = key_states.new_empty((*key_states.shape[:2], 0, key_states.shape[3]))
            self.value_buffer = value_states.new_empty(
                (*value_states.shape[:2], 0, value_states.shape[3])
            )

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            end = self.length + key_states.shape[-2]
            if end > self.key_buffer.shape[-2]:
                self.key_buffer = self._grown(self.key_buffer, end)
                self.value_buffer = self._grown(self.value_buffer, end)
            self.key_buffer[:, :, self.length : end] = key_states
            self.value_buffer[:, :, self.length : end] = value_states
            self.length = end
            self.keys = self.key_buffer[:, :, :end]
            self.values = self.value_buffer[:, :, :end]
            return self.keys, self.values

        def _grown(self, buffer: torch.Tensor, needed: int) -> torch.Tensor:
            shape = list(buffer.shape)
            shape[-2] = max(needed, 2 * shape[-2])
            grown = buffer.new_empty(shape)
            grown[:, :, : self.length] = buffer[:, :, : self.length]
            return grown

        def get_seq_length(self) -> int:
            return self.length if self.is_initialized else 0

        def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
            if self.is_initialized:
                self.key_buffer = self.key_buffer[beam_idx.to(self.key_buffer.device)]
                self.value_buffer = self.value_buffer[beam_idx.to(self.value_buffer.device)]
                self.keys = self.key_buffer[:, :, : self.length]
                self.values = self.value_buffer[:, :, : self.length]

    return Cache(layer_class_to_replicate=GrowingLayer)


def left_padded(
    rows: list[list[int]], pad_id: int, device: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`rows` of token ids as one left-padded batch on `device`: (input ids, attention mask,
    position ids counting from each row's first real token, 0 on padding). Explicit positions
    keep a row's arithmetic independent of how much padding the batch gave it."""
    n, width = len(rows), max(map(len, rows))
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    for r, row in enumerate(rows):
        input_ids[r, width - len(row) :] = torch.tensor(row)
        mask[r, width - len(row) :] = 1
    input_ids, mask = input_ids.to(device), mask.to(device)
    return input_ids, mask, (mask.cumsum(dim=-1) - 1).clamp_min(0)


@torch.no_grad()
def _decode_batch(
    model: Any,
    prompts: list[list[int]],
    *,
    pad_id: int,
    eos_ids: set[int],
    sampling: Sampling,
    top_k: int,
    temperatures: list[float],
    seeds: list[int],
) -> list[list[int]]:
    """New token ids for each prompt (the end-of-sequence token included when one came):
    greedy where the prompt's temperature is 0, else sampled with its own seed (`sampling`'s
    top-p, repetition penalty and new tokens; its temperature is the caller's to spread over
    `temperatures`)."""
    top_p, repetition_penalty = sampling.top_p, sampling.repetition_penalty
    max_new_tokens = sampling.max_new_tokens
    device = model.device
    n = len(prompts)
    input_ids, mask, positions = left_padded(prompts, pad_id, device)
    cache = _growing_cache()
    out = model(
        input_ids=input_ids,
        attention_mask=mask,
        position_ids=positions,
        past_key_values=cache,
        use_cache=True,
        logits_to_keep=1,
    )
    seen = None
    if repetition_penalty != 1.0:
        # The token ids each row has seen: prompt and answer, but not the padding (`generate`
        # also penalises the pad token in padded rows, which would tie an answer to its batch):
        # a pad is replaced by the row's last prompt token, which is seen anyway.
        seen = torch.where(mask.bool(), input_ids, input_ids[:, -1:])
    temps = torch.tensor(temperatures, dtype=torch.float32, device=device)
    generators = [
        torch.Generator(device=device).manual_seed(s) if t > 0 else None
        for s, t in zip(seeds, temperatures, strict=True)
    ]
    next_pos = positions[:, -1] + 1
    live = list(range(n))  # prompt index of each row still generating
    answers: list[list[int]] = [[] for _ in range(n)]
    for step in range(max_new_tokens):
        tokens = _next_tokens(
            out.logits[:, -1, :].float(),
            seen,
            repetition_penalty=repetition_penalty,
            temperatures=temps,
            top_k=top_k,
            top_p=top_p,
            generators=generators,
        )
        keep = []
        for row, (i, t) in enumerate(zip(live, tokens.tolist(), strict=True)):
            answers[i].append(t)
            if t not in eos_ids:
                keep.append(row)
        if not keep or step == max_new_tokens - 1:
            break
        if len(keep) < len(live):  # drop finished rows: no compute past an answer's end
            idx = torch.tensor(keep, device=device)
            cache.reorder_cache(idx)
            mask, tokens, next_pos, temps = mask[idx], tokens[idx], next_pos[idx], temps[idx]
            seen = seen[idx] if seen is not None else None
            generators = [generators[r] for r in keep]
            live = [live[r] for r in keep]
        if seen is not None:
            seen = torch.cat([seen, tokens[:, None]], dim=1)
        mask = torch.cat([mask, mask.new_ones((len(live), 1))], dim=1)
        out = model(
            input_ids=tokens[:, None],
            attention_mask=mask,
            position_ids=next_pos[:, None],
            past_key_values=cache,
            use_cache=True,
        )
        next_pos = next_pos + 1
    return answers


class HfEngine:
    """`generation.engine: hf`: the decoding loop above on a transformers model, in batches of
    `batch_size` prompts of similar length (descending: the largest batch first, so a memory
    problem shows at once)."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int) -> None:
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.model, self.tokenizer, self.batch_size = model, tokenizer, batch_size
        #: the longest prompt + answer the model was built for (None: its config does not say)
        self.context_length = model_context(getattr(model, "config", None))

    def describe(self) -> dict[str, str]:
        import transformers

        return {
            "engine": "hf",
            "engine_version": f"transformers {transformers.__version__}",
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "device": str(self.model.device.type),
        }

    def token_ids(
        self,
        prompts: list[list[int]],
        sampling: Sampling,
        *,
        seeds: list[int],
        temperatures: list[float] | None = None,
    ) -> list[list[int]]:
        temperatures = prompt_temperatures(
            prompts, sampling, seeds=seeds, temperatures=temperatures
        )
        order = sorted(range(len(prompts)), key=lambda i: -len(prompts[i]))
        answers: list[list[int]] = [[] for _ in prompts]
        config = self.model.generation_config
        progress = Progress("generation", len(prompts), "prompts") if prompts else None
        new_tokens = 0
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            new = _decode_batch(
                self.model,
                [prompts[i] for i in idx],
                pad_id=self.tokenizer.pad_token_id,
                eos_ids=eos_ids(config, self.tokenizer),
                sampling=sampling,
                top_k=default_top_k(config),
                temperatures=[temperatures[i] for i in idx],
                seeds=[seeds[i] for i in idx],
            )
            for i, tokens in zip(idx, new, strict=True):
                answers[i] = tokens
                new_tokens += len(tokens)
            if progress is not None:
                rate = new_tokens / max(progress.elapsed(), 1e-9)
                progress.update(start + len(idx), f"{rate:.1f} new tokens/s")
        return answers


def generate_token_ids(
    model: Any,
    tokenizer: Any,
    conversations: list[list[dict[str, str]]],
    sampling: Sampling,
    *,
    seeds: list[int],
    batch_size: int,
) -> list[list[int]]:
    """New token ids of each conversation's answer with the HF engine, in their order, all at
    `sampling.temperature`; `seeds[i]` drives answer i."""
    engine = HfEngine(model, tokenizer, batch_size)
    return engine.token_ids(chat_prompt_ids(tokenizer, conversations), sampling, seeds=seeds)
