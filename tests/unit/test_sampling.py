"""--data.sampling epoch: every window exactly once per epoch, ranks disjoint, the position in the checkpoint."""

import numpy as np
import pytest
import torch

from gpt_lightning.data.bins import read_meta
from gpt_lightning.data.datamodule import TokenBinDataModule, TrainWindows, gather_windows
from gpt_lightning.data.sampling import EpochSampler
from gpt_lightning.errors import UserError

N, T, B = 1000, 16, 4  # 1000 // 16 - 1 = 61 windows per epoch: batches straddle epoch borders


def epoch_starts(sampler: EpochSampler, epoch: int) -> np.ndarray:
    w = sampler.n_windows
    return sampler.starts(epoch * w, w)


def test_every_window_exactly_once_per_epoch_with_moving_borders():
    sampler = EpochSampler(N, T, B, seed=3)
    assert sampler.n_windows == N // T - 1
    offsets = set()
    for epoch in range(6):
        starts = np.sort(epoch_starts(sampler, epoch))
        offset = int(starts[0])
        offsets.add(offset)
        assert 0 <= offset < T
        # non-overlapping windows side by side, the whole split covered once, the last target inside it
        assert np.array_equal(starts, offset + T * np.arange(sampler.n_windows))
        assert starts[-1] + T + 1 <= N
    assert len(offsets) > 1, "the phase offset must change between epochs"
    orders = [tuple(epoch_starts(sampler, e) - epoch_starts(sampler, e).min()) for e in range(3)]
    assert len(set(orders)) == 3, "each epoch must visit the windows in a fresh order"


def test_ranks_share_no_window_within_an_epoch_and_together_cover_it():
    world = 2
    samplers = [EpochSampler(N, T, B, seed=3, rank=r, world_size=world) for r in range(world)]
    w = samplers[0].n_windows
    batches_per_rank = 3 * w // (world * B)  # about three epochs, batches straddling the borders
    seen: dict[tuple[int, int], list[int]] = {}  # (epoch, start) -> ranks that took it
    for rank, sampler in enumerate(samplers):
        for k in range(batches_per_rank):
            first = sampler.first_window(k)
            for j, start in enumerate(sampler.batch_starts(k, N)):
                seen.setdefault(((first + j) // w, int(start)), []).append(rank)
    assert all(len(ranks) == 1 for ranks in seen.values()), "a window was dealt twice within an epoch"
    for epoch in (0, 1):  # complete epochs: every window of the epoch, each by one rank
        assert sorted(s for e, s in seen if e == epoch) == sorted(epoch_starts(samplers[0], epoch).tolist())


def test_position_round_trip_and_batch_k_is_pure():
    sampler = EpochSampler(N, T, B, seed=3, world_size=2)
    for consumed in (0, 5, 7, 8, 30):
        assert sampler.batches_consumed(sampler.position(consumed)) == consumed
    assert sampler.position(8) == {"epoch": 1, "index": 8 * 2 * B - sampler.n_windows}
    fresh = EpochSampler(N, T, B, seed=3, world_size=2)
    assert np.array_equal(fresh.batch_starts(20, N), sampler.batch_starts(20, N))


def test_too_little_data_for_one_batch_is_refused():
    with pytest.raises(UserError, match="fewer than one batch on every rank"):
        EpochSampler(100, 16, 4, seed=0, world_size=2)


def test_datamodule_serves_the_epoch_stream_and_resumes_from_its_position(char_data):
    meta = read_meta(char_data)
    dm = TokenBinDataModule(char_data, block_size=T, batch_size=B, seed=5, sampling="epoch")
    stream = [b for _, b in zip(range(5), dm.train_dataloader())]
    sampler = EpochSampler(meta["train_tokens"], T, B, seed=5)
    tokens = np.fromfile(char_data / "train.bin", dtype=meta["dtype"])
    for k, (x, y) in enumerate(stream):
        ex, ey = gather_windows(tokens, sampler.batch_starts(k, len(tokens)), T)
        assert torch.equal(x, ex) and torch.equal(y, ey)
    resumed = TokenBinDataModule(char_data, block_size=T, batch_size=B, seed=5, sampling="epoch")
    resumed.load_state_dict({"batches_consumed": 0, "sampling": {"kind": "epoch", **sampler.position(3)}})
    assert torch.equal(next(iter(resumed.train_dataloader()))[0], stream[3][0])
    # the default is nanoGPT's random stream, unchanged
    random = TokenBinDataModule(char_data, block_size=T, batch_size=B, seed=5)
    expected = next(iter(TrainWindows(char_data, meta, B, T, 5, 0)))[0]
    assert torch.equal(next(iter(random.train_dataloader()))[0], expected)
