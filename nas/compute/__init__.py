"""How models run on the hardware: speed settings, number formats, processes."""
