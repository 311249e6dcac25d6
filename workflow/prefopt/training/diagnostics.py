"""Per-step training diagnostics: rewards, and which pairs still receive gradient.

The paper's hard-example-mining argument (``workflow/docs/paper.md`` §4.1, claims 3-4; §4.3,
future work (i)) is that hinge losses give *exactly* zero gradient to pairs past the margin, and
that long-answer pairs saturate first. This module measures it, for every loss, once per
training batch:

* :func:`pair_gradients` -- per-pair gradient of the loss w.r.t. each pair's policy chosen and
  rejected log-probs, computed generically with ``torch.autograd`` on detached leaf copies
  of the inputs (so the training graph is never touched). For batch-coupled losses (``aot``,
  ``aot_pair``; ``amapo``'s batch statistics are detached) it is the gradient of the *summed*
  batch loss w.r.t. that pair's inputs, which is exactly what the optimiser sees (up to the
  1/B of the mean).
* :class:`DiagnosticsAccumulator` -- accumulates those counts plus TRL-style reward metrics
  over one or more ``update`` calls and emits one CSV row per ``flush``.
* :class:`StatsAccumulator` -- the same contract for the seed-method objectives
  (``prefopt.training.seed_methods.trainer``): per-micro-batch scalars, averaged per row.
* :class:`DiagnosticsWriter` -- the one ``diagnostics.csv`` writer of both trainers, a
  ``transformers.TrainerCallback``: a row per logging step and a last row at the end of training
  for the steps after the last logging step.

Definitions
-----------
``active``: a pair's gradient w.r.t. its chosen (resp. rejected) policy log-prob is exactly
``!= 0``. Only relu/hinge branches produce exact zeros; a sigmoid/softplus tail that underflows
to 0.0 also reads as inactive, and no tolerance is applied. To keep such underflow far away,
gradients are computed in float64 (sigmoid tails underflow only beyond |x| ~ 745), so for the
sigmoid-type losses ``active_fraction`` is 1.0 in practice. A NaN gradient counts as active.
``active_fraction`` uses "chosen OR rejected"; ``active_fraction_chosen`` /
``active_fraction_rejected`` are per side (the meaningful split for ``apo_hinge_*``, whose two
terms switch off independently).

Length buckets: ``d = chosen_length - rejected_length`` in completion tokens, bucketed into
half-open intervals by ``bucket_edges`` (default ``(-64, -16, 16, 64)``)::

    lt_m64   d < -64
    m64_m16  -64 <= d < -16
    m16_16   -16 <= d < 16
    16_64    16 <= d < 64
    ge_64    d >= 64

(``m`` stands for minus; labels are built from the edges by :func:`bucket_labels`.) Bucket
columns hold *counts*, not fractions, so a notebook can pool them across steps.
"""

from __future__ import annotations

import csv
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor
from transformers import TrainerCallback

from prefopt.training.ddp import is_main_process
from prefopt.training.losses import pairwise_loss, validate_params

__all__ = [
    "DEFAULT_BUCKET_EDGES",
    "DIAGNOSTIC_COLUMNS",
    "DiagnosticsAccumulator",
    "DiagnosticsWriter",
    "StatsAccumulator",
    "bucket_labels",
    "diagnostic_columns",
    "pair_gradients",
]

DEFAULT_BUCKET_EDGES: tuple[int, ...] = (-64, -16, 16, 64)

_SCALAR_COLUMNS = [
    "step",
    "epoch",
    "n_pairs",
    "loss",
    "rewards_chosen",
    "rewards_rejected",
    "rewards_margin",
    "rewards_accuracy",
    "logps_chosen",
    "logps_rejected",
    "active_fraction",
    "active_fraction_chosen",
    "active_fraction_rejected",
]

# Per-bucket count columns, in this order, each followed by the bucket label.
_BUCKET_KINDS = (
    "n_pairs_bucket",  # pairs whose length difference falls in the bucket
    "n_active_bucket",  # ... of which active (chosen OR rejected gradient != 0)
    "n_active_chosen_bucket",  # ... of which chosen-side gradient != 0
    "n_active_rejected_bucket",  # ... of which rejected-side gradient != 0
)


def _edge_label(edge: int) -> str:
    return f"m{-edge}" if edge < 0 else str(edge)


def _check_edges(edges: Sequence[int]) -> tuple[int, ...]:
    edges = tuple(edges)
    if not edges:
        raise ValueError("bucket_edges must hold at least one edge")
    for e in edges:
        if isinstance(e, bool) or not isinstance(e, int):
            raise ValueError(f"bucket_edges must be integers (token counts), got {e!r}")
    if any(b <= a for a, b in zip(edges, edges[1:], strict=False)):
        raise ValueError(f"bucket_edges must be strictly increasing, got {edges}")
    return edges


def bucket_labels(edges: Sequence[int] = DEFAULT_BUCKET_EDGES) -> list[str]:
    """Column-safe labels of the ``len(edges) + 1`` half-open buckets ``[e_i, e_{i+1})``."""
    edges = _check_edges(edges)
    labels = [f"lt_{_edge_label(edges[0])}"]
    labels += [f"{_edge_label(a)}_{_edge_label(b)}" for a, b in zip(edges, edges[1:], strict=False)]
    labels.append(f"ge_{_edge_label(edges[-1])}")
    return labels


def diagnostic_columns(edges: Sequence[int] = DEFAULT_BUCKET_EDGES) -> list[str]:
    """The CSV header, in order, for the given bucket edges."""
    labels = bucket_labels(edges)
    return _SCALAR_COLUMNS + [f"{kind}_{label}" for kind in _BUCKET_KINDS for label in labels]


DIAGNOSTIC_COLUMNS: list[str] = diagnostic_columns()
"""CSV header for the default bucket edges (``DiagnosticsAccumulator.columns`` in general)."""


def _leaf(t: Tensor | None, requires_grad: bool = False) -> Tensor | None:
    if t is None:
        return None
    leaf = t.detach().to(torch.float64).clone()
    return leaf.requires_grad_(requires_grad)


def _losses_and_gradients(
    name: str,
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor | None,
    ref_rejected_logps: Tensor | None,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    **params: Any,
) -> tuple[Tensor, Tensor, Tensor]:
    """(per-pair losses, grad w.r.t. chosen policy logps, grad w.r.t. rejected), all float64."""
    chosen = _leaf(chosen_logps, requires_grad=True)
    rejected = _leaf(rejected_logps, requires_grad=True)
    with torch.enable_grad():
        losses = pairwise_loss(
            name,
            chosen,
            rejected,
            _leaf(ref_chosen_logps),
            _leaf(ref_rejected_logps),
            chosen_lengths,
            rejected_lengths,
            **params,
        )
        grad_c, grad_r = torch.autograd.grad(
            losses.sum(), (chosen, rejected), allow_unused=True, materialize_grads=True
        )
    return losses.detach(), grad_c, grad_r


def pair_gradients(
    name: str,
    chosen_logps: Tensor,
    rejected_logps: Tensor,
    ref_chosen_logps: Tensor | None,
    ref_rejected_logps: Tensor | None,
    chosen_lengths: Tensor | None = None,
    rejected_lengths: Tensor | None = None,
    **params: Any,
) -> tuple[Tensor, Tensor]:
    """Gradient of the summed batch loss w.r.t. each pair's policy chosen / rejected log-prob.

    Works for every loss in :data:`prefopt.training.losses.LOSSES`. Inputs are copied to detached
    float64 leaves, so gradients are never accumulated into the caller's graph. For losses
    that are a sum of independent per-pair terms this is each pair's own gradient; for the
    batch-coupled ``aot`` / ``aot_pair`` it is the gradient the optimiser applies to that pair.
    Returns two float64 tensors of shape ``[B]``.
    """
    _, grad_c, grad_r = _losses_and_gradients(
        name,
        chosen_logps,
        rejected_logps,
        ref_chosen_logps,
        ref_rejected_logps,
        chosen_lengths,
        rejected_lengths,
        **params,
    )
    return grad_c, grad_r


class DiagnosticsAccumulator:
    """Accumulate per-batch diagnostics; ``flush`` returns one CSV row and resets.

    Args:
        loss_name: a key of :data:`prefopt.training.losses.LOSSES`.
        params: the loss parameters (validated here, so a bad config fails at construction).
        bucket_edges: integer edges of the length-difference buckets (see module docstring).

    ``update`` takes the training batch's tensors ``[B]``; policy log-probs may require grad
    (only detached copies are used). Reference log-probs may be None for the reference-free
    ``amapo``; its rewards are then ``beta * policy_logps`` (as AMaPO's own trainer logs).
    Several ``update`` calls before a ``flush`` (e.g. gradient-accumulation micro-batches) are
    pooled; batch-coupled losses are evaluated per ``update`` call.
    """

    def __init__(
        self,
        loss_name: str,
        params: Mapping[str, Any],
        bucket_edges: Sequence[int] = DEFAULT_BUCKET_EDGES,
    ) -> None:
        validate_params(loss_name, params)
        self.loss_name = loss_name
        self.params = dict(params)
        self.beta = float(self.params["beta"])
        self.bucket_edges = _check_edges(bucket_edges)
        self.labels = bucket_labels(self.bucket_edges)
        self.columns = diagnostic_columns(self.bucket_edges)
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated since the last flush."""
        n_buckets = len(self.labels)
        self._n = 0
        self._sums = dict.fromkeys(
            (
                "loss",
                "rewards_chosen",
                "rewards_rejected",
                "rewards_margin",
                "rewards_accuracy",
                "logps_chosen",
                "logps_rejected",
                "active",
                "active_chosen",
                "active_rejected",
            ),
            0.0,
        )
        self._bucket_counts = {kind: [0] * n_buckets for kind in _BUCKET_KINDS}

    @property
    def n_pairs(self) -> int:
        return self._n

    def sum_across_processes(self) -> None:
        """In a DDP job (`prefopt.training.ddp`): every process's sums and counts added up, so the
        row covers the whole global batch. Every process must call it."""
        from prefopt.training.ddp import sum_across_processes

        kinds = list(self._bucket_counts)
        counts = [c for kind in kinds for c in self._bucket_counts[kind]]
        total = sum_across_processes([self._n, *self._sums.values(), *counts])
        self._n = round(total[0])
        self._sums = dict(zip(self._sums, total[1 : 1 + len(self._sums)], strict=True))
        rest = iter(total[1 + len(self._sums) :])
        for kind in kinds:
            self._bucket_counts[kind] = [round(next(rest)) for _ in self._bucket_counts[kind]]

    def update(
        self,
        chosen_logps: Tensor,
        rejected_logps: Tensor,
        ref_chosen_logps: Tensor | None,
        ref_rejected_logps: Tensor | None,
        chosen_lengths: Tensor,
        rejected_lengths: Tensor,
    ) -> None:
        """Add one training batch (tensors of shape ``[B]``)."""
        if chosen_lengths is None or rejected_lengths is None:
            raise ValueError(
                "DiagnosticsAccumulator.update needs chosen_lengths and rejected_lengths"
            )
        losses, grad_c, grad_r = _losses_and_gradients(
            self.loss_name,
            chosen_logps,
            rejected_logps,
            ref_chosen_logps,
            ref_rejected_logps,
            chosen_lengths,
            rejected_lengths,
            **self.params,
        )
        with torch.no_grad():
            pol_c = _leaf(chosen_logps)
            pol_r = _leaf(rejected_logps)
            ref_c = (
                _leaf(ref_chosen_logps) if ref_chosen_logps is not None else torch.zeros_like(pol_c)
            )
            ref_r = (
                _leaf(ref_rejected_logps)
                if ref_rejected_logps is not None
                else torch.zeros_like(pol_r)
            )
            rew_c = self.beta * (pol_c - ref_c)
            rew_r = self.beta * (pol_r - ref_r)
            act_c = grad_c != 0
            act_r = grad_r != 0
            act = act_c | act_r

            lc = torch.as_tensor(chosen_lengths, device=pol_c.device)
            lr = torch.as_tensor(rejected_lengths, device=pol_c.device)
            if lc.shape != pol_c.shape or lr.shape != pol_c.shape:
                raise ValueError("lengths must have the same shape [B] as the log-probs")
            diff = (lc - lr).to(torch.float64)
            edges = torch.tensor(self.bucket_edges, dtype=torch.float64, device=pol_c.device)
            # right=True: bucket i holds edges[i-1] <= d < edges[i]
            bucket = torch.bucketize(diff, edges, right=True)
            n_buckets = len(self.labels)
            onehot = torch.nn.functional.one_hot(bucket, n_buckets).to(torch.int64)  # [B, K]
            counts = torch.stack(
                [
                    onehot.sum(0),
                    (onehot * act.unsqueeze(1)).sum(0),
                    (onehot * act_c.unsqueeze(1)).sum(0),
                    (onehot * act_r.unsqueeze(1)).sum(0),
                ]
            )
            sums = torch.stack(
                [
                    losses.sum(),
                    rew_c.sum(),
                    rew_r.sum(),
                    (rew_c - rew_r).sum(),
                    (rew_c > rew_r).to(torch.float64).sum(),
                    pol_c.sum(),
                    pol_r.sum(),
                    act.to(torch.float64).sum(),
                    act_c.to(torch.float64).sum(),
                    act_r.to(torch.float64).sum(),
                ]
            )
        # one device->host transfer each
        for key, value in zip(self._sums, sums.tolist(), strict=True):
            self._sums[key] += value
        for kind, row in zip(_BUCKET_KINDS, counts.tolist(), strict=True):
            acc = self._bucket_counts[kind]
            for i, c in enumerate(row):
                acc[i] += int(c)
        self._n += int(pol_c.numel())

    def flush(self, step: int, epoch: float) -> dict[str, Any]:
        """Return the row (keys = :attr:`columns`, in order) and reset the accumulator.

        Means are over all pairs since the last flush; with no pairs they are NaN and the
        counts 0.
        """
        n = self._n
        s = self._sums

        def mean(key: str) -> float:
            return s[key] / n if n else math.nan

        row: dict[str, Any] = {
            "step": step,
            "epoch": epoch,
            "n_pairs": n,
            "loss": mean("loss"),
            "rewards_chosen": mean("rewards_chosen"),
            "rewards_rejected": mean("rewards_rejected"),
            "rewards_margin": mean("rewards_margin"),
            "rewards_accuracy": mean("rewards_accuracy"),
            "logps_chosen": mean("logps_chosen"),
            "logps_rejected": mean("logps_rejected"),
            "active_fraction": mean("active"),
            "active_fraction_chosen": mean("active_chosen"),
            "active_fraction_rejected": mean("active_rejected"),
        }
        for kind in _BUCKET_KINDS:
            for label, count in zip(self.labels, self._bucket_counts[kind], strict=True):
                row[f"{kind}_{label}"] = count
        assert list(row) == self.columns
        self.reset()
        return row


class StatsAccumulator:
    """Per-micro-batch scalars of a seed-method objective; ``flush`` returns one row and resets.

    A row is ``step``, ``epoch``, ``n_pairs`` (the training rows of every micro-batch since the
    last flush, summed), then each statistic in the order it was first passed to ``update``, as
    the unweighted mean over those micro-batches. Its columns depend on the objective, so
    :attr:`columns` is None: the header is the first row's keys.
    """

    columns: list[str] | None = None

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated since the last flush."""
        self._n = 0
        self._values: dict[str, list[float]] = {}

    @property
    def n_pairs(self) -> int:
        return self._n

    def sum_across_processes(self) -> None:
        """Nothing: the seed-method trainers run in one process (`prefopt.training.ddp`)."""

    def update(self, n_pairs: int, **stats: float) -> None:
        """Add one micro-batch of ``n_pairs`` training rows and its scalar statistics."""
        self._n += int(n_pairs)
        for key, value in stats.items():
            self._values.setdefault(key, []).append(float(value))

    def flush(self, step: int, epoch: float) -> dict[str, Any]:
        """Return the row and reset the accumulator."""
        row: dict[str, Any] = {"step": step, "epoch": epoch, "n_pairs": self._n}
        row.update({key: sum(v) / len(v) for key, v in self._values.items()})
        self.reset()
        return row


class RowAccumulator(Protocol):
    """What :class:`DiagnosticsWriter` needs: :class:`DiagnosticsAccumulator` or
    :class:`StatsAccumulator`."""

    columns: list[str] | None

    @property
    def n_pairs(self) -> int: ...

    def sum_across_processes(self) -> None: ...

    def flush(self, step: int, epoch: float) -> dict[str, Any]: ...


class DiagnosticsWriter(TrainerCallback):
    """The ``diagnostics.csv`` of one training run, for both trainers (a ``TrainerCallback``).

    At every training logging step (a log holding ``loss``) it appends the accumulator's row for
    the optimiser steps since the previous row; at the end of training it appends one more for
    the steps after the last logging step, so a run shorter than ``logging_steps`` still gets a
    row for its last step. An empty accumulator writes no row: with ``logging_steps=1`` every
    step has exactly one. A row carries ``state.global_step`` (the last optimiser step it covers)
    and ``state.epoch``, nothing from the clock: same config and seed, same bytes.

    The file is truncated at construction. Its header is the accumulator's ``columns``, written
    at once when known (an empty run leaves just the header), else the first row's keys.
    """

    def __init__(self, path: str | Path, accumulator: RowAccumulator) -> None:
        self.path = Path(path)
        self.accumulator = accumulator
        self.columns = list(accumulator.columns) if accumulator.columns else None
        #: one writer in a DDP job; every process flushes its accumulator (`prefopt.training.ddp`)
        self.writes = is_main_process()
        if not self.writes:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w", newline="") as fh:
            if self.columns:
                csv.DictWriter(fh, fieldnames=self.columns).writeheader()

    def continue_from(self, saved: str | Path) -> None:
        """Resume the file a checkpoint saved (`prefopt.training.resume`): its rows, then ours."""
        if not self.writes:
            return
        shutil.copyfile(saved, self.path)
        with open(self.path, newline="") as fh:
            header = next(csv.reader(fh), None)
        self.columns = header or self.columns

    def write_row(self, step: int, epoch: float) -> dict[str, Any] | None:
        """Append the row of everything accumulated since the last one (none if nothing was)."""
        self.accumulator.sum_across_processes()
        if not self.accumulator.n_pairs:
            return None
        row = self.accumulator.flush(step=step, epoch=epoch)
        if not self.writes:
            return row
        with open(self.path, "a", newline="") as fh:
            if self.columns is None:
                self.columns = list(row)
                csv.DictWriter(fh, fieldnames=self.columns).writeheader()
            csv.DictWriter(fh, fieldnames=self.columns).writerow(row)
        return row

    def on_log(self, args, state, control, logs=None, model=None, **kwargs):  # noqa: ANN001
        if logs and "loss" in logs and (model is None or model.training):
            self.write_row(state.global_step, state.epoch or 0.0)

    def on_train_end(self, args, state, control, **kwargs):  # noqa: ANN001
        self.write_row(state.global_step, state.epoch or 0.0)
