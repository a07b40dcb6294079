"""Our model as an lm-evaluation-harness backend, checked against the harness's own `hf` backend on the same model
exported with `export --format hf`: local tasks (YAMLs and small jsonl files written here, nothing downloaded) of all
three request types; every log-likelihood equal to 1e-5 (or float32's rounding of a long text's sum), every generated
text equal. Skipped without lm-eval.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from gpt_lightning.cli import main
from gpt_lightning.model import GPT, GPTConfig

lm_eval = pytest.importorskip("lm_eval")
pytest.importorskip("transformers")

BLOCK = 64
GPT2_META = {"kind": "gpt2", "encoding": "gpt2"}

QUESTIONS = [
    ("The capital of France is", ["Paris", "London", "a large dog", "blue"], 0),
    ("Answer: ", ["yes", "no", "maybe so", "never"], 1),  # a trailing space moves into the continuation
    ("", ["Once upon a time", "The end", "Hello", "Café crème"], 2),  # empty context: starts at <|endoftext|>
    (" ".join(["A very long question that goes on and on"] * 10), ["stop", "go", "wait here", "run"], 3),  # cropped
    ("Two plus two equals", [" four", "five", "4", "twenty-two"], 0),  # a choice with its own leading space
]
TEXTS = ["Some text to score as a whole.", " ".join(["A document longer than the block."] * 20), "Naïve café. ✓"]
PROMPTS = ["Once upon a time", "The weather today is", "Q: What is 2+2?\nA:", "x", " ".join(["long prompt"] * 40)]

TASK_YAMLS = {
    "tiny_mc": {
        "output_type": "multiple_choice",
        "doc_to_text": "{{question}}",
        "doc_to_choice": "choices",
        "doc_to_target": "label",
        "metric_list": [{"metric": "acc"}, {"metric": "acc_norm"}],
    },
    "tiny_rolling": {
        "output_type": "loglikelihood_rolling",
        "doc_to_text": "",
        "doc_to_target": "{{text}}",
        "metric_list": [{"metric": "word_perplexity"}, {"metric": "bits_per_byte"}],
    },
    "tiny_gen": {
        "output_type": "generate_until",
        "doc_to_text": "{{prompt}}",
        "doc_to_target": "{{answer}}",
        "generation_kwargs": {"until": ["e", "\n"], "max_gen_toks": 12, "do_sample": False},
        "metric_list": [{"metric": "exact_match"}],
    },
    "tiny_gen_long": {  # no stop sequence but <|endoftext|>: the uncut text, to see that the stops above cut
        "output_type": "generate_until",
        "doc_to_text": "{{prompt}}",
        "doc_to_target": "{{answer}}",
        "generation_kwargs": {"until": [], "max_gen_toks": 12, "do_sample": False},
        "metric_list": [{"metric": "exact_match"}],
    },
}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_tasks(folder: Path) -> Path:
    """One YAML per task in TASK_YAMLS, each reading a jsonl file beside it (datasets' json loader: no network)."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    data = {
        "tiny_mc": [{"question": q, "choices": c, "label": a} for q, c, a in QUESTIONS],
        "tiny_rolling": [{"text": t} for t in TEXTS],
        "tiny_gen": [{"prompt": p, "answer": "four"} for p in PROMPTS],
    }
    data["tiny_gen_long"] = data["tiny_gen"]
    for name, spec in TASK_YAMLS.items():
        jsonl = write_jsonl(folder / f"{name}.jsonl", data[name])
        config = {
            "task": name,
            "dataset_path": "json",
            "dataset_kwargs": {"data_files": {"test": str(jsonl)}},
            "test_split": "test",
            **spec,
        }
        (folder / f"{name}.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny random GPT-2-vocab model (padded to 50304 rows, as `fit` pads it) as a `fit`-style .ckpt, its export
    with `export --format hf`, and the task folder."""
    root = tmp_path_factory.mktemp("lm_eval")
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=50257, block_size=BLOCK, n_layer=2, n_head=2, n_embd=32, pad_vocab_multiple=64)
    model = GPT(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)  # larger than GPT-2's init: the choices' scores differ clearly
    keys = ("vocab_size", "block_size", "n_layer", "n_head", "n_embd", "pad_vocab_multiple")
    hparams = {**{k: getattr(config, k) for k in keys}, "bias": True, "tokenizer": GPT2_META}
    ckpt = root / "model.ckpt"
    torch.save(
        {"hyper_parameters": hparams, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()}}, ckpt
    )
    main(["export", "--ckpt_path", str(ckpt), "--out", str(root / "hf"), "--format", "hf"])
    return ckpt, root / "hf", write_tasks(root / "tasks")


def run_tasks(model, model_args, task_folder: Path, **kwargs) -> dict:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    return simple_evaluate(
        model=model,
        model_args=model_args,
        tasks=list(TASK_YAMLS),
        task_manager=TaskManager(include_path=str(task_folder)),
        log_samples=True,
        bootstrap_iters=0,
        **kwargs,
    )


def responses(results: dict, task: str) -> dict[int, list]:
    """doc_id -> the model's raw answers to that document's requests."""
    return {s["doc_id"]: s["resps"] for s in results["samples"][task]}


@pytest.mark.slow  # two harness runs (~15 s on 2 cores)
def test_every_log_likelihood_and_generation_equals_the_hf_backend(files, monkeypatch):
    from gpt_lightning.evaluation.lm_eval_backend import GPTLightningLM

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    ckpt, hf_dir, tasks = files
    ours = run_tasks(GPTLightningLM(str(ckpt), device="cpu", batch_size=3), None, tasks)
    theirs = run_tasks("hf", {"pretrained": str(hf_dir), "dtype": "float32"}, tasks, device="cpu", batch_size=3)
    for task in ("tiny_mc", "tiny_rolling"):
        a, b = responses(ours, task), responses(theirs, task)
        assert a.keys() == b.keys() and len(a) == len(QUESTIONS if task == "tiny_mc" else TEXTS)
        for doc in a:
            for (ll_a, *greedy_a), (ll_b, *greedy_b) in zip(
                (r[0] if isinstance(r[0], (list, tuple)) else [r[0]] for r in a[doc]),
                (r[0] if isinstance(r[0], (list, tuple)) else [r[0]] for r in b[doc]),
            ):
                # 1e-5; the hf backend sums in float32, which rounds a long text's -1500 to about 1e-4 (rel 2e-7)
                assert math.isfinite(ll_a) and ll_a == pytest.approx(ll_b, abs=1e-5, rel=2e-7), (task, doc)
                assert greedy_a == greedy_b
    for task in ("tiny_gen", "tiny_gen_long"):
        assert responses(ours, task) == responses(theirs, task), task
    # the stop sequences cut at least one generation short, and no stop string is left in what they return
    cut, whole = responses(ours, "tiny_gen"), responses(ours, "tiny_gen_long")
    assert any(len(cut[d][0][0]) < len(whole[d][0][0]) and whole[d][0][0].startswith(cut[d][0][0]) for d in cut)
    assert all("e" not in r[0][0] and "\n" not in r[0][0] for r in cut.values())
    # and the metrics the harness computes from them agree too
    for task in TASK_YAMLS:
        for metric, value in theirs["results"][task].items():
            if isinstance(value, float) and "stderr" not in metric:
                assert ours["results"][task][metric] == pytest.approx(value, rel=1e-5, abs=1e-6), (task, metric)


def test_the_backend_is_registered_by_name(files):
    from lm_eval.api.registry import get_model

    import gpt_lightning.evaluation.lm_eval_backend as backend

    assert get_model("gpt_lightning") is backend.GPTLightningLM
    lm = get_model("gpt_lightning").create_from_arg_string(f"ckpt_path={files[0]}", {"batch_size": 2, "device": "cpu"})
    assert (lm.batch_size, lm.max_length, lm.eot_token_id) == (2, BLOCK, 50256)


@pytest.mark.slow  # two harness runs through the command (~20 s on 2 cores)
def test_evaluate_runs_local_tasks_through_the_harness(files, tmp_path, capsys):
    """On the .ckpt and on its Hugging Face export (any path `generate` loads): one line per task with the harness's
    metrics, its full results JSON, and the same numbers from both."""
    ckpt, hf_dir, tasks = files
    saved = {}
    for name, path in (("ckpt", ckpt), ("hf", hf_dir)):
        out = tmp_path / f"{name}.json"
        args = ["evaluate", "--ckpt_path", str(path), "--tasks", "tiny_mc,tiny_gen", "--include_path", str(tasks)]
        main([*args, "--device", "cpu", "--output_path", str(out), "--progress", "false"])
        lines = capsys.readouterr().out.splitlines()
        saved[name] = json.loads(out.read_text())
        for task in ("tiny_mc", "tiny_gen"):
            line = next(line for line in lines if line.split()[:1] == [task])
            for metric, value in saved[name]["results"][task].items():
                if metric.endswith(",none") and "stderr" not in metric and isinstance(value, float):
                    assert f"{metric.split(',')[0]} {value:.4f}" in line
        assert len(saved[name]["samples"]["tiny_mc"]) == len(QUESTIONS)
    assert saved["ckpt"]["results"] == saved["hf"]["results"]


@pytest.mark.slow  # the harness indexes its ~15,000 task YAMLs (~20 s on 2 cores)
def test_a_task_that_is_neither_built_in_nor_known_is_one_line(files, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--ckpt_path", str(files[0]), "--tasks", "no_such_task_xyz"])
    assert exc.value.code == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert line.startswith("error: ") and "no_such_task_xyz" in line and "--list_tasks" in line
