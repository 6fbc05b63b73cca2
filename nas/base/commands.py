"""The `nas` commands by name: the one list that the command line, the settings reader and `nas run` read.

It sits in the bottom layer because all three need it and they live in different layers: the
settings reader (`nas/run/config.py`) checks a file's sections against it, `nas run` routes
`--set STAGE.KEY=VALUE` by it, and the command line registers each command under a name from it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CommandName:
    name: str  # as typed after `nas`
    section: str | None = None  # its settings' section in a --config file; None: it has no settings file


COMMANDS = (  # in the order `nas --help` lists them
    CommandName("teacher", "teacher"),
    CommandName("knowledge", "knowledge"),
    CommandName("search", "search"),
    CommandName("finetune", "finetune"),
    CommandName("sanity", "finetune"),  # it finetunes every architecture it compares, with finetune's settings
    CommandName("distill", "distill"),
    CommandName("validate"),
    CommandName("plot"),
    CommandName("latency-table", "latency"),  # the section predates the command's name; files use it
    CommandName("run", "run"),
    CommandName("sweep", "sweep"),
    CommandName("export"),
    CommandName("predict"),
)

COMMAND_NAMES = tuple(command.name for command in COMMANDS)
SECTION = {command.name: command.section for command in COMMANDS if command.section}
# Every section a settings file may hold; one file can configure a whole `nas run`.
CONFIG_SECTIONS = frozenset(SECTION.values())
# The commands `nas run` chains, in order; each reads its own section (and `run` its own).
RUN_STAGES = ("teacher", "knowledge", "search", "finetune")
