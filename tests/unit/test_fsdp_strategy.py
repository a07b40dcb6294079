"""The FSDP preset's strategy wraps one unit per Block (the sharded run itself: e2e/test_fsdp.py)."""


def test_strategy_fsdp_wraps_each_block():
    from gpt_lightning.cli.fit import fsdp_strategy
    from gpt_lightning.model import Block

    policy = fsdp_strategy().kwargs["auto_wrap_policy"]
    assert Block in policy._module_classes
