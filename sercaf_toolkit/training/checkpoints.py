"""A Checkpointer whose checkpoints appear whole or not at all, and are
checked before they are loaded.

Authors
 * sercaf-toolkit developers 2026
"""

import errno
import logging
import os
import pathlib
import re
import shutil

import torch
import yaml
from speechbrain.core import INTRA_EPOCH_CKPT_FLAG
from speechbrain.utils.checkpoints import (
    CKPT_PREFIX,
    METAFNAME,
    PARAMFILE_EXT,
    Checkpoint,
    Checkpointer,
    average_checkpoints,
    average_state_dicts,
    ckpt_recency,
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from speechbrain.utils.distributed import (
    ddp_barrier,
    ddp_broadcast,
    if_main_process,
    main_process_only,
)

from sercaf_toolkit.errors import UserError
from sercaf_toolkit.integrity import damage, write_checksums

logger = logging.getLogger(__name__)

PARTIAL_PREFIX = ".partial-"
DAMAGED_SUFFIX = ".damaged"
# What torch.save raises when a write fails (a full disk, for one): a
# RuntimeError from its zip writer rather than an OSError.
_TORCH_WRITE_FAILURE = re.compile(
    r"PytorchStreamWriter|inline_container|file write failed|unexpected pos"
)
_LOW_SPACE = 64 * 2**20


class CheckpointSaveError(UserError):
    """A checkpoint could not be written (full disk, no permission).

    The previous checkpoints are left as they were, and no partial folder
    is left behind; the message names the folder and the cause.
    """


class AtomicCheckpointer(Checkpointer):
    """SpeechBrain's Checkpointer, writing and checking checkpoints whole.

    SpeechBrain writes a checkpoint's meta file first and its parameter
    files after, into the final folder: a process killed while saving
    leaves a folder that looks complete and fails (or half-loads) on
    recovery. Here every checkpoint is written into a hidden ``.partial-``
    folder, which is renamed to its final ``CKPT+...`` name only when all
    files are written (a rename is atomic); partial folders left by a
    killed process are never listed, and are removed at the next start.

    Last before the rename, the checkpoint's ``checksums.json`` records the
    size and SHA-256 of each of its files. Recovery checks them before
    anything is loaded: a damaged checkpoint (truncated, altered, missing a
    file) is moved aside as ``<name>.damaged`` with one warning, and the
    next one in order is tried; with none intact, nothing is loaded (a
    training run starts from scratch) and one warning says so.

    ``save_and_keep_only`` keeps at least the ``min_recent`` most recent
    checkpoints besides ``num_to_keep`` best ones for each key, so that a
    damaged newest checkpoint has an older one to fall back on. A save that
    fails removes what it wrote and raises :class:`CheckpointSaveError`.
    Arguments and behaviour are otherwise those of ``Checkpointer``.

    Example
    -------
    >>> import tempfile, torch
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> net = torch.nn.Linear(2, 2)
    >>> checkpointer = AtomicCheckpointer(folder, {"net": net})
    >>> checkpoint = checkpointer.save_checkpoint()
    >>> checkpoint.path.name.startswith("CKPT+"), checkpoint.path.exists()
    (True, True)
    >>> [p.name for p in folder.iterdir() if p.name.startswith(".partial")]
    []
    >>> sorted(p.name for p in checkpoint.path.iterdir())
    ['CKPT.yaml', 'checksums.json', 'net.ckpt']
    """

    def __init__(self, checkpoints_dir, *args, min_recent=2, **kwargs):
        super().__init__(checkpoints_dir, *args, **kwargs)
        self.min_recent = min_recent
        self._writing = None
        if if_main_process() and self.checkpoints_dir.exists():
            for leftover in self.checkpoints_dir.glob(PARTIAL_PREFIX + "*"):
                shutil.rmtree(leftover, ignore_errors=True)

    # Saving -------------------------------------------------------------

    def _new_checkpoint_dirpath(self):
        final = super()._new_checkpoint_dirpath()
        self._writing = final.with_name(PARTIAL_PREFIX + final.name)
        return self._writing

    def _custom_checkpoint_dirpath(self, name):
        final = super()._custom_checkpoint_dirpath(name)
        self._writing = final.with_name(PARTIAL_PREFIX + final.name)
        return self._writing

    def save_checkpoint(
        self, meta=None, end_of_epoch=True, name=None, verbosity=logging.INFO
    ):
        """Saves like ``Checkpointer.save_checkpoint``, then publishes.

        Under DDP, every process leaves only once the checkpoint is
        complete and renamed, so none can look for checkpoints too early.

        Raises
        ------
        CheckpointSaveError
            If a file could not be written; nothing of it is left.
        """
        self._writing = None
        try:
            checkpoint = super().save_checkpoint(
                meta=meta or {},
                end_of_epoch=end_of_epoch,
                name=name,
                verbosity=logging.DEBUG,  # it names the partial folder
            )
            ddp_barrier()  # every process has written what it writes
            if checkpoint is not None:  # the main process
                write_checksums(checkpoint.path)
                checkpoint = self._publish(checkpoint)
        except (OSError, RuntimeError) as error:
            if isinstance(error, RuntimeError) and not (
                _TORCH_WRITE_FAILURE.search(str(error))
            ):
                raise
            raise self._save_failed(error) from error
        ddp_barrier()
        if checkpoint is not None:
            kind = "end-of-epoch" if end_of_epoch else "intra-epoch"
            logger.log(
                verbosity, "Saved an %s checkpoint in %s", kind, checkpoint.path
            )
        return checkpoint

    def _save_failed(self, error):
        """Removes the partial folder; the error that names the cause."""
        folder = self.checkpoints_dir
        if self._writing is not None:
            shutil.rmtree(self._writing, ignore_errors=True)
            folder = self._writing.with_name(
                self._writing.name[len(PARTIAL_PREFIX) :]
            )
        if isinstance(error, OSError) and error.errno is not None:
            cause = os.strerror(error.errno)
            if error.filename:
                cause += f" ({error.filename})"
        else:
            cause = str(error).strip().splitlines()[0] if str(error) else ""
            cause = cause or type(error).__name__
            try:
                free = shutil.disk_usage(self.checkpoints_dir).free
            except OSError:
                free = None
            if free is not None and free < _LOW_SPACE:
                cause = (
                    f"{os.strerror(errno.ENOSPC)} "
                    f"({free / 2**20:.1f} MiB free; {cause})"
                )
        return CheckpointSaveError(
            f"could not save checkpoint {folder}: {cause}; the earlier "
            "checkpoints are intact: make room or fix the permissions, "
            "then rerun the same command to resume"
        )

    def _publish(self, checkpoint):
        partial = pathlib.Path(checkpoint.path)
        final = partial.with_name(partial.name[len(PARTIAL_PREFIX) :])
        if not final.name.startswith(CKPT_PREFIX):
            raise ValueError(f"unexpected checkpoint name {partial}")
        if final.exists():  # a custom name saved again: replace it
            shutil.rmtree(final)
        os.replace(partial, final)
        self._writing = None
        paramfiles = {
            key: final / pathlib.Path(path).name
            for key, path in checkpoint.paramfiles.items()
        }
        return Checkpoint(final, checkpoint.meta, paramfiles)

    def save_and_keep_only(
        self,
        meta=None,
        end_of_epoch=True,
        name=None,
        num_to_keep=1,
        keep_recent=True,
        importance_keys=None,
        max_keys=None,
        min_keys=None,
        ckpt_predicate=None,
        verbosity=logging.INFO,
    ):
        """Saves, then deletes all but the checkpoints worth keeping.

        Kept: the ``max(num_to_keep, min_recent)`` most recent checkpoints
        (with ``keep_recent``) and the ``num_to_keep`` best by each key;
        only checkpoints that pass ``ckpt_predicate`` may be deleted. See
        ``Checkpointer.save_and_keep_only`` for the arguments.
        """
        self.save_checkpoint(
            meta=meta, end_of_epoch=end_of_epoch, name=name, verbosity=verbosity
        )
        if end_of_epoch:
            # The epoch's end supersedes its intra-epoch checkpoints; kept,
            # they would count among the most recent and push out the
            # previous epoch's, the fallback for a damaged newest one.
            self._delete_intra_epoch_checkpoints(verbosity)
        orders = [({"min_key": key}, num_to_keep) for key in min_keys or []]
        orders += [({"max_key": key}, num_to_keep) for key in max_keys or []]
        orders += [
            ({"importance_key": key}, num_to_keep)
            for key in importance_keys or []
        ]
        if keep_recent:
            recent = max(num_to_keep, self.min_recent)
            orders.append(({"importance_key": ckpt_recency}, recent))
        candidates, kept = set(), set()
        for order, count in orders:
            found = self.find_checkpoints(
                ckpt_predicate=ckpt_predicate, **order
            )
            candidates.update(found)
            kept.update(found[:count])
        ddp_barrier()
        if if_main_process():
            for checkpoint in candidates - kept:
                shutil.rmtree(checkpoint.path)
                logger.log(
                    verbosity, "Deleted checkpoint in %s", checkpoint.path
                )
        ddp_barrier()

    def _delete_intra_epoch_checkpoints(self, verbosity):
        intra = self.find_checkpoints(
            ckpt_predicate=lambda c: INTRA_EPOCH_CKPT_FLAG in c.meta,
            max_num_checkpoints=None,
        )
        ddp_barrier()
        if if_main_process():
            for checkpoint in intra:
                shutil.rmtree(checkpoint.path)
                logger.log(
                    verbosity, "Deleted checkpoint in %s", checkpoint.path
                )
        ddp_barrier()

    # Listing and recovery -------------------------------------------------

    def _checkpoint_dirs(self):
        """The checkpoint folders: not partial, not set aside."""
        return [
            path
            for path in self.checkpoints_dir.iterdir()
            if path.name.startswith(CKPT_PREFIX)
            and DAMAGED_SUFFIX not in path.name
            and (path / METAFNAME).is_file()
        ]

    def list_checkpoints(self):
        """Lists the checkpoints (not those set aside, nor unreadable)."""
        checkpoints = []
        for path in self._checkpoint_dirs():
            checkpoint = _read_checkpoint(path)
            if checkpoint is not None:
                checkpoints.append(checkpoint)
        return checkpoints

    def recover_if_possible(
        self,
        importance_key=None,
        max_key=None,
        min_key=None,
        ckpt_predicate=None,
    ):
        """Loads the chosen checkpoint, if any, once its checksums match.

        A damaged checkpoint is moved aside as ``<name>.damaged`` with one
        warning, and the next one in order (most recent, or best by the
        key) is tried. Arguments and return value are those of
        ``Checkpointer.recover_if_possible``.
        """
        set_aside = 0
        if if_main_process():
            for path in self._checkpoint_dirs():
                if _read_checkpoint(path) is None:
                    self._set_aside(path, f"{METAFNAME} is unreadable")
                    set_aside += 1
        ddp_barrier()
        while True:
            checkpoint = self.find_checkpoint(
                importance_key, max_key, min_key, ckpt_predicate
            )
            if checkpoint is None:
                break
            reason = damage(checkpoint.path) if if_main_process() else None
            reason = ddp_broadcast(reason, src=0)
            if reason is None:
                self.load_checkpoint(checkpoint)
                return checkpoint
            if if_main_process():
                self._set_aside(checkpoint.path, reason)
            set_aside += 1
            ddp_barrier()
        if set_aside:
            logger.warning(
                "No intact checkpoint left in %s: starting from scratch",
                self.checkpoints_dir,
            )
        else:
            logger.info("Would load a checkpoint here, but none found yet.")
        return None

    @staticmethod
    def _set_aside(path, reason):
        path = pathlib.Path(path)
        target = path.with_name(path.name + DAMAGED_SUFFIX)
        number = 1
        while target.exists():
            number += 1
            target = path.with_name(f"{path.name}{DAMAGED_SUFFIX}{number}")
        os.replace(path, target)
        logger.warning(
            "Checkpoint %s is damaged (%s): skipped, moved aside to %s",
            path,
            reason,
            target.name,
        )


def _read_checkpoint(path):
    """The Checkpoint in ``path``; None if its meta file is unreadable."""
    try:
        with open(path / METAFNAME, encoding="utf-8") as source:
            meta = yaml.load(source, Loader=yaml.SafeLoader)
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return None
    if not isinstance(meta, dict) or "end-of-epoch" not in meta:
        return None
    try:
        paramfiles = {
            child.stem: child
            for child in path.iterdir()
            if child.suffix == PARAMFILE_EXT
        }
    except OSError:  # moved aside meanwhile (by the main process)
        return None
    return Checkpoint(path, meta, paramfiles)


@register_checkpoint_hooks
class RandomState:
    """Saves and restores torch's global random state with a checkpoint.

    The data order is already reproducible (SpeechBrain's samplers seed each
    epoch), but dropout and augmentation draw from the global generator; a
    resumed run restores it so that it continues exactly like a run that
    was never interrupted.

    Example
    -------
    >>> import tempfile, pathlib
    >>> state = RandomState()
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "rng.ckpt"
    >>> state.save(path)
    >>> first = torch.rand(3)
    >>> state.load(path)
    >>> torch.equal(torch.rand(3), first)
    True
    """

    @mark_as_saver
    @main_process_only
    def save(self, path):
        """Writes the CPU (and CUDA, if any) generator states to ``path``."""
        state = {"cpu": torch.get_rng_state()}
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        torch.save(state, path)

    @mark_as_loader
    def load(self, path, end_of_epoch=True):
        """Restores the generator states written by :meth:`save`."""
        state = torch.load(path, weights_only=True)
        torch.set_rng_state(state["cpu"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def averaged_state_dict(checkpoints, recoverable="model"):
    """The mean of a recoverable's state dicts over ``checkpoints``.

    Floating-point entries (weights, and float buffers such as running
    statistics) are averaged; every other entry (integer counters, flags)
    is the newest checkpoint's, by ``meta["epoch"]`` (else the last given).

    SpeechBrain's ``average_checkpoints`` loads and averages the files,
    but its ``average_state_dicts`` divides every entry, which would turn
    an integer counter into a float and average it, and sums in each
    entry's own dtype: it is given the floating-point entries only, in
    float64 (so that k identical checkpoints give back their weights to
    the bit, and two give the correctly rounded mean), and the result is
    cast back to each entry's dtype.

    Arguments
    ---------
    checkpoints : list of speechbrain.utils.checkpoints.Checkpoint
        The checkpoints to average (at least one).
    recoverable : str
        The name of the recoverable whose parameter files are averaged.

    Returns
    -------
    dict
        A state dict for the recoverable's ``load_state_dict``.

    Example
    -------
    >>> import tempfile
    >>> net = torch.nn.BatchNorm1d(1)
    >>> saver = AtomicCheckpointer(tempfile.mkdtemp(), {"net": net})
    >>> for epoch, weight in ((1, 1.0), (2, 2.0)):
    ...     _ = net.weight.data.fill_(weight)
    ...     _ = net.num_batches_tracked.fill_(10 * epoch)
    ...     _ = saver.save_checkpoint(meta={"epoch": epoch})
    >>> state = averaged_state_dict(saver.find_checkpoints(), "net")
    >>> state["weight"], state["num_batches_tracked"]
    (tensor([1.5000]), tensor(20))
    """
    checkpoints = list(checkpoints)
    if not checkpoints:
        raise ValueError("no checkpoints to average")
    newest = max(
        enumerate(checkpoints),
        key=lambda item: (item[1].meta.get("epoch", -1), item[0]),
    )[1]
    state = torch.load(
        newest.paramfiles[recoverable], map_location="cpu", weights_only=True
    )
    dtypes = {
        name: value.dtype
        for name, value in state.items()
        if torch.is_tensor(value) and torch.is_floating_point(value)
    }

    def floats_only(path, map_location="cpu"):
        loaded = torch.load(path, map_location=map_location, weights_only=True)
        return {name: loaded[name].double() for name in dtypes}

    averaged = average_checkpoints(
        checkpoints,
        recoverable,
        parameter_loader=floats_only,
        averager=average_state_dicts,
    )
    for name, dtype in dtypes.items():
        state[name] = averaged[name].to(dtype)
    return state
