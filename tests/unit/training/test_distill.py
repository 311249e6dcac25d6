"""Tests for prefopt.training.seed_methods.distill: DCKD and ADPA (arXiv 2502.17927,
workflow/docs/seed_methods.md §3).

Tiny random tensors only (V <= 50): the limiting cases (DCKD -> plain KD, ADPA with zero or
constant advantage), the gradient signs, the top-k / tail-bucket bookkeeping, and the errors.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from prefopt.training.losses import LossConfigError
from prefopt.training.seed_methods.distill import (
    adpa_loss,
    dckd_loss,
    teacher_advantage,
    teacher_tail_mass,
    topk_forward_kl,
    topk_teacher_distribution,
)

HSETTINGS = settings(max_examples=25, deadline=None)
B, T, V = 3, 5, 11


def _logits(seed: int, b: int = B, t: int = T, v: int = V, scale: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(b, t, v, generator=g, dtype=torch.float64)


def _mask(seed: int, b: int = B, t: int = T):
    g = torch.Generator().manual_seed(seed + 1000)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    return torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)


def _plain_kd(student_logits, teacher_logits, mask):
    """Reference: token-level forward KL(p_T || p_S), token mean over the mask."""
    kl = F.kl_div(
        F.log_softmax(student_logits, -1), F.softmax(teacher_logits, -1), reduction="none"
    ).sum(-1)
    return kl[mask].mean()


def _grad(fn, x):
    x = x.detach().clone().requires_grad_(True)
    out = fn(x)
    (g,) = torch.autograd.grad(out.sum(), x)
    return out.detach(), g


# ---------------------------------------------------------------------------------------------
# topk_teacher_distribution


def test_topk_teacher_distribution():
    logits = _logits(0)
    top = topk_teacher_distribution(logits, 4)
    assert top.logprobs.shape == (B, T, 4) and top.ids.dtype == torch.int64
    full = F.log_softmax(logits, -1)
    torch.testing.assert_close(top.logprobs, full.gather(-1, top.ids))
    assert (top.logprobs[..., :-1] >= top.logprobs[..., 1:]).all()  # descending
    assert (top.logprobs[..., -1:] >= full.sort(-1, descending=True).values[..., 4:5]).all()
    tail = teacher_tail_mass(top.logprobs)
    torch.testing.assert_close(tail, 1 - full.exp().gather(-1, top.ids).sum(-1))
    all_v = topk_teacher_distribution(logits, V)
    torch.testing.assert_close(teacher_tail_mass(all_v.logprobs), torch.zeros(B, T).double())
    assert not top.logprobs.requires_grad
    for bad in (0, V + 1, 2.0, True):
        with pytest.raises(LossConfigError, match="k must be"):
            topk_teacher_distribution(logits, bad)


# ---------------------------------------------------------------------------------------------
# DCKD


@HSETTINGS
@given(seed=st.integers(0, 10_000))
def test_dckd_full_vocab_chosen_only_is_plain_kd(seed):
    """k = V and rejected weight 0: token-level forward KL to the teacher (plain KD)."""
    student, teacher, mask = _logits(seed), _logits(seed + 1), _mask(seed)
    top = topk_teacher_distribution(teacher, V)

    def dckd(s):
        return dckd_loss(s, top.logprobs, top.ids, mask, rejected_weight=0.0)

    value, grad = _grad(dckd, student)
    ref_value, ref_grad = _grad(lambda s: _plain_kd(s, teacher, mask), student)
    torch.testing.assert_close(value, ref_value, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-12)
    # ... which has the gradient of the cross-entropy to the teacher distribution (the teacher's
    # entropy is a constant)
    p_t = F.softmax(teacher, -1)

    def ce(s):
        return -(p_t * F.log_softmax(s, -1)).sum(-1)[mask].mean()

    _, ce_grad = _grad(ce, student)
    torch.testing.assert_close(grad, ce_grad, rtol=1e-10, atol=1e-12)


@HSETTINGS
@given(seed=st.integers(0, 10_000), k=st.integers(1, V - 1))
def test_topk_kl_is_the_bucketed_kl_and_below_the_full_kl(seed, k):
    student, teacher, mask = _logits(seed), _logits(seed + 7), _mask(seed)
    top = topk_teacher_distribution(teacher, k)
    kl = topk_forward_kl(student, top.logprobs, top.ids, mask)
    # written out: k + 1 buckets (top-k ids + the rest)
    p_t, p_s = F.softmax(teacher, -1), F.softmax(student, -1)
    pt_k, ps_k = p_t.gather(-1, top.ids), p_s.gather(-1, top.ids)
    pt_b = torch.cat([pt_k, 1 - pt_k.sum(-1, keepdim=True)], -1)
    ps_b = torch.cat([ps_k, 1 - ps_k.sum(-1, keepdim=True)], -1)
    expect = (pt_b * (pt_b.log() - ps_b.log())).sum(-1) * mask
    torch.testing.assert_close(kl, expect, rtol=1e-9, atol=1e-12)
    assert (kl >= -1e-12).all()
    # coarsening can only lose divergence (data-processing inequality)
    full = F.kl_div(F.log_softmax(student, -1), p_t, reduction="none").sum(-1) * mask
    assert (kl <= full + 1e-12).all()
    assert (kl[~mask] == 0).all()


def test_dckd_zero_when_student_matches_teacher():
    logits = _logits(3)
    top = topk_teacher_distribution(logits, 4)
    value, grad = _grad(lambda s: dckd_loss(s, top.logprobs, top.ids, None, s, *top, None), logits)
    assert abs(value.item()) < 1e-12
    assert grad.abs().max() < 1e-12


def test_dckd_combines_both_sides_linearly_and_reductions():
    sc, sr, tc, tr = _logits(1), _logits(2), _logits(3), _logits(4)
    mc, mr = _mask(1), _mask(2)
    topc, topr = topk_teacher_distribution(tc, 5), topk_teacher_distribution(tr, 5)
    kl_c = topk_forward_kl(sc, *topc, mc)
    kl_r = topk_forward_kl(sr, *topr, mr)
    both = dckd_loss(sc, *topc, mc, sr, *topr, mr, chosen_weight=0.7, rejected_weight=0.3)
    expect = 0.7 * kl_c[mc].mean() + 0.3 * kl_r[mr].mean()  # each side its own token mean
    torch.testing.assert_close(both, expect)
    seq = dckd_loss(sc, *topc, mc, sr, *topr, mr, reduction="sequence_mean")
    expect_seq = kl_c.sum(1) / mc.sum(1) + kl_r.sum(1) / mr.sum(1)
    torch.testing.assert_close(seq, expect_seq)
    none = dckd_loss(sc, *topc, mc, sr, *topr, mr, reduction="none")
    torch.testing.assert_close(none, kl_c + kl_r)
    only_r = dckd_loss(sc, *topc, mc, sr, *topr, mr, chosen_weight=0.0)
    torch.testing.assert_close(only_r, kl_r[mr].mean())


def test_dckd_masked_positions_get_no_gradient_and_padding_is_ignored():
    student, teacher, mask = _logits(5), _logits(6), _mask(5)
    top = topk_teacher_distribution(teacher, 3)
    lp = top.logprobs.clone()
    ids = top.ids.clone()
    lp[~mask] = float("-inf")  # arbitrary padding in the cache
    ids[~mask] = 10_000
    value, grad = _grad(lambda s: dckd_loss(s, lp, ids, mask, rejected_weight=0), student)
    clean = dckd_loss(student, *top, mask, rejected_weight=0)
    torch.testing.assert_close(value, clean)
    assert torch.isfinite(grad).all()
    assert (grad[~mask] == 0).all()


def test_dckd_underflowed_teacher_entry_is_finite():
    student, teacher = _logits(8), _logits(9)
    top = topk_teacher_distribution(teacher, V)
    lp = top.logprobs.clone()
    lp[..., -1] = float("-inf")  # a probability that underflowed in a float16 cache
    value, grad = _grad(lambda s: dckd_loss(s, lp, top.ids, None, rejected_weight=0), student)
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()


def test_dckd_errors():
    student, teacher = _logits(0), _logits(1)
    top = topk_teacher_distribution(teacher, 4)
    with pytest.raises(LossConfigError, match="needs rejected_student_logits"):
        dckd_loss(student, *top, None)
    with pytest.raises(LossConfigError, match="unknown reduction 'sum'"):
        dckd_loss(student, *top, None, rejected_weight=0, reduction="sum")
    with pytest.raises(LossConfigError, match="chosen_weight"):
        dckd_loss(student, *top, None, chosen_weight=-1.0, rejected_weight=0)
    with pytest.raises(ValueError, match="outside the student's vocabulary"):
        topk_forward_kl(student[..., :3], top.logprobs[..., :2], top.ids[..., :2].clamp(min=5))
    with pytest.raises(ValueError, match="teacher_ids has shape"):
        topk_forward_kl(student, top.logprobs, top.ids[..., :3])
    with pytest.raises(ValueError, match="full softmax"):
        topk_forward_kl(student, torch.zeros(B, T, 4, dtype=torch.float64), top.ids)
    with pytest.raises(ValueError, match="mask has shape"):
        topk_forward_kl(student, *top, torch.ones(B, T + 1, dtype=torch.bool))
    with pytest.raises(ValueError, match="integer tensor"):
        topk_forward_kl(student, top.logprobs, top.ids.double())
    with pytest.raises(ValueError, match=r"\[B, T, V\]"):
        topk_forward_kl(student[0], *top)


# ---------------------------------------------------------------------------------------------
# ADPA


def test_adpa_zero_advantage_gives_zero_loss_and_gradient():
    student, mask = _logits(0), _mask(0)
    value, grad = _grad(lambda s: adpa_loss(s, torch.zeros(B, T, V, dtype=s.dtype), mask), student)
    assert value.item() == 0.0
    assert (grad == 0).all()


@pytest.mark.parametrize("c", [-2.5, 0.7, 10.0])
def test_adpa_constant_full_vocab_advantage_is_a_constant_loss(c):
    student, mask = _logits(1), _mask(1)
    adv = torch.full((B, T, V), c, dtype=torch.float64)
    value, grad = _grad(lambda s: adpa_loss(s, adv, mask), student)
    torch.testing.assert_close(value, torch.tensor(-c, dtype=torch.float64))
    assert grad.abs().max() < 1e-12


def test_adpa_identical_teachers_give_zero_advantage():
    teacher = _logits(2)
    adv = teacher_advantage(teacher, teacher.clone())
    assert adv.ids is None and (adv.values == 0).all()
    _, grad = _grad(lambda s: adpa_loss(s, adv.values, None), _logits(3))
    assert grad.abs().max() < 1e-12


def test_adpa_gradient_pushes_positive_advantage_tokens_up():
    student = torch.zeros(1, 1, 4, dtype=torch.float64)  # uniform student
    adv = torch.tensor([[[1.0, 0.0, 0.0, -1.0]]], dtype=torch.float64)
    _, grad = _grad(lambda s: adpa_loss(s, adv, None), student)
    # dL/dz_b = -pi_b (A_b - E_pi[A]); E_pi[A] = 0, pi_b = 1/4
    torch.testing.assert_close(grad, torch.tensor([[[-0.25, 0.0, 0.0, 0.25]]], dtype=torch.float64))
    # one gradient-descent step moves probability onto the positive-advantage token
    p0 = torch.softmax(student, -1)
    p1 = torch.softmax(student - 0.5 * grad, -1)
    assert p1[0, 0, 0] > p0[0, 0, 0] and p1[0, 0, 3] < p0[0, 0, 3]
    assert adpa_loss(student - 0.5 * grad, adv, None) < adpa_loss(student, adv, None)


@HSETTINGS
@given(seed=st.integers(0, 10_000))
def test_adpa_gradient_formula(seed):
    student, adv, mask = _logits(seed), _logits(seed + 1, scale=1.0), _mask(seed)
    _, grad = _grad(lambda s: adpa_loss(s, adv, mask, reduction="sequence_mean"), student)
    pi = F.softmax(student, -1)
    expect = -pi * (adv - (pi * adv).sum(-1, keepdim=True))
    m = mask.double()
    expect = expect * (m / m.sum(1, keepdim=True)).unsqueeze(-1)
    torch.testing.assert_close(grad, expect, rtol=1e-10, atol=1e-13)


def test_adpa_topk_support_equals_full_vocab_with_zeros_outside():
    student, dpo, ref, mask = _logits(4), _logits(5), _logits(6), _mask(4)
    full = teacher_advantage(dpo, ref)
    top = teacher_advantage(dpo, ref, k=4)
    torch.testing.assert_close(full.values.gather(-1, top.ids), top.values)
    torch.testing.assert_close(top.ids, torch.topk(dpo, 4, -1).indices)
    scattered = torch.zeros_like(full.values).scatter(-1, top.ids, top.values)
    a = adpa_loss(student, top.values, mask, top.ids)
    b = adpa_loss(student, scattered, mask)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(
        full.values, F.log_softmax(dpo, -1) - F.log_softmax(ref, -1), rtol=0, atol=0
    )


def test_adpa_reductions_and_clip():
    student, adv, mask = _logits(7), _logits(8, scale=1.0), _mask(7)
    per = adpa_loss(student, adv, mask, reduction="none")
    expect = -(F.softmax(student, -1) * adv).sum(-1) * mask
    torch.testing.assert_close(per, expect)
    torch.testing.assert_close(adpa_loss(student, adv, mask), per[mask].mean())
    torch.testing.assert_close(
        adpa_loss(student, adv, mask, reduction="sequence_mean"), per.sum(1) / mask.sum(1)
    )
    clipped = adpa_loss(student, adv, mask, advantage_clip=(1e-8, 1 - 1e-8))
    torch.testing.assert_close(clipped, adpa_loss(student, adv.clamp(1e-8, 1 - 1e-8), mask))
    # all-masked batch: 0, not NaN
    none_valid = torch.zeros(B, T, dtype=torch.bool)
    assert adpa_loss(student, adv, none_valid).item() == 0.0


def test_adpa_errors():
    student = _logits(0)
    with pytest.raises(ValueError, match="pass advantage_ids"):
        adpa_loss(student, torch.zeros(B, T, 4, dtype=torch.float64), None)
    with pytest.raises(ValueError, match="advantage has shape"):
        adpa_loss(student, torch.zeros(B, T + 1, V, dtype=torch.float64), None)
    with pytest.raises(LossConfigError, match="unknown reduction"):
        adpa_loss(student, torch.zeros(B, T, V, dtype=torch.float64), None, reduction="mean")
    with pytest.raises(LossConfigError, match="lo <= hi"):
        adpa_loss(student, torch.zeros(B, T, V).double(), None, advantage_clip=(1.0, 0.0))
    with pytest.raises(ValueError, match="same tokens, same vocabulary"):
        teacher_advantage(_logits(1), _logits(1, v=V + 1))
    with pytest.raises(LossConfigError, match="k must be"):
        teacher_advantage(_logits(1), _logits(2), k=0)
