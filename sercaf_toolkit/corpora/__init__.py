"""Corpus preparation: one module per corpus, each writing manifests.

A corpus module provides ``prepare_<corpus>(data_folder, save_folder,
fold, ...)`` (what a recipe's ``prepare:`` key names) and
``fold_count(**same arguments)``; a corpus read from a folder also has
``NAME`` and ``LAYOUT`` (checked before a run loads anything), or its own
``check_data_folder``. The functions here read those from a recipe's
unbuilt YAML tree, so that nothing downstream knows a corpus.
"""

import importlib

from sercaf_toolkit.corpora.common import require_folder
from sercaf_toolkit.errors import UserError


def recipe_corpus(tree):
    """The corpus module and preparation arguments of a recipe tree.

    Arguments
    ---------
    tree : dict
        A recipe's resolved, unbuilt tree (see
        :func:`sercaf_toolkit.hparams.resolve_hparams`), whose ``prepare``
        is a ``!name:`` of a corpus module's preparation function.

    Returns
    -------
    module, dict
    """
    node = tree.get("prepare")
    tag = str(getattr(getattr(node, "tag", None), "value", "") or "")
    if not tag.startswith("!name:"):
        raise UserError(
            "the recipe has no `prepare: !name:<corpus module>.prepare_...` "
            "entry; see recipes/<Corpus>/corpus.yaml for one"
        )
    module = importlib.import_module(tag[len("!name:") :].rsplit(".", 1)[0])
    return module, dict(node.items())


def recipe_fold_count(tree):
    """How many folds the recipe's corpus and protocol have.

    Example
    -------
    >>> import ruamel.yaml
    >>> tree = ruamel.yaml.YAML().load(
    ...     "prepare: !name:sercaf_toolkit.corpora.emodb.prepare_emodb\\n"
    ...     "    protocol: leave_one_speaker_out\\n")
    >>> recipe_fold_count(tree)
    10
    """
    module, arguments = recipe_corpus(tree)
    return int(module.fold_count(**arguments))


def check_recipe_corpus(tree):
    """Fails in one line on a missing corpus folder or a fold out of range."""
    module, arguments = recipe_corpus(tree)
    data_folder = str(arguments.get("data_folder", ""))
    if hasattr(module, "check_data_folder"):
        module.check_data_folder(data_folder)
    elif hasattr(module, "LAYOUT"):
        require_folder(data_folder, module.NAME, module.LAYOUT)
    n_folds = int(module.fold_count(**arguments))
    fold = int(arguments.get("fold", 1))
    if not 1 <= fold <= n_folds:
        raise UserError(f"--fold={fold} is out of range: use 1..{n_folds}")
