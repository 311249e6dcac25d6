"""Per-pair preference losses: every objective of the reproduction, in one place.

All losses are pure tensor functions of sequence log-probabilities (summed over the
completion tokens, shape ``[B]``) and return one loss value per pair (shape ``[B]``); the
trainer takes the mean. The single entry point is :func:`pairwise_loss`, which validates the
loss name, the inputs and the parameters before dispatching to the registry :data:`LOSS_SPECS`
(one :class:`LossSpec` per loss).

Sources: ``workflow/docs/paper.md`` (a bare ``§1.x`` below is a section of that page; "paper
Eq. N" / "Section N" is the paper's own numbering) and ``workflow/docs/seed_methods.md``
(§1 AMaPO, §5 TRL's loss implementations).

Notation::

    lr_w = log pi(y_w|x) - log pi_ref(y_w|x)      chosen log-ratio
    lr_l = log pi(y_l|x) - log pi_ref(y_l|x)      rejected log-ratio
    D    = lr_w - lr_l                            (TRL's ``delta_score``; no beta inside)

Parameters (keyword arguments of :func:`pairwise_loss`):

``beta``             inverse temperature beta > 0 (every loss).
``margin``           hinge margin m (also the DPO-hinge alpha), m >= 0.
``delta``            margin-sigmoid truncation threshold delta >= 0.
``label_smoothing``  epsilon in [0, 0.5) (cDPO / EXO / AOT / margin-sigmoid / AMaPO).

Where a loss is a TRL built-in (:data:`TRL_LOSS_TYPE`), the formula and the order of the
floating-point operations follow the installed TRL 1.16 ``DPOTrainer._compute_loss``; the
unit tests check values and gradients against TRL's own code path.

To add a loss: write one function with the signature of :func:`dpo_loss`, add one
:class:`LossSpec` entry to :data:`LOSS_SPECS` (parameters with defaults, reference, whether it
needs lengths, TRL equivalent), and add one test in ``tests/unit/training/test_losses.py`` (see
``workflow/docs/losses.md``). :data:`LOSSES`, :data:`REQUIRED_PARAMS`, :data:`OPTIONAL_PARAMS`
and :data:`TRL_LOSS_TYPE` are derived from :data:`LOSS_SPECS`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "LOSSES",
    "LOSS_SPECS",
    "OPTIONAL_PARAMS",
    "PARAM_NAMES",
    "REQUIRED_PARAMS",
    "TRL_LOSS_TYPE",
    "LossConfigError",
    "LossSpec",
    "amapo_margin",
    "margin_sigmoid_max_label_smoothing",
    "margin_sigmoid_truncation_point",
    "needs_lengths",
    "pairwise_loss",
    "validate_params",
]

EXO_DEFAULT_EPSILON = 1e-3
"""EXO's epsilon when ``label_smoothing`` is 0 (TRL <= 0.28 silently used this value)."""


class LossConfigError(ValueError):
    """An unknown loss name, a missing or invalid parameter, or a missing required input."""


# ---------------------------------------------------------------------------------------------
# helpers


def _logratios(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
) -> tuple[Tensor, Tensor]:
    # Same operation order as TRL's _compute_loss (chosen_logps - ref_chosen_logps).
    return chosen_logps - ref_chosen_logps, rejected_logps - ref_rejected_logps


def _cdpo_form(logits: Tensor, label_smoothing: float) -> Tensor:
    """-(1-eps) log sigma(z) - eps log sigma(-z), in TRL's (v0.16 sigmoid / 1.16 aot) op order."""
    return -F.logsigmoid(logits) * (1 - label_smoothing) - F.logsigmoid(-logits) * label_smoothing


def _lengths(name: str, lengths: Tensor | None, side: str, like: Tensor) -> Tensor:
    if lengths is None:
        raise LossConfigError(
            f"loss {name!r} needs completion lengths: {side}_lengths is missing "
            f"(pass chosen_lengths and rejected_lengths, in tokens)"
        )
    lengths = torch.as_tensor(lengths, device=like.device)
    if lengths.shape != like.shape:
        raise ValueError(
            f"loss {name!r}: {side}_lengths has shape {tuple(lengths.shape)}, "
            f"expected {tuple(like.shape)}"
        )
    # TRL: completion_mask.sum(dim=1).clamp(min=1.0)
    return lengths.to(like.dtype).clamp(min=1.0)


# ---------------------------------------------------------------------------------------------
# the losses (uniform signature; parameters keyword-only)


def dpo_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    *,
    beta: float,
) -> Tensor:
    """DPO, paper Eq. 1 (§1.1): ``-log sigma(beta * D)``.

    Equals TRL 1.16 ``loss_type="sigmoid"`` (which no longer applies label smoothing).
    """
    lr_w, lr_l = _logratios(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    return -F.logsigmoid(beta * (lr_w - lr_l))


def cdpo_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    *,
    beta: float,
    label_smoothing: float,
) -> Tensor:
    """Conservative DPO, paper Eq. 2 (§1.2).

    ``-(1-eps) log sigma(beta D) - eps log sigma(-beta D)``: it is
    TRL <= 0.28's ``sigmoid`` with ``label_smoothing=eps``, and equals :func:`dpo_loss` at eps = 0.
    """
    lr_w, lr_l = _logratios(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    return _cdpo_form(beta * (lr_w - lr_l), label_smoothing)


def dpo_hinge_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    *,
    beta: float,
    margin: float,
) -> Tensor:
    """DPO-hinge (SLiC / RSO), paper Eq. 3 (§1.3): ``relu(m - beta D)``, m = alpha.

    With ``margin=1`` this is TRL's ``loss_type="hinge"`` (``relu(1 - beta * delta_score)``).
    The gradient is exactly 0 once ``beta * D >= m``.
    """
    lr_w, lr_l = _logratios(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    return torch.relu(margin - beta * (lr_w - lr_l))


def ipo_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    *,
    beta: float,
) -> Tensor:
    """IPO (§1.10), TRL's length-normalised form: ``(lr_w/|y_w| - lr_l/|y_l| - 1/(2 beta))**2``.

    Lengths are completion token counts, clamped to >= 1 as TRL does
    (``completion_mask.sum(dim=1).clamp(min=1.0)``). IPO Eq. 17 with tau = beta.
    """
    len_w = _lengths("ipo", chosen_lengths, "chosen", chosen_logps)
    len_l = _lengths("ipo", rejected_lengths, "rejected", rejected_logps)
    lr_w, lr_l = _logratios(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    ipo_delta = lr_w / len_w - lr_l / len_l
    return (ipo_delta - 1 / (2 * beta)) ** 2


def exo_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    *,
    beta: float,
    label_smoothing: float = 0.0,
) -> Tensor:
    """EXO-pref (§1.5; Ji et al. 2024, Eq. 16), TRL's ``exo_pair``.

    ``q_w (log q_w - log(1-eps)) + q_l (log q_l - log eps)`` with ``q_w = sigma(beta D)``,
    ``q_l = sigma(-beta D)``: the KL between the model's two-way softmax and the target
    ``[1-eps, eps]``. ``label_smoothing = 0`` means eps = 1e-3 (TRL <= 0.28 substituted it
    silently; TRL 1.16 raises instead, so the parity test passes eps explicitly).
    """
    eps = label_smoothing if label_smoothing > 0 else EXO_DEFAULT_EPSILON
    lr_w, lr_l = _logratios(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    delta_score = lr_w - lr_l
    qw = torch.sigmoid(beta * delta_score)
    log_qw = F.logsigmoid(beta * delta_score)
    ql = torch.sigmoid(-beta * delta_score)
    log_ql = F.logsigmoid(-beta * delta_score)
    return qw * (log_qw - math.log1p(-eps)) + ql * (log_ql - math.log(eps))


def aot_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    *,
    beta: float,
    label_smoothing: float = 0.0,
) -> Tensor:
    """AOT, paper Eqs. 4-5 (§1.4), TRL's ``aot`` (paired): batch-sorted, cDPO form.

    Sorts the batch of policy margins ``pi_w - pi_l`` and, separately, the reference margins
    ``ref_w - ref_l``; ``d = sorted - sorted_ref``; loss ``-(1-eps) log sigma(beta d) -
    eps log sigma(-beta d)``. The loss couples the batch: entry ``i`` of the result belongs to
    sorted rank ``i``, not to input pair ``i`` (only the mean is meaningful per pair).
    """
    logratios = chosen_logps - rejected_logps
    ref_logratios = ref_chosen_logps - ref_rejected_logps
    logratios_sorted, _ = torch.sort(logratios, dim=0)
    ref_logratios_sorted, _ = torch.sort(ref_logratios, dim=0)
    delta = logratios_sorted - ref_logratios_sorted
    return _cdpo_form(beta * delta, label_smoothing)


def aot_pair_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    *,
    beta: float,
    label_smoothing: float = 0.0,
) -> Tensor:
    """AOT unpaired, paper Eqs. 4-5 (§1.4), TRL's ``aot_unpaired`` (v0.16's ``aot_pair``).

    Sorts the chosen log-ratios and the rejected log-ratios separately,
    ``d = sorted(lr_w) - sorted(lr_l)``; cDPO form on ``beta d``. Batch-coupled like
    :func:`aot_loss` (entry ``i`` is sorted rank ``i``).
    """
    lr_w, lr_l = _logratios(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    chosen_sorted, _ = torch.sort(lr_w, dim=0)
    rejected_sorted, _ = torch.sort(lr_l, dim=0)
    return _cdpo_form(beta * (chosen_sorted - rejected_sorted), label_smoothing)


def apo_zero_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    *,
    beta: float,
) -> Tensor:
    """APO-zero, paper Eq. 7 / Eq. 9 (§1.6), TRL's form.

    ``(1 - sigma(beta lr_w)) + sigma(beta lr_l)``.

    The paper's ``-sigma(r_w) + sigma(r_l)`` (``r = beta * lr``, Eq. 6) differs by the constant 1,
    which changes no gradient.
    """
    lr_w, lr_l = _logratios(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    return (1 - torch.sigmoid(beta * lr_w)) + torch.sigmoid(beta * lr_l)


def apo_down_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    *,
    beta: float,
) -> Tensor:
    """APO-down, paper Eq. 8 (§1.6), TRL's form ``sigma(beta lr_w) + (1 - sigma(beta D))``."""
    lr_w, lr_l = _logratios(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    return torch.sigmoid(beta * lr_w) + (1 - torch.sigmoid(beta * (lr_w - lr_l)))


def margin_sigmoid_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    *,
    beta: float,
    delta: float,
    label_smoothing: float,
) -> Tensor:
    """Margin-sigmoid ("Adaptive Margin-Sigmoid", §1.7; paper Sections 4.1 / 6.4.1).

    ``(1-eps) relu(l+ - delta) + eps relu(l- - delta)`` with ``l+ = -log sigma(beta D)`` and
    ``l- = -log sigma(-beta D)``: cDPO with each branch hard-truncated, so a branch contributes
    exactly zero loss and gradient once it is <= delta. With delta = 0 it equals
    :func:`cdpo_loss` (both branches are >= 0).
    """
    lr_w, lr_l = _logratios(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    logits = beta * (lr_w - lr_l)
    loss_pos = -F.logsigmoid(logits)
    loss_neg = -F.logsigmoid(-logits)
    return (1 - label_smoothing) * torch.relu(loss_pos - delta) + label_smoothing * torch.relu(
        loss_neg - delta
    )


def margin_sigmoid_truncation_point(delta: float) -> float:
    """The ``beta * D`` at and beyond which margin-sigmoid's preference branch is cut off.

    ``-log sigma(z) <= delta``  <=>  ``z >= z_delta = -log(exp(delta) - 1)`` (2.252 at
    delta = 0.1); ``+inf`` at delta = 0, where nothing is truncated. Derivation:
    ``workflow/docs/losses.md`` ("margin_sigmoid: when does it truncate?").
    """
    if delta < 0:
        raise LossConfigError(f"margin-sigmoid: delta must be >= 0, got {delta}")
    return math.inf if delta == 0 else -math.log(math.expm1(delta))


def margin_sigmoid_max_label_smoothing(delta: float) -> float:
    """Largest epsilon (exclusive) for which pairs can reach the truncation point.

    The untruncated loss is cDPO, whose per-pair optimum is ``z* = log((1 - eps) / eps)``;
    gradient descent stops there. Pairs get to ``z_delta`` only if ``z* > z_delta``, i.e.
    ``eps < 1 / (1 + exp(z_delta)) = 1 - exp(-delta)`` (0.0952 at delta = 0.1). Above it the
    variant behaves as cDPO (shifted by a constant) on every pair that matters.
    """
    if delta < 0:
        raise LossConfigError(f"margin-sigmoid: delta must be >= 0, got {delta}")
    return -math.expm1(-delta)


def apo_hinge_zero_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    *,
    beta: float,
    margin: float,
) -> Tensor:
    """APO-hinge-zero, paper Eq. 11 (§1.8): ``relu(m - beta lr_w) + relu(m + beta lr_l)``.

    beta is applied once (not beta**2 as a literal reading of Eq. 10 + 11 would give): the
    paper's zero-gradient condition ``|r| >= m / beta`` and its Section 6.2's
    ``r = log pi - log pi_ref`` only make sense this way (``workflow/docs/paper.md`` §1.8).
    The chosen term's gradient is exactly 0 once ``beta lr_w >= m``; the rejected term's once
    ``beta lr_l <= -m``.
    """
    lr_w, lr_l = _logratios(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    return torch.relu(margin - beta * lr_w) + torch.relu(margin + beta * lr_l)


def apo_hinge_softplus_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor,
    ref_rejected_logps: Tensor,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    *,
    beta: float,
    margin: float,
) -> Tensor:
    """APO-hinge-softplus, paper Eq. 12 (§1.9).

    ``softplus(m - beta lr_w) + softplus(m + beta lr_l)``, softplus(x) = log(1 + e^x).

    Same single-beta reading as :func:`apo_hinge_zero_loss`. The gradient decays exponentially
    but is never exactly zero (except by float underflow far in the tail).
    """
    lr_w, lr_l = _logratios(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)
    return F.softplus(margin - beta * lr_w) + F.softplus(margin + beta * lr_l)


def amapo_margin(margins: Tensor, beta: float) -> Tensor:
    """AMaPO's adaptive margin gamma, no gradient (workflow/docs/seed_methods.md §1).

    Mirrors the authors' ``amapo_loss``. ``margins`` are the length-normalised policy margins
    ``Delta_i``. With ``mu``, ``sigma`` the batch mean and unbiased standard deviation
    (detached)::

        gamma_i = beta * exp(((mu - Delta_i) / sigma) * mu)   if Delta_i < mu   else 0

    Degenerate batches (fewer than 2 pairs, all ``Delta_i`` equal, or a zero / non-finite
    sigma) get gamma = 0 everywhere. The reference code would divide by a zero (or NaN)
    sigma there, and rounding in the mean can put every pair just below ``mu``.
    """
    d = margins.detach()
    if d.numel() < 2:
        return torch.zeros_like(d)
    mu = d.mean()
    sigma = d.std()  # unbiased, as torch.std in the AMaPO code
    degenerate = (d.max() == d.min()) | ~torch.isfinite(sigma) | (sigma == 0)
    below = (d - mu < 0) & ~degenerate
    safe_sigma = torch.where(degenerate, torch.ones_like(sigma), sigma)
    expo = torch.where(below, ((mu - d) / safe_sigma) * mu, torch.zeros_like(d))
    return beta * torch.where(below, torch.exp(expo), torch.zeros_like(d))


def amapo_loss(
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor | None = None,
    ref_rejected_logps: Tensor | None = None,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    *,
    beta: float,
    label_smoothing: float = 0.0,
) -> Tensor:
    """AMaPO (arXiv 2511.09385; workflow/docs/seed_methods.md §1), reference-free.

    Mirrors the authors' ``amapo_loss``.
    ``Delta_i = pi_w / |y_w| - pi_l / |y_l|`` (average token log-probs, SimPO-style; the
    reference log-probs are ignored), ``gamma_i`` from :func:`amapo_margin` (no gradient), and
    ``-(1-eps) log sigma(beta Delta_i - gamma_i) - eps log sigma(-(beta Delta_i - gamma_i))``.
    Batch statistics are over the tensors given (one process; the authors all-gather them).
    """
    len_w = _lengths("amapo", chosen_lengths, "chosen", chosen_logps)
    len_l = _lengths("amapo", rejected_lengths, "rejected", rejected_logps)
    margins = chosen_logps / len_w - rejected_logps / len_l
    gamma = amapo_margin(margins, beta)
    return _cdpo_form(beta * margins - gamma, label_smoothing)


# ---------------------------------------------------------------------------------------------
# registry

LossFn = Callable[..., Tensor]

PARAM_NAMES: tuple[str, ...] = ("beta", "margin", "delta", "label_smoothing")
"""Every loss parameter :func:`validate_params` knows how to range-check."""


@dataclass(frozen=True)
class LossSpec:
    """Everything the workflow knows about one loss: adding a loss is one :data:`LOSS_SPECS` entry.

    Attributes:
        name: the config's ``loss:`` value.
        fn: the per-pair loss, with the uniform signature of :func:`dpo_loss`.
        params: parameter -> default, in the order error messages list them; ``None`` marks a
            parameter the config must give. Exactly ``fn``'s keyword-only arguments, each a
            name in :data:`PARAM_NAMES`.
        reference: the paper / source of the formula (``workflow/docs/paper.md`` section).
        needs_lengths: ``fn`` needs ``chosen_lengths`` / ``rejected_lengths``.
        reference_free: ``fn`` ignores the reference log-probs (they may be ``None``).
        trl_loss_type: the TRL 1.16 ``DPOConfig.loss_type`` computing the same loss, if any (the
            TRL parity test then covers it).
    """

    name: str
    fn: LossFn
    params: Mapping[str, float | None]
    reference: str
    needs_lengths: bool = False
    reference_free: bool = False
    trl_loss_type: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))
        unknown = [p for p in self.params if p not in PARAM_NAMES]
        if unknown:
            raise ValueError(
                f"LossSpec {self.name!r}: unknown parameter(s) {unknown}; add them to "
                f"PARAM_NAMES and _check_value"
            )

    @property
    def required(self) -> tuple[str, ...]:
        """The parameters a config must give, in order."""
        return tuple(p for p, default in self.params.items() if default is None)

    @property
    def optional(self) -> dict[str, float]:
        """The parameters with a default, ``{parameter: default}``."""
        return {p: default for p, default in self.params.items() if default is not None}


LOSS_SPECS: dict[str, LossSpec] = {
    spec.name: spec
    for spec in (
        LossSpec(
            "dpo",
            dpo_loss,
            {"beta": None},
            "paper Eq. 1 (workflow/docs/paper.md §1.1)",
            trl_loss_type="sigmoid",
        ),
        LossSpec(
            "cdpo",
            cdpo_loss,
            {"beta": None, "label_smoothing": None},
            "paper Eq. 2 (workflow/docs/paper.md §1.2)",
        ),
        LossSpec(
            "dpo_hinge",
            dpo_hinge_loss,
            {"beta": None, "margin": None},
            "paper Eq. 3 (workflow/docs/paper.md §1.3; SLiC / RSO)",
            trl_loss_type="hinge",  # only with margin = 1
        ),
        LossSpec(
            "ipo",
            ipo_loss,
            {"beta": None},
            "IPO Eq. 17, TRL's length-normalised form (workflow/docs/paper.md §1.10)",
            needs_lengths=True,
            trl_loss_type="ipo",
        ),
        LossSpec(
            "exo",
            exo_loss,
            {"beta": None, "label_smoothing": 0.0},  # 0 means eps = 1e-3
            "Ji et al. 2024 Eq. 16, TRL's exo_pair (workflow/docs/paper.md §1.5)",
            trl_loss_type="exo_pair",
        ),
        LossSpec(
            "aot",
            aot_loss,
            {"beta": None, "label_smoothing": 0.0},
            "paper Eqs. 4-5, paired (workflow/docs/paper.md §1.4)",
            trl_loss_type="aot",
        ),
        LossSpec(
            "aot_pair",
            aot_pair_loss,
            {"beta": None, "label_smoothing": 0.0},
            "paper Eqs. 4-5, unpaired (workflow/docs/paper.md §1.4)",
            trl_loss_type="aot_unpaired",
        ),
        LossSpec(
            "apo_zero",
            apo_zero_loss,
            {"beta": None},
            "paper Eqs. 7 / 9 (workflow/docs/paper.md §1.6)",
            trl_loss_type="apo_zero",
        ),
        LossSpec(
            "apo_down",
            apo_down_loss,
            {"beta": None},
            "paper Eq. 8 (workflow/docs/paper.md §1.6)",
            trl_loss_type="apo_down",
        ),
        LossSpec(
            "margin_sigmoid",
            margin_sigmoid_loss,
            {"beta": None, "delta": None, "label_smoothing": None},
            "paper Sections 4.1 / 6.4.1 (workflow/docs/paper.md §1.7)",
        ),
        LossSpec(
            "apo_hinge_zero",
            apo_hinge_zero_loss,
            {"beta": None, "margin": None},
            "paper Eq. 11 (workflow/docs/paper.md §1.8)",
        ),
        LossSpec(
            "apo_hinge_softplus",
            apo_hinge_softplus_loss,
            {"beta": None, "margin": None},
            "paper Eq. 12 (workflow/docs/paper.md §1.9)",
        ),
        LossSpec(
            "amapo",
            amapo_loss,
            {"beta": None, "label_smoothing": 0.0},
            "AMaPO, arXiv 2511.09385 (workflow/docs/seed_methods.md §1)",
            needs_lengths=True,
            reference_free=True,
        ),
    )
}
"""Loss name -> :class:`LossSpec`: the one registry of losses. Everything below derives from it."""

# Read-only views of LOSS_SPECS, kept for their importers (edit LOSS_SPECS, not these).

LOSSES: dict[str, LossFn] = {name: spec.fn for name, spec in LOSS_SPECS.items()}
"""Loss name -> per-pair loss function (uniform signature, parameters keyword-only)."""

REQUIRED_PARAMS: dict[str, tuple[str, ...]] = {
    name: spec.required for name, spec in LOSS_SPECS.items()
}
"""Loss name -> parameters a config must give (a variant missing one is a config error)."""

OPTIONAL_PARAMS: dict[str, dict[str, float]] = {
    name: spec.optional for name, spec in LOSS_SPECS.items() if spec.optional
}
"""Loss name -> {parameter: default} it also accepts. Any other parameter is an error."""

TRL_LOSS_TYPE: dict[str, str] = {
    name: spec.trl_loss_type for name, spec in LOSS_SPECS.items() if spec.trl_loss_type is not None
}
"""Our name -> TRL 1.16 ``DPOConfig.loss_type`` computing the same loss (where one exists)."""


def _check_name(name: str) -> LossSpec:
    spec = LOSS_SPECS.get(name)
    if spec is None:
        raise LossConfigError(f"unknown loss {name!r}; known losses: {', '.join(sorted(LOSSES))}")
    return spec


def needs_lengths(name: str) -> bool:
    """Whether loss ``name`` needs ``chosen_lengths`` / ``rejected_lengths`` (ipo, amapo)."""
    return _check_name(name).needs_lengths


def finite_number(
    what: str, value: Any, *, minimum: float | None = None, strict: bool = False
) -> float:
    """``value`` as a finite float, at least (``strict``: above) ``minimum``, or a
    :class:`LossConfigError` that starts with ``what`` (one check for every objective's knobs)."""
    if isinstance(value, bool | str):
        raise LossConfigError(f"{what} must be a number, got {value!r}")
    try:
        value = float(value)  # int, float, numpy scalar, one-element tensor
    except (TypeError, ValueError, RuntimeError):
        raise LossConfigError(f"{what} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise LossConfigError(f"{what} must be finite, got {value}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise LossConfigError(f"{what} must be {'>' if strict else '>='} {minimum:g}, got {value}")
    return value


def _check_value(name: str, param: str, value: Any) -> float:
    value = finite_number(f"loss {name!r}: parameter {param!r}", value)
    if param == "beta" and value <= 0:
        raise LossConfigError(f"loss {name!r}: beta must be > 0, got {value}")
    if param in ("margin", "delta") and value < 0:
        raise LossConfigError(f"loss {name!r}: {param} must be >= 0, got {value}")
    if param == "label_smoothing" and not 0 <= value < 0.5:
        raise LossConfigError(f"loss {name!r}: label_smoothing must be in [0, 0.5), got {value}")
    return value


def validate_params(name: str, params: Mapping[str, Any]) -> dict[str, float]:
    """Check ``params`` for loss ``name``; return them with optional defaults filled in.

    Raises :class:`LossConfigError` for an unknown loss, a missing required parameter, a
    parameter the loss does not use, or an out-of-range value. ``None`` counts as absent.
    """
    spec = _check_name(name)
    given = {k: v for k, v in params.items() if v is not None}
    required = spec.required
    optional = spec.optional
    missing = [p for p in required if p not in given]
    if missing:
        raise LossConfigError(
            f"loss {name!r} is missing required parameter(s) {', '.join(missing)} "
            f"(requires {', '.join(required)})"
        )
    unused = sorted(set(given) - set(required) - set(optional))
    if unused:
        accepted = ", ".join((*required, *optional))
        raise LossConfigError(
            f"loss {name!r} does not use parameter(s) {', '.join(unused)} (accepts {accepted})"
        )
    resolved = dict(optional)
    resolved.update({k: _check_value(name, k, v) for k, v in given.items()})
    return resolved


def pairwise_loss(
    name: str,
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor | None,
    ref_rejected_logps: Tensor | None,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    **params: Any,
) -> Tensor:
    """Per-pair loss ``[B]`` of loss ``name`` (see :data:`LOSS_SPECS`).

    Args:
        name: a key of :data:`LOSS_SPECS`.
        chosen_logps, rejected_logps: policy sequence log-probs (sum over completion tokens), [B].
        ref_chosen_logps, ref_rejected_logps: reference log-probs, [B]; may be None only for the
            reference-free ``amapo``.
        chosen_lengths, rejected_lengths: completion token counts, [B]; required by ``ipo`` and
            ``amapo`` (:attr:`LossSpec.needs_lengths`), ignored otherwise.
        **params: ``beta``, ``margin``, ``delta``, ``label_smoothing`` as the loss requires
            (:attr:`LossSpec.params`).

    Raises:
        LossConfigError: unknown name, missing / unused / invalid parameter, missing lengths or
            reference log-probs.
        ValueError: tensors of mismatching shapes or non-floating dtype.
    """
    resolved = validate_params(name, params)
    spec = LOSS_SPECS[name]
    if spec.reference_free:
        if ref_chosen_logps is None:
            ref_chosen_logps = torch.zeros_like(chosen_logps)
        if ref_rejected_logps is None:
            ref_rejected_logps = torch.zeros_like(rejected_logps)
    refs = {"ref_chosen_logps": ref_chosen_logps, "ref_rejected_logps": ref_rejected_logps}
    for side, ref in refs.items():
        if ref is None:
            raise LossConfigError(f"loss {name!r} needs reference log-probs: {side} is missing")
    tensors = {
        "chosen_logps": chosen_logps,
        "rejected_logps": rejected_logps,
        "ref_chosen_logps": ref_chosen_logps,
        "ref_rejected_logps": ref_rejected_logps,
    }
    for key, t in tensors.items():
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise ValueError(f"loss {name!r}: {key} must be a floating-point tensor")
        if t.dim() != 1 or t.shape != chosen_logps.shape:
            raise ValueError(
                f"loss {name!r}: {key} has shape {tuple(t.shape)}; all log-prob inputs must be "
                f"1-D of the same shape {tuple(chosen_logps.shape)}"
            )
    if spec.needs_lengths:
        for side, lengths in (("chosen", chosen_lengths), ("rejected", rejected_lengths)):
            _lengths(name, lengths, side, chosen_logps)
    return spec.fn(
        chosen_logps,
        rejected_logps,
        ref_chosen_logps,
        ref_rejected_logps,
        chosen_lengths,
        rejected_lengths,
        **resolved,
    )
