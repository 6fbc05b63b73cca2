"""The training stages: teacher fine-tuning, the architecture search, distillation, finetune."""
