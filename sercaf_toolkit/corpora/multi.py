"""Several corpora as one: training on their union, testing per corpus.

Each corpus is prepared by its own module (its own layout, labels and
speaker-independent folds) into ``<save_folder>/corpora/<name>/``; the
manifests are then merged with the labels mapped to the shared vocabulary
(each module's ``VOCABULARY``), utterances of other classes left out,
and ids, speakers and texts prefixed with the corpus name, so that
speakers stay disjoint across corpora (and two corpora's ``03`` are two
speakers) and texts of two corpora never match (EmoDB's and RAVDESS's
texts are different words whatever their keys). A ``corpus`` column says
where each utterance comes from; the recipe's test then reports figures
per corpus.

``text_disjoint`` is applied to the merged splits, not by each corpus's
own preparation: the test is what this recipe tests (a held-out corpus's
texts match no other corpus's, so leave-one-corpus-out removes nothing),
and a corpus whose every training utterance says a test text trains with
nothing (said in the log and ``split_info.json``); only a merged training
(or validation) split left empty is an error.

What is tested (``test_corpus``):

- ``own`` (or ``null``): fold ``k`` is fold ``k`` of every corpus: each
  corpus's own test speakers, validation speakers and training speakers;
  ``sercaf cv`` runs as many folds as the corpus with the fewest has;
- a corpus name (leave-one-corpus-out): the whole of that corpus is the
  test; the other corpora train on every speaker but the validation
  speakers of their fold 1; one fold;
- ``each``: leave-one-corpus-out in turn: fold ``k`` holds out the
  ``k``-th corpus of ``corpora``; as many folds as corpora.

Authors
 * sercaf-toolkit developers 2026
"""

import collections
import json
import logging
import os

from sercaf_toolkit.corpora import (
    check_corpus_folder,
    corpus_module,
    map_rows,
    prepare_function,
)
from sercaf_toolkit.corpora.common import (
    DEFAULT_VALIDATION,
    SHARED_EMOTIONS,
    audit_speaker_splits,
    audit_text_splits,
    check_text_guard,
    remove_test_texts,
    text_info,
    text_of,
    uses_validation,
)
from sercaf_toolkit.data import manifest_fields, write_manifest
from sercaf_toolkit.errors import UserError

logger = logging.getLogger(__name__)

OWN_FOLDS = "own"
EACH = "each"
SPLITS = ("train", "valid", "test")


def corpus_entries(corpora, data_folder=None, corpus_folders=None):
    """The corpora of a recipe: name -> (module, data folder, options).

    Arguments
    ---------
    corpora : list of str or dict
        Corpus names, whose folders ``corpus_folders`` gives; or a mapping
        corpus name -> its folder.
    data_folder : str, optional
        The folder that relative corpus folders are read against.
    corpus_folders : dict, optional
        Corpus name (any case) -> its folder, or -> a mapping with
        ``data_folder`` and more arguments of its preparation function
        (``utterances_per_emotion: 3`` for the demo corpus).

    Example
    -------
    >>> folders = {"emodb": "emodb", "RAVDESS": "/r", "CASIA": "c"}
    >>> entries = corpus_entries(["EmoDB", "ravdess"], "/d", folders)
    >>> {name: folder for name, (_, folder, _) in entries.items()}
    {'EmoDB': '/d/emodb', 'RAVDESS': '/r'}
    """
    if not corpora:
        raise UserError(
            "corpora is empty; list the corpora, e.g. --corpora=[EmoDB,RAVDESS]"
        )
    if not isinstance(corpora, dict):
        known = {
            str(k).lower(): v for k, v in dict(corpus_folders or {}).items()
        }
        corpora = {name: known.get(str(name).lower()) for name in corpora}
    entries = {}
    for name, value in dict(corpora).items():
        module = corpus_module(name)
        options = dict(value) if isinstance(value, dict) else {}
        folder = options.pop("data_folder", None) if options else value
        if not folder:
            raise UserError(
                f"no folder for the corpus {module.NAME}; add it to "
                f"corpus_folders, e.g. --corpus_folders="
                f"'{{{module.NAME}: /path/to/it}}'"
            )
        entries[module.NAME] = (
            module,
            os.path.join(str(data_folder or ""), str(folder)),
            options,
        )
    return entries


def held_out_corpus(entries, fold, test_corpus):
    """The corpus tested as a whole, or ``None`` for own folds."""
    if test_corpus in (None, OWN_FOLDS):
        return None
    if test_corpus == EACH:
        return list(entries)[int(fold) - 1]
    name = corpus_module(test_corpus).NAME
    if name not in entries:
        raise UserError(
            f"test_corpus {test_corpus} is not one of the corpora "
            f"({', '.join(entries)}); give one of them, {OWN_FOLDS} or {EACH}"
        )
    return name


def fold_count(
    corpora, data_folder=None, corpus_folders=None, test_corpus=None, **_
):
    """Folds: the fewest of the corpora's, the corpora, or 1 (see above).

    Example
    -------
    >>> corpora = {"EmoDB": "e", "RAVDESS": "r", "CASIA": "c"}  # name: folder
    >>> fold_count(corpora), fold_count(corpora, test_corpus="each")
    (4, 3)
    """
    entries = corpus_entries(corpora, data_folder, corpus_folders)
    if test_corpus == EACH:
        return len(entries)
    if test_corpus not in (None, OWN_FOLDS):
        return 1
    return min(
        int(module.fold_count(data_folder=folder, **options))
        for module, folder, options in entries.values()
    )


def check_arguments(
    corpora,
    data_folder=None,
    corpus_folders=None,
    test_corpus=None,
    labels=None,
    **_,
):
    """Fails in one line on an unknown corpus, a missing folder or test,
    or a class that is not a shared name."""
    unknown = [str(x) for x in labels or () if x not in SHARED_EMOTIONS]
    if unknown:
        raise UserError(
            f"labels: {', '.join(unknown)} not in the shared vocabulary; "
            f"use shared names ({', '.join(SHARED_EMOTIONS)})"
        )
    entries = corpus_entries(corpora, data_folder, corpus_folders)
    for module, folder, _ in entries.values():
        check_corpus_folder(module, folder)
    if test_corpus not in (None, OWN_FOLDS, EACH):
        held_out_corpus(entries, 1, test_corpus)
    if test_corpus not in (None, OWN_FOLDS) and len(entries) < 2:
        raise UserError(
            "leave-one-corpus-out needs at least two corpora: one to test, "
            "one to train on"
        )


def prepare_multi(
    corpora,
    save_folder,
    fold=1,
    data_folder=None,
    corpus_folders=None,
    test_corpus=None,
    labels=None,
    normalized_folder=None,
    text_disjoint=False,
    **split_options,
):
    """Writes the merged manifests of one fold (see the module docstring).

    Arguments
    ---------
    corpora : list of str or dict
        See :func:`corpus_entries`.
    save_folder : str
        Where ``data.csv``, ``train/valid/test.csv`` and
        ``split_info.json`` go; each corpus's own in ``corpora/<name>/``.
    fold : int
        1-based fold.
    data_folder, corpus_folders : optional
        Where the corpora are (see :func:`corpus_entries`).
    test_corpus : str, optional
        ``own`` (``None``), ``each`` or a corpus name.
    labels : list of str, optional
        The classes (shared names); utterances of other classes are left
        out. Default: every shared name.
    normalized_folder : str, optional
        Speaker-normalised audio goes to ``<normalized_folder>/<name>``.
    text_disjoint : bool
        Leave out of the merged train and valid splits every utterance
        whose (corpus-prefixed) text the merged test holds (see the module
        docstring).
    **split_options
        ``validation``, ``speaker_normalization``: passed to every
        corpus's preparation.

    Returns
    -------
    dict
        Split name -> merged rows.
    """
    entries = corpus_entries(corpora, data_folder, corpus_folders)
    held_out = held_out_corpus(entries, fold, test_corpus)
    classes = list(labels or SHARED_EMOTIONS)
    splits = {name: [] for name in SPLITS}
    info = {
        "protocol": "leave_one_corpus_out" if held_out else "corpus_folds",
        "fold": int(fold),
        "speaker_independent": True,
        "test_corpus": held_out or OWN_FOLDS,
        "corpora": {},
    }
    for name, (module, folder, options) in entries.items():
        own_folder = os.path.join(save_folder, "corpora", name)
        os.makedirs(own_folder, exist_ok=True)
        own_fold = 1 if held_out else int(fold)
        if normalized_folder:
            options["normalized_folder"] = os.path.join(normalized_folder, name)
        own = prepare_function(module)(
            folder, own_folder, own_fold, **options, **split_options
        )
        if held_out == name:  # the whole corpus is the test
            own = {"train": [], "valid": [], "test": _all(own)}
        elif held_out:  # its test speakers train too
            own = {
                "train": own["train"] + own["test"],
                "valid": own["valid"],
                "test": [],
            }
        left_out = collections.Counter()
        for split in SPLITS:
            kept, dropped = map_rows(own[split], module.VOCABULARY, classes)
            left_out += dropped
            splits[split] += [
                {
                    **row,
                    "ID": f"{name}_{row['ID']}",
                    "speaker": f"{name}_{row['speaker']}",
                    # "" stays "": a text of its own in any corpus.
                    "text": f"{name}_{text_of(row)}" if text_of(row) else "",
                    "corpus": name,
                }
                for row in kept
            ]
        info["corpora"][name] = {
            "data_folder": folder,
            "fold": None if held_out == name else own_fold,
            "counts": {
                split: sum(r["corpus"] == name for r in splits[split])
                for split in SPLITS
            },
            "left_out": dict(sorted(left_out.items())),
        }
    validation = split_options.get("validation", DEFAULT_VALIDATION)
    validating = uses_validation(validation)
    removed = {"train": 0, "valid": 0}
    if text_disjoint:
        splits, removed = remove_test_texts(splits)
        for name, own in info["corpora"].items():
            kept = {
                split: sum(r["corpus"] == name for r in splits[split])
                for split in SPLITS
            }
            own["text_disjoint_removed"] = {
                split: own["counts"][split] - kept[split]
                for split in ("train", "valid")
            }
            own["counts"] = kept
            if own["text_disjoint_removed"]["train"] and not kept["train"]:
                logger.warning(
                    "%s fold %s: text_disjoint leaves it no training data "
                    "(every training utterance says a test text); the "
                    "other corpora train",
                    name,
                    fold,
                )
        check_text_guard(splits, removed, ", ".join(entries), fold, validating)
        audit_text_splits(splits)
    audit_speaker_splits(splits, allow_empty=() if validating else ("valid",))
    everything = [row for split in SPLITS for row in splits[split]]
    fields = manifest_fields(everything)
    write_manifest(everything, os.path.join(save_folder, "data.csv"), fields)
    for split in SPLITS:
        write_manifest(
            splits[split], os.path.join(save_folder, f"{split}.csv"), fields
        )
    info["validation"] = validation
    info["counts"] = {split: len(splits[split]) for split in SPLITS}
    info["training_share"] = round(
        len(splits["train"]) / (len(splits["train"]) + len(splits["valid"])),
        4,
    )
    info.update(text_info(splits, text_disjoint, removed))
    with open(os.path.join(save_folder, "split_info.json"), "w") as out:
        json.dump(info, out, indent=2)
    return splits


def _all(splits):
    return [row for split in SPLITS for row in splits[split]]
