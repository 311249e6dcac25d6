"""Benchmark (prints figures, asserts nothing): generation and the local judge, before vs now.

`workflow/bin/benchmark-generation` runs this. On the first AlpacaEval prompts, with the settings
of the given configs (by default the embedded one: config/config.yaml + config/embedded.yaml),
it times

- generation: plain Hugging Face `generate` as our code called it before the engine
  (`baseline_generate`: float32, batches in benchmark order, one seed per batch) against
  `prefopt.generation.hf_engine` (length-sorted batches, finished rows dropped, growing KV
  cache, top-k sampling, `generation.cpu_dtype`), also in float32 to separate the engine from
  the dtype;
- the local judge: its former pass (`BaselineLocalJudge`: float32, logits at every position)
  against `prefopt.judging.local.LocalJudge` (last position only, `judges.local_cpu_dtype`),
  each prompt whole and with the template's common prefix run once, on pairs of the AlpacaEval
  reference and the baseline's own answers, with the largest change of a judge probability;
  and the MT-Bench judge (whole prompts vs a shared prefix per FastChat template) on the
  MT-Bench case's answers, with the largest change of a score;
- the dtype's effect on the distribution: the mean per-token KL(float32 || cpu_dtype) and the
  top-1 agreement of next-token distributions along the baseline's answers;
- MT-Bench generation (both turns, FastChat's per-category temperatures, the config's MT-Bench
  settings and questions per category): one decoding loop per temperature group as the code did
  it before (`baseline_mt_bench`) against one batch per turn (`generate_mt_bench`), both with
  our engine in `generation.cpu_dtype`, and whether the answers are the same.

The baselines live here only to be measured against. Each case runs in its own process (so
its peak RSS is its own, as a rule's job would see it), `--repeats` times; the fastest run is
reported, because other work on the machine slows single runs down by up to a third.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from prefopt.config import load_config
from prefopt.data.download import ALPACA_EVAL_REFERENCE
from prefopt.data.prepare import alpaca_eval_1_reference, read_jsonl, subset_mt_bench
from prefopt.generation.answers import (
    _messages,
    engine_texts,
    generate_mt_bench,
    mt_bench_temperature,
)
from prefopt.generation.hf_engine import HfEngine, generate_token_ids
from prefopt.generation.interface import GenerationEngine, Sampling, answer_seed
from prefopt.judging.local import LocalJudge
from prefopt.judging.mt_bench import CATEGORIES, load_judge_prompts
from prefopt.modeling import load_model, prepare_model, resolve_cpu_dtype
from prefopt.runtime import peak_rss_mib, read_json

REPO = Path(__file__).resolve().parents[2]
EMBEDDED = REPO / "config" / "embedded.yaml"
SHIPPED_ALPACA_EVAL = REPO / "workflow/resources/data" / ALPACA_EVAL_REFERENCE
SHIPPED_MT_BENCH = REPO / "workflow/resources/data/mt_bench/question.jsonl"
SHIPPED_MT_BENCH_JUDGE_PROMPTS = REPO / "workflow/resources/data/mt_bench/judge_prompts.jsonl"
SHIPPED_MT_BENCH_REFERENCES = REPO / "workflow/resources/data/mt_bench/reference_answer/gpt-4.jsonl"


# -- baselines: the code as it was before, kept only to be measured against -------------------
@torch.no_grad()
def baseline_generate(
    model: Any,
    tokenizer: Any,
    conversations: list[list[dict[str, str]]],
    *,
    sampling: Sampling,
    batch_size: int,
    seed: int,
) -> list[list[int]]:
    """The former `generate_batch` loop: padded batches in benchmark order through `generate`."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos) if isinstance(eos, list) else {eos}
    answers: list[list[int]] = []
    for b, start in enumerate(range(0, len(conversations), batch_size)):
        texts = [
            tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
            for c in conversations[start : start + batch_size]
        ]
        enc = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        torch.manual_seed(seed * 1_000_003 + b)
        kwargs: dict[str, Any] = {
            "max_new_tokens": sampling.max_new_tokens,
            "repetition_penalty": sampling.repetition_penalty,
            "do_sample": sampling.temperature > 0,
            "pad_token_id": tokenizer.pad_token_id,
        }
        if sampling.temperature > 0:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        out = model.generate(**enc.to(model.device), **kwargs)
        for row in out[:, enc["input_ids"].shape[1] :].tolist():
            ends = [i for i, t in enumerate(row) if t in eos_ids]
            answers.append(row[: ends[0] + 1] if ends else row)
    return answers


class BaselineLocalJudge(LocalJudge):
    """The local judge's former pass: logits at every position, prompts sorted by characters."""

    @torch.no_grad()
    def _next_token_probs(
        self, prompts: list[str], token_ids: list[int], then: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if then is not None:
            raise NotImplementedError("the baseline covers the AlpacaEval judge only")
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        first = torch.zeros(len(prompts), len(token_ids))
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            enc = self.tokenizer(
                [prompts[i] for i in idx],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            ).to(self.model.device)
            out = self.model(**enc, use_cache=False)
            first[idx] = torch.softmax(out.logits[:, -1, :].float(), dim=-1)[:, token_ids].cpu()
        return first, None


def baseline_mt_bench(
    engine: GenerationEngine,
    questions: list[dict[str, Any]],
    *,
    system_prompt: str,
    sampling: Sampling,
    seed: int,
) -> dict[int, list[str]]:
    """The former MT-Bench loop: per turn, one engine call per FastChat temperature group."""
    answers: dict[int, list[str]] = {q["question_id"]: [] for q in questions}
    for turn in range(2):
        groups: dict[float, list[dict[str, Any]]] = {}
        for q in questions:
            groups.setdefault(mt_bench_temperature(sampling, q["category"]), []).append(q)
        for temp, qs in sorted(groups.items()):
            texts = engine_texts(
                engine,
                [_messages(system_prompt, q["turns"][: turn + 1], answers[q["question_id"]])
                 for q in qs],
                sampling,
                seeds=[answer_seed(seed, "mt_bench", q["question_id"], turn) for q in qs],
                temperatures=[temp] * len(qs),
            )  # fmt: skip
            for q, text in zip(qs, texts, strict=True):
                answers[q["question_id"]].append(text)
    return answers


# -- measuring: each case in its own process, so that its peak RSS is its own ------------------
def run_case(spec: dict[str, Any], task: str, impl: str, dtype: str) -> dict[str, Any]:
    """One case, `spec["repeats"]` times (in a child process): wall times, result, peak RSS."""
    torch.set_num_threads(spec["threads"])
    model, tokenizer = load_model(spec["model_dir"], device="cpu", cpu_dtype=dtype)
    sampling = Sampling.from_config(spec["settings"], key="generation.alpaca_eval")
    batch_size = spec["batch_size"]
    convs = [_messages(spec["system_prompt"], [t], []) for t in spec["instructions"]]
    if task == "generate" and impl == "baseline":

        def work() -> Any:
            return baseline_generate(
                model, tokenizer, convs, sampling=sampling, batch_size=batch_size, seed=spec["seed"]
            )

    elif task == "mt_bench":
        engine, mt = HfEngine(model, tokenizer, batch_size), spec["mt_bench"]
        mt_sampling = Sampling.from_config(mt["settings"], key="generation.mt_bench")
        kw = {"system_prompt": spec["system_prompt"], "sampling": mt_sampling}

        def work() -> Any:
            if impl == "baseline":
                answers = baseline_mt_bench(engine, mt["questions"], **kw, seed=spec["seed"])
                return [answers[q["question_id"]] for q in mt["questions"]]
            out = generate_mt_bench(engine, mt["questions"], model_id="m", **kw, seed=spec["seed"])
            return [o["choices"][0]["turns"] for o in out]

    elif task == "generate":
        seeds = [answer_seed(spec["seed"], "alpaca_eval", i) for i in range(len(convs))]

        def work() -> Any:
            return generate_token_ids(
                model, tokenizer, convs, sampling, seeds=seeds, batch_size=batch_size
            )

    elif task == "judge_mt_bench":
        judge = LocalJudge(
            model, tokenizer, max_length=spec["judge_max_length"], share_prefix=impl == "engine"
        )
        mt = spec["mt_bench"]
        answers = {
            q["question_id"]: turns for q, turns in zip(mt["questions"], mt["answers"], strict=True)
        }
        judge_prompts = load_judge_prompts(SHIPPED_MT_BENCH_JUDGE_PROMPTS)
        references = {
            r["question_id"]: r["choices"][0]["turns"]
            for r in read_jsonl(SHIPPED_MT_BENCH_REFERENCES)
        }

        def work() -> Any:
            records = judge.judge_mt_bench(
                mt["questions"], answers, judge_prompts, references, model_name="benchmark"
            )
            return [r["score"] for r in records]

    else:
        if impl == "baseline":
            judge = BaselineLocalJudge(model, tokenizer, max_length=spec["judge_max_length"])
        else:
            judge = LocalJudge(
                model,
                tokenizer,
                max_length=spec["judge_max_length"],
                share_prefix=impl == "engine",
            )

        def work() -> Any:
            judged = judge.judge_alpaca_eval_pairs(spec["pairs"])
            return [[x["p_model_better_order1"], x["p_model_better_order2"]] for x in judged]

    walls = []
    for _ in range(spec["repeats"]):
        t0 = time.perf_counter()
        result = work()
        walls.append(time.perf_counter() - t0)
    peak = peak_rss_mib()
    return {"walls": walls, "result": result, "peak_rss_mib": peak}


def _in_subprocess(spec_path: Path, task: str, impl: str, dtype: str) -> dict[str, Any]:
    out = spec_path.parent / f"{task}_{impl}_{dtype}.json"
    cmd = [sys.executable, "-m", "prefopt_tools.benchmark_generation", "--_child"]
    subprocess.run([*cmd, task, impl, dtype, str(spec_path), str(out)], check=True)
    result = json.loads(out.read_text())
    print(f"  {task} {impl} {dtype}: " + ", ".join(f"{w:.1f} s" for w in result["walls"]))
    return result


@torch.no_grad()
def distribution_check(
    reference: Any, other: Any, prompts: list[list[int]], answers: list[list[int]]
) -> tuple[float, float]:
    """Mean per-token KL(reference || other) in nats and top-1 agreement along `answers`."""
    kl, agree, n = 0.0, 0, 0
    for prompt, answer in zip(prompts, answers, strict=True):
        if not answer:
            continue
        ids = torch.tensor([prompt + answer], device=reference.device)
        ref = reference(input_ids=ids).logits[0, len(prompt) - 1 : -1].float().log_softmax(-1)
        oth = other(input_ids=ids).logits[0, len(prompt) - 1 : -1].float().log_softmax(-1)
        kl += (ref.exp() * (ref - oth)).sum().item()
        agree += (ref.argmax(-1) == oth.argmax(-1)).sum().item()
        n += len(answer)
    return kl / max(n, 1), agree / max(n, 1)


def _table(unit: str, rows: list[tuple[str, float, dict[str, Any], str]]) -> str:
    """rows: (variant, work done, case result, note); rates use each case's fastest run."""
    lines = [
        f"| variant | {unit} | wall s (best) | {unit}/s | × before | peak RSS MiB | note |",
        "|---|---|---|---|---|---|---|",
    ]
    base_rate = rows[0][1] / min(rows[0][2]["walls"])
    for name, work, case, note in rows:
        wall = min(case["walls"])
        lines.append(
            f"| {name} | {work:.0f} | {wall:.1f} | {work / wall:.2f} "
            f"| {work / wall / base_rate:.2f} | {case['peak_rss_mib']:.0f} | {note} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--configfile",
        action="append",
        type=Path,
        help="layered on config/config.yaml as snakemake --configfile does (default: embedded)",
    )
    p.add_argument("--prompts", type=int, default=32, help="first AlpacaEval prompts (~5 min)")
    p.add_argument(
        "--judge-pairs", type=int, default=12, help="judged pairs (x2 orders; 0: no judge cases)"
    )
    p.add_argument(
        "--mt-bench-per-category",
        type=int,
        help="MT-Bench questions per category (default: the config's; 0: no MT-Bench case)",
    )
    p.add_argument(
        "--mt-bench-categories",
        help="comma-separated MT-Bench categories to keep (default: all 8); e.g. writing,math,stem "
        "keeps one of each temperature FastChat uses (0.7, 0, 0.1)",
    )
    p.add_argument("--batch-size", type=int, help="default: generation.batch_size")
    p.add_argument("--max-new-tokens", type=int, help="default: the config's AlpacaEval setting")
    p.add_argument("--threads", type=int, help="torch threads (default: generation.threads)")
    p.add_argument("--repeats", type=int, default=2, help="runs per case; the fastest is shown")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work-dir", type=Path, default=REPO / "results" / "benchmark_generation")
    p.add_argument("--model-dir", type=Path, help="a prepared HF model folder (default: prepared)")
    p.add_argument("--json", type=Path, help="also write every case's runs and results here")
    p.add_argument("--_child", nargs=5, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    mt_categories = a.mt_bench_categories.split(",") if a.mt_bench_categories else None
    if unknown := sorted(set(mt_categories or ()) - set(CATEGORIES)):  # before any model loads
        p.error(f"--mt-bench-categories: no MT-Bench category {unknown}; known: {CATEGORIES}")
    if a._child:
        task, impl, dtype, spec_path, out = a._child
        spec = json.loads(Path(spec_path).read_text())
        Path(out).write_text(json.dumps(run_case(spec, task, impl, dtype)))
        return

    cfg = load_config(REPO / "config/config.yaml", *(a.configfile or [EMBEDDED]))
    gen, judges = cfg["generation"], cfg["judges"]
    settings = dict(gen["alpaca_eval"])
    if a.max_new_tokens:
        settings["max_new_tokens"] = a.max_new_tokens
    items = alpaca_eval_1_reference(read_json(SHIPPED_ALPACA_EVAL))
    items = items[: a.prompts]
    work = a.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    model_dir = (a.model_dir or work / "model").resolve()
    if not (model_dir / "config.json").exists():
        print(f"preparing {cfg['model']['source']} into {model_dir}", flush=True)
        prepare_model(cfg["model"], model_dir)
    spec: dict[str, Any] = {
        "model_dir": str(model_dir),
        "threads": a.threads or gen["threads"],
        "repeats": a.repeats,
        "seed": a.seed,
        "settings": settings,
        "batch_size": a.batch_size or gen["batch_size"],
        "system_prompt": gen["system_prompt"],
        "instructions": [it["instruction"] for it in items],
        "judge_max_length": judges["local_max_length"],
    }
    spec_path = work / "spec.json"
    spec_path.write_text(json.dumps(spec))
    # `auto` as the jobs resolve it on this CPU (bfloat16 only where it is native)
    cpu_dtype = resolve_cpu_dtype(gen["cpu_dtype"])
    judge_dtype = resolve_cpu_dtype(judges["local_cpu_dtype"])
    print(
        f"{len(items)} AlpacaEval prompts, temperature {settings['temperature']}, top-p "
        f"{settings['top_p']}, repetition penalty {settings['repetition_penalty']}, at most "
        f"{settings['max_new_tokens']} new tokens, batch {spec['batch_size']}, "
        f"{spec['threads']} thread(s), each case in its own process, {a.repeats} run(s) each",
        flush=True,
    )

    # -- generation ---------------------------------------------------------------------------
    print("generation:", flush=True)
    rows = []
    cases = [("baseline", "float32", "HF generate, float32, benchmark order (before)")]
    for dtype in dict.fromkeys(["float32", cpu_dtype]):
        tag = " (config)" if dtype == cpu_dtype else ""
        cases.append(("engine", dtype, f"prefopt engine, {dtype}{tag}"))
    report: dict[str, Any] = {"generation": {}, "judge": {}}
    for impl, dtype, label in cases:
        case = _in_subprocess(spec_path, "generate", impl, dtype)
        report["generation"][f"{impl} {dtype}"] = case
        n = sum(map(len, case["result"]))
        rows.append((label, n, case, f"{n / len(items):.1f} tokens/answer"))
    how = "sampled" if settings["temperature"] > 0 else "greedy"
    print(f"\nGeneration (AlpacaEval prompts, {how}), new tokens:\n" + _table("tokens", rows))

    _, tokenizer = load_model(model_dir, device="cpu")
    baseline_answers = report["generation"]["baseline float32"]["result"]
    if cpu_dtype != "float32":
        torch.set_num_threads(spec["threads"])
        fp32 = load_model(model_dir, device="cpu")[0]
        other = load_model(model_dir, device="cpu", cpu_dtype=cpu_dtype)[0]
        convs = [_messages(gen["system_prompt"], [it["instruction"]], []) for it in items]
        texts = [
            tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
            for c in convs
        ]
        prompts = tokenizer(texts, add_special_tokens=False)["input_ids"]
        n = min(16, len(prompts))
        kl, agree = distribution_check(fp32, other, prompts[:n], baseline_answers[:n])
        print(
            f"\n{cpu_dtype} vs float32 next-token distributions along the baseline's first {n} "
            f"answers: mean KL {kl:.4f} nats/token, top-1 agreement {agree:.3f}"
        )
        report["distribution"] = {"kl": kl, "top1_agreement": agree, "answers": n}
        del fp32, other

    # -- MT-Bench: one loop per temperature group (before) vs one batch per turn -------------
    per_category = a.mt_bench_per_category
    if per_category is None:
        per_category = cfg["data"]["mt_bench"]["questions_per_category"]
    if per_category != 0:
        mt_settings = dict(gen["mt_bench"])
        if a.max_new_tokens:
            mt_settings["max_new_tokens"] = a.max_new_tokens
        questions = subset_mt_bench(read_jsonl(SHIPPED_MT_BENCH), per_category)
        if mt_categories:
            questions = [q for q in questions if q["category"] in mt_categories]
        spec["mt_bench"] = {"settings": mt_settings, "questions": questions}
        spec_path.write_text(json.dumps(spec))
        print(f"\nMT-Bench, {len(questions)} questions x 2 turns, {cpu_dtype}:", flush=True)
        mt_rows, mt_report = [], {}
        for impl, label in (
            ("baseline", "one loop per temperature group (before)"),
            ("engine", "one batch per turn (now)"),
        ):
            case = _in_subprocess(spec_path, "mt_bench", impl, cpu_dtype)
            mt_report[impl] = case
            same = case["result"] == mt_report["baseline"]["result"]
            mt_rows.append((label, 2 * len(questions), case, f"same answers: {same}"))
        print("\nMT-Bench generation (answers = questions x turns):\n" + _table("answers", mt_rows))
        report["mt_bench"] = mt_report
        if a.judge_pairs > 0:
            spec["mt_bench"]["answers"] = mt_report["engine"]["result"]
            report["judge_mt_bench"] = _judge_mt_bench(spec, spec_path, judge_dtype)

    # -- local judge --------------------------------------------------------------------------
    if a.judge_pairs > 0:
        answers = tokenizer.batch_decode(baseline_answers, skip_special_tokens=True)
        spec["pairs"] = [
            {
                "instruction": it["instruction"],
                "output_1": it["output"],
                "generator_1": it["generator"],
                "output_2": text.strip(),
                "generator_2": "baseline",
            }
            for it, text in list(zip(items, answers, strict=True))[: a.judge_pairs]
        ]
        report["judge"] = _judge(spec, spec_path, judge_dtype)
    if a.json:
        a.json.write_text(json.dumps(report))


def _compared(
    spec_path: Path, task: str, cases: list[tuple[str, str, str]], work: int, what: str
) -> tuple[list[tuple[str, float, dict[str, Any], str]], dict[str, Any]]:
    """Run `cases` ((impl, dtype, label)) of `task`; table rows noting the largest change of
    `what` (each case's result) from the first case's, and the cases by "impl dtype"."""
    rows, before, report = [], None, {}
    for impl, dtype, label in cases:
        case = _in_subprocess(spec_path, task, impl, dtype)
        report[f"{impl} {dtype}"] = case
        values = torch.tensor(case["result"])
        before = values if before is None else before
        note = (
            f"max abs diff of {what} {(values - before).abs().max().item():.1e}, "
            f"mean {what} {values.mean().item():.4f}"
        )
        rows.append((label, work, case, note))
    return rows, report


def _judge(spec: dict[str, Any], spec_path: Path, judge_dtype: str) -> dict[str, Any]:
    """The local judge's cases on `spec["pairs"]`: printed as a table, returned by case."""
    spec_path.write_text(json.dumps(spec))
    n_pairs = len(spec["pairs"])
    print(f"\nlocal judge, {n_pairs} pairs x 2 orders, max length {spec['judge_max_length']}:")
    cases = [("baseline", "float32", "logits at every position, float32 (before)")]
    for dtype in dict.fromkeys(["float32", judge_dtype]):
        tag = " (config)" if dtype == judge_dtype else ""
        cases.append(("whole", dtype, f"last position only, {dtype}, whole prompts"))
        cases.append(("engine", dtype, f"last position only, {dtype}, shared prefix{tag}"))
    rows, report = _compared(spec_path, "judge", cases, n_pairs, "P(model better)")
    print(
        "\nLocal judge (AlpacaEval reference vs the baseline's answers):\n" + _table("pairs", rows)
    )
    return report


def _judge_mt_bench(spec: dict[str, Any], spec_path: Path, judge_dtype: str) -> dict[str, Any]:
    """The local MT-Bench judge on the MT-Bench case's answers (both turns), whole prompts vs
    a shared prefix per FastChat template: printed as a table, returned by case."""
    spec_path.write_text(json.dumps(spec))
    n = 2 * len(spec["mt_bench"]["questions"])
    print(f"\nlocal MT-Bench judge, {n} judgments, max length {spec['judge_max_length']}:")
    cases = []
    for dtype in dict.fromkeys(["float32", judge_dtype]):
        tag = " (config)" if dtype == judge_dtype else ""
        cases.append(("whole", dtype, f"{dtype}, whole prompts"))
        cases.append(("engine", dtype, f"{dtype}, shared prefix{tag}"))
    rows, report = _compared(spec_path, "judge_mt_bench", cases, n, "score")
    print("\nLocal MT-Bench judge (the engine's answers):\n" + _table("judgments", rows))
    return report


if __name__ == "__main__":
    main()
