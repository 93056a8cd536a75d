"""A Checkpointer whose checkpoints appear whole or not at all.

Authors
 * sercaf-toolkit developers 2026
"""

import logging
import os
import pathlib
import shutil

import torch
from speechbrain.utils.checkpoints import (
    CKPT_PREFIX,
    Checkpoint,
    Checkpointer,
    mark_as_loader,
    mark_as_saver,
    register_checkpoint_hooks,
)
from speechbrain.utils.distributed import (
    ddp_barrier,
    if_main_process,
    main_process_only,
)

logger = logging.getLogger(__name__)

PARTIAL_PREFIX = ".partial-"


class AtomicCheckpointer(Checkpointer):
    """SpeechBrain's Checkpointer, writing each checkpoint atomically.

    SpeechBrain writes a checkpoint's meta file first and its parameter
    files after, into the final folder: a process killed while saving
    leaves a folder that looks complete and fails (or half-loads) on
    recovery. Here every checkpoint is written into a hidden ``.partial-``
    folder, which is renamed to its final ``CKPT+...`` name only when all
    files are written (a rename is atomic); partial folders left by a
    killed process are never listed, and are removed at the next start.
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
    """

    def __init__(self, checkpoints_dir, *args, **kwargs):
        super().__init__(checkpoints_dir, *args, **kwargs)
        if if_main_process() and self.checkpoints_dir.exists():
            for leftover in self.checkpoints_dir.glob(PARTIAL_PREFIX + "*"):
                shutil.rmtree(leftover, ignore_errors=True)

    def _new_checkpoint_dirpath(self):
        final = super()._new_checkpoint_dirpath()
        return final.with_name(PARTIAL_PREFIX + final.name)

    def _custom_checkpoint_dirpath(self, name):
        final = super()._custom_checkpoint_dirpath(name)
        return final.with_name(PARTIAL_PREFIX + final.name)

    def save_checkpoint(self, *args, **kwargs):
        """Saves like ``Checkpointer.save_checkpoint``, then publishes.

        Under DDP, every process leaves only once the checkpoint is
        complete and renamed, so none can look for checkpoints too early.
        """
        checkpoint = super().save_checkpoint(*args, **kwargs)
        ddp_barrier()  # every process has written what it writes
        if checkpoint is not None:  # the main process
            checkpoint = self._publish(checkpoint)
        ddp_barrier()
        return checkpoint

    def _publish(self, checkpoint):
        partial = pathlib.Path(checkpoint.path)
        final = partial.with_name(partial.name[len(PARTIAL_PREFIX) :])
        if not final.name.startswith(CKPT_PREFIX):
            raise RuntimeError(f"unexpected checkpoint name {partial}")
        if final.exists():  # a custom name saved again: replace it
            shutil.rmtree(final)
        os.replace(partial, final)
        logger.debug("Published checkpoint %s", final)
        paramfiles = {
            key: final / pathlib.Path(path).name
            for key, path in checkpoint.paramfiles.items()
        }
        return Checkpoint(final, checkpoint.meta, paramfiles)


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
