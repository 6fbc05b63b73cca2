"""What every run folder records about how it was made: resolved config, versions, git commit."""

from __future__ import annotations

import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from nas.base import __version__

# The arguments `nas.commands.cli.main` was given, for the records runs keep. The command line
# sets it (a layer above); it lives here so this bottom layer need not import the command line.
INVOCATION: list[str] | None = None


def git_commit() -> str | None:
    checkout = Path(__file__).resolve().parents[2]  # nas/<layer>/this file -> the checkout
    try:
        out = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    text = f"{platform.system()} {cpu}, {torch.get_num_threads()} torch threads"
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(0)}"
    return text


def command_line() -> str:
    """The `nas` command this process runs (as `nas.commands.cli.main` was given it), for a run's records."""
    argv = INVOCATION if INVOCATION is not None else sys.argv[1:]
    return shlex.join(["nas", *argv])


def provenance(**extra) -> dict:
    return {
        "package_version": __version__,
        "command": command_line(),
        "git_commit": git_commit(),
        "torch": torch.__version__,
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        **extra,
    }


def tensorboard_writer(folder):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(folder))
