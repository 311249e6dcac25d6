"""The local judge reads label probabilities from the real SmolLM2 model."""

from __future__ import annotations

import pytest
import torch
from helpers import shipped_alpaca_eval

from prefopt.judging.local import MIN_SHARED_PREFIX, LocalJudge, shared_prefix_length
from prefopt.modeling import load_model
from prefopt.runtime import read_jsonl


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


def test_records_name_the_model_that_judged(judge, smollm2_dir, embedded_data):
    """Every record says which local model judged: the slug given (judges.local_model or the
    base model's slug), else the prepared folder's name, never a machine's path."""
    from prefopt.judging import mt_bench

    assert judge.model_name == smollm2_dir.name
    named = LocalJudge(judge.model, judge.tokenizer, max_length=256, model_name="judge-x")
    ann = named.judge_alpaca_eval_pairs(PAIRS[:1])[0]
    assert (ann["judge_model"], ann["served_model"], ann["annotator"]) == (
        "judge-x",
        "judge-x",
        "local",
    )
    mt = embedded_data / "mt_bench"
    question = mt_bench.load_questions(mt / "question.jsonl")[0]
    records = named.judge_mt_bench(
        [question],
        {question["question_id"]: ["Roses.", "Tulips."]},
        mt_bench.load_judge_prompts(mt / "judge_prompts.jsonl"),
        {},
        model_name="toy-seed0",
    )
    assert [r["turn"] for r in records] == [1, 2]
    for rec in records:
        assert tuple(rec) == mt_bench.JUDGMENT_KEYS + mt_bench.PROVENANCE_KEYS
        assert rec["judge"][0] == "local" and rec["model"] == "toy-seed0"
        assert (rec["judge_model"], rec["served_model"], rec["judge_error"]) == (
            "judge-x",
            "judge-x",
            None,
        )


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


class FullLogitsJudge(LocalJudge):
    """The reference the judge is held to: each prompt alone (no padding, no batching), logits
    at every position, float32, as the judge computed them before `logits_to_keep=1`."""

    @torch.no_grad()
    def _next_token_probs(self, prompts, token_ids, then=None):
        assert then is None
        rows = []
        for prompt in prompts:
            enc = self.tokenizer([prompt], return_tensors="pt", add_special_tokens=False)
            logits = self.model(**enc).logits  # every position
            rows.append(torch.softmax(logits[0, -1].float(), dim=-1)[token_ids])
        return torch.stack(rows), None


@pytest.fixture(scope="module")
def real_pairs(embedded_data):
    """AlpacaEval instructions with their text-davinci-003 reference and, as the other output,
    the reference of the next instruction (real texts, one on topic and one off)."""
    rows = shipped_alpaca_eval(embedded_data)
    picked = [rows[i] for i in (0, 3, 7, 12, 20)]
    return [
        {
            "instruction": a["instruction"],
            "output_1": a["output"],
            "generator_1": a["generator"],
            "output_2": b["output"],
            "generator_2": "other",
        }
        for a, b in zip(picked, picked[1:], strict=False)
    ]


FP32_TOLERANCE = 1e-4  # same arithmetic, other batching and padding: float rounding only
# bfloat16 weights: the largest change measured is 0.049 on these pairs and 0.037 on 16 pairs of
# the benchmark, with no bias (mean signed change 0.0002 on 32 pairs)
BF16_TOLERANCE = 0.075


def test_probabilities_match_the_full_logits_float32_path(smollm2_dir, real_pairs):
    """The judge (batched, padded, last position only) reads the same probabilities as the full
    float32 pass within FP32_TOLERANCE, and within BF16_TOLERANCE in bfloat16 (the embedded
    default on CPU), at the embedded config's prompt budget."""
    model, tokenizer = load_model(smollm2_dir, device="cpu")
    reference = FullLogitsJudge(model, tokenizer, max_length=640).judge_alpaca_eval_pairs(
        real_pairs
    )
    keys = ("p_model_better_order1", "p_model_better_order2", "preference")
    fast = LocalJudge(model, tokenizer, max_length=640, batch_size=4)
    for got, want in zip(fast.judge_alpaca_eval_pairs(real_pairs), reference, strict=True):
        for k in keys:
            assert got[k] == pytest.approx(want[k], abs=FP32_TOLERANCE), k
    bf16, _ = load_model(smollm2_dir, device="cpu", cpu_dtype="bfloat16")
    judged = LocalJudge(bf16, tokenizer, max_length=640, batch_size=4).judge_alpaca_eval_pairs(
        real_pairs
    )
    diffs = [
        abs(got[k] - want[k]) for got, want in zip(judged, reference, strict=True) for k in keys
    ]
    assert max(diffs) <= BF16_TOLERANCE, diffs


def test_rating_distribution_in_bf16_stays_close(judge, smollm2_dir):
    """MT-Bench: bfloat16 rating probabilities (both the first digit and the cached "1" -> "0"
    step) within BF16_TOLERANCE of float32's."""
    bf16, tokenizer = load_model(smollm2_dir, device="cpu", cpu_dtype="bfloat16")
    judge16 = LocalJudge(bf16, tokenizer, max_length=256, batch_size=4)
    prompts = [
        judge._prompt("You are a judge.", f"Rate this answer to '{q}': '{a}'.", "Rating: [[")
        for q, a in [("Capital of France?", "Paris"), ("2 + 2?", "5"), ("Name a colour.", "Blue")]
    ]
    want, got = judge.rating_distribution(prompts), judge16.rating_distribution(prompts)
    assert (got - want).abs().max().item() <= BF16_TOLERANCE


def test_shared_prefix_length_leaves_each_row_a_token_and_skips_short_prefixes():
    long = list(range(40))
    assert shared_prefix_length([long, long[:30] + [99, 98]]) == 30
    assert shared_prefix_length([long, long]) == 39  # the last token stays each row's own
    assert shared_prefix_length([long[:20], long]) == 19
    assert shared_prefix_length([long, long[:5] + [99] * 30]) == 0  # under MIN_SHARED_PREFIX
    assert shared_prefix_length([long]) == 0  # nothing to share with
    assert shared_prefix_length([[7] + long, long]) == 0


class _TokensFed:
    """Records the shape of every input the judge's model embeds."""

    def __init__(self, model):
        self.shapes = []
        self.handle = model.get_input_embeddings().register_forward_hook(
            lambda _m, args, _out: self.shapes.append(tuple(args[0].shape))
        )

    def __enter__(self):
        return self.shapes

    def __exit__(self, *exc):
        self.handle.remove()


def test_a_shared_prefix_runs_once_and_changes_no_probability(
    smollm2_dir, real_pairs, embedded_data
):
    """AlpacaEval (one group) and MT-Bench (a group per FastChat template, with the "1" -> "0"
    step): the template's common prefix is embedded once per group instead of in every row, and
    every probability equals the one computed from each whole prompt (float32)."""
    from prefopt.judging import mt_bench

    model, tokenizer = load_model(smollm2_dir, device="cpu")
    shared = LocalJudge(model, tokenizer, max_length=640, batch_size=4)
    whole = LocalJudge(model, tokenizer, max_length=640, batch_size=4, share_prefix=False)
    keys = ("p_model_better_order1", "p_model_better_order2", "preference")
    with _TokensFed(model) as fed_whole:
        want = whole.judge_alpaca_eval_pairs(real_pairs)
    with _TokensFed(model) as fed_shared:
        got = shared.judge_alpaca_eval_pairs(real_pairs)
    for g, w in zip(got, want, strict=True):
        for k in keys:
            assert g[k] == pytest.approx(w[k], abs=FP32_TOLERANCE), k
    prefix = fed_shared[0]
    assert prefix[0] == 1 and prefix[1] >= MIN_SHARED_PREFIX  # the prefix pass comes first
    assert sum(b * n for b, n in fed_shared) < sum(b * n for b, n in fed_whole) - 3 * prefix[1]

    mt = embedded_data / "mt_bench"
    every = mt_bench.load_questions(mt / "question.jsonl")
    questions = [q for q in every if q["category"] == "writing"][:2]
    questions += [q for q in every if q["category"] == "math"][:2]
    answers = {q["question_id"]: ["A short answer.", "Another one."] for q in questions}
    prompts = mt_bench.load_judge_prompts(mt / "judge_prompts.jsonl")
    refs = {
        r["question_id"]: r["choices"][0]["turns"]
        for r in read_jsonl(mt / "reference_answer" / "gpt-4.jsonl")
    }
    with _TokensFed(model) as fed_shared:
        got = shared.judge_mt_bench(questions, answers, prompts, refs, model_name="m")
    want = whole.judge_mt_bench(questions, answers, prompts, refs, model_name="m")
    templates = {r["judge"][1] for r in got}
    assert len(templates) == 4  # single and multi-turn, with and without a reference
    prefix_passes = [n for b, n in fed_shared if b == 1 and n >= MIN_SHARED_PREFIX]
    assert len(prefix_passes) == len(templates)  # one prefix pass per template
    for g, w in zip(got, want, strict=True):
        assert g["score"] == pytest.approx(w["score"], abs=1e-3)


def test_a_cache_that_cannot_be_copied_into_a_batch_runs_whole_prompts(smollm2_dir, real_pairs):
    """A judge model with sliding-window cache layers (Mistral-, Gemma-like) gets no shared
    prefix: no prefix pass, and the same probabilities as whole prompts."""
    model, tokenizer = load_model(smollm2_dir, device="cpu")
    model.config.layer_types = ["sliding_attention"] * model.config.num_hidden_layers
    model.config.sliding_window = 4096  # longer than any prompt: attention itself is unchanged
    want = LocalJudge(model, tokenizer, max_length=640, share_prefix=False)
    got = LocalJudge(model, tokenizer, max_length=640)
    with _TokensFed(model) as fed_whole:
        expected = want.judge_alpaca_eval_pairs(real_pairs[:2])
    with _TokensFed(model) as fed:
        judged = got.judge_alpaca_eval_pairs(real_pairs[:2])
    probe, *rest = fed
    assert probe[0] == 1 and probe[1] >= MIN_SHARED_PREFIX  # the prefix pass, found unusable
    assert rest == fed_whole  # then every prompt whole, as without sharing
    for g, w in zip(judged, expected, strict=True):
        assert g["preference"] == pytest.approx(w["preference"], abs=FP32_TOLERANCE)


def test_a_judge_prompt_longer_than_the_models_context_is_refused(judge):
    """Issue 31: judges.local_max_length past the judge model's context is refused when the
    judge is made, before any item, naming the key."""
    from prefopt.modeling import ContextError

    context = judge.model.config.max_position_embeddings
    LocalJudge(judge.model, judge.tokenizer, max_length=context)
    with pytest.raises(ContextError, match=r"^config error at judges\.local_max_length: .*8192"):
        LocalJudge(judge.model, judge.tokenizer, max_length=context + 1)
