"""The generation engine: `generate`'s sampling rules, answers in benchmark order, independent of
batching and length sorting, and seeded per answer. Real SmolLM2 model; behaviour, not time
(workflow/bin/benchmark-generation measures speed)."""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
import torch
from helpers import EMBEDDED_DATA, shipped_alpaca_eval
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.generation.logits_process import (
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from prefopt.data.prepare import read_jsonl
from prefopt.generation.answers import (
    _messages,
    generate_alpaca_eval,
    generate_mt_bench,
    generate_texts,
)
from prefopt.generation.hf_engine import (
    HfEngine,
    generate_token_ids,
    penalise_repeats,
    sampling_candidates,
)
from prefopt.generation.interface import Sampling, answer_seed
from prefopt.modeling import cpu_has_native_bf16, load_model
from prefopt_tools.benchmark_generation import distribution_check

SYSTEM = "You are a helpful assistant."
GREEDY = Sampling(temperature=0.0, top_p=0.9, max_new_tokens=16, repetition_penalty=1.1)
SAMPLED = Sampling(temperature=0.7, top_p=0.9, max_new_tokens=8, repetition_penalty=1.1)
#: MT-Bench's defaults: FastChat's temperature per question category
FASTCHAT = Sampling(temperature="fastchat", top_p=1.0, max_new_tokens=6, repetition_penalty=1.0)


@pytest.fixture(scope="module")
def fp32(smollm2_dir):
    return load_model(smollm2_dir, device="cpu")


@pytest.fixture(scope="module")
def bf16(smollm2_dir):
    return load_model(smollm2_dir, device="cpu", cpu_dtype="bfloat16")


@pytest.fixture(scope="module")
def items():
    """Real AlpacaEval prompts of different lengths (so that length sorting reorders them), and
    one that the model answers in a few tokens (so that a row finishes and leaves its batch)."""
    rows = shipped_alpaca_eval()
    picked = [rows[i] for i in (0, 5, 9, 13, 21)]
    short = {"instruction": "Translate 'bonjour' to English.", "dataset": "test"}  # 14 tokens
    return [*picked[:2], short, *picked[2:]]


def _convs(items):
    return [_messages(SYSTEM, [it["instruction"]], []) for it in items]


@settings(deadline=None, max_examples=60)
@given(
    seed=st.integers(0, 2**16),
    penalty=st.sampled_from([1.0, 1.1, 1.3]),
    temperature=st.sampled_from([0.1, 0.7, 1.0, 1.5]),
    top_k=st.sampled_from([0, 1, 5, 50]),
    top_p=st.sampled_from([0.3, 0.9, 1.0]),
)
def test_sampling_distribution_equals_generates_processors(
    seed, penalty, temperature, top_k, top_p
):
    """Our candidates carry exactly the probabilities `generate` samples from: its processors
    in its order (repetition penalty, temperature, top-k, top-p), softmax over the vocabulary."""
    g = torch.Generator().manual_seed(seed)
    vocab, rows = 300, 3
    logits = 3 * torch.randn(rows, vocab, generator=g)
    seen_ids = torch.randint(0, vocab, (rows, 20), generator=g)  # with repeats

    hf = RepetitionPenaltyLogitsProcessor(penalty)(seen_ids, logits.clone())
    hf = TemperatureLogitsWarper(temperature)(seen_ids, hf)
    if top_k:
        hf = TopKLogitsWarper(top_k)(seen_ids, hf)
    if top_p < 1.0:
        hf = TopPLogitsWarper(top_p)(seen_ids, hf)
    expected = hf.softmax(dim=-1)

    probs, ids = sampling_candidates(
        penalise_repeats(logits, seen_ids, penalty),
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
    )
    ours = torch.zeros(rows, vocab).scatter_(1, ids, probs / probs.sum(dim=-1, keepdim=True))
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=1e-5)


def test_greedy_answers_equal_hf_generate(fp32, items):
    """The engine's own loop (cache, positions, repetition penalty, end of sequence) gives
    `generate`'s greedy answer, prompt by prompt."""
    model, tok = fp32
    convs = _convs(items)
    ours = generate_texts(model, tok, convs, GREEDY, seeds=[0] * len(convs), batch_size=len(convs))
    for conv, answer in zip(convs, ours, strict=True):
        text = tok.apply_chat_template(conv, tokenize=False, add_generation_prompt=True)
        enc = tok(text, return_tensors="pt", add_special_tokens=False)
        out = model.generate(
            **enc,
            do_sample=False,
            temperature=None,
            top_p=None,
            top_k=None,
            max_new_tokens=GREEDY.max_new_tokens,
            repetition_penalty=GREEDY.repetition_penalty,
            pad_token_id=tok.pad_token_id,
        )
        new = out[0, enc["input_ids"].shape[1] :]
        assert answer == tok.decode(new, skip_special_tokens=True).strip()
    # the short prompt finished early (its row left the batch) and the others did not
    assert 0 < len(tok(ours[2])["input_ids"]) < GREEDY.max_new_tokens - 1


def test_answers_stay_in_benchmark_order_whatever_the_batching(fp32, items):
    """Length sorting reorders the prompts internally; the outputs come back in benchmark order,
    and in float32 no answer depends on its batch: batch size 1 (no sorting at all), 3 and all
    prompts at once give the same greedy and the same sampled answers."""
    model, tok = fp32

    def run(items, sampling, batch_size):
        return generate_alpaca_eval(
            HfEngine(model, tok, batch_size),
            items,
            generator="m",
            system_prompt=SYSTEM,
            sampling=sampling,
            seed=3,
        )

    short_greedy = replace(GREEDY, max_new_tokens=8)
    greedy = run(items, short_greedy, len(items))
    assert [o["instruction"] for o in greedy] == [it["instruction"] for it in items]
    assert [o["dataset"] for o in greedy] == [it.get("dataset", "") for it in items]
    assert run(items, short_greedy, 1) == greedy
    assert run(items[::-1], short_greedy, 3)[::-1] == greedy
    sampled = run(items, SAMPLED, len(items))
    assert [o["instruction"] for o in sampled] == [it["instruction"] for it in items]
    assert run(items, SAMPLED, 1) == sampled
    assert sampled != greedy


def test_sampling_is_seeded_per_answer(bf16, items):
    """Same config and seed, same answers (bfloat16 too); another seed, other answers."""
    model, tok = bf16
    convs = _convs(items)

    def run(seed):
        seeds = [answer_seed(seed, "alpaca_eval", i) for i in range(len(convs))]
        return generate_texts(model, tok, convs, SAMPLED, seeds=seeds, batch_size=3)

    first = run(0)
    assert run(0) == first
    assert sum(a != b for a, b in zip(first, run(1), strict=True)) >= len(convs) - 1


def test_sampling_is_read_once_from_the_config_naming_a_bad_key(repo):
    """The paper config's sections become one record each (numbers as floats and ints, MT-Bench's
    "fastchat" kept for the per-category temperatures); a value the schema refuses is named by
    its key."""
    import copy

    import yaml

    from prefopt.config import validate_config

    gen = validate_config(yaml.safe_load((repo / "config/config.yaml").read_text()))["generation"]
    ae = Sampling.from_config(gen["alpaca_eval"], key="generation.alpaca_eval")
    assert ae == Sampling(temperature=0.7, top_p=0.9, max_new_tokens=1024, repetition_penalty=1.1)
    mt = Sampling.from_config(gen["mt_bench"], key="generation.mt_bench")
    assert (mt.temperature, mt.top_p, mt.repetition_penalty) == ("fastchat", 1.0, 1.0)
    assert type(mt.top_p) is float and type(mt.max_new_tokens) is int
    with pytest.raises(AttributeError):
        ae.top_p = 0.5  # frozen: one record, handed through unchanged
    for bad, message in (
        ({"temperature": -1}, r"generation\.alpaca_eval\.temperature: -1; need a number >= 0"),
        ({"temperature": "hot"}, r"generation\.alpaca_eval\.temperature: 'hot'"),
        ({"top_p": 0}, r"generation\.alpaca_eval\.top_p: 0; need a number in \(0, 1\]"),
        ({"max_new_tokens": 2.5}, r"generation\.alpaca_eval\.max_new_tokens: 2\.5; need a whole"),
        ({"repetition_penalty": None}, r"generation\.alpaca_eval\.repetition_penalty: None"),
    ):
        section = {**copy.deepcopy(gen["alpaca_eval"]), **bad}
        with pytest.raises(ValueError, match="^config error at " + message):
            Sampling.from_config(section, key="generation.alpaca_eval")


def test_answer_seed_is_stable():
    """The per-answer seed is part of what a config reproduces: pinned here."""
    assert answer_seed(0, "alpaca_eval", 0) == 5552481139987876466
    assert len({answer_seed(s, "alpaca_eval", i) for s in range(3) for i in range(50)}) == 150
    assert answer_seed(0, "mt_bench", 81, 0) != answer_seed(0, "mt_bench", 81, 1)


@pytest.mark.skipif(
    not cpu_has_native_bf16(),
    reason="this CPU emulates bf16 (no AVX512-BF16/AMX): `cpu_dtype: auto` generates in float32 "
    "here; workflow/bin/benchmark-generation still compares the dtypes on any CPU",
)
def test_bf16_next_token_distributions_stay_close_to_float32(fp32, bf16, items):
    """bfloat16 rounds differently, so a greedy answer may part from float32's after a while;
    what sampling sees stays close: along float32's own answers the next-token distributions
    differ by a mean KL well under 0.01 nats/token (0.001 measured on 32 AlpacaEval answers) and
    agree on the most likely token almost everywhere."""
    model, tok = fp32
    convs = _convs(items)
    answers = generate_token_ids(
        model, tok, convs, GREEDY, seeds=[0] * len(convs), batch_size=len(convs)
    )
    texts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in convs]
    prompts = tok(texts, add_special_tokens=False)["input_ids"]
    kl, agree = distribution_check(model, bf16[0], prompts, answers)
    assert kl < 0.01 and agree > 0.9, (kl, agree)


def test_mt_bench_answers_both_turns_in_question_order(fp32, embedded_data):
    model, tok = fp32
    questions = [
        q
        for q in read_jsonl(embedded_data / "mt_bench" / "question.jsonl")
        if q["category"] in ("writing", "math", "stem")
    ][::5][:3]
    out = generate_mt_bench(
        HfEngine(model, tok, 2),
        questions,
        model_id="m",
        system_prompt=SYSTEM,
        sampling=FASTCHAT,
        seed=0,
    )
    assert [o["question_id"] for o in out] == [q["question_id"] for q in questions]
    assert all(len(o["choices"][0]["turns"]) == 2 for o in out)
    again = generate_mt_bench(
        HfEngine(model, tok, 3),
        questions,
        model_id="m",
        system_prompt=SYSTEM,
        sampling=FASTCHAT,
        seed=0,
    )
    assert [o["choices"] for o in again] == [o["choices"] for o in out]


def test_mt_bench_turn_mixes_temperatures_in_one_batch_without_changing_an_answer(
    fp32, embedded_data
):
    """Each turn is one batch over every question at its category's FastChat temperature
    (writing 0.7, stem 0.1, math greedy). In float32 an answer does not depend on its batch, so
    every question gets exactly the answer it gets when its category is generated alone; the
    greedy rows (math) ignore the seed and the sampled rows do not."""
    model, tok = fp32
    by_category = {
        c: [q for q in read_jsonl(embedded_data / "mt_bench" / "question.jsonl")
            if q["category"] == c][:2]
        for c in ("writing", "math", "stem")
    }  # fmt: skip
    questions = [q for qs in zip(*by_category.values(), strict=True) for q in qs]

    def answers(qs, seed):
        engine = HfEngine(model, tok, len(qs))
        out = generate_mt_bench(
            engine, qs, model_id="m", system_prompt=SYSTEM, sampling=FASTCHAT, seed=seed
        )
        return {o["question_id"]: o["choices"][0]["turns"] for o in out}

    mixed = answers(questions, 0)
    alone = {}
    for qs in by_category.values():
        alone |= answers(qs, 0)
    assert mixed == alone
    other_seed = answers(questions, 1)
    changed = {
        c: [other_seed[q["question_id"]] != mixed[q["question_id"]] for q in qs]
        for c, qs in by_category.items()
    }
    assert not any(changed["math"]) and any(changed["writing"]), changed


def test_engines_reject_per_prompt_lists_of_the_wrong_length_or_a_negative_temperature(fp32):
    model, tok = fp32
    engine = HfEngine(model, tok, 2)
    sampling = Sampling(temperature=0.0, top_p=1.0, max_new_tokens=2, repetition_penalty=1.0)
    with pytest.raises(ValueError, match="2 prompts but 1 temperatures"):
        engine.token_ids([[1, 2], [3]], sampling, temperatures=[0.0], seeds=[0, 1])
    with pytest.raises(ValueError, match="2 prompts but 3 seeds"):
        engine.token_ids([[1, 2], [3]], sampling, temperatures=[0.0, 0.0], seeds=[0, 1, 2])
    with pytest.raises(ValueError, match=r"temperature -0\.5: must be a number >= 0"):
        engine.token_ids([[1, 2], [3]], sampling, temperatures=[0.0, -0.5], seeds=[0, 1])
    with pytest.raises(ValueError, match="temperature 'fastchat': must be a number >= 0"):
        engine.token_ids([[1, 2], [3]], FASTCHAT, seeds=[0, 1])  # per category: given per prompt


def test_vllm_engine_writes_what_the_hf_engine_writes(monkeypatch, fp32, smollm2_dir, items):
    """`generation.engine: vllm` against a stand-in of vLLM's offline API (no GPU here; see
    tests/standins.py): vLLM is given the HF engine's prompt token ids, per-answer seeds,
    sampling settings, top-k and end-of-sequence tokens, and the answers land in the same
    records in benchmark order. The stand-in decodes with the HF loop, so equal parameters give
    equal files; real vLLM samples with its own kernels (workflow/bin/gpu-smoke runs it)."""
    from standins import StandInVllm

    from prefopt.generation.answers import load_engine
    from prefopt.generation.interface import default_top_k, eos_ids

    model, tok = fp32
    stand_in = StandInVllm()
    stand_in.install(monkeypatch)
    generation = {
        "engine": "vllm",
        "dtype": "float16",
        "vllm": {"gpu_memory_utilization": 0.85, "max_model_len": None},
    }
    engine = load_engine(str(smollm2_dir), generation, seed=3)
    assert stand_in.llm_kwargs == [
        {"model": str(smollm2_dir), "tokenizer": str(smollm2_dir), "dtype": "float16",
         "seed": 3, "gpu_memory_utilization": 0.85}
    ]  # fmt: skip
    assert engine.describe() == {
        "engine": "vllm", "engine_version": f"vllm {StandInVllm.version}", "dtype": "float16",
        "device": "cuda",
    }  # fmt: skip
    hf = HfEngine(model, tok, 2)
    for chosen in (replace(GREEDY, max_new_tokens=8), SAMPLED):
        kw = {"generator": "m", "system_prompt": SYSTEM, "sampling": chosen, "seed": 3}
        assert generate_alpaca_eval(engine, items, **kw) == generate_alpaca_eval(hf, items, **kw)
    sampled = [params for _, params in stand_in.requests[-len(items) :]]  # in scheduling order
    seeds = {answer_seed(3, "alpaca_eval", i) for i in range(len(items))}
    assert {p["seed"] for p in sampled} == seeds and len(sampled) == len(items)
    config = model.generation_config
    assert {p["top_k"] for p in sampled} == {default_top_k(config)}
    assert {tuple(p["stop_token_ids"]) for p in sampled} == {tuple(sorted(eos_ids(config, tok)))}
    assert {(p["temperature"], p["top_p"], p["repetition_penalty"], p["max_tokens"])
            for p in sampled} == {(0.7, 0.9, 1.1, 8)}  # fmt: skip

    questions = [
        q
        for q in read_jsonl(EMBEDDED_DATA / "mt_bench" / "question.jsonl")
        if q["category"] in ("writing", "math")
    ][::5][:2]
    kw = {"model_id": "m", "system_prompt": SYSTEM, "sampling": FASTCHAT, "seed": 0}
    ours = generate_mt_bench(engine, questions, **kw)
    theirs = generate_mt_bench(hf, questions, **kw)
    assert [o["choices"] for o in ours] == [o["choices"] for o in theirs]
    assert [o["answer_id"] for o in ours] == [o["answer_id"] for o in theirs]


def test_vllm_engine_without_a_gpu_says_how_to_expose_one(smollm2_dir):
    """vLLM has no CPU build: asked for on a machine where torch sees no CUDA device, the
    engine stops before importing vLLM or loading anything, naming --nv and the HF engine."""
    from prefopt.generation.answers import load_engine

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    generation = {"engine": "vllm", "dtype": "float16", "vllm": {"gpu_memory_utilization": 0.8}}
    with pytest.raises(RuntimeError, match=r"--nv.*generation\.engine: hf"):
        load_engine(str(smollm2_dir), generation, seed=0)


def test_answers_that_cannot_fit_the_context_stop_before_any_is_generated(
    monkeypatch, fp32, items, smollm2_dir
):
    """Issue 31: new tokens beyond the model's context (max_position_embeddings) would run on
    positions it was never trained on; vLLM would stop mid-job on the first prompt too long.
    Checked for every item before the first answer, naming the config key and the item."""
    from standins import StandInVllm

    from prefopt.generation.answers import load_engine
    from prefopt.modeling import ContextError

    model, tok = fp32
    hf = HfEngine(model, tok, 2)
    context = model.config.max_position_embeddings
    assert hf.context_length == context == 8192  # SmolLM2-135M-Instruct
    asked = []
    monkeypatch.setattr(hf, "token_ids", lambda *a, **k: asked.append(a))
    kw = {"generator": "m", "system_prompt": SYSTEM, "seed": 0}
    too_long = replace(GREEDY, max_new_tokens=context)
    with pytest.raises(ContextError) as err:
        generate_alpaca_eval(hf, items, sampling=too_long, **kw)
    assert str(err.value).startswith(
        "config error at generation.alpaca_eval.max_new_tokens: AlpacaEval item 0 ("
    )
    assert f"+ {context} new) needs " in str(err.value) and f"context of {context}" in str(
        err.value
    )
    # MT-Bench: the turn-2 prompt holds the turn-1 answer, so half the context is too much
    questions = read_jsonl(EMBEDDED_DATA / "mt_bench" / "question.jsonl")[:3]
    half = replace(GREEDY, temperature="fastchat", max_new_tokens=context // 2)
    with pytest.raises(ContextError, match=r"^config error at generation\.mt_bench\.max_new_tok"):
        generate_mt_bench(hf, questions, model_id="m", system_prompt=SYSTEM, sampling=half, seed=0)
    assert asked == []
    # vLLM holds generation.vllm.max_model_len tokens when it is set
    stand_in = StandInVllm()
    stand_in.install(monkeypatch)
    vllm = {"gpu_memory_utilization": 0.85, "max_model_len": 64}
    engine = load_engine(
        str(smollm2_dir), {"engine": "vllm", "dtype": "float16", "vllm": vllm}, seed=0
    )
    assert engine.context_length == 64
    with pytest.raises(ContextError, match=r"model's context of 64 "):
        generate_alpaca_eval(engine, items, sampling=replace(GREEDY, max_new_tokens=60), **kw)
    assert stand_in.requests == []


def test_a_vllm_job_leaves_cuda_uninitialised_until_the_engine(monkeypatch, smollm2_dir):
    """Issue 29 item 1: the GPU check of a vLLM job (require_gpu, then the engine's own) asks
    NVML, not cudaGetDeviceCount, so CUDA is not initialised before vLLM forks its workers. The
    stand-in's machine has one GPU, and its LLM() fails if CUDA was initialised first."""
    from types import SimpleNamespace

    from standins import StandInVllm

    from prefopt.generation.answers import load_engine
    from prefopt.runtime import ALLOW_CPU_ENV, NVML_CUDA_CHECK_ENV, require_gpu

    stand_in = StandInVllm()
    stand_in.install(monkeypatch)
    monkeypatch.delenv(ALLOW_CPU_ENV, raising=False)
    monkeypatch.delenv(NVML_CUDA_CHECK_ENV, raising=False)
    monkeypatch.setattr("prefopt.runtime.claim_gpus", lambda n: None)  # no lock files here
    require_gpu(SimpleNamespace(resources=SimpleNamespace(gpu=1), rule="generate_alpaca_eval"))
    generation = {"engine": "vllm", "dtype": "float16", "vllm": {"gpu_memory_utilization": 0.8}}
    load_engine(str(smollm2_dir), generation, seed=0)
    assert stand_in.llm_kwargs and not stand_in.cuda_initialised
    assert NVML_CUDA_CHECK_ENV not in os.environ  # restored as it was
    torch.cuda.is_available()  # the plain check is what initialises CUDA ...
    assert stand_in.cuda_initialised
    with pytest.raises(RuntimeError, match="CUDA was initialised in this process"):
        load_engine(str(smollm2_dir), generation, seed=0)  # ... and what vLLM cannot follow
