"""HellaSwag's lm-eval protocol equals lm-evaluation-harness's own `hellaswag` task: the text clean-up and the
query/choices of its utils.py on fixture records, and per example the log-likelihoods and the acc / acc_norm choice
of the harness running its own task definition (hellaswag.yaml + utils.py, pointed at a local file) with our model.
Skipped without lm-eval. The completion protocol is checked against transformers in test_hellaswag.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from gpt_lightning.evaluation import hellaswag
from gpt_lightning.model import GPT, GPTConfig
from gpt_lightning.tokenizer import GPT2Tokenizer

lm_eval = pytest.importorskip("lm_eval")
datasets = pytest.importorskip("datasets")

# Records in the original release's format, with its artifacts: WikiHow's [header]/[title]/[step] markers, a
# lower-case ctx_b to capitalise, an empty ctx_b, double spaces, surrounding spaces, non-ASCII text.
RECORDS = [
    {
        "activity_label": "Roof shingle removal",
        "ctx_a": "A man is sitting on a roof.",
        "ctx_b": "he",
        "endings": [
            "is using wrap to wrap a pair of skis.",
            "is ripping level tiles off.",
            "is holding a rubik's cube.",
            "starts pulling up roofing on a roof.",
        ],
        "label": 3,
    },
    {
        "activity_label": "Baking cookies",
        "ctx_a": "[header] How to bake cookies [title] Preheat the oven. [step] Set it to 350 degrees.",
        "ctx_b": "[title] mix the  dough.",
        "endings": [
            "[step] Combine butter and sugar in a bowl. [title] Add the eggs.",
            " [substeps] Eat the dough raw.  ",
            "[title] Paint the oven blue. [step] Let it dry.",
            "Put the bowl in the freezer [title] overnight.",
        ],
        "label": 0,
    },
    {
        "activity_label": "Café",
        "ctx_a": "Two girls are standing in a kitchen.",
        "ctx_b": "",
        "endings": ["They make a crème brûlée.", "They fly away.", "They swim in the pool.", "The kitchen explodes."],
        "label": 0,
    },
    {
        "activity_label": "Skateboarding",
        "ctx_a": "A boy is on a skateboard at a park. He rides up and down the ramps while his friends cheer.",
        "ctx_b": "the boy",
        "endings": ["rides down the ramp.", "eats the ramp.", "sings to the ramp.", "becomes a ramp."],
        "label": 1,
    },
]


def write_records(path: Path) -> Path:
    with open(path, "w", encoding="utf-8") as f:
        for i, r in enumerate(RECORDS):
            ctx = r["ctx_a"] + " " + r["ctx_b"]
            f.write(json.dumps({"ind": i, "ctx": ctx, "split": "val", "source_id": f"t~{i}", **r}) + "\n")
    return path


def test_preprocessing_equals_the_harness_utils(tmp_path):
    from lm_eval.tasks.hellaswag import utils

    texts = [t for r in RECORDS for t in (r["ctx_a"], r["ctx_b"], *r["endings"])]
    texts += [" [title] x", "a [step]  b [title]c", "[header] [title] [step]", "  spaces   around  "]
    assert [hellaswag.preprocess_lm_eval(t) for t in texts] == [utils.preprocess(t) for t in texts]
    theirs = utils.process_docs(datasets.Dataset.from_list(RECORDS))
    ours = hellaswag.read_examples(write_records(tmp_path / "val.jsonl"), protocol="lm-eval")
    assert [(ex.context, list(ex.endings), ex.label) for ex in ours] == [
        (doc["query"], doc["choices"], doc["gold"]) for doc in theirs
    ]
    completion = hellaswag.read_examples(tmp_path / "val.jsonl")
    assert completion[1].context != ours[1].context  # the two protocols read different text


def harness_task(folder: Path, data: Path) -> Path:
    """The harness's own hellaswag.yaml and utils.py, copied, with the data set pointed at a local file."""
    import yaml

    src = Path(lm_eval.__file__).parent / "tasks" / "hellaswag"
    folder.mkdir()
    shutil.copy(src / "utils.py", folder / "utils.py")
    text = (src / "hellaswag.yaml").read_text()
    text = text.replace("!function utils.process_docs", "PROCESS_DOCS")  # yaml.safe_load does not know the tag
    config = yaml.safe_load(text)
    assert config["process_docs"] == "PROCESS_DOCS" and config["output_type"] == "multiple_choice"
    config.update(
        task="hellaswag_local",
        dataset_path="json",
        dataset_kwargs={"data_files": {"validation": str(data)}},
        training_split=None,
    )
    (folder / "hellaswag_local.yaml").write_text(
        yaml.safe_dump(config).replace("PROCESS_DOCS", "!function utils.process_docs"), encoding="utf-8"
    )
    return folder


@pytest.mark.slow  # one harness run (~10 s on 2 cores)
def test_scores_and_choices_equal_the_harness_task(tmp_path):
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    from gpt_lightning.evaluation.lm_eval_backend import GPTLightningLM

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50257, block_size=64, n_layer=2, n_head=2, n_embd=32)).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.2)
    data = write_records(tmp_path / "val.jsonl")
    tasks = harness_task(tmp_path / "tasks", data)
    results = simple_evaluate(
        model=GPTLightningLM(model=model, tokenizer=GPT2Tokenizer(), batch_size=4),
        tasks=["hellaswag_local"],
        task_manager=TaskManager(include_path=str(tasks)),
        log_samples=True,
        bootstrap_iters=0,
    )
    samples = sorted(results["samples"]["hellaswag_local"], key=lambda s: s["doc_id"])
    examples = hellaswag.encode(GPT2Tokenizer(), hellaswag.read_examples(data, protocol="lm-eval"), "lm-eval")
    scores = hellaswag.score(model, examples, batch_size=2, progress=False)
    assert len(samples) == len(scores) == len(RECORDS)
    for sample, score in zip(samples, scores):
        logprobs = [r[0][0] for r in sample["resps"]]
        torch.testing.assert_close(
            torch.tensor(score.logprobs, dtype=torch.float64),
            torch.tensor(logprobs, dtype=torch.float64),
            atol=1e-5,
            rtol=0,
        )
        assert (float(score.pred == score.label), float(score.pred_norm == score.label)) == (
            sample["acc"],
            sample["acc_norm"],
        )
    accs = [(s.pred == s.label, s.pred_norm == s.label) for s in scores]
    assert len({a for a, _ in accs}) == 2 or len({b for _, b in accs}) == 2, "all right or all wrong: weak check"
    correct, correct_norm, n = hellaswag.counts(scores)
    assert results["results"]["hellaswag_local"]["acc,none"] == pytest.approx(correct / n)
    assert results["results"]["hellaswag_local"]["acc_norm,none"] == pytest.approx(correct_norm / n)
