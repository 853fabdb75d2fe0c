"""The ``animator`` command. Each subcommand lives in its own module and is imported only
when it runs, so ``animator --help`` stays fast (no torch import)."""

from __future__ import annotations

import contextlib
import importlib
import signal
import sys

import click

from animator import __version__
from animator.errors import AnimatorError

# name -> (module in animator.cli, one-line help shown by `animator --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "aus": ("aus", "List the 17 Action Units, the intensity scale and the presets."),
    "keys": ("keys", "Sample a keyframe file: print/write the AU table, plot the curves."),
    "faces": ("faces", "Detect and track faces; report them as JSON and draw a preview."),
    "render": ("render", "Change the expression in a video from AU keyframes."),
    "morph": ("morph", "Animate one photo from one AU target to another."),
    "estimate": ("estimate", "Estimate AU intensities per frame or image (OpenFace CSV)."),
    "prepare": ("prepare", "Build a GANimation training set from photos and videos."),
    "train": ("train", "Train a GANimation generator."),
    "convert": ("convert", "Convert a GANimation checkpoint into animator's format."),
}


# Ended like Ctrl-C (outputs clean up their temporary files) instead of dying on the spot.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Stopped(BaseException):
    """A stop signal arrived. A BaseException, as KeyboardInterrupt: ``except Exception``
    must not swallow it, while ``finally`` blocks and context managers still run."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _stop(signum: int, frame) -> None:
    for each in STOP_SIGNALS:  # a second signal must not cut the cleanup short
        signal.signal(each, signal.SIG_IGN)
    raise Stopped(signum)


class LazyGroup(click.Group):
    """Imports a subcommand's module only when that subcommand is invoked."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module = importlib.import_module(f"animator.cli.{COMMANDS[name][0]}")
        return getattr(module, "command")

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, help_) in COMMANDS.items()])

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except AnimatorError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="animator")
def cli() -> None:
    """Change facial expressions in videos and photos from Facial Action Unit (AU) targets."""


def main() -> None:
    """The console script: every error, usage errors included, is one line on stderr.
    SIGTERM and SIGHUP stop it as Ctrl-C does; the exit status is then 128 + the signal."""
    for each in STOP_SIGNALS:
        if signal.getsignal(each) == signal.SIG_DFL:  # nohup's SIG_IGN stays
            signal.signal(each, _stop)
    try:
        code = cli.main(standalone_mode=False)
    except Stopped as exc:
        with contextlib.suppress(OSError):  # after SIGHUP the terminal may be gone
            click.echo(f"Error: stopped by {signal.Signals(exc.signum).name} "
                       "(unfinished outputs removed)", err=True)
        sys.exit(128 + exc.signum)
    except click.exceptions.NoArgsIsHelpError as exc:  # bare `animator`: the help, not an error
        click.echo(exc.format_message())
        sys.exit(0)
    except click.UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "animator"
        click.echo(f"Error: {exc.format_message()} (see '{where} --help')", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort:
        click.echo("Aborted!", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
