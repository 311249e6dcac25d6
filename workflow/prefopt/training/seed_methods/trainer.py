"""Training branches of the seed papers: lambda-weighted listwise DPO, DCKD, ADPA and ADPA+.

The objectives are the pure functions of `prefopt.training.seed_methods.listwise` and
`prefopt.training.seed_methods.distill`; this module adds what a DAG branch needs around them: one
tokenisation shared by every cache and trainer (prompt through the chat template as TRL does,
response + EOS), the caches (listwise reference log-probs, the DPO teacher's top-k distributions,
the teachers' per-token advantage on student generations), student generation, and a
`transformers.Trainer` whose loss is the seed objective.

Every cache stores the token ids it was computed on; the trainer re-encodes and refuses to
train on a cache whose ids differ (a changed tokenizer or max length), instead of silently
pairing the wrong positions.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformers import Trainer

from prefopt.config import SEED_METHOD_KEYS
from prefopt.data.prepare import read_jsonl, write_jsonl
from prefopt.modeling import precision_autocast
from prefopt.training.diagnostics import DiagnosticsWriter, StatsAccumulator
from prefopt.training.seed_methods.distill import (
    adpa_loss,
    dckd_loss,
    teacher_advantage,
    topk_teacher_distribution,
)
from prefopt.training.seed_methods.listwise import (
    ASPECTS,
    aspect_targets,
    listwise_dpo_loss,
    sample_lambdas,
)

#: The seed-method objectives, as named by `loss:` in the config (one list: prefopt.config).
SEED_METHODS = tuple(SEED_METHOD_KEYS)


# --------------------------------------------------------------------------- data


def prepare_listwise(
    rows: list[dict[str, Any]],
    *,
    max_prompts: int | None,
    n_candidates: int,
    na_rating: float | None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """openbmb/UltraFeedback rows -> listwise rows with a stable `prompt_id`, and the counts."""
    from prefopt.training.seed_methods.listwise import ultrafeedback_to_listwise_with_stats

    out, stats = ultrafeedback_to_listwise_with_stats(
        rows, na_rating=na_rating, n_candidates=n_candidates
    )
    if max_prompts is not None:
        out = out[:max_prompts]
    for i, row in enumerate(out):
        row["prompt_id"] = f"lw{i:06d}"
    if not out:
        raise ValueError(
            f"no listwise prompt left after conversion ({stats}); need rows with exactly "
            f"{n_candidates} rated completions"
        )
    return out, {**stats, "rows_kept": len(out)}


# --------------------------------------------------------------------------- tokenisation


def encode_prompt(tokenizer: Any, prompt: str, max_prompt_length: int) -> list[int]:
    """The user turn through the chat template with the generation prompt (TRL's prompt form),
    keeping the last `max_prompt_length` tokens of the prompt text as the pairwise branch does."""
    ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    if len(ids) > max_prompt_length:
        prompt = tokenizer.decode(ids[-max_prompt_length:])
    out = tokenizer.apply_chat_template(
        [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True
    )
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return [int(i) for i in out]


def encode_response(tokenizer: Any, text: str, room: int) -> list[int]:
    """Response tokens + EOS, cut to `room` tokens (max_length minus the prompt)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return [int(i) for i in ids[: max(room, 1)]]


def encode_pairs(pairs: list[dict[str, Any]], tokenizer: Any, training: dict[str, Any]):
    """pair_id, prompt_ids, chosen_ids, rejected_ids for every prepared pair."""
    rows = []
    for pair in pairs:
        p = encode_prompt(tokenizer, pair["prompt"], training["max_prompt_length"])
        room = training["max_length"] - len(p)
        rows.append(
            {
                "pair_id": pair["pair_id"],
                "prompt_ids": p,
                "chosen_ids": encode_response(tokenizer, pair["chosen"], room),
                "rejected_ids": encode_response(tokenizer, pair["rejected"], room),
            }
        )
    return rows


def encode_listwise(rows: list[dict[str, Any]], tokenizer: Any, training: dict[str, Any]):
    """prompt_id, prompt_ids, [N] response_ids and [N, A] ratings per listwise prompt."""
    out = []
    for row in rows:
        p = encode_prompt(tokenizer, row["prompt"], training["max_prompt_length"])
        room = training["max_length"] - len(p)
        out.append(
            {
                "prompt_id": row["prompt_id"],
                "prompt_ids": p,
                "response_ids": [encode_response(tokenizer, r, room) for r in row["responses"]],
                "ratings": row["ratings"],
            }
        )
    return out


# --------------------------------------------------------------------------- forward passes


def _pad(seqs: list[list[int]], value: int) -> Tensor:
    width = max(len(s) for s in seqs)
    return torch.tensor([s + [value] * (width - len(s)) for s in seqs], dtype=torch.long)


def response_logits(
    model: Any, prompt_ids: list[list[int]], response_ids: list[list[int]], pad_id: int = 0
) -> tuple[Tensor, Tensor, Tensor]:
    """Logits aligned to response positions: row t of ``[B, T, V]`` predicts response token t.

    Returns (logits, mask [B, T], labels [B, T]); this is the alignment
    `prefopt.training.seed_methods.distill` expects.
    """
    seqs = [p + r for p, r in zip(prompt_ids, response_ids, strict=True)]
    device = next(model.parameters()).device
    input_ids = _pad(seqs, pad_id).to(device)
    attention = _pad([[1] * len(s) for s in seqs], 0).to(device)
    logits = model(input_ids=input_ids, attention_mask=attention, use_cache=False).logits
    t_max = max(len(r) for r in response_ids)
    starts = torch.tensor([len(p) - 1 for p in prompt_ids], device=device)
    offsets = torch.arange(t_max, device=device)
    positions = (starts[:, None] + offsets[None, :]).clamp(max=logits.shape[1] - 1)
    aligned = logits.gather(1, positions[..., None].expand(-1, -1, logits.shape[-1]))
    mask = _pad([[1] * len(r) for r in response_ids], 0).to(device).bool()
    labels = _pad(response_ids, 0).to(device)
    return aligned, mask, labels


def sequence_logps(logits: Tensor, labels: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    """Summed response log-probs [B] and token counts [B] from aligned logits."""
    per_token = torch.log_softmax(logits.float(), dim=-1).gather(-1, labels[..., None])[..., 0]
    return (per_token * mask).sum(-1), mask.sum(-1)


def _load(model_dir: str | Path):
    """A model for the caches, loaded as training loads the policy (fp32, the device's
    attention kernel), and the tokenizer: the listwise cache is then the policy at step 0."""
    from transformers import AutoTokenizer

    from prefopt.training.trainer import load_policy_model

    on_gpu = torch.cuda.is_available()
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = load_policy_model(model_dir, on_gpu)
    if on_gpu:
        model = model.to("cuda")
    model.eval()
    return model, tok


def _batches(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


# --------------------------------------------------------------------------- caches


def check_finite_listwise_reference(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Every cached candidate log-prob is finite (fp16 overflow gives inf/nan): checked when the
    λ-DPO reference cache is written and when training reads it."""
    from prefopt.training.trainer import ReferenceCacheError

    for row in rows:
        bad = [i for i, v in enumerate(row["ref_logps"]) if not math.isfinite(float(v))]
        if bad:
            raise ReferenceCacheError(
                f"{path}: prompt {row['prompt_id']!r} has non-finite ref_logps for candidate(s) "
                f"{bad} ({[row['ref_logps'][i] for i in bad]}); delete the cache and rerun "
                "cache_listwise_reference_logps (with fp32 if the values overflowed)"
            )


@torch.no_grad()
def cache_listwise_reference(
    model_dir: str | Path, listwise_path: str | Path, out_path: str | Path, training: dict
) -> dict[str, Any]:
    """The reference model's summed log-probs and lengths for all N candidates of every prompt."""
    model, tok = _load(model_dir)
    rows = encode_listwise(read_jsonl(listwise_path), tok, training)
    autocast = precision_autocast(training["precision"], model.device.type)
    out = []
    for row in rows:
        n = len(row["response_ids"])
        with autocast:  # the policy's own numerics in training (fp32 weights, mixed matmuls)
            logits, mask, labels = response_logits(
                model, [row["prompt_ids"]] * n, row["response_ids"], tok.pad_token_id or 0
            )
        logps, lengths = sequence_logps(logits, labels, mask)
        out.append(
            {
                "prompt_id": row["prompt_id"],
                "ref_logps": logps.cpu().tolist(),
                "lengths": lengths.cpu().tolist(),
            }
        )
    check_finite_listwise_reference(out, out_path)
    write_jsonl(out, out_path)
    return {"n_prompts": len(out)}


@torch.no_grad()
def cache_teacher_topk(
    teacher_dir: str | Path,
    pairs_path: str | Path,
    out_path: str | Path,
    training: dict[str, Any],
    k: int,
) -> dict[str, Any]:
    """DCKD's teacher side: the DPO teacher's top-k log-probs on chosen and rejected responses."""
    model, tok = _load(teacher_dir)
    rows = encode_pairs(read_jsonl(pairs_path), tok, training)
    cache: dict[str, Any] = {}
    for batch in _batches(rows, training["reference_batch_size"]):
        entry = {r["pair_id"]: {"prompt_ids": r["prompt_ids"]} for r in batch}
        for side in ("chosen", "rejected"):
            responses = [r[f"{side}_ids"] for r in batch]
            logits, mask, _ = response_logits(
                model, [r["prompt_ids"] for r in batch], responses, tok.pad_token_id or 0
            )
            top = topk_teacher_distribution(logits.float(), k)
            for i, r in enumerate(batch):
                n = len(responses[i])
                entry[r["pair_id"]][f"{side}_ids"] = responses[i]
                entry[r["pair_id"]][f"{side}_logprobs"] = top.logprobs[i, :n].float().cpu()
                entry[r["pair_id"]][f"{side}_topk_ids"] = top.ids[i, :n].int().cpu()
        cache.update(entry)
    torch.save({"k": k, "teacher": str(teacher_dir), "rows": cache}, out_path)
    return {"n_pairs": len(cache), "k": k}


@torch.no_grad()
def generate_student_responses(
    student_dir: str | Path,
    pairs_path: str | Path,
    out_path: str | Path,
    training: dict[str, Any],
    settings: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """ADPA's on-policy data: the student samples one response per training prompt.

    Token ids are kept as generated (cut after the first EOS), so the advantage cache and the
    trainer see exactly the sampled tokens, never a decode/re-encode round trip.
    """
    model, tok = _load(student_dir)
    rows = encode_pairs(read_jsonl(pairs_path), tok, training)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    out = []
    torch.manual_seed(seed)
    for batch in _batches(rows, training["reference_batch_size"]):
        prompts = [r["prompt_ids"] for r in batch]
        width = max(len(p) for p in prompts)
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
        attn = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        room = min(settings["max_new_tokens"], training["max_length"] - width)
        gen = model.generate(
            input_ids=ids.to(model.device),
            attention_mask=attn.to(model.device),
            max_new_tokens=max(room, 1),
            do_sample=settings["temperature"] > 0,
            temperature=settings["temperature"] if settings["temperature"] > 0 else None,
            top_p=settings["top_p"] if settings["temperature"] > 0 else None,
            top_k=None,
            pad_token_id=pad,
        )[:, width:].cpu()
        for r, g in zip(batch, gen.tolist(), strict=True):
            response = []
            for t in g:
                response.append(int(t))
                if t == tok.eos_token_id:
                    break
            out.append(
                {
                    "pair_id": r["pair_id"],
                    "prompt_ids": r["prompt_ids"],
                    "chosen_ids": r["chosen_ids"],
                    "response_ids": response,
                    "response": tok.decode(response, skip_special_tokens=True),
                }
            )
    write_jsonl(out, out_path)
    lengths = [len(r["response_ids"]) for r in out]
    return {"n_responses": len(out), "mean_tokens": sum(lengths) / max(len(lengths), 1)}


@torch.no_grad()
def cache_teacher_advantage(
    teacher_dir: str | Path,
    reference_teacher_dir: str | Path,
    responses_path: str | Path,
    out_path: str | Path,
    training: dict[str, Any],
    k: int,
) -> dict[str, Any]:
    """ADPA's signal: log pi_dpo^T - log pi_ref^T on the DPO teacher's top-k ids per position."""
    teacher, tok = _load(teacher_dir)
    reference, _ = _load(reference_teacher_dir)
    rows = read_jsonl(responses_path)
    cache: dict[str, Any] = {}
    pad = tok.pad_token_id or 0
    for batch in _batches(rows, training["reference_batch_size"]):
        prompts = [r["prompt_ids"] for r in batch]
        responses = [r["response_ids"] for r in batch]
        dpo_logits, _, _ = response_logits(teacher, prompts, responses, pad)
        ref_logits, _, _ = response_logits(reference, prompts, responses, pad)
        adv = teacher_advantage(dpo_logits.float(), ref_logits.float(), k)
        for i, r in enumerate(batch):
            n = len(responses[i])
            cache[r["pair_id"]] = {
                "prompt_ids": prompts[i],
                "response_ids": responses[i],
                "values": adv.values[i, :n].float().cpu(),
                "ids": adv.ids[i, :n].int().cpu(),
            }
    torch.save({"k": k, "teacher": str(teacher_dir), "rows": cache}, out_path)
    return {"n_responses": len(cache), "k": k}


# --------------------------------------------------------------------------- training


class _ListDataset(torch.utils.data.Dataset):
    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[i]


def _pad3(tensors: list[Tensor], width: int, value: float) -> Tensor:
    out = torch.full((len(tensors), width, tensors[0].shape[-1]), value, dtype=tensors[0].dtype)
    for i, t in enumerate(tensors):
        out[i, : t.shape[0]] = t
    return out


def _collate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Keep the rows as python lists: the trainer pads them per forward pass."""
    return {"rows": rows}


class SeedMethodTrainer(Trainer):
    """A `transformers.Trainer` whose loss is one seed-method objective (`SEED_METHODS`).

    Batches are lists of training rows (`_collate`); each objective is one method returning the
    micro-batch loss and its scalar statistics, which a
    `prefopt.training.diagnostics.DiagnosticsWriter` writes to `diagnostics_path` (a row per logging
    step and one at the end of training).
    """

    def __init__(
        self,
        *args: Any,
        method: str,
        params: dict[str, Any],
        diagnostics_path: str | Path | None = None,
        seed: int,
        **kwargs: Any,
    ) -> None:
        objectives = {
            "lambda_dpo": self._lambda_dpo_loss,
            "dckd": self._dckd_loss,
            "adpa": self._adpa_loss,
        }
        if method not in objectives:
            raise ValueError(f"unknown seed method {method!r}; known: {sorted(objectives)}")
        self.method = method
        self.params = params
        self._objective = objectives[method]
        self.statistics = StatsAccumulator()
        self._generator = torch.Generator().manual_seed(seed)
        self._lambda_step = -1
        self._lambdas: Tensor | None = None
        self.lambda_history: list[dict[str, Any]] = []
        super().__init__(*args, **kwargs)
        # Our loss is a plain mean per micro-batch: let Trainer divide by accumulation.
        self.model_accepts_loss_kwargs = False
        if diagnostics_path:
            self.add_callback(DiagnosticsWriter(diagnostics_path, self.statistics))

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):  # noqa: ANN001
        rows = inputs["rows"]
        loss, stats = self._objective(model, rows)
        if model.training:
            self.statistics.update(len(rows), loss=loss.item(), **stats)
        return (loss, None) if return_outputs else loss

    def _pad_id(self) -> int:
        tok = self.processing_class
        return (tok.pad_token_id if tok is not None else None) or 0

    def _student_logits(self, model: Any, rows: list[dict[str, Any]], key: str):
        """The student's aligned (logits, mask, labels) on each row's prompt + ``row[key]``."""
        prompts = [r["prompt_ids"] for r in rows]
        return response_logits(model, prompts, [r[key] for r in rows], self._pad_id())

    def _teacher_targets(
        self, rows: list[dict[str, Any]], values: str, ids: str, logits: Tensor
    ) -> tuple[Tensor, Tensor]:
        """The rows' cached per-position teacher values and token ids ``[B, T, k]``, padded to
        the student's response width."""
        width = logits.shape[1]
        padded_values = _pad3([r[values].float() for r in rows], width, 0.0)
        padded_ids = _pad3([r[ids].long() for r in rows], width, 0)
        return padded_values.to(logits.device), padded_ids.to(logits.device)

    def _dckd_side(self, model: Any, rows: list[dict[str, Any]], side: str):
        """(student logits, teacher top-k log-probs, teacher top-k ids, mask, labels) of a side."""
        logits, mask, labels = self._student_logits(model, rows, f"{side}_ids")
        logprobs, ids = self._teacher_targets(rows, f"{side}_logprobs", f"{side}_topk_ids", logits)
        return logits, logprobs, ids, mask, labels

    def _dckd_loss(self, model: Any, rows: list[dict[str, Any]]) -> tuple[Tensor, dict]:
        """DCKD: top-k KL to the DPO teacher on chosen and rejected, plus optional chosen SFT."""
        p = self.params
        c_logits, c_logprobs, c_ids, c_mask, c_labels = self._dckd_side(model, rows, "chosen")
        r_logits, r_logprobs, r_ids, r_mask, _ = self._dckd_side(model, rows, "rejected")
        kd = dckd_loss(
            c_logits,
            c_logprobs,
            c_ids,
            c_mask,
            r_logits,
            r_logprobs,
            r_ids,
            r_mask,
            chosen_weight=p["chosen_weight"],
            rejected_weight=p["rejected_weight"],
        )
        loss = p["distill_weight"] * kd
        logps, lengths = sequence_logps(c_logits, c_labels, c_mask)
        nll = -(logps.sum() / lengths.sum().clamp(min=1))
        if p["sft_weight"]:
            loss = loss + p["sft_weight"] * nll
        return loss, {"distill_loss": kd.item(), "sft_nll_chosen": nll.item()}

    def _adpa_loss(self, model: Any, rows: list[dict[str, Any]]) -> tuple[Tensor, dict]:
        """ADPA: the DPO teacher's advantage on the student's own responses."""
        p = self.params
        logits, mask, _ = self._student_logits(model, rows, "response_ids")
        values, ids = self._teacher_targets(rows, "values", "ids", logits)
        clip = p.get("advantage_clip")
        adpa = adpa_loss(
            logits, values, mask, advantage_ids=ids, advantage_clip=tuple(clip) if clip else None
        )
        stats = {"adpa_loss": adpa.item(), "response_tokens": mask.sum(-1).float().mean().item()}
        return p["adpa_weight"] * adpa, stats

    def resume_state(self) -> dict[str, Any]:
        """What a checkpoint must add to transformers' own (`prefopt.training.resume`): the lambda
        generator and the lambdas drawn so far."""
        return {
            "generator": self._generator.get_state(),
            "lambda_history": list(self.lambda_history),
            "lambda_step": self._lambda_step,
            "lambdas": self._lambdas,
        }

    def load_resume_state(self, state: dict[str, Any]) -> None:
        self._generator.set_state(state["generator"])
        self.lambda_history[:] = state["lambda_history"]
        self._lambda_step = state["lambda_step"]
        self._lambdas = state["lambdas"]

    def _step_lambdas(self) -> Tensor:
        """One lambda per optimiser step, drawn from the run seed's generator."""
        if self.state.global_step != self._lambda_step or self._lambdas is None:
            p = self.params
            self._lambda_step = self.state.global_step
            self._lambdas = sample_lambdas(
                len(ASPECTS), self._generator, scheme=p["lambda_scheme"], alpha=p["dirichlet_alpha"]
            )
            lambdas = dict(zip(ASPECTS, self._lambdas.tolist(), strict=True))
            self.lambda_history.append({"step": self._lambda_step, **lambdas})
        return self._lambdas

    def _lambda_dpo_loss(self, model: Any, rows: list[dict[str, Any]]) -> tuple[Tensor, dict]:
        """lambda-DPO: listwise DPO towards this step's lambda-mixed aspect targets."""
        p = self.params
        lambdas = self._step_lambdas()
        n = len(rows[0]["response_ids"])
        prompts = [r["prompt_ids"] for r in rows for _ in range(n)]
        responses = [y for r in rows for y in r["response_ids"]]
        logits, mask, labels = response_logits(model, prompts, responses, self._pad_id())
        logps, lengths = sequence_logps(logits, labels, mask)
        logps = logps.view(len(rows), n)
        lengths = lengths.view(len(rows), n)
        ref = torch.tensor([r["ref_logps"] for r in rows], device=logps.device)
        ratings = torch.tensor([r["ratings"] for r in rows], dtype=torch.float64)
        targets = aspect_targets(ratings, p["target_temperature"]).to(logps.device)
        lam = lambdas.to(logps.device)
        losses = listwise_dpo_loss(
            logps,
            ref,
            lengths,
            targets.to(logps.dtype),
            lam.to(logps.dtype),
            beta=p["beta"],
            length_normalize=p["length_normalize"],
        )
        with torch.no_grad():
            norm = lengths.clamp(min=1) if p["length_normalize"] else 1.0
            rewards = p["beta"] * (logps - ref) / norm
            mixed = (targets * lam[None, :, None].to(targets.dtype)).sum(1)
            best = rewards.gather(-1, mixed.argmax(-1, keepdim=True))[:, 0]
            spread = rewards.max(-1).values > rewards.min(-1).values
            # ties (e.g. step 1, policy == reference) count as misses, not hits
            hit = ((best >= rewards.max(-1).values) & spread).float().mean()
        stats = {"top_candidate_accuracy": hit.item()}
        stats.update({f"lambda_{a}": float(v) for a, v in zip(ASPECTS, lam.tolist(), strict=True)})
        return losses.mean(), stats


def _check_ids(cached: dict[str, Any], fresh: dict[str, Any], keys: tuple[str, ...], what: str):
    for key in keys:
        if list(map(int, cached[key])) != list(map(int, fresh[key])):
            raise ValueError(
                f"{what}: cached token ids ({key}) differ from this run's tokenisation; "
                "rebuild the cache (same model, max_length and max_prompt_length)"
            )


def _training_rows(method: str, tok: Any, inputs: dict[str, Any], training: dict[str, Any]):
    if method == "lambda_dpo":
        rows = encode_listwise(read_jsonl(inputs["listwise"]), tok, training)
        cached = read_jsonl(inputs["reference"])
        check_finite_listwise_reference(cached, inputs["reference"])
        ref = {r["prompt_id"]: r for r in cached}
        for row in rows:
            if row["prompt_id"] not in ref:
                raise ValueError(f"prompt {row['prompt_id']} missing from {inputs['reference']}")
            lengths = [len(y) for y in row["response_ids"]]
            if [int(x) for x in ref[row["prompt_id"]]["lengths"]] != lengths:
                raise ValueError(
                    f"prompt {row['prompt_id']}: reference cache lengths differ from this "
                    "run's tokenisation; rebuild cache_listwise_reference_logps"
                )
            row["ref_logps"] = ref[row["prompt_id"]]["ref_logps"]
        return rows
    cache = torch.load(inputs["cache"], weights_only=False)["rows"]
    if method == "dckd":
        rows = encode_pairs(read_jsonl(inputs["pairs"]), tok, training)
        for row in rows:
            entry = cache.get(row["pair_id"])
            if entry is None:
                raise ValueError(f"pair {row['pair_id']} missing from {inputs['cache']}")
            _check_ids(entry, row, ("prompt_ids", "chosen_ids", "rejected_ids"), inputs["cache"])
            row.update({k: v for k, v in entry.items() if k.endswith(("logprobs", "topk_ids"))})
        return rows
    rows = []
    for pair_id, entry in cache.items():
        rows.append({"pair_id": pair_id, **entry})
    return rows


def train_seed_method(
    init_dir: str | Path,
    inputs: dict[str, Any],
    out_dir: str | Path,
    diagnostics_path: str | Path,
    training: dict[str, Any],
    method: str,
    params: dict[str, Any],
    seed: int,
    learning_rate: float | None = None,
) -> dict[str, Any]:
    """Train a student / listwise policy from `init_dir` with one seed-method objective; the
    job's skeleton (checkpoints, resume, saving) is `prefopt.training.trainer.run_training_job`."""
    from transformers import TrainingArguments

    from prefopt.training.trainer import load_for_training, run_training_job, trainer_arguments

    if method not in SEED_METHODS:
        raise ValueError(f"unknown seed method {method!r}; known: {SEED_METHODS}")

    def build(work_dir: Path) -> tuple[SeedMethodTrainer, Any]:
        model, tok, on_gpu = load_for_training(init_dir, training, seed)
        rows = _training_rows(method, tok, inputs, training)
        args = TrainingArguments(
            **trainer_arguments(work_dir, training, seed, learning_rate, on_gpu),
            remove_unused_columns=False,
        )
        trainer = SeedMethodTrainer(
            model=model,
            args=args,
            train_dataset=_ListDataset(rows),
            data_collator=_collate,
            processing_class=tok,
            method=method,
            params=params,
            diagnostics_path=diagnostics_path,
            seed=seed,
        )
        return trainer, tok

    return run_training_job(
        build,
        inputs=list(dict.fromkeys([str(init_dir), *(str(v) for _, v in sorted(inputs.items()))])),
        out_dir=out_dir,
        diagnostics_path=diagnostics_path,
        training=training,
        loss=method,
        params=params,
        seed=seed,
        learning_rate=learning_rate,
        # lambda_history is filled in place while training, before the summary is written
        record=lambda trainer: {"init": str(init_dir), "lambda_per_step": trainer.lambda_history},
    )
