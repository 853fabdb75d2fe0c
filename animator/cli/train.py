"""``animator train DATA --out RUN``: train a GANimation generator (paper defaults)."""

from __future__ import annotations

import click

# (TrainConfig field, click type, help). Defaults live in TrainConfig; options left out keep
# them (or, with --resume, the run's saved values).
OPTIONS: tuple[tuple[str, object, str], ...] = (
    ("image_size", int, "Face size the networks work at [128]."),
    ("g_conv_dim", int, "Generator width (channels of its first layer) [64]."),
    ("g_repeat_num", int, "Generator residual blocks [6]."),
    ("d_conv_dim", int, "Critic width [64]."),
    ("d_repeat_num", int, "Critic stride-2 layers; image size must be a multiple of 2**this [6]."),
    ("batch_size", int, "Global batch (split over torchrun processes) [25]."),
    ("lr_g", float, "Generator learning rate (Adam) [1e-4]."),
    ("lr_d", float, "Critic learning rate (Adam) [1e-4]."),
    ("beta1", float, "Adam beta1 [0.5]."),
    ("beta2", float, "Adam beta2 [0.999]."),
    ("critic_steps", int, "Critic steps per generator step [5]."),
    ("epochs", int, "Epochs at the constant learning rate [20]."),
    ("decay_epochs", int, "Epochs of linear decay to zero after those [10]."),
    ("steps", int, "Total iterations (batches) instead of epochs; the decay takes the same share "
                   "of them as decay-epochs of all epochs."),
    ("lambda_adv", float, "Weight of the Wasserstein terms [1]."),
    ("lambda_gp", float, "Gradient penalty weight [10]."),
    ("lambda_au", float, "AU regression weight, divided by the batch size [4000 -> 160 at 25]."),
    ("lambda_cyc", float, "Cycle (reconstruction) L1 weight [10]."),
    ("lambda_mask", float, "Attention mean weight [0.1]."),
    ("lambda_tv", float, "Attention total-variation weight (summed, as the official code) [1e-5]."),
    ("distill_from", click.Path(exists=True, resolve_path=True),
     "Distil this generator (model folder or checkpoint): its A and C become targets too."),
    ("lambda_distill", float, "Weight of the L1 to the teacher's A and C, with --distill-from [10]."),
    ("target_noise", float, "Noise half-width added to target AUs, /5 scale [0.1 = 0.5 AU]."),
    ("seed", int, "Random seed [0]."),
    ("motion", click.Choice(["none", "rig"]), "What the generator sees: the crop (none, the paper) "
                                              "or the crop warped towards the target by the set's "
                                              "AU rig, as the renderer's motion stage does (rig) [none]."),
    ("init_from", str, "Warm-start the generator from a model folder or file ('default': the "
                       "shipped model)."),
    ("cache_limit_gb", float, "Largest decoded set kept in memory, GB [16]."),
    ("workers", int, "DataLoader workers when the set is streamed from disk [4]."),
    ("log_every", int, "Write a metrics row every N iterations [50]."),
    ("sample_every", int, "Write a sample grid every N iterations [1000]."),
    ("eval_every", int, "Held-out metrics every N iterations [1000]."),
    ("eval_images", int, "Held-out faces used for metrics [500]."),
    ("checkpoint_minutes", float, "Save a resumable checkpoint every N minutes [15]."),
    ("max_minutes", float, "Wall-clock budget: checkpoint, export and stop before it runs out."),
)


def _options(function):
    for name, kind, help_ in reversed(OPTIONS):
        function = click.option(f"--{name.replace('_', '-')}", name, type=kind, default=None,
                                help=help_)(function)
    return function


@click.command("train")
@click.argument("data", type=click.Path(file_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(), help="Run folder.")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.")
@click.option("--overwrite", is_flag=True, help="Start again in an existing run folder.")
@click.option("--device", default="auto", type=click.Choice(["auto", "cpu", "cuda", "mps"]),
              show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16"]), default=None,
              help="bf16 autocast (auto: on CUDA GPUs).")
@click.option("--cache", type=click.Choice(["auto", "memory", "device", "none"]), default=None,
              help="Where decoded faces live: GPU memory, host memory, or streamed from disk.")
@click.option("--flip/--no-flip", default=None, help="Random horizontal flips [on].")
@click.option("--balance/--no-balance", default=None,
              help="Draw faces and target AUs by how rare their AU intensities are [off].")
@click.option("--channels-last/--no-channels-last", default=None, help="NHWC layout on GPU [on].")
@click.option("--compile", "compile_", is_flag=True, default=None,
              help="torch.compile the generator (slow start, faster steps).")
@click.option("--stop-at", type=int, default=None,
              help="Stop after this iteration (checkpoint + export) without changing the "
                   "schedule; continue later with --resume.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar or log lines.")
@_options
def command(data: str, out: str, resume: bool, overwrite: bool, device: str, precision: str | None,
            cache: str | None, flip: bool | None, balance: bool | None, channels_last: bool | None,
            compile_: bool | None, stop_at: int | None, quiet: bool, **options) -> None:
    """Train a GANimation generator on DATA (made by `animator prepare`, or any set in
    GANimation's layout). RUN/generator is ready for `animator render --checkpoint`.

    Several GPUs: torchrun --nproc-per-node N -m animator.train DATA --out RUN [options]
    """
    from pipelines.train import run
    from animator.train.loop import RunControl

    options.update(precision=precision, cache=cache, flip=flip, balance=balance, channels_last=channels_last,
                   compile=compile_ or None)
    log = (lambda line: None) if quiet else (lambda line: click.echo(line, err=True))
    summary = run(data, out, options, RunControl(resume=resume, overwrite=overwrite, device=device,
                                                 stop_at=stop_at, quiet=quiet), log=log)
    if summary and not quiet:
        click.echo(f"{summary['generator']}")
