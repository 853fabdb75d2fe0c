"""``python3 -m pipelines.gpu_retrain --data DATA --out OUT``: the whole GPU retraining of the
default generator in one call (docs/retraining.md).

1. Measure: training steps exactly as the run takes them (motion warp, balanced targets, bf16,
   channels_last, the set resident on the GPU) at each candidate batch size, eager; then the
   chosen batch compiled (``torch.compile``), falling back to eager if compiling fails.
2. Choose: the smallest batch within ``batch_share`` of the best measured images/s (more
   generator steps for the same images), learning rate scaled by sqrt(batch / 25) from the
   paper's 1e-4 at 25.
3. Train: ``--motion rig --balance --init-from default``, the step count sized from the
   measurement so the learning-rate decay ends with the time budget (``max_minutes`` stops it
   in any case).
4. Evaluate the new generator on held-out faces, with the previous (shipped) model's grid;
   a failure there is logged and the generator still comes back.
5. Write to OUT: ``generator/`` (shards + config), ``report.tar.gz`` (measurement, run log,
   metrics, samples, evaluation) and ``log.txt`` — 7 files, each under 16 MiB.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import tarfile
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from animator.errors import AnimatorError

PAPER_BATCH, PAPER_LR = 25, 1e-4


@dataclass
class RetrainOptions:
    data: Path
    out: Path
    minutes: float = 8.5             # the whole call, measurement and evaluation included
    device: str = "cuda"
    candidates: tuple[int, ...] = (128, 256, 512)
    measure_iterations: int = 15
    batch_share: float = 0.85
    compile: bool = True
    init_from: str = "default"
    reserve_minutes: float = 2.0     # kept for export, evaluation and packing
    eval_faces: int = 60
    responsiveness_faces: int = 16
    network: dict = field(default_factory=dict)  # TrainConfig overrides (tests: tiny networks)


def scaled_lr(batch: int) -> float:
    """Adam's rate for ``batch``: the paper's 1e-4 at 25 scaled by sqrt(batch / 25)."""
    return PAPER_LR * math.sqrt(batch / PAPER_BATCH)


def choose_batch(rates: dict[int, float], share: float) -> int:
    """The smallest batch whose images/s is within ``share`` of the best."""
    best = max(rates.values())
    return min(b for b, r in rates.items() if r >= share * best)


def planned_steps(iterations_per_s: float, seconds: float) -> int:
    """Iterations that fit in ``seconds`` at the measured rate, with 10 % kept for the loop's
    logging, held-out metrics and sample grids."""
    return max(1, int(iterations_per_s * seconds * 0.9))


# ---------------------------------------------------------------- measuring

def measure(options: RetrainOptions, log) -> dict:
    """images/s per candidate batch (eager) and compiled at the chosen one."""
    from animator.train.balance import balance_weights
    from animator.train.config import TrainConfig
    from animator.train.data import load_split
    from animator.train.loop import Distributed, Trainer, motion_inputs, pick_device

    device = pick_device(options.device, Distributed())
    base = TrainConfig(motion="rig", balance=True, **options.network)
    faces = load_split(options.data, "train")
    motion = motion_inputs(options.data, base, faces, load_split(options.data, "test"), device)
    pool = min(len(faces), 4 * max(options.candidates))
    images = torch.from_numpy(faces.decode_all(base.image_size)[:pool]).to(device)
    aus = torch.from_numpy(faces.aus[:pool]).to(device)
    weights = torch.as_tensor(balance_weights(faces.aus[:pool]), device=device)
    landmarks = motion.train_landmarks[:pool]

    def rate(batch: int, compile_: bool) -> tuple[float, float]:
        config = base.with_changes(batch_size=batch, compile=compile_, lr_g=scaled_lr(batch),
                                   lr_d=scaled_lr(batch))
        trainer = Trainer(config, device, warp=motion.warp, target_weights=weights)
        step = config.critic_steps
        rows = [torch.arange(i * batch, (i + 1) * batch, device=device) % pool for i in range(8)]

        def run(count: int) -> float:
            _sync(device)
            start = time.perf_counter()
            for i in range(count):
                r = rows[i % len(rows)]
                trainer.step(images[r], aus[r], aus, landmarks[r])
            trainer.pop_metrics()
            _sync(device)
            return time.perf_counter() - start

        run(2 * step)  # warm-up (cudnn autotuning, compilation)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        count = max(step, options.measure_iterations // step * step)
        seconds = run(count)
        memory = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else 0.0
        return count * batch / seconds, memory

    result = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else str(device),
              "torch": torch.__version__, "pool_images": pool, "eager": {}}
    for batch in options.candidates:
        if batch > pool:
            continue
        images_per_s, memory = rate(batch, False)
        result["eager"][batch] = {"images_per_s": round(images_per_s, 1), "peak_memory_gb": round(memory, 2)}
        log(f"measure: batch {batch} eager {images_per_s:.0f} images/s, {memory:.1f} GiB")
    if not result["eager"]:
        raise AnimatorError(f"{options.data}: {len(faces)} training faces are fewer than the smallest "
                            f"candidate batch {min(options.candidates)}")
    chosen = choose_batch({b: r["images_per_s"] for b, r in result["eager"].items()}, options.batch_share)
    result["batch"] = chosen
    result["images_per_s"] = result["eager"][chosen]["images_per_s"]
    result["compiled"] = False
    if options.compile:
        try:
            images_per_s, memory = rate(chosen, True)
        except Exception as exc:  # a compiler failure must not cost the run: train eager
            log(f"measure: torch.compile failed ({type(exc).__name__}: {exc}); training eager")
            result["compile_error"] = f"{type(exc).__name__}: {exc}"
        else:
            log(f"measure: batch {chosen} compiled {images_per_s:.0f} images/s, {memory:.1f} GiB")
            result["compiled_images_per_s"] = round(images_per_s, 1)
            if images_per_s > result["images_per_s"]:
                result["compiled"], result["images_per_s"] = True, round(images_per_s, 1)
    return result


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------- the call

def retrain(options: RetrainOptions, log=print) -> dict:
    """Measure, train, evaluate and pack into ``options.out``; returns the summary."""
    from animator.train.config import TrainConfig
    from animator.train.loop import RunControl, train

    started = time.monotonic()
    deadline = started + options.minutes * 60
    work = options.out / "work"
    work.mkdir(parents=True, exist_ok=True)
    if options.device == "cuda" and torch.cuda.is_available():
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    measured = measure(options, log)
    (work / "measure.json").write_text(json.dumps(measured, indent=1) + "\n")
    batch = measured["batch"]
    train_seconds = deadline - time.monotonic() - options.reserve_minutes * 60
    if train_seconds < 30:
        raise AnimatorError(f"only {train_seconds:.0f} s left to train after measuring: raise --minutes")
    steps = planned_steps(measured["images_per_s"] / batch, train_seconds)
    config = TrainConfig(**{**dict(
        batch_size=batch, lr_g=scaled_lr(batch), lr_d=scaled_lr(batch), steps=steps,
        motion="rig", balance=True, init_from=options.init_from, compile=measured["compiled"],
        cache="device" if options.device == "cuda" else "memory", max_minutes=train_seconds / 60,
        checkpoint_minutes=600.0, log_every=max(1, steps // 40), eval_every=max(1, steps // 4),
        sample_every=max(1, steps // 4), eval_images=200), **options.network})
    log(f"train: batch {batch}, lr {config.lr_g:.2e}, {steps} iterations planned, "
        f"{train_seconds / 60:.1f} min, compiled {measured['compiled']}")
    run = work / "run"
    summary = train(options.data, run, config, RunControl(device=options.device, quiet=True, overwrite=True),
                    log=log)
    if options.device == "cuda" and torch.cuda.is_available():
        summary["peak_memory_gb"] = round(torch.cuda.max_memory_allocated() / 2 ** 30, 2)
    summary["measure"] = measured
    evaluation = _evaluate(options, run / "generator", work / "evaluation", log)
    summary["evaluation"] = evaluation
    summary["call_s"] = round(time.monotonic() - started, 1)
    (work / "summary.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    _pack(options.out, run, work)
    log(json.dumps({k: summary.get(k) for k in ("iterations", "stopped", "images_per_s",
                                                 "peak_memory_gb", "call_s")}))
    return summary


def _evaluate(options: RetrainOptions, generator: Path, out: Path, log) -> dict:
    """The held-out evaluation next to the shipped model; its failure is logged, not raised."""
    from pipelines.evaluate import EvaluateOptions, evaluate

    try:
        report = evaluate(EvaluateOptions(
            checkpoint=generator, data=options.data, out=out, device=options.device,
            limit=options.eval_faces, responsiveness_faces=options.responsiveness_faces,
            motion="rig", compare=Path("default"), overwrite=True, quiet=True))
    except Exception:  # the generator must come back even if the evaluation cannot run here
        log("evaluation failed (run pipelines.evaluate on the CPU machine):\n" + traceback.format_exc())
        return {"ok": False}
    response = report["responsiveness"]["per_au"]
    return {"ok": True, "au_mae": report["au_error"]["mean"]["mae"], "cycle_l1": report["cycle"]["l1"],
            "r": {name: row["r"] for name, row in response.items()}}


def _pack(out: Path, run: Path, work: Path) -> None:
    """OUT/generator/* (the model files) and OUT/report.tar.gz (everything else but the
    resumable checkpoint, which is too big to travel)."""
    target = out / "generator"
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(run / "generator", target)
    with tarfile.open(out / "report.tar.gz", "w:gz") as tar:
        for path in sorted(work.rglob("*")):
            relative = path.relative_to(work)
            if path.is_file() and relative.parts[:2] != ("run", "generator") and path.name != "checkpoint.pt":
                tar.add(path, arcname=str(relative))
    shutil.rmtree(work)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(prog="python3 -m pipelines.gpu_retrain", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--minutes", type=float, default=RetrainOptions.minutes)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--candidates", default="128,256,512", help="Batch sizes to measure.")
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--network", default="{}", help="JSON TrainConfig overrides (tests).")
    parser.add_argument("--init-from", default="default")
    parser.add_argument("--reserve-minutes", type=float, default=RetrainOptions.reserve_minutes)
    parser.add_argument("--eval-faces", type=int, default=RetrainOptions.eval_faces)
    parser.add_argument("--responsiveness-faces", type=int, default=RetrainOptions.responsiveness_faces)
    args = parser.parse_args(argv)
    options = RetrainOptions(
        data=args.data, out=args.out, minutes=args.minutes, device=args.device,
        candidates=tuple(int(b) for b in args.candidates.split(",")), compile=not args.no_compile,
        init_from=args.init_from, reserve_minutes=args.reserve_minutes, eval_faces=args.eval_faces,
        responsiveness_faces=args.responsiveness_faces, network=json.loads(args.network))
    log_path = args.out / "log.txt"
    args.out.mkdir(parents=True, exist_ok=True)
    with log_path.open("a") as handle:
        def log(line: str) -> None:
            stamped = f"[{time.strftime('%H:%M:%S')}] {line}"
            print(stamped, flush=True)
            handle.write(stamped + "\n")
            handle.flush()

        log(f"options: {json.dumps(asdict(options), default=str)}")
        try:
            retrain(options, log)
        except AnimatorError as exc:
            log(f"error: {exc}")
            sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
