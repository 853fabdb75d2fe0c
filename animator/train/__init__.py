"""Training GANimation generators: the data layout, the objective and the loop.

``animator prepare`` (pipelines/prepare.py) builds a data set; ``animator train``
(pipelines/train.py) runs :func:`animator.train.loop.train` on it. (:mod:`animator.train.spectacles`
draws the synthetic glasses ``pipelines/train_rims.py`` trains the spectacle-rim net on.)
"""

from animator.train.config import TrainConfig

__all__ = ["TrainConfig"]
