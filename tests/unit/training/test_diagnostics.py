"""Tests for prefopt.training.diagnostics: active-pair fractions, length buckets, CSV row
contract."""

from __future__ import annotations

import csv
import math
from types import SimpleNamespace

import pytest
import torch
from helpers import LOSS_PARAMS

from prefopt.training.diagnostics import (
    DEFAULT_BUCKET_EDGES,
    DIAGNOSTIC_COLUMNS,
    DiagnosticsAccumulator,
    DiagnosticsWriter,
    StatsAccumulator,
    bucket_labels,
    diagnostic_columns,
    pair_gradients,
)
from prefopt.training.losses import LOSSES, LossConfigError

LABELS = ["lt_m64", "m64_m16", "m16_16", "16_64", "ge_64"]

PARAMS = LOSS_PARAMS


def _engineered_batch():
    """Six pairs for apo_hinge_zero with beta = 0.5, m = 1 (exact binary fractions).

    beta*lr_w = [1.5, 0.5, 0, 1.25, -0.5, 2.5]   -> chosen active iff < 1:  F T T F T F
    beta*lr_l = [-1.5, 0, -1, 0.5, -1.25, -0.5]  -> rejected active iff > -1: F T F T F T
    (pair 2's rejected side sits exactly on the margin: beta*lr_l = -1 -> inactive)
    length differences [-100, -64, -20, 0, 16, 64] -> buckets
    lt_m64, m64_m16, m64_m16, m16_16, 16_64, ge_64 (half-open [a, b) intervals).
    """
    ref_c = torch.tensor([-10.0, -20.0, -30.0, -40.0, -50.0, -60.0])
    ref_r = torch.tensor([-15.0, -25.0, -35.0, -45.0, -55.0, -65.0])
    lr_w = torch.tensor([3.0, 1.0, 0.0, 2.5, -1.0, 5.0])
    lr_l = torch.tensor([-3.0, 0.0, -2.0, 1.0, -2.5, -1.0])
    chosen = ref_c + lr_w
    rejected = ref_r + lr_l
    len_r = torch.tensor([150, 100, 50, 30, 10, 20])
    len_c = len_r + torch.tensor([-100, -64, -20, 0, 16, 64])
    return chosen, rejected, ref_c, ref_r, len_c, len_r


def test_bucket_labels_and_columns():
    assert DEFAULT_BUCKET_EDGES == (-64, -16, 16, 64)
    assert bucket_labels() == LABELS
    assert bucket_labels((0,)) == ["lt_0", "ge_0"]
    assert bucket_labels((-8, 8)) == ["lt_m8", "m8_8", "ge_8"]
    assert DIAGNOSTIC_COLUMNS == diagnostic_columns(DEFAULT_BUCKET_EDGES)
    assert DIAGNOSTIC_COLUMNS[:13] == [
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
    for label in LABELS:
        assert f"n_pairs_bucket_{label}" in DIAGNOSTIC_COLUMNS
        assert f"n_active_bucket_{label}" in DIAGNOSTIC_COLUMNS
    assert len(set(DIAGNOSTIC_COLUMNS)) == len(DIAGNOSTIC_COLUMNS)
    assert all(c.isidentifier() for c in DIAGNOSTIC_COLUMNS)
    for bad in ((), (16, -16), (1.5, 2), (0, 0)):
        with pytest.raises(ValueError):
            bucket_labels(bad)


def test_apo_hinge_zero_engineered_active_fractions_and_buckets():
    chosen, rejected, ref_c, ref_r, len_c, len_r = _engineered_batch()
    acc = DiagnosticsAccumulator("apo_hinge_zero", {"beta": 0.5, "margin": 1.0})
    acc.update(chosen, rejected, ref_c, ref_r, len_c, len_r)
    row = acc.flush(step=7, epoch=0.25)
    assert list(row) == DIAGNOSTIC_COLUMNS == acc.columns
    assert row["step"] == 7 and row["epoch"] == 0.25 and row["n_pairs"] == 6
    assert row["active_fraction_chosen"] == 3 / 6
    assert row["active_fraction_rejected"] == 3 / 6
    assert row["active_fraction"] == 5 / 6  # only pair 0 is past the margin on both sides
    expected_buckets = {
        "n_pairs_bucket": [1, 2, 1, 1, 1],
        "n_active_bucket": [0, 2, 1, 1, 1],
        "n_active_chosen_bucket": [0, 2, 0, 1, 0],
        "n_active_rejected_bucket": [0, 1, 1, 0, 1],
    }
    for kind, counts in expected_buckets.items():
        assert [row[f"{kind}_{label}"] for label in LABELS] == counts, kind
    # TRL-style reward metrics
    rw = 0.5 * torch.tensor([3.0, 1.0, 0.0, 2.5, -1.0, 5.0])
    rl = 0.5 * torch.tensor([-3.0, 0.0, -2.0, 1.0, -2.5, -1.0])
    assert row["rewards_chosen"] == pytest.approx(rw.mean().item())
    assert row["rewards_rejected"] == pytest.approx(rl.mean().item())
    assert row["rewards_margin"] == pytest.approx((rw - rl).mean().item())
    assert row["rewards_accuracy"] == 1.0  # beta*lr_w > beta*lr_l for all six
    assert row["logps_chosen"] == pytest.approx(chosen.mean().item())
    assert row["logps_rejected"] == pytest.approx(rejected.mean().item())
    hinge = torch.relu(1 - rw) + torch.relu(1 + rl)
    assert row["loss"] == pytest.approx(hinge.mean().item())


def test_pooling_over_updates_and_flush_resets():
    chosen, rejected, ref_c, ref_r, len_c, len_r = _engineered_batch()
    acc = DiagnosticsAccumulator("apo_hinge_zero", {"beta": 0.5, "margin": 1.0})
    whole = DiagnosticsAccumulator("apo_hinge_zero", {"beta": 0.5, "margin": 1.0})
    whole.update(chosen, rejected, ref_c, ref_r, len_c, len_r)
    for sl in (slice(0, 2), slice(2, 6)):
        acc.update(chosen[sl], rejected[sl], ref_c[sl], ref_r[sl], len_c[sl], len_r[sl])
    assert acc.n_pairs == 6
    pooled, single = acc.flush(step=1, epoch=0), whole.flush(step=1, epoch=0)
    assert pooled == pytest.approx(single)
    # flush reset the accumulator
    assert acc.n_pairs == 0
    empty = acc.flush(step=2, epoch=0)
    assert list(empty) == DIAGNOSTIC_COLUMNS
    assert empty["n_pairs"] == 0
    assert math.isnan(empty["loss"]) and math.isnan(empty["active_fraction"])
    assert all(empty[f"n_pairs_bucket_{label}"] == 0 for label in LABELS)
    acc.update(chosen[:1], rejected[:1], ref_c[:1], ref_r[:1], len_c[:1], len_r[:1])
    again = acc.flush(step=3, epoch=1)
    assert again["n_pairs"] == 1 and again["active_fraction"] == 0.0


def test_dpo_active_fraction_is_one():
    g = torch.Generator().manual_seed(0)
    chosen = -100 * torch.rand(32, generator=g)
    rejected = -100 * torch.rand(32, generator=g)
    ref_c = chosen + 20 * torch.randn(32, generator=g)
    ref_r = rejected + 20 * torch.randn(32, generator=g)
    lengths = torch.randint(1, 300, (2, 32), generator=g)
    acc = DiagnosticsAccumulator("dpo", {"beta": 0.1})
    acc.update(chosen, rejected, ref_c, ref_r, lengths[0], lengths[1])
    row = acc.flush(step=0, epoch=0)
    assert row["active_fraction"] == 1.0
    assert row["active_fraction_chosen"] == 1.0 and row["active_fraction_rejected"] == 1.0
    assert sum(row[f"n_pairs_bucket_{label}"] for label in LABELS) == 32
    assert sum(row[f"n_active_bucket_{label}"] for label in LABELS) == 32


def test_dpo_hinge_and_margin_sigmoid_can_be_inactive():
    # beta * Delta = [2, 0.5]: DPO-hinge (m = 1) is off for pair 0 only
    chosen = torch.tensor([-10.0, -10.0])
    rejected = torch.tensor([-30.0, -15.0])
    ref = torch.tensor([-10.0, -10.0])
    lens = torch.tensor([5, 5])
    acc = DiagnosticsAccumulator("dpo_hinge", {"beta": 0.1, "margin": 1.0})
    acc.update(chosen, rejected, ref, ref, lens, lens)
    assert acc.flush(step=0, epoch=0)["active_fraction"] == 0.5
    # margin-sigmoid with eps = 0: -log sigma(2) = 0.127 < delta = 0.2 < -log sigma(0.5) = 0.474
    acc = DiagnosticsAccumulator(
        "margin_sigmoid", {"beta": 0.1, "delta": 0.2, "label_smoothing": 0.0}
    )
    acc.update(chosen, rejected, ref, ref, lens, lens)
    row = acc.flush(step=0, epoch=0)
    assert row["active_fraction"] == 0.5 and row["n_active_bucket_m16_16"] == 1


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_pair_gradients_every_loss(name):
    g = torch.Generator().manual_seed(1)
    chosen = -100 * torch.rand(6, generator=g)
    rejected = -100 * torch.rand(6, generator=g)
    ref_c = chosen + 5 * torch.randn(6, generator=g)
    ref_r = rejected + 5 * torch.randn(6, generator=g)
    len_c, len_r = torch.randint(1, 200, (2, 6), generator=g)
    gc, gr = pair_gradients(name, chosen, rejected, ref_c, ref_r, len_c, len_r, **PARAMS[name])
    assert gc.shape == gr.shape == (6,)
    assert gc.dtype == torch.float64
    assert torch.isfinite(gc).all() and torch.isfinite(gr).all()
    acc = DiagnosticsAccumulator(name, PARAMS[name])
    acc.update(chosen, rejected, ref_c, ref_r, len_c, len_r)
    row = acc.flush(step=0, epoch=0)
    assert list(row) == DIAGNOSTIC_COLUMNS and math.isfinite(row["loss"])


def test_pair_gradients_dpo_closed_form():
    chosen = torch.tensor([-10.0, -20.0, -5.0], dtype=torch.float64)
    rejected = torch.tensor([-12.0, -10.0, -50.0], dtype=torch.float64)
    ref_c = torch.tensor([-11.0, -18.0, -6.0], dtype=torch.float64)
    ref_r = torch.tensor([-11.0, -12.0, -40.0], dtype=torch.float64)
    gc, gr = pair_gradients("dpo", chosen, rejected, ref_c, ref_r, beta=0.3)
    z = 0.3 * ((chosen - ref_c) - (rejected - ref_r))
    torch.testing.assert_close(gc, -0.3 * torch.sigmoid(-z))
    torch.testing.assert_close(gr, 0.3 * torch.sigmoid(-z))


def test_pair_gradients_batch_coupled_aot():
    g = torch.Generator().manual_seed(2)
    chosen, rejected, ref_c, ref_r = (-50 * torch.rand(5, generator=g) for _ in range(4))
    params = {"beta": 0.2, "label_smoothing": 0.1}
    gc, gr = pair_gradients("aot", chosen, rejected, ref_c, ref_r, **params)
    # aot depends on the policy only through (chosen - rejected)
    torch.testing.assert_close(gr, -gc)
    assert (gc != 0).all()
    # permuting the pairs permutes their gradients
    perm = torch.tensor([3, 0, 4, 1, 2])
    gc_p, gr_p = pair_gradients(
        "aot", chosen[perm], rejected[perm], ref_c[perm], ref_r[perm], **params
    )
    torch.testing.assert_close(gc_p, gc[perm])
    torch.testing.assert_close(gr_p, gr[perm])


def test_update_does_not_touch_the_training_graph():
    w = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    chosen = -10 * w  # non-leaf, part of a "training" graph
    rejected = -12 * w
    ref_c, ref_r = torch.tensor([-9.0, -21.0, -28.0]), torch.tensor([-13.0, -20.0, -37.0])
    lens = torch.tensor([3, 30, 300])
    acc = DiagnosticsAccumulator("apo_hinge_zero", {"beta": 0.1, "margin": 1.0})
    acc.update(chosen, rejected, ref_c, ref_r, lens, lens)
    pair_gradients("apo_hinge_zero", chosen, rejected, ref_c, ref_r, beta=0.1, margin=1.0)
    assert w.grad is None
    # the caller's graph is intact and backward still works once
    (chosen.sum() + rejected.sum()).backward()
    torch.testing.assert_close(w.grad, torch.full((3,), -22.0))
    # also fine under no_grad (e.g. an eval loop)
    with torch.no_grad():
        acc.update(chosen, rejected, ref_c, ref_r, lens, lens)
    assert acc.flush(step=0, epoch=0)["n_pairs"] == 6  # both updates pooled


def test_amapo_without_reference_and_config_errors():
    chosen = torch.tensor([-10.0, -30.0, -20.0])
    rejected = torch.tensor([-20.0, -10.0, -25.0])
    lens = torch.tensor([10, 10, 10])
    acc = DiagnosticsAccumulator("amapo", {"beta": 2.0})
    acc.update(chosen, rejected, None, None, lens, lens)
    row = acc.flush(step=0, epoch=0)
    assert row["rewards_chosen"] == pytest.approx(2.0 * chosen.mean().item())
    assert row["rewards_accuracy"] == pytest.approx(2 / 3)
    assert row["active_fraction"] == 1.0
    with pytest.raises(LossConfigError, match="margin"):
        DiagnosticsAccumulator("apo_hinge_zero", {"beta": 0.1})
    with pytest.raises(LossConfigError, match="unknown loss"):
        DiagnosticsAccumulator("nope", {"beta": 0.1})
    with pytest.raises(ValueError, match="lengths"):
        DiagnosticsAccumulator("dpo", {"beta": 0.1}).update(
            chosen, rejected, chosen, rejected, None, None
        )


def test_custom_bucket_edges():
    chosen, rejected, ref_c, ref_r, len_c, len_r = _engineered_batch()
    acc = DiagnosticsAccumulator("apo_hinge_zero", {"beta": 0.5, "margin": 1.0}, bucket_edges=(0,))
    acc.update(chosen, rejected, ref_c, ref_r, len_c, len_r)
    row = acc.flush(step=0, epoch=0)
    assert list(row) == acc.columns == diagnostic_columns((0,))
    assert (row["n_pairs_bucket_lt_0"], row["n_pairs_bucket_ge_0"]) == (3, 3)
    assert (row["n_active_bucket_lt_0"], row["n_active_bucket_ge_0"]) == (2, 3)


def _read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def _log(writer, step, logs, training=True):
    """What Trainer.log does: the callback sees the state and the logs."""
    state = SimpleNamespace(global_step=step, epoch=step / 4)
    writer.on_log(None, state, None, logs=logs, model=SimpleNamespace(training=training))


def test_writer_rows_per_logging_step_and_the_remainder_at_train_end(tmp_path):
    chosen, rejected, ref_c, ref_r, len_c, len_r = _engineered_batch()
    acc = DiagnosticsAccumulator("apo_hinge_zero", {"beta": 0.5, "margin": 1.0})
    path = tmp_path / "sub" / "diagnostics.csv"
    writer = DiagnosticsWriter(path, acc)
    assert _read_rows(path) == [DIAGNOSTIC_COLUMNS]  # header at once: the columns are known
    for step in (1, 2, 3):  # logging_steps = 2: a row at step 2, the rest at the end
        acc.update(chosen, rejected, ref_c, ref_r, len_c, len_r)
        if step == 2:
            _log(writer, step, {"loss": 0.5})
            _log(writer, step, {"eval_loss": 0.5}, training=False)  # not a training log
    writer.on_train_end(None, SimpleNamespace(global_step=3, epoch=0.75), None)
    header, *rows = _read_rows(path)
    assert header == DIAGNOSTIC_COLUMNS
    assert [(r[0], r[1], r[2]) for r in rows] == [("2", "0.5", "12"), ("3", "0.75", "6")]
    # nothing accumulated: no further row (no duplicate when the last step was a logging step)
    _log(writer, 3, {"loss": 0.5})
    writer.on_train_end(None, SimpleNamespace(global_step=3, epoch=0.75), None)
    assert len(_read_rows(path)) == 3


def test_writer_header_from_the_first_row_of_a_stats_accumulator(tmp_path):
    acc = StatsAccumulator()
    path = tmp_path / "diagnostics.csv"
    path.write_text("stale")
    writer = DiagnosticsWriter(path, acc)
    assert path.read_text() == ""  # truncated; header waits for the first row
    writer.on_train_end(None, SimpleNamespace(global_step=0, epoch=None), None)
    assert path.read_text() == ""
    acc.update(2, loss=1.0, distill_loss=3.0)
    acc.update(1, loss=2.0, distill_loss=5.0)
    _log(writer, 1, {"loss": 1.5, "learning_rate": 1e-6})
    acc.update(2, loss=4.0, distill_loss=1.0)
    writer.on_train_end(None, SimpleNamespace(global_step=2, epoch=0.5), None)
    assert _read_rows(path) == [
        ["step", "epoch", "n_pairs", "loss", "distill_loss"],
        ["1", "0.25", "3", "1.5", "4.0"],
        ["2", "0.5", "2", "4.0", "1.0"],
    ]
