"""The local judge reads label probabilities from the real SmolLM2 model."""

from __future__ import annotations

import pytest
import torch

from prefopt.judging.local import LocalJudge
from prefopt.modeling import load_model


@pytest.fixture(scope="module")
def judge(smollm2_dir):
    model, tokenizer = load_model(smollm2_dir, device="cpu")
    return LocalJudge(model, tokenizer, max_length=256, batch_size=4)


PAIRS = [
    {
        "instruction": "What is 2 + 2?",
        "output_1": "4",
        "generator_1": "ref",
        "output_2": "The answer is 4.",
        "generator_2": "m",
    },
    {
        "instruction": "Name a colour.",
        "output_1": "Blue.",
        "generator_1": "ref",
        "output_2": "I like turtles.",
        "generator_2": "m",
    },
]


def test_both_orders_cancel_position_bias(judge):
    ann = judge.judge_alpaca_eval_pairs(PAIRS)
    swapped = judge.judge_alpaca_eval_pairs(
        [{**p, "output_1": p["output_2"], "output_2": p["output_1"]} for p in PAIRS]
    )
    for a, b in zip(ann, swapped, strict=True):
        assert 1.0 <= a["preference"] <= 2.0
        # P(model better) with roles swapped is exactly 1 - P(model better).
        assert (a["preference"] - 1.0) + (b["preference"] - 1.0) == pytest.approx(1.0, abs=1e-6)
        assert a["annotator"] == "local"


def test_rating_distribution_is_a_distribution_and_uses_the_cache_correctly(judge):
    prompt = judge._prompt("You are a judge.", "Rate this answer: 'Paris'.", "Rating: [[")
    dist = judge.rating_distribution([prompt, prompt + " "])
    assert dist.shape == (2, 10)
    assert torch.allclose(dist.sum(dim=1), torch.ones(2), atol=1e-5)
    # The cached "1" -> next-token step equals a full forward over prompt + "1".
    _, after = judge._next_token_probs([prompt], judge.digit_ids, then=judge.digit_ids[1])
    enc = judge.tokenizer([prompt], return_tensors="pt", add_special_tokens=False)
    ids = torch.cat([enc["input_ids"], torch.tensor([[judge.digit_ids[1]]])], dim=1)
    with torch.no_grad():
        full = torch.softmax(judge.model(input_ids=ids).logits[0, -1].float(), -1)
    assert torch.allclose(after[0], full[judge.digit_ids], atol=1e-5)
