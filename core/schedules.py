"""Learning-rate schedules shared by the retrain harness and the searches."""

from __future__ import annotations

import torch


def linear_decay(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear decay to 0 over ``total_steps``, no warm-up (as BIPEFT and S3Delta): transformers'
    ``get_linear_schedule_with_warmup`` with zero warm-up steps."""
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, num_warmup_steps=0, num_training_steps=max(1, total_steps))
