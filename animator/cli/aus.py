"""``animator aus``: the AU vocabulary a user writes targets and keyframes in."""

from __future__ import annotations

import json

import click

from animator import aus


@click.command("aus")
@click.option("--json", "as_json", is_flag=True, help="Print the table and presets as JSON.")
@click.option("--target", help="Show the vector a target spec resolves to, e.g. 'happy*0.5,AU25=2'.")
def command(as_json: bool, target: str | None) -> None:
    """List the 17 Action Units (GANimation's order), the 0-5 scale and the presets."""
    if target is not None:
        click.echo(json.dumps(aus.vector_to_dict(aus.parse_target(target)), indent=2))
        return
    if as_json:
        table = [{"au": n, "code": c, "name": aus.FACS_NAMES[n]} for n, c in zip(aus.AU_NAMES, aus.AU_CODES)]
        click.echo(json.dumps({"aus": table, "scale": [aus.AU_MIN, aus.AU_MAX],
                               "presets": aus.PRESETS}, indent=2))
        return
    click.echo("Action Units (OpenFace intensity scale 0-5: 0 absent, 1 trace ... 5 maximum)")
    for name in aus.AU_NAMES:
        click.echo(f"  {name}  {aus.FACS_NAMES[name]}")
    click.echo("\nPresets (use as 'happy' or 'happy*0.5'; mix with 'happy,AU25=2')")
    for name, values in aus.PRESETS.items():
        body = ", ".join(f"{k}={v:g}" for k, v in values.items()) or "all AUs 0"
        click.echo(f"  {name:<9} {body}")
