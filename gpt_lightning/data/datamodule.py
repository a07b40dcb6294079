"""The DataModule: random training windows and fixed validation windows over memory-mapped token bins.

Training draws windows as nanoGPT does (x = t[i:i+T], y = t[i+1:i+1+T], i uniform), but batch k of the
stream is a pure function of (seed, rank, k). That gives three properties nanoGPT's global-RNG draw lacks:
DDP ranks and dataloader workers never draw the same batches, a run is reproducible whatever the number of
workers, and resuming only needs the number of batches consumed, which the DataModule stores in the
checkpoint (Lightning restores it before building the dataloaders).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, Optional

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from gpt_lightning.data.bins import check_folder, describe_missing, open_split, read_meta, split_tokens
from gpt_lightning.data.nanogpt import is_nanogpt_data_folder, nanogpt_data_meta
from gpt_lightning.data.sampling import EpochSampler, epochs_seen
from gpt_lightning.errors import UserError
from gpt_lightning.tokenizer import compact_tokenizer_meta


def gather_windows(tokens: np.ndarray, starts: np.ndarray, block_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x (B, T) = tokens[i : i+T] and y (B, T) = tokens[i+1 : i+1+T] for each start i, as int64 tensors."""
    idx = starts[:, None] + np.arange(block_size + 1)  # (B, T+1)
    chunk = torch.from_numpy(tokens[idx].astype(np.int64))  # one gather from the memmap
    return chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()


class TrainWindows(IterableDataset):
    """An endless stream of training batches; batch k is drawn by np.random.default_rng([seed, rank, k])."""

    def __init__(
        self,
        path: Path,
        meta: dict,
        batch_size: int,
        block_size: int,
        seed: int,
        rank: int,
        start_batch: int = 0,
        sampler: Optional[EpochSampler] = None,
    ) -> None:
        self.path, self.meta = path, meta  # the path, not the array: workers open their own memmap
        self.batch_size, self.block_size = batch_size, block_size
        self.seed, self.rank, self.start_batch = seed, rank, start_batch
        self.sampler = sampler  # --data.sampling epoch: windows without replacement (sampling.py)

    def batch_starts(self, k: int, n_tokens: int) -> np.ndarray:
        if self.sampler is not None:
            return self.sampler.batch_starts(k, n_tokens)
        rng = np.random.default_rng([self.seed, self.rank, k])
        return rng.integers(0, n_tokens - self.block_size, size=self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        tokens = open_split(self.path, "train", self.meta)
        worker = get_worker_info()
        # workers take batches round-robin, which is the order the DataLoader hands them out in
        k, stride = (self.start_batch, 1) if worker is None else (self.start_batch + worker.id, worker.num_workers)
        while True:
            yield gather_windows(tokens, self.batch_starts(k, len(tokens)), self.block_size)
            k += stride


class ValWindows(IterableDataset):
    """A fixed set of validation batches: windows spread evenly over the split, the same for every run.

    Each rank takes every world_size-th batch, so together the ranks cover the set once.
    """

    def __init__(
        self, path: Path, meta: dict, batch_size: int, block_size: int, num_batches: int, rank: int, world_size: int
    ) -> None:
        n_tokens = split_tokens(meta, "val")
        if n_tokens <= block_size:
            raise UserError(
                f"The validation split has {n_tokens} tokens, too few for one window of block_size {block_size}; "
                "lower --data.block_size or prepare with a larger --val_fraction."
            )
        if num_batches < world_size:
            # a rank without batches would skip validation while the others wait for it to reduce val/loss
            raise UserError(
                f"--data.val_batches {num_batches} is less than the {world_size} ranks; give every rank at least "
                f"one validation batch (--data.val_batches >= {world_size})."
            )
        self.path, self.meta, self.block_size = path, meta, block_size
        starts = np.linspace(0, n_tokens - block_size - 1, num_batches * batch_size).astype(np.int64)
        self.batches = starts.reshape(num_batches, batch_size)[rank::world_size]

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        tokens = open_split(self.path, "val", self.meta)
        for starts in self.batches:
            yield gather_windows(tokens, starts, self.block_size)


def launched_rank() -> int:
    """This process's global rank as the launcher set it (torchrun, SLURM, Lightning's own); 0 when alone.
    Known before any Trainer exists, which is when the CLI first reads meta.json."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0)


def prepare_if_missing(data_dir: Path, source: Optional[str], tokenizer: str = "char") -> None:
    """Prepare data_dir from source when it has no meta.json yet: the one step that may download and tokenize.

    Rank 0 prepares; the other ranks, which torchrun or SLURM start at the same time, wait for its meta.json.
    Without a source nothing happens (reading the metadata then says how to prepare the folder).
    """
    if source is None or read_meta(data_dir) is not None or is_nanogpt_data_folder(data_dir):
        return  # prepared, or nanoGPT's bins: used as they are (a preset's source must not write into them)
    if launched_rank() == 0:
        from gpt_lightning.data.prepare import prepare  # the tokenization pipeline, only when there is work

        prepare(source, tokenizer, Path(data_dir))
    else:
        wait_for_meta(Path(data_dir))


def option_given(args: list[str], key: str) -> bool:
    """Whether the command line sets --KEY (as `--KEY=V` or `--KEY V`)."""
    return any(str(a) == f"--{key}" or str(a).startswith(f"--{key}=") for a in args)


def settle_data_options(data, args: list[str]) -> None:
    """What the run will really train on, before anything is prepared or read (the CLI calls this on the parsed
    --data options, which the saved config.yaml then records):

    - A preset's `source` and `tokenizer` belong to the preset's own data folder: when the command line points
      --data.data_dir elsewhere without giving them, they are dropped, so a new folder is not quietly filled with
      the preset's corpus (an unprepared one is then a one-line error saying how to prepare it).
    - The folder is prepared from `source` if it is not yet (prepare_if_missing).
    - A tokenizer that disagrees with the prepared folder is an error; an unset one becomes the folder's.
    """
    if option_given(args, "data.data_dir"):
        for key in ("source", "tokenizer"):
            if not option_given(args, f"data.{key}"):
                data[key] = None
    prepare_if_missing(data.data_dir, data.source, data.tokenizer or "char")
    meta = read_meta(Path(data.data_dir))  # (a nanoGPT folder has none: its bins are read as they are)
    if meta is None:
        return
    kind = meta.get("tokenizer", {}).get("kind")
    if data.tokenizer is not None and kind is not None and data.tokenizer != kind:
        raise UserError(
            f"--data.tokenizer {data.tokenizer} disagrees with {data.data_dir}, which was prepared with the {kind} "
            f"tokenizer; drop the option (or set it to {kind}), or prepare another folder with --tokenizer "
            f"{data.tokenizer}."
        )
    data.tokenizer = kind


def wait_for_meta(data_dir: Path, poll_s: float = 2.0, timeout_s: float = 24 * 3600) -> dict:
    """meta.json of a folder that rank 0 is preparing, once it is there (it is written last)."""
    print(f"waiting for rank 0 to prepare {data_dir} ...", flush=True)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        meta = read_meta(data_dir)
        if meta is not None:
            return meta
        time.sleep(poll_s)
    raise UserError(
        f"{data_dir} was not prepared within {timeout_s:.0f} s; if the folder is not shared with rank 0's node, "
        "prepare it on every node beforehand with `python -m gpt_lightning prepare`."
    )


class TokenBinDataModule(L.LightningDataModule):
    def __init__(
        self,
        data_dir: Path = Path("data/shakespeare_char"),
        source: Optional[str] = None,
        tokenizer: Optional[Literal["char", "gpt2"]] = None,
        block_size: int = 256,
        batch_size: int = 64,
        val_batches: int = 200,
        num_workers: int = 0,
        seed: int = 1337,
        tokens_per_step: Optional[int] = None,
        sampling: Literal["random", "epoch"] = "random",
    ) -> None:
        """Token bins made by `prepare`, served as random training windows and fixed validation windows.

        Args:
            data_dir: folder with train.bin, val.bin and meta.json, or a nanoGPT data folder (train.bin, val.bin and,
                for characters, meta.pkl; no meta.json), which is read as it is.
            source: what to prepare into data_dir when its bins are missing (`tinyshakespeare`, a .txt file or a
                folder of them); None means the folder must already be prepared.
            tokenizer: tokenizer used when preparing from source (`char` or `gpt2`; None: `char`). A prepared
                folder's own tokenizer is used; a different one set here is an error.
            block_size: context length T of each window; the model's block_size is linked to it.
            batch_size: windows per micro-batch, per device.
            val_batches: batches in one validation pass, over all devices together.
            num_workers: dataloader worker processes for training batches (0: in the main process).
            seed: seed of the training window stream (batch k on rank r depends only on seed, r and k).
            tokens_per_step: global batch in tokens per optimizer step; the CLI derives
                trainer.accumulate_grad_batches = tokens_per_step / (batch_size x block_size x devices x nodes).
                None: accumulate_grad_batches is used as given.
            sampling: `random`: window starts drawn uniformly with replacement (nanoGPT's). `epoch`: without
                replacement, each epoch a fresh random order of the split's non-overlapping windows (with a
                random phase offset per epoch), ranks never sharing a window within an epoch; see sampling.py.
        """
        super().__init__()
        for name, value, least in (
            ("block_size", block_size, 1), ("batch_size", batch_size, 1), ("val_batches", val_batches, 1),
            ("num_workers", num_workers, 0), ("tokens_per_step", tokens_per_step or 1, 1),
        ):  # fmt: skip
            if value < least:
                raise UserError(f"--data.{name} must be at least {least}, got {value}.")
        self.data_dir = Path(data_dir)
        self.source, self.tokenizer = source, tokenizer
        self.block_size, self.batch_size = block_size, batch_size
        self.val_batches, self.num_workers, self.seed = val_batches, num_workers, seed
        self.tokens_per_step = tokens_per_step
        self.sampling = sampling
        self.batches_consumed = 0  # of the training stream, restored from a checkpoint on resume
        self._meta: Optional[dict] = None
        self._tokens_per_byte: Optional[float] = None  # nan: unknown

    # ------------------------------------------------------------ meta.json (a pure read) and preparing on demand

    @property
    def meta(self) -> dict:
        """The folder's meta.json, checked against block_size; reading it never writes anything (the CLI calls
        prepare_if_missing first when --data.source is set)."""
        if self._meta is None:
            meta = read_meta(self.data_dir)
            if meta is None and is_nanogpt_data_folder(self.data_dir):
                meta = nanogpt_data_meta(self.data_dir)  # read as it is; nothing is written into it
            if meta is None and Path(self.data_dir).exists() and not Path(self.data_dir).is_dir():
                raise UserError(
                    f"--data.data_dir {self.data_dir} is a file; give the folder `prepare` wrote (meta.json, "
                    "train.bin, val.bin) or a nanoGPT data folder."
                )
            if meta is None:
                how = "run `fit` with --data.source set" if self.source else "set --data.source"
                raise UserError(
                    f"Data folder {self.data_dir} {describe_missing(self.data_dir)}; prepare it with "
                    f"`python -m gpt_lightning prepare --source SRC --out {self.data_dir}`, or {how} to prepare "
                    "it automatically."
                )
            check_folder(self.data_dir, meta, self.block_size)  # before any training starts
            self._meta = meta
        return self._meta

    def prepare_if_missing(self) -> None:
        """Prepare data_dir from `source` when it is not prepared yet (rank 0 prepares, the others wait)."""
        prepare_if_missing(self.data_dir, self.source, self.tokenizer or "char")

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    @property
    def tokenizer_meta(self) -> dict:
        return compact_tokenizer_meta(self.meta["tokenizer"])  # as the model's hparams store it

    @property
    def tokens_per_byte(self) -> Optional[float]:
        """Tokens per UTF-8 byte of the validation text, for val/bpb (data/bytes.py); None for an empty split."""
        if self._tokens_per_byte is None:
            from gpt_lightning.data.bytes import split_bytes

            n_bytes = split_bytes(self.data_dir, self.meta, "val")
            self._tokens_per_byte = split_tokens(self.meta, "val") / n_bytes if n_bytes else float("nan")
        return None if math.isnan(self._tokens_per_byte) else self._tokens_per_byte

    def prepare_data(self) -> None:
        self.prepare_if_missing()  # for a DataModule used without the CLI; a no-op once the folder exists

    # ------------------------------------------------------------ loaders

    def _rank(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def train_dataloader(self) -> DataLoader:
        rank, _ = self._rank()
        dataset = TrainWindows(
            self.data_dir,
            self.meta,
            self.batch_size,
            self.block_size,
            self.seed,
            rank,
            self.batches_consumed,
            self.epoch_sampler(),
        )
        return DataLoader(
            dataset,
            batch_size=None,  # the dataset yields whole batches: one gather per batch, not per window
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def val_dataloader(self) -> DataLoader:
        rank, world_size = self._rank()
        dataset = ValWindows(
            self.data_dir, self.meta, self.batch_size, self.block_size, self.val_batches, rank, world_size
        )
        return DataLoader(dataset, batch_size=None, pin_memory=torch.cuda.is_available())

    test_dataloader = val_dataloader

    def epoch_sampler(self) -> Optional[EpochSampler]:
        """This rank's epoch sampler under `--data.sampling epoch`, else None."""
        if self.sampling != "epoch":
            return None
        rank, world_size = self._rank()
        n_tokens = split_tokens(self.meta, "train")
        return EpochSampler(n_tokens, self.block_size, self.batch_size, self.seed, rank, world_size)

    def epochs_seen(self, global_step: int) -> float:
        """Passes over the train split after `global_step` optimizer steps (logged as train/epoch)."""
        trainer = self.trainer
        windows = global_step * trainer.accumulate_grad_batches * trainer.world_size * self.batch_size
        return epochs_seen(windows, split_tokens(self.meta, "train"), self.block_size, self.sampling)

    # ------------------------------------------------------------ the stream's position in checkpoints

    def state_dict(self) -> dict:
        # Counted from the optimizer step, not from batches fetched: the Trainer prefetches one batch, so
        # a count of fetched batches would be one ahead. Checkpoints are written at step boundaries.
        trainer = self.trainer
        consumed = trainer.global_step * trainer.accumulate_grad_batches if trainer is not None else 0
        state = {"batches_consumed": consumed, "seed": self.seed, "world_size": self._rank()[1]}
        sampler = self.epoch_sampler()
        if sampler is not None:  # where the epoch stream stands: (epoch, index of the next window in it)
            state["sampling"] = {"kind": "epoch", **sampler.position(consumed)}
        return state

    def load_state_dict(self, state: dict) -> None:
        self.batches_consumed = int(state.get("batches_consumed", 0))
        sampler, position = self.epoch_sampler(), state.get("sampling")
        if sampler is not None and position is not None and position.get("kind") == "epoch":
            self.batches_consumed = sampler.batches_consumed(position)
        saved, now = state.get("world_size"), self._rank()[1]
        if saved is not None and saved != now:
            rank_zero_warn(
                f"This checkpoint was written by {saved} process(es) and is resumed on {now}: each rank's window "
                "stream continues from the same batch index, but the set of streams differs, so the data order "
                "is not the one the original run would have seen."
            )
