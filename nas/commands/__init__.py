"""The command line (`nas ...`): parsing and dispatch to the stages."""
