"""HellaSwag accuracy while training (`--eval.hellaswag_every_n_steps N`), as build-nanogpt and llm.c track it.

Every N optimizer steps, and once more when training ends, each DDP rank scores its own share of the examples
(every world_size-th one); the counts of correct answers are added up over the ranks with torchmetrics'
SumMetric, so `eval/hellaswag_acc` and `eval/hellaswag_acc_norm` are exact fractions of all examples scored,
whatever the number of ranks. The scoring is evaluation/hellaswag.py's, the same as `evaluate`'s.
"""

from __future__ import annotations

import time
from typing import Literal, Optional

import lightning as L
import torch
from lightning.pytorch.strategies import FSDPStrategy
from lightning.pytorch.utilities import rank_zero_info
from torchmetrics import SumMetric

from gpt_lightning.errors import UserError
from gpt_lightning.evaluation import hellaswag
from gpt_lightning.train.throughput import ThroughputLogger


class HellaSwagEval(L.Callback):
    """Logs HellaSwag accuracy (eval/hellaswag_acc, eval/hellaswag_acc_norm) every N optimizer steps of `fit`."""

    def __init__(
        self,
        hellaswag_every_n_steps: int = 0,
        hellaswag_limit: Optional[int] = None,
        hellaswag_path: Optional[str] = None,
        hellaswag_batch_size: int = 8,
        hellaswag_protocol: Literal["completion", "lm-eval"] = "completion",
    ) -> None:
        """HellaSwag accuracy during `fit`.

        Args:
            hellaswag_every_n_steps: score HellaSwag every this many optimizer steps and when training ends
                (0: never). GPT-2-BPE models only; a char model is skipped with a note.
            hellaswag_limit: score the first N examples only (None: all 10,042). The time grows with N; a few
                hundred examples already tell a learning model from chance (0.25), if noisily.
            hellaswag_path: the HellaSwag validation file (default data/hellaswag/hellaswag_val.jsonl, downloaded
                there when missing and the network allows).
            hellaswag_batch_size: examples per forward pass (4 rows each).
            hellaswag_protocol: `completion` (build-nanogpt and llm.c's scoring, GPT-2 124M acc_norm 0.2955) or
                `lm-eval` (lm-evaluation-harness's hellaswag task, GPT-2 124M acc_norm 0.3114); docs/evaluation.md.
        """
        if hellaswag_every_n_steps < 0:
            raise UserError(f"--eval.hellaswag_every_n_steps must be 0 (off) or more, got {hellaswag_every_n_steps}.")
        if hellaswag_limit is not None and hellaswag_limit < 1:
            raise UserError(f"--eval.hellaswag_limit must be at least 1 (or null for all), got {hellaswag_limit}.")
        if hellaswag_batch_size < 1:
            raise UserError(f"--eval.hellaswag_batch_size must be at least 1, got {hellaswag_batch_size}.")
        self.every_n_steps = hellaswag_every_n_steps
        hellaswag.check_protocol(hellaswag_protocol, "--eval.hellaswag_protocol")
        self.limit, self.path, self.batch_size = hellaswag_limit, hellaswag_path, hellaswag_batch_size
        self.protocol = hellaswag_protocol
        self.examples: Optional[list[hellaswag.EncodedExample]] = None  # this rank's share, once set up
        self.total = 0  # examples over all ranks
        # correct by acc, correct by acc_norm, examples: sums of integers, exact in float32 up to 2^24
        self.sums = [SumMetric(), SumMetric(), SumMetric()]
        self._last_step = -1  # global_step of the last evaluation

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.examples = None
        if stage != "fit" or self.every_n_steps < 1:
            return
        reason = hellaswag.unsupported_tokenizer(pl_module.hparams.get("tokenizer"))
        if reason is None and isinstance(trainer.strategy, FSDPStrategy):
            # Under FSDP a forward needs every rank in step, and the ranks' shares differ in length.
            reason = "HellaSwag in the training loop does not run under FSDP (use `evaluate` on a checkpoint)"
        if reason:
            rank_zero_info(f"--eval.hellaswag_every_n_steps is skipped: {reason}.")
            return
        # Rank 0 finds (or downloads) the file; the others learn where it is, or the error, so none waits alone.
        found: tuple[Optional[str], Optional[str]] = (None, None)
        if trainer.is_global_zero:
            try:
                found = (str(hellaswag.locate(self.path, option="--eval.hellaswag_path")), None)
            except UserError as e:
                found = (None, str(e))
        path, error = trainer.strategy.broadcast(found, src=0)
        if error:
            raise UserError(error)
        from gpt_lightning.tokenizer import tokenizer_from_meta

        examples = hellaswag.read_examples(path, self.limit, self.protocol)
        self.total = len(examples)
        mine = hellaswag.shard(examples, trainer.global_rank, trainer.world_size)
        self.examples = hellaswag.encode(tokenizer_from_meta(pl_module.hparams["tokenizer"]), mine, self.protocol)
        rank_zero_info(
            f"HellaSwag ({self.protocol} protocol) every {self.every_n_steps} optimizer steps: {self.total:,} "
            f"examples from {path}" + (f", about {len(mine):,} per rank" if trainer.world_size > 1 else "")
        )

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs, batch, batch_idx) -> None:
        if self.examples is None or (batch_idx + 1) % trainer.accumulate_grad_batches:
            return  # off, or mid-accumulation: global_step has not moved
        if trainer.global_step % self.every_n_steps == 0 and trainer.global_step != self._last_step:
            self.evaluate(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.examples is not None and trainer.global_step not in (self._last_step, 0):
            self.evaluate(trainer, pl_module)  # the final model, as LastCheckpoint saves it

    def evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, float]:
        """Score this rank's share, add the counts up over all ranks, log the accuracies (every rank must call)."""
        start = time.perf_counter()
        clocks = [cb for cb in trainer.callbacks if isinstance(cb, ThroughputLogger)]
        for clock in clocks:
            clock.pause(pl_module)  # tokens/s and MFU measure training, not this
        scores = hellaswag.score(
            pl_module.model,
            self.examples,
            batch_size=self.batch_size,
            progress=False,
            forward_context=trainer.precision_plugin.forward_context,  # the run's autocast, if any
        )
        for metric, count in zip(self.sums, hellaswag.counts(scores)):
            metric.to(pl_module.device).update(torch.tensor(float(count), device=pl_module.device))
        correct, correct_norm, total = (float(m.compute()) for m in self.sums)  # compute() reduces over ranks
        for metric in self.sums:
            metric.reset()
        self._last_step = trainer.global_step
        for clock in clocks:
            clock.resume(pl_module)
        metrics = {"eval/hellaswag_acc": correct / total, "eval/hellaswag_acc_norm": correct_norm / total}
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                # optimizer steps done, the step every scalar and checkpoint name uses
                logger.log_metrics(metrics, step=trainer.global_step)
            line = (
                f"step {trainer.global_step}: hellaswag acc_norm {metrics['eval/hellaswag_acc_norm']:.4f}, "
                f"acc {metrics['eval/hellaswag_acc']:.4f} ({int(total):,} examples, {self.protocol} protocol, "
                f"{time.perf_counter() - start:.1f} s)"
            )
            bar = trainer.progress_bar_callback
            if bar is not None and bar.is_enabled:
                bar.print(line)  # above the bar, not through it
            else:
                print(line)
        return metrics
