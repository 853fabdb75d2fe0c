"""``animator convert``: any supported GANimation checkpoint -> animator's model folder."""

from __future__ import annotations

from pathlib import Path

import click

from animator.outputs import MARKER, check_output


@click.command("convert")
@click.argument("checkpoint", type=click.Path(path_type=Path))
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path),
              help="Model folder to write (or a .safetensors file with the config embedded).")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists.")
@click.option("--max-shard-mb", type=click.FloatRange(min=0.001), default=15.0, show_default=True,
              help="Split the weights into safetensors shards of at most this many MB (10^6 bytes).")
def command(checkpoint: Path, output: Path, overwrite: bool, max_shard_mb: float) -> None:
    """Convert CHECKPOINT into animator's format (config.json + safetensors).

    CHECKPOINT: an official GANimation net_epoch_N_id_G.pth, a ganimation_replicate
    N_net_gen.pth, a vipermu/ganimation N-M-G.ckpt, or an animator model (folder or file).
    """
    from animator.model.checkpoint import load_generator, save_generator

    check_output(output, [checkpoint], overwrite, directory=output.suffix != ".safetensors")
    generator, config = load_generator(checkpoint)
    save_generator(generator, config, output, int(max_shard_mb * 1_000_000), overwrite=overwrite,
                   inputs=(checkpoint,))
    g = config.generator
    files = (sorted(p.name for p in output.iterdir() if p.name != MARKER) if output.is_dir()
             else [output.name])
    source = config.provenance.get("source_format", "animator")
    click.echo(f"{output}: {source} generator ({g.n_aus} AUs, conv_dim {g.conv_dim}, "
               f"{g.repeat_num} residual blocks) written as {', '.join(files)}")
