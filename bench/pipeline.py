"""Benchmark the render pipeline on one clip; prints one JSON object.

    python bench/pipeline.py [CLIP] [--model full|fast | --checkpoint PATH] [--loops 6]

For the clip and for the clip looped ``--loops`` times (remuxed, so a 72-frame clip becomes a
432-frame one where start-up weighs less), in one run:

- ``end_to_end_fps``: ``animator render``'s work (model load, pass 1: decode + track,
  pass 2: decode -> crop -> generate -> composite -> encode) per frame;
  ``pass1_fps`` and ``pass2_fps``: the two passes alone;
- ``transcode_fps``: decode + encode of the same clip with the same encoder settings and
  nothing else, and ``slowdown_vs_transcode`` = transcode_fps / end_to_end_fps;
- ``time_to_first_frame_s``: from the measuring process's start (imports included) to the
  first frame handed to the encoder; ``peak_rss_mb`` (flat memory: clip and looped close);
- ``pass2_per_frame``: wall and CPU ms per frame inside each stage of pass 2 (decode, crop,
  generator, composite, encode: the stages overlap on threads, so wall times do not add up)
  and the whole process's CPU ms per frame in set-up (model loading), pass 1 and pass 2
  (every thread, the encoder's included): what two idle cores would need at least;
- the generator alone on the clip's own crops (faces/s), and the CPU model and its bf16/AMX
  flags, since every figure depends on them.

Every measurement runs in its own subprocess, so start-up and peak RSS are its own. Timings
are wall-clock: on a shared machine, run it more than once and take the best.
"""

from __future__ import annotations

import time

STARTED = time.perf_counter()  # before the heavy imports: time to first frame counts them

import argparse  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = REPO.parent / "shared" / "media" / "single_face.mp4"
KEYS = {"version": 1, "keys": [{"time": 0, "preset": "neutral"},
                               {"time": 1.0, "preset": "happy"},
                               {"time": 2.0, "preset": "surprise"}]}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


class StageClock:
    """Wall and CPU seconds (of the calling thread) spent inside wrapped calls, per stage. The
    generator computes on its own worker threads: ``generator`` is the wait for a batch on the
    stage's thread, ``generator_batches`` the workers' parts (wall and CPU summed over them)."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = {}

    def wrap(self, stage: str, function):
        def timed(*args, **kwargs):
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.add(stage, time.perf_counter() - wall, time.thread_time() - cpu)
        return timed

    def wrap_iterator(self, stage: str, iterator):
        """Time each step of ``iterator`` (a decoder yielding frames); closes it when done."""
        with contextlib.closing(iterator):
            while True:
                wall, cpu = time.perf_counter(), time.thread_time()
                try:
                    item = next(iterator)
                except StopIteration:
                    return
                finally:
                    self.add(stage, time.perf_counter() - wall, time.thread_time() - cpu)
                yield item

    def add(self, stage: str, wall: float, cpu: float) -> None:
        total = self.seconds.setdefault(stage, [0.0, 0.0])
        total[0] += wall
        total[1] += cpu

    def per_frame_ms(self, frames: int) -> dict[str, dict[str, float]]:
        return {stage: {"wall_ms": round(1000 * wall / frames, 2), "cpu_ms": round(1000 * cpu / frames, 2)}
                for stage, (wall, cpu) in self.seconds.items()}


def process_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_render(clip: Path, model: Path | None, device: str, batch_size: int, motion: str | None,
                   work: Path, workers: int | None = None) -> dict:
    """One render, with the second pass's stages timed: decode, crop, generator, composite
    (each on its own thread) and encode (RGB -> YUV and handing the frame to the encoder on
    the main thread; x264's own threads show only in the process's CPU time)."""
    import animator.faces.align as align
    import pipelines.render as render_module
    from pipelines.render import RenderOptions, render

    first_frame: list[float] = []
    clock = StageClock()
    pass_cpu: list[float] = [process_cpu_s()]  # at the start, then as each pass starts decoding
    decoders = iter(("pass1_decode", "decode"))

    class TimedWriter(render_module.VideoWriter):
        def write(self, *args, **kwargs) -> None:
            if not first_frame:
                first_frame.append(time.perf_counter() - STARTED)
            super().write(*args, **kwargs)

    def timed_frames(*args, **kwargs):
        pass_cpu.append(process_cpu_s())
        return clock.wrap_iterator(next(decoders), iter_frames(*args, **kwargs))

    iter_frames = render_module.iter_frames
    render_module.iter_frames = timed_frames
    TimedWriter.write = clock.wrap("encode", TimedWriter.write)
    render_module.VideoWriter = TimedWriter
    align.warp_crop = clock.wrap("crop", align.warp_crop)
    render_module.edit_faces = clock.wrap("generator", render_module.edit_faces)
    render_module.composite_faces = clock.wrap("composite", render_module.composite_faces)
    load_editor = render_module._load_editor

    def timed_editor(path, device, batch):  # torch is imported here, inside the render's time
        from animator.model.inference import FaceEditor

        editor = (load_editor(path, device, batch) if workers is None else
                  FaceEditor.from_checkpoint(path, device=device, batch_size=batch, workers=workers))
        editor._batch = clock.wrap("generator_batches", editor._batch)  # on its worker threads
        return editor

    render_module._load_editor = timed_editor
    keys = work / "keys.json"
    keys.write_text(json.dumps(KEYS))
    began = time.perf_counter()
    summary = render(RenderOptions(video=clip, keyframes=keys, out=work / f"out-{clip.stem}.mp4",
                                   checkpoint=model, device=device, batch_size=batch_size,
                                   motion=motion, quiet=True, overwrite=True))
    seconds = time.perf_counter() - began
    stages = clock.per_frame_ms(summary.frames)
    stages.pop("pass1_decode", None)
    pass_cpu.append(process_cpu_s())
    for name, (start, stop) in zip(("setup", "pass1", "pass2"), zip(pass_cpu, pass_cpu[1:])):
        stages[f"{name}_process_cpu_ms"] = round(1000 * (stop - start) / summary.frames, 2)
    return {"frames": summary.frames, "faces": summary.faces_edited, "seconds": seconds,
            "timings": summary.timings, "time_to_first_frame_s": first_frame[0],
            "peak_rss_mb": peak_rss_mb(), "pass2_stages": stages}


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


def measure_generator(clip: Path, model: Path | None, device: str, batch_size: int) -> dict:
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
    from animator.model.inference import device_name

    return {"faces": len(crops), "seconds": seconds, "fps": len(crops) / seconds,
            "device": str(editor.device), "device_name": device_name(editor.device),
            "precision": editor.precision, "threads": __import__("torch").get_num_threads(),
            "parameters": sum(p.numel() for p in editor.generator.parameters())}


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


def cpu_facts() -> dict:
    """/proc/cpuinfo's model name, family/model numbers and the flags that decide the speed."""
    facts: dict = {"logical_cpus": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return facts
    first = dict(line.split(":", 1) for line in text.split("\n\n")[0].splitlines() if ":" in line)
    first = {k.strip(): v.strip() for k, v in first.items()}
    flags = set(first.get("flags", "").split())
    facts.update({"model_name": first.get("model name"), "family": first.get("cpu family"),
                  "model": first.get("model"),
                  "flags": sorted(flags & {"avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile",
                                           "amx_bf16"})})
    return facts


def child(args: argparse.Namespace) -> None:
    work = Path(args.work)
    if args.measure == "render":
        result = measure_render(Path(args.clip), args.checkpoint, args.device, args.batch_size, args.motion,
                                work, args.workers)
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
    if args.motion is not None:
        command += ["--motion", args.motion]
    if args.workers is not None:
        command += ["--workers", str(args.workers)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    if done.returncode:
        raise SystemExit(f"bench {measure} failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def clip_report(clip: Path, args: argparse.Namespace, work: Path, model: Path | None) -> dict:
    codec = run_child("codec", clip, args, work, model)
    render = run_child("render", clip, args, work, model)
    t = render["timings"]
    total = t["setup"] + t["tracking"] + t["rendering"]
    end_to_end = render["frames"] / total
    return {"clip": str(clip), "frames": render["frames"], "faces": render["faces"],
            "end_to_end_fps": round(end_to_end, 2),
            "pass1_fps": round(render["frames"] / t["tracking"], 2),
            "pass2_fps": round(render["frames"] / t["rendering"], 2),
            "transcode_fps": round(codec["fps"], 2),
            "slowdown_vs_transcode": round(codec["fps"] / end_to_end, 2),
            "setup_s": round(t["setup"], 3),
            "time_to_first_frame_s": round(render["time_to_first_frame_s"], 3),
            "peak_rss_mb": round(render["peak_rss_mb"], 1),
            "pass2_per_frame": render["pass2_stages"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("clip", nargs="?", default=str(DEFAULT_CLIP))
    parser.add_argument("--model", choices=("full", "fast"), help="a shipped generator")
    parser.add_argument("--checkpoint", type=Path, help="any generator (default: the shipped full one)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--loops", type=int, default=6)
    parser.add_argument("--motion", choices=("warp", "warp+generator", "none"),
                        help="render's --motion (default: the model config's, warp for the shipped model)")
    parser.add_argument("--workers", type=int,
                        help="generator batches run at once (default: FaceEditor's, one per CPU thread)")
    parser.add_argument("--measure", choices=("render", "codec", "generator"), help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    if args.measure:
        child(args)
        return
    from animator.cli.options import model_checkpoint
    from animator.errors import AnimatorError

    clip = Path(args.clip)
    if not clip.is_file():
        raise SystemExit(f"{clip}: no such clip")
    try:
        model = model_checkpoint(args.model, args.checkpoint)
    except AnimatorError as exc:
        raise SystemExit(str(exc)) from None
    with tempfile.TemporaryDirectory(prefix="animator-bench-") as tmp:
        work = Path(tmp)
        weights = str(model) if model else "full (shipped default)"
        if model is None and not has_default_model():
            model, weights = random_model(work), "random-init full size (no default model shipped)"
        looped = loop_clip(clip, work / f"looped{args.loops}x.mp4", args.loops)
        generator = run_child("generator", clip, args, work, model)
        clips = [clip_report(c, args, work, model) for c in (clip, looped)]
    print(json.dumps({
        "cpu": cpu_facts(), "device": generator["device"], "device_name": generator["device_name"],
        "threads": generator["threads"], "weights": weights, "parameters": generator["parameters"],
        "precision": generator["precision"], "batch_size": args.batch_size,
        "motion": args.motion or "model default",
        "generator_faces_per_s": round(generator["fps"], 2),
        "clip": clips[0], f"looped_{args.loops}x": clips[1]}, indent=2))


if __name__ == "__main__":
    main()
