"""Where this project leans on how Lightning, jsonargparse and torch behave beyond their documented API.

Written for lightning 2.6.6, torch 2.13 and jsonargparse 4.53; setup.cfg pins lightning to 2.6.x, and
tests/unit/test_compat.py fails, naming the assumption, when an upgrade breaks one of them. The one private
attribute still used is below (`set_global_step`); each use the project once had went as follows (keep new
ones here, each with the version it was written for and the upstream reason):

- `nn.Module._compiled_call_impl = None` (undo `Module.compile()`): the compiled module is now kept outside
  the module tree, and the eager one called instead (train/compile.py).
- `LightningCLI._parse_ckpt_path` override (checkpoint hyperparameters override the command line, #21455):
  the public `parse_arguments` hook parses with them as defaults and hides the path from Lightning's step
  (cli/fit.py); test_compat checks the hook still runs before that step.
- `LightningCLI._parser(subcommand).set_defaults`: the public `parser.set_defaults({"fit.model.x": ...})`.
- `LightningCLI._instantiate_trainer` override: the public `instantiate_trainer(**kwargs)` (progress bar via
  `callbacks=`), and `trainer.callbacks` filtered afterwards.
- `LightningCLI._get(self.config_init, ...)`: the public `config_init`, indexed by subcommand.
- `ModelCheckpoint._save_last_checkpoint` / `_monitor_candidates` / `_last_global_step_saved`: LastCheckpoint
  is a plain Callback that calls the public `Trainer.save_checkpoint`.
- the scheduler's `_last_lr` (set after re-basing the LR on resume): the scheduler is rebuilt with the public
  `last_epoch` argument instead (train/optimizers.py: use_settings_given_now).
- the optimizer's `_step_supports_amp_scaling` (Lightning's test for "unscales itself"): `optimizer.defaults`
  ["fused"], which is what sets it for AdamW.
- `LightningModule._trainer` (a Trainer or None): `attached_trainer` below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:
    import lightning as L


def attached_trainer(module: L.LightningModule) -> Optional[L.Trainer]:
    """The Trainer `module` is attached to, or None (a module used on its own, as tests and tools do).
    Lightning 2.6's public `LightningModule.trainer` raises a RuntimeError instead of returning None."""
    try:
        return module.trainer
    except RuntimeError:
        return None


def set_global_step(trainer: L.Trainer, step: int) -> None:
    """Make `trainer.global_step` (and the loggers' step axis) `step`, as Lightning's own checkpoint restore does;
    used to continue a nanoGPT run (train/module.py). Lightning 2.6.6 has no public setter: global_step is the
    fit loop's optimizer-step progress counter, and the logger step is the private `_batches_that_stepped`."""
    loop = trainer.fit_loop.epoch_loop
    loop.automatic_optimization.optim_progress.optimizer.step.total.completed = step
    loop._batches_that_stepped = step
