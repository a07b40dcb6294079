"""What each export format can represent, declared once per format and checked before anything is written.

A format names the GPTConfig fields it writes and, for each, the values it can represent (None: any value).
Every field it does not name must be at GPTConfig's default, which by the convention in model.py is GPT-2's
behaviour: so a field a researcher adds is exported only where its value changes nothing, and any other value
is refused in one sentence naming the option, instead of a file that loads with other logits.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Optional

from gpt_lightning.errors import UserError
from gpt_lightning.model import GPTConfig

ANY = None  # any value of the field


@dataclass(frozen=True)
class ExportFormat:
    """name: how the user selects it and how messages call it; fields: GPTConfig field -> the values it can
    represent (ANY for all)."""

    name: str
    fields: dict[str, Optional[tuple]]

    def unrepresented(self, config: GPTConfig) -> list[tuple[str, Any]]:
        """(field, value) pairs of config that this format cannot write."""
        out = []
        for f in dataclasses.fields(GPTConfig):
            value = getattr(config, f.name)
            if f.name in self.fields:
                allowed = self.fields[f.name]
                if allowed is not ANY and value not in allowed:
                    out.append((f.name, value))
            elif value != f.default:
                out.append((f.name, value))
        return out


# The sizes, the vocabulary and dropout: every format writes these as they are.
SIZES = {name: ANY for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "dropout")}

# Hugging Face's GPT2LMHeadModel (weights/hf.py): biases (bias=False is written as zeros), either GELU, the
# padding rows dropped on export.
HF_GPT2 = ExportFormat("hf (GPT-2)", {**SIZES, "bias": ANY, "gelu_approximate": ANY, "pad_vocab_multiple": ANY})

# nanoGPT's model.py: its GPTConfig has n_layer, n_head, n_embd, block_size, bias, vocab_size, dropout; its GELU
# is the exact one; the padding rows are dropped on export.
NANOGPT = ExportFormat("nanogpt", {**SIZES, "bias": ANY, "gelu_approximate": ("none",), "pad_vocab_multiple": ANY})


def choose_format(config: GPTConfig, formats: list[ExportFormat], option: str) -> ExportFormat:
    """The first of `formats` that represents config exactly; else a UserError naming what the first (the
    closest, by convention) cannot write. option: how the user asked for it (`--format hf`)."""
    for candidate in formats:
        if not candidate.unrepresented(config):
            return candidate
    missing = formats[0].unrepresented(config)
    named = ", ".join(f"--model.{k}={v}" for k, v in missing)
    others = " or ".join(f.name for f in formats[1:])
    also = f" (nor can {others})" if others else ""
    raise UserError(
        f"export {option} cannot represent {named}: {formats[0].name} has no such option{also}, so the file would "
        "compute other logits; keep the checkpoint (generate and evaluate read it as it is) or choose a format "
        "that has it."
    )
