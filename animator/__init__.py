"""animator: change facial expressions in video and photos from Action Unit targets."""

__version__ = "0.1.0"
