"""Mixup within a training batch: one plan that every stream follows.

Mixup (Zhang et al., 2018) trains on convex combinations of two examples
and of their labels: ``lam * x_i + (1 - lam) * x_perm(i)`` with the target
``lam * y_i + (1 - lam) * y_perm(i)``. On small corpora with few speakers,
a mixed example belongs to no one speaker, which discourages a model from
memorising the training speakers. One :class:`MixPlan` (``lam`` drawn from
``Beta(alpha, alpha)`` once per batch, and one permutation of the batch)
is handed to every stream of the model for the batch, so that all streams
see the same mixed example:

- a stream over spectral frames
  (:class:`~sercaf_toolkit.lobes.spectrogram.SpectrogramStream`: the
  log-mel stream, and the eGeMAPS stream) mixes its features after the
  normalisation and augmentation, before its encoder
  (:meth:`MixPlan.mix_features`);
- any other stream (the SSL stream over waveforms) gets mixed waveforms
  (:meth:`MixPlan.mix_waveforms`), through :func:`mixed_input`.

The plan also mixes the loss (:meth:`MixPlan.mix_losses`) and one-hot
targets (:meth:`MixPlan.mix_targets`). Nothing here knows about training:
:class:`~sercaf_toolkit.training.brain.SERBrain` draws the plan and hands it
to the streams (``mixup_alpha`` in the recipes).

Authors
 * sercaf-toolkit developers 2026
"""

import contextlib

import torch

from sercaf_toolkit.lobes.masking import mask_waveforms


class MixPlan:
    """Which examples of a batch are mixed, and how much.

    Row ``i`` of every mixed tensor is ``lam`` times row ``i`` plus
    ``1 - lam`` times row ``perm[i]``. A row that contributes nothing
    (``lam`` exactly 1 or 0) does not count as valid either, so that
    ``lam = 1`` changes nothing at all.

    Arguments
    ---------
    lam : float
        The weight of each example itself, in [0, 1].
    perm : torch.Tensor
        ``[batch]`` int64: the partner of each row.

    Example
    -------
    >>> plan = MixPlan(0.75, torch.tensor([1, 0]))
    >>> plan.mix_targets(torch.tensor([0, 2]), 3)
    tensor([[0.7500, 0.0000, 0.2500],
            [0.2500, 0.0000, 0.7500]])
    >>> x = torch.ones(2, 3, 1)
    >>> mask = torch.tensor([[True, True, True], [True, False, False]])
    >>> mixed, union = plan.mix_features(x * mask.unsqueeze(-1), mask)
    >>> mixed[..., 0], union.sum(dim=1).tolist()
    (tensor([[1.0000, 0.7500, 0.7500],
            [1.0000, 0.2500, 0.2500]]), [3, 3])
    """

    def __init__(self, lam, perm):
        lam = float(lam)
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"a mixup weight lies in [0, 1], got {lam}")
        self.lam = lam
        self.perm = perm

    @classmethod
    def draw(cls, alpha, batch_size, device="cpu"):
        """A plan with ``lam ~ Beta(alpha, alpha)`` and a random permutation.

        Both come from torch's global generator (first ``lam``, then the
        permutation, on the CPU), which a checkpoint saves: a resumed run
        draws what an uninterrupted one would.

        Example
        -------
        >>> _ = torch.manual_seed(0)
        >>> plan = MixPlan.draw(0.4, 4)
        >>> 0 <= plan.lam <= 1, sorted(plan.perm.tolist())
        (True, [0, 1, 2, 3])
        """
        alpha = torch.tensor(float(alpha))
        lam = torch.distributions.Beta(alpha, alpha).sample()
        perm = torch.randperm(batch_size)
        return cls(float(lam), perm.to(device))

    def _partner(self, tensor):
        return tensor[self.perm.to(tensor.device)]

    def _mix(self, values, partner):
        return self.lam * values + (1.0 - self.lam) * partner

    def _valid(self, mask, partner):
        """Valid where a contributing example is valid."""
        if self.lam == 1.0:
            return mask
        if self.lam == 0.0:
            return partner
        return mask | partner

    def mix_features(self, features, mask):
        """Mixes ``[B, T, F]`` frame features; the mask is the union.

        Arguments
        ---------
        features : torch.Tensor
            ``[batch, frames, features]``, padded frames zero.
        mask : torch.Tensor
            ``[batch, frames]`` bool valid-frame mask.

        Returns
        -------
        features : torch.Tensor
            The mixed features; frames valid in neither example are zero.
        mask : torch.Tensor
            Valid where either example is (the one that contributes, if
            only one does).
        """
        mixed = self._mix(features, self._partner(features))
        mask = self._valid(mask, self._partner(mask))
        return mixed * mask.unsqueeze(-1).to(mixed.dtype), mask

    def mix_waveforms(self, wavs, wav_lens=None):
        """Mixes ``[B, samples]`` waveforms; a mix is as long as the longer.

        Each waveform's padding is zeroed first, so the shorter example of
        a pair adds silence after its end.

        Arguments
        ---------
        wavs : torch.Tensor
            ``[batch, samples]`` waveforms, padded at the end.
        wav_lens : torch.Tensor, optional
            ``[batch]`` relative lengths (``None``: all full length).

        Returns
        -------
        wavs, wav_lens : torch.Tensor
            The mixed waveforms and their relative lengths.

        Example
        -------
        >>> plan = MixPlan(0.5, torch.tensor([1, 0]))
        >>> wavs, lens = plan.mix_waveforms(
        ...     torch.ones(2, 4), torch.tensor([1.0, 0.5]))
        >>> wavs, lens
        (tensor([[1.0000, 1.0000, 0.5000, 0.5000],
                [1.0000, 1.0000, 0.5000, 0.5000]]), tensor([1., 1.]))
        """
        width = wavs.shape[1]
        wavs, lengths, _ = mask_waveforms(wavs, wav_lens)
        mixed = self._mix(wavs, self._partner(wavs))
        lengths = self._mixed_lengths(lengths)
        dtype = wav_lens.dtype if wav_lens is not None else wavs.dtype
        return mixed, lengths.to(dtype) / width

    def _mixed_lengths(self, lengths):
        partner = self._partner(lengths)
        if self.lam == 1.0:
            return lengths
        if self.lam == 0.0:
            return partner
        return torch.maximum(lengths, partner)

    def mix_targets(self, targets, n_classes):
        """Soft targets ``[B, n_classes]`` of class indices ``[B]``.

        Each row sums to 1: ``lam`` on the example's class, ``1 - lam``
        on its partner's (both on one class when they share it).
        """
        one_hot = torch.nn.functional.one_hot(targets.reshape(-1), n_classes)
        one_hot = one_hot.float()
        return self._mix(one_hot, self._partner(one_hot))

    def mix_losses(self, loss, targets):
        """``lam * loss(targets) + (1 - lam) * loss(targets[perm])``.

        For a (weighted) NLL this is the loss of the soft targets of
        :meth:`mix_targets`; a batch-level loss (a class-weighted mean)
        keeps its own normalisation for each of the two.

        Arguments
        ---------
        loss : callable
            ``targets -> scalar`` loss of the batch's predictions.
        targets : torch.Tensor
            ``[B]`` class indices of the unmixed examples.

        Example
        -------
        >>> log_probs = torch.log_softmax(torch.randn(3, 4), dim=-1)
        >>> nll = lambda y: torch.nn.functional.nll_loss(log_probs, y)
        >>> y = torch.tensor([0, 1, 3])
        >>> plan = MixPlan(0.7, torch.tensor([2, 0, 1]))
        >>> soft = plan.mix_targets(y, 4)
        >>> torch.allclose(plan.mix_losses(nll, y),
        ...                -(soft * log_probs).sum(dim=1).mean())
        True
        >>> torch.equal(MixPlan(1.0, plan.perm).mix_losses(nll, y), nll(y))
        True
        """
        if self.lam == 1.0:
            return loss(targets)
        if self.lam == 0.0:
            return loss(self._partner(targets))
        return self.lam * loss(targets) + (1.0 - self.lam) * loss(
            self._partner(targets)
        )


def _mix_input_waveforms(plan):
    def hook(module, args, kwargs):
        wavs, *rest = args
        wav_lens = rest[0] if rest else kwargs.pop("wav_lens", None)
        return (*plan.mix_waveforms(wavs, wav_lens),), kwargs

    return hook


@contextlib.contextmanager
def plan_held(module, plan):
    """Sets ``module.mix_plan`` to ``plan`` meanwhile, then back to None.

    How a block that mixes its own features (a log-mel stream, the
    functionals branch) learns the batch's plan: its forward reads
    ``self.mix_plan``.

    Example
    -------
    >>> module = torch.nn.Identity()
    >>> plan = MixPlan(0.5, torch.tensor([1, 0]))
    >>> with plan_held(module, plan):
    ...     module.mix_plan is plan
    True
    >>> module.mix_plan is None
    True
    """
    module.mix_plan = plan
    try:
        yield
    finally:
        module.mix_plan = None


@contextlib.contextmanager
def mixed_input(module, plan):
    """Calls of ``module(wavs, wav_lens)`` get mixed waveforms meanwhile.

    What a stream that cannot mix anything better receives
    (:meth:`~sercaf_toolkit.lobes.stream.Stream.mixed`, and modules that
    are not a :class:`~sercaf_toolkit.lobes.stream.Stream`).

    Example
    -------
    >>> class Lengths(torch.nn.Module):
    ...     def forward(self, wavs, wav_lens=None):
    ...         return wavs, wav_lens
    >>> module = Lengths()
    >>> plan = MixPlan(0.5, torch.tensor([1, 0]))
    >>> with mixed_input(module, plan):
    ...     module(torch.ones(2, 4), torch.tensor([1.0, 0.5]))[1]
    tensor([1., 1.])
    >>> module(torch.ones(2, 4), torch.tensor([1.0, 0.5]))[1]
    tensor([1.0000, 0.5000])
    """
    handle = module.register_forward_pre_hook(
        _mix_input_waveforms(plan), with_kwargs=True
    )
    try:
        yield
    finally:
        handle.remove()
