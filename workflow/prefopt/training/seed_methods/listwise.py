"""Multi-preference lambda-weighted listwise DPO (lambda-DPO, arXiv 2506.19780).

Pure tensor functions, in the style of :mod:`prefopt.training.losses`; the source is
``workflow/docs/seed_methods.md`` §2 (a bare ``§2.x`` below is a section of that page), which
summarises the authors' repository ``yuhui15/Multi-Preference-Lambda-weighted-DPO``
(``train/dpo/trainer.py`` and ``data/converter.py``). The formulas were not checked against the
paper's own equations; they are the authors' README / code ones.

Notation: a prompt ``x`` has ``N`` candidate responses ``y_1..y_N`` and ``A`` preference aspects
(UltraFeedback: helpfulness, honesty, instruction_following, truthfulness, in that order).

``r_i = beta * (log pi(y_i|x) / |y_i| - log pi_ref(y_i|x) / |y_i|)``
    the beta-scaled, length-normalised log-ratio (``length_normalize=False`` drops the ``/|y_i|``).
``p*_ik = softmax_i(rating_ik / T)``
    the target distribution of aspect ``k`` over the candidates (:func:`aspect_targets`, T = 1).
``L^(k) = - sum_i p*_ik log softmax_i(r)_i``
    one aspect's listwise (ListNet / Plackett-Luce top-one) cross-entropy.
``L = sum_k lambda_k L^(k)``, lambda on the simplex
    the lambda-weighted total (:func:`listwise_dpo_loss`); lambda is drawn per training step
    (:func:`sample_lambdas`).

Because the model's distribution ``softmax(r)`` does not depend on ``k``, the total equals one
cross-entropy against the lambda-mixed target ``sum_k lambda_k p*_k``; the code computes it as the
sum above (and so does :func:`listwise_dpo_loss`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from prefopt.training.losses import LossConfigError, finite_number

__all__ = [
    "ASPECTS",
    "LAMBDA_TABLE",
    "LAMBDA_TABLE_PROBS",
    "LAMBDA_TABLE_PUBLISHED",
    "LAMBDA_SCHEMES",
    "ListwiseDataError",
    "aspect_targets",
    "listwise_dpo_loss",
    "sample_lambdas",
    "ultrafeedback_to_listwise",
    "ultrafeedback_to_listwise_with_stats",
]

ASPECTS: tuple[str, ...] = ("helpfulness", "honesty", "instruction_following", "truthfulness")
"""UltraFeedback's four fine-grained aspects, in the order of the lambda vectors."""

TARGET_TEMPERATURE = 1.0
"""T in ``p* = softmax(rating / T)``: 1.0 in the authors' converter (§2.1)."""

NA_RATING = 1.0
"""The value the authors' converter gives a missing or ``"N/A"`` rating (the lowest rating)."""

LAMBDA_TABLE_PUBLISHED: tuple[tuple[tuple[float, float, float, float], float], ...] = (
    ((0.212, 0.334, 0.245, 0.209), 0.095),
    ((0.126, 0.237, 0.131, 0.507), 0.075),
    ((0.542, 0.079, 0.256, 0.123), 0.117),
    ((0.233, 0.721, 0.020, 0.025), 0.185),
    ((0.004, 0.334, 0.281, 0.381), 0.067),
    ((0.320, 0.069, 0.513, 0.099), 0.082),
    ((0.236, 0.155, 0.358, 0.251), 0.093),
    ((0.141, 0.110, 0.701, 0.048), 0.110),
    ((0.070, 0.198, 0.388, 0.344), 0.081),
    ((0.090, 0.139, 0.306, 0.465), 0.095),
)
"""The authors' fixed 10-row lambda table (July 2025, commit ``8c84345``): (lambda, probability).

Lambda order is :data:`ASPECTS`. The values are printed to 3 decimals, so three rows sum to
1.001 / 0.999 rather than 1; the probabilities sum to 1.000.
"""

LAMBDA_TABLE: Tensor = torch.tensor([row for row, _ in LAMBDA_TABLE_PUBLISHED], dtype=torch.float64)
LAMBDA_TABLE = LAMBDA_TABLE / LAMBDA_TABLE.sum(dim=1, keepdim=True)
"""``[10, 4]`` float64: :data:`LAMBDA_TABLE_PUBLISHED`'s rows renormalised to sum to exactly 1.

The authors' code uses the printed rows as they are (a <= 0.1 % scale difference per row).
"""

LAMBDA_TABLE_PROBS: Tensor = torch.tensor(
    [p for _, p in LAMBDA_TABLE_PUBLISHED], dtype=torch.float64
)
LAMBDA_TABLE_PROBS = LAMBDA_TABLE_PROBS / LAMBDA_TABLE_PROBS.sum()
"""``[10]`` float64: the row probabilities, normalised by their total (as the authors' sampler)."""

LAMBDA_SCHEMES: tuple[str, ...] = ("dirichlet", "table", "uniform")


class ListwiseDataError(ValueError):
    """A malformed UltraFeedback row (the message names the row index and the field)."""


# ---------------------------------------------------------------------------------------------
# targets and the loss


def aspect_targets(ratings: Tensor, temperature: float = TARGET_TEMPERATURE) -> Tensor:
    """Per-aspect target distributions ``p*_ik = softmax_i(rating_ik / T)`` (§2.1, §2.3).

    Args:
        ratings: ``[B, N, A]`` ratings of ``N`` candidates on ``A`` aspects (UltraFeedback: 1-5;
            convert ``"N/A"`` first, e.g. with :func:`ultrafeedback_to_listwise`).
        temperature: T > 0; the authors use T = 1.0 (:data:`TARGET_TEMPERATURE`).

    Returns:
        ``[B, N, A]``: for every row and aspect a distribution over the ``N`` candidates (sums to 1
        over dim 1). Equal ratings get equal mass; T -> 0 approaches the one-hot argmax.
    """
    finite_number("aspect_targets: temperature", temperature, minimum=0, strict=True)
    if not isinstance(ratings, Tensor) or not ratings.is_floating_point():
        raise ValueError("aspect_targets: ratings must be a floating-point tensor [B, N, A]")
    if ratings.dim() != 3:
        raise ValueError(
            f"aspect_targets: ratings has shape {tuple(ratings.shape)}, expected [B, N, A]"
        )
    if not torch.isfinite(ratings).all():
        raise ValueError("aspect_targets: ratings contain NaN or inf (convert 'N/A' first)")
    return torch.softmax(ratings / temperature, dim=1)


def listwise_dpo_loss(
    policy_logps: Tensor,
    ref_logps: Tensor,
    lengths: Tensor | None,
    targets: Tensor,
    lambdas: Tensor,
    beta: float,
    length_normalize: bool = True,
) -> Tensor:
    """Lambda-weighted listwise DPO, one loss per prompt (§2.1; README equation).

    ``r_i = beta * (pi_i - ref_i) / |y_i|`` (or ``beta * (pi_i - ref_i)`` without length
    normalisation) and::

        loss_b = sum_k lambda_k * ( - sum_i p*_bik * log_softmax_i(r_b)_i )

    i.e. the README's ``L^(k) = -sum_i p*_i^(k) log[(pi/pi_ref)^beta(y_i) / sum_j (pi/pi_ref)^beta
    (y_j)]`` with the authors' length-normalised log-probs, weighted by lambda. With N = 2, one
    aspect, a one-hot target on the chosen response and ``length_normalize=False`` it is DPO:
    ``-log_softmax([b lr_w, b lr_l])_0 = -log sigma(b (lr_w - lr_l))``.

    Args:
        policy_logps, ref_logps: ``[B, N]`` sequence log-probs, **summed** over completion tokens
            (as in :mod:`prefopt.training.losses`; the normalisation happens here).
        lengths: ``[B, N]`` completion token counts (clamped to >= 1); required when
            ``length_normalize`` (the authors' default), ignored otherwise.
        targets: ``[B, N, A]`` per-aspect target distributions (:func:`aspect_targets`);
            non-negative, each ``targets[b, :, k]`` summing to 1.
        lambdas: ``[A]`` (one lambda for the batch: the authors sample one per step) or
            ``[B, A]``; non-negative (a lambda off the simplex just rescales the loss).
        beta: beta > 0 (the authors: 0.1).
        length_normalize: divide each log-prob by its length (the authors' code does).

    Returns:
        ``[B]`` per-prompt losses; the trainer takes the mean (as the authors' ``.mean()``).

    Differences from the authors' code: it adds 1e-10 to every target probability (a
    ``< 1e-9`` shift of the loss) and does not clamp zero lengths (they would give NaN).
    """
    finite_number("listwise_dpo: beta", beta, minimum=0, strict=True)
    tensors = {"policy_logps": policy_logps, "ref_logps": ref_logps, "targets": targets}
    for key, t in tensors.items():
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise ValueError(f"listwise_dpo: {key} must be a floating-point tensor")
    if policy_logps.dim() != 2 or policy_logps.shape[1] < 2:
        raise ValueError(
            f"listwise_dpo: policy_logps has shape {tuple(policy_logps.shape)}, "
            "expected [B, N] with N >= 2 candidates"
        )
    b, n = policy_logps.shape
    if ref_logps.shape != policy_logps.shape:
        raise ValueError(
            f"listwise_dpo: ref_logps has shape {tuple(ref_logps.shape)}, expected {(b, n)}"
        )
    if targets.dim() != 3 or targets.shape[:2] != (b, n):
        raise ValueError(
            f"listwise_dpo: targets has shape {tuple(targets.shape)}, expected [B={b}, N={n}, A]"
        )
    a = targets.shape[2]
    if (targets < 0).any() or not torch.isfinite(targets).all():
        raise ValueError("listwise_dpo: targets must be finite and non-negative")
    sums = targets.sum(dim=1)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-5, rtol=0):
        raise ValueError(
            "listwise_dpo: every targets[b, :, k] must sum to 1 over the N candidates "
            f"(got sums in [{sums.min().item():.6g}, {sums.max().item():.6g}])"
        )
    lam = _check_lambdas(lambdas, b, a).to(policy_logps.dtype)

    logratios = policy_logps - ref_logps
    if length_normalize:
        if lengths is None:
            raise LossConfigError(
                "listwise_dpo with length_normalize=True needs lengths [B, N] (token counts)"
            )
        lengths = torch.as_tensor(lengths, device=policy_logps.device)
        if lengths.shape != policy_logps.shape:
            raise ValueError(
                f"listwise_dpo: lengths has shape {tuple(lengths.shape)}, expected {(b, n)}"
            )
        logratios = logratios / lengths.to(policy_logps.dtype).clamp(min=1.0)
    rewards = beta * logratios  # [B, N]
    log_q = F.log_softmax(rewards, dim=1)  # [B, N], the model's top-one distribution
    per_aspect = -(targets.to(log_q.dtype) * log_q.unsqueeze(2)).sum(dim=1)  # [B, A]
    return (lam * per_aspect).sum(dim=1)


def _check_lambdas(lambdas: Tensor, b: int, a: int) -> Tensor:
    lam = torch.as_tensor(lambdas)
    if not lam.is_floating_point():
        lam = lam.to(torch.float64)
    if lam.shape == (a,):
        lam = lam.unsqueeze(0)
    elif lam.shape != (b, a):
        raise ValueError(
            f"listwise_dpo: lambdas has shape {tuple(lam.shape)}, "
            f"expected [A={a}] or [B={b}, A={a}]"
        )
    if not torch.isfinite(lam).all() or (lam < 0).any():
        raise LossConfigError("listwise_dpo: lambdas must be finite and non-negative")
    return lam


# ---------------------------------------------------------------------------------------------
# lambda sampling


def sample_lambdas(
    n_aspects: int,
    generator: torch.Generator,
    scheme: str = "dirichlet",
    alpha: float = 1.0,
    size: int | None = None,
) -> Tensor:
    """Draw lambda on the simplex Delta^A (§2.1: ``lambda ~ P(lambda)``), float64.

    Schemes:

    ``"dirichlet"``  Dirichlet(alpha, ..., alpha); the README's example of ``P(lambda)``
                     (alpha = 1 is uniform on the simplex). Gamma variates by Marsaglia-Tsang from
                     ``generator`` only, so a seeded generator gives the same draws everywhere.
    ``"table"``      a row of :data:`LAMBDA_TABLE` drawn with :data:`LAMBDA_TABLE_PROBS` (the
                     authors' July-2025 sampler); needs ``n_aspects == 4``.
    ``"uniform"``    the constant 1/A (the authors' code before 2025-07-14).

    Args:
        n_aspects: A >= 1.
        generator: a seeded ``torch.Generator`` (CPU); the only source of randomness.
        scheme: one of :data:`LAMBDA_SCHEMES`.
        alpha: Dirichlet concentration > 0 (``"dirichlet"`` only).
        size: ``None`` for one ``[A]`` vector, or an int for ``[size, A]`` independent draws.

    Returns:
        ``[A]`` or ``[size, A]`` float64, non-negative, rows summing to 1.
    """
    if isinstance(n_aspects, bool) or not isinstance(n_aspects, int) or n_aspects < 1:
        raise LossConfigError(f"sample_lambdas: n_aspects must be an int >= 1, got {n_aspects!r}")
    if not isinstance(generator, torch.Generator):
        raise LossConfigError("sample_lambdas: generator must be a torch.Generator (seeded)")
    if scheme not in LAMBDA_SCHEMES:
        raise LossConfigError(
            f"sample_lambdas: unknown scheme {scheme!r}; known: {', '.join(LAMBDA_SCHEMES)}"
        )
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise LossConfigError(f"sample_lambdas: size must be None or an int >= 1, got {size!r}")
    m = 1 if size is None else size
    if scheme == "uniform":
        out = torch.full((m, n_aspects), 1.0 / n_aspects, dtype=torch.float64)
    elif scheme == "table":
        if n_aspects != LAMBDA_TABLE.shape[1]:
            raise LossConfigError(
                f"sample_lambdas: scheme 'table' has {LAMBDA_TABLE.shape[1]} aspects "
                f"({', '.join(ASPECTS)}), got n_aspects={n_aspects}"
            )
        idx = torch.multinomial(LAMBDA_TABLE_PROBS, m, replacement=True, generator=generator)
        out = LAMBDA_TABLE[idx].clone()
    else:
        alpha = finite_number("sample_lambdas: alpha", alpha, minimum=0, strict=True)
        g = _gamma(alpha, (m, n_aspects), generator)
        out = g / g.sum(dim=1, keepdim=True)
    return out[0] if size is None else out


def _gamma(alpha: float, shape: tuple[int, int], generator: torch.Generator) -> Tensor:
    """Gamma(alpha, 1) variates (Marsaglia & Tsang 2000) from ``generator`` only, float64."""
    boost = alpha < 1.0  # Gamma(a) = Gamma(a + 1) * U**(1/a)
    a = alpha + 1.0 if boost else alpha
    d = a - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    out = torch.empty(shape, dtype=torch.float64)
    todo = torch.ones(shape, dtype=torch.bool)
    while todo.any():
        k = int(todo.sum())
        x = torch.randn(k, generator=generator, dtype=torch.float64)
        u = torch.rand(k, generator=generator, dtype=torch.float64)
        v = (1.0 + c * x) ** 3
        ok = (v > 0) & (torch.log(u) < 0.5 * x**2 + d - d * v + d * torch.log(v.clamp(min=1e-300)))
        vals = out[todo]
        vals[ok] = (d * v)[ok]
        out[todo] = vals
        still = todo.clone()
        still[todo] = ~ok
        todo = still
    if boost:
        u = torch.rand(shape, generator=generator, dtype=torch.float64)
        out = out * u ** (1.0 / alpha)
    # Underflow guard for very small alpha: a row of zeros would give 0/0.
    return out.clamp(min=torch.finfo(torch.float64).tiny)


# ---------------------------------------------------------------------------------------------
# data: openbmb/UltraFeedback rows -> listwise rows


def ultrafeedback_to_listwise(
    rows: Iterable[Mapping[str, Any]],
    *,
    na_rating: float | None = NA_RATING,
    min_candidates: int = 2,
    n_candidates: int | None = None,
) -> list[dict[str, Any]]:
    """Convert ``openbmb/UltraFeedback`` rows to ``{prompt, responses, ratings}`` (see below).

    Shorthand for ``ultrafeedback_to_listwise_with_stats(...)[0]``.
    """
    return ultrafeedback_to_listwise_with_stats(
        rows, na_rating=na_rating, min_candidates=min_candidates, n_candidates=n_candidates
    )[0]


def ultrafeedback_to_listwise_with_stats(
    rows: Iterable[Mapping[str, Any]],
    *,
    na_rating: float | None = NA_RATING,
    min_candidates: int = 2,
    n_candidates: int | None = None,
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Convert rows in the real ``openbmb/UltraFeedback`` schema to listwise rows, with counts.

    Input row: ``{"instruction": str, "completions": [{"model": str, "response": str,
    "annotations": {aspect: {"Rating": "1".."5" | "N/A", ...}, ...}, ...}, ...], ...}`` with the
    four aspects of :data:`ASPECTS` (other keys, e.g. ``source``, ``models``, ``Rationale``, are
    ignored). Output row: ``{"prompt": str, "responses": [N str], "ratings": [N][4] float,
    "models": [N str]}`` with ratings in :data:`ASPECTS` order.

    Args:
        rows: the input rows (any iterable of mappings, e.g. parsed JSONL lines).
        na_rating: the value for an ``"N/A"`` (or ``None`` / missing ``Rating``) rating. The
            default 1.0 is the authors' converter's choice; ``None`` drops every row that has one.
        min_candidates: rows with fewer completions are dropped (a list needs >= 2).
        n_candidates: if given, rows with a different number of completions are dropped (the
            authors' trainer reshapes to exactly 4 per prompt).

    Returns:
        ``(rows_out, stats)``; ``stats`` counts ``rows_in``, ``rows_out``, ``na_ratings`` (N/A
        ratings replaced, or found in dropped rows when ``na_rating`` is None),
        ``dropped_too_few_candidates``, ``dropped_wrong_candidate_count``, ``dropped_na``.

    Raises:
        ListwiseDataError: a malformed row (not a mapping, no string ``instruction``, no list
            ``completions``, a completion without a string ``response`` or without an aspect, a
            rating that is neither a number in [1, 5] nor ``"N/A"``); the message names the row
            index (0-based position in ``rows``), the completion index and the aspect.
    """
    if na_rating is not None:
        na_rating = float(na_rating)
        if not math.isfinite(na_rating):
            raise LossConfigError("ultrafeedback_to_listwise: na_rating must be finite or None")
    if min_candidates < 2:
        raise LossConfigError(
            f"ultrafeedback_to_listwise: min_candidates must be >= 2, got {min_candidates}"
        )
    stats = {
        "rows_in": 0,
        "rows_out": 0,
        "na_ratings": 0,
        "dropped_too_few_candidates": 0,
        "dropped_wrong_candidate_count": 0,
        "dropped_na": 0,
    }
    out: list[dict[str, Any]] = []
    for i, row in enumerate(rows):
        stats["rows_in"] += 1
        where = f"ultrafeedback row {i}"
        if not isinstance(row, Mapping):
            raise ListwiseDataError(f"{where}: expected a mapping, got {type(row).__name__}")
        prompt = row.get("instruction")
        if not isinstance(prompt, str):
            raise ListwiseDataError(f"{where}: 'instruction' must be a string, got {prompt!r:.60}")
        completions = row.get("completions")
        if not isinstance(completions, Sequence) or isinstance(completions, str):
            raise ListwiseDataError(f"{where}: 'completions' must be a list")
        responses, models, ratings = [], [], []
        n_na = 0
        for j, comp in enumerate(completions):
            cwhere = f"{where}, completion {j}"
            if not isinstance(comp, Mapping):
                raise ListwiseDataError(f"{cwhere}: expected a mapping, got {type(comp).__name__}")
            response = comp.get("response")
            if not isinstance(response, str):
                raise ListwiseDataError(f"{cwhere}: 'response' must be a string")
            annotations = comp.get("annotations")
            if not isinstance(annotations, Mapping):
                raise ListwiseDataError(f"{cwhere}: 'annotations' must be a mapping")
            row_ratings = []
            for aspect in ASPECTS:
                ann = annotations.get(aspect)
                if not isinstance(ann, Mapping):
                    raise ListwiseDataError(
                        f"{cwhere}: annotations has no aspect {aspect!r} "
                        f"(has {', '.join(map(str, annotations)) or 'none'})"
                    )
                value = _parse_rating(ann.get("Rating"), f"{cwhere}, aspect {aspect!r}")
                if value is None:
                    n_na += 1
                    value = na_rating
                row_ratings.append(value)
            responses.append(response)
            models.append(str(comp.get("model", "")))
            ratings.append(row_ratings)
        stats["na_ratings"] += n_na
        if len(responses) < min_candidates:
            stats["dropped_too_few_candidates"] += 1
            continue
        if n_candidates is not None and len(responses) != n_candidates:
            stats["dropped_wrong_candidate_count"] += 1
            continue
        if n_na and na_rating is None:
            stats["dropped_na"] += 1
            continue
        out.append({"prompt": prompt, "responses": responses, "ratings": ratings, "models": models})
    stats["rows_out"] = len(out)
    return out, stats


def _parse_rating(raw: Any, where: str) -> float | None:
    """A rating as float in [1, 5], or None for N/A (``"N/A"``, ``None``, missing)."""
    if raw is None or (isinstance(raw, str) and raw.strip().upper() in ("N/A", "NA", "")):
        return None
    if isinstance(raw, bool):
        raise ListwiseDataError(f"{where}: rating {raw!r} is not a number or 'N/A'")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise ListwiseDataError(f"{where}: rating {raw!r} is not a number or 'N/A'") from None
    if not (1.0 <= value <= 5.0):
        raise ListwiseDataError(f"{where}: rating {raw!r} is outside UltraFeedback's 1-5 scale")
    return value
