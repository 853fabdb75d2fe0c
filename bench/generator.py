"""Generator throughput: faces/s and ms/face per batch size and precision, printed as JSON.

Times FaceEditor.edit end to end (uint8 crops in, A + C out, host<->device copies included)
with a randomly initialised generator (speed does not depend on the weights): full size by
default, or the fast one with ``--conv-dim 32 --repeat-num 3``. Reports the minimum over the
repeats (on a shared machine the median mostly measures the neighbours).

    python bench/generator.py --device cpu [--conv-dim 32 --repeat-num 3]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from animator.errors import AnimatorError
from animator.model.generator import Generator, GeneratorConfig
from animator.model.inference import FaceEditor, bf16_is_fast, device_name, resolve_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--conv-dim", type=int, default=64, help="generator width")
    parser.add_argument("--repeat-num", type=int, default=6, help="residual blocks")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per setting")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per setting")
    parser.add_argument("--batch-sizes", default="1,8,32")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--compile", action="store_true", help="use torch.compile")
    parser.add_argument("--workers", type=int,
                        help="batches run at once (default: FaceEditor's, one single-threaded worker per CPU thread)")
    args = parser.parse_args()

    device = resolve_device(args.device)
    torch.manual_seed(0)
    generator = Generator(GeneratorConfig(image_size=args.image_size, conv_dim=args.conv_dim,
                                          repeat_num=args.repeat_num))
    rng = np.random.default_rng(0)
    results = []
    workers = args.workers
    for precision in args.precisions.split(","):
        try:
            editor = FaceEditor(generator, device, precision, compile=args.compile, workers=args.workers)
        except AnimatorError as exc:  # e.g. bf16 on mps
            results.append({"precision": precision, "skipped": str(exc)})
            continue
        workers = editor.workers
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            editor.batch_size = batch
            crops = rng.integers(0, 256, (batch, args.image_size, args.image_size, 3), np.uint8)
            aus = rng.uniform(0, 5, (batch, 17)).astype(np.float32)
            for _ in range(args.warmup):
                editor.edit(crops, aus)
            times = []
            for _ in range(args.repeats):
                _sync(device)
                start = time.perf_counter()
                editor.edit(crops, aus)
                _sync(device)
                times.append(time.perf_counter() - start)
            seconds = float(np.min(times))
            results.append({"precision": precision, "batch_size": batch,
                            "ms_per_face": round(1000 * seconds / batch, 3),
                            "faces_per_s": round(batch / seconds, 2)})
    print(json.dumps({
        "device": str(device), "device_name": device_name(device), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "workers": workers, "image_size": args.image_size,
        "parameters": sum(p.numel() for p in generator.parameters()),
        "bf16_native": bf16_is_fast(device), "compile": args.compile, "timing": "min",
        "repeats": args.repeats, "results": results}, indent=2))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    main()
