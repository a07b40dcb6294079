"""What gpt_lightning relies on in Lightning, jsonargparse and torch beyond their documented API (see
gpt_lightning/train/compat.py). Each test names the assumption and where the project depends on it, so an
upgrade that breaks one says which line to look at."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.cli import LightningCLI

from gpt_lightning.train.compat import attached_trainer


class TinyModule(L.LightningModule):
    def __init__(self, lr: float = 0.1) -> None:
        super().__init__()
        self.save_hyperparameters()


class Stop(Exception):
    pass


class RecordingCLI(LightningCLI):
    """Stops before anything is instantiated, keeping the parsed `fit` config."""

    hide_ckpt_path = False

    def parse_arguments(self, parser, args) -> None:
        super().parse_arguments(parser, args)
        if self.hide_ckpt_path:  # what cli/fit.py does
            self.hidden = self.config.fit.ckpt_path
            self.config.fit.ckpt_path = None

    def before_instantiate_classes(self) -> None:
        self.config.fit.ckpt_path = getattr(self, "hidden", self.config.fit.ckpt_path)
        raise Stop(self.config.fit)


def parsed_fit_config(args: list[str], hide: bool = False, defaults: dict | None = None):
    class CLI(RecordingCLI):
        hide_ckpt_path = hide

        def parse_arguments(self, parser, args) -> None:
            if defaults:
                parser.set_defaults(defaults)  # on the top-level parser, as cli/fit.py does
            super().parse_arguments(parser, args)

    with pytest.raises(Stop) as stopped:
        CLI(TinyModule, args=["fit", *args], save_config_callback=None)
    return stopped.value.args[0]


@pytest.fixture
def ckpt_with_lr(tmp_path):
    path = tmp_path / "hp.ckpt"
    torch.save({"hyper_parameters": {"lr": 0.5}, "state_dict": {}}, path)
    return str(path)


def test_lightning_cli_applies_checkpoint_hparams_after_parse_arguments(ckpt_with_lr):
    """cli/fit.py (parse_arguments) hides --ckpt_path from LightningCLI's own checkpoint parsing, which would
    let the checkpoint's hyperparameters override the command line (#21455), and gives it back in
    before_instantiate_classes. That works only while Lightning parses the checkpoint in between."""
    plain = parsed_fit_config(["--ckpt_path", ckpt_with_lr, "--model.lr", "0.1"])
    assert plain.model.lr == 0.5, (
        "LightningCLI no longer lets a checkpoint's hyperparameters override the command line (#21455 fixed?): "
        "the ckpt_path hiding in gpt_lightning/cli/fit.py parse_arguments may no longer be needed"
    )
    hidden = parsed_fit_config(["--ckpt_path", ckpt_with_lr, "--model.lr", "0.1"], hide=True)
    assert hidden.model.lr == 0.1, (
        "LightningCLI now reads --ckpt_path hyperparameters outside the parse_arguments -> before_instantiate_classes "
        "window: gpt_lightning/cli/fit.py must keep them from overriding the command line another way"
    )
    assert hidden.ckpt_path == ckpt_with_lr


def test_top_level_parser_set_defaults_reaches_the_subcommand():
    """cli/fit.py sets a checkpoint's hyperparameters as defaults with parser.set_defaults({"fit.model.x": v})
    (no LightningCLI._parser); the command line must still win."""
    config = parsed_fit_config([], defaults={"fit.model.lr": 0.3})
    assert config.model.lr == 0.3, "jsonargparse: set_defaults('fit.model.lr') no longer reaches the fit subcommand"
    config = parsed_fit_config(["--model.lr", "0.2"], defaults={"fit.model.lr": 0.3})
    assert config.model.lr == 0.2, "jsonargparse: a default set on the top-level parser now beats the command line"


def test_instantiate_trainer_keeps_configured_callbacks_besides_given_ones(tmp_path):
    """cli/fit.py passes its progress bar as instantiate_trainer(callbacks=[...]) (no _instantiate_trainer
    override) and filters trainer.callbacks afterwards."""

    class Marker(L.Callback):
        pass

    class CLI(LightningCLI):
        def add_arguments_to_parser(self, parser) -> None:
            parser.add_lightning_class_args(LearningRateMonitor, "lr_monitor")

        def instantiate_trainer(self, **kwargs):
            return super().instantiate_trainer(callbacks=[Marker()], **kwargs)

    cli = CLI(TinyModule, run=False, save_config_callback=None, args=[f"--trainer.default_root_dir={tmp_path}"])
    kinds = [type(c) for c in cli.trainer.callbacks]
    assert Marker in kinds and LearningRateMonitor in kinds, (
        f"LightningCLI.instantiate_trainer(callbacks=...) no longer adds the CLI's callback groups: {kinds}"
    )
    cli.trainer.callbacks = [c for c in cli.trainer.callbacks if not isinstance(c, LearningRateMonitor)]
    assert LearningRateMonitor not in [type(c) for c in cli.trainer.callbacks]


@pytest.mark.parametrize("fused", [False, True])
def test_fused_flag_is_what_lightning_calls_self_unscaling(fused):
    """train/clipping.py clips fused AdamW itself, recognising it by optimizer.defaults["fused"]; Lightning
    2.6 refuses to clip exactly the optimizers whose step unscales (torch sets _step_supports_amp_scaling)."""
    from lightning.fabric.plugins.precision.amp import _optimizer_handles_unscaling

    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.ones(2))], fused=fused)
    assert bool(optimizer.defaults.get("fused")) == _optimizer_handles_unscaling(optimizer) == fused, (
        "Lightning's test for an optimizer that unscales itself no longer matches optimizer.defaults['fused']: "
        "gpt_lightning/train/clipping.py must follow it"
    )


def test_lambda_lr_rebuilt_at_a_step_continues_the_schedule():
    """train/optimizers.py (use_settings_given_now) rebuilds the LambdaLR at the restored step (public last_epoch
    argument) instead of setting its _last_lr: the LR, get_last_lr() and later steps must equal an uninterrupted
    schedule's."""

    def factor(step: int) -> float:
        return 1.0 / (step + 1)

    def optimizer():
        return torch.optim.AdamW([torch.nn.Parameter(torch.ones(2))], lr=0.1)

    straight_opt = optimizer()
    straight = torch.optim.lr_scheduler.LambdaLR(straight_opt, factor)
    for _ in range(5):
        straight_opt.step()
        straight.step()
    opt = optimizer()
    for group in opt.param_groups:
        group["initial_lr"] = 0.1
    rebuilt = torch.optim.lr_scheduler.LambdaLR(opt, [factor], last_epoch=straight.last_epoch - 1)
    message = (
        "torch's LambdaLR(last_epoch=k - 1) no longer resumes a schedule at step k: see train/optimizers.py "
        "use_settings_given_now"
    )
    assert rebuilt.last_epoch == straight.last_epoch, message
    assert rebuilt.get_last_lr() == straight.get_last_lr() == [g["lr"] for g in opt.param_groups], message
    opt.step()
    rebuilt.step()
    straight_opt.step()
    straight.step()
    assert rebuilt.get_last_lr() == straight.get_last_lr(), message


def test_attached_trainer_is_none_until_a_trainer_is_attached():
    module = TinyModule()
    assert attached_trainer(module) is None
    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    module.trainer = trainer
    assert attached_trainer(module) is trainer


def test_set_global_step_moves_global_step():
    """train/module.py continues a nanoGPT run by setting the fit loop's counters (no public setter in 2.6)."""
    from gpt_lightning.train.compat import set_global_step

    trainer = L.Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    loop = trainer.fit_loop.epoch_loop
    assert hasattr(loop, "_batches_that_stepped"), "Lightning's epoch loop lost _batches_that_stepped: see compat.py"
    set_global_step(trainer, 7)
    assert trainer.global_step == 7 and loop._batches_that_stepped == 7, "compat.set_global_step no longer works"
