"""`fit --help` for a person: a short usage line and the options set most often first, then every option group,
model and data before the Trainer's forty options (LightningCLI lists the Trainer's first, after a usage of over a
hundred lines)."""

from __future__ import annotations

# The options a run is usually shaped with; each is also listed in its own group further down.
MOST_USED = (
    "--config",
    "--run_name",
    "--ckpt_path",
    "--model.n_layer",
    "--model.n_head",
    "--model.n_embd",
    "--model.learning_rate",
    "--model.warmup_steps",
    "--model.lr_decay_steps",
    "--model.init_from",
    "--data.data_dir",
    "--data.source",
    "--data.tokenizer",
    "--data.block_size",
    "--data.batch_size",
    "--data.tokens_per_step",
    "--trainer.max_steps",
    "--trainer.devices",
    "--trainer.precision",
    "--trainer.log_every_n_steps",
    "--val_every_n_steps",
    "--seed_everything",
)
# option groups shown right after the general options, in this order; the rest keep their order after them
FIRST_GROUPS = ("model", "data", "trainer")


def organize_help(parser, prog_command: str) -> None:
    """Reorder a subcommand parser's help: a short usage, a `most used options` group, then model, data, trainer and
    the other groups. Only what --help prints changes; parsing is untouched."""
    parser.usage = f"{prog_command} [-c CONFIG] [--run_name NAME] [--model.* ...] [--data.* ...] [--trainer.* ...]"
    actions = [parser._option_string_actions[o] for o in MOST_USED if o in parser._option_string_actions]
    most_used = parser.add_argument_group("Most used options (each is also in its group below)")
    most_used._group_actions.extend(actions)  # the same actions, listed twice in the help: parsed once
    groups = parser._action_groups
    groups.remove(most_used)
    named = [parser.groups[key] for key in FIRST_GROUPS if key in getattr(parser, "groups", {})]
    general = [g for g in groups[:2] if g not in named]  # argparse's own: positional arguments, options
    rest = [g for g in groups if g not in general and g not in named]
    groups[:] = [*general[:1], most_used, *general[1:], *named, *rest]
