"""x264 speed presets on real clips: encode cost, file size and PSNR against the source frames.

    python bench/encode.py [CLIP ...] [--presets veryfast,faster,medium] [--crf 18] [--repeats 3]

Decodes each clip once, then encodes its frames with each preset through animator's own
``VideoWriter`` (the render path: RGB -> YUV conversion, audio copied), ``--repeats`` times;
reports the minimum wall time and the minimum CPU time (``time.process_time``, all threads:
the cost that competes with the generator on a small CPU), the output size and the PSNR of the
decoded output against the decoded source (luma+chroma, via RGB). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIPS = [REPO.parent / "shared" / "media" / "single_face.mp4"]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def measure(clip: Path, presets: list[str], crf: int, repeats: int, work: Path) -> dict:
    from animator.media.decode import iter_frames, probe
    from animator.media.encode import EncodeOptions, VideoWriter

    info = probe(clip)
    frames = list(iter_frames(clip))
    rows = []
    for preset in presets:
        out = work / f"{clip.stem}-{preset}.mp4"
        walls, cpus = [], []
        for _ in range(repeats):
            out.unlink(missing_ok=True)
            wall, cpu = time.perf_counter(), time.process_time()
            with VideoWriter(out, info, EncodeOptions(crf=crf, preset=preset)) as writer:
                for frame in frames:
                    writer.write(frame.rgb, frame.pts, frame.duration)
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        decoded = [f.rgb for f in iter_frames(out)]
        rows.append({"preset": preset, "bytes": out.stat().st_size,
                     "kbit_per_s": round(out.stat().st_size * 8 / 1000 / info.duration, 1),
                     "psnr_db": round(float(np.mean([psnr(a.rgb, b) for a, b in zip(frames, decoded)])), 2),
                     "wall_ms_per_frame": round(1000 * min(walls) / len(frames), 2),
                     "cpu_ms_per_frame": round(1000 * min(cpus) / len(frames), 2)})
    return {"clip": str(clip), "frames": len(frames), "size": f"{info.width}x{info.height}",
            "crf": crf, "presets": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("clips", nargs="*", type=Path, default=DEFAULT_CLIPS)
    parser.add_argument("--presets", default="veryfast,faster,medium")
    parser.add_argument("--crf", type=int, default=18)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="animator-bench-encode-") as tmp:
        results = [measure(clip, args.presets.split(","), args.crf, args.repeats, Path(tmp))
                   for clip in args.clips]
    print(json.dumps({"results": results}, indent=2))


if __name__ == "__main__":
    main()
