"""Preference distillation objectives of ADPA (arXiv 2502.17927, ICLR 2025): DCKD and ADPA.

Pure tensor functions of logits and cached teacher quantities, in the style of
:mod:`prefopt.training.losses`. Source: ``workflow/docs/seed_methods.md`` §3, i.e. the authors'
released code (``DistillTrainer.get_kl_loss`` / ``get_reverse_ce``, ``utils/compress_logits.py``,
``utils/merge_logits_adpa_dataset.py``). The formulas were not checked against the paper's own
equations, so docstrings cite that page (a bare ``§3`` below) and the code function they mirror.

Conventions
-----------
* Every per-token tensor is **aligned to response positions**: row ``t`` of ``student_logits``
  ``[B, T, V]`` and of the teacher arrays ``[B, T, k]`` is the distribution over the token at
  response position ``t`` (the caller does the usual one-step shift and slices off the prompt).
* ``mask`` ``[B, T]`` (bool or 0/1) marks the valid response tokens.
* Teacher inputs (top-k log-probs, advantages) are constants: they are detached.
* ``reduction="token_mean"`` (default) averages over all valid tokens of the batch, as the
  authors' ``.sum(-1).mean()`` over ``input[mask]`` does, and returns a scalar;
  ``"sequence_mean"`` returns ``[B]`` per-sequence token means; ``"none"`` returns ``[B, T]``
  (zeros at masked positions).

DCKD (dual-constrained KD, §3 step 3)::

    KL_t(y) = sum_{v in top-k} p_T(v|s_t) (log p_T(v|s_t) - log p_S(v|s_t))
              + r_T(s_t) (log r_T(s_t) - log r_S(s_t))
    L_DCKD  = w_c * mean_{t in y_w} KL_t  +  w_r * mean_{t in y_l} KL_t

with ``p_T`` the **DPO teacher**, ``r_T = 1 - sum_topk p_T`` and ``r_S = 1 - sum_topk p_S`` the
remaining ("tail") mass outside the teacher's top-k: the authors' loader builds exactly these
k + 1 buckets. With k = V (``r_T = 0``) it is the token-level forward KL ``KL(p_T || p_S)``, i.e.
plain KD; with ``w_r = 0`` only the chosen responses are distilled.

ADPA (advantage-guided distillation, §3 step 4)::

    A(s_t, a) = log pi_dpo^T(a|s_t) - log pi_ref^T(a|s_t)
    L_ADPA    = - mean_t sum_a pi_theta(a|s_t) A(s_t, a)

over the valid tokens of **student-generated** responses (``get_reverse_ce``). Its gradient
w.r.t. the student logit ``z_b`` is ``-pi_b (A_b - sum_a pi_a A_a)``: tokens with above-average
advantage are pushed up; a zero or constant (full-vocabulary) advantage gives zero gradient.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from prefopt.training.losses import LossConfigError, finite_number

__all__ = [
    "REDUCTIONS",
    "Advantage",
    "TopK",
    "adpa_loss",
    "dckd_loss",
    "teacher_advantage",
    "teacher_tail_mass",
    "topk_forward_kl",
    "topk_teacher_distribution",
]

REDUCTIONS: tuple[str, ...] = ("token_mean", "sequence_mean", "none")

MASS_TOLERANCE = 1e-3
"""How far above 1 the stored top-k teacher mass may be (rounding in a low-precision cache)."""


class TopK(NamedTuple):
    """A teacher distribution compressed to its top-k entries (what the cache rule stores).

    ``logprobs`` ``[..., k]`` are log-probabilities of the **full** softmax (not renormalised
    over the top-k), in descending order; ``ids`` ``[..., k]`` (int64) are their token ids. The
    tail mass ``1 - sum exp(logprobs)`` is implied (:func:`teacher_tail_mass`).
    """

    logprobs: Tensor
    ids: Tensor


class Advantage(NamedTuple):
    """A per-token advantage ``A(s_t, a)`` on a support: ``values`` ``[..., K]``, ``ids`` or None.

    ``ids`` ``[..., K]`` are the token ids of the support; ``None`` means the full vocabulary
    (``K == V``, position ``a`` is token ``a``).
    """

    values: Tensor
    ids: Tensor | None


# ---------------------------------------------------------------------------------------------
# teacher-side helpers (what the caching rules compute)


def topk_teacher_distribution(teacher_logits: Tensor, k: int) -> TopK:
    """Compress teacher logits ``[..., V]`` to their top-k log-probabilities (``compress_probs``).

    The authors store the top-k *probabilities* and ``remaining_probs_sum``; storing the
    log-probabilities of the full softmax carries the same information (the tail is
    ``1 - sum exp``) and keeps precision in a float16/bfloat16 cache.
    """
    _check_float("topk_teacher_distribution", "teacher_logits", teacher_logits)
    v = teacher_logits.shape[-1]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= v:
        raise LossConfigError(
            f"topk_teacher_distribution: k must be an int in [1, V={v}], got {k!r}"
        )
    with torch.no_grad():
        logprobs = F.log_softmax(teacher_logits.detach(), dim=-1)
        values, ids = torch.topk(logprobs, k, dim=-1, largest=True, sorted=True)
    return TopK(values, ids)


def teacher_tail_mass(topk_logprobs: Tensor) -> Tensor:
    """``r_T = 1 - sum_topk p_T`` ``[...]``, clamped to >= 0 (computed as ``-expm1(logsumexp)``)."""
    return (-torch.expm1(torch.logsumexp(topk_logprobs, dim=-1))).clamp(min=0.0)


def teacher_advantage(
    dpo_teacher_logits: Tensor, ref_teacher_logits: Tensor, k: int | None = None
) -> Advantage:
    """ADPA's advantage ``A(s_t, a) = log pi_dpo^T(a|s_t) - log pi_ref^T(a|s_t)`` (§3 step 4).

    Both teachers are run on the same student-generated tokens, ``[..., V]`` logits each.

    Args:
        dpo_teacher_logits: the DPO teacher's logits (pi_dpo^T).
        ref_teacher_logits: the reference teacher's logits (pi_ref^T, the DPO teacher's SFT start).
        k: ``None`` for the full vocabulary; an int for the support of the DPO teacher's top-k
            tokens (the authors' ``get_margin_logp_token`` keeps the DPO teacher's top-k ids).

    Returns:
        :class:`Advantage` (float32 or the logits' dtype), no gradient.

    Difference from the authors' code: their cache keeps only each teacher's top-k
    probabilities, so a DPO top-k token missing from the reference teacher's top-k gets a
    filled-in reference probability (``max(min(p_dpo top-k), 1e-7)``). Here both teachers'
    full softmaxes are available when the cache is built, so the advantage is exact.
    """
    _check_float("teacher_advantage", "dpo_teacher_logits", dpo_teacher_logits)
    _check_float("teacher_advantage", "ref_teacher_logits", ref_teacher_logits)
    if dpo_teacher_logits.shape != ref_teacher_logits.shape:
        raise ValueError(
            f"teacher_advantage: ref_teacher_logits has shape {tuple(ref_teacher_logits.shape)}, "
            f"expected {tuple(dpo_teacher_logits.shape)} (same tokens, same vocabulary)"
        )
    with torch.no_grad():
        lp_dpo = F.log_softmax(dpo_teacher_logits.detach(), dim=-1)
        lp_ref = F.log_softmax(ref_teacher_logits.detach(), dim=-1)
        if k is None:
            return Advantage(lp_dpo - lp_ref, None)
        v = lp_dpo.shape[-1]
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= v:
            raise LossConfigError(f"teacher_advantage: k must be None or an int in [1, V={v}]")
        top, ids = torch.topk(lp_dpo, k, dim=-1, largest=True, sorted=True)
        return Advantage(top - lp_ref.gather(-1, ids), ids)


# ---------------------------------------------------------------------------------------------
# DCKD


def topk_forward_kl(
    student_logits: Tensor,
    teacher_logprobs: Tensor,
    teacher_ids: Tensor,
    mask: Tensor | None = None,
) -> Tensor:
    """Per-token forward KL over the teacher's top-k plus a tail bucket, ``[B, T]`` (§3 step 3).

    ``KL_t = sum_{v in top-k} p_T(v) (log p_T(v) - log p_S(v)) + r_T (log r_T - log r_S)`` where
    ``p_S = softmax(student_logits)``, ``r_T`` is :func:`teacher_tail_mass` and ``r_S`` the
    student's mass outside the teacher's top-k ids (computed exactly, by a logsumexp over the
    other tokens). This is the KL between the two distributions coarsened to k + 1 buckets, as
    the authors' ``load_input_and_target_probs_fast`` + ``get_kl_loss`` compute it (they also
    clamp both sides to [1e-8, 1 - 1e-8] and the student to >= 1e-7; no clamping here, so
    ``KL >= 0`` with equality when the student matches the teacher on the buckets). With k = V
    it is the full forward KL ``KL(p_T || p_S)``. Masked positions are 0.

    Args:
        student_logits: ``[B, T, V]``.
        teacher_logprobs: ``[B, T, k]`` full-softmax log-probs of the teacher's top-k
            (:func:`topk_teacher_distribution`), their total mass <= 1.
        teacher_ids: ``[B, T, k]`` distinct token ids in ``[0, V)`` (a shared vocabulary).
        mask: ``[B, T]`` valid response tokens, or None for all.
    """
    where = "topk_forward_kl"
    b, t, v = _check_per_token(where, student_logits, "teacher_logprobs", teacher_logprobs, "k")
    k = teacher_logprobs.shape[2]
    if not 1 <= k <= v:
        raise ValueError(f"{where}: teacher top-k size {k} must be in [1, V={v}]")
    mask = _check_mask(where, mask, (b, t), student_logits.device)
    ids = _check_ids(where, "teacher_ids", teacher_ids, (b, t, k), v, mask)

    # Padding positions may hold anything (e.g. -inf log-probs); neutralise them.
    lp_t = teacher_logprobs.detach().to(student_logits.dtype)
    lp_t = torch.where(mask.unsqueeze(-1), lp_t, torch.zeros_like(lp_t))
    p_t = torch.where(mask.unsqueeze(-1), lp_t.exp(), torch.zeros_like(lp_t))
    mass = p_t.sum(dim=-1)
    if (mass[mask] > 1 + MASS_TOLERANCE).any():
        raise ValueError(
            f"{where}: the teacher's top-k probabilities sum to {mass[mask].max().item():.6g} > 1; "
            "teacher_logprobs must be log-probs of the full softmax"
        )
    r_t = teacher_tail_mass(lp_t)  # -expm1(logsumexp): precise when the tail is tiny

    lp_s = F.log_softmax(student_logits, dim=-1)  # [B, T, V]
    lp_s_top = lp_s.gather(-1, ids)  # [B, T, k]
    in_top = torch.zeros_like(lp_s, dtype=torch.bool).scatter_(-1, ids, True)
    # Finite fill (not -inf) so that k = V gives a finite log r_S with zero weight and no NaN
    # gradients; with k < V the filled entries contribute exp(-huge) = 0.
    lp_s_tail = torch.logsumexp(lp_s.masked_fill(in_top, torch.finfo(lp_s.dtype).min), dim=-1)
    # No token outside the top-k (k = V): the tail bucket is empty on both sides, whatever
    # rounding left in 1 - sum(p_T).
    r_t = torch.where(in_top.all(dim=-1), torch.zeros_like(r_t), r_t)

    # xlogy keeps a zero-probability (underflowed) teacher entry at exactly 0, without NaN.
    head = (torch.xlogy(p_t, p_t) - p_t * lp_s_top).sum(dim=-1)
    tail = torch.xlogy(r_t, r_t) - r_t * lp_s_tail
    kl = head + tail
    return torch.where(mask, kl, torch.zeros_like(kl))


def dckd_loss(
    chosen_student_logits: Tensor,
    chosen_teacher_logprobs: Tensor,
    chosen_teacher_ids: Tensor,
    chosen_mask: Tensor | None,
    rejected_student_logits: Tensor | None = None,
    rejected_teacher_logprobs: Tensor | None = None,
    rejected_teacher_ids: Tensor | None = None,
    rejected_mask: Tensor | None = None,
    *,
    chosen_weight: float = 1.0,
    rejected_weight: float = 1.0,
    reduction: str = "token_mean",
) -> Tensor:
    """DCKD: ``w_c * KL(chosen) + w_r * KL(rejected)`` with top-k teacher targets (§3 step 3).

    Each side is :func:`topk_forward_kl` reduced by ``reduction`` over its own valid tokens
    (the authors reduce each side separately, ``get_kl_loss`` twice). The teacher is the DPO
    teacher ``pi_dpo^T``, precomputed on the preference data's chosen **and** rejected responses.
    The authors' weights ``chosen_distil_weight`` / ``rejected_distil_weight`` are
    ``chosen_weight`` / ``rejected_weight`` here; their outer ``distillation_weight`` and the
    optional ``sft_on_chosen * NLL(chosen) + dpo_weight * L_DPO`` terms are added by the trainer
    (:mod:`prefopt.training.losses` has DPO).

    Limiting case: ``rejected_weight=0`` and ``k = V`` give plain token-level KD (forward KL /
    cross-entropy to the teacher distribution, up to the teacher's constant entropy) on y_w.
    The rejected inputs may be None when ``rejected_weight == 0``.

    Returns:
        a scalar (``token_mean``), ``[B]`` (``sequence_mean``) or ``[B, T]`` (``none``; needs both
        sides to have the same T).
    """
    _check_reduction("dckd_loss", reduction)
    w_c = finite_number("dckd_loss: chosen_weight", chosen_weight, minimum=0)
    w_r = finite_number("dckd_loss: rejected_weight", rejected_weight, minimum=0)
    kl_c = topk_forward_kl(
        chosen_student_logits, chosen_teacher_logprobs, chosen_teacher_ids, chosen_mask
    )
    mask_c = _check_mask("dckd_loss", chosen_mask, kl_c.shape, kl_c.device)
    total = w_c * _reduce(kl_c, mask_c, reduction)
    if w_r == 0:
        return total
    missing = [
        name
        for name, x in (
            ("rejected_student_logits", rejected_student_logits),
            ("rejected_teacher_logprobs", rejected_teacher_logprobs),
            ("rejected_teacher_ids", rejected_teacher_ids),
        )
        if x is None
    ]
    if missing:
        raise LossConfigError(
            f"dckd_loss with rejected_weight={w_r} needs {', '.join(missing)} "
            "(or set rejected_weight=0 for chosen-only KD)"
        )
    kl_r = topk_forward_kl(
        rejected_student_logits, rejected_teacher_logprobs, rejected_teacher_ids, rejected_mask
    )
    if kl_r.shape[0] != kl_c.shape[0]:
        raise ValueError(
            f"dckd_loss: {kl_r.shape[0]} rejected responses for {kl_c.shape[0]} chosen ones"
        )
    if reduction == "none" and kl_r.shape != kl_c.shape:
        raise ValueError("dckd_loss: reduction='none' needs chosen and rejected of the same T")
    mask_r = _check_mask("dckd_loss", rejected_mask, kl_r.shape, kl_r.device)
    return total + w_r * _reduce(kl_r, mask_r, reduction)


# ---------------------------------------------------------------------------------------------
# ADPA


def adpa_loss(
    student_logits: Tensor,
    advantage: Tensor,
    mask: Tensor | None,
    advantage_ids: Tensor | None = None,
    *,
    reduction: str = "token_mean",
    advantage_clip: tuple[float, float] | None = None,
) -> Tensor:
    """ADPA's "reverse cross-entropy" ``-mean_t sum_a pi_theta(a|s_t) A(s_t, a)`` (§3 step 4).

    Mirrors the authors' ``get_reverse_ce``: ``pi_theta = softmax(student_logits)`` over the full
    vocabulary, gathered on the advantage's support, times the advantage, summed, negated and
    averaged over valid tokens. The responses are the **student's own generations** (the
    "rejected" side of the ADPA data) and ``A`` comes from :func:`teacher_advantage`.

    Gradient w.r.t. the student logit ``z_b`` (full support)::

        dL_t/dz_b = -pi_b (A_b - sum_a pi_a A_a)

    so a token whose advantage is above the student's expected advantage is pushed up, one below
    it pushed down; ``A = 0`` (or any constant ``c`` on the full vocabulary, loss ``-c``) gives
    zero gradient. On a top-k support a constant advantage still pushes mass onto the support.

    Args:
        student_logits: ``[B, T, V]`` of the student being trained, on its generated tokens.
        advantage: ``[B, T, K]``; ``K == V`` when ``advantage_ids`` is None.
        mask: ``[B, T]`` valid tokens of the generated responses, or None for all.
        advantage_ids: ``[B, T, K]`` token ids of the support (e.g. the DPO teacher's top-k), or
            None for the full vocabulary.
        reduction: see the module docstring.
        advantage_clip: ``(lo, hi)`` to clamp ``A`` first; None (default) is the paper's
            formula. ``(1e-8, 1 - 1e-8)`` reproduces the released trainer, whose loader
            (``load_input_and_target_probs_fast``, default ``prob_stabilize=True``) clamps the
            cached advantages like probabilities, which drops every negative advantage.

    The authors' optional sequence importance weight ``exp(log pi_theta(y) - log pi_ref^S(y))``
    (``adpa_importance_sampling``) and KL penalty ``log pi_ref^S(y) - log pi_theta(y)``
    (``kl_penalty_weight``) are sequence-level terms the trainer adds.
    """
    where = "adpa_loss"
    _check_reduction(where, reduction)
    b, t, v = _check_per_token(where, student_logits, "advantage", advantage, "K")
    kk = advantage.shape[2]
    if advantage_ids is None and kk != v:
        raise ValueError(
            f"{where}: advantage has {kk} entries per token but V = {v}; pass advantage_ids "
            "for a top-k support"
        )
    mask = _check_mask(where, mask, (b, t), student_logits.device)
    adv = advantage.detach().to(student_logits.dtype)
    if advantage_clip is not None:
        lo, hi = (float(x) for x in advantage_clip)
        if not lo <= hi:
            raise LossConfigError(f"{where}: advantage_clip needs lo <= hi, got {advantage_clip}")
        adv = adv.clamp(min=lo, max=hi)
    adv = torch.where(mask.unsqueeze(-1), adv, torch.zeros_like(adv))  # NaN-free at padding
    probs = torch.softmax(student_logits, dim=-1)
    if advantage_ids is not None:
        ids = _check_ids(where, "advantage_ids", advantage_ids, (b, t, kk), v, mask)
        probs = probs.gather(-1, ids)
    per_token = -(probs * adv).sum(dim=-1)
    per_token = torch.where(mask, per_token, torch.zeros_like(per_token))
    return _reduce(per_token, mask, reduction)


# ---------------------------------------------------------------------------------------------
# validation / reduction helpers


def _check_float(where: str, name: str, x: Any) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise ValueError(f"{where}: {name} must be a floating-point tensor")


def _check_per_token(
    where: str, student_logits: Any, name: str, per_token: Any, last: str
) -> tuple[int, int, int]:
    """(B, T, V) of ``student_logits`` [B, T, V], checked with a floating-point ``per_token``
    tensor [B, T, `last`] of the same batch and length."""
    _check_float(where, "student_logits", student_logits)
    _check_float(where, name, per_token)
    if student_logits.dim() != 3:
        raise ValueError(
            f"{where}: student_logits has shape {tuple(student_logits.shape)}, expected [B, T, V]"
        )
    b, t, v = student_logits.shape
    if per_token.dim() != 3 or per_token.shape[:2] != (b, t):
        raise ValueError(
            f"{where}: {name} has shape {tuple(per_token.shape)}, expected [B={b}, T={t}, {last}]"
        )
    return b, t, v


def _check_ids(
    where: str, name: str, ids: Any, shape: tuple[int, ...], v: int, mask: Tensor
) -> Tensor:
    """Token ids as int64, with padding positions (``~mask``) set to 0; range-checked."""
    if not isinstance(ids, Tensor) or ids.is_floating_point() or ids.dtype == torch.bool:
        raise ValueError(f"{where}: {name} must be an integer tensor")
    if tuple(ids.shape) != tuple(shape):
        raise ValueError(f"{where}: {name} has shape {tuple(ids.shape)}, expected {tuple(shape)}")
    ids = torch.where(mask.unsqueeze(-1), ids.to(mask.device).long(), 0)
    if ids.numel() and (ids.min() < 0 or ids.max() >= v):
        raise ValueError(
            f"{where}: {name} has token ids in [{ids.min().item()}, {ids.max().item()}], outside "
            f"the student's vocabulary [0, {v}) (teacher and student must share the vocabulary)"
        )
    return ids


def _check_mask(where: str, mask: Any, shape: tuple[int, ...], device: torch.device) -> Tensor:
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    mask = torch.as_tensor(mask, device=device)
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{where}: mask has shape {tuple(mask.shape)}, expected {tuple(shape)}")
    if mask.dtype != torch.bool:
        if not ((mask == 0) | (mask == 1)).all():
            raise ValueError(f"{where}: mask must be boolean or 0/1")
        mask = mask != 0
    return mask


def _check_reduction(where: str, reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise LossConfigError(
            f"{where}: unknown reduction {reduction!r}; known: {', '.join(REDUCTIONS)}"
        )


def _reduce(per_token: Tensor, mask: Tensor, reduction: str) -> Tensor:
    """Masked reduction; an all-masked batch / sequence gives 0 (the authors' code: NaN)."""
    if reduction == "none":
        return per_token
    weights = mask.to(per_token.dtype)
    if reduction == "token_mean":
        return (per_token * weights).sum() / weights.sum().clamp(min=1.0)
    return (per_token * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
