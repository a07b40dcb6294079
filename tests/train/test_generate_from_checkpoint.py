"""Generation from checkpoints a real Trainer wrote: both tokenizers, the `generate` command in this process,
its bad-input errors, and the TextSampleCallback during a fit (the same code as `generate`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from gpt_lightning.cli import main
from gpt_lightning.cli.generate import SEPARATOR, generate
from gpt_lightning.generation import Sampling, stream_text
from gpt_lightning.tokenizer import CharTokenizer, GPT2Tokenizer
from gpt_lightning.weights.load import load_checkpoint_model
from helpers import ROMEO_TEXT as TEXT
from helpers import save_tiny_checkpoint

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def gpt2_ckpt(tmp_path_factory) -> Path:
    gpt2 = {"kind": "gpt2", "encoding": "gpt2"}
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt") / "gpt2.ckpt", gpt2, 50304)


def test_char_checkpoint_loads_the_trained_weights(char_ckpt):
    model, tok = load_checkpoint_model(char_ckpt)
    saved = torch.load(char_ckpt, map_location="cpu", weights_only=True)["state_dict"]
    assert isinstance(tok, CharTokenizer) and tok.chars == sorted(set(TEXT))
    assert not model.training and model.lm_head.weight is model.transformer.wte.weight
    for name, value in model.state_dict().items():
        assert torch.equal(value, saved["model." + name]), name


def test_char_checkpoint_generates_from_the_cli(char_ckpt, capsys):
    """The real entry point, streaming 2 samples; the same seed gives the same text, another seed another."""
    args = [
        "generate",
        f"--ckpt_path={char_ckpt}",
        "--prompt=ROMEO:",
        "--max_new_tokens=30",
        "--num_samples=2",
        "--temperature=1.0",
        "--top_k=200",
        "--top_p=0.95",
        "--seed=7",
    ]
    main(args)
    first = capsys.readouterr().out
    samples = first.split(f"\n{SEPARATOR}\n")
    assert samples[-1] == "" and len(samples) == 3
    for s in samples[:2]:
        assert s.startswith("ROMEO:") and len(s) == len("ROMEO:") + 30
        assert set(s) <= set(TEXT)
    main(args)
    assert capsys.readouterr().out == first
    main(args[:-1] + ["--seed=8"])
    assert capsys.readouterr().out != first
    # batched (--no_stream) and without the cache: same format
    main(args + ["--no_stream", "--no_kv_cache", "--device=cpu"])
    assert capsys.readouterr().out.count(SEPARATOR) == 2


def test_gpt2_checkpoint_decodes(gpt2_ckpt, tmp_path):
    prompt_file = tmp_path / "prompt.txt"
    prompt_file.write_text("Hello, world — naïve", encoding="utf-8")
    samples = generate(
        str(gpt2_ckpt),
        prompt_file=str(prompt_file),
        max_new_tokens=12,
        num_samples=2,
        temperature=1.0,
        top_k=None,
        stream=False,
    )
    model, tok = load_checkpoint_model(gpt2_ckpt)
    assert isinstance(tok, GPT2Tokenizer)
    for s in samples:
        assert s.startswith("Hello, world — naïve") and len(s) > len("Hello, world — naïve")
    # streaming gives the same text as decoding the generated ids in one go
    gen = torch.Generator().manual_seed(3)
    ids = model.generate(
        torch.tensor([tok.encode("Hi")]), 12, temperature=1.0, generator=gen, vocab_size=tok.vocab_size
    )
    ids = ids[0, 1:].tolist()
    streamed = "".join(stream_text(model, tok, "Hi", 12, sampling=Sampling(temperature=1.0, seed=3)))
    assert streamed == tok.decode(ids)
    # an empty prompt starts at <|endoftext|>
    assert len(generate(str(gpt2_ckpt), prompt="", max_new_tokens=3, temperature=0)) == 1


def run_error(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(["generate", *args])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


@pytest.mark.parametrize(
    "extra, words",
    [
        (["--prompt=ROMEO: Ω ß"], ["'Ω'", "'ß'", "vocabulary"]),
        (["--max_new_tokens=0"], ["max_new_tokens", "0"]),
        (["--temperature=-0.5"], ["temperature", "-0.5"]),
        (["--top_k=0"], ["top_k"]),
        (["--top_p=0"], ["top_p", "(0, 1]"]),
        (["--top_p=1.5"], ["top_p", "1.5"]),
    ],
    ids=["unknown_chars", "max_new_tokens", "temperature", "top_k", "top_p_zero", "top_p_big"],
)
def test_bad_arguments_give_one_clear_error(char_ckpt, capsys, extra, words):
    err = run_error([f"--ckpt_path={char_ckpt}", *extra], capsys)
    for w in words:
        assert w in err


def test_missing_or_unreadable_checkpoint(tmp_path, capsys):
    assert "does not exist" in run_error([f"--ckpt_path={tmp_path / 'nope.ckpt'}"], capsys)
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"this is not a checkpoint")
    assert "is not a checkpoint (not a file torch.save wrote)" in run_error([f"--ckpt_path={garbage}"], capsys)
    truncated = tmp_path / "truncated.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    assert "is not a readable checkpoint" in run_error([f"--ckpt_path={truncated}"], capsys)


def test_text_sample_callback_writes_generated_text(tmp_path):
    import lightning as L
    from lightning.pytorch.loggers import TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from gpt_lightning.errors import UserError
    from gpt_lightning.train.callbacks import TextSampleCallback
    from gpt_lightning.train.module import GPTLightningModule

    tok = CharTokenizer.from_text(TEXT)
    x = torch.randint(0, tok.vocab_size, (4, 17))
    loader = torch.utils.data.DataLoader(list(zip(x[:, :-1], x[:, 1:])), batch_size=4)

    def fit(prompt: str) -> None:
        module = GPTLightningModule(
            vocab_size=tok.vocab_size,
            block_size=16,
            n_layer=1,
            n_head=2,
            n_embd=16,
            compile=False,
            tokenizer=tok.to_meta(),
        )
        trainer = L.Trainer(
            accelerator="cpu",
            max_steps=1,
            logger=TensorBoardLogger(tmp_path, name="tb", version=0),
            callbacks=[TextSampleCallback(prompt=prompt, max_new_tokens=20)],
            num_sanity_val_steps=0,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.fit(module, loader, loader)

    with pytest.raises(UserError, match="'Ω'"):
        fit("Ω")  # refused before training starts
    fit("ROMEO:")
    events = EventAccumulator(str(tmp_path / "tb" / "version_0"), size_guidance={"tensors": 0}).Reload()
    (sample,) = [t for t in events.Tags()["tensors"] if t.startswith("samples")]
    header, text = events.Tensors(sample)[0].tensor_proto.string_val[0].decode().split("\n\n", 1)
    assert header.startswith("**step 1 ·") and "prompt 'ROMEO:'" in header  # then the text, as a code block
    assert text.startswith("    ROMEO:") and len(text.replace("\n    ", "\n")) == 4 + len("ROMEO:") + 20
