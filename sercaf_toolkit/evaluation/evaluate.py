"""Cross-corpus evaluation: an exported model on another corpus.

``sercaf evaluate MODEL_DIR --corpus NAME --data_folder DIR`` runs a
model on a whole corpus (or, with ``--fold K``, on the test speakers of
the corpus's own fold ``K``; ``--csv FILE`` for a corpus described by a
CSV file, as the Custom recipe reads it). The model's classes are its
training labels, read in the shared vocabulary
(:data:`~sercaf_toolkit.corpora.common.SHARED_EMOTIONS`); the corpus's
labels are mapped by its module's ``VOCABULARY``, and only the files whose
mapped label is one of the model's classes are used. The outputs are
those of a recipe's test
(:func:`~sercaf_toolkit.evaluation.results.write_test_outputs`):
``test_metrics.json`` (with the calibration figures ``ECE`` and ``NLL``
of the model's probabilities, calibrated if the model was),
``predictions.csv``, ``confusion_matrix.png`` and
``reliability_diagram.png``.

Authors
 * sercaf-toolkit developers 2026
"""

import json
import os

from sercaf_toolkit.corpora import (
    check_corpus_folder,
    corpus_module,
    map_rows,
    model_classes,
    prepare_function,
)
from sercaf_toolkit.corpora.common import CorpusError
from sercaf_toolkit.errors import UserError


def stored_labels(model_path):
    """The class names saved in an exported model folder, or ``None``.

    Read from ``label_encoder.ckpt`` without loading the model, so that a
    corpus that shares no class with the model is refused at once.
    """
    path = os.path.join(str(model_path), "label_encoder.ckpt")
    if not os.path.isfile(path):
        return None
    from speechbrain.dataio.encoder import CategoricalEncoder

    encoder = CategoricalEncoder()
    encoder.load(path)
    return [encoder.ind2lab[i] for i in range(len(encoder))]


def corpus_rows(module, data_folder, fold=None, save_folder=None):
    """The manifest rows to evaluate on: the corpus, or one fold's test.

    Arguments
    ---------
    module : module
        The corpus's preparation module.
    data_folder : str
        The corpus folder (the CSV file for Custom).
    fold : int, optional
        A fold of the corpus's own protocol: its test speakers only.
    save_folder : str
        Where the fold's manifests go (``split_info.json`` says which
        speakers were tested).

    Returns
    -------
    list of dict
    """
    if fold is None:
        return module.build_manifest(data_folder)
    n_folds = int(module.fold_count(data_folder=data_folder))
    if not 1 <= fold <= n_folds:
        raise UserError(
            f"--fold {fold} is out of range for {module.NAME}: use 1..{n_folds}"
        )
    splits = prepare_function(module)(data_folder, save_folder, fold)
    return splits["test"]


def left_out_text(left_out):
    """``"boredom 20, fear 20"``: the left-out count of each own label.

    Example
    -------
    >>> left_out_text({"fear": 2, "boredom": 3})
    'boredom 3, fear 2'
    """
    return ", ".join(f"{label} {n}" for label, n in sorted(left_out.items()))


def evaluate_corpus(
    model_path,
    corpus=None,
    data_folder=None,
    csv_file=None,
    fold=None,
    out=None,
    device="cpu",
    batch_size=8,
    progress=False,
):
    """Runs an exported model on a corpus and writes a recipe's test files.

    Every check that a user's mistake can fail (the corpus name, its
    folder, the fold, a corpus without any of the model's classes) runs
    before the model is loaded and raises a one-line
    :class:`~sercaf_toolkit.errors.UserError`.

    Arguments
    ---------
    model_path : str
        An exported model (a recipe's ``inference/`` folder), as
        :class:`~sercaf_toolkit.deployment.inference.EmotionPredictor` loads it.
    corpus : str
        A corpus name (``EmoDB``, ``RAVDESS``, ...; any case).
    data_folder : str
        The corpus folder.
    csv_file : str
        Instead of ``corpus`` and ``data_folder``: a CSV file with the
        columns ``path, label, speaker[, fold]`` (labels in the shared
        vocabulary).
    fold : int, optional
        Only the test speakers of this fold of the corpus's protocol.
    out : str, optional
        Output folder (default ``results/evaluate/<corpus>[_fold<K>]``).
    device, batch_size, progress
        Passed to the predictor.

    Returns
    -------
    dict
        ``metrics`` (as written to ``test_metrics.json``), ``paths`` of
        the files written, ``used`` (files), ``left_out`` (own label ->
        count of files whose label is not one of the model's classes),
        ``failed`` (unreadable files) and ``message`` (the one-line
        report).
    """
    if csv_file is not None:
        if corpus is not None and corpus_module(corpus).NAME != "Custom":
            raise UserError("give either --corpus and --data_folder or --csv")
        corpus, data_folder = "Custom", csv_file
    if corpus is None:
        raise UserError("give --corpus NAME --data_folder DIR, or --csv FILE")
    module = corpus_module(corpus)
    if not data_folder:
        raise UserError(
            f"--data_folder is needed: the folder of the {module.NAME} corpus"
        )
    check_corpus_folder(module, data_folder)
    if not os.path.exists(str(data_folder)):
        # Demo and Expressive would generate themselves there: evaluation
        # reads a corpus that exists, so a mistyped folder is an error.
        raise UserError(
            f"{module.NAME} folder not found: {data_folder}; set "
            "--data_folder to where the corpus is"
        )
    if not os.path.exists(str(model_path)):
        raise UserError(
            f"model {model_path} does not exist; give an exported model "
            "such as a recipe's .../inference/"
        )
    label = module.NAME + (f"_fold{fold}" if fold is not None else "")
    out = out or os.path.join("results", "evaluate", label)
    labels = stored_labels(model_path)
    classes = None if labels is None else model_classes(labels)
    if classes is not None:
        _check_shared(classes, set(module.VOCABULARY.values()), module.NAME)
    try:
        rows = corpus_rows(
            module, data_folder, fold, os.path.join(out, "manifests")
        )
    except CorpusError as error:  # a folder without the corpus in it
        raise UserError(
            f"{error}; check --data_folder {data_folder}"
        ) from error
    if classes is not None:
        kept, left_out = _select(rows, module, classes)

    from sercaf_toolkit.deployment.inference import EmotionPredictor
    from sercaf_toolkit.evaluation.results import (
        BREAKDOWN_FIELDS,
        write_test_outputs,
    )

    predictor = EmotionPredictor(
        model_path, device=device, batch_size=batch_size, long_threshold=None
    )
    if classes is None:  # a model whose labels only its loader knows
        classes = model_classes(predictor.labels)
        kept, left_out = _select(rows, module, classes)
    records, _ = predictor.predict(
        [row["wav"] for row in kept], progress=progress, expand=False
    )
    index = {name: i for i, name in enumerate(classes)}
    test_rows, failed = [], []
    for row, record in zip(kept, records):
        if record["error"]:
            failed.append(record["error"])
            continue
        probabilities = [record[f"prob_{c}"] for c in predictor.labels]
        test_rows.append((row["ID"], index[row["label"]], probabilities))
    message = (
        f"{label}: used {len(test_rows)} files, left out "
        f"{sum(left_out.values())}"
        + (f" (unmapped label: {left_out_text(left_out)})" if left_out else "")
        + (f", {len(failed)} unreadable" if failed else "")
    )
    paths = write_test_outputs(
        out,
        classes,
        test_rows,
        extra={
            "model": os.path.abspath(str(model_path)),
            "corpus": module.NAME,
            "data_folder": os.path.abspath(str(data_folder)),
            "fold": fold,
            "files_used": len(test_rows),
            "left_out": dict(sorted(left_out.items())),
            "unreadable": failed,
        },
        groups_of={
            row["ID"]: {f: row[f] for f in BREAKDOWN_FIELDS if row.get(f)}
            for row in kept
        },
    )
    with open(paths["metrics"], encoding="utf-8") as source:
        metrics = json.load(source)
    return {
        "metrics": metrics,
        "paths": paths,
        "used": len(test_rows),
        "left_out": dict(left_out),
        "failed": failed,
        "message": message,
    }


def _select(rows, module, classes):
    """The rows whose shared label is a class; fails if there are none."""
    kept, left_out = map_rows(rows, module.VOCABULARY, classes)
    shared = {module.VOCABULARY.get(r["label"], r["label"]) for r in rows}
    _check_shared(classes, shared, module.NAME)
    return kept, left_out


def _check_shared(classes, labels, corpus):
    if not set(classes) & set(labels):
        raise UserError(
            f"{corpus} shares none of the model's classes "
            f"({', '.join(classes)}); its labels are "
            f"{', '.join(sorted(labels)) or 'none of them'}"
        )
