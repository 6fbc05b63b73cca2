"""`nas run`: settings files, presets and the whole pipeline in one command."""
