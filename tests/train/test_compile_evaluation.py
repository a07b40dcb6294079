"""Evaluation survives torch.compile: a tiny GPT-2-BPE `fit` with --model.compile true logs the same HellaSwag
accuracies, text samples and validation losses as the same run without compiling, and its evaluations compile
nothing after the first round (torch._dynamo's counters). The compiler backend is aot_eager (TorchDynamo and
AOTAutograd trace and guard as for inductor, with no code generated: inductor takes minutes per graph on this
2-core CPU; train/compile.py's BACKEND).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hellaswag_helpers import EXAMPLES, write_examples
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gpt_lightning.cli import main
from gpt_lightning.train import compile as compile_module
from gpt_lightning.train.callbacks import TextSampleCallback

TENSORBOARD = {"class_path": "lightning.pytorch.loggers.TensorBoardLogger", "init_args": {"save_dir": "{root}"}}


@pytest.fixture(scope="module")
def gpt2_data(tmp_path_factory) -> Path:
    from gpt_lightning.data.prepare import prepare

    root = tmp_path_factory.mktemp("gpt2_data")
    (root / "corpus.txt").write_text(" ".join(text for ctx, endings, _ in EXAMPLES for text in (ctx, *endings)) * 20)
    prepare(str(root / "corpus.txt"), "gpt2", root / "data")
    write_examples(root / "hellaswag_val.jsonl")
    return root


def fit(data_root: Path, out: Path, compile: bool, monkeypatch) -> tuple[dict, list[int]]:
    """Run `fit` (validation, HellaSwag and a text sample every 2 of 6 steps); return what TensorBoard got and
    the number of graphs TorchDynamo had compiled at the end of each validation."""
    import json

    import torch._dynamo

    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    graphs = []
    sample = TextSampleCallback.on_validation_end

    def counting(self, trainer, pl_module):
        sample(self, trainer, pl_module)
        graphs.append(torch._dynamo.utils.counters["stats"]["unique_graphs"])

    monkeypatch.setattr(TextSampleCallback, "on_validation_end", counting)
    logger = json.dumps(TENSORBOARD).replace("{root}", str(out))
    args = {
        "--data.data_dir": str(data_root / "data"),
        "--data.block_size": "16",
        "--data.batch_size": "4",
        "--data.val_batches": "3",
        "--model.n_layer": "2",
        "--model.n_head": "2",
        "--model.n_embd": "32",
        "--model.compile": str(compile).lower(),
        "--model.warmup_steps": "1",
        "--model.learning_rate": "1e-2",
        "--trainer.max_steps": "6",
        "--trainer.log_every_n_steps": "1",
        "--val_every_n_steps": "2",
        "--trainer.accelerator": "cpu",
        "--trainer.devices": "1",
        "--trainer.precision": "32-true",
        "--trainer.logger": logger,
        "--trainer.enable_progress_bar": "false",
        "--trainer.enable_model_summary": "false",
        "--trainer.default_root_dir": str(out),
        "--checkpoint.dirpath": str(out / "ckpt"),
        "--sample.max_new_tokens": "12",
        "--sample.prompt": "A man is",
        "--eval.hellaswag_every_n_steps": "2",
        "--eval.hellaswag_path": str(data_root / "hellaswag_val.jsonl"),
    }
    main(["fit", *[x for kv in args.items() for x in kv]])
    (run_dir,) = [p.parent for p in out.rglob("events.out.tfevents.*")]
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    logged = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    (sample_tag,) = [t for t in events.Tags()["tensors"] if t.startswith("samples")]
    logged["samples"] = [(e.step, e.tensor_proto.string_val[0].decode()) for e in events.Tensors(sample_tag)]
    return logged, graphs


@pytest.mark.slow  # two 6-step runs, one of them compiled (~40 s on 2 cores)
def test_compiled_training_evaluates_as_eager_and_compiles_once(gpt2_data, tmp_path, monkeypatch):
    monkeypatch.setattr(compile_module, "BACKEND", "aot_eager")
    eager, _ = fit(gpt2_data, tmp_path / "eager", compile=False, monkeypatch=monkeypatch)
    compiled, graphs = fit(gpt2_data, tmp_path / "compiled", compile=True, monkeypatch=monkeypatch)
    # validations at steps 0 (the sanity check), 2, 4, 6; the last one's count is after every kind of evaluation ran
    assert len(graphs) == 4 and graphs[0] >= 1, graphs
    # training's graph and validation's (eval mode, no gradients); after the first round of evaluations (step 2)
    # nothing is compiled again: HellaSwag and the samples run the eager model, validation reuses its graph
    assert graphs[1] == graphs[-1] <= 3, graphs
    print("graphs compiled at each validation's end:", graphs)
    for tag in ("train/loss", "val/loss"):
        steps, values = zip(*compiled[tag])
        assert [s for s, _ in eager[tag]] == list(steps) and len(steps) >= 3
        torch.testing.assert_close(torch.tensor(values), torch.tensor([v for _, v in eager[tag]]), atol=1e-5, rtol=0)
    for tag in ("eval/hellaswag_acc", "eval/hellaswag_acc_norm", "samples"):
        assert [s for s, _ in compiled[tag]] == [2, 4, 6], tag
        assert compiled[tag] == eager[tag], tag
