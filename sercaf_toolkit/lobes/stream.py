"""What every stream tells the model, the trainer and the exporter.

A stream maps ``(wavs, wav_lens)`` to ``(frames [B, T, D], mask [B, T])``.
Beyond that, the code around it needs to know a few things: which of its
parameters are pre-trained (they get their own optimiser, learning rate
and warm-up in :class:`~sercaf_toolkit.training.brain.SERBrain`), how to hold
them
still during that warm-up, what its constructor needs in an exported
model folder (an SSL stream is rebuilt from its config there, not from a
hub id), and how a results table names it. :class:`Stream` answers all of
them with defaults that suit a stream trained from scratch; a pre-trained
family (like :class:`~sercaf_toolkit.lobes.ssl.SSLStream`) overrides them,
so that nothing outside the stream tests for a concrete class.

Blocks may also declare what must be true before anything is built, for
the recipe runner to check (see :mod:`sercaf_toolkit.training.preflight`):
``pretrained_source_argument`` (the constructor argument naming a hub id
or local model folder) and ``required_packages`` (import name -> the extra
that installs it).

Authors
 * sercaf-toolkit developers 2026
"""

import contextlib

import torch

from sercaf_toolkit.lobes.mixup import mixed_input, plan_held


def built(part, **sizes):
    """Returns ``part`` if it is a module, else calls the factory with sizes.

    YAML recipes pass blocks as ``!name:`` factories so that widths known
    only once the block before is built (a stream's width, read from its
    SSL model's config) are never written twice, and so that only the
    blocks a recipe picks are ever built. Python users and tests may pass
    ready modules. ``None`` stays ``None`` (an optional block left out).

    Example
    -------
    >>> from functools import partial
    >>> built(partial(torch.nn.Linear, out_features=2), in_features=3)
    Linear(in_features=3, out_features=2, bias=True)
    >>> built(None) is None
    True
    """
    if part is None or isinstance(part, torch.nn.Module):
        return part
    return part(**sizes)


class Stream(torch.nn.Module):
    """Base class of the streams: the interface, for a scratch stream.

    Subclasses set ``output_size`` and implement ``forward(wavs, wav_lens)
    -> (frames, mask)``.

    Example
    -------
    >>> class Energy(Stream):
    ...     output_size = 1
    ...     def forward(self, wavs, wav_lens=None):
    ...         frames = wavs.unfold(1, 400, 160).pow(2).mean(-1, True)
    ...         return frames, torch.ones(frames.shape[:2], dtype=bool)
    >>> stream = Energy()
    >>> stream.pretrained_parameters(), stream.kind, stream.describe()
    ([], 'scratch', 'Energy')
    """

    #: ``"pretrained"`` or ``"scratch"``: the column of a results table.
    kind = "scratch"
    #: The constructor argument naming a hub id or model folder, if any.
    pretrained_source_argument = None
    #: The mixup plan of the batch being trained on (see :meth:`mixed`).
    mix_plan = None

    def pretrained_parameters(self):
        """The trainable parameters that come pre-trained.

        They get the pre-trained learning rate and optimiser
        (``ssl_opt_class``) and wait out the warm-up.
        """
        return []

    @contextlib.contextmanager
    def pretrained_held(self):
        """Runs the pre-trained part without gradients (warm-up)."""
        yield

    @contextlib.contextmanager
    def mixed(self, plan):
        """Trains on the mixed examples of ``plan`` meanwhile (mixup).

        By default the stream receives mixed waveforms (see
        :func:`~sercaf_toolkit.lobes.mixup.mixed_input`); a stream that
        can mix something closer to its encoder overrides this (a
        :class:`~sercaf_toolkit.lobes.spectrogram.SpectrogramStream` mixes
        its normalised features).

        Arguments
        ---------
        plan : sercaf_toolkit.lobes.mixup.MixPlan
            The batch's mixing weight and permutation.
        """
        with plan_held(self, plan), mixed_input(self, plan):
            yield

    def export_arguments(self):
        """Constructor arguments to write into an exported model's YAML.

        They replace the recipe's values, so that the exported folder
        rebuilds the stream without what only training had (a hub id, a
        local folder). Weights come from the exported checkpoint.
        """
        return {}

    def describe(self):
        """The stream's name in a results table."""
        return type(self).__name__


def pretrained_streams(module):
    """The streams in ``module`` that hold pre-trained parameters.

    Example
    -------
    >>> pretrained_streams(torch.nn.Linear(2, 2))
    []
    """
    return [
        m
        for m in module.modules()
        if isinstance(m, Stream) and m.pretrained_parameters()
    ]
