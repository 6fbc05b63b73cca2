"""AdaBERT-style task-adaptive compression: differentiable architecture search with knowledge distillation."""

__version__ = "0.1.0"
