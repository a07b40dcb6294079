"""HellaSwag: the scoring checked against transformers' GPT2LMHeadModel on the exported model, the `evaluate`
command, the data file (reading, fetching, offline), and the training-loop callback (TensorBoard, DDP).

The examples are a small file in the original format, written here; the model is a tiny random GPT with GPT-2's
vocabulary (2 layers, 32 wide, block 32, so that long contexts are cropped). Nothing is downloaded.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gpt_lightning.cli import main
from gpt_lightning.errors import UserError
from gpt_lightning.evaluation import hellaswag
from gpt_lightning.model import GPT, GPTConfig
from gpt_lightning.tokenizer import GPT2Tokenizer

transformers = pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[1]
BLOCK = 32
GPT2_META = {"kind": "gpt2", "encoding": "gpt2"}

# (ctx, endings, label) in the spirit of HellaSwag's ActivityNet and WikiHow examples; two contexts are longer
# than the block (cropped from the left), one ending is longer than the block, one ending has non-ASCII text.
EXAMPLES = [
    ("A man is sitting on a roof. he", ["is using wrap to wrap a pair of skis.", "is ripping level tiles off.",
     "is holding a rubik's cube.", "starts pulling up roofing on a roof."], 3),
    ("A woman is outside with a bucket and a dog. The dog is running around trying to avoid a bath. she",
     ["rinses the bucket off with soap and blow dry the dog's head.", "uses a hose to keep it from getting soapy.",
      "gets the dog wet, then it runs away again.", "gets into a bath tub with the dog."], 2),
    ("[header] How to make a simple cake [title] Preheat the oven to 350 degrees Fahrenheit. [step] Grease and "
     "flour a round cake pan, then set it aside while you mix the batter in a large bowl with a wooden spoon "
     "until it is smooth and no lumps of flour remain at the bottom.",
     ["[title] Pour the batter into the pan. [step] Bake for about thirty minutes, until a toothpick comes out "
      "clean, then let the cake cool in the pan for ten minutes before you turn it out onto a wire rack to cool "
      "completely before frosting it.", "[title] Eat the flour.", "[title] Paint the pan blue.",
      "[title] Put the bowl in the freezer overnight."], 0),
    ("Two girls are standing in a kitchen.", ["They are making a café crème brûlée together.",
     "They fly away.", "They are swimming in the pool.", "The kitchen explodes."], 0),
    ("A boy is on a skateboard at a park. He", ["rides down the ramp.", "eats the ramp.", "sings to the ramp.",
     "becomes a ramp."], 0),
    ("Several people are gathered on a beach on a sunny day, playing volleyball and swimming in the sea while "
     "children build castles in the sand near the water and a lifeguard watches from a tall chair. A man",
     ["serves the ball over the net.", "drives a bus.", "reads a newspaper in the snow.", "climbs a volcano."], 0),
    ("", ["The end.", "A start.", "Nothing.", "Something."], 1),
]


def write_examples(path: Path, examples=EXAMPLES) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i, (ctx, endings, label) in enumerate(examples):
            # the original's fields; only ctx, endings and label are read
            record = {"ind": i, "activity_label": "test", "ctx_a": ctx, "ctx_b": "", "ctx": ctx, "split": "val",
                      "split_type": "indomain", "label": label, "endings": endings, "source_id": f"test~{i}"}
            f.write(json.dumps(record) + "\n")
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The example file, a tiny random GPT-2-vocab model as a `fit`-style .ckpt, and its HF export."""
    from gpt_lightning.weights.hf import export_model

    root = tmp_path_factory.mktemp("hellaswag")
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=50257, block_size=BLOCK, n_layer=2, n_head=2, n_embd=32)
    model = GPT(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)  # larger than GPT-2's init, so the four endings' scores differ clearly
    hparams = {**{k: getattr(config, k) for k in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd")},
               "bias": True, "tokenizer": GPT2_META}
    ckpt = root / "model.ckpt"
    torch.save({"hyper_parameters": hparams, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}},
               ckpt)
    export_model(config, model.state_dict(), root / "hf", GPT2_META)
    return write_examples(root / "hellaswag_val.jsonl"), ckpt, root / "hf", model.eval()


def reference(hf_dir: Path, examples=EXAMPLES):
    """Per ending: the sum of its tokens' log-probabilities and their number, computed one candidate at a time
    with transformers' own model and tokenizer on the exported folder; the context + ending is cropped to its
    last BLOCK + 1 tokens. Then acc and acc_norm by plain Python."""
    hf = transformers.AutoModelForCausalLM.from_pretrained(hf_dir).eval()
    tok = transformers.AutoTokenizer.from_pretrained(hf_dir)
    sums, lengths, correct, correct_norm = [], [], 0, 0
    for ctx, endings, label in examples:
        ex_sums, ex_lengths = [], []
        for ending in endings:
            context = tok.encode(ctx) or [50256]  # an empty context starts at <|endoftext|>
            end = tok.encode(" " + ending)
            row = (context + end)[-(BLOCK + 1):]
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


def test_log_likelihoods_and_accuracies_equal_transformers(files):
    path, _, hf_dir, model = files
    ref_sums, ref_lengths, ref_acc, ref_acc_norm = reference(hf_dir)
    examples = hellaswag.read_examples(path)
    assert len(examples) == len(EXAMPLES)
    scores = hellaswag.score(model, hellaswag.encode(GPT2Tokenizer(), examples), batch_size=3, progress=False)
    assert any(n > BLOCK for n in map(len, (e.context for e in hellaswag.encode(GPT2Tokenizer(), examples))))
    assert any(n == BLOCK for s in scores for n in s.num_tokens), "no ending was longer than the block"
    for s, sums, lengths in zip(scores, ref_sums, ref_lengths):
        assert list(s.num_tokens) == lengths
        torch.testing.assert_close(torch.tensor(s.logprobs), torch.tensor(sums), atol=1e-4, rtol=0)
    correct, correct_norm, n = hellaswag.counts(scores)
    assert (correct / n, correct_norm / n) == (ref_acc, ref_acc_norm)
    assert ref_acc != ref_acc_norm or len({s.pred for s in scores}) > 1  # the numbers are not all alike


def test_batching_and_padding_change_no_score(files):
    path, _, _, model = files
    examples = hellaswag.encode(GPT2Tokenizer(), hellaswag.read_examples(path))
    one = hellaswag.score(model, examples, batch_size=1, progress=False)
    many = hellaswag.score(model, examples, batch_size=len(examples), progress=False)
    for a, b in zip(one, many):
        assert a.num_tokens == b.num_tokens and a.label == b.label
        torch.testing.assert_close(torch.tensor(a.logprobs), torch.tensor(b.logprobs), atol=1e-5, rtol=0)


def parse_table(out: str) -> dict:
    lines = out.splitlines()
    columns = ["task", "examples", "acc", "acc_norm", "time"]
    header = next(i for i, line in enumerate(lines) if line.split()[:5] == columns)
    task, examples, acc, acc_norm, seconds = lines[header + 1].split()
    return {"task": task, "examples": int(examples), "acc": float(acc), "acc_norm": float(acc_norm)}


@pytest.mark.parametrize("which", ["ckpt", "hf"])
def test_evaluate_command_prints_the_reference_numbers(files, capsys, which):
    path, ckpt, hf_dir, _ = files
    limit = 5
    _, _, ref_acc, ref_acc_norm = reference(hf_dir, EXAMPLES[:limit])
    target = ckpt if which == "ckpt" else hf_dir
    main(["evaluate", "--ckpt_path", str(target), "--tasks", "hellaswag", "--limit", str(limit),
          "--hellaswag_path", str(path), "--device", "cpu", "--progress", "false"])
    row = parse_table(capsys.readouterr().out)
    assert row == {"task": "hellaswag", "examples": limit, "acc": round(ref_acc, 4), "acc_norm": round(ref_acc_norm, 4)}


def run_error(args: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: ")
    return err[-1]


def test_a_char_model_is_refused_with_one_sentence(files, tmp_path, capsys):
    path = files[0]
    config = GPTConfig(vocab_size=65, block_size=16, n_layer=1, n_head=1, n_embd=8)
    hparams = {"vocab_size": 65, "block_size": 16, "n_layer": 1, "n_head": 1, "n_embd": 8,
               "tokenizer": {"kind": "char", "chars": [chr(32 + i) for i in range(65)]}}
    sd = {f"model.{k}": v for k, v in GPT(config).state_dict().items()}
    torch.save({"hyper_parameters": hparams, "state_dict": sd}, tmp_path / "char.ckpt")
    line = run_error(["evaluate", "--ckpt_path", str(tmp_path / "char.ckpt"), "--hellaswag_path", str(path)], capsys)
    assert "GPT-2-BPE" in line and "char model" in line


def test_unknown_task_and_bad_limit_are_refused(files, capsys):
    path, ckpt, _, _ = files
    assert "Unknown task" in run_error(["evaluate", "--ckpt_path", str(ckpt), "--tasks", "mmlu"], capsys)
    assert "--limit" in run_error(["evaluate", "--ckpt_path", str(ckpt), "--limit", "0"], capsys)


def test_offline_without_the_file_says_where_to_put_it(files, tmp_path, capsys, monkeypatch):
    _, ckpt, _, _ = files
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hellaswag, "HELLASWAG_URL", "http://127.0.0.1:9/hellaswag_val.jsonl")  # refused at once
    line = run_error(["evaluate", "--ckpt_path", str(ckpt), "--progress", "false"], capsys)
    assert str(tmp_path / "data" / "hellaswag" / "hellaswag_val.jsonl") in line and "--hellaswag_path" in line
    assert not (tmp_path / "data" / "hellaswag").exists() or not any((tmp_path / "data" / "hellaswag").iterdir())
    missing = run_error(["evaluate", "--ckpt_path", str(ckpt), "--hellaswag_path", "nope.jsonl"], capsys)
    assert "nope.jsonl does not exist" in missing


def test_fetch_keeps_only_a_complete_well_formed_file(files, tmp_path, monkeypatch):
    path = files[0]
    url = path.as_uri()  # urllib reads file:// URLs as it reads https:// ones
    dest = tmp_path / "data" / "hellaswag_val.jsonl"
    with pytest.raises(UserError, match=f"holds {len(EXAMPLES)} examples, not HellaSwag validation's 10,042"):
        hellaswag.fetch(dest, url)
    assert not dest.exists()
    bad = tmp_path / "bad.jsonl"
    bad.write_text(path.read_text() + '{"ctx": "x", "endings": ["a", "b"], "label": 0}\n')
    monkeypatch.setattr(hellaswag, "HELLASWAG_VAL_EXAMPLES", len(EXAMPLES) + 1)
    with pytest.raises(UserError, match="line 8 is not a HellaSwag example"):
        hellaswag.fetch(dest, bad.as_uri())
    assert not dest.exists()
    monkeypatch.setattr(hellaswag, "HELLASWAG_VAL_EXAMPLES", len(EXAMPLES))
    assert hellaswag.fetch(dest, url) == dest and dest.read_bytes() == path.read_bytes()
    assert [p.name for p in dest.parent.iterdir()] == [dest.name]  # no temporary file left behind


def test_labels_as_strings_are_read(tmp_path):
    """The Hugging Face copy (Rowan/hellaswag) stores labels as strings: such a file reads the same."""
    records = [json.loads(line) for line in write_examples(tmp_path / "a.jsonl").read_text().splitlines()]
    (tmp_path / "b.jsonl").write_text("".join(json.dumps({**r, "label": str(r["label"])}) + "\n" for r in records))
    assert hellaswag.read_examples(tmp_path / "b.jsonl") == hellaswag.read_examples(tmp_path / "a.jsonl")
    assert len(hellaswag.read_examples(tmp_path / "a.jsonl", limit=2)) == 2


def test_shards_hold_every_example_once_and_their_counts_add_up(files):
    path, _, _, model = files
    examples = hellaswag.encode(GPT2Tokenizer(), hellaswag.read_examples(path))
    whole = hellaswag.counts(hellaswag.score(model, examples, progress=False))
    for world in (1, 2, 3, 4, 9):
        shards = [hellaswag.shard(list(range(len(examples))), r, world) for r in range(world)]
        assert sorted(i for s in shards for i in s) == list(range(len(examples)))
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
        parts = [hellaswag.counts(hellaswag.score(model, hellaswag.shard(examples, r, world), progress=False))
                 for r in range(world)]
        assert tuple(map(sum, zip(*parts))) == whole


# ---------------------------------------------------------------- in the training loop


def tensorboard_scalars(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


@pytest.fixture(scope="module")
def gpt2_data(tmp_path_factory):
    from gpt_lightning.data.prepare import prepare

    root = tmp_path_factory.mktemp("gpt2_data")
    (root / "corpus.txt").write_text(" ".join(text for ctx, endings, _ in EXAMPLES for text in (ctx, *endings)) * 20)
    prepare(str(root / "corpus.txt"), "gpt2", root / "data")
    return root / "data"


def fit_args(data: Path, out: Path, hellaswag_file: Path, **extra: str) -> list[str]:
    args = {
        "--data.data_dir": str(data), "--data.block_size": "16", "--data.batch_size": "4", "--data.val_batches": "2",
        "--model.n_layer": "2", "--model.n_head": "2", "--model.n_embd": "32", "--model.compile": "false",
        "--model.warmup_steps": "1", "--model.learning_rate": "1e-2",
        "--trainer.max_steps": "5", "--trainer.accelerator": "cpu", "--trainer.devices": "1",
        "--trainer.precision": "32-true", "--trainer.enable_progress_bar": "false",
        "--trainer.enable_model_summary": "false", "--trainer.limit_val_batches": "0",
        "--trainer.default_root_dir": str(out), "--checkpoint.dirpath": str(out / "ckpt"),
        "--sample.max_new_tokens": "0",
        "--eval.hellaswag_every_n_steps": "2", "--eval.hellaswag_path": str(hellaswag_file),
        **extra,
    }
    return [x for kv in args.items() for x in kv]


def final_model_score(ckpt: Path, hellaswag_file: Path) -> tuple[float, float]:
    from gpt_lightning.weights.load import load_checkpoint_model

    model, tokenizer = load_checkpoint_model(ckpt)
    examples = hellaswag.encode(tokenizer, hellaswag.read_examples(hellaswag_file))
    scores = hellaswag.score(model, examples, progress=False)
    correct, correct_norm, n = hellaswag.counts(scores)
    return correct / n, correct_norm / n


def test_fit_logs_hellaswag_at_optimizer_steps(gpt2_data, files, tmp_path, capsys):
    path = files[0]
    main(["fit", *fit_args(gpt2_data, tmp_path, path, **{"--trainer.accumulate_grad_batches": "2"})])
    out = capsys.readouterr().out
    scalars = tensorboard_scalars(tmp_path / "lightning_logs" / "version_0")
    # every 2 optimizer steps (not micro-batches), and after the last (5th) step; logged at the index of the step
    # just taken, as train/loss and val/loss are
    assert [s for s, _ in scalars["eval/hellaswag_acc_norm"]] == [1, 3, 4]
    assert [s for s, _ in scalars["eval/hellaswag_acc"]] == [1, 3, 4]
    acc, acc_norm = final_model_score(tmp_path / "ckpt" / "last.ckpt", path)
    assert scalars["eval/hellaswag_acc"][-1][1] == pytest.approx(acc, abs=1e-6)
    assert scalars["eval/hellaswag_acc_norm"][-1][1] == pytest.approx(acc_norm, abs=1e-6)
    assert f"step 5: hellaswag acc_norm {acc_norm:.4f}, acc {acc:.4f} ({len(EXAMPLES)} examples, " in out


def test_fit_skips_hellaswag_for_a_char_model_with_a_note(char_data, files, tmp_path, capsys):
    path = files[0]
    args = fit_args(char_data, tmp_path, path, **{"--trainer.max_steps": "2"})
    main(["fit", *args])
    captured = capsys.readouterr()
    assert "--eval.hellaswag_every_n_steps is skipped: HellaSwag needs a GPT-2-BPE model" in captured.out + captured.err
    assert "eval/hellaswag_acc_norm" not in tensorboard_scalars(tmp_path / "lightning_logs" / "version_0")


@pytest.mark.slow
def test_two_ddp_ranks_reduce_the_counts_exactly(gpt2_data, files, tmp_path):
    """Two CPU ranks over gloo each score their share of the 7 examples (4 + 3); the logged accuracies are those
    of the final model on all 7, counted exactly."""
    path = files[0]
    args = fit_args(gpt2_data, tmp_path, path, **{"--trainer.devices": "2", "--trainer.strategy": "ddp",
                                                   "--trainer.max_steps": "2"})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "gpt_lightning", "fit", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    scalars = tensorboard_scalars(tmp_path / "lightning_logs" / "version_0")
    acc, acc_norm = final_model_score(tmp_path / "ckpt" / "last.ckpt", path)
    assert scalars["eval/hellaswag_acc"] == [(1, pytest.approx(acc, abs=1e-6))]
    assert scalars["eval/hellaswag_acc_norm"] == [(1, pytest.approx(acc_norm, abs=1e-6))]
    assert f"({len(EXAMPLES)} examples, " in proc.stdout + proc.stderr  # the reduced count, not a rank's share
