"""Local judge: a small causal LM scores answers from its label probabilities, not parsed text.

AlpacaEval: the judge sees the instruction and two outputs and we read P("a") vs P("b") for the
next token after "Output (". Each pair is asked in both orders and the two probabilities that
the model's output is better are averaged, cancelling the judge's position bias; the result is
an alpaca_eval preference in [1, 2] (1 = reference wins, 2 = model wins).

MT-Bench: FastChat's single-answer judge prompt, then the expected 1-10 score from the judge's
probabilities of the rating tokens after "Rating: [[" ("10" is split as "1" then "0").

The judge's model is the policy's base model unless ``judges.local_model`` names another one;
its slug is written into every record (``judge_model``, and ``served_model``: the model that
produced the judgment), so tables can say which model judged.

A 135M-parameter judge is weak; it exercises the pipeline, it does not replace GPT-4.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from prefopt.judging import LOCAL_JUDGE
from prefopt.modeling import check_context, load_model, model_context
from prefopt.runtime import Progress

PAIRWISE_SYSTEM = "You are a careful evaluator of answers written by AI assistants."
PAIRWISE_TEMPLATE = (
    "Which output answers the instruction better? Judge helpfulness, accuracy and relevance.\n\n"
    "## Instruction\n{instruction}\n\n## Output (a)\n{output_a}\n\n## Output (b)\n{output_b}\n\n"
    "Reply with the letter of the better output."
)
PAIRWISE_PREFILL = "The better output is Output ("
RATING_PREFILL = "Rating: [["
#: A common prefix shorter than this is recomputed in every row: a pass of its own for a few
#: tokens costs more than it saves.
MIN_SHARED_PREFIX = 16


def shared_prefix_length(rows: list[list[int]]) -> int:
    """How many leading tokens all `rows` share (0 if under MIN_SHARED_PREFIX or only one row),
    leaving every row at least one token of its own to read the next-token distribution at."""
    if len(rows) < 2:
        return 0
    n = min(map(len, rows)) - 1
    for col, token in enumerate(rows[0][:n]):
        if any(row[col] != token for row in rows[1:]):
            n = col
            break
    return n if n >= MIN_SHARED_PREFIX else 0


class LocalJudge:
    """Probability-reading judge on a local HF causal LM (same interface as the API judges).

    ``model_name`` identifies the judging model in the records: the slug of its prepared folder
    (default: the last part of the model's ``name_or_path``, which is that slug for a folder
    under ``results/models/``; never a whole path, which would tie results to one machine).
    """

    name = LOCAL_JUDGE

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        max_length: int = 1024,
        batch_size: int = 8,
        model_name: str | None = None,
        share_prefix: bool = True,
    ):
        check_context(
            model_context(getattr(model, "config", None)),
            max_length,
            key="judges.local_max_length",
            what="one local-judge prompt",
        )
        self.model = model
        self.tokenizer = tokenizer
        loaded_from = str(getattr(model, "name_or_path", "") or "").rstrip("/\\")
        self.model_name = model_name or Path(loaded_from).name or LOCAL_JUDGE
        self.max_length = max_length
        self.batch_size = batch_size
        self.share_prefix = share_prefix  # off only to measure what it saves (benchmark)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.label_ids = [self._single_token(x) for x in ("a", "b")]
        self.digit_ids = [self._single_token(str(d)) for d in range(10)]

    def _single_token(self, text: str) -> int:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise ValueError(f"judge tokenizer splits {text!r} into {len(ids)} tokens")
        return ids[0]

    def _clip(self, text: str, n_tokens: int) -> str:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return text if len(ids) <= n_tokens else self.tokenizer.decode(ids[:n_tokens]) + " …"

    def _prompt(self, system: str, user: str, prefill: str) -> str:
        msgs = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        text = self.tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
        return text + prefill

    @torch.no_grad()
    def _next_token_probs(
        self,
        prompts: list[str],
        token_ids: list[int],
        then: int | None = None,
        groups: list[Any] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """P(token_ids) at the end of each prompt; with `then`, also P(token_ids | prompt + then).

        Prompts with the same `groups` key (default: all one group) that start with the same
        tokens (the judge template's system prompt and instructions: ~20 % of an AlpacaEval
        judge prompt, ~40 % of an MT-Bench one) have that prefix run once; its key/value cache
        is copied into each batch and the rows continue from it at their true positions, so
        every row sees exactly its own token sequence (float32: the same probabilities to
        ~1e-5, tested). Prompts are batched in token-length order to limit padding. Only the
        last position's logits are computed (`logits_to_keep=1`): the vocabulary projection of
        every other position was a fifth of the work and a (batch x length x vocabulary)
        tensor. The optional second step reuses the key/value cache, so "1" -> "10" costs one
        token instead of a second full pass.
        """
        ids = self.tokenizer(prompts, add_special_tokens=False)["input_ids"]
        groups = [None] * len(prompts) if groups is None else list(groups)
        if len(groups) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(groups)} group keys")
        first = torch.zeros(len(prompts), len(token_ids))
        second = torch.zeros(len(prompts), len(token_ids)) if then is not None else None
        progress = Progress(f"local judge {self.model_name}", len(prompts), "prompts")
        scored = 0
        for key in dict.fromkeys(groups):
            members = [i for i, g in enumerate(groups) if g == key]
            shared = shared_prefix_length([ids[i] for i in members]) if self.share_prefix else 0
            prefix = self._prefix_cache(ids[members[0]][:shared]) if shared else None
            shared = shared if prefix is not None else 0
            order = sorted(members, key=lambda i: len(ids[i]))
            for start in range(0, len(order), self.batch_size):
                idx = order[start : start + self.batch_size]
                probs = self._score_batch(
                    [ids[i][shared:] for i in idx], prefix, shared, token_ids, then
                )
                first[idx] = probs[0]
                if second is not None:
                    second[idx] = probs[1]
                scored += len(idx)
                progress.update(scored)
        return first, second

    def _prefix_cache(
        self, prefix_ids: list[int]
    ) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        """Keys and values of every layer for `prefix_ids` (batch of one); None where the model's
        cache is not plain full attention (sliding windows, recurrent layers), which cannot be
        copied into a batch this way: those prompts then run whole."""
        from transformers.cache_utils import DynamicLayer

        out = self.model(
            input_ids=torch.tensor([prefix_ids], device=self.model.device), use_cache=True
        )
        layers = getattr(out.past_key_values, "layers", None)
        if not layers or any(type(layer) is not DynamicLayer for layer in layers):
            return None
        return [(layer.keys, layer.values) for layer in layers]

    def _score_batch(
        self,
        rows: list[list[int]],
        prefix: list[tuple[torch.Tensor, torch.Tensor]] | None,
        shared: int,
        token_ids: list[int],
        then: int | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One batch of token rows, left-padded, continuing after `shared` prefix tokens whose
        cache is `prefix` (None: no prefix). Positions are explicit, so padding between the
        prefix and a row's own tokens shifts nothing."""
        from transformers.cache_utils import DynamicCache

        from prefopt.generation.hf_engine import left_padded

        device, n = self.model.device, len(rows)
        input_ids, mask, positions = left_padded(rows, self.tokenizer.pad_token_id, device)
        positions = shared + positions
        cache = None
        if prefix is not None:
            cache = DynamicCache(
                ddp_cache_data=[
                    (k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in prefix
                ]
            )
            mask = torch.cat([mask.new_ones((n, shared)), mask], dim=1)
        out = self.model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=positions,
            past_key_values=cache,
            use_cache=then is not None,
            logits_to_keep=1,
        )
        first = torch.softmax(out.logits[:, -1, :].float(), dim=-1)[:, token_ids].cpu()
        if then is None:
            return first, None
        step = torch.full((n, 1), then, device=device)
        nxt = self.model(
            input_ids=step,
            attention_mask=torch.cat([mask, torch.ones_like(step)], dim=1),
            position_ids=positions[:, -1:] + 1,
            past_key_values=out.past_key_values,
        )
        return first, torch.softmax(nxt.logits[:, -1, :].float(), dim=-1)[:, token_ids].cpu()

    # -- AlpacaEval ---------------------------------------------------------------------
    def judge_alpaca_eval_pairs(self, pairs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Annotate alpaca_eval pairs (output_1 = reference, output_2 = model) in both orders."""
        budget = max(32, (self.max_length - 160) // 2)
        prompts = []
        for p in pairs:
            instr = self._clip(p["instruction"], budget // 2)
            ref, mod = self._clip(p["output_1"], budget), self._clip(p["output_2"], budget)
            for a, b in ((ref, mod), (mod, ref)):
                user = PAIRWISE_TEMPLATE.format(instruction=instr, output_a=a, output_b=b)
                prompts.append(self._prompt(PAIRWISE_SYSTEM, user, PAIRWISE_PREFILL))
        probs, _ = self._next_token_probs(prompts, self.label_ids)
        probs = probs / probs.sum(dim=1, keepdim=True).clamp_min(1e-12)
        out = []
        for k, p in enumerate(pairs):
            model_is_b = probs[2 * k, 1].item()  # order 1: reference = a, model = b
            model_is_a = probs[2 * k + 1, 0].item()  # order 2: model = a
            p_model = 0.5 * (model_is_b + model_is_a)
            out.append(
                {
                    **p,
                    "annotator": LOCAL_JUDGE,
                    "judge_model": self.model_name,
                    "served_model": self.model_name,
                    "preference": 1.0 + p_model,
                    "p_model_better_order1": model_is_b,
                    "p_model_better_order2": model_is_a,
                    "price_per_example": 0.0,
                }
            )
        return out

    # -- MT-Bench -----------------------------------------------------------------------
    def rating_distribution(
        self, prompts: list[str], groups: list[Any] | None = None
    ) -> torch.Tensor:
        """P(score = 1..10) per prompt from the first digit and, after "1", P("0"); prompts
        with the same `groups` key share their common prefix (`_next_token_probs`)."""
        first, after = self._next_token_probs(
            prompts, self.digit_ids, then=self.digit_ids[1], groups=groups
        )
        after_one = after[:, 0]  # P("0" | ... "[[1")
        dist = torch.zeros(len(prompts), 10)
        dist[:, 1:9] = first[:, 2:10]  # scores 2..9
        p_one = first[:, 1]
        dist[:, 9] = p_one * after_one  # "1" then "0" -> 10
        dist[:, 0] = p_one * (1 - after_one)  # "1" then anything else -> 1
        return dist / dist.sum(dim=1, keepdim=True).clamp_min(1e-12)

    def judge_mt_bench(
        self,
        questions: list[dict[str, Any]],
        answers: dict[int, list[str]],
        judge_prompts: dict[str, dict[str, Any]],
        references: dict[int, list[str]],
        model_name: str,
    ) -> list[dict[str, Any]]:
        """FastChat single-answer judgments (both turns) with expected scores."""
        from prefopt.judging.mt_bench import build_judge_prompt, judgment_record

        budget = max(64, self.max_length // 3)
        jobs = []
        for q in questions:
            turns = [self._clip(t, budget) for t in answers[q["question_id"]]]
            q_clipped = {**q, "turns": [self._clip(t, budget) for t in q["turns"]]}
            ref = references.get(q["question_id"])
            ref = [self._clip(t, budget) for t in ref] if ref else None
            for turn in (1, 2):
                system, user, prompt_name = build_judge_prompt(
                    q_clipped, turns, turn, judge_prompts, reference=ref
                )
                jobs.append((q, turn, system, user, prompt_name))
        prompts = [self._prompt(j[2] or PAIRWISE_SYSTEM, j[3], RATING_PREFILL) for j in jobs]
        # one group per FastChat template: its system prompt and instructions are run once
        dist = self.rating_distribution(prompts, groups=[j[4] for j in jobs])
        scores = (dist * torch.arange(1, 11)).sum(dim=1)
        records = []
        for (q, turn, _system, user, prompt_name), score, d in zip(jobs, scores, dist, strict=True):
            text = (
                f"Rating: [[{score.item():.2f}]] (expected score from the local judge's "
                f"probabilities: {', '.join(f'{k + 1}:{v:.3f}' for k, v in enumerate(d.tolist()))})"
            )
            records.append(
                judgment_record(
                    question_id=q["question_id"],
                    model=model_name,
                    judge_model=self.model_name,
                    prompt_name=prompt_name,
                    user_prompt=user,
                    judgment=text,
                    score=round(score.item(), 4),
                    turn=turn,
                    tstamp=time.time(),
                    judge_id=LOCAL_JUDGE,
                    served_model=self.model_name,
                )
            )
        return records


def judge_of_job(snakemake: Any) -> LocalJudge:
    """The local judge of a judging rule: the model its `judge_model` input names, loaded at
    the rule's `cpu_dtype`, with its `max_length` and `judge_model_name` params."""
    par = snakemake.params
    model, tokenizer = load_model(snakemake.input.judge_model, cpu_dtype=par.cpu_dtype)
    return LocalJudge(model, tokenizer, max_length=par.max_length, model_name=par.judge_model_name)
