"""Benchmark the render pipeline on one clip; prints one JSON object.

    python bench/pipeline.py [CLIP] [--checkpoint PATH] [--device auto] [--batch-size 16]

Reports the end-to-end render rate (model load, then both passes: tracking, then decode ->
generate -> composite -> encode; also per phase, and for the looped clip where start-up
weighs less), the rate of decode + encode alone (no faces, no model), the rate of the
generator alone on the clip's own face crops, the ratio of end-to-end to the slower of those
two (1.0 means the overlap hides everything but the bottleneck; the tracking pass is part of
end-to-end but of neither stage alone), and the peak RSS of a render of the clip and of the
clip looped 4x (flat memory means the two are close). Every measurement runs in its own
subprocess so each peak RSS is its own. Without --checkpoint and without a shipped default
model, a randomly initialised full-size generator stands in (speed does not depend on weights).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = REPO.parent / "shared" / "media" / "single_face.mp4"
KEYS = {"version": 1, "keys": [{"time": 0, "preset": "neutral"},
                               {"time": 1.0, "preset": "happy"},
                               {"time": 2.0, "preset": "surprise"}]}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def measure_render(clip: Path, model: Path, device: str, batch_size: int, work: Path) -> dict:
    from pipelines.render import RenderOptions, render

    keys = work / "keys.json"
    keys.write_text(json.dumps(KEYS))
    began = time.perf_counter()
    summary = render(RenderOptions(video=clip, keyframes=keys, out=work / f"out-{clip.stem}.mp4",
                                   checkpoint=model, device=device, batch_size=batch_size,
                                   quiet=True, overwrite=True))
    seconds = time.perf_counter() - began
    return {"frames": summary.frames, "faces": summary.faces_edited, "seconds": seconds,
            "fps": summary.frames / seconds, "timings": summary.timings,
            "peak_rss_mb": peak_rss_mb()}


def measure_codec(clip: Path, work: Path) -> dict:
    from animator.media.decode import iter_frames, probe
    from animator.media.encode import VideoWriter

    info = probe(clip)
    began = time.perf_counter()
    frames = 0
    with VideoWriter(work / "codec.mp4", info) as writer:
        for frame in iter_frames(clip):
            writer.write(frame.rgb, frame.pts, frame.duration)
            frames += 1
    seconds = time.perf_counter() - began
    return {"frames": frames, "seconds": seconds, "fps": frames / seconds, "peak_rss_mb": peak_rss_mb()}


def measure_generator(clip: Path, model: Path, device: str, batch_size: int) -> dict:
    """Generator only, on the clip's own crops (tracked and cut first, outside the timing)."""
    import numpy as np

    from animator.faces.align import crop_transform, warp_crop
    from animator.media.decode import iter_frames
    from pipelines.render import _load_editor, track_faces

    editor = _load_editor(model, device, batch_size)
    policy = editor.crop_policy
    tracks, _ = track_faces(clip, None, None, "largest", quiet=True)
    crops = []
    for frame in iter_frames(clip):
        for obs in tracks.for_frame(frame.index):
            crops.append(warp_crop(frame.rgb, crop_transform(policy, obs.points, obs.box), policy.size))
    crops = np.stack(crops)
    targets = np.full((len(crops), 17), 1.0, np.float32)
    editor.edit(crops, targets)  # warm-up: kernels for every batch shape, allocations
    began = time.perf_counter()
    editor.edit(crops, targets)
    seconds = time.perf_counter() - began
    return {"faces": len(crops), "seconds": seconds, "fps": len(crops) / seconds,
            "device": str(editor.device), "peak_rss_mb": peak_rss_mb()}


def loop_clip(clip: Path, out: Path, times: int) -> Path:
    """``clip`` repeated ``times`` times by remuxing packets (no re-encode), audio included."""
    import av

    with av.open(str(clip)) as source, av.open(str(out), "w") as target:
        streams = [s for s in source.streams if s.type in ("video", "audio")]
        mapped = {s.index: target.add_stream_from_template(s) for s in streams}
        shift = dict.fromkeys(mapped, 0)  # per stream, so each stream's dts keep increasing
        for _ in range(times):
            source.seek(0)
            first: dict[int, int] = {}
            end: dict[int, int] = {}
            for packet in source.demux(streams):
                if packet.dts is None:
                    continue
                index = packet.stream_index
                first.setdefault(index, packet.dts)
                end[index] = max(end.get(index, packet.dts), packet.dts + (packet.duration or 0))
                packet.pts += shift[index]
                packet.dts += shift[index]
                packet.stream = mapped[index]
                target.mux(packet)
            for index in end:
                shift[index] += end[index] - first[index]
    return out


def random_model(work: Path) -> Path:
    import torch

    from animator.model.checkpoint import ModelConfig, save_generator
    from animator.model.generator import Generator, GeneratorConfig

    torch.manual_seed(0)
    config = GeneratorConfig()
    return save_generator(Generator(config), ModelConfig(generator=config), work / "random-model")


def has_default_model() -> bool:
    from animator.model.checkpoint import DEFAULT_MODEL_DIR

    return DEFAULT_MODEL_DIR.exists()


def child(args: argparse.Namespace) -> None:
    work = Path(args.work)
    if args.measure == "render":
        result = measure_render(Path(args.clip), args.checkpoint, args.device, args.batch_size, work)
    elif args.measure == "codec":
        result = measure_codec(Path(args.clip), work)
    else:
        result = measure_generator(Path(args.clip), args.checkpoint, args.device, args.batch_size)
    print(json.dumps(result))


def run_child(measure: str, clip: Path, args: argparse.Namespace, work: Path,
              model: Path | None) -> dict:
    command = [sys.executable, __file__, str(clip), "--measure", measure, "--work", str(work),
               "--device", args.device, "--batch-size", str(args.batch_size)]
    if model is not None:
        command += ["--checkpoint", str(model)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode:
        raise SystemExit(f"bench {measure} failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("clip", nargs="?", default=str(DEFAULT_CLIP))
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--loops", type=int, default=4)
    parser.add_argument("--measure", choices=("render", "codec", "generator"), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    if args.measure:
        child(args)
        return
    clip = Path(args.clip)
    if not clip.is_file():
        raise SystemExit(f"{clip}: no such clip")
    with tempfile.TemporaryDirectory(prefix="animator-bench-") as tmp:
        work = Path(tmp)
        model = args.checkpoint
        weights = str(model) if model else "default"
        if model is None and not has_default_model():
            model, weights = random_model(work), "random-init (no default model shipped)"
        looped = loop_clip(clip, work / f"looped{args.loops}x.mp4", args.loops)
        codec = run_child("codec", clip, args, work, model)
        generator = run_child("generator", clip, args, work, model)
        render = run_child("render", clip, args, work, model)
        render_loop = run_child("render", looped, args, work, model)
    slowest = min(codec["fps"], generator["fps"])
    print(json.dumps({
        "clip": str(clip), "frames": render["frames"], "faces": render["faces"],
        "weights": weights, "device": generator["device"], "batch_size": args.batch_size,
        "end_to_end_fps": round(render["fps"], 2),
        "decode_encode_fps": round(codec["fps"], 2),
        "generator_fps": round(generator["fps"], 2),
        "end_to_end_over_slowest": round(render["fps"] / slowest, 3),
        "seconds": {k: round(v, 3) for k, v in render["timings"].items()},
        "render_pass_fps": round(render["frames"] / render["timings"]["rendering"], 2),
        "render_pass_over_slowest": round(render["frames"] / render["timings"]["rendering"] / slowest, 3),
        f"end_to_end_fps_looped_{args.loops}x": round(render_loop["fps"], 2),
        f"render_pass_fps_looped_{args.loops}x": round(
            render_loop["frames"] / render_loop["timings"]["rendering"], 2),
        "peak_rss_mb": round(render["peak_rss_mb"], 1),
        f"peak_rss_mb_looped_{args.loops}x": round(render_loop["peak_rss_mb"], 1),
        f"frames_looped_{args.loops}x": render_loop["frames"],
    }, indent=2))


if __name__ == "__main__":
    main()
