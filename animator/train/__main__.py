"""``python -m animator.train DATA --out RUN [options]`` = ``animator train``; the form to give
``torchrun`` (``torchrun --nproc-per-node 4 -m animator.train DATA --out RUN``)."""

from animator.cli.train import command

if __name__ == "__main__":
    command(prog_name="animator train")
