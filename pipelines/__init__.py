"""Staged jobs that compose the library: render, morph, prepare, train, estimate."""
