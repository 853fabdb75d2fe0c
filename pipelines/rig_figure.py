"""Draw the AU rig: one panel per AU, the template's landmarks before (grey) and after (red)
the AU at intensity 3, with the moved points joined to where they came from.

    python -m pipelines.rig_figure [--rig RIG.json] -o docs/images/au_rig.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from animator.aus import AU_NAMES, FACS_NAMES
from animator.errors import AnimatorError
from animator.motion.rig import RIG_PATH, AURig
from animator.outputs import atomic_output

INTENSITY = 3.0
COLUMNS = 6


def draw(rig: AURig, out: Path, overwrite: bool) -> None:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib.collections import LineCollection  # noqa: PLC0415

    rows = -(-len(AU_NAMES) // COLUMNS)
    fig, axes = plt.subplots(rows, COLUMNS, figsize=(2.2 * COLUMNS, 2.6 * rows))
    before = rig.template
    for ax, (k, name) in zip(axes.flat, enumerate(AU_NAMES)):
        delta = np.zeros(len(AU_NAMES))
        delta[k] = INTENSITY
        after = rig.displace(before, delta)  # the template is the face frame: as a face moves
        moved = np.linalg.norm(after - before, axis=1) > 1e-3
        ax.scatter(before[:, 0], before[:, 1], s=1, c="0.7", linewidths=0)
        ax.scatter(after[moved, 0], after[moved, 1], s=1.5, c="crimson", linewidths=0)
        ax.add_collection(LineCollection(np.stack([before[moved, :2], after[moved, :2]], 1),
                                         colors="crimson", linewidths=0.4))
        ax.set_title(f"{name} {FACS_NAMES[name]}", fontsize=8)
        ax.set_xlim(-1.25, 1.25)
        ax.set_ylim(2.0, -1.0)
        ax.set_aspect("equal")
        ax.axis("off")
    for ax in axes.flat[len(AU_NAMES):]:
        ax.axis("off")
    fig.suptitle(f"AU rig: landmarks at rest (grey) and at intensity {INTENSITY:g} (red)", fontsize=10)
    fig.tight_layout()
    with atomic_output(out, [], overwrite) as tmp:
        fig.savefig(tmp, dpi=110, format=out.suffix.lstrip(".") or "png")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rig", type=Path, default=RIG_PATH)
    parser.add_argument("-o", "--out", type=Path, required=True)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args(argv)
    try:
        draw(AURig.from_file(args.rig), args.out, args.overwrite)
    except AnimatorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
