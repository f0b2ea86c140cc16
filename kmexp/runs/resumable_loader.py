"""The training loader's position in the checkpoint, for an exact mid-epoch resume.

Lightning stores the ``state_dict()`` of every training loader that has one and hands it
back through ``load_state_dict()`` before iterating; it does not skip batches itself. A
:class:`ResumableDataLoader` (a ``DataLoader`` whose class is swapped in, so Lightning's
re-instantiation for distributed samplers keeps working) records

- the random state just before ``iter()`` (worker seeds, and with workers the shuffle order,
  come from it) and just before the first batch (without workers the sampler draws its
  shuffle order there; with several loaders, as in multi-task training, that is after every
  loader's ``iter()``),
- the random state before each of the last few batches was fetched (Lightning fetches one
  batch ahead of training, so the batch being trained at save time was loaded earlier),
- how many batches training completed in the current epoch (told by
  :class:`kmexp.runs.last_checkpoint.LastCheckpoint`).

On resume it re-creates the iterator from the saved state, skips the completed batches (by
index when batches are loaded in this process, by loading and dropping them when workers
load them, so worker random streams stay aligned), reloads the batches that were already
fetched with their saved random states, and puts the random state back to the checkpoint's.
The next batches are then the ones an uninterrupted run would have seen, bit for bit.

Limit: with Lightning's ``max_size_cycle`` combined loaders, a shorter loader that wrapped
around inside the lost window restarts its own epoch from the beginning.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch.utils.data import DataLoader

from kmexp.runs import rng_state

_HISTORY = 4  # fetch-ahead depth covered (Lightning prefetches 1)


class ResumableDataLoader(DataLoader):
    """A DataLoader that reports and restores its position (see the module docstring)."""

    def _resumable_init(self) -> None:
        if "_rl_ready" not in self.__dict__:
            self.__dict__.update(_rl_ready=True, _rl_iter_rng=None, _rl_first_rng=None, _rl_fetch_rng={}, _rl_fetched=0,
                                 _rl_completed=0, _rl_epoch_done=False, _rl_pending=None)

    # --- told by the LastCheckpoint callback ---------------------------------------------
    def mark_completed(self) -> None:
        self._resumable_init()
        self._rl_completed += 1

    def mark_epoch_done(self) -> None:
        self._resumable_init()
        self._rl_epoch_done = True

    # --- Lightning's _Stateful protocol ----------------------------------------------------
    def state_dict(self) -> dict:
        self._resumable_init()
        if self._rl_epoch_done or self._rl_iter_rng is None:
            return {"position": "epoch_start"}
        c = self._rl_completed
        refetch = [self._rl_fetch_rng[j] for j in range(c, self._rl_fetched) if j in self._rl_fetch_rng]
        return {"position": "mid_epoch", "completed": c, "iter_rng": self._rl_iter_rng,
                "first_fetch_rng": self._rl_first_rng, "refetch_rng": refetch}

    def load_state_dict(self, state: dict) -> None:
        self._resumable_init()
        self._rl_pending = state if state.get("position") == "mid_epoch" else None

    # --- iteration -----------------------------------------------------------------------
    def __iter__(self) -> Iterator:
        self._resumable_init()
        pending, self._rl_pending = self._rl_pending, None
        self.__dict__.update(_rl_fetch_rng={}, _rl_fetched=0, _rl_completed=0, _rl_epoch_done=False,
                             _rl_first_rng=None)
        if pending is None:
            self._rl_iter_rng = rng_state.capture()
            return self._recording(super().__iter__(), [])
        return self._resumed(pending)

    def _resumed(self, state: dict) -> Iterator:
        now = rng_state.capture()  # the checkpoint's state, restored by LastCheckpoint
        rng_state.restore(state["iter_rng"])
        self._rl_iter_rng = state["iter_rng"]
        it = super().__iter__()
        self._rl_first_rng = state.get("first_fetch_rng")
        if self._rl_first_rng is not None:
            rng_state.restore(self._rl_first_rng)
        completed = int(state["completed"])
        sampler_iter = getattr(it, "_sampler_iter", None)
        if self.num_workers == 0 and sampler_iter is not None:
            for _ in range(completed):  # skip by index: no data loaded
                next(sampler_iter)
        else:
            for _ in range(completed):  # workers: load and drop, so their random streams line up
                next(it)
        buffered = []
        for rng in state["refetch_rng"]:  # batches fetched ahead of training before the save
            rng_state.restore(rng)
            buffered.append(next(it))
        rng_state.restore(now)
        self.__dict__.update(_rl_fetched=completed, _rl_completed=completed)
        self._rl_fetch_rng.update({completed + i: rng for i, rng in enumerate(state["refetch_rng"])})
        return self._recording(it, buffered)

    def _recording(self, it: Iterator, buffered: list) -> Iterator:
        for batch in buffered:
            self._rl_fetched += 1
            yield batch
        while True:
            before = rng_state.capture()
            try:
                batch = next(it)
            except StopIteration:
                return
            j = self._rl_fetched
            if j == 0:
                self._rl_first_rng = before
            self._rl_fetch_rng[j] = before
            self._rl_fetch_rng.pop(j - _HISTORY, None)
            self._rl_fetched += 1
            yield batch


def make_resumable(loader):
    """Turn every ``DataLoader`` inside ``loader`` (a loader, a CombinedLoader, a dict or list
    of loaders) into a :class:`ResumableDataLoader`, in place; return ``loader``."""
    from pytorch_lightning.utilities import CombinedLoader

    if isinstance(loader, CombinedLoader):
        for dl in loader.flattened:
            make_resumable(dl)
    elif isinstance(loader, dict):
        for dl in loader.values():
            make_resumable(dl)
    elif isinstance(loader, (list, tuple)):
        for dl in loader:
            make_resumable(dl)
    elif type(loader) is DataLoader:
        loader.__class__ = ResumableDataLoader
    return loader


def resumable_training_data(datamodule) -> None:
    """Make the datamodule's training loaders resumable (wraps its ``train_dataloader``)."""
    original = datamodule.train_dataloader

    def train_dataloader():
        return make_resumable(original())

    datamodule.train_dataloader = train_dataloader
