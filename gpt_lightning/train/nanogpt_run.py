"""Continuing nanoGPT's own run (`--model.init_from=ckpt.pt --model.init_optimizer_state=true`): its AdamW state
and its step, so training, the LR schedule and max_steps go on where nanoGPT's train.py stopped."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from gpt_lightning.errors import UserError
from gpt_lightning.train.compat import set_global_step
from gpt_lightning.weights.nanogpt import NanoGPTRun, load_optimizer_state_by_name, schedule_differences


def continue_nanogpt_run(module: L.LightningModule, run: NanoGPTRun) -> None:
    """Carry on from nanoGPT's checkpoint: its AdamW state onto the same parameters (by name), and its step.

    nanoGPT's iter_num counts the optimizer steps taken, and the next step's LR is get_lr(iter_num), which is
    lr_at(global_step) here. So the step becomes Lightning's global_step (its optimizer-step counter, as a
    checkpoint resume restores it), the scheduler's count and the data stream's position: LR schedule,
    max_steps, checkpoint names and a later --ckpt_path resume all continue from there. Runs before
    Lightning builds the dataloaders and before on_train_start, which sets each group's LR from the
    scheduler's count."""
    trainer = module.trainer
    if isinstance(trainer.strategy, FSDPStrategy):
        raise UserError(
            "--model.init_optimizer_state is not supported under FSDP (its parameters are flat shards); "
            "continue the nanoGPT run on one device or with DDP."
        )
    names = {id(p): n for n, p in module.model.named_parameters()}
    names[id(module.model.lm_head.weight)] = "transformer.wte.weight"  # nanoGPT's name of the tied tensor
    load_optimizer_state_by_name(trainer.optimizers[0], names, run.optimizer_state)
    step = run.iter_num
    if 0 <= trainer.max_steps <= step:
        raise UserError(
            f"The nanoGPT run is at step {step}, at or past --trainer.max_steps {trainer.max_steps}, so there is "
            f"nothing to continue; raise --trainer.max_steps above {step}."
        )
    set_global_step(trainer, step)
    if trainer.lr_scheduler_configs:
        trainer.lr_scheduler_configs[0].scheduler.last_epoch = step
    datamodule = trainer.datamodule
    if datamodule is not None and hasattr(datamodule, "batches_consumed"):
        # where DataModule.state_dict says a run at this step stands, so a resumed run draws the same batches
        datamodule.batches_consumed = step * trainer.accumulate_grad_batches
    differences = schedule_differences(run.config, dict(module.hparams))
    rank_zero_info(f"Continuing the nanoGPT run at step {step} (its AdamW state restored).")
    if differences:
        rank_zero_warn(
            "The LR schedule does not continue nanoGPT's exactly: "
            + ", ".join(differences)
            + "; set these options to nanoGPT's values to continue its schedule."
        )
