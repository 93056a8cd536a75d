"""A Checkpointer whose checkpoints appear whole or not at all.

Authors
 * sercaf-toolkit developers 2026
"""

import logging
import os
import pathlib
import shutil

from speechbrain.utils.checkpoints import CKPT_PREFIX, Checkpoint, Checkpointer
from speechbrain.utils.distributed import ddp_barrier, if_main_process

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
