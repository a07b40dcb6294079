"""What exact resume needs from the training step: dropout masks that depend only on where the run is.

Batches already do (the DataModule draws batch k from (seed, rank, k) and saves k); dropout draws from the global
torch RNG, which checkpoints do not hold, so it is reseeded the same way for every micro-batch.
"""

from __future__ import annotations

import os

import numpy as np
import torch


def reseed_dropout(trainer, batch_idx: int) -> None:
    """Seed the global torch RNG for this micro-batch from (seed, rank, micro-batch index), as the data stream is.

    Dropout masks come from the global torch RNG, which checkpoints do not hold and which validation and
    dataloaders also draw from; seeded per micro-batch, masks, and so a resumed run, are exact."""
    accumulate = trainer.accumulate_grad_batches
    k = trainer.global_step * accumulate + batch_idx % accumulate
    seed = int(os.environ.get("PL_GLOBAL_SEED", 0))
    torch.manual_seed(int(np.random.SeedSequence([seed, trainer.global_rank, k]).generate_state(1)[0]))
