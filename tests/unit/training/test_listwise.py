"""Tests for prefopt.training.seed_methods.listwise: lambda-weighted listwise DPO (arXiv 2506.19780,
workflow/docs/seed_methods.md §2).

The fixture ``tests/fixtures/ultrafeedback_listwise_fixture.jsonl`` is **synthetic**: six
hand-written rows in the real ``openbmb/UltraFeedback`` schema (every row's ``source`` field
says so); no per-aspect UltraFeedback ratings are mirrored offline.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from prefopt.training.losses import LossConfigError, pairwise_loss
from prefopt.training.seed_methods.listwise import (
    ASPECTS,
    LAMBDA_TABLE,
    LAMBDA_TABLE_PROBS,
    LAMBDA_TABLE_PUBLISHED,
    ListwiseDataError,
    aspect_targets,
    listwise_dpo_loss,
    sample_lambdas,
    ultrafeedback_to_listwise,
    ultrafeedback_to_listwise_with_stats,
)

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "ultrafeedback_listwise_fixture.jsonl"
HSETTINGS = settings(max_examples=30, deadline=None)


def _fixture_rows() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text().splitlines() if line.strip()]


def _batch(seed: int, b: int = 5, n: int = 4, a: int = 4, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    policy = -(5 + 100 * torch.rand(b, n, generator=g, dtype=dtype))
    ref = policy + 6 * torch.randn(b, n, generator=g, dtype=dtype)
    lengths = torch.randint(1, 50, (b, n), generator=g)
    ratings = torch.randint(1, 6, (b, n, a), generator=g).to(dtype)
    return policy, ref, lengths, aspect_targets(ratings)


def _grad(fn, *leaves):
    leaves = [t.detach().clone().requires_grad_(True) for t in leaves]
    out = fn(*leaves)
    return out.detach(), torch.autograd.grad(out.sum(), leaves)


# ---------------------------------------------------------------------------------------------
# reduction to DPO


@HSETTINGS
@given(seed=st.integers(0, 10_000), beta=st.floats(0.01, 2.0))
def test_two_candidates_one_hot_equals_pairwise_dpo(seed, beta):
    """N = 2, one aspect, chosen = 1, no length normalisation: exactly DPO (values, gradients)."""
    g = torch.Generator().manual_seed(seed)
    b = 6
    c, r = -(5 + 100 * torch.rand(2, b, generator=g, dtype=torch.float64))
    rc, rr = c + 8 * torch.randn(b, generator=g, dtype=torch.float64), r + 3
    targets = torch.zeros(b, 2, 1, dtype=torch.float64)
    targets[:, 0, 0] = 1.0

    def listwise(c, r, rc, rr):
        return listwise_dpo_loss(
            torch.stack([c, r], 1),
            torch.stack([rc, rr], 1),
            None,
            targets,
            torch.ones(1, dtype=torch.float64),
            beta,
            length_normalize=False,
        )

    def dpo(c, r, rc, rr):
        return pairwise_loss("dpo", c, r, rc, rr, beta=beta)

    v_list, g_list = _grad(listwise, c, r, rc, rr)
    v_dpo, g_dpo = _grad(dpo, c, r, rc, rr)
    torch.testing.assert_close(v_list, v_dpo, rtol=1e-12, atol=1e-13)
    for a, bb in zip(g_list, g_dpo, strict=True):
        torch.testing.assert_close(a, bb, rtol=1e-12, atol=1e-13)


def test_two_candidates_length_normalised_equals_dpo_on_average_logps():
    policy, ref, lengths, _ = _batch(3, n=2, a=1)
    targets = torch.tensor([[[1.0], [0.0]]], dtype=torch.float64).expand(5, 2, 1)
    lw = listwise_dpo_loss(policy, ref, lengths, targets, torch.ones(1), 0.1)
    ln = lengths.double()
    d = pairwise_loss(
        "dpo",
        policy[:, 0] / ln[:, 0],
        policy[:, 1] / ln[:, 1],
        ref[:, 0] / ln[:, 0],
        ref[:, 1] / ln[:, 1],
        beta=0.1,
    )
    torch.testing.assert_close(lw, d, rtol=1e-12, atol=1e-13)


# ---------------------------------------------------------------------------------------------
# formula / properties


def test_matches_the_authors_formula_written_out():
    """sum_k lambda_k * (-sum_i p*_ik log softmax(beta * avg log-ratio)_i), per row."""
    policy, ref, lengths, targets = _batch(7)
    lam = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    beta = 0.1
    got = listwise_dpo_loss(policy, ref, lengths, targets, lam, beta)
    r = beta * (policy / lengths - ref / lengths)
    expect = torch.zeros(5, dtype=torch.float64)
    for k in range(4):
        p = targets[:, :, k]
        expect += lam[k] * -(p * (r - torch.logsumexp(r, 1, keepdim=True))).sum(1)
    torch.testing.assert_close(got, expect, rtol=1e-12, atol=1e-12)


def test_lambda_weighted_sum_equals_cross_entropy_to_mixed_target():
    policy, ref, lengths, targets = _batch(8)
    lam = torch.tensor([0.5, 0.0, 0.25, 0.25], dtype=torch.float64)
    got = listwise_dpo_loss(policy, ref, lengths, targets, lam, 0.3)
    mixed = (targets * lam).sum(2, keepdim=True)
    one = listwise_dpo_loss(policy, ref, lengths, mixed, torch.ones(1), 0.3)
    torch.testing.assert_close(got, one, rtol=1e-12, atol=1e-12)


def test_one_hot_lambda_selects_one_aspect_and_per_row_lambdas():
    policy, ref, lengths, targets = _batch(9)
    per_aspect = [
        listwise_dpo_loss(policy, ref, lengths, targets, torch.eye(4)[k].double(), 0.1)
        for k in range(4)
    ]
    for k in range(4):
        only_k = listwise_dpo_loss(policy, ref, lengths, targets[:, :, k : k + 1], [1.0], 0.1)
        torch.testing.assert_close(per_aspect[k], only_k)
    lam_rows = torch.eye(4, dtype=torch.float64)[torch.tensor([0, 1, 2, 3, 0])]
    rows = listwise_dpo_loss(policy, ref, lengths, targets, lam_rows, 0.1)
    expect = torch.stack([per_aspect[k][i] for i, k in enumerate([0, 1, 2, 3, 0])])
    torch.testing.assert_close(rows, expect)


def test_minimum_at_target_zero_gradient_and_gibbs_bound():
    """The loss is >= the target entropy, with equality and zero gradient at softmax(r) = p*."""
    ratings = torch.tensor([[[4.0], [2.0], [5.0]]], dtype=torch.float64)
    p = aspect_targets(ratings)  # [1, 3, 1]
    beta = 0.5
    ref = torch.tensor([[-10.0, -20.0, -15.0]], dtype=torch.float64)
    policy = ref + torch.log(p[:, :, 0]) / beta + 3.0  # r = log p* + const
    value, (g_pol,) = _grad(
        lambda x: listwise_dpo_loss(x, ref, None, p, [1.0], beta, length_normalize=False), policy
    )
    entropy = -(p * p.log()).sum()
    torch.testing.assert_close(value.sum(), entropy, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_pol, torch.zeros_like(g_pol), atol=1e-12, rtol=0)
    # Moving away from the optimum raises the loss.
    worse = listwise_dpo_loss(
        policy + torch.tensor([[1.0, 0.0, 0.0]]), ref, None, p, [1.0], beta, length_normalize=False
    )
    assert worse.item() > entropy.item()


def test_gradient_pushes_up_the_better_rated_candidate():
    policy, ref, lengths, _ = _batch(11, b=1, n=3, a=1)
    targets = aspect_targets(torch.tensor([[[5.0], [1.0], [1.0]]], dtype=torch.float64))
    _, (g,) = _grad(lambda x: listwise_dpo_loss(x, ref, lengths, targets, [1.0], 0.1), policy)
    # Gradient descent moves policy logps along -g: the best candidate (rated 5) goes up
    # iff its target mass exceeds the model's current mass on it (true here: p* ~ 0.96).
    model_mass = torch.softmax(0.1 * (policy - ref) / lengths, 1)
    assert targets[0, 0, 0] > model_mass[0, 0]
    assert g[0, 0] < 0


def test_float32_and_batch_shape():
    policy, ref, lengths, targets = _batch(12)
    lam = sample_lambdas(4, torch.Generator().manual_seed(0))
    l64 = listwise_dpo_loss(policy, ref, lengths, targets, lam, 0.1)
    l32 = listwise_dpo_loss(policy.float(), ref.float(), lengths, targets.float(), lam, 0.1)
    assert l64.shape == (5,) and l32.dtype == torch.float32
    torch.testing.assert_close(l32.double(), l64, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------------
# aspect targets


def test_aspect_targets_softmax_over_candidates():
    ratings = torch.tensor([[[5.0, 1.0], [3.0, 1.0], [5.0, 2.0]]])  # [1, N=3, A=2]
    t = aspect_targets(ratings)
    torch.testing.assert_close(t.sum(1), torch.ones(1, 2))
    torch.testing.assert_close(t[0, :, 0], F.softmax(torch.tensor([5.0, 3.0, 5.0]), 0))
    assert t[0, 0, 0] == t[0, 2, 0]  # ties get equal mass
    sharp = aspect_targets(ratings, temperature=0.01)
    assert sharp[0, 2, 1] > 0.999  # T -> 0: one-hot on the best
    flat = aspect_targets(ratings, temperature=1e6)
    torch.testing.assert_close(flat, torch.full_like(flat, 1 / 3), atol=1e-5, rtol=0)


def test_aspect_targets_errors():
    with pytest.raises(ValueError, match=r"\[B, N, A\]"):
        aspect_targets(torch.ones(3, 4))
    with pytest.raises(ValueError, match="N/A"):
        aspect_targets(torch.tensor([[[1.0], [float("nan")]]]))
    with pytest.raises(LossConfigError, match="temperature"):
        aspect_targets(torch.ones(1, 2, 1), temperature=0)


# ---------------------------------------------------------------------------------------------
# lambda sampling


@pytest.mark.parametrize("scheme", ["dirichlet", "table", "uniform"])
def test_lambdas_on_simplex_and_deterministic(scheme):
    draws = sample_lambdas(4, torch.Generator().manual_seed(123), scheme=scheme, size=200)
    again = sample_lambdas(4, torch.Generator().manual_seed(123), scheme=scheme, size=200)
    assert draws.shape == (200, 4) and draws.dtype == torch.float64
    assert (draws >= 0).all()
    torch.testing.assert_close(draws.sum(1), torch.ones(200, dtype=torch.float64))
    assert torch.equal(draws, again)
    one = sample_lambdas(4, torch.Generator().manual_seed(5), scheme=scheme)
    assert one.shape == (4,)
    torch.testing.assert_close(one.sum(), torch.tensor(1.0, dtype=torch.float64))


@pytest.mark.parametrize("alpha", [0.1, 0.5, 1.0, 3.0, 50.0])
def test_dirichlet_alpha_moments_and_seed_dependence(alpha):
    n, a = 4000, 3
    d = sample_lambdas(a, torch.Generator().manual_seed(1), alpha=alpha, size=n)
    assert (d > 0).all() and torch.isfinite(d).all()
    torch.testing.assert_close(d.sum(1), torch.ones(n, dtype=torch.float64))
    # Dirichlet(alpha 1): mean 1/a, var (a-1)/(a^2 (a alpha + 1)).
    var = (a - 1) / (a**2 * (a * alpha + 1))
    se = math.sqrt(var / n)
    assert (d.mean(0) - 1 / a).abs().max() < 5 * se
    assert abs(d[:, 0].var().item() - var) < 0.15 * var
    other = sample_lambdas(a, torch.Generator().manual_seed(2), alpha=alpha, size=n)
    assert not torch.equal(d, other)


def test_lambda_table():
    assert len(LAMBDA_TABLE_PUBLISHED) == 10
    assert LAMBDA_TABLE.shape == (10, 4)
    torch.testing.assert_close(LAMBDA_TABLE.sum(1), torch.ones(10, dtype=torch.float64))
    published = torch.tensor([row for row, _ in LAMBDA_TABLE_PUBLISHED], dtype=torch.float64)
    # printed to 3 decimals: each row sums to 1 within rounding, and is kept up to that scale
    assert (published.sum(1) - 1).abs().max() <= 1e-3 + 1e-12
    torch.testing.assert_close(LAMBDA_TABLE, published, atol=1e-3, rtol=0)
    assert (LAMBDA_TABLE >= 0).all()
    torch.testing.assert_close(LAMBDA_TABLE_PROBS.sum(), torch.tensor(1.0, dtype=torch.float64))
    assert abs(sum(p for _, p in LAMBDA_TABLE_PUBLISHED) - 1) < 1e-9
    assert LAMBDA_TABLE_PUBLISHED[3] == ((0.233, 0.721, 0.020, 0.025), 0.185)


def test_table_sampling_draws_rows_with_their_probabilities():
    n = 6000
    d = sample_lambdas(4, torch.Generator().manual_seed(0), scheme="table", size=n)
    match = (d.unsqueeze(1) == LAMBDA_TABLE.unsqueeze(0)).all(-1)  # [n, 10]
    assert (match.sum(1) == 1).all()  # every draw is exactly one table row
    freq = match.double().mean(0)
    se = (LAMBDA_TABLE_PROBS * (1 - LAMBDA_TABLE_PROBS) / n).sqrt()
    assert ((freq - LAMBDA_TABLE_PROBS).abs() < 5 * se).all()


def test_lambda_errors():
    g = torch.Generator().manual_seed(0)
    with pytest.raises(LossConfigError, match="4 aspects"):
        sample_lambdas(3, g, scheme="table")
    with pytest.raises(LossConfigError, match="unknown scheme 'softmax'"):
        sample_lambdas(4, g, scheme="softmax")
    with pytest.raises(LossConfigError, match="alpha"):
        sample_lambdas(4, g, alpha=0.0)
    with pytest.raises(LossConfigError, match="n_aspects"):
        sample_lambdas(0, g)
    with pytest.raises(LossConfigError, match="generator"):
        sample_lambdas(4, 42)


# ---------------------------------------------------------------------------------------------
# loss input errors


def test_loss_errors():
    policy, ref, lengths, targets = _batch(13)
    lam = torch.full((4,), 0.25)
    with pytest.raises(LossConfigError, match="beta"):
        listwise_dpo_loss(policy, ref, lengths, targets, lam, 0.0)
    with pytest.raises(LossConfigError, match="needs lengths"):
        listwise_dpo_loss(policy, ref, None, targets, lam, 0.1)
    with pytest.raises(ValueError, match="ref_logps has shape"):
        listwise_dpo_loss(policy, ref[:, :3], lengths, targets, lam, 0.1)
    with pytest.raises(ValueError, match="N >= 2"):
        listwise_dpo_loss(policy[:, :1], ref[:, :1], lengths[:, :1], targets[:, :1], lam, 0.1)
    with pytest.raises(ValueError, match="targets has shape"):
        listwise_dpo_loss(policy, ref, lengths, targets[:, :3], lam, 0.1)
    with pytest.raises(ValueError, match="sum to 1"):
        listwise_dpo_loss(policy, ref, lengths, targets * 2, lam, 0.1)
    with pytest.raises(ValueError, match="lambdas has shape"):
        listwise_dpo_loss(policy, ref, lengths, targets, torch.ones(3) / 3, 0.1)
    with pytest.raises(LossConfigError, match="non-negative"):
        listwise_dpo_loss(policy, ref, lengths, targets, torch.tensor([1.5, -0.5, 0, 0]), 0.1)
    with pytest.raises(ValueError, match="lengths has shape"):
        listwise_dpo_loss(policy, ref, lengths[:, :2], targets, lam, 0.1)


# ---------------------------------------------------------------------------------------------
# UltraFeedback conversion


def test_fixture_is_marked_synthetic_and_in_the_real_schema():
    rows = _fixture_rows()
    assert len(rows) == 6
    for row in rows:
        assert row["source"].startswith("synthetic")
        assert set(row) >= {"instruction", "completions", "models"}
        for comp in row["completions"]:
            assert set(comp) >= {"model", "response", "annotations"}
            assert set(comp["annotations"]) == set(ASPECTS)
            for aspect in ASPECTS:
                assert isinstance(comp["annotations"][aspect]["Rating"], str)


def test_fixture_conversion_ratings_na_and_drops():
    out, stats = ultrafeedback_to_listwise_with_stats(_fixture_rows())
    assert stats == {
        "rows_in": 6,
        "rows_out": 5,
        "na_ratings": 2,
        "dropped_too_few_candidates": 1,  # row 3 has a single completion
        "dropped_wrong_candidate_count": 0,
        "dropped_na": 0,
    }
    assert [len(r["responses"]) for r in out] == [4, 4, 3, 4, 4]
    first = out[0]
    assert first["prompt"] == "What is the capital of France?"
    assert first["ratings"][2] == [1.0, 2.0, 3.0, 1.0]  # helpfulness, honesty, instr., truth.
    assert first["models"][0] == "gpt-4"
    assert first["responses"][1] == "Paris is the capital city of France."
    # "N/A" -> 1.0 as the authors' converter does
    assert out[1]["ratings"][2][1] == 1.0  # completion 2, honesty N/A
    assert out[1]["ratings"][3][3] == 1.0  # completion 3, truthfulness N/A
    assert ultrafeedback_to_listwise(_fixture_rows()) == out


def test_na_policies_and_candidate_count_filters():
    rows = _fixture_rows()
    out, stats = ultrafeedback_to_listwise_with_stats(rows, na_rating=None)
    assert stats["dropped_na"] == 1 and stats["rows_out"] == 4
    assert all(None not in sum(r["ratings"], []) for r in out)
    out3 = ultrafeedback_to_listwise(rows, na_rating=3.0)
    assert out3[1]["ratings"][2][1] == 3.0
    out4, stats4 = ultrafeedback_to_listwise_with_stats(rows, n_candidates=4)
    assert stats4["dropped_wrong_candidate_count"] == 1 and len(out4) == 4
    assert all(len(r["responses"]) == 4 for r in out4)


def test_fixture_end_to_end_through_the_loss():
    out = ultrafeedback_to_listwise(_fixture_rows(), n_candidates=4)
    ratings = torch.tensor([r["ratings"] for r in out], dtype=torch.float64)  # [4, 4, 4]
    targets = aspect_targets(ratings)
    g = torch.Generator().manual_seed(0)
    policy = -(10 + 50 * torch.rand(4, 4, generator=g, dtype=torch.float64))
    lengths = torch.tensor([[len(s.split()) for s in r["responses"]] for r in out])
    lam = sample_lambdas(4, g, scheme="table")
    loss = listwise_dpo_loss(policy, policy.detach(), lengths, targets, lam, 0.1)
    assert loss.shape == (4,) and torch.isfinite(loss).all()
    # at policy == ref the model's distribution is uniform: loss = log N (lambda sums to 1)
    torch.testing.assert_close(loss, torch.full((4,), math.log(4), dtype=torch.float64))


def _malformed(mutate):
    rows = _fixture_rows()
    mutate(rows)
    return rows


MALFORMED = {
    "not a mapping": (lambda rows: rows.__setitem__(4, ["oops"]), r"row 4: expected a mapping"),
    "no instruction": (lambda rows: rows[2].pop("instruction"), r"row 2: 'instruction'"),
    "completions not a list": (
        lambda rows: rows[1].__setitem__("completions", "text"),
        r"row 1: 'completions' must be a list",
    ),
    "no response": (
        lambda rows: rows[5]["completions"][2].pop("response"),
        r"row 5, completion 2: 'response'",
    ),
    "missing aspect": (
        lambda rows: rows[0]["completions"][1]["annotations"].pop("honesty"),
        r"row 0, completion 1: annotations has no aspect 'honesty'",
    ),
    "bad rating": (
        lambda rows: rows[4]["completions"][0]["annotations"]["truthfulness"].__setitem__(
            "Rating", "excellent"
        ),
        r"row 4, completion 0, aspect 'truthfulness': rating 'excellent' is not a number",
    ),
    "rating off scale": (
        lambda rows: rows[0]["completions"][3]["annotations"]["helpfulness"].__setitem__(
            "Rating", "7"
        ),
        r"row 0, completion 3, aspect 'helpfulness': rating '7' is outside",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_rows_raise_naming_the_row(case):
    mutate, pattern = MALFORMED[case]
    with pytest.raises(ListwiseDataError, match=pattern):
        ultrafeedback_to_listwise(_malformed(mutate))


def test_missing_rating_counts_as_na_and_input_is_not_mutated():
    rows = _fixture_rows()
    rows[0]["completions"][0]["annotations"]["honesty"].pop("Rating")
    before = copy.deepcopy(rows)
    out, stats = ultrafeedback_to_listwise_with_stats(rows)
    assert stats["na_ratings"] == 3
    assert out[0]["ratings"][0][1] == 1.0
    assert rows == before
