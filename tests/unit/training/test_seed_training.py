"""The seed-method branch's plumbing on the real SmolLM2: response alignment, caches that refuse
a different tokenisation, listwise data preparation."""

from __future__ import annotations

import json

import pytest
import torch

from prefopt.data.prepare import write_jsonl
from prefopt.training.seed_methods.trainer import (
    _training_rows,
    cache_teacher_topk,
    encode_pairs,
    prepare_listwise,
    response_logits,
    sequence_logps,
)

TRAINING = {"max_length": 64, "max_prompt_length": 24, "reference_batch_size": 2}
PAIRS = [
    {"pair_id": "p0", "prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Seven."},
    {
        "pair_id": "p1",
        "prompt": "Say hello in French, please, and explain briefly.",
        "chosen": "Bonjour! It is the usual greeting.",
        "rejected": "Hola.",
    },
]


@pytest.fixture(scope="module")
def model_and_tokenizer(smollm2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(smollm2_dir)


@torch.no_grad()
def test_response_logits_align_each_row_with_its_own_tokens(model_and_tokenizer):
    """Batched, padded logits at response position t predict response token t: the summed
    log-probs equal an unpadded full-sequence computation done by hand, row by row."""
    model, tok = model_and_tokenizer
    rows = encode_pairs(PAIRS, tok, TRAINING)
    prompts = [r["prompt_ids"] for r in rows]
    responses = [r["chosen_ids"] for r in rows]
    assert len(set(map(len, prompts))) == 2  # different prompt lengths: padding matters
    logits, mask, labels = response_logits(model, prompts, responses, tok.pad_token_id or 0)
    batched, lengths = sequence_logps(logits, labels, mask)
    for i, (p, r) in enumerate(zip(prompts, responses, strict=True)):
        full = torch.log_softmax(model(torch.tensor([p + r])).logits[0].float(), -1)
        by_hand = sum(full[len(p) - 1 + t, tok_id].item() for t, tok_id in enumerate(r))
        assert batched[i].item() == pytest.approx(by_hand, abs=1e-3)
        assert lengths[i].item() == len(r)
        assert r[-1] == tok.eos_token_id


def test_encoding_respects_the_length_budget(model_and_tokenizer):
    _, tok = model_and_tokenizer
    long = {**PAIRS[1], "chosen": "word " * 200, "prompt": "question " * 100}
    (row,) = encode_pairs([long], tok, TRAINING)
    assert len(row["prompt_ids"]) + len(row["chosen_ids"]) <= TRAINING["max_length"]


def test_a_cache_built_with_another_tokenisation_is_refused(model_and_tokenizer, smollm2_dir,
                                                             tmp_path):  # fmt: skip
    _, tok = model_and_tokenizer
    pairs = tmp_path / "pairs.jsonl"
    write_jsonl(PAIRS, pairs)
    cache = tmp_path / "topk.pt"
    info = cache_teacher_topk(smollm2_dir, pairs, cache, TRAINING, k=4)
    assert info == {"n_pairs": 2, "k": 4}
    stored = torch.load(cache, weights_only=False)["rows"]["p1"]
    assert stored["chosen_logprobs"].shape == (len(stored["chosen_ids"]), 4)
    # top-k log-probs of a real softmax: sorted, <= 0, mass <= 1
    lp = stored["chosen_logprobs"]
    assert (lp <= 0).all() and (lp[:, :-1] >= lp[:, 1:]).all()
    assert (lp.exp().sum(-1) <= 1 + 1e-5).all()
    rows = _training_rows("dckd", tok, {"pairs": pairs, "cache": cache}, TRAINING)
    assert {r["pair_id"] for r in rows} == {"p0", "p1"}
    shorter = {**TRAINING, "max_length": 20}
    with pytest.raises(ValueError, match="rebuild the cache"):
        _training_rows("dckd", tok, {"pairs": pairs, "cache": cache}, shorter)


def test_prepare_listwise_keeps_four_candidate_rows_with_stable_ids(repo):
    from prefopt.data.prepare import read_jsonl

    source = read_jsonl(repo / "tests" / "fixtures" / "ultrafeedback_listwise_fixture.jsonl")
    rows, stats = prepare_listwise(source, max_prompts=None, n_candidates=4, na_rating=1.0)
    assert [r["prompt_id"] for r in rows] == ["lw000000", "lw000001", "lw000002", "lw000003"]
    assert all(len(r["responses"]) == 4 and len(r["ratings"][0]) == 4 for r in rows)
    assert stats["dropped_too_few_candidates"] == 1 and stats["dropped_wrong_candidate_count"] == 1
    rows2, _ = prepare_listwise(source, max_prompts=2, n_candidates=4, na_rating=1.0)
    assert json.dumps(rows2) == json.dumps(rows[:2])
    with pytest.raises(ValueError, match="no listwise prompt left"):
        prepare_listwise(source[3:4], max_prompts=None, n_candidates=4, na_rating=1.0)


def test_a_run_shorter_than_logging_steps_still_logs_a_row(repo, smollm2_dir, tmp_path):
    """One lambda-DPO step with logging_steps 5: the final row is flushed, with its lambda."""
    import pandas as pd

    from prefopt.data.prepare import read_jsonl
    from prefopt.training.seed_methods.trainer import cache_listwise_reference, train_seed_method

    source = read_jsonl(repo / "tests" / "fixtures" / "ultrafeedback_listwise_fixture.jsonl")
    rows, _ = prepare_listwise(source, max_prompts=2, n_candidates=4, na_rating=1.0)
    listwise = tmp_path / "listwise.jsonl"
    write_jsonl(rows, listwise)
    training = {**TRAINING, "epochs": 1, "per_device_train_batch_size": 2,
                "gradient_accumulation_steps": 1, "learning_rate": 1e-6,
                "lr_scheduler_type": "linear", "warmup_ratio": 0.0,
                "gradient_checkpointing": False, "logging_steps": 5, "precision": "fp32",
                "threads": 2}  # fmt: skip
    reference = tmp_path / "reference.jsonl"
    cache_listwise_reference(smollm2_dir, listwise, reference, training)
    params = {"beta": 0.1, "lambda_scheme": "table", "dirichlet_alpha": 1.0,
              "length_normalize": True, "target_temperature": 1.0}  # fmt: skip
    diag_path = tmp_path / "diagnostics.csv"
    summary = train_seed_method(
        smollm2_dir, {"listwise": listwise, "reference": reference}, tmp_path / "model",
        diag_path, training, "lambda_dpo", params, seed=0,
    )  # fmt: skip
    assert summary["global_steps"] == 1
    diag = pd.read_csv(diag_path)
    assert len(diag) == 1 and diag.loc[0, "step"] == 1
    aspects = ("helpfulness", "honesty", "instruction_following", "truthfulness")
    lam = [diag.loc[0, f"lambda_{a}"] for a in aspects]
    assert abs(sum(lam) - 1) < 1e-6
    assert lam == [summary["lambda_per_step"][0][a] for a in aspects]
    # policy == reference at the only logged step: the loss is log N exactly
    assert diag.loc[0, "loss"] == pytest.approx(torch.log(torch.tensor(4.0)).item(), abs=1e-4)


def test_non_finite_listwise_reference_is_rejected():
    from prefopt.training.seed_methods.trainer import check_finite_listwise_reference
    from prefopt.training.trainer import ReferenceCacheError

    rows = [{"prompt_id": "p0", "ref_logps": [-3.0, -4.5]}]
    check_finite_listwise_reference(rows, "cache.jsonl")
    rows.append({"prompt_id": "p1", "ref_logps": [-3.0, float("-inf"), float("nan")]})
    with pytest.raises(ReferenceCacheError, match=r"prompt 'p1' .* candidate\(s\) \[1, 2\]"):
        check_finite_listwise_reference(rows, "cache.jsonl")


def test_training_max_length_past_the_models_context_is_refused(smollm2_dir):
    """Issue 31: training.max_length beyond max_position_embeddings is refused before the model
    loads (the trainer's and the reference cache's first step), naming the key."""
    from prefopt.modeling import ContextError
    from prefopt.training.trainer import check_training_context

    check_training_context(smollm2_dir, {"max_length": 8192})
    with pytest.raises(ContextError, match=r"^config error at training\.max_length: .* 8193 "):
        check_training_context(smollm2_dir, {"max_length": 8193})
