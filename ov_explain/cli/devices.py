"""``ov-explain devices``: what OpenVINO sees and what AUTO would choose."""

from __future__ import annotations

import json

import click

from ov_explain.cli.app import fail, main, openvino_core
from ov_explain.core.devices import (
    DEFAULT_PRIORITY,
    auto_choice,
    default_cache_dir,
    discover,
)
from ov_explain.core.errors import OvExplainError


# ----- devices --------------------------------------------------------------------------------------
@main.command(short_help="List the devices, their precisions, and what AUTO would pick.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--priority", default=",".join(DEFAULT_PRIORITY), show_default=True,
              help="AUTO policy order to evaluate.")
def devices(as_json: bool, priority: str) -> None:
    """List OpenVINO devices, their capabilities, and what AUTO would pick."""
    core = openvino_core()
    found = discover(core)
    order = tuple(p.strip().upper() for p in priority.split(",") if p.strip())
    if not order:
        fail(f"--priority {priority!r}: expected device names such as NPU,GPU,CPU")
    try:
        choice = auto_choice(core, order)
    except OvExplainError as exc:
        fail(f"--priority {priority}: {exc}")
    cache = default_cache_dir()
    if as_json:
        click.echo(json.dumps({"devices": [d.to_dict() for d in found], "auto_priority": list(order),
                               "auto_choice": choice, "cache_dir": str(cache) if cache else None}, indent=2))
        return
    for device in found:
        mark = "*" if device.name == choice else " "
        click.echo(f"{mark} {device.name:8s} {device.full_name}")
        if device.capabilities:
            click.echo(f"  {'':8s} capabilities: {', '.join(device.capabilities)}")
        if device.precisions or device.default_precision:
            click.echo(f"  {'':8s} precision: {device.default_precision or 'unknown'} by default; offers "
                       f"{', '.join(device.precisions) or 'unknown'}")
        arch = device.properties.get("DEVICE_ARCHITECTURE")
        if arch:
            click.echo(f"  {'':8s} architecture: {arch}")
    click.echo(f"AUTO ({','.join(order)}) picks: {choice or 'nothing available'}")
    click.echo(f"compiled-model cache: {cache or 'off'}")
