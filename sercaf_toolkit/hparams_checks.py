"""Checks of a recipe's merged tree that need nothing built: picks, types.

Two mistakes that used to surface late, as a traceback, after folders were
written (or not at all):

- a *pick* whose value is not one of its choices (``--scratch_encoder=dpcn``).
  A pick is any node ``!apply:operator.getitem [<mapping>, <choice>]`` of
  the merged tree, the mapping a ``!ref <key>`` or written inline, the
  choice a ``!ref <key>`` or a plain value: the choice must be a key of
  the mapping. Every block choice of the recipes (streams, encoder,
  normalisation, fusion, ...) has this form, so one check covers them all,
  and the message suggests the closest choice;
- an override whose value does not fit the type of the key's default
  (``--number_of_epochs=two``): integers take integers, floats take
  numbers, booleans take ``true``/``false`` only; keys whose default is a
  string, a list, a mapping, null or a tagged node take anything (their
  users check them).

Authors
 * sercaf-toolkit developers 2026
"""

import difflib

import ruamel.yaml

from sercaf_toolkit.errors import UserError

PICK_TAG = "!apply:operator.getitem"


def _tag(node):
    return str(getattr(getattr(node, "tag", None), "value", None) or "")


def _simple_ref(node):
    """``name`` for a ``!ref <name>`` node (nothing else in it), or None."""
    if _tag(node) != "!ref":
        return None
    text = str(getattr(node, "value", node)).strip()
    if text.startswith("<") and text.endswith(">") and text.count("<") == 1:
        return text[1:-1]
    return None


def _paths(node, path=()):
    """Yields ``(path, node)`` for ``node`` and every node below it."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*path, index))


def _at(tree, path):
    for part in path:
        tree = tree[part]
    return tree


def _dotted(path):
    return "".join(
        f"[{part}]" if isinstance(part, int) else f".{part}" for part in path
    ).lstrip(".")


def picks(composed):
    """Every pick of a merged, unresolved tree.

    Arguments
    ---------
    composed : dict
        The merged tree as loaded from :func:`~sercaf_toolkit.hparams.
        compose_hparams` text (tags kept, ``!ref`` unresolved).

    Returns
    -------
    list of tuple
        ``(path, mapping name, choice key)`` per pick: the pick's path in
        the tree, the key its mapping refers to (or the path of an inline
        mapping) and the key its choice refers to (``None`` for a plain
        value).

    Example
    -------
    >>> tree = ruamel.yaml.YAML().load(
    ...     "encoders: {a: 1, b: 2}\\nencoder: a\\n"
    ...     "block: !apply:operator.getitem [!ref <encoders>, !ref <encoder>]"
    ... )
    >>> picks(tree)
    [(('block',), 'encoders', 'encoder')]
    """
    found = []
    for path, node in _paths(composed):
        if _tag(node) != PICK_TAG or not isinstance(node, list):
            continue
        if len(node) != 2:
            continue
        mapping, choice = node
        if isinstance(mapping, dict):
            name = _dotted((*path, 0))
        else:
            name = _simple_ref(mapping)
            if name is None:
                continue  # a computed mapping: only known once built
        found.append((path, name, _simple_ref(choice)))
    return found


def check_choices(composed, resolved):
    """Fails in one line on a pick whose choice is not in its mapping.

    Arguments
    ---------
    composed : dict
        The merged, unresolved tree (see :func:`picks`).
    resolved : dict
        The same tree with overrides applied and ``!ref`` resolved (what
        :func:`~sercaf_toolkit.hparams.resolve_hparams` returns).

    Raises
    ------
    UserError
        Naming the key, its value, the choices and the closest one.

    Example
    -------
    >>> text = (
    ...     "encoders: {dpcnn: 1, textrcnn: 2}\\nencoder: dpcn\\n"
    ...     "block: !apply:operator.getitem [!ref <encoders>, !ref <encoder>]"
    ... )
    >>> tree = ruamel.yaml.YAML().load(text)
    >>> resolved = ruamel.yaml.YAML().load(text.replace(
    ...     "!ref <encoders>, !ref <encoder>", "{dpcnn: 1, textrcnn: 2}, dpcn"
    ... ))
    >>> check_choices(tree, resolved)
    Traceback (most recent call last):
    ...
    sercaf_toolkit.errors.UserError: encoder: 'dpcn' is not one of its \
choices (dpcnn, textrcnn: the keys of encoders); did you mean dpcnn?
    """
    for path, mapping_name, choice_key in picks(composed):
        try:
            mapping, value = _at(resolved, path)
        except (KeyError, IndexError, TypeError, ValueError):
            continue
        if not isinstance(mapping, dict):
            continue  # built at load time: nothing to compare yet
        name = choice_key or _dotted((*path, 1))
        if _tag(value).startswith(("!name:", "!new:")):
            # A block written where its name goes, as experiment files did
            # before every choice became a pick.
            raise UserError(
                f"{name} is a pick: give it the name of one of its choices "
                f"({', '.join(map(str, mapping))}), not a block; a block of "
                f"your own is one more entry of {mapping_name} (see "
                "docs/lobes.md)"
            )
        if _tag(value):
            continue  # computed at load time: nothing to compare yet
        if isinstance(value, dict | list) or value not in mapping:
            choices = [str(key) for key in mapping]
            close = difflib.get_close_matches(str(value), choices, n=1)
            hint = f"did you mean {close[0]}?" if close else "use one of them"
            raise UserError(
                f"{name}: {str(value)!r} is not one of its choices "
                f"({', '.join(choices)}: the keys of {mapping_name}); {hint}"
            )


def _kind(default):
    """What an override of a key with this default must be, or None."""
    if _tag(default):
        return None
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    return None


def _fits(value, kind):
    if kind == "true or false":
        return isinstance(value, bool)
    if kind == "an integer":
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_override_types(composed, overrides_text):
    """Fails in one line on an override that does not fit its key's type.

    Arguments
    ---------
    composed : dict
        The merged, unresolved tree: the defaults.
    overrides_text : str
        SpeechBrain's override text (``key: value`` lines).

    Raises
    ------
    UserError
        Naming the key, the value given and the type expected.

    Example
    -------
    >>> tree = {"number_of_epochs": 30, "lr": 0.1, "refit": False}
    >>> check_override_types(tree, "lr: 1\\nrefit: true\\n")
    >>> check_override_types(tree, "number_of_epochs: two\\n")
    Traceback (most recent call last):
    ...
    sercaf_toolkit.errors.UserError: --number_of_epochs=two: \
number_of_epochs takes an integer (default 30)
    """
    overrides = ruamel.yaml.YAML(typ="safe").load(overrides_text or "") or {}
    for key, value in overrides.items():
        if key not in composed:
            continue  # check_overrides names unknown keys
        kind = _kind(composed[key])
        if kind is None or _fits(value, kind):
            continue
        shown = value
        if value is None or isinstance(value, bool):
            shown = "null" if value is None else str(value).lower()
        raise UserError(
            f"--{key}={shown}: {key} takes {kind} (default {composed[key]})"
        )
