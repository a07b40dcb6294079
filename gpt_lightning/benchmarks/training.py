"""How much does Lightning cost? Our Trainer path against a hand-written PyTorch loop, same everything else.

    python -m gpt_lightning bench --config configs/NAME.yaml [--steps N] [--rounds R] [--model.* --data.* ...]

Both paths are built from the same config, as `fit` builds them: the same GPT and initialisation, the same
DataModule and batches, the same AdamW (the module's configure_optimizers) and LR schedule, precision,
accumulation and gradient clipping. (a) is `Trainer.fit` with the preset's callbacks, logger and progress bar
(writing to a temporary folder, not the preset's out/); (b) is the loop below. They run alternately in one
process, several rounds; each round times `--steps` optimizer steps after `--warmup` untimed ones, and the
table reports tokens/s of each and the median ratio a/b. Validation is off in both: this is about training.

Also measured: the data pipeline alone (batches/s, against what training consumes), and the peak RSS of
each path, each in a fresh process of its own (a process's peak RSS never goes down).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import warnings
from typing import Optional

import torch
from lightning.pytorch import Callback

from gpt_lightning.cli.fit import GPTLightningCLI
from gpt_lightning.errors import UserError
from gpt_lightning.hardware import device_name, matmul_precision, peak_flops
from gpt_lightning.model import flops_per_token


class BenchCLI(GPTLightningCLI):
    """The `fit` command line with benchmark options, writing nothing outside a temporary folder."""

    def __init__(self, args: list[str], workdir: str) -> None:
        self.workdir = workdir
        with warnings.catch_warnings():
            # args come from `python -m gpt_lightning bench ...`, which Lightning mistakes for a mix-up
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            super().__init__(args=args, run=False)

    def add_arguments_to_parser(self, parser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_argument("--steps", type=int, default=100, help="Optimizer steps timed per round and path.")
        parser.add_argument(
            "--warmup", type=int, default=10, help="Untimed optimizer steps (at least 1) before each timing."
        )
        parser.add_argument(
            "--rounds",
            type=int,
            default=5,
            help="Rounds of (a) and (b), in alternating order; the table reports medians.",
        )
        parser.add_argument("--data_batches", type=int, default=500, help="Batches timed for the data pipeline alone.")
        parser.add_argument(
            "--rss", type=bool, default=True, help="Measure each path's peak RSS in a process of its own."
        )

    def before_instantiate_classes(self) -> None:
        super().before_instantiate_classes()
        config, tmp = self.config, self.workdir
        if config.steps < 1 or config.warmup < 1 or config.rounds < 1:
            raise UserError("bench needs --steps >= 1, --warmup >= 1 and --rounds >= 1; fix the values given.")
        trainer = config.trainer
        trainer.max_steps = config.warmup + config.steps
        # one device, one process: the plain loop is single-device (no DDP or FSDP to compare with)
        trainer.devices, trainer.num_nodes, trainer.strategy = 1, 1, "auto"
        trainer.limit_val_batches, trainer.num_sanity_val_steps, trainer.val_check_interval = 0, 0, None
        config.val_every_n_steps = None
        trainer.enable_model_summary = False
        trainer.default_root_dir = tmp
        logger = trainer.logger
        init_args = getattr(logger, "init_args", None)
        if init_args is not None and "save_dir" in init_args:
            init_args.save_dir = tmp
        config.checkpoint.dirpath = config.last_checkpoint.dirpath = os.path.join(tmp, "checkpoints")

    def fresh(self):
        """A new model (seeded alike), DataModule and Trainer from the parsed config."""
        torch.manual_seed(self.config.seed_everything)
        self.instantiate_classes()
        return self.model, self.datamodule, self.trainer


class StepClock:
    """Wall time from the end of optimizer step `start` to the end of step `stop` (after a CUDA sync)."""

    def __init__(self, start: int, stop: int, device: torch.device) -> None:
        self.start, self.stop, self.device = start, stop, device
        self.t0: Optional[float] = None
        self.seconds: Optional[float] = None
        self.cpu0: Optional[float] = None
        self.cpu_seconds: Optional[float] = None  # CPU time of this process: less noisy on a shared machine

    def at_step(self, step: int) -> None:
        if step == self.start and self.t0 is None:
            self.t0, self.cpu0 = self._now(), time.process_time()
        elif step == self.stop and self.seconds is None and self.t0 is not None:
            self.seconds = self._now() - self.t0
            self.cpu_seconds = time.process_time() - self.cpu0

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


class ClockCallback(Callback):
    def __init__(self, clock: StepClock) -> None:
        self.clock = clock

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.clock.at_step(trainer.global_step)  # global_step counts optimizer steps


def tokens_per_step(cli: BenchCLI) -> int:
    # the Trainer's accumulation: the CLI may derive it from --data.tokens_per_step
    return cli.config.data.batch_size * cli.config.data.block_size * cli.trainer.accumulate_grad_batches


def run_lightning(cli: BenchCLI) -> StepClock:
    """(a): Trainer.fit as `fit` runs it; the clock holds the timed steps' wall and CPU time."""
    module, datamodule, trainer = cli.fresh()
    clock = StepClock(cli.config.warmup, cli.config.warmup + cli.config.steps, trainer.strategy.root_device)
    trainer.callbacks.append(ClockCallback(clock))
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        trainer.fit(module, datamodule)  # the progress bar draws (its cost counts) but out of the table
    return clock


def run_plain(cli: BenchCLI) -> StepClock:
    """(b): the same training in a plain PyTorch loop, nanoGPT style; the clock holds the timed steps' times."""
    module, datamodule, trainer = cli.fresh()  # the Trainer is only read for its settings
    device = trainer.strategy.root_device
    precision = str(trainer.precision)
    if precision not in ("32-true", "32", "bf16-mixed", "16-mixed"):
        raise UserError(f"bench's plain loop supports precision 32-true, bf16-mixed and 16-mixed, not {precision}.")
    module.trainer = trainer  # read, as under fit, by configure_model (device) and configure_optimizers (precision)
    module.to(device)
    module.configure_model()  # torch.compile when the config asks for it
    model = module.model
    run = module.compiled or model  # the GPT, compiled as under fit when the config asks (eager if that fails)
    optimizers = module.configure_optimizers()
    optimizer = optimizers["optimizer"] if isinstance(optimizers, dict) else optimizers
    scheduler = optimizers["lr_scheduler"]["scheduler"] if isinstance(optimizers, dict) else None
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()
    scaler = torch.amp.GradScaler(device.type) if precision == "16-mixed" else None
    accum, clip = trainer.accumulate_grad_batches, trainer.gradient_clip_val
    clock = StepClock(cli.config.warmup, cli.config.warmup + cli.config.steps, device)

    batches = iter(datamodule.train_dataloader())
    model.train()
    for step in range(1, cli.config.warmup + cli.config.steps + 1):
        for _ in range(accum):
            x, y = next(batches)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast:
                _, loss = run(x, y)
            loss = loss / accum
            (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.unscale_(optimizer)
        if clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        if scaler:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if scheduler is not None:
            scheduler.step()
        clock.at_step(step)
    return clock


def data_batches_per_sec(cli: BenchCLI) -> float:
    """The DataModule's training loader alone, as both paths use it."""
    _, datamodule, _ = cli.fresh()
    batches = iter(datamodule.train_dataloader())
    for _ in range(10):  # start workers, touch the file
        next(batches)
    t0 = time.perf_counter()
    for _ in range(cli.config.data_batches):
        next(batches)
    return cli.config.data_batches / (time.perf_counter() - t0)


def memory_mb(field: str = "VmHWM") -> Optional[float]:
    """This process's peak (VmHWM) or current (VmRSS) resident memory, from /proc on Linux; None elsewhere.
    (getrusage's ru_maxrss is no substitute: it survives exec, so a spawned child reports its parent's peak.)"""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 2**10  # kB
    except OSError:
        pass
    return None


def _rss_child(path: str, args: list[str], queue) -> None:
    with tempfile.TemporaryDirectory() as tmp, quiet():
        cli = BenchCLI(args, tmp)
        setup = memory_mb("VmRSS")  # Python, torch, Lightning, the parsed config, one model
        (run_lightning if path == "lightning" else run_plain)(cli)
        queue.put((memory_mb("VmHWM"), setup))


def peak_rss_of(path: str, args: list[str]) -> tuple[Optional[float], Optional[float]]:
    """(peak RSS, RSS after setup) in MB of a fresh process that builds the config and trains one round
    through `path`."""
    ctx = multiprocessing.get_context("spawn")  # a clean process, not a copy of this one's memory
    queue = ctx.Queue()
    child = ctx.Process(target=_rss_child, args=(path, args, queue))
    child.start()
    child.join()
    return queue.get() if child.exitcode == 0 and not queue.empty() else (None, None)


@contextlib.contextmanager
def quiet():
    """Keep Lightning's per-fit messages ("GPU available", ...) out of the benchmark's table."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def main(args: list[str]) -> None:
    with tempfile.TemporaryDirectory(prefix="gpt_lightning_bench_") as tmp:
        cli = BenchCLI(args, tmp)
        c = cli.config
        device = cli.trainer.strategy.root_device
        precision = str(cli.trainer.precision)
        model_config = cli.model.config
        on_cpu = device.type == "cpu"
        hardware = f"cpu, {torch.get_num_threads()} threads" if on_cpu else device_name(device)
        print(
            f"bench: {hardware}, torch {torch.__version__}, precision {precision}, "
            f"compile {cli.model.hparams.compile}\n"
            f"model {model_config.n_layer} layers x {model_config.n_embd}, block {model_config.block_size}, "
            f"{tokens_per_step(cli):,} tokens per optimizer step (micro batch {c.data.batch_size} x block "
            f"{c.data.block_size} x accumulation {cli.trainer.accumulate_grad_batches})\n"
            f"each round: {c.warmup} warm-up + {c.steps} timed optimizer steps of (a) Lightning and (b) the plain "
            "loop, in alternating order",
            flush=True,
        )
        # On CPU the CPU-time ratio is printed too: on a shared machine, wall time also counts other processes.
        header = f"\n{'round':<7}{'(a) Lightning tok/s':>21}{'(b) plain tok/s':>17}{'a/b':>7}"
        print(header + (f"{'a/b by CPU time':>17}" if on_cpu else ""), flush=True)
        tokens = c.steps * tokens_per_step(cli)
        rows = []
        for r in range(c.rounds):
            with quiet():
                if r % 2 == 0:
                    a, b = run_lightning(cli), run_plain(cli)
                else:  # b first every other round, so drift in machine load hits both alike
                    b, a = run_plain(cli), run_lightning(cli)
            rows.append((tokens / a.seconds, tokens / b.seconds, b.seconds / a.seconds, b.cpu_seconds / a.cpu_seconds))
            print(
                f"{r + 1:<7}{rows[-1][0]:>21,.0f}{rows[-1][1]:>17,.0f}{rows[-1][2]:>7.3f}"
                + (f"{rows[-1][3]:>17.3f}" if on_cpu else ""),
                flush=True,
            )
        a, b, ratio, cpu_ratio = (statistics.median(column) for column in zip(*rows))
        print(
            f"{'median':<7}{a:>21,.0f}{b:>17,.0f}{ratio:>7.3f}"
            + (f"{cpu_ratio:>17.3f}" if on_cpu else "")
            + "   (goal: a/b >= 0.97)"
        )

        peak = peak_flops(device_name(device), matmul_precision(precision, device))
        if peak:
            fpt = flops_per_token(model_config)
            print(f"MFU (PaLM estimate): (a) {fpt * a / peak:.1%}, (b) {fpt * b / peak:.1%}")
        else:
            print(f"MFU: unknown, no peak FLOPs for {device_name(device)!r} at {precision}")

        with quiet():
            data = data_batches_per_sec(cli)
        micro_batch_tokens = c.data.batch_size * c.data.block_size
        consumed = a / micro_batch_tokens
        print(
            f"data pipeline alone: {data:,.0f} batches/s ({data * micro_batch_tokens:,.0f} tokens/s), "
            f"{data / consumed:.1f}x what (a) consumes ({consumed:,.1f} batches/s)   (goal: >= 10x)"
        )

    if c.rss:
        (a_peak, a_setup), (b_peak, b_setup) = peak_rss_of("lightning", args), peak_rss_of("plain", args)
        if a_peak and b_peak:
            print(
                f"peak RSS, each path in a fresh process: (a) fit {a_peak:,.0f} MB, (b) plain loop {b_peak:,.0f} MB, "
                f"ratio {a_peak / b_peak:.2f}   (goal: <= 2)\n"
                f"  of which imports, config and model before training: (a) {a_setup:,.0f} MB, (b) {b_setup:,.0f} MB"
            )
        else:
            print("peak RSS: not measured (needs Linux's /proc, or a measuring process failed)")


if __name__ == "__main__":
    main(sys.argv[1:])
