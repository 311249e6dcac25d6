"""The reference cache and training see the same numbers, and the CPU log-prob path is TRL's.

Training reads the reference log-probs from a cache written once per run, so the cache must be
computed with exactly the policy's forward (weights dtype, autocast, LM-head path): at step 0
the policy *is* the reference, so every log-ratio, reward and margin must be 0 and the DPO loss
ln 2. A cache made with other numerics (fp16 weights, no autocast) gives every pair a spurious
offset; these tests catch that, in fp32 and in the bf16 autocast that CPUs train with.

In fp32 the step-0 rewards are exactly 0. Under bf16 autocast they are 0 up to bf16 rounding:
the kernels block their sums by batch shape and thread count, so the same sequence scored in
another padded batch moves by a few tenths of a nat (measured up to 0.6 on these pairs; the
cache pass and training batch differently), as it does for TRL's own `precompute_ref_log_probs`.
On the *same* batch the two forwards are bit for bit equal, which is what is tested exactly.
"""

from __future__ import annotations

import math
import re

import pytest
import torch

from prefopt.data.prepare import check_pairs, read_jsonl, write_jsonl
from prefopt.modeling import cpu_has_native_bf16
from prefopt.training.trainer import sequence_logps

#: bound on a sequence's log-prob change between bf16 batches of other shapes (measured: up to
#: 0.6 nats on these pairs, about 0.4 on a batch mean)
BF16_BATCH_SHAPE_NOISE_NATS = 1.0

TRAINING = {
    "max_length": 128,
    "max_prompt_length": 48,
    "reference_batch_size": 3,  # other batches than training's: the cache must not depend on it
    "epochs": 1,
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "learning_rate": 1e-6,
    "lr_scheduler_type": "linear",
    "warmup_ratio": 0.0,
    "gradient_checkpointing": False,
    "logging_steps": 1,
    "threads": 2,
}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory, embedded_data):
    rows, _ = check_pairs(
        read_jsonl(embedded_data / "ultrafeedback_binarized/train.jsonl"), max_pairs=4
    )
    path = tmp_path_factory.mktemp("numerics") / "pairs.jsonl"
    write_jsonl(rows, path)
    return path


def _trainer_and_batch(smollm2_dir, pairs, tmp_path, precision):
    """A trainer at `precision` and one collated batch of every pair (tensors only)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prefopt.training.trainer import PrefOptDPOTrainer, _dpo_config, build_pair_dataset

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32)
    dataset = build_pair_dataset(pairs, tokenizer, TRAINING["max_prompt_length"])
    trainer = PrefOptDPOTrainer(
        model=model,
        args=_dpo_config(tmp_path, {**TRAINING, "precision": precision}, seed=0),
        train_dataset=dataset,
        processing_class=tokenizer,
        loss_name="dpo",
        loss_params={"beta": 0.1},
        require_cached_reference=False,
    )
    features = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    batch = trainer.data_collator(features)
    return trainer, {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}


#: bf16 on a CPU that emulates it (AVX2): minutes per test, and `precision: auto` never trains
#: bf16 there. Such a CPU still checks one bf16 path (the training forward = the cache forward).
ON_NATIVE_BF16 = pytest.mark.skipif(
    not cpu_has_native_bf16(),
    reason="this CPU emulates bf16 (no AVX512-BF16/AMX): ~1.5 min here, and `precision: auto` "
    "never uses bf16 on such a CPU; the bf16 training forward is checked below",
)


@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=ON_NATIVE_BF16)])
def test_cpu_log_prob_path_equals_trl_fused_lm_head(smollm2_dir, pairs, tmp_path, precision):
    trainer, batch = _trainer_and_batch(smollm2_dir, pairs, tmp_path, precision)
    model = trainer.model
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    kwargs = {k: v for k, v in batch.items() if k != "completion_mask"}
    with torch.no_grad(), trainer.accelerator.autocast():
        fused = model(**kwargs, use_cache=False, labels=labels, fused_lm_head=True).log_probs
        ours, lengths = sequence_logps(model, batch)
    fused = fused[:, -(batch["input_ids"].size(1) - 1) :].sum(dim=1)
    assert torch.equal(lengths, batch["completion_mask"][:, 1:].sum(dim=1))
    # same log-probs, summed in another order: ~1e-3 nats on sums of -100 to -300 nats
    torch.testing.assert_close(ours, fused, atol=5e-3, rtol=0)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_forward_is_the_cache_forward_on_the_same_batch(
    smollm2_dir, pairs, tmp_path, precision
):
    """Same batch, same shapes: the loss's log-probs equal the cache pass's bit for bit (the
    weights dtype, autocast and LM-head path are the same), so every step-0 reward is 0."""
    trainer, batch = _trainer_and_batch(smollm2_dir, pairs, tmp_path, precision)
    ref_chosen, ref_rejected = trainer.compute_ref_log_probs(trainer.model, batch)
    batch = {**batch, "ref_chosen_logps": ref_chosen, "ref_rejected_logps": ref_rejected}
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)
    metrics = trainer._metrics["train"]
    assert metrics["rewards/chosen"][-1] == 0.0
    assert metrics["rewards/rejected"][-1] == 0.0
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6)


def test_a_cache_with_other_numerics_is_off_at_step_zero(smollm2_dir, pairs, tmp_path):
    """The check above can fail: a cache without the training autocast is off."""
    trainer, batch = _trainer_and_batch(smollm2_dir, pairs, tmp_path, "bf16")
    with torch.no_grad():
        logps, _ = sequence_logps(trainer.model, batch)  # fp32: no autocast
    ref_chosen, ref_rejected = logps.chunk(2)
    batch = {**batch, "ref_chosen_logps": ref_chosen, "ref_rejected_logps": ref_rejected}
    trainer.model.train()
    trainer.compute_loss(trainer.model, batch)
    assert abs(trainer._metrics["train"]["rewards/chosen"][-1]) > 1e-3


@pytest.mark.parametrize(
    "precision",
    [
        "fp32",
        pytest.param(
            "bf16",
            marks=pytest.mark.skipif(
                not cpu_has_native_bf16(),
                reason="this CPU emulates bf16 (no AVX512-BF16/AMX): training it takes ~4 min "
                "here, and `precision: auto` trains in fp32 on such a CPU; the bf16 forward is "
                "still checked on the same batch above",
            ),
        ),
    ],
)
def test_reference_cache_is_the_policy_at_step_zero(smollm2_dir, pairs, tmp_path, precision):
    """Through the rules' functions: exact in fp32; within bf16's batch-shape noise in bf16."""
    from prefopt.training.trainer import build_policy_trainer, compute_reference_logps

    training = {**TRAINING, "precision": precision}
    reference = tmp_path / "reference.jsonl"
    compute_reference_logps(smollm2_dir, pairs, reference, training)
    trainer, _ = build_policy_trainer(
        smollm2_dir, pairs, reference, tmp_path / "work", training, "dpo", {"beta": 0.1}, seed=0
    )
    trainer.train()
    first = next(e for e in trainer.state.log_history if "loss" in e)
    # step 0: reward = beta * mean log-ratio over the batch
    noise = 0.0 if precision == "fp32" else BF16_BATCH_SHAPE_NOISE_NATS
    assert abs(first["rewards/chosen"]) <= 0.1 * noise
    assert abs(first["rewards/rejected"]) <= 0.1 * noise


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_takes_bf16_only_where_the_cpu_has_it(monkeypatch, native):
    """`auto` (the embedded and test configs): bf16 autocast / bfloat16 weights on a CPU that
    multiplies bf16 natively, fp32 where it would be emulated (~27x slower); fp16 on a GPU;
    explicit values pass through, and the trainer arguments follow the resolution."""
    from prefopt import modeling
    from prefopt.training.trainer import trainer_arguments

    monkeypatch.setattr(modeling, "cpu_has_native_bf16", lambda: native)
    assert modeling.resolve_precision("auto", on_gpu=False) == ("bf16" if native else "fp32")
    assert modeling.resolve_precision("auto", on_gpu=True) == "fp16"
    assert modeling.resolve_precision("bf16", on_gpu=False) == "bf16"
    assert modeling.resolve_cpu_dtype("auto") == ("bfloat16" if native else "float32")
    assert modeling.resolve_cpu_dtype("float32") == "float32"
    args = trainer_arguments("out", {**TRAINING, "precision": "auto"}, seed=0)
    assert (args["bf16"], args["fp16"]) == (native, False)
    with pytest.raises(ValueError, match="fp16 needs a CUDA GPU"):
        trainer_arguments("out", {**TRAINING, "precision": "fp16"}, seed=0)


def _fp32_trainer_with_cache(smollm2_dir, pairs, tmp_path, **cache_overrides):
    """An fp32 DPO trainer reading a reference cache computed by the rule's function, with
    `cache_overrides` applied to the cache's settings only; returns (trainer, cache path).
    With overrides the cache's record is rewritten to claim the training settings: a cache whose
    numerics differ in a way no setting shows (another machine's kernels), which only the
    step-0 check can see."""
    from prefopt.runtime import read_json, write_json
    from prefopt.training.reference_cache import meta_path
    from prefopt.training.trainer import build_policy_trainer, compute_reference_logps

    training = {**TRAINING, "precision": "fp32"}
    reference = tmp_path / "reference.jsonl"
    compute_reference_logps(smollm2_dir, pairs, reference, {**training, **cache_overrides})
    if cache_overrides:
        record = read_json(meta_path(reference))
        record["settings"].update({k: training[k] for k in cache_overrides})
        write_json(record, meta_path(reference))
    trainer, _ = build_policy_trainer(
        smollm2_dir, pairs, reference, tmp_path / "work", training, "dpo", {"beta": 0.1}, seed=0
    )
    return trainer, reference


def test_step_zero_reference_check_passes_with_the_training_numerics(smollm2_dir, pairs, tmp_path):
    """The cache made by the rule's function with the training settings: within tolerance."""
    from prefopt.training.trainer import (
        REFERENCE_CHECK_TOLERANCE_NATS,
        check_reference_at_step_zero,
    )

    trainer, reference = _fp32_trainer_with_cache(smollm2_dir, pairs, tmp_path)
    report = check_reference_at_step_zero(trainer, reference, "fp32")
    assert report["pairs_checked"] == TRAINING["per_device_train_batch_size"]
    assert report["max_abs_diff_nats"] <= REFERENCE_CHECK_TOLERANCE_NATS["fp32"]


def test_step_zero_reference_check_names_the_pair_of_a_mismatched_cache(
    smollm2_dir, pairs, tmp_path
):
    """A cache computed with other numerics (here: another truncation, max length 100) stops
    training before its first step, naming the pair and both values."""
    from prefopt.training.trainer import ReferenceCacheError, check_reference_at_step_zero

    trainer, reference = _fp32_trainer_with_cache(smollm2_dir, pairs, tmp_path, max_length=100)
    first_pair = trainer.train_dataset["pair_id"][0]
    with pytest.raises(ReferenceCacheError, match=r"step-0 reference check failed for pair") as err:
        check_reference_at_step_zero(trainer, reference, "fp32")
    message = str(err.value)
    assert first_pair in message and "rerun cache_reference_logps" in message
    assert re.search(r"has -?\d+\.\d{4}, the policy's own log-prob .* is -?\d+\.\d{4}", message)


def test_step_zero_reference_check_fails_on_a_non_finite_policy_log_prob(
    smollm2_dir, pairs, tmp_path, monkeypatch
):
    """A policy whose own log-prob is NaN or inf before any step (overflowing half-precision
    kernels, broken weights) must stop the run: |NaN - x| > tol is False, so a check written as
    "diff > tol" let it through (issue 29 item 10)."""
    import torch

    from prefopt.training.trainer import ReferenceCacheError, check_reference_at_step_zero

    trainer, reference = _fp32_trainer_with_cache(smollm2_dir, pairs, tmp_path)
    own = trainer.compute_ref_log_probs
    for bad in (float("nan"), float("inf")):

        def poisoned(model, batch, bad=bad):
            chosen, rejected = own(model, batch)
            return chosen, torch.full_like(rejected, bad)

        monkeypatch.setattr(trainer, "compute_ref_log_probs", poisoned)
        with pytest.raises(ReferenceCacheError, match=r"\(rejected\).* is (nan|inf)"):
            check_reference_at_step_zero(trainer, reference, "fp32")


def test_non_finite_cached_values_are_rejected_when_read(smollm2_dir, pairs, tmp_path):
    from prefopt.training.reference_cache import (
        ReferenceCacheError,
        cache_record,
        check_finite_reference,
        write_reference_cache,
    )
    from prefopt.training.trainer import build_policy_trainer

    training = {**TRAINING, "precision": "fp32"}
    rows = [
        {"pair_id": r["pair_id"], "ref_chosen_logps": -10.0, "ref_rejected_logps": -12.0}
        for r in read_jsonl(pairs)
    ]
    reference = tmp_path / "reference.jsonl"
    write_reference_cache(rows, reference, cache_record(smollm2_dir, pairs, training, False))
    rows[2]["ref_rejected_logps"] = float("nan")  # as if the file were edited after writing
    write_jsonl(rows, reference)
    bad = rows[2]["pair_id"]
    with pytest.raises(
        ReferenceCacheError, match=rf"row 3: pair '{bad}' has ref_rejected_logps = nan"
    ):
        build_policy_trainer(
            smollm2_dir, pairs, reference, tmp_path / "w", training, "dpo", {"beta": 0.1}, seed=0
        )
    with pytest.raises(ReferenceCacheError, match="ref_chosen_logps = inf"):
        check_finite_reference([{"pair_id": "p", "ref_chosen_logps": math.inf}], "cache.jsonl")
    with pytest.raises(ReferenceCacheError, match="ref_chosen_logps = None"):  # a missing value
        check_finite_reference([{"pair_id": "p", "ref_rejected_logps": -1.0}], "cache.jsonl")
    with pytest.raises(ReferenceCacheError, match="not a finite number"):  # nothing written
        write_reference_cache(rows, tmp_path / "new.jsonl", {})
    assert not (tmp_path / "new.jsonl").exists()
    check_finite_reference(rows[:2], "cache.jsonl")  # finite rows pass


@pytest.mark.parametrize(
    "change, named",
    [
        ({"max_length": 100}, r"max_length 100 \(this job: 128\)"),
        ({"precision": "bf16"}, r"precision 'bf16' \(this job: 'fp32'\)"),
        ({"tokenizer": True}, r"another model or tokenizer \(files that differ: tokenizer.json\)"),
        ({"pairs": True}, r"another pair file"),
        ({"no_record": True}, r"no record of what it was computed from"),
    ],
)
def test_a_cache_from_other_inputs_is_refused_before_the_model_loads(
    smollm2_dir, pairs, tmp_path, monkeypatch, change, named
):
    """A cache made with another maximum length, precision, tokenizer or pair file (copied from
    another run, or touched so that Snakemake keeps it) is refused by the training job, naming
    what differs, before any model is loaded."""
    import shutil

    from prefopt.training import trainer as training_module
    from prefopt.training.reference_cache import (
        ReferenceCacheError,
        cache_record,
        meta_path,
        write_reference_cache,
    )

    training = {**TRAINING, "precision": "fp32"}
    model_dir = tmp_path / "model"
    shutil.copytree(smollm2_dir, model_dir)
    other_pairs = tmp_path / "pairs.jsonl"
    write_jsonl(read_jsonl(pairs), other_pairs)
    cache_settings = {k: v for k, v in change.items() if k in training}
    record = cache_record(model_dir, other_pairs, {**training, **cache_settings}, False)
    rows = [
        {"pair_id": r["pair_id"], "ref_chosen_logps": -10.0, "ref_rejected_logps": -12.0}
        for r in read_jsonl(pairs)
    ]
    reference = tmp_path / "reference.jsonl"
    write_reference_cache(rows, reference, record)
    if "tokenizer" in change:
        tok = model_dir / "tokenizer.json"
        tok.write_text(tok.read_text().replace('"<|im_end|>"', '"<|im_stop|>"', 1))
    if "pairs" in change:
        write_jsonl(read_jsonl(pairs)[:-1], other_pairs)
    if "no_record" in change:
        meta_path(reference).unlink()
    monkeypatch.setattr(training_module, "load_for_training", None)  # loading = a TypeError
    with pytest.raises(ReferenceCacheError, match=named) as err:
        training_module.build_policy_trainer(
            model_dir, other_pairs, reference, tmp_path / "w", training, "dpo", {}, seed=0
        )
    assert str(reference) in str(err.value) and "rerun cache_reference_logps" in str(err.value)
