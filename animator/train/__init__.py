"""Training GANimation generators: the data layout, the objective and the loop.

``animator prepare`` (pipelines/prepare.py) builds a data set; ``animator train``
(pipelines/train.py) runs :func:`animator.train.loop.train` on it.
"""

from animator.train.config import TrainConfig

__all__ = ["TrainConfig"]
