"""HellaSwag scoring checked against transformers' GPT2LMHeadModel on the exported model, the `evaluate` command,
and the data file (reading, fetching, offline). Nothing is downloaded.
"""

from __future__ import annotations

import json

import pytest
import torch
from hellaswag_helpers import BLOCK, EXAMPLES, make_files, reference, write_examples

from gpt_lightning.cli import main
from gpt_lightning.errors import UserError
from gpt_lightning.evaluation import hellaswag
from gpt_lightning.model import GPT, GPTConfig
from gpt_lightning.tokenizer import GPT2Tokenizer

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return make_files(tmp_path_factory.mktemp("hellaswag"))


@pytest.mark.slow  # scores with transformers' GPT-2 too
def test_log_likelihoods_and_accuracies_equal_transformers(files):
    path, _, hf_dir, model, labelled = files
    ref_sums, ref_lengths, ref_acc, ref_acc_norm = reference(hf_dir, labelled)
    assert ref_acc_norm == 4 / 7 and 0 < ref_acc < 1  # not all right or all wrong (see make_files)
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


def test_batching_and_padding_change_no_score(files):
    path, _, _, model, _ = files
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


@pytest.mark.slow  # scores with transformers' GPT-2 too
@pytest.mark.parametrize("which", ["ckpt", "hf"])
def test_evaluate_command_prints_the_reference_numbers(files, capsys, which):
    path, ckpt, hf_dir, _, labelled = files
    limit = 5
    _, _, ref_acc, ref_acc_norm = reference(hf_dir, labelled[:limit])
    assert ref_acc_norm == 3 / 5
    target = ckpt if which == "ckpt" else hf_dir
    main(
        [
            "evaluate",
            "--ckpt_path",
            str(target),
            "--tasks",
            "hellaswag",
            "--limit",
            str(limit),
            "--hellaswag_path",
            str(path),
            "--device",
            "cpu",
            "--progress",
            "false",
        ]
    )
    row = parse_table(capsys.readouterr().out)
    assert row == {"task": "hellaswag", "examples": limit, "acc": round(ref_acc, 4), "acc_norm": round(ref_acc_norm, 4)}


def test_evaluate_reads_a_nanogpt_checkpoint(files, tmp_path, capsys):
    """nanoGPT's own out-*/ckpt.pt (GPT-2 vocabulary padded to 50304, compiled, with mask buffers) loads as
    `generate` loads it, and scores as the same model scored directly."""
    from nanogpt_helpers import write_nanogpt_run

    path = files[0]
    ckpt, model, _ = write_nanogpt_run(tmp_path / "out-gpt2", "gpt2", compiled=True, mask_buffers=True)
    scores = hellaswag.score(model, hellaswag.encode(GPT2Tokenizer(), hellaswag.read_examples(path)), progress=False)
    correct, correct_norm, n = hellaswag.counts(scores)
    main(["evaluate", "--ckpt_path", str(ckpt), "--hellaswag_path", str(path), "--progress", "false"])
    row = parse_table(capsys.readouterr().out)
    assert row == {
        "task": "hellaswag",
        "examples": n,
        "acc": round(correct / n, 4),
        "acc_norm": round(correct_norm / n, 4),
    }


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
    hparams = {
        "vocab_size": 65,
        "block_size": 16,
        "n_layer": 1,
        "n_head": 1,
        "n_embd": 8,
        "tokenizer": {"kind": "char", "chars": [chr(32 + i) for i in range(65)]},
    }
    sd = {f"model.{k}": v for k, v in GPT(config).state_dict().items()}
    torch.save({"hyper_parameters": hparams, "state_dict": sd}, tmp_path / "char.ckpt")
    line = run_error(["evaluate", "--ckpt_path", str(tmp_path / "char.ckpt"), "--hellaswag_path", str(path)], capsys)
    assert "GPT-2-BPE" in line and "char model" in line


def test_unknown_task_and_bad_limit_are_refused(files, capsys):
    path, ckpt, _, _, _ = files
    assert "Unknown task" in run_error(["evaluate", "--ckpt_path", str(ckpt), "--tasks", "no_such_task"], capsys)
    assert "--limit" in run_error(["evaluate", "--ckpt_path", str(ckpt), "--limit", "0"], capsys)


def test_offline_without_the_file_says_where_to_put_it(files, tmp_path, capsys, monkeypatch):
    _, ckpt, _, _, _ = files
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


@pytest.mark.slow  # scores with transformers' GPT-2 too
def test_shards_hold_every_example_once_and_their_counts_add_up(files):
    path, _, _, model, _ = files
    examples = hellaswag.encode(GPT2Tokenizer(), hellaswag.read_examples(path))
    whole = hellaswag.counts(hellaswag.score(model, examples, progress=False))
    for world in (1, 2, 3, 4, 9):
        shards = [hellaswag.shard(list(range(len(examples))), r, world) for r in range(world)]
        assert sorted(i for s in shards for i in s) == list(range(len(examples)))
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
        parts = [
            hellaswag.counts(hellaswag.score(model, hellaswag.shard(examples, r, world), progress=False))
            for r in range(world)
        ]
        assert tuple(map(sum, zip(*parts))) == whole


def test_without_lm_eval_other_tasks_name_the_eval_extra(files, capsys, monkeypatch):
    """A task that is not built in needs lm-evaluation-harness: without it, one line naming the extra to install;
    `--tasks` with no value lists what can run."""
    import sys

    monkeypatch.setitem(sys.modules, "lm_eval.tasks", None)  # import lm_eval.tasks now fails, as when not installed
    line = run_error(["evaluate", "--ckpt_path", str(files[1]), "--tasks", "hellaswag,arc_easy"], capsys)
    assert "arc_easy" in line and "pip install 'gpt_lightning[eval]'" in line
    main(["evaluate", "--tasks"])
    listing = capsys.readouterr().out
    assert "built in: hellaswag" in listing and "pip install 'gpt_lightning[eval]'" in listing
