"""Tests for prefopt.training.losses: parity with the installed TRL, properties, configuration
errors.

How parity with TRL is exercised
--------------------------------
For every entry of ``TRL_LOSS_TYPE`` a real ``trl.DPOTrainer`` is constructed (TRL 1.16's own
``__init__``, from a real ``DPOConfig(loss_type=..., beta=..., label_smoothing=...)``) on a
tiny randomly initialised ``LlamaForCausalLM`` (hidden 16, 2 layers) with a 7-word WordLevel
tokenizer built offline. ``precompute_ref_log_probs=True`` so that the reference log-probs
reach the loss as batch inputs (``inputs["ref_chosen_logps"]``); TRL computes them at
construction with the tiny model, and the test then replaces them in the batch with its own
differentiable float64 leaves.

The batch itself is built by TRL's own collator (``trainer.data_collator``) from token-id
examples whose completion lengths are the test's ``chosen_lengths`` / ``rejected_lengths``.
The only thing replaced is the policy model's forward (``trainer.model.forward``, which TRL
had already wrapped with its fused LM head): the fake forward returns per-token
``log_probs`` that are zero everywhere except the first completion position, which carries
the test's sequence log-prob. TRL sums them (``per_token_logps.sum(dim=1)``) and recovers
exactly the chosen / rejected log-probs the test controls. ``trainer.compute_loss`` (the HF
Trainer hook, i.e. TRL's real ``_compute_loss`` including its if/elif over ``loss_type``)
then yields the batch-mean loss; its gradients w.r.t. the four log-prob leaves are compared
with ``pairwise_loss(...).mean()``'s. Per-pair values are compared by calling TRL with
one-pair batches (for the separable losses; ``aot`` / ``aot_unpaired`` couple the batch, so
only the mean and the per-pair gradients are comparable).
"""

from __future__ import annotations

import inspect
import math
import tempfile
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
import yaml
from helpers import LOSS_PARAMS, REPO
from hypothesis import given, settings
from hypothesis import strategies as st

from prefopt.training.diagnostics import pair_gradients
from prefopt.training.losses import (
    LOSS_SPECS,
    LOSSES,
    OPTIONAL_PARAMS,
    PARAM_NAMES,
    REQUIRED_PARAMS,
    TRL_LOSS_TYPE,
    LossConfigError,
    LossSpec,
    amapo_margin,
    margin_sigmoid_max_label_smoothing,
    margin_sigmoid_truncation_point,
    needs_lengths,
    pairwise_loss,
    validate_params,
)

ALL_NAMES = [
    "dpo",
    "cdpo",
    "dpo_hinge",
    "ipo",
    "exo",
    "aot",
    "aot_pair",
    "apo_zero",
    "apo_down",
    "margin_sigmoid",
    "apo_hinge_zero",
    "apo_hinge_softplus",
    "amapo",
]

PARAMS = LOSS_PARAMS

HSETTINGS = settings(max_examples=40, deadline=None)


def _random_batch(seed: int, n: int = 8, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    chosen = -(5 + 145 * torch.rand(n, generator=g, dtype=dtype))
    rejected = -(5 + 145 * torch.rand(n, generator=g, dtype=dtype))
    ref_chosen = chosen + 8 * torch.randn(n, generator=g, dtype=dtype)
    ref_rejected = rejected + 8 * torch.randn(n, generator=g, dtype=dtype)
    len_c = torch.randint(1, 40, (n,), generator=g)
    len_r = torch.randint(1, 40, (n,), generator=g)
    return chosen, rejected, ref_chosen, ref_rejected, len_c, len_r


def _grads(name, chosen, rejected, ref_c, ref_r, len_c=None, len_r=None, **params):
    leaves = [t.detach().clone().requires_grad_(True) for t in (chosen, rejected, ref_c, ref_r)]
    losses = pairwise_loss(name, *leaves, len_c, len_r, **params)
    grads = torch.autograd.grad(losses.sum(), leaves, allow_unused=True, materialize_grads=True)
    return losses.detach(), grads


# ---------------------------------------------------------------------------------------------
# registry / API


def test_registry_has_exactly_the_thirteen_losses():
    assert sorted(LOSSES) == sorted(ALL_NAMES)
    assert set(REQUIRED_PARAMS) == set(LOSSES)
    assert set(OPTIONAL_PARAMS) <= set(LOSSES)
    for name, fn in LOSSES.items():
        assert "beta" in REQUIRED_PARAMS[name]
        assert fn.__doc__ and ("Eq." in fn.__doc__ or "§" in fn.__doc__), name


def test_trl_loss_type_mapping():
    assert TRL_LOSS_TYPE == {
        "dpo": "sigmoid",
        "dpo_hinge": "hinge",
        "ipo": "ipo",
        "exo": "exo_pair",
        "aot": "aot",
        "aot_pair": "aot_unpaired",
        "apo_zero": "apo_zero",
        "apo_down": "apo_down",
    }


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_loss_shape_finite_and_differentiable(name):
    c, r, rc, rr, lc, lr = _random_batch(0)
    losses, grads = _grads(name, c, r, rc, rr, lc, lr, **PARAMS[name])
    assert losses.shape == (8,)
    assert torch.isfinite(losses).all()
    assert all(torch.isfinite(g).all() for g in grads)
    # float32 inputs give float32 per-pair losses of the same values
    losses32 = pairwise_loss(
        name, c.float(), r.float(), rc.float(), rr.float(), lc, lr, **PARAMS[name]
    )
    assert losses32.dtype == torch.float32
    torch.testing.assert_close(losses32.double(), losses, rtol=1e-4, atol=1e-4)


def test_needs_lengths():
    assert {n for n in ALL_NAMES if needs_lengths(n)} == {"ipo", "amapo"}
    with pytest.raises(LossConfigError, match="nope"):
        needs_lengths("nope")


# ---------------------------------------------------------------------------------------------
# errors


def test_unknown_loss_name():
    c, r, rc, rr, lc, lr = _random_batch(1)
    with pytest.raises(LossConfigError, match="unknown loss 'simpo'"):
        pairwise_loss("simpo", c, r, rc, rr, beta=0.1)
    assert issubclass(LossConfigError, ValueError)


@pytest.mark.parametrize("name", ["ipo", "amapo"])
def test_missing_lengths(name):
    c, r, rc, rr, lc, lr = _random_batch(2)
    with pytest.raises(LossConfigError, match=rf"loss '{name}'.*chosen_lengths"):
        pairwise_loss(name, c, r, rc, rr, **PARAMS[name])
    with pytest.raises(LossConfigError, match=rf"loss '{name}'.*rejected_lengths"):
        pairwise_loss(name, c, r, rc, rr, lc, None, **PARAMS[name])


@pytest.mark.parametrize("name", ALL_NAMES)
def test_missing_each_required_param(name):
    c, r, rc, rr, lc, lr = _random_batch(3)
    for param in REQUIRED_PARAMS[name]:
        params = {k: v for k, v in PARAMS[name].items() if k != param}
        with pytest.raises(LossConfigError, match=rf"loss '{name}' is missing.*{param}"):
            pairwise_loss(name, c, r, rc, rr, lc, lr, **params)
        # None counts as absent
        with pytest.raises(LossConfigError, match=param):
            validate_params(name, {**params, param: None})


def test_unused_and_invalid_params():
    with pytest.raises(LossConfigError, match=r"loss 'dpo' does not use.*margin"):
        validate_params("dpo", {"beta": 0.1, "margin": 1.0})
    with pytest.raises(LossConfigError, match="betta"):
        validate_params("apo_hinge_zero", {"beta": 0.1, "margin": 1.0, "betta": 2})
    for bad in ({"beta": 0.0}, {"beta": -1}, {"beta": math.inf}, {"beta": "0.1"}, {"beta": True}):
        with pytest.raises(LossConfigError, match="beta"):
            validate_params("dpo", bad)
    with pytest.raises(LossConfigError, match="label_smoothing"):
        validate_params("cdpo", {"beta": 0.1, "label_smoothing": 0.5})
    with pytest.raises(LossConfigError, match="margin"):
        validate_params("dpo_hinge", {"beta": 0.1, "margin": -1})
    with pytest.raises(LossConfigError, match="delta"):
        validate_params("margin_sigmoid", {"beta": 0.1, "delta": -0.1, "label_smoothing": 0.0})
    # optional defaults are filled in; numpy-like scalars are accepted
    assert validate_params("aot", {"beta": torch.tensor(0.5)}) == {
        "beta": 0.5,
        "label_smoothing": 0.0,
    }


def test_missing_reference_and_bad_shapes():
    c, r, rc, rr, lc, lr = _random_batch(4)
    with pytest.raises(LossConfigError, match=r"loss 'dpo'.*ref_rejected_logps"):
        pairwise_loss("dpo", c, r, rc, None, beta=0.1)
    with pytest.raises(ValueError, match="shape"):
        pairwise_loss("dpo", c, r[:3], rc, rr, beta=0.1)
    with pytest.raises(ValueError, match="floating"):
        pairwise_loss("dpo", c.long(), r, rc, rr, beta=0.1)
    with pytest.raises(ValueError, match="shape"):
        pairwise_loss("ipo", c, r, rc, rr, lc[:2], lr, beta=0.1)


# ---------------------------------------------------------------------------------------------
# parity with the installed TRL (see module docstring)


@pytest.fixture(scope="module")
def trl_trainer_factory():
    from datasets import Dataset
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from transformers.utils import logging as hf_logging
    from trl import DPOConfig, DPOTrainer

    hf_logging.set_verbosity_error()
    words = ["<pad>", "<eos>", "<unk>", "a", "b", "c", "d"]
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>"
    )
    config = LlamaConfig(
        vocab_size=len(words),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=128,
    )
    dataset = Dataset.from_dict(
        {"prompt": ["a b", "c"], "chosen": [" c d", " a"], "rejected": [" d", " b c"]}
    )
    cache: dict = {}
    tmp = tempfile.TemporaryDirectory()

    def make(loss_type: str, beta: float, label_smoothing: float):
        key = (loss_type, beta, label_smoothing)
        if key not in cache:
            torch.manual_seed(0)
            args = DPOConfig(
                output_dir=tmp.name,
                loss_type=loss_type,
                beta=beta,
                label_smoothing=label_smoothing,
                precompute_ref_log_probs=True,
                per_device_train_batch_size=2,
                use_cpu=True,
                report_to="none",
                save_strategy="no",
                disable_tqdm=True,
            )
            trainer = DPOTrainer(
                model=LlamaForCausalLM(config),
                args=args,
                train_dataset=dataset,
                processing_class=tokenizer,
            )
            assert trainer.loss_types == [loss_type]
            state: dict = {}

            def fake_fused_forward(*_args, labels=None, fused_lm_head=False, **_kwargs):
                # TRL calls model(..., labels=labels, fused_lm_head=True) and reads per-token
                # log-probs of the completion tokens (0 where the label is -100).
                assert fused_lm_head
                is_completion = labels[:, 1:] != -100
                first = is_completion.int().argmax(dim=1)
                onehot = F.one_hot(first, is_completion.shape[1]).to(torch.float64)
                log_probs = onehot * state["logps"][:, None]
                zeros = torch.zeros_like(log_probs)
                return SimpleNamespace(
                    log_probs=log_probs,
                    entropy=zeros,
                    mean_logits=zeros,
                    is_top1=torch.zeros_like(is_completion),
                    aux_loss=None,
                )

            trainer.model.forward = fake_fused_forward
            cache[key] = (trainer, state)
        return cache[key]

    yield make
    tmp.cleanup()


def _trl_mean_loss(trainer, state, chosen, rejected, ref_c, ref_r, len_c, len_r):
    examples = [
        {
            "prompt_ids": [3],
            "chosen_ids": [4] * lc,
            "rejected_ids": [5] * lr,
            "ref_chosen_logps": a,
            "ref_rejected_logps": b,
        }
        for lc, lr, a, b in zip(
            len_c.tolist(), len_r.tolist(), ref_c.tolist(), ref_r.tolist(), strict=True
        )
    ]
    batch = trainer.data_collator(examples)
    # TRL's collator derived the completion lengths we intend
    assert batch["completion_mask"].sum(dim=1).tolist() == [*len_c.tolist(), *len_r.tolist()]
    torch.testing.assert_close(
        batch["ref_chosen_logps"].double(), ref_c.detach(), atol=1e-4, rtol=0
    )
    batch["ref_chosen_logps"] = ref_c  # the differentiable float64 leaves
    batch["ref_rejected_logps"] = ref_r
    state["logps"] = torch.cat([chosen, rejected])
    return trainer.compute_loss(trainer.model, batch)


def _parity_cases():
    cases = []
    for name, loss_type in TRL_LOSS_TYPE.items():
        for beta in (0.1, 0.7):
            smoothings = {"exo": (1e-3, 0.2), "aot": (0.0, 0.15), "aot_pair": (0.0, 0.15)}
            for ls in smoothings.get(name, (0.0,)):
                cases.append(pytest.param(name, loss_type, beta, ls, id=f"{name}-b{beta}-ls{ls}"))
    return cases


@pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers deprecations inside TRL
@pytest.mark.parametrize(("name", "loss_type", "beta", "ls"), _parity_cases())
def test_parity_with_installed_trl(trl_trainer_factory, name, loss_type, beta, ls):
    trainer, state = trl_trainer_factory(loss_type, beta, ls)
    params = {"beta": beta}
    if name == "dpo_hinge":
        params["margin"] = 1.0  # TRL's hinge hard-codes m = 1
    if ls:
        params["label_smoothing"] = ls
    # Everything is float64 on both sides, except that TRL's exo_pair evaluates log(eps) and
    # log1p(-eps) on a float32 tensor (torch.tensor(label_smoothing)): ~2e-7 relative there.
    tol = {"rtol": 1e-6, "atol": 1e-7} if name == "exo" else {"rtol": 1e-9, "atol": 1e-12}
    for seed in (11, 12):
        c, r, rc, rr, lc, lr = _random_batch(seed + int(100 * beta))
        leaves_trl = [t.clone().requires_grad_(True) for t in (c, r, rc, rr)]
        leaves_ours = [t.clone().requires_grad_(True) for t in (c, r, rc, rr)]

        trl_loss = _trl_mean_loss(trainer, state, *leaves_trl, lc, lr)
        ours = pairwise_loss(name, *leaves_ours, lc, lr, **params)
        assert ours.shape == (8,)
        torch.testing.assert_close(ours.mean(), trl_loss.double(), **tol)

        g_trl = torch.autograd.grad(trl_loss, leaves_trl, materialize_grads=True)
        g_ours = torch.autograd.grad(ours.mean(), leaves_ours, materialize_grads=True)
        for a, b in zip(g_ours, g_trl, strict=True):
            torch.testing.assert_close(a, b.double(), **tol)
        # the inputs really exercise the loss: some gradient is non-zero
        assert any(g.abs().sum() > 0 for g in g_trl)

        if name not in ("aot", "aot_pair"):  # separable: compare every pair's value
            for i in range(4):
                sl = slice(i, i + 1)
                one = _trl_mean_loss(trainer, state, c[sl], r[sl], rc[sl], rr[sl], lc[sl], lr[sl])
                torch.testing.assert_close(ours[i].detach(), one.detach().double(), **tol)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_trl_hinge_is_dpo_hinge_with_unit_margin_only(trl_trainer_factory):
    trainer, state = trl_trainer_factory("hinge", 0.7, 0.0)
    c, r, rc, rr, lc, lr = _random_batch(5)
    trl_loss = _trl_mean_loss(trainer, state, c, r, rc, rr, lc, lr).double()
    m1 = pairwise_loss("dpo_hinge", c, r, rc, rr, beta=0.7, margin=1.0).mean()
    m2 = pairwise_loss("dpo_hinge", c, r, rc, rr, beta=0.7, margin=2.0).mean()
    torch.testing.assert_close(m1, trl_loss)
    assert not torch.isclose(m2, trl_loss)


# ---------------------------------------------------------------------------------------------
# property tests


@st.composite
def batches(draw, lo=-200.0, hi=0.0, min_size=1, max_size=8):
    n = draw(st.integers(min_size, max_size))
    floats = st.floats(lo, hi, allow_nan=False, allow_infinity=False)

    def vec():
        return torch.tensor(draw(st.lists(floats, min_size=n, max_size=n)), dtype=torch.float64)

    c, r, rc, rr = vec(), vec(), vec(), vec()
    ints = st.lists(st.integers(1, 500), min_size=n, max_size=n)
    lc = torch.tensor(draw(ints))
    lr = torch.tensor(draw(ints))
    return c, r, rc, rr, lc, lr


betas = st.floats(0.01, 1.0)
margins = st.floats(0.0, 5.0)
smoothing = st.floats(0.0, 0.49)


@HSETTINGS
@given(batch=batches(), beta=betas, margin=margins)
def test_apo_hinge_zero_gradients_switch_off_past_the_margin(batch, beta, margin):
    c, r, rc, rr, lc, lr = batch
    _, (g_c, g_r, g_rc, g_rr) = _grads("apo_hinge_zero", c, r, rc, rr, beta=beta, margin=margin)
    past_chosen = beta * (c - rc) >= margin
    past_rejected = beta * (r - rr) <= -margin
    assert (g_c[past_chosen] == 0).all()
    assert (g_r[past_rejected] == 0).all()
    # inside the margin the hinge is linear: gradient exactly -beta / +beta
    assert (g_c[~past_chosen] == -beta).all()
    assert (g_r[~past_rejected] == beta).all()
    # the two sides are independent (chosen term has no rejected dependence and vice versa)
    assert (g_rc == -g_c).all() and (g_rr == -g_r).all()


@HSETTINGS
@given(batch=batches(), beta=betas, margin=margins)
def test_dpo_hinge_gradient_zero_iff_margin_reached(batch, beta, margin):
    c, r, rc, rr, lc, lr = batch
    _, (g_c, g_r, _, _) = _grads("dpo_hinge", c, r, rc, rr, beta=beta, margin=margin)
    reached = beta * ((c - rc) - (r - rr)) >= margin
    assert (g_c[reached] == 0).all() and (g_r[reached] == 0).all()
    assert (g_c[~reached] == -beta).all() and (g_r[~reached] == beta).all()


@HSETTINGS
@given(batch=batches(), beta=betas, margin=margins)
def test_apo_hinge_softplus_gradient_never_zero(batch, beta, margin):
    c, r, rc, rr, lc, lr = batch
    losses, (g_c, g_r, _, _) = _grads("apo_hinge_softplus", c, r, rc, rr, beta=beta, margin=margin)
    assert (g_c != 0).all() and (g_r != 0).all()
    assert (g_c < 0).all() and (g_r > 0).all()
    assert (losses > 0).all()


@HSETTINGS
@given(batch=batches(), beta=betas, delta=st.floats(0.0, 3.0), eps=smoothing)
def test_margin_sigmoid_truncated_branches_give_zero_gradient(batch, beta, delta, eps):
    c, r, rc, rr, lc, lr = batch
    losses, (g_c, g_r, _, _) = _grads(
        "margin_sigmoid", c, r, rc, rr, beta=beta, delta=delta, label_smoothing=eps
    )
    logits = beta * ((c - rc) - (r - rr))
    pos_off = -F.logsigmoid(logits) - delta <= 0
    neg_off = -F.logsigmoid(-logits) - delta <= 0
    both_off = pos_off & (neg_off | (eps == 0))
    assert (g_c[both_off] == 0).all() and (g_r[both_off] == 0).all()
    assert (losses[both_off] == 0).all()
    # elsewhere each branch contributes its cDPO gradient only while it is above delta
    expected = beta * (
        -(1 - eps) * (~pos_off).double() * torch.sigmoid(-logits)
        + eps * (~neg_off).double() * torch.sigmoid(logits)
    )
    torch.testing.assert_close(g_c, expected, rtol=1e-9, atol=1e-15)
    torch.testing.assert_close(g_r, -expected, rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("delta", [0.01, 0.1, 0.5, 1.0])
def test_margin_sigmoid_truncation_point_is_where_the_preference_branch_reaches_delta(delta):
    z = margin_sigmoid_truncation_point(delta)
    assert -F.logsigmoid(torch.tensor(z, dtype=torch.float64)).item() == pytest.approx(delta)
    # cDPO's optimum log((1-eps)/eps) sits exactly on the cut-off at the largest epsilon
    eps = margin_sigmoid_max_label_smoothing(delta)
    assert math.log((1 - eps) / eps) == pytest.approx(z)
    assert margin_sigmoid_truncation_point(0.0) == math.inf
    assert margin_sigmoid_truncation_point(0.1) == pytest.approx(2.2521684, abs=1e-6)
    assert margin_sigmoid_max_label_smoothing(0.1) == pytest.approx(0.0951626, abs=1e-6)


@HSETTINGS
@given(
    z=st.floats(-30.0, 30.0),
    delta=st.floats(0.0, math.log(2) - 1e-3),
    eps=st.floats(1e-3, 0.499),
)
def test_margin_sigmoid_with_smoothing_never_gives_zero_gradient(z, delta, eps):
    """workflow/docs/losses.md: with eps > 0 and delta < ln 2 every pair stays active."""
    zero = torch.zeros(1, dtype=torch.float64)
    chosen = torch.tensor([z / 0.1], dtype=torch.float64)
    _, (g_c, g_r, _, _) = _grads(
        "margin_sigmoid", chosen, zero, zero, zero, beta=0.1, delta=delta, label_smoothing=eps
    )
    assert g_c.item() != 0 and g_r.item() != 0


def _shipped_margin_sigmoid_params() -> dict:
    variants = yaml.safe_load((REPO / "config/config.yaml").read_text())["variants"]
    variant = variants["margin_sigmoid"]
    return {k: variant[k] for k in REQUIRED_PARAMS["margin_sigmoid"]}


def test_shipped_margin_sigmoid_truncates_on_a_trained_like_margin_distribution():
    """With config/config.yaml's delta and epsilon some pairs get exactly zero gradient; with the
    earlier epsilon = 0.1 none did (cDPO in disguise). Margins: beta*D ~ N(2, 1.5^2), a policy that
    has separated most pairs, as after some DPO-style training (an assumed spread, not measured).
    """
    params = _shipped_margin_sigmoid_params()
    assert params["label_smoothing"] < margin_sigmoid_max_label_smoothing(params["delta"])
    gen = torch.Generator().manual_seed(0)
    n = 4096
    delta_score = (2.0 + 1.5 * torch.randn(n, generator=gen, dtype=torch.float64)) / params["beta"]
    zero = torch.zeros(n, dtype=torch.float64)

    def active_fraction(p: dict) -> float:
        g_c, g_r = pair_gradients("margin_sigmoid", delta_score, zero, zero, zero, **p)
        return ((g_c != 0) | (g_r != 0)).double().mean().item()

    shipped = active_fraction(params)
    expected = params["beta"] * delta_score < margin_sigmoid_truncation_point(params["delta"])
    assert shipped == pytest.approx(expected.double().mean().item())
    assert 0.5 < shipped < 0.9
    assert active_fraction({**params, "label_smoothing": 0.1}) == 1.0


@HSETTINGS
@given(batch=batches(), beta=betas, eps=smoothing)
def test_margin_sigmoid_with_zero_delta_is_cdpo(batch, beta, eps):
    c, r, rc, rr, lc, lr = batch
    ms = pairwise_loss("margin_sigmoid", c, r, rc, rr, beta=beta, delta=0.0, label_smoothing=eps)
    cd = pairwise_loss("cdpo", c, r, rc, rr, beta=beta, label_smoothing=eps)
    torch.testing.assert_close(ms, cd, rtol=1e-12, atol=1e-12)


@HSETTINGS
@given(batch=batches(), beta=betas)
def test_cdpo_with_zero_smoothing_is_dpo(batch, beta):
    c, r, rc, rr, lc, lr = batch
    cd = pairwise_loss("cdpo", c, r, rc, rr, beta=beta, label_smoothing=0.0)
    dpo = pairwise_loss("dpo", c, r, rc, rr, beta=beta)
    assert torch.equal(cd, dpo)
    # and the closed form of Eq. 1
    logits = beta * ((c - rc) - (r - rr))
    torch.testing.assert_close(dpo, torch.log1p(torch.exp(-logits)), rtol=1e-9, atol=1e-12)


@HSETTINGS
@given(batch=batches(min_size=2), beta=st.floats(0.1, 3.0), eps=smoothing)
def test_amapo_margin_zero_above_batch_mean(batch, beta, eps):
    c, r, rc, rr, lc, lr = batch
    d = c / lc.double() - r / lr.double()
    gamma = amapo_margin(d, beta)
    mu = d.mean()
    assert (gamma[d >= mu] == 0).all()
    degenerate = bool(d.max() == d.min())
    if not degenerate:
        below = d < mu
        expected = beta * torch.exp(((mu - d) / d.std()) * mu)
        torch.testing.assert_close(gamma[below], expected[below], rtol=1e-12, atol=0)
        assert (gamma[below] > 0).all()
    # pairs with gamma = 0 get exactly the cDPO loss on the length-normalised margin
    losses = pairwise_loss("amapo", c, r, rc, rr, lc, lr, beta=beta, label_smoothing=eps)
    zero = torch.zeros_like(c)
    cd = pairwise_loss(
        "cdpo", c / lc.double(), r / lr.double(), zero, zero, beta=beta, label_smoothing=eps
    )
    torch.testing.assert_close(losses[gamma == 0], cd[gamma == 0], rtol=1e-12, atol=1e-12)
    # a positive margin only makes the loss larger where the cDPO loss is still decreasing in
    # its argument, i.e. below its minimum at log((1 - eps) / eps) (everywhere for eps = 0)
    x_min = math.inf if eps == 0 else math.log((1 - eps) / eps)
    region = (gamma > 0) & (beta * d <= x_min)
    assert (losses[region] >= cd[region]).all()


@HSETTINGS
@given(
    pair=batches(min_size=1, max_size=1),
    n=st.integers(1, 8),
    beta=st.floats(0.1, 3.0),
    eps=smoothing,
)
def test_amapo_all_equal_margins_is_cdpo_on_length_normalised(pair, n, beta, eps):
    c, r, rc, rr, lc, lr = (t.repeat(n) for t in pair)  # n copies of one pair: all Delta equal
    losses = pairwise_loss("amapo", c, r, None, None, lc, lr, beta=beta, label_smoothing=eps)
    zero = torch.zeros_like(c)
    cd = pairwise_loss(
        "cdpo", c / lc.double(), r / lr.double(), zero, zero, beta=beta, label_smoothing=eps
    )
    torch.testing.assert_close(losses, cd, rtol=1e-12, atol=1e-12)
    assert (amapo_margin(c / lc.double() - r / lr.double(), beta) == 0).all()


def test_amapo_is_reference_free_and_gamma_has_no_gradient():
    c, r, rc, rr, lc, lr = _random_batch(6)
    a = pairwise_loss("amapo", c, r, rc, rr, lc, lr, beta=2.0)
    b = pairwise_loss("amapo", c, r, None, None, lc, lr, beta=2.0)
    assert torch.equal(a, b)
    _, (g_c, g_r, g_rc, g_rr) = _grads("amapo", c, r, rc, rr, lc, lr, beta=2.0)
    assert (g_rc == 0).all() and (g_rr == 0).all()
    # gamma is a constant: d loss_i / d chosen_i = -beta/|y_w| * sigma(-(beta D_i - gamma_i))
    d = c / lc.double() - r / lr.double()
    z = 2.0 * d - amapo_margin(d, 2.0)
    torch.testing.assert_close(g_c, -2.0 / lc.double() * torch.sigmoid(-z))
    torch.testing.assert_close(g_r, 2.0 / lr.double() * torch.sigmoid(-z))


@HSETTINGS
@given(batch=batches(), beta=betas)
def test_ipo_length_normalisation(batch, beta):
    c, r, rc, rr, lc, lr = batch
    losses = pairwise_loss("ipo", c, r, rc, rr, lc, lr, beta=beta)
    expected = ((c - rc) / lc.double() - (r - rr) / lr.double() - 1 / (2 * beta)) ** 2
    torch.testing.assert_close(losses, expected, rtol=1e-12, atol=1e-12)
    # lengths of 0 are clamped to 1, as TRL clamps completion counts
    zeros = torch.zeros_like(lc)
    ones = torch.ones_like(lc)
    torch.testing.assert_close(
        pairwise_loss("ipo", c, r, rc, rr, zeros, zeros, beta=beta),
        pairwise_loss("ipo", c, r, rc, rr, ones, ones, beta=beta),
    )


@HSETTINGS
@given(batch=batches(), beta=betas)
def test_exo_zero_smoothing_means_1e3(batch, beta):
    c, r, rc, rr, lc, lr = batch
    a = pairwise_loss("exo", c, r, rc, rr, beta=beta)
    b = pairwise_loss("exo", c, r, rc, rr, beta=beta, label_smoothing=1e-3)
    assert torch.equal(a, b)
    # EXO is a KL divergence: never negative
    assert (a >= -1e-12).all()


@HSETTINGS
@given(batch=batches(min_size=2), beta=betas, eps=smoothing, data=st.data())
def test_aot_losses_are_permutation_invariant_and_reduce_to_cdpo(batch, beta, eps, data):
    c, r, rc, rr, lc, lr = batch
    perm = torch.tensor(data.draw(st.permutations(range(len(c)))))
    for name in ("aot", "aot_pair"):
        a = pairwise_loss(name, c, r, rc, rr, beta=beta, label_smoothing=eps)
        b = pairwise_loss(
            name, c[perm], r[perm], rc[perm], rr[perm], beta=beta, label_smoothing=eps
        )
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # a one-pair batch has nothing to sort: both are cDPO
    one = [t[:1] for t in (c, r, rc, rr)]
    cd = pairwise_loss("cdpo", *one, beta=beta, label_smoothing=eps)
    for name in ("aot", "aot_pair"):
        torch.testing.assert_close(
            pairwise_loss(name, *one, beta=beta, label_smoothing=eps), cd, rtol=1e-12, atol=1e-12
        )


@HSETTINGS
@given(batch=batches(), beta=betas)
def test_apo_zero_and_down_match_paper_equations(batch, beta):
    c, r, rc, rr, lc, lr = batch
    rw, rl = beta * (c - rc), beta * (r - rr)  # paper Eq. 6: r = beta log(pi / pi_ref)
    zero = pairwise_loss("apo_zero", c, r, rc, rr, beta=beta)
    down = pairwise_loss("apo_down", c, r, rc, rr, beta=beta)
    # Eq. 7 + the constant 1 (TRL's form); Eq. 8 + 1
    torch.testing.assert_close(zero, 1 - torch.sigmoid(rw) + torch.sigmoid(rl))
    torch.testing.assert_close(down, 1 + torch.sigmoid(rw) - torch.sigmoid(rw - rl))


# ---------------------------------------------------------------------------------------------
# LOSS_SPECS: one complete record per loss, and the tables derived from it

_UNIFORM_POSITIONAL = (
    "chosen_logps",
    "rejected_logps",
    "ref_chosen_logps",
    "ref_rejected_logps",
    "chosen_lengths",
    "rejected_lengths",
)


@pytest.mark.parametrize("name", ALL_NAMES)
def test_every_loss_spec_is_complete(name):
    spec = LOSS_SPECS[name]
    assert isinstance(spec, LossSpec) and spec.name == name
    assert callable(spec.fn)
    assert spec.reference.strip(), name
    sig = inspect.signature(spec.fn)
    positional = [
        p for p in sig.parameters.values() if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    ]
    assert tuple(p.name for p in positional) == _UNIFORM_POSITIONAL
    assert all(p.default is None for p in positional[4:])  # lengths optional
    keyword_only = {
        p.name: p.default
        for p in sig.parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    # params are exactly the function's keyword arguments; required iff the function has no default
    assert set(spec.params) == set(keyword_only), name
    assert set(spec.params) <= set(PARAM_NAMES)
    assert spec.params["beta"] is None  # every loss requires beta
    for param, default in spec.params.items():
        if default is None:
            assert keyword_only[param] is inspect.Parameter.empty, (name, param)
        else:
            assert keyword_only[param] == default, (name, param)
    assert spec.trl_loss_type is None or isinstance(spec.trl_loss_type, str)
    # the derived views agree with the spec
    assert LOSSES[name] is spec.fn
    assert REQUIRED_PARAMS[name] == spec.required
    assert OPTIONAL_PARAMS.get(name, {}) == spec.optional
    assert TRL_LOSS_TYPE.get(name) == spec.trl_loss_type
    assert needs_lengths(name) is spec.needs_lengths


@pytest.mark.parametrize("name", ALL_NAMES)
def test_spec_defaults_are_what_validation_fills_in(name):
    spec = LOSS_SPECS[name]
    given = {p: PARAMS[name][p] for p in spec.required}
    resolved = validate_params(name, given)
    assert resolved == {**spec.optional, **given}
    for param, default in spec.optional.items():
        assert resolved[param] == default
    # ... and the loss with its defaults filled in is the function called with them explicitly
    c, r, rc, rr, lc, lr = _random_batch(7)
    explicit = spec.fn(c, r, rc, rr, lc, lr, **spec.optional, **given)
    torch.testing.assert_close(
        pairwise_loss(name, c, r, rc, rr, lc, lr, **given), explicit, rtol=0, atol=0
    )


@pytest.mark.parametrize("name", ALL_NAMES)
def test_spec_reference_free_flag(name):
    c, r, rc, rr, lc, lr = _random_batch(3)
    if LOSS_SPECS[name].reference_free:
        pairwise_loss(name, c, r, None, None, lc, lr, **PARAMS[name])
    else:
        with pytest.raises(LossConfigError, match="needs reference log-probs"):
            pairwise_loss(name, c, r, None, None, lc, lr, **PARAMS[name])


def test_loss_spec_is_immutable_and_rejects_unknown_parameters():
    spec = LOSS_SPECS["exo"]
    with pytest.raises(TypeError):
        spec.params["label_smoothing"] = 0.1  # type: ignore[index]
    with pytest.raises(AttributeError):
        spec.needs_lengths = True  # type: ignore[misc]
    with pytest.raises(ValueError, match="betta"):
        LossSpec("typo", LOSSES["dpo"], {"betta": None}, "nowhere")
