"""Checks made before anything is built: models to load, packages to import.

A recipe's blocks declare what they need (see
:class:`~sercaf_toolkit.lobes.stream.Stream`): a ``pretrained_source_argument``
naming the constructor argument that holds a hub id or local model folder,
and ``required_packages`` (import name -> the extra that installs it).
:func:`check_blocks` reads the blocks of a resolved, unbuilt recipe tree and
checks each declaration, so a run ends in one line (a
:class:`~sercaf_toolkit.errors.UserError`) before it loads a model, imports
a missing package deep inside a worker, or writes a file. Only the blocks
the recipe picked are checked: a ``streams: logmel`` run never looks at its
``ssl_source``.

Authors
 * sercaf-toolkit developers 2026
"""

import copy
import importlib.util
import os
import pydoc

from sercaf_toolkit.errors import UserError
from sercaf_toolkit.hparams import only_chosen, walk_nodes
from sercaf_toolkit.lobes.adversary import SCHEDULES

BUILD_TAGS = ("!new:", "!name:")


def looks_local(source):
    """Whether an SSL source names a local folder rather than a hub id.

    A hub id is ``name`` or ``owner/name``; a path starting with ``.``,
    ``/`` or ``~``, with more parts, or whose first part is an existing
    folder (``demo_data/tiny_wav2vec3``) is local.

    Example
    -------
    >>> looks_local("facebook/wav2vec2-base"), looks_local("./models/x")
    (False, True)
    """
    if source.startswith((".", "/", "~")) or os.sep in source.replace("/", ""):
        return True
    parts = source.split("/")
    return len(parts) > 2 or (len(parts) == 2 and os.path.isdir(parts[0]))


def check_pretrained_source(source, timeout=3.0):
    """Fails in one line, before any download, on a source that cannot load.

    A local-looking source must be a folder with a ``config.json``; a hub
    id must be in the local HF cache, or the hub must know it. The hub is
    asked through ``huggingface_hub`` itself (one short request, instead of
    transformers' minute of retries), so the user's hub settings hold:
    ``HF_ENDPOINT`` (a mirror), proxies, ``HF_TOKEN`` and ``HF_HUB_OFFLINE``.

    Arguments
    ---------
    source : str
        A hub id or a local HuggingFace folder.
    timeout : float
        Seconds to wait for the hub.

    Example
    -------
    >>> check_pretrained_source("/does/not/exist")
    Traceback (most recent call last):
    ...
    sercaf_toolkit.errors.UserError: SSL model folder /does/not/exist is ...
    """
    if looks_local(source) or os.path.isdir(source):
        folder = os.path.expanduser(source)
        if not os.path.isfile(os.path.join(folder, "config.json")):
            problem = (
                "is not there"
                if not os.path.exists(folder)
                else ("has no config.json")
            )
            raise UserError(
                f"SSL model folder {source} {problem}; give --ssl_source a "
                "HuggingFace model folder (with config.json) or a hub id"
            )
        return
    import huggingface_hub
    from huggingface_hub import constants, errors

    if isinstance(
        huggingface_hub.try_to_load_from_cache(source, "config.json"), str
    ):
        return
    fix = (
        "download it where there is network and pass "
        "--ssl_source=/path/to/its/folder"
    )
    if constants.HF_HUB_OFFLINE:
        raise UserError(
            f"SSL model {source} is not in the local HuggingFace cache and "
            f"HF_HUB_OFFLINE is set; {fix}"
        )
    try:
        huggingface_hub.model_info(source, timeout=timeout)
    except errors.GatedRepoError:
        raise UserError(
            f"SSL model {source} is gated on {constants.ENDPOINT}: accept "
            "its terms there and log in (hf auth login or HF_TOKEN)"
        ) from None
    except Exception as error:
        status = getattr(getattr(error, "response", None), "status_code", 0)
        # A mirror may answer a plain 404 where the hub says RepoNotFound.
        missing = isinstance(error, errors.RepositoryNotFoundError)
        if missing or status in (401, 404):
            raise UserError(
                f"{constants.ENDPOINT} has no model {source} (or it is "
                "private: log in with hf auth login or HF_TOKEN); check "
                "--ssl_source"
            ) from None
        # Any other failure (connection, timeout, 5xx): not there now.
        raise UserError(
            f"SSL model {source} is not in the local HuggingFace cache and "
            f"{constants.ENDPOINT} did not answer ({type(error).__name__}); "
            f"{fix}"
        ) from None


def check_package(module, extra, block):
    """Raises a one-line :class:`UserError` when ``module`` is missing.

    Example
    -------
    >>> check_package("no_such_module", "egemaps", "EGeMAPSDescriptors")
    Traceback (most recent call last):
    ...
    sercaf_toolkit.errors.UserError: EGeMAPSDescriptors needs \
no_such_module: pip install -e ".[egemaps]" (or pick blocks without it)
    """
    if importlib.util.find_spec(module) is None:
        raise UserError(
            f'{block} needs {module}: pip install -e ".[{extra}]" (or pick '
            "blocks without it)"
        )


def chosen_blocks(node):
    """``(class, arguments)`` of every block built in a resolved tree.

    Only the picked entries of ``!apply:operator.getitem`` picks count.
    ``arguments`` is the block's YAML mapping (empty for a list or none).
    """
    for part in walk_nodes(only_chosen(copy.deepcopy(node))):
        tag = str(getattr(getattr(part, "tag", None), "value", None) or "")
        if not tag.startswith(BUILD_TAGS):
            continue
        block = pydoc.locate(tag.split(":", 1)[1])
        if isinstance(block, type):
            yield block, part if isinstance(part, dict) else {}


def check_blocks(tree, model_key="model"):
    """Checks what the picked blocks of ``tree[model_key]`` declare they need.

    Arguments
    ---------
    tree : dict
        A resolved, unbuilt recipe tree
        (:func:`sercaf_toolkit.hparams.resolve_hparams`).
    model_key : str
        The key of the model in it.

    Raises
    ------
    UserError
        Naming the model to get or the extra to install.
    """
    if model_key not in tree:
        return
    for block, arguments in chosen_blocks(tree[model_key]):
        for module, extra in getattr(block, "required_packages", {}).items():
            check_package(module, extra, block.__name__)
        argument = getattr(block, "pretrained_source_argument", None)
        if argument and isinstance(arguments.get(argument), str):
            check_pretrained_source(arguments[argument])


AVERAGE_FROM = ("best", "last")


def check_training_options(tree):
    """Fails in one line on a wrong mixup or checkpoint-averaging setting.

    ``mixup_alpha`` must be a number >= 0 (0: off), ``average_checkpoints``
    a whole number >= 1 (1: off), ``average_from`` ``best`` or ``last``.
    Mixup mixes class labels: with ``task: dimensional`` or ``joint`` (the
    CCC loss of dimension targets, not mixed) it is refused.

    Arguments
    ---------
    tree : dict
        A resolved, unbuilt recipe tree (or any mapping of these keys).

    Raises
    ------
    UserError
        Naming the key and the fix.

    Example
    -------
    >>> check_training_options({"mixup_alpha": 0.4, "average_checkpoints": 3})
    >>> check_training_options({"mixup_alpha": -1})
    Traceback (most recent call last):
    ...
    sercaf_toolkit.errors.UserError: --mixup_alpha=-1: give the Beta \
distribution's alpha, a number > 0 (e.g. 0.4), or 0 for no mixup
    >>> check_training_options({"mixup_alpha": 0.4, "task": "joint"})
    Traceback (most recent call last):
    ...
    sercaf_toolkit.errors.UserError: mixup_alpha: 0.4 mixes class labels, \
and task: joint trains on dimension values, which are not mixed; use \
--mixup_alpha=0 or --task=categorical
    """
    alpha = tree.get("mixup_alpha", 0.0)
    if not _finite_at_least_zero(alpha):
        raise UserError(
            f"--mixup_alpha={alpha}: give the Beta distribution's alpha, a "
            "number > 0 (e.g. 0.4), or 0 for no mixup"
        )
    task = tree.get("task", "categorical")
    if alpha > 0 and task != "categorical":
        raise UserError(
            f"mixup_alpha: {alpha} mixes class labels, and task: {task} "
            "trains on dimension values, which are not mixed; use "
            "--mixup_alpha=0 or --task=categorical"
        )
    count = tree.get("average_checkpoints", 1)
    if not _whole_at_least_one(count):
        raise UserError(
            f"--average_checkpoints={count}: give how many checkpoints to "
            "average, a whole number >= 1 (1: no averaging)"
        )
    source = tree.get("average_from", "best")
    if source not in AVERAGE_FROM:
        raise UserError(
            f"--average_from={source}: use best (the checkpoints with the "
            "best validation figure) or last (the last epochs)"
        )
    check_adversary_options(tree)


def check_adversary_options(tree):
    """Fails in one line on a wrong speaker-adversary setting.

    ``adversary_weight`` must be a number >= 0 (0: no adversary),
    ``adversary_schedule`` one of
    :data:`~sercaf_toolkit.lobes.adversary.SCHEDULES`, and
    ``adversary_hidden`` a whole number >= 1.

    Example
    -------
    >>> check_adversary_options({"adversary_weight": 0.5})
    >>> check_adversary_options({"adversary_schedule": "sometimes"})
    Traceback (most recent call last):
    ...
    sercaf_toolkit.errors.UserError: --adversary_schedule=sometimes: use \
dann (a ramp up from 0) or constant
    """
    weight = tree.get("adversary_weight", 0.0)
    if not _finite_at_least_zero(weight):
        raise UserError(
            f"--adversary_weight={weight}: give the gradient reversal's "
            "scale, a number > 0 (e.g. 0.5), or 0 for no speaker adversary"
        )
    schedule = tree.get("adversary_schedule", "dann")
    if schedule not in SCHEDULES:
        raise UserError(
            f"--adversary_schedule={schedule}: use dann (a ramp up from 0) "
            "or constant"
        )
    hidden = tree.get("adversary_hidden", 64)
    if not _whole_at_least_one(hidden):
        raise UserError(
            f"--adversary_hidden={hidden}: give the speaker classifier's "
            "hidden width, a whole number >= 1"
        )


def _finite_at_least_zero(value):
    """A number (not a bool) in [0, inf): NaN and inf are not."""
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and 0 <= value < float("inf")
    )


def _whole_at_least_one(value):
    """A whole number (not a bool) >= 1."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1
