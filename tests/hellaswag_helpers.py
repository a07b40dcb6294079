"""Shared by the HellaSwag tests (unit/test_hellaswag.py, train/test_hellaswag_in_fit.py): a small example file in
the original format, a tiny random GPT-2-vocab model (2 layers, 32 wide, block 32, so that long contexts are
cropped) saved as a `fit`-style .ckpt and exported for transformers, and an independent reference scorer."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from gpt_lightning.model import GPT, GPTConfig

BLOCK = 32
GPT2_META = {"kind": "gpt2", "encoding": "gpt2"}

# (ctx, endings, label) in the spirit of HellaSwag's ActivityNet and WikiHow examples; two contexts are longer
# than the block (cropped from the left), one ending is longer than the block, one ending has non-ASCII text.
EXAMPLES = [
    (
        "A man is sitting on a roof. he",
        [
            "is using wrap to wrap a pair of skis.",
            "is ripping level tiles off.",
            "is holding a rubik's cube.",
            "starts pulling up roofing on a roof.",
        ],
        3,
    ),
    (
        "A woman is outside with a bucket and a dog. The dog is running around trying to avoid a bath. she",
        [
            "rinses the bucket off with soap and blow dry the dog's head.",
            "uses a hose to keep it from getting soapy.",
            "gets the dog wet, then it runs away again.",
            "gets into a bath tub with the dog.",
        ],
        2,
    ),
    (
        "[header] How to make a simple cake [title] Preheat the oven to 350 degrees Fahrenheit. [step] Grease and "
        "flour a round cake pan, then set it aside while you mix the batter in a large bowl with a wooden spoon "
        "until it is smooth and no lumps of flour remain at the bottom.",
        [
            "[title] Pour the batter into the pan. [step] Bake for about thirty minutes, until a toothpick comes out "
            "clean, then let the cake cool in the pan for ten minutes before you turn it out onto a wire rack to cool "
            "completely before frosting it.",
            "[title] Eat the flour.",
            "[title] Paint the pan blue.",
            "[title] Put the bowl in the freezer overnight.",
        ],
        0,
    ),
    (
        "Two girls are standing in a kitchen.",
        [
            "They are making a café crème brûlée together.",
            "They fly away.",
            "They are swimming in the pool.",
            "The kitchen explodes.",
        ],
        0,
    ),
    (
        "A boy is on a skateboard at a park. He",
        ["rides down the ramp.", "eats the ramp.", "sings to the ramp.", "becomes a ramp."],
        0,
    ),
    (
        "Several people are gathered on a beach on a sunny day, playing volleyball and swimming in the sea while "
        "children build castles in the sand near the water and a lifeguard watches from a tall chair. A man",
        ["serves the ball over the net.", "drives a bus.", "reads a newspaper in the snow.", "climbs a volcano."],
        0,
    ),
    ("", ["The end.", "A start.", "Nothing.", "Something."], 1),
]


def write_examples(path: Path, examples=EXAMPLES) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i, (ctx, endings, label) in enumerate(examples):
            # the original's fields; only ctx, endings and label are read
            record = {
                "ind": i,
                "activity_label": "test",
                "ctx_a": ctx,
                "ctx_b": "",
                "ctx": ctx,
                "split": "val",
                "split_type": "indomain",
                "label": label,
                "endings": endings,
                "source_id": f"test~{i}",
            }
            f.write(json.dumps(record) + "\n")
    return path


def make_files(root: Path):
    """Under root: the example file, a tiny random GPT-2-vocab model as a `fit`-style .ckpt, its HF export; and the
    model and the examples as written (relabelled, see below)."""
    from gpt_lightning.weights.hf import export_model

    torch.manual_seed(0)
    config = GPTConfig(vocab_size=50257, block_size=BLOCK, n_layer=2, n_head=2, n_embd=32)
    model = GPT(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)  # larger than GPT-2's init, so the four endings' scores differ clearly
    hparams = {
        **{k: getattr(config, k) for k in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")},
        "bias": True,
        "tokenizer": GPT2_META,
    }
    ckpt = root / "model.ckpt"
    torch.save(
        {"hyper_parameters": hparams, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, ckpt
    )
    export_model(config, model.state_dict(), root / "hf", GPT2_META)
    # A random model's choices are as good as chance, and may all be wrong: relabel so that transformers' acc_norm
    # choice is right on even examples and wrong on odd ones, which makes acc_norm 4/7 (3/5 on the first 5).
    sums, lengths, _, _ = reference(root / "hf")
    examples = []
    for (ctx, endings, _), ex_sums, ex_lengths in zip(EXAMPLES, sums, lengths):
        best_norm = max(range(4), key=lambda i: ex_sums[i] / ex_lengths[i])
        examples.append((ctx, endings, best_norm if len(examples) % 2 == 0 else (best_norm + 1) % 4))
    return write_examples(root / "hellaswag_val.jsonl", examples), ckpt, root / "hf", model.eval(), examples


def reference(hf_dir: Path, examples=EXAMPLES):
    """Per ending: the sum of its tokens' log-probabilities and their number, computed one candidate at a time
    with transformers' own model and tokenizer on the exported folder; the context + ending is cropped to its
    last BLOCK + 1 tokens. Then acc and acc_norm by plain Python."""
    import transformers

    hf = transformers.AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    sums, lengths, correct, correct_norm = [], [], 0, 0
    for ctx, endings, label in examples:
        ex_sums, ex_lengths = [], []
        for ending in endings:
            context = tok.encode(ctx) or [50256]  # an empty context starts at <|endoftext|>
            end = tok.encode(" " + ending)
            row = (context + end)[-(BLOCK + 1) :]
            with torch.no_grad():
                logprobs = torch.log_softmax(hf(torch.tensor([row[:-1]])).logits[0].double(), dim=-1)
            n = min(len(end), len(row) - 1)
            ex_sums.append(sum(float(logprobs[p, row[p + 1]]) for p in range(len(row) - 1 - n, len(row) - 1)))
            ex_lengths.append(n)
        best = max(range(4), key=lambda i: ex_sums[i])
        best_norm = max(range(4), key=lambda i: ex_sums[i] / ex_lengths[i])
        correct += best == label
        correct_norm += best_norm == label
        sums.append(ex_sums)
        lengths.append(ex_lengths)
    return sums, lengths, correct / len(examples), correct_norm / len(examples)
