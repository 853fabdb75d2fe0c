"""Train the spectacle-rim net on synthetic glasses; measure it on real ones. Prints JSON.

    python -m pipelines.train_rims --utkface UTKFace-aligned-200.tar -o rim_net.safetensors
                                   [--labels pipelines/utkface_glasses.json] [--steps 2000]

The photos of ``--labels`` (UTKFace names labelled by eye: with clear glasses, without, left
out) are cut to eye-region crops (:func:`animator.motion.rims.eye_region`, on the landmarks
found on each photo, upscaled as :mod:`pipelines.motion_eval` does). A fixed draw of
:data:`TRAIN_SHARE` of the photos without glasses is the training set: random spectacles are
drawn over them (:mod:`animator.train.spectacles`), and shown bare too, so the net learns
rims, not faces. No real glasses are ever trained on: every photo with glasses and the other
photos without are held out, and the report says, at the shipped thresholds
(:data:`animator.motion.rims.GLASSES_FROM`, ``EACH_LENS_FROM``), how many real glasses are
found and how many bare faces are taken for glasses (with their names), and the ROC area of the rim share.
About 15 minutes on 2 cores for 2000 steps. ``--evaluate WEIGHTS`` measures a trained net on
every photo of ``--labels`` instead (``pipelines/utkface_glasses_2.json``: a second sample,
none of it trained on).

    python -m pipelines.train_rims --utkface UTKFace-aligned-200.tar --evaluate
           animator/assets/rim_net.safetensors --labels pipelines/utkface_glasses_2.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from animator.errors import AnimatorError
from animator.motion.rims import (CROP_H, CROP_W, EACH_LENS_FROM, GLASSES_FROM, RIM_FROM, RimFinder, eye_crop,
                                  rims_of)
from animator.outputs import atomic_output
from pipelines import print_report

LABELS = Path(__file__).resolve().with_name("utkface_glasses.json")
TRAIN_SHARE = 0.7     # of the photos without glasses, drawn once with SPLIT_SEED
SPLIT_SEED = 1
WEARING = 0.7         # share of training pictures that wear synthetic spectacles
RIM_WEIGHT = 3.0      # rim pixels weigh this much more in the loss (they are few)


def labelled_crops(tar_path: Path, labels: dict) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(names, crops (N, CROP_H, CROP_W, 3) uint8, glasses (N,) bool) of the labelled photos on
    which a face is found."""
    from animator.faces.detect import FaceDetector  # noqa: PLC0415
    from animator.faces.landmarks import MeshLandmarker  # noqa: PLC0415
    from pipelines.motion_eval import open_utkface, read_mesh, utk_photo  # noqa: PLC0415

    detector, landmarker = FaceDetector(), MeshLandmarker()
    wanted = {name: True for name in labels["glasses"]} | {name: False for name in labels["no_glasses"]}
    names, crops, glasses = [], [], []
    with open_utkface(tar_path) as tar:
        for name in sorted(wanted):
            try:
                image = utk_photo(tar, name)
            except KeyError as error:
                raise AnimatorError(f"{tar_path}: has no {name} ({error})") from error
            mesh = read_mesh(image, detector, landmarker)
            if mesh is None:
                continue
            names.append(name)
            crops.append(eye_crop(image, mesh))
            glasses.append(wanted[name])
    return names, np.stack(crops), np.array(glasses)


def read_labels(path: Path) -> dict:
    """A labels file: ``{"glasses": [names], "no_glasses": [names], ...}`` (UTKFace member names)."""
    try:
        labels = json.loads(Path(path).read_text())
        if not all(isinstance(labels.get(k), list) for k in ("glasses", "no_glasses")):
            raise ValueError("lists 'glasses' and 'no_glasses' are expected")
    except (OSError, ValueError) as error:
        raise AnimatorError(f"{path}: not a glasses labels file ({error})") from error
    return labels


def train(faces: np.ndarray, steps: int, batch: int, seed: int) -> torch.nn.Module:
    """The rim net trained ``steps`` steps on ``faces`` (crops without glasses) wearing
    synthetic spectacles (or not)."""
    from animator.model.rim_net import RimNet, as_input  # noqa: PLC0415
    from animator.train.spectacles import jitter, wear_spectacles  # noqa: PLC0415

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = RimNet()
    optimiser = torch.optim.AdamW(net.parameters(), 2e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 2e-3, total_steps=steps, pct_start=0.1)
    started = time.time()
    for step in range(steps):
        pictures, covers = [], []
        for _ in range(batch):
            face = faces[rng.integers(len(faces))]
            if rng.random() < WEARING:
                picture, cover = wear_spectacles(face, rng)
            else:
                picture, cover = face, np.zeros((CROP_H, CROP_W), np.float32)
            picture, cover = jitter(picture, cover, rng)
            pictures.append(picture)
            covers.append(np.ascontiguousarray(cover))
        logits = net(as_input(np.stack(pictures)))
        loss = F.binary_cross_entropy_with_logits(logits, torch.from_numpy(np.stack(covers)),
                                                  pos_weight=torch.tensor(RIM_WEIGHT))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
        if step % 200 == 0:
            print(f"step {step}: loss {loss.item():.4f} ({time.time() - started:.0f} s)", file=sys.stderr)
    return net.eval()


def held_out_report(net: torch.nn.Module, names: list[str], crops: np.ndarray, glasses: np.ndarray) -> dict:
    """How the net does on real photos it never saw: glasses found, bare faces taken for glasses."""
    finder = RimFinder(net)
    probabilities = [finder.probabilities(crop) for crop in crops]
    shares = np.array([float((p >= RIM_FROM).mean()) for p in probabilities])
    found = np.array([rims_of(p) is not None for p in probabilities])
    positive, negative = shares[glasses], shares[~glasses]
    auc = float(np.mean(positive[:, None] > negative[None]) + 0.5 * np.mean(positive[:, None] == negative[None]))
    return {"glasses": int(glasses.sum()), "without": int((~glasses).sum()),
            "glasses_found": round(float(found[glasses].mean()), 3),
            "taken_for_glasses": [n for n, f, g in zip(names, found, glasses) if f and not g],
            "rim_share_roc_auc": round(auc, 3), "glasses_from": GLASSES_FROM, "each_lens_from": EACH_LENS_FROM,
            "missed": [n for n, f, g in zip(names, found, glasses) if g and not f]}


def measure(args: argparse.Namespace) -> dict:
    from animator.model.rim_net import load_rim_net, save_rim_net  # noqa: PLC0415

    labels = read_labels(args.labels)
    names, crops, glasses = labelled_crops(args.utkface, labels)
    if args.evaluate:
        return {"weights": str(args.evaluate), "labels": Path(args.labels).name,
                "held_out": held_out_report(load_rim_net(args.evaluate), names, crops, glasses)}
    bare = np.flatnonzero(~glasses)
    order = np.random.default_rng(SPLIT_SEED).permutation(bare)
    trained_on = np.sort(order[: round(TRAIN_SHARE * len(bare))])
    held = np.setdiff1d(np.arange(len(names)), trained_on)
    net = train(crops[trained_on], args.steps, args.batch, args.seed)
    report = {"trained_on": f"{len(trained_on)} UTKFace photos without glasses ({Path(args.labels).name}), "
                            f"wearing synthetic spectacles (animator.train.spectacles) in {WEARING:.0%} of "
                            f"pictures; {args.steps} steps of {args.batch}, seed {args.seed}",
              "license": "UTKFace: non-commercial research use only; these weights were trained on it",
              "held_out": held_out_report(net, [names[i] for i in held], crops[held], glasses[held])}
    with atomic_output(args.out, [args.utkface], args.overwrite) as tmp:
        save_rim_net(net, tmp, report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--utkface", type=Path, required=True)
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("-o", "--out", type=Path, help="Where the trained weights go.")
    parser.add_argument("--evaluate", type=Path,
                        help="Measure these weights on all the labelled photos; no training.")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    if (args.out is None) == (args.evaluate is None):
        parser.error("give -o/--out (train) or --evaluate WEIGHTS (measure), not both")
    return print_report(lambda: measure(args))


if __name__ == "__main__":
    sys.exit(main())
