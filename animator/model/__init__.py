"""The GANimation networks, their checkpoints (own format and importers) and batched inference.

Import submodules directly (``animator.model.inference`` etc.); this package only re-exports
the networks so that ``import animator.model`` stays light.
"""

from animator.model.critic import Critic, CriticConfig
from animator.model.generator import Generator, GeneratorConfig, compose

__all__ = ["Critic", "CriticConfig", "Generator", "GeneratorConfig", "compose"]
