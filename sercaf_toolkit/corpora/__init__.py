"""Corpus preparation: one module per corpus, each writing manifests.

A corpus module provides ``prepare_<corpus>(data_folder, save_folder,
fold, ...)`` (what a recipe's ``prepare:`` key names),
``fold_count(**same arguments)``, ``build_manifest(data_folder)`` (every
utterance), ``NAME`` and ``VOCABULARY`` (its labels -> the shared emotion
names of :data:`~sercaf_toolkit.corpora.common.SHARED_EMOTIONS`); a corpus
read from a folder also has ``LAYOUT`` and ``CORPUS_FILES`` (glob patterns
of its audio: checked before a run loads anything), or its own
``check_data_folder``; ``PROTOCOLS`` names its speaker-independent
protocols, and ``labels_of`` gives the labels of a corpus whose labels
come with the data (see :func:`corpus_labels`). The functions here find those
by corpus name or in a recipe's unbuilt YAML tree, so that nothing
downstream knows a corpus.
"""

import collections
import difflib
import glob
import importlib
import os

from sercaf_toolkit.corpora.common import (
    RANDOM_PROTOCOL,
    SHARED_EMOTIONS,
    CorpusFolderError,
    require_folder,
)
from sercaf_toolkit.errors import UserError

# Corpus name (as users write it) -> module under sercaf_toolkit.corpora.
CORPUS_MODULES = {
    "EmoDB": "emodb",
    "RAVDESS": "ravdess",
    "CASIA": "casia",
    "IEMOCAP": "iemocap",
    "MSPPodcast": "msppodcast",
    "Demo": "demo",
    "Expressive": "expressive",
    "Custom": "custom",
}


def corpus_module(name):
    """The preparation module of a corpus, by name (in any case).

    Example
    -------
    >>> corpus_module("emodb").NAME
    'EmoDB'
    >>> corpus_module("ravdes")
    Traceback (most recent call last):
    ...
    sercaf_toolkit.errors.UserError: unknown corpus 'ravdes'; did you mean \
RAVDESS? (known: EmoDB, RAVDESS, CASIA, IEMOCAP, MSPPodcast, Demo, Expressive, \
Custom)
    """
    by_lower = {known.lower(): known for known in CORPUS_MODULES}
    known = by_lower.get(str(name).lower())
    if known is None:
        close = difflib.get_close_matches(str(name).lower(), by_lower, n=1)
        hint = f"did you mean {by_lower[close[0]]}? " if close else ""
        raise UserError(
            f"unknown corpus {name!r}; {hint}(known: "
            f"{', '.join(CORPUS_MODULES)})"
        )
    return importlib.import_module(
        f"sercaf_toolkit.corpora.{CORPUS_MODULES[known]}"
    )


def prepare_function(module):
    """A corpus module's ``prepare_<corpus>`` function."""
    return getattr(module, "prepare_" + module.__name__.rsplit(".", 1)[-1])


def shared_name(label):
    """A label in the shared vocabulary, through every corpus's mapping.

    What a model's class names mean: a model trained on one corpus has its
    labels (``anger``), one trained on several has shared names already.
    Returns ``None`` for a label no corpus maps.

    Example
    -------
    >>> shared_name("anger"), shared_name("neu"), shared_name("sad")
    ('angry', 'neutral', 'sad')
    >>> shared_name("tense") is None
    True
    """
    if label in SHARED_EMOTIONS:
        return label
    for name in CORPUS_MODULES:
        found = corpus_module(name).VOCABULARY.get(label)
        if found is not None:
            return found
    return None


def model_classes(labels):
    """A model's class names in the shared vocabulary, in class order.

    Raises
    ------
    UserError
        If a class maps to no shared name, or two map to the same one.

    Example
    -------
    >>> model_classes(["anger", "happiness", "neutral", "sadness"])
    ['angry', 'happy', 'neutral', 'sad']
    """
    classes = [shared_name(label) for label in labels]
    unknown = [label for label, c in zip(labels, classes) if c is None]
    if unknown:
        raise UserError(
            f"the model's class(es) {', '.join(unknown)} are in no corpus's "
            f"vocabulary; cross-corpus use needs the shared names "
            f"{', '.join(SHARED_EMOTIONS)}"
        )
    twice = [c for c, n in collections.Counter(classes).items() if n > 1]
    if twice:
        raise UserError(
            f"two of the model's classes ({', '.join(labels)}) mean the "
            f"same shared emotion {twice[0]}"
        )
    return classes


def map_rows(rows, vocabulary, classes):
    """Manifest rows with their labels in the shared vocabulary.

    Arguments
    ---------
    rows : list of dict
        Manifest rows with a corpus's own ``label``.
    vocabulary : dict
        The corpus's own label -> shared name (its ``VOCABULARY``).
    classes : list of str
        The shared names to keep.

    Returns
    -------
    kept : list of dict
        Copies of the rows whose shared label is in ``classes``, ``label``
        replaced by it and the corpus's own label in ``corpus_label``.
    left_out : collections.Counter
        Own label -> count of the rows left out.

    Example
    -------
    >>> rows = [{"label": "anger"}, {"label": "boredom"}]
    >>> kept, left_out = map_rows(rows, {"anger": "angry"}, ["angry", "sad"])
    >>> kept, dict(left_out)
    ([{'label': 'angry', 'corpus_label': 'anger'}], {'boredom': 1})
    """
    kept, left_out = [], collections.Counter()
    for row in rows:
        shared = vocabulary.get(row["label"])
        if shared in classes:
            kept.append({**row, "label": shared, "corpus_label": row["label"]})
        else:
            left_out[row["label"]] += 1
    return kept, left_out


def check_corpus_folder(module, data_folder):
    """Fails in one line when a corpus's folder (or CSV file) is missing,
    or holds none of the corpus's files (``CORPUS_FILES`` patterns)."""
    if hasattr(module, "check_data_folder"):
        module.check_data_folder(str(data_folder))
    elif hasattr(module, "LAYOUT"):
        require_folder(str(data_folder), module.NAME, module.LAYOUT)
        patterns = getattr(module, "CORPUS_FILES", ())
        if patterns and not _holds_any(str(data_folder), patterns):
            raise CorpusFolderError(
                f"{module.NAME} folder {data_folder} has no usable "
                f"utterance: no files like {module.LAYOUT} in it; set "
                "--data_folder to where the corpus is"
            )


def _holds_any(folder, patterns):
    """Whether a glob pattern (relative to ``folder``) matches a file.

    Stops at the first match, so a full corpus costs a few directory reads.
    """
    for pattern in patterns:
        for path in glob.iglob(os.path.join(glob.escape(folder), pattern)):
            if os.path.isfile(path):
                return True
    return False


def corpus_labels(module, arguments):
    """The labels a corpus's manifest holds, or ``None`` if unknown.

    The one place to ask a corpus for its label vocabulary: a module's
    ``labels_of(**preparation arguments)`` where the labels come from the
    data (a CSV file's label column), else the keys of its
    ``VOCABULARY`` (every label its preparation writes).
    """
    if hasattr(module, "labels_of"):
        return set(module.labels_of(**arguments))
    vocabulary = getattr(module, "VOCABULARY", None)
    return set(vocabulary) if vocabulary else None


def check_labels(labels, module, arguments):
    """Fails in one line when ``labels`` and the corpus's labels differ.

    A class the corpus does not have would never be seen in training; a
    corpus label that ``labels`` leaves out stops training once the data
    are prepared. Both are refused before anything is written.

    Example
    -------
    >>> from sercaf_toolkit.corpora import emodb
    >>> every = sorted(emodb.VOCABULARY)
    >>> check_labels(every, emodb, {})
    >>> check_labels(["angry"] + every[1:], emodb, {})
    Traceback (most recent call last):
    ...
    sercaf_toolkit.errors.UserError: labels: EmoDB has no class angry \
(its classes: anger, boredom, disgust, fear, happiness, neutral, \
sadness); did you mean anger?
    """
    if not isinstance(labels, list | tuple):
        return  # unset, or built at load time
    known = corpus_labels(module, arguments)
    if not known:
        return
    where = module.NAME
    if hasattr(module, "labels_of"):  # labels read from the data
        where += f" ({arguments.get('data_folder')})"
    given = [str(label) for label in labels]
    unknown = [label for label in given if label not in known]
    if unknown:
        close = difflib.get_close_matches(unknown[0], sorted(known), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise UserError(
            f"labels: {where} has no class {', '.join(unknown)} (its "
            f"classes: {', '.join(sorted(known))}){hint}"
        )
    missing = sorted(known - set(given))
    if missing:
        raise UserError(
            f"labels: {where} also has the class(es) {', '.join(missing)}, "
            f"which labels leaves out; list every class, e.g. --labels="
            f"[{','.join(sorted(known))}]"
        )


def check_protocol(module, arguments):
    """Fails in one line on a protocol the corpus does not have."""
    protocols = getattr(module, "PROTOCOLS", None)
    if not protocols or "protocol" not in arguments:
        return
    protocol = str(arguments["protocol"])
    allowed = [*protocols, RANDOM_PROTOCOL]
    if protocol not in allowed:
        close = difflib.get_close_matches(protocol, allowed, n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise UserError(
            f"protocol: {module.NAME} has no protocol {protocol!r} (use "
            f"{', '.join(allowed)}){hint}"
        )


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
    """Fails in one line on a missing or empty corpus folder, an unknown
    protocol, labels that are not the corpus's, or a fold out of range."""
    module, arguments = recipe_corpus(tree)
    check_task(tree, module, arguments)  # before the folder: no corpus fixes it
    if hasattr(module, "check_arguments"):  # several corpora in one
        module.check_arguments(**arguments)
    else:
        check_protocol(module, arguments)
        check_corpus_folder(module, arguments.get("data_folder", ""))
        check_labels(tree.get("labels"), module, arguments)
    n_folds = int(module.fold_count(**arguments))
    fold = int(arguments.get("fold", 1))
    if not 1 <= fold <= n_folds:
        raise UserError(f"--fold={fold} is out of range: use 1..{n_folds}")


TASKS = ("categorical", "dimensional", "joint")


def check_task(tree, module, arguments=None):
    """Fails in one line when the corpus cannot serve the recipe's task.

    ``task: dimensional`` and ``joint`` need a corpus whose module gives
    dimension values (its ``DIMENSIONS``) for every dimension the recipe
    names, and a ``prepare`` entry that passes ``task`` on.

    Example
    -------
    >>> from sercaf_toolkit.corpora import emodb
    >>> check_task({"task": "categorical"}, emodb)
    >>> check_task({"task": "dimensional"}, emodb)
    Traceback (most recent call last):
    ...
    sercaf_toolkit.errors.UserError: --task=dimensional: EmoDB has no \
dimensional labels (arousal, valence, dominance); use a corpus that has \
(IEMOCAP, MSPPodcast, Demo, or a Custom CSV with those columns)
    """
    task = str(tree.get("task", "categorical"))
    if task == "categorical":
        return
    given = getattr(module, "DIMENSIONS", ())
    source = str((arguments or {}).get("data_folder", ""))
    if hasattr(module, "dimensions_of") and os.path.isfile(source):
        given = module.dimensions_of(**arguments)  # read from the data
    wanted = list(tree.get("dimensions") or ("arousal", "valence", "dominance"))
    name = getattr(module, "NAME", module.__name__)
    if not given:
        raise UserError(
            f"--task={task}: {name} has no dimensional labels "
            f"({', '.join(wanted)}); use a corpus that has (IEMOCAP, "
            "MSPPodcast, Demo, or a Custom CSV with those columns)"
        )
    missing = [d for d in wanted if d not in given]
    if missing:
        raise UserError(
            f"--dimensions: {name} has no {', '.join(missing)} (it gives "
            f"{', '.join(given)})"
        )
    if "task" not in (arguments or {}):
        raise UserError(
            f"--task={task}: the recipe's prepare entry does not pass "
            "`task: !ref <task>` to the corpus's preparation"
        )
