"""One torchrun process of tests/test_ddp.py: train() on tiny random images; rank 0 saves what it returned.

    python scripts/launch.py --processes 2 --share-cores tests/ddp_worker.py OUT EPOCHS STATE_DIR
"""
import sys
from pathlib import Path

import numpy as np
import torch
from helpers import TINY_UNET, diffusion_cfg, model_cfg, train_cfg

from diffpipe.core import distributed
from diffpipe.diffusion.training import train


def main(out: str, epochs: int, state_dir: str) -> None:
    world = distributed.world_from_env()
    images = np.random.default_rng(0).integers(0, 256, (40, 1, 8, 8), dtype=np.uint8)
    cfg = train_cfg(epochs=epochs, batch_size=8, log_every=1, checkpoint_every=2, processes=world.size)
    model = model_cfg(**TINY_UNET, attn_down=[False, False], attn_up=[False, False])
    result = train(images, diffusion_cfg(), model, cfg, state_dir=Path(state_dir), progress=False)
    if world.main:
        torch.save({"ema": result.checkpoint["ema"], "step_losses": result.step_losses,
                    "epoch_losses": result.epoch_losses, "report": result.report}, out)
    else:
        assert result.checkpoint is None
    distributed.close(world)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
