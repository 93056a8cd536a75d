"""Recipe YAML files built in layers: shared wiring, corpus, experiment.

An experiment file names the files it builds on in an ``extends:`` list
(paths relative to the file) and states only what makes it that experiment;
each extended file may extend others. :func:`compose_hparams` merges the
layers into one HyperPyYAML document: a key in a later layer replaces the
key of the same name in an earlier one (the whole value: a ``fusion:``
block is replaced, not merged into the one it overrides), and the file's
own keys come last. ``!ref`` is resolved after the merge, so a layer may
refer to keys that another layer defines or overrides.

Why not HyperPyYAML's ``!include:``: it loads the included file on its own
and nests the result under a key. The recipe contract needs flat top-level
keys (``--fold=2`` and ``--data_folder`` override them from the command
line, ``<fold>`` is referred to by corpus and shared keys alike), so with
``!include:`` every experiment file would have to re-declare and forward
every overridable key, the very repetition this layering removes.

Authors
 * sercaf-toolkit developers 2026
"""

import difflib
import io
import os

import ruamel.yaml
from hyperpyyaml import load_hyperpyyaml, resolve_references

from sercaf_toolkit.errors import UserError

EXTENDS_KEY = "extends"


def resolve_hparams_path(path, script_dir):
    """Finds the hparams file in the working directory, then the script's.

    So both ``python recipes/X/train.py hparams/caf.yaml`` from the
    repository root and ``python train.py hparams/caf.yaml`` inside
    ``recipes/X`` work.

    Example
    -------
    >>> import tempfile
    >>> resolve_hparams_path("nope.yaml", tempfile.gettempdir())
    Traceback (most recent call last):
    ...
    sercaf_toolkit.errors.UserError: hparams file 'nope.yaml' found ...
    """
    if os.path.exists(path):
        return path
    candidate = os.path.join(script_dir, path)
    if os.path.exists(candidate):
        return candidate
    raise UserError(
        f"hparams file {path!r} found neither in the working directory "
        f"nor in {script_dir}; give a path to an existing YAML file"
    )


def compose_tree(path, _chain=()):
    """The merged (unresolved) YAML tree of ``path`` and its layers.

    Arguments
    ---------
    path : str
        A recipe YAML file, optionally with an ``extends:`` list.

    Returns
    -------
    ruamel.yaml.comments.CommentedMap
        Top-level keys of every layer, later layers replacing earlier ones;
        tags (``!new:``, ``!ref``, ...) are kept as they are.
    """
    path = os.path.abspath(path)
    if path in _chain:
        cycle = " -> ".join(os.path.basename(p) for p in (*_chain, path))
        raise UserError(f"{path}: `extends` runs in a circle ({cycle})")
    if not os.path.isfile(path):
        where = f" (extended by {_chain[-1]})" if _chain else ""
        raise UserError(f"hparams file not found: {path}{where}")
    with open(path, encoding="utf-8") as source:
        try:
            tree = ruamel.yaml.YAML().load(source)
        except ruamel.yaml.YAMLError as error:
            problem = str(error).replace("\n", " ")
            raise UserError(f"{path} is not valid YAML: {problem}") from None
    if tree is None:
        tree = ruamel.yaml.comments.CommentedMap()
    bases = tree.pop(EXTENDS_KEY, None) or []
    if isinstance(bases, str):
        bases = [bases]
    merged = ruamel.yaml.comments.CommentedMap()
    for base in bases:
        base_path = os.path.join(os.path.dirname(path), str(base))
        for key, value in compose_tree(base_path, (*_chain, path)).items():
            merged[key] = value
    for key, value in tree.items():
        merged[key] = value
    return merged


def compose_hparams(path):
    """The YAML text of a recipe file with all its layers merged.

    Example
    -------
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "base.yaml").write_text("a: 1\\nb: !ref <a>\\n")
    >>> _ = (folder / "exp.yaml").write_text("extends: [base.yaml]\\na: 2\\n")
    >>> print(compose_hparams(folder / "exp.yaml"), end="")
    a: 2
    b: !ref <a>
    """
    tree = compose_tree(path)
    for value in tree.values():
        drop_comments(value)
    text = io.StringIO()
    ruamel.yaml.YAML().dump(tree, text)
    return text.getvalue()


def resolve_hparams(path, overrides=None, composed=None):
    """The merged tree with overrides applied and ``!ref`` resolved.

    Nothing is built: ``!new:`` and ``!name:`` stay tags. This is how the
    runner and ``sercaf cv`` read keys (``output_folder``, ``prepare``)
    before any model is loaded. ``composed``: the text of
    :func:`compose_hparams` when the caller has it already.
    """
    if composed is None:
        composed = compose_hparams(path)
    try:
        text = resolve_references(composed, overrides)
    except ValueError as error:
        if "PLACEHOLDER" not in str(error):
            raise
        key = str(error).split("'")[1]
        raise UserError(
            f"{key} must be set for {path}: add --{key}=..."
        ) from None
    return ruamel.yaml.YAML().load(text.getvalue())


def checked_hparams(path, overrides=None):
    """Merges the layers, checks the overrides and picks; builds nothing.

    Override names (:func:`check_overrides`), their types and every pick's
    choice (:mod:`sercaf_toolkit.hparams_checks`) are checked here.

    What the runner and ``sercaf cv`` both do before anything else.

    Returns
    -------
    composed, tree
        The merged YAML text and its resolved, unbuilt tree.
    """
    from sercaf_toolkit.hparams_checks import (
        check_choices,
        check_override_types,
    )

    composed = compose_hparams(path)
    merged = ruamel.yaml.YAML().load(composed)
    check_overrides(merged, overrides, path)
    check_override_types(merged, overrides)
    tree = resolve_hparams(path, overrides, composed)
    check_choices(merged, tree)
    return composed, tree


def overrides_dict(overrides):
    """SpeechBrain's override text (``key: value`` lines) as a dict.

    Example
    -------
    >>> overrides_dict("fold: 2\\nseed: 7\\n"), overrides_dict("")
    ({'fold': 2, 'seed': 7}, {})
    """
    return ruamel.yaml.YAML(typ="safe").load(overrides or "") or {}


def load_hparams(path, overrides=None):
    """Builds a recipe's objects, as ``load_hyperpyyaml`` on the merged file.

    Example
    -------
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "base.yaml").write_text("width: 4\\n")
    >>> _ = (folder / "exp.yaml").write_text(
    ...     "extends: [base.yaml]\\n"
    ...     "layer: !new:torch.nn.Linear [!ref <width>, 2]\\n")
    >>> load_hparams(folder / "exp.yaml", {"width": 3})["layer"]
    Linear(in_features=3, out_features=2, bias=True)
    """
    return load_hyperpyyaml(compose_hparams(path), overrides)


def check_overrides(tree, overrides_text, hparams_file):
    """Fails in one line on an override that names no key of the recipe.

    Example
    -------
    >>> check_overrides({"number_of_epochs": 1}, "number_of_epoch: 2", "x")
    Traceback (most recent call last):
    ...
    sercaf_toolkit.errors.UserError: unknown key number_of_epoch in x; \
did you mean --number_of_epochs?
    """
    overrides = ruamel.yaml.YAML().load(overrides_text or "") or {}
    for key in overrides:
        if key in tree:
            continue
        close = difflib.get_close_matches(key, list(tree), n=1)
        hint = (
            f"did you mean --{close[0]}?"
            if close
            else "see the keys of the recipe's YAML files"
        )
        raise UserError(f"unknown key {key} in {hparams_file}; {hint}")


def drop_comments(node, block_style=False):
    """Drops the comments of a YAML node and of every node below it.

    Comments would land beside the wrong keys once layers are merged, or
    once a part is written out alone (an exported model's definition).
    ``block_style``: also turn flow style (``[a, b]``, ``{k: v}``) into
    block style, for a part written on its own.
    """
    for part in walk_nodes(node):
        if hasattr(part, "ca"):
            part.ca.items.clear()
            part.ca.comment = None
        if block_style and hasattr(part, "fa"):
            part.fa.set_block_style()


def only_chosen(node):
    """Replaces each ``!apply:operator.getitem [choices, key]`` by the pick.

    Recipes choose a block by name from a mapping of ``!name:`` factories
    (``scratch_encoder: dpcnn``); the exported model names only the chosen
    one. The tree is changed in place (and returned).

    Example
    -------
    >>> tree = ruamel.yaml.YAML().load(
    ...     "pick: !apply:operator.getitem [{a: !new:A {}, b: 2}, a]"
    ... )
    >>> str(only_chosen(tree)["pick"].tag.value)
    '!new:A'
    """
    tag = str(getattr(getattr(node, "tag", None), "value", None) or "")
    if (
        tag == "!apply:operator.getitem"
        and isinstance(node, list)
        and len(node) == 2
        and isinstance(node[0], dict)
        and str(node[1]) in node[0]
    ):
        return only_chosen(node[0][str(node[1])])
    if isinstance(node, dict):
        for key in list(node):
            node[key] = only_chosen(node[key])
    elif isinstance(node, list):
        for i, value in enumerate(node):
            node[i] = only_chosen(value)
    return node


def walk_nodes(node):
    """Yields a YAML node and every node below it, each once."""
    seen, stack = set(), [node]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, dict):
            stack.extend(reversed(list(current.values())))
        elif isinstance(current, list):
            stack.extend(reversed(current))
