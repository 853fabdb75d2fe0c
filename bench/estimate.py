"""Benchmark AU estimation; prints one JSON object.

    python bench/estimate.py [CLIP] [--repeats 3]

Reports ``animator estimate`` end to end on the clip (tracking + estimation + CSV, model
loading excluded; wall and CPU ms per frame, each the minimum over repeats, since the machine
may be shared: CPU time is the steadier of the two under load) and
the per-face cost of each stage: the 478-point landmark model on a 256 px crop, the 468-point
face mesh it replaced (where ``../shared/models/face_mesh`` has it, for comparison), the
blendshape model, and the features + intensities of a whole track at once.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CLIP = REPO / "examples" / "single_face.mp4"
PREVIOUS_MESH = REPO.parent / "shared" / "models" / "face_mesh" / "face_landmark.tflite"


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def best_ms(run, repeats: int, per: int = 1, clock=time.perf_counter) -> float:
    """Minimum time of ``run()`` on ``clock`` over ``repeats`` tries, in ms per item."""
    times = []
    for _ in range(repeats):
        began = clock()
        run()
        times.append(clock() - began)
    return 1000.0 * min(times) / per


def cpu_name() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("clip", nargs="?", type=Path, default=DEFAULT_CLIP)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from animator.estimate import AUEstimator
    from animator.faces.detect import FaceDetector
    from animator.faces.landmarks import MeshLandmarker, mesh_roi
    from animator.faces.track import track_video
    from animator.media.decode import iter_frames
    from pipelines.estimate import EstimateOptions, estimate

    frames = list(iter_frames(args.clip))
    with tempfile.TemporaryDirectory() as work:
        options = EstimateOptions(input=args.clip, output=Path(work) / "aus.csv", overwrite=True, quiet=True)
        estimate(options)  # warm-up: model loading and first-call costs
        end_to_end = best_ms(lambda: estimate(options), args.repeats, len(frames))
        end_to_end_cpu = best_ms(lambda: estimate(options), args.repeats, len(frames), cpu_seconds)

    detector, landmarker, estimator = FaceDetector(), MeshLandmarker(), AUEstimator.default()
    tracks = track_video(frames[:30], detector, landmarker)
    observation = tracks.observations[0]
    rgb = frames[observation.frame_index].rgb
    crop_transform = mesh_roi(observation.mesh)
    meshes = np.stack([o.mesh for o in tracks.observations])
    n = 30
    stages = {
        "landmarks_478": best_ms(lambda: [landmarker.run(rgb, crop_transform) for _ in range(n)], args.repeats, n),
        "blendshapes": best_ms(lambda: [estimator.blendshapes(observation.mesh) for _ in range(n)], args.repeats, n),
        "aus_from_landmarks_batched": best_ms(lambda: estimator.estimate(meshes), args.repeats, len(meshes)),
    }
    if PREVIOUS_MESH.is_file():
        net = cv2.dnn.readNetFromTFLite(str(PREVIOUS_MESH))
        small = crop_transform * (192.0 / 256.0)

        def previous() -> None:
            for _ in range(n):
                crop = cv2.warpAffine(rgb, small, (192, 192), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                net.setInput(cv2.dnn.blobFromImage(crop, 1.0 / 255.0))
                net.forward()

        stages["landmarks_468_previous"] = best_ms(previous, args.repeats, n)
    print(json.dumps({
        "clip": str(args.clip), "frames": len(frames), "repeats": args.repeats, "cpu": cpu_name(),
        "opencv_threads": cv2.getNumThreads(),
        "estimate_end_to_end_ms_per_frame": round(end_to_end, 2),
        "estimate_end_to_end_cpu_ms_per_frame": round(end_to_end_cpu, 2),
        "stage_ms_per_face": {k: round(v, 3) for k, v in stages.items()},
    }, indent=1))


if __name__ == "__main__":
    main()
