"""Training throughput of ``animator train`` at the default (paper) config, on random data.

    python bench/train_speed.py [--device cuda] [--batch-size 25] [--iterations 100] [--compile]

(from the repository root, with animator installed or ``PYTHONPATH=.``).

Prints one JSON object: images/s and iterations/s over timed iterations (after warm-up), with
one generator step per ``critic_steps`` iterations exactly as in training, plus what that
means for an epoch of UTKFace and for a 20-minute budget. Use it to size ``--steps``; the
real loop runs ~10-15% slower (metrics, held-out evaluation, sample grids), and ``--compile``
first spends ~30-60 s compiling, which this measurement leaves out.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from animator.train.config import TrainConfig
from animator.train.loop import Distributed, Trainer, pick_device
from animator.train.motion import LinearRig

UTKFACE_TRAIN = 21_300  # ~90% of 23,707


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--image-size", type=int, default=TrainConfig.image_size)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--no-channels-last", action="store_true")
    parser.add_argument("--motion", action="store_true",
                        help="Motion mode: inputs warped by a 128-point rig (as --motion rig).")
    args = parser.parse_args()

    config = TrainConfig(batch_size=args.batch_size, image_size=args.image_size,
                         precision=args.precision, compile=args.compile,
                         channels_last=not args.no_channels_last)
    device = pick_device(args.device, Distributed())
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(0)
    pool = 8 * config.batch_size
    warp = None
    landmarks = torch.rand(pool, 128, 2, device=device) * config.image_size * 0.6 + config.image_size * 0.2
    if args.motion:
        warp = LinearRig(torch.randn(17, 128, 2) * 0.5, config.image_size).to(device)
    trainer = Trainer(config, device, warp=warp)
    images = torch.randint(0, 256, (pool, config.image_size, config.image_size, 3),
                           dtype=torch.uint8, device=device)
    aus = torch.rand(pool, 17, device=device) * 5
    steps = config.critic_steps

    def run(count: int) -> float:
        count = max(steps, count // steps * steps)  # whole generator cycles
        sync(device)
        start = time.perf_counter()
        for i in range(count):
            rows = torch.arange(i % 8 * config.batch_size, (i % 8 + 1) * config.batch_size, device=device)
            trainer.step(images[rows], aus[rows], aus, landmarks[rows] if warp else None)
        trainer.pop_metrics()
        sync(device)
        return count / (time.perf_counter() - start)

    run(args.warmup)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    iterations_per_s = run(args.iterations)
    images_per_s = iterations_per_s * config.batch_size
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
        "precision": str(trainer.amp_dtype).replace("torch.", ""),
        "batch_size": config.batch_size, "image_size": config.image_size,
        "critic_steps": config.critic_steps, "compile": config.compile, "motion": args.motion,
        "iterations_per_s": round(iterations_per_s, 2), "images_per_s": round(images_per_s, 1),
        "utkface_epoch_s": round(UTKFACE_TRAIN / images_per_s, 1),
        "iterations_in_20_min": int(iterations_per_s * 1200),
        "epochs_in_20_min": round(images_per_s * 1200 / UTKFACE_TRAIN, 2),
    }
    if device.type == "cuda":
        result["peak_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 30, 2)
    print(json.dumps(result))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    main()
