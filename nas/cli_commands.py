"""Imports the modules that register subcommands beyond those in nas.cli."""
