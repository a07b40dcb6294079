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


# Hugging Face's LlamaForCausalLM (weights/llama.py): RoPE in Llama's rotate_half layout, RMSNorm, SwiGLU, lm_head
# tied or not (tie_word_embeddings), biases in attention and MLP or none (attention_bias, mlp_bias), the padding
# rows dropped on export. No QK-norm, no soft-capping.
LLAMA_FIELDS = {
    **SIZES,
    "bias": ANY,
    "pad_vocab_multiple": ANY,
    "rope": (True,),
    "rope_base": ANY,
    "norm": ("rmsnorm",),
    "mlp": ("swiglu",),
    "tie_embeddings": ANY,
}
HF_LLAMA = ExportFormat("hf (Llama)", LLAMA_FIELDS)

# Hugging Face's Qwen3ForCausalLM: Llama's block plus QK-norm (a per-head RMSNorm on q and k before RoPE, as
# ours); its MLP has no biases, so bias=False only.
HF_QWEN3 = ExportFormat("hf (Qwen3)", {**LLAMA_FIELDS, "bias": (False,), "qk_norm": (True,)})


def choose_format(config: GPTConfig, formats: list[ExportFormat], option: str) -> ExportFormat:
    """The first of `formats` that represents config exactly; else a UserError naming what the closest (the one
    missing the fewest options, the first on a tie) cannot write. option: how the user asked for it
    (`--format hf`)."""
    for candidate in formats:
        if not candidate.unrepresented(config):
            return candidate
    closest = min(formats, key=lambda f: len(f.unrepresented(config)))
    named = ", ".join(f"--model.{k}={v}" for k, v in closest.unrepresented(config))
    others = " or ".join(f.name for f in formats if f is not closest)
    also = f" (nor can {others})" if others else ""
    raise UserError(
        f"export {option} cannot represent {named}: {closest.name} has no such option{also}, so the file would "
        "compute other logits; keep the checkpoint (generate and evaluate read it as it is) or choose a format "
        "that has it."
    )
