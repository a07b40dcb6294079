import numpy as np
import pytest
import torch

from gpt_lightning.data.bins import read_meta
from gpt_lightning.data.datamodule import TokenBinDataModule, TrainWindows, ValWindows, gather_windows


def test_windows_are_shifted_by_one():
    tokens = np.arange(100, dtype=np.uint16)
    x, y = gather_windows(tokens, np.array([0, 10, 83]), block_size=16)
    assert x.shape == y.shape == (3, 16) and x.dtype == torch.int64
    assert x[1].tolist() == list(range(10, 26))
    assert torch.equal(y, x + 1)


def test_train_stream_is_seeded_per_rank_and_batch(char_data):
    meta = read_meta(char_data)

    def first(seed, rank, n=3, start=0):
        it = iter(TrainWindows(char_data, meta, 4, 16, seed, rank, start_batch=start))
        return [next(it)[0] for _ in range(n)]

    a, b = first(1, 0), first(1, 0)
    assert all(torch.equal(p, q) for p, q in zip(a, b))  # reproducible
    other_rank = first(1, 1)
    assert not any(torch.equal(p, q) for p, q in zip(a, other_rank))  # ranks draw different batches
    other_seed = first(2, 0)
    assert not any(torch.equal(p, q) for p, q in zip(a, other_seed))
    # batch k only depends on (seed, rank, k): starting at k=2 gives the third batch
    assert torch.equal(first(1, 0, n=1, start=2)[0], a[2])


def test_windows_cover_the_whole_split_uniformly(char_data):
    meta = read_meta(char_data)
    ds = TrainWindows(char_data, meta, 256, 16, 0, 0)
    starts = np.concatenate([ds.batch_starts(k, meta["train_tokens"]) for k in range(40)])
    assert starts.min() >= 0 and starts.max() <= meta["train_tokens"] - 17
    # uniform: each tenth of the range gets about a tenth of the windows
    hist, _ = np.histogram(starts, bins=10, range=(0, meta["train_tokens"] - 16))
    assert hist.min() > 0.8 * len(starts) / 10


def test_workers_deliver_the_same_stream_as_the_main_process(char_data):
    dm = TokenBinDataModule(char_data, block_size=16, batch_size=4, num_workers=0, seed=5)
    single = [b[0] for _, b in zip(range(6), dm.train_dataloader())]
    dm2 = TokenBinDataModule(char_data, block_size=16, batch_size=4, num_workers=2, seed=5)
    multi = [b[0] for _, b in zip(range(6), dm2.train_dataloader())]
    assert all(torch.equal(p, q) for p, q in zip(single, multi))


def test_validation_set_is_fixed_and_sharded_over_ranks(char_data):
    meta = read_meta(char_data)
    whole = list(ValWindows(char_data, meta, 4, 16, num_batches=6, rank=0, world_size=1))
    again = list(ValWindows(char_data, meta, 4, 16, num_batches=6, rank=0, world_size=1))
    assert len(whole) == 6 and all(torch.equal(a[0], b[0]) for a, b in zip(whole, again))
    r0 = list(ValWindows(char_data, meta, 4, 16, num_batches=6, rank=0, world_size=2))
    r1 = list(ValWindows(char_data, meta, 4, 16, num_batches=6, rank=1, world_size=2))
    assert [torch.equal(a[0], b[0]) for a, b in zip(whole, [r0[0], r1[0], r0[1], r1[1], r0[2], r1[2]])] == [True] * 6


def test_resume_position_comes_from_the_checkpoint_state(char_data):
    dm = TokenBinDataModule(char_data, block_size=16, batch_size=4, seed=5)
    stream = [b[0] for _, b in zip(range(5), dm.train_dataloader())]
    resumed = TokenBinDataModule(char_data, block_size=16, batch_size=4, seed=5)
    resumed.load_state_dict({"batches_consumed": 3})
    assert torch.equal(next(iter(resumed.train_dataloader()))[0], stream[3])


def test_vocab_and_tokenizer_come_from_meta(char_data):
    dm = TokenBinDataModule(char_data)
    assert dm.vocab_size == read_meta(char_data)["vocab_size"]
    assert dm.tokenizer_meta["kind"] == "char"


def test_resuming_on_another_world_size_warns(char_data):
    dm = TokenBinDataModule(char_data, block_size=16, batch_size=4, seed=5)
    with pytest.warns(UserWarning, match="resumed on 1"):
        dm.load_state_dict({"batches_consumed": 3, "world_size": 2})
    assert dm.batches_consumed == 3
