"""gpt_lightning: nanoGPT's model and training recipe, with Lightning doing the engineering."""

__version__ = "0.1.0"
