"""SERBrain: training, validation and testing of a multi-stream SER model.

Authors
 * sercaf-toolkit developers 2026
"""

import contextlib
import json
import os
from typing import NamedTuple

import speechbrain as sb
import torch
from speechbrain.core import INTRA_EPOCH_CKPT_FLAG
from speechbrain.utils.distributed import if_main_process

from sercaf_toolkit.errors import UserError
from sercaf_toolkit.evaluation.calibration import (
    calibration_figures,
    fit_temperature,
    misclassified,
    scaled_nll,
)
from sercaf_toolkit.evaluation.metrics import (
    DimensionMetrics,
    EmotionMetrics,
    ccc_loss,
)
from sercaf_toolkit.lobes.masking import MaskedPooling
from sercaf_toolkit.lobes.mixup import MixPlan, mixed_input
from sercaf_toolkit.lobes.model import DualStreamModel, LogProbabilities
from sercaf_toolkit.lobes.stream import pretrained_streams
from sercaf_toolkit.training.checkpoints import (
    RandomState,
    averaged_state_dict,
)
from sercaf_toolkit.training.preflight import check_training_options


class AdversarialOutputs(NamedTuple):
    """A training batch's predictions and its speaker adversary's loss."""

    predictions: object
    adversary_loss: torch.Tensor


class SERBrain(sb.Brain):
    """Trains a :class:`~sercaf_toolkit.lobes.DualStreamModel` on emotions.

    Expected ``modules``: ``model``. Expected hparams:

    - ``opt_class`` (optimizer of everything but the SSL models) and
      ``ssl_opt_class`` (optimizer of the SSL models' weights; their layer
      weights belong to the first group), and optional schedulers
      ``lr_annealing`` / ``lr_annealing_ssl`` (called with the validation
      loss at each epoch end, like SpeechBrain's ``NewBobScheduler``);
    - ``label_encoder`` (a fitted ``CategoricalEncoder``);
    - optional ``ssl_warmup_steps`` (the SSL models stay frozen for that
      many optimizer steps), ``class_weights`` (a tensor for the loss, or
      ``"balanced"``), ``selection_key`` (validation metric that picks the
      best checkpoint, default ``"UA"``), ``train_logger``,
      ``output_folder`` (where ``history.json`` keeps per-epoch figures).

    After :meth:`evaluate`, ``test_summary`` holds the test metrics,
    ``test_rows`` the ``(id, target index, probabilities)`` of every test
    utterance and ``test_selected_epoch`` the epoch of the checkpoint used.

    A model with a regressor (``task: dimensional`` or ``joint``, see
    :class:`~sercaf_toolkit.lobes.model.DimensionHead`) is trained on
    ``1 - mean CCC`` of each batch (scaled by the head's ``loss_weight``
    and added to the NLL in a joint model); its figures (CCC, Pearson,
    MAE over the whole stage) are in ``dimension_summary`` after each
    stage, and a test leaves ``test_dimension_summary`` and
    ``test_dimension_rows``: ``(id, true values, predicted values)`` on
    the corpus's scale. ``task: dimensional`` selects the checkpoint on
    the validation mean CCC (``CCC``, or a ``selection_key`` naming one
    dimension's, ``CCC_arousal``); a joint model on ``selection_key``
    (``UA`` by default; ``CCC`` chooses by the dimensions instead).

    :meth:`calibrate` (before :meth:`evaluate`) fits the head's temperature
    on the validation set; the test then gives calibrated probabilities,
    ``test_rows_uncalibrated`` those of temperature 1, and ``calibration``
    the temperature and the figures before and after.

    Batches carry ``id``, ``sig`` (padded waveforms and relative lengths)
    and ``label_encoded`` (not for ``task: dimensional``), and ``dims``
    (``[B, D]`` values on the corpus's scale) for a model with a regressor.
    """

    def __init__(self, modules=None, *args, **kwargs):
        modules = dict(modules or {})
        if isinstance(modules.get("model"), DualStreamModel):
            # DDP only synchronises gradients through forward(); the model's
            # forward gives embeddings (EncoderClassifier's contract), so
            # training goes through a wrapper whose forward classifies.
            modules["model"] = LogProbabilities(modules["model"])
        super().__init__(modules, *args, **kwargs)
        labels = self.hparams.label_encoder
        self.label_names = [labels.ind2lab[i] for i in range(len(labels))]
        self.selection_key = getattr(self.hparams, "selection_key", "UA")
        model = self._model()
        regressor = getattr(model, "regressor", None)
        self.has_classifier = getattr(model, "classifier", True) is not None
        self.dimension_names = (
            list(regressor.dimensions) if regressor is not None else []
        )
        if not self.has_classifier and not self.selection_key.startswith("CCC"):
            # No class figures to select on: the validation mean CCC.
            self.selection_key = "CCC"
        # Set by calibrate(): the checkpoint loaded for testing has
        # temperature 1, and on_evaluate_start applies this one.
        self.temperature = None
        self.calibration = None
        self.ssl_warmup_steps = getattr(self.hparams, "ssl_warmup_steps", 0)
        self._init_speaker_invariance()
        # Train metrics survive an intra-epoch checkpoint and resume.
        self.train_metrics = EmotionMetrics(self.label_names)
        self.train_dimension_metrics = DimensionMetrics(self.dimension_names)
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("random_state", RandomState())
            self.checkpointer.add_recoverable(
                "train_metrics", self.train_metrics
            )
            if self.dimension_names:  # a categorical checkpoint is unchanged
                self.checkpointer.add_recoverable(
                    "train_dimension_metrics", self.train_dimension_metrics
                )

    # Forward and loss -------------------------------------------------------

    @contextlib.contextmanager
    def _ssl_warmup(self, stage):
        """Runs the pre-trained streams without gradients during warm-up."""
        warming_up = (
            stage == sb.Stage.TRAIN
            and self.optimizer_step < self.ssl_warmup_steps
        )
        with contextlib.ExitStack() as held:
            if warming_up:
                for stream in pretrained_streams(self.modules):
                    held.enter_context(stream.pretrained_held())
            yield

    def compute_forward(self, batch, stage):
        """Returns ``[B, classes]`` log-probabilities of the batch.

        In training with a speaker adversary, an :class:`AdversarialOutputs`
        of the predictions and the adversary's loss on the batch.
        """
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        with (
            self._ssl_warmup(stage),
            self._audio_files(batch),
            self._mixup(stage, len(wavs)),
        ):
            if not self._adversarial(stage):
                return self.modules.model(wavs, wav_lens)
            predictions, encoding = self.modules.model(
                wavs, wav_lens, with_encoding=True
            )
        return AdversarialOutputs(
            predictions, self._adversary_loss(encoding, batch)
        )

    def _adversarial(self, stage):
        """Whether this stage trains against the speaker adversary."""
        return stage == sb.Stage.TRAIN and "adversary" in self.modules

    def _adversary_loss(self, encoding, batch):
        """The speaker classifiers' loss, scaled by the schedule's progress.

        The progress through training (0 to 1) sets the gradient
        reversal's scale; it counts finished epochs and this epoch's
        steps, so a resumed run continues the schedule where it was.
        """
        adversary = self.modules.adversary
        adversary = getattr(adversary, "module", adversary)  # DDP
        epochs = self.hparams.epoch_counter.limit
        done = self.hparams.epoch_counter.current - 1
        per_epoch = max(getattr(self, "train_batches", 0), 1)
        adversary.set_progress((done + min(self.step / per_epoch, 1)) / epochs)
        pooled = [
            _masked_mean(frames, mask) for frames, mask in encoding.streams
        ]
        speakers = batch.speaker_encoded.data.reshape(-1)

        def loss(targets):
            return self.modules.adversary.loss(encoding.fused, pooled, targets)

        if self.mix_plan is not None:  # mixed speakers, as mixed labels
            return self.mix_plan.mix_losses(loss, speakers)
        return loss(speakers)

    @contextlib.contextmanager
    def _audio_files(self, batch):
        """Tells streams with a feature cache which files the batch holds."""
        paths = getattr(batch, "wav", None)
        with contextlib.ExitStack() as held:
            if paths is not None:
                for module in self.modules.modules():
                    if getattr(module, "feature_cache", None) is not None:
                        held.enter_context(module.sources(paths))
            yield

    def compute_objectives(self, predictions, batch, stage):
        """Class-weighted NLL loss; accumulates metrics and predictions.

        With a regressor, ``predictions`` is the pair of
        :meth:`~sercaf_toolkit.lobes.DualStreamModel.task_outputs`, and the
        loss adds (or, alone, is) ``1 - mean CCC`` of the batch on the
        unit scale (the CCC of the whole epoch is reported, not this).
        """
        if isinstance(predictions, AdversarialOutputs):
            loss = self.compute_objectives(
                predictions.predictions, batch, stage
            )
            self.adversary_losses.append(predictions.adversary_loss.item())
            return loss + predictions.adversary_loss
        if not isinstance(predictions, tuple):
            return self._categorical_objectives(predictions, batch, stage)
        log_probs, values = predictions
        loss = 0.0
        if log_probs is not None:
            loss = self._categorical_objectives(log_probs, batch, stage)
        head = self._model().regressor
        true = batch.dims.data.float()
        dimension_loss = ccc_loss(values.float(), head.to_unit(true))
        weight = head.loss_weight if log_probs is not None else 1.0
        loss = loss + weight * dimension_loss
        predicted = head.from_unit(values.detach().float())
        self.dimension_metrics.append(batch.id, predicted, true)
        if stage == sb.Stage.TEST:
            for utt_id, y, p in zip(
                batch.id, true.cpu().tolist(), predicted.cpu().tolist()
            ):
                self.test_dimension_rows.append((utt_id, y, p))
        return loss

    def _model(self):
        """The DualStreamModel, through the training wrappers."""
        model = self.modules.model
        model = getattr(model, "module", model)  # DistributedDataParallel
        return getattr(model, "model", model)  # LogProbabilities

    def _categorical_objectives(self, predictions, batch, stage):
        """Class-weighted NLL of log-probabilities; keeps class figures."""
        targets, _ = batch.label_encoded
        targets = targets.reshape(-1)
        loss = self._class_loss(predictions, targets, stage)
        self.metrics.append(batch.id, predictions, targets)
        if stage == sb.Stage.TEST:
            probabilities = predictions.detach().exp().cpu()
            for utt_id, target, probs in zip(
                batch.id, targets.cpu().tolist(), probabilities.tolist()
            ):
                self.test_rows.append((utt_id, target, probs))
            if self.temperature is not None:
                # The predictions are log_softmax(z / T) = z / T - c per
                # row: times T, a shift of the logits z, whose softmax is
                # the uncalibrated model's (no second forward pass).
                scaled = predictions.detach().float() * self.temperature
                before = torch.softmax(scaled, dim=-1).cpu()
                for utt_id, target, probs in zip(
                    batch.id, targets.cpu().tolist(), before.tolist()
                ):
                    self.test_rows_uncalibrated.append((utt_id, target, probs))
        return loss

    # Stages ---------------------------------------------------------------

    def fit(self, epoch_counter, train_set, valid_set=None, *args, **kwargs):
        """``Brain.fit``; without ``valid_set``, checkpoints every epoch.

        With no validation data (``validation: none``) there is nothing to
        select on: each epoch's end saves a checkpoint of its own (for
        resuming) and the test uses the last one.
        """
        self.validating = valid_set is not None
        return super().fit(epoch_counter, train_set, valid_set, *args, **kwargs)

    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-", **kw):
        """Brain's loader; a training loader's length is kept.

        The adversary's schedule counts steps within an epoch, and Brain
        makes the training loader inside fit().
        """
        loader = super().make_dataloader(dataset, stage, ckpt_prefix, **kw)
        if stage == sb.Stage.TRAIN:
            self.train_batches = len(loader)
        return loader

    def on_fit_start(self):
        """Sets up class weights, then the default (optimizers, resume)."""
        self._set_class_weights()
        super().on_fit_start()

    def on_evaluate_start(self, max_key=None, min_key=None):
        """Loads the best checkpoint (see ``selection_key``).

        After :meth:`calibrate`, the fitted temperature replaces the
        checkpoint's (1: checkpoints are written while training).
        """
        self._set_class_weights()
        super().on_evaluate_start(max_key=max_key, min_key=min_key)
        self._average_tested_model(max_key)
        if self.temperature is not None:
            self._head().set_temperature(self.temperature)

    # Calibration ----------------------------------------------------------

    def _head(self):
        """The model's classifier head, through the training wrappers."""
        head = self._model().classifier
        if not hasattr(head, "set_temperature"):
            raise UserError(
                f"calibrate: True needs a classifier head with a "
                f"temperature; {type(head).__name__} has none (use "
                "sercaf_toolkit.lobes.EmotionHead, or give yours a "
                "set_temperature method)"
            )
        return head

    @torch.no_grad()
    def calibrate(self, valid_set, max_key=None, loader_kwargs=None):
        """Fits the temperature of the model to test on the validation set.

        The checkpoint that :meth:`evaluate` will test (``max_key``) is
        loaded with temperature 1, its validation predictions are
        collected, and the temperature that minimises their NLL
        (:func:`~sercaf_toolkit.evaluation.calibration.fit_temperature`) is
        kept for :meth:`evaluate` and the export. Only ``valid_set`` is
        seen: the test speakers play no part.

        Arguments
        ---------
        valid_set : Dataset
            The validation data (its speakers are not tested on).
        max_key : str, optional
            As for :meth:`evaluate`: which checkpoint is calibrated.
        loader_kwargs : dict, optional
            Passed to ``make_dataloader``.

        Returns
        -------
        float
            The temperature.
        """
        loader = self.make_dataloader(
            valid_set,
            sb.Stage.VALID,
            **{**(loader_kwargs or {}), "ckpt_prefix": None},
        )
        self.temperature = None  # the checkpoint as trained: T = 1
        self.on_evaluate_start(max_key=max_key)
        head = self._head()
        head.set_temperature(1.0)
        self.modules.eval()
        log_probs, targets = [], []
        for batch in loader:
            with self.evaluation_ctx:
                out = self.compute_forward(batch, sb.Stage.VALID)
            if isinstance(out, tuple):  # a joint model: its classifier
                out = out[0]
            log_probs.append(out.detach().float().cpu())
            targets.append(batch.label_encoded[0].reshape(-1).cpu())
        if not log_probs:
            raise UserError(
                "calibrate: True needs validation utterances, and the "
                "validation set is empty; use --validation=speaker or group"
            )
        log_probs, targets = torch.cat(log_probs), torch.cat(targets)
        temperature = fit_temperature(log_probs, targets)
        self.temperature = temperature
        head.set_temperature(temperature)
        self.calibration = {
            "temperature": temperature,
            "fitted_on": "validation speakers",
            "validation_utterances": len(targets),
            # None wrong: no temperature can be fitted, and T stays 1.
            "validation_errors": misclassified(log_probs, targets),
            "valid_NLL_before": scaled_nll(log_probs, targets, 1.0),
            "valid_NLL": scaled_nll(log_probs, targets, temperature),
        }
        return temperature

    def _set_class_weights(self):
        weights = getattr(self.hparams, "class_weights", None)
        if not self.has_classifier:
            weights = None  # no classes to weigh
        if isinstance(weights, str):
            if weights != "balanced":
                raise ValueError(
                    "class_weights must be a list or 'balanced', "
                    f"got {weights!r}"
                )
            counts = torch.tensor(
                self.hparams.train_class_counts, dtype=torch.float
            )
            weights = counts.sum() / (len(counts) * counts.clamp(min=1))
        if weights is not None:
            weights = torch.as_tensor(
                weights, dtype=torch.float, device=self.device
            )
        self.class_weights = weights

    def on_stage_start(self, stage, epoch=None):
        """Starts fresh metrics for the stage (keeps them mid-epoch)."""
        if stage == sb.Stage.TRAIN:
            if self.step == 0:  # not resuming in the middle of an epoch
                self.train_metrics.clear()
            self.metrics = self.train_metrics
        else:
            self.metrics = EmotionMetrics(self.label_names)
        self.dimension_metrics = (
            self.train_dimension_metrics
            if stage == sb.Stage.TRAIN
            else DimensionMetrics(self.dimension_names)
        )
        if stage == sb.Stage.TRAIN and self.step == 0:
            self.train_dimension_metrics.clear()
        self.test_rows = []
        self.test_rows_uncalibrated = []
        self.test_dimension_rows = []
        self.adversary_losses = []

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Logs WA/UA/F1 and loss, anneals, checkpoints, keeps test results."""
        stats = {"loss": stage_loss}
        summary = None
        if self.has_classifier:
            summary = self.metrics.summarize()
            stats.update(
                WA=summary["WA"], UA=summary["UA"], F1=summary["macro_F1"]
            )
        self.dimension_summary = None
        if self.dimension_names:
            self.dimension_summary = self.dimension_metrics.summarize()
            stats["CCC"] = self.dimension_summary["CCC"]
            for name in self.dimension_names:
                stats[f"CCC_{name}"] = self.dimension_summary[f"CCC_{name}"]
        if self.adversary_losses:
            # The speaker classifiers' cross-entropy (training speakers):
            # near log(speakers) when the embedding hides them.
            stats["speaker_loss"] = sum(self.adversary_losses) / len(
                self.adversary_losses
            )
        logger = getattr(self.hparams, "train_logger", None)
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            if not getattr(self, "validating", True):
                self._end_epoch_without_validation(epoch, stats, logger)
            return
        if stage == sb.Stage.VALID:
            lrs = self._anneal(stage_loss)
            if logger is not None:
                logger.log_stats(
                    stats_meta={"epoch": epoch, **lrs},
                    train_stats=_in_percent(self.train_stats),
                    valid_stats=_in_percent(stats),
                )
            if if_main_process():
                self._record_history(epoch, stats)
            self.checkpointer.save_and_keep_only(
                meta={**_comparable(stats), "epoch": epoch},
                max_keys=[self.selection_key],
                num_to_keep=self.checkpoints_kept,
            )
        elif stage == sb.Stage.TEST:
            if logger is not None:
                logger.log_stats(
                    stats_meta=self._tested_meta(),
                    test_stats=_in_percent(stats),
                )
            # The runner writes the test files and pictures from these.
            self.test_summary = summary
            self.test_dimension_summary = self.dimension_summary
            self.test_selected_epoch = self._tested_epoch()
            if self.calibration is not None:
                # Sorted as write_test_outputs sorts them: the same sums,
                # so the block's ECE and NLL equal the top-level ones.
                before = calibration_figures(
                    sorted(self.test_rows_uncalibrated)
                )
                after = calibration_figures(sorted(self.test_rows))
                self.calibration.update(
                    ECE_before=before["ECE"],
                    ECE=after["ECE"],
                    NLL_before=before["NLL"],
                    NLL=after["NLL"],
                )

    def _end_epoch_without_validation(self, epoch, stats, logger):
        if logger is not None:
            logger.log_stats(
                stats_meta={"epoch": epoch}, train_stats=_in_percent(stats)
            )
        if if_main_process():
            self._record_history(epoch, None)
        self.checkpointer.save_and_keep_only(
            meta={**_comparable(stats), "epoch": epoch},
            num_to_keep=self.checkpoints_kept,
        )

    def _anneal(self, valid_loss):
        """Steps the schedulers on the validation loss; returns the rates."""
        rates = {}
        for name, key in (
            ("lr", "lr_annealing"),
            ("lr_ssl", "lr_annealing_ssl"),
        ):
            scheduler = getattr(self.hparams, key, None)
            optimizer = self.optimizers_dict.get(name)
            if scheduler is None or optimizer is None:
                continue
            old_rate, new_rate = scheduler(valid_loss)
            sb.nnet.schedulers.update_learning_rate(optimizer, new_rate)
            rates[name] = old_rate
        return rates

    def _train_loader_specifics(self, dataset, loader_kwargs):
        loader_kwargs = super()._train_loader_specifics(dataset, loader_kwargs)
        # Brain tells only `train_sampler` the epoch; outside DDP a batch
        # sampler (dynamic batching) is not registered there, and would
        # repeat the first epoch's order forever.
        batch_sampler = loader_kwargs.get("batch_sampler")
        if self.train_sampler is None and hasattr(batch_sampler, "set_epoch"):
            self.train_sampler = batch_sampler
        return loader_kwargs

    # Optimizers -----------------------------------------------------------

    def init_optimizers(self):
        """One optimizer for the pre-trained weights, one for the rest."""
        ssl_params = {
            id(p)
            for stream in pretrained_streams(self.modules)
            for p in stream.pretrained_parameters()
        }
        trainable = [p for p in self.modules.parameters() if p.requires_grad]
        rest = [p for p in trainable if id(p) not in ssl_params]
        ssl = [p for p in trainable if id(p) in ssl_params]
        self.optimizer = self.hparams.opt_class(rest)
        self.optimizers_dict = {"lr": self.optimizer}
        if ssl:
            self.ssl_optimizer = self.hparams.ssl_opt_class(ssl)
            self.optimizers_dict["lr_ssl"] = self.ssl_optimizer
        if self.checkpointer is not None:
            self.checkpointer.add_recoverable("optimizer", self.optimizer)
            if ssl:
                self.checkpointer.add_recoverable(
                    "ssl_optimizer", self.ssl_optimizer
                )

    def freeze_optimizers(self, optimizers):
        """Leaves the SSL optimizer out during the warm-up steps."""
        if self.optimizer_step < self.ssl_warmup_steps:
            return {k: v for k, v in optimizers.items() if k != "lr_ssl"}
        return optimizers

    # Speaker-invariant training: mixup, checkpoint averaging --------------

    def _init_speaker_invariance(self):
        """Reads ``mixup_alpha``, ``average_checkpoints``, ``average_from``.

        Both options are off by default (``0``, ``1``): training, the
        checkpoints kept and the tested model are then as without them.
        """
        options = {
            key: getattr(self.hparams, key)
            for key in ("mixup_alpha", "average_checkpoints", "average_from")
            if hasattr(self.hparams, key)
        }
        task = getattr(self._model(), "task", "categorical")
        check_training_options({**options, "task": task})
        self.mixup_alpha = float(options.get("mixup_alpha", 0.0))
        self.average_checkpoints = int(options.get("average_checkpoints", 1))
        self.average_from = str(options.get("average_from", "best"))
        # The plan of the batch in training (set by compute_forward, read
        # by the loss), and what the last test averaged.
        self.mix_plan = None
        self.averaging = None

    @contextlib.contextmanager
    def _mixup(self, stage, batch_size):
        """Hands every stream the batch's mixup plan (training only).

        With ``mixup_alpha`` > 0, ``lam ~ Beta(alpha, alpha)`` and one
        permutation of the batch are drawn once per training batch
        (:meth:`~sercaf_toolkit.lobes.mixup.MixPlan.draw`), before any
        other random draw of the step; each stream mixes what suits it
        (its ``mixed`` method; a module without one gets mixed
        waveforms), and :meth:`_class_loss` mixes the targets. With 0,
        nothing is drawn: training is what it was without mixup.
        """
        self.mix_plan = None
        if stage != sb.Stage.TRAIN or self.mixup_alpha <= 0:
            yield
            return
        plan = MixPlan.draw(self.mixup_alpha, batch_size, self.device)
        self.mix_plan = plan
        model = self._model()
        # The functionals branch mixes its values like the streams.
        branches = [getattr(model, "functionals", None)]
        with contextlib.ExitStack() as held:
            for stream in [*model.streams, *filter(None, branches)]:
                mixed = getattr(stream, "mixed", None)
                held.enter_context(
                    mixed(plan) if mixed else mixed_input(stream, plan)
                )
            yield

    def _class_loss(self, predictions, targets, stage):
        """Class-weighted NLL; of the mixed targets in a mixup batch.

        ``lam * NLL(y) + (1 - lam) * NLL(y[perm])``, each with the class
        weights: the NLL of the soft targets ``lam * y + (1 - lam) *
        y[perm]``. The batch's class figures (train WA, UA) are of the
        mixed inputs against their first labels.
        """

        def nll(labels):
            return torch.nn.functional.nll_loss(
                predictions, labels, weight=self.class_weights
            )

        if stage == sb.Stage.TRAIN and self.mix_plan is not None:
            return self.mix_plan.mix_losses(nll, targets)
        return nll(targets)

    @property
    def checkpoints_kept(self):
        """How many checkpoints each ranking keeps: 1, or k to average.

        With ``average_checkpoints: k`` the checkpointer keeps the k best
        by the selection key and the k most recent (the checkpointer always
        keeps a few recent ones, for resuming).
        """
        return max(1, self.average_checkpoints)

    def _average_tested_model(self, max_key):
        """Loads the mean of the k checkpoints chosen for the test.

        ``average_from: best`` averages the k best end-of-epoch
        checkpoints by ``max_key``; ``last``, and any run without a key to
        rank by (``validation: none``, a refit), the k most recent epochs.
        Fewer than k (a short run) are averaged as they are, and
        :attr:`averaging` says so. Only the model is averaged (see
        :func:`~sercaf_toolkit.training.checkpoints.averaged_state_dict`);
        the other recoverables are those of the checkpoint loaded by
        ``on_evaluate_start``.
        """
        self.averaging = None
        asked = self.average_checkpoints
        if asked <= 1 or self.checkpointer is None:
            return

        ranked = self.average_from == "best" and max_key is not None

        def end_of_epoch(checkpoint):
            meta = checkpoint.meta
            return (
                "epoch" in meta
                and INTRA_EPOCH_CKPT_FLAG not in meta
                and (max_key in meta or not ranked)
            )

        def rank(checkpoint):
            # Of equal figures (frequent on a small validation set), the
            # later epoch: the choice does not depend on listing order.
            meta = checkpoint.meta
            return (meta[max_key], meta["epoch"]) if ranked else meta["epoch"]

        found = self.checkpointer.find_checkpoints(
            importance_key=rank,
            ckpt_predicate=end_of_epoch,
            max_num_checkpoints=asked,
        )
        if not found:  # nothing trained yet: the model as it is
            return
        model = self.checkpointer.recoverables["model"]
        model.load_state_dict(averaged_state_dict(found, "model"))
        epochs = sorted(int(c.meta["epoch"]) for c in found)
        notes = []
        if self.average_from == "best" and not ranked:
            notes.append("no validation to rank by: the last epochs")
        if len(found) < asked:
            notes.append(f"only {len(found)} of the {asked} asked for exist")
        self.averaging = {
            "epochs": epochs,
            "asked": asked,
            "average_from": self.average_from,
            "chosen_by": (
                f"the {len(epochs)} best by valid {max_key}"
                if ranked
                else f"the last {len(epochs)} epochs"
            )
            + (f" ({'; '.join(notes)})" if notes else ""),
        }

    def tested_model(self):
        """What the last test used: ``epoch 12``, ``average of epochs ...``.

        Example
        -------
        >>> class Tested:
        ...     averaging = {"epochs": [11, 12, 14]}
        ...     test_selected_epoch = 14
        >>> SERBrain.tested_model(Tested())
        'average of epochs 11, 12, 14'
        """
        if self.averaging:
            epochs = ", ".join(str(e) for e in self.averaging["epochs"])
            return f"average of epochs {epochs}"
        return f"epoch {self.test_selected_epoch}"

    def _tested_epoch(self):
        """The epoch a test reports: of the checkpoint, or the newest
        averaged one (where the training curves mark it)."""
        if self.averaging:
            return self.averaging["epochs"][-1]
        return self.hparams.epoch_counter.current

    def _tested_meta(self):
        """The test's line in ``train_log.txt``: which epoch(s)."""
        if self.averaging:
            epochs = ", ".join(str(e) for e in self.averaging["epochs"])
            return {"epochs averaged": epochs}
        return {"epoch loaded": self.hparams.epoch_counter.current}

    # Outputs --------------------------------------------------------------

    def _record_history(self, epoch, valid_stats):
        """Keeps per-epoch train/valid stats in ``history.json``."""
        folder = getattr(self.hparams, "output_folder", None)
        if folder is None:
            return
        path = os.path.join(folder, "history.json")
        history = {}
        if os.path.exists(path):
            with open(path, encoding="utf-8") as source:
                history = json.load(source)
        history[str(epoch)] = {"train": self.train_stats}
        if valid_stats is not None:
            history[str(epoch)]["valid"] = valid_stats
        with open(path + ".tmp", "w", encoding="utf-8") as out:
            json.dump(history, out, indent=2)
        os.replace(path + ".tmp", path)


def _in_percent(stats):
    """Metrics as percentages with one decimal for the log (``UA: 71.3``).

    SpeechBrain's logger prints numbers below 1 in scientific notation;
    given strings, it prints them as they are.
    """
    return {
        key: value
        if key.endswith("loss")
        else f"{value:.3f}"  # a CCC is read as -1..1, not in percent
        if key.startswith("CCC")
        else f"{100 * value:.1f}"
        for key, value in stats.items()
    }


def _comparable(stats):
    """Stats for a checkpoint's meta: an undefined CCC as the worst, -1.

    A model that predicts one value for every utterance has no CCC
    (``nan``); as -1 it is never selected over one that has.

    Example
    -------
    >>> _comparable({"UA": 0.5, "CCC": float("nan")})
    {'UA': 0.5, 'CCC': -1.0}
    """
    return {
        key: -1.0
        if key.startswith("CCC") and not value == value  # nan
        else value
        for key, value in stats.items()
    }


def _masked_mean(frames, mask):
    """``[B, D]`` mean of each utterance's valid frames."""
    return MaskedPooling("mean")(frames, mask)
