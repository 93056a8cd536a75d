"""A recipe's command line: ``--help`` and both spellings of a key.

``python recipes/<X>/train.py hparams/caf.yaml --help`` lists the keys of
the experiment with its layers merged (shared wiring, corpus, experiment;
see :mod:`sercaf_toolkit.hparams`), each with its value and the comments
written beside it in the YAML files, then SpeechBrain's run options, and
exits without building or writing anything. SpeechBrain's own ``--help``
knows only its run options, not a recipe's keys.

Recipe keys are YAML keys, spelt with underscores (``--data_folder``);
:func:`respell_options` lets ``--data-folder`` mean the same, as every
``sercaf`` command does.

Authors
 * sercaf-toolkit developers 2026
"""

import contextlib
import functools
import io
import os
import re
import sys
import textwrap

import ruamel.yaml

from sercaf_toolkit.hparams import EXTENDS_KEY, compose_tree

HELP_OPTIONS = ("-h", "--help")
_KEY_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:(?:\s+(.*))?$")
# Section rules in the YAML files: "# Data -----" or "# ######".
_RULE = re.compile(r"[-#=]{4,}\s*$")


def wants_help(argv):
    """Whether ``-h``/``--help`` comes before any ``--`` in ``argv``."""
    for arg in argv:
        if arg == "--":
            return False
        if arg in HELP_OPTIONS:
            return True
    return False


@functools.lru_cache(maxsize=1)
def run_options():
    """SpeechBrain's run options: ``{name: first sentence of its help}``.

    Read from the help that SpeechBrain's own argument parser prints, so
    the list is that of the installed release (its parser is private).
    """
    import speechbrain as sb

    text = io.StringIO()
    with contextlib.redirect_stdout(text), contextlib.suppress(SystemExit):
        sb.parse_arguments(["--help"])
    options, current = {}, None
    for line in text.getvalue().splitlines():
        match = re.match(r"^  --(\w+)(.*)$", line)
        if match:
            # "  --name METAVAR  help", the help perhaps on the next lines
            current, rest = match.group(1), match.group(2)
            if not rest.startswith("  "):  # a metavar first
                rest = re.split(r"\s{2,}", rest.strip(), maxsplit=1)[1:]
                rest = rest[0] if rest else ""
            options[current] = rest.strip()
        elif current and line.startswith("    ") and line.strip():
            # argparse breaks lines after hyphens too ("mixed-|precision")
            joint = "" if options[current].endswith("-") else " "
            options[current] += joint + line.strip()
        elif not line.strip():
            current = None
    return {
        name: _first_sentence(" ".join(options[name].split()))
        for name in sorted(options)  # the parser's order changes per run
        if name != "help"
    }


def _first_sentence(text):
    """Up to the first full stop that ends a sentence (not "e.g.")."""
    head = re.split(r"(?<=[a-z0-9)][.])\s+(?=[A-Z])", text, maxsplit=1)[0]
    return head.rstrip(".")


def respell_options(argv, keys):
    """``--key-name=...`` -> ``--key_name=...`` for known keys.

    An option whose hyphenated name is not a key, while its underscored
    form is one (of ``keys``, or of SpeechBrain's run options), is
    respelt; anything else is left for the usual checks to name.

    Example
    -------
    >>> respell_options(
    ...     ["caf.yaml", "--data-folder=x", "--n-mels", "8", "--no-such=1"],
    ...     {"data_folder", "n_mels"},
    ... )
    ['caf.yaml', '--data_folder=x', '--n_mels', '8', '--no-such=1']
    """
    known = set(keys)
    respelt = []
    for arg in argv:
        if arg == "--":  # what follows is not ours to read
            respelt.extend(argv[len(respelt) :])
            break
        name, equals, value = arg.partition("=")
        if name.startswith("--") and "-" in name[2:]:
            underscored = name[2:].replace("-", "_")
            if name[2:] not in known and (
                underscored in known or underscored in run_options()
            ):
                arg = f"--{underscored}{equals}{value}"
        respelt.append(arg)
    return respelt


def recipe_keys(hparams_file):
    """The top-level keys of a recipe file with its layers merged."""
    return set(compose_tree(hparams_file))


# Help -------------------------------------------------------------------


def _layers(path, _seen=()):
    """The files a recipe file is merged from, bases first."""
    path = os.path.abspath(path)
    if path in _seen:  # compose_tree reports the circle
        return []
    with open(path, encoding="utf-8") as source:
        tree = ruamel.yaml.YAML().load(source) or {}
    bases = tree.get(EXTENDS_KEY) or []
    if isinstance(bases, str):
        bases = [bases]
    layers = []
    for base in bases:
        base_path = os.path.join(os.path.dirname(path), str(base))
        layers += _layers(base_path, (*_seen, path))
    return layers + [path]


class _Entry:
    """One top-level key of one layer file, as written there."""

    def __init__(self, key, value, comment, section):
        self.key = key
        self.value = value
        self.comment = comment
        self.section = section


def _split_comment(text):
    """``value  # comment`` -> (value, comment), quotes respected."""
    quote = None
    for index, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or text[index - 1] in " \t"):
            return text[:index].strip(), text[index + 1 :].strip()
    return text.strip(), ""


def _block_value(first, lines):
    """A one-line picture of a value written over several lines."""
    children = []
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line.startswith((" ", "\t", "-")):
            break
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped.startswith("- "):
            children.append(("-", indent))
        else:
            match = re.match(r"([^:\s]+)\s*:", stripped)
            if match:
                children.append((match.group(1), indent))
    if not children:
        return first
    top = min(indent for _, indent in children)
    names = [name for name, indent in children if indent == top]
    if names[0] == "-":
        return (first + " " if first else "") + "[...]"
    if first:  # a tagged object (!new:, !name:): its arguments
        return f"{first} ({', '.join(names)})"
    return "{" + ", ".join(names) + "}"  # a mapping: often a pick's choices


def _parse_layer(path):
    """(description, entries) of one YAML layer file, as it is written."""
    with open(path, encoding="utf-8") as source:
        lines = source.read().splitlines()
    description, entries = [], []
    comments, section = [], ""
    started = False
    for number, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("#") and not line.startswith((" ", "\t")):
            text = stripped.lstrip("#").strip()
            if _RULE.search(stripped) and text.rstrip("-#= "):
                section = text.rstrip("-#= ").strip()
                comments = []
            elif text and not _RULE.fullmatch(text):
                (comments if started else description).append(text)
            continue
        if not stripped:
            started = started or bool(description)
            comments = []
            continue
        match = _KEY_LINE.match(line)
        if not match:
            continue  # a line inside a block value
        started = True
        key, rest = match.group(1), match.group(2) or ""
        value, inline = _split_comment(rest)
        if not value or value.startswith("!") and " " not in value:
            value = _block_value(value, lines[number + 1 :])
        comment = " ".join(comments)
        if comment and inline:  # the note above, then the one beside
            comment += ("" if comment[-1] in ".:;" else ";") + " " + inline
        else:
            comment = comment or inline
        if key != EXTENDS_KEY:
            entries.append(_Entry(key, value, comment, section))
        comments = []
    return " ".join(description), entries


def _layer_role(index, count):
    if index == count - 1:
        return "experiment"
    return "shared wiring" if index == 0 and count > 2 else "corpus"


def recipe_help(hparams_file, script=None, width=None, shown=None):
    """The text of a recipe's ``--help``: keys, values, comments.

    Arguments
    ---------
    hparams_file : str
        The recipe's YAML file (its layers are read too).
    script : str, optional
        The recipe's ``train.py``, for the usage line.
    width : int, optional
        Line width (default: the terminal's, at most 100).
    shown : str, optional
        The hparams path as the user wrote it, for the usage line.

    Returns
    -------
    str
        Per layer, bases first, the keys whose value it sets (a key that
        a later layer sets again is listed there, naming the value it
        replaces), with the comments beside and above them; then
        SpeechBrain's run options.
    """
    if width is None:
        width = min(100, max(60, _terminal_width()))
    layers = _layers(hparams_file)
    parsed = [_parse_layer(path) for path in layers]
    final = {}
    for index, (_, entries) in enumerate(parsed):
        for entry in entries:
            final[entry.key] = index
    script = script or "train.py"
    lines = [
        f"usage: python {script} {shown or hparams_file} [--key=value ...] "
        "[run options]",
        "",
        "Trains, tests and exports a model as the YAML layers below say. "
        "Any key can be overridden on the command line as --key=value "
        "(or --key-name=value); a key set by a later layer replaces the "
        "earlier one.",
    ]
    earlier = {}
    for index, (path, (description, entries)) in enumerate(zip(layers, parsed)):
        role = _layer_role(index, len(layers))
        lines += ["", f"{_shown_path(path)} ({role})"]
        if description:
            lines += _wrap(description, width, "  ")
        section = None
        for entry in entries:
            before = earlier.get(entry.key)
            if final[entry.key] != index:
                earlier[entry.key] = (entry, role)
                continue
            if entry.section and entry.section != section:
                section = entry.section
                lines.append(f"  -- {section} --")
            value = entry.value
            if value.startswith("!PLACEHOLDER"):
                value = "(must be set: --" + entry.key + "=...)"
            comment = entry.comment or (before[0].comment if before else "")
            if before:
                was = f"replaces {before[0].value} of the {before[1]}"
                comment = f"{comment} ({was})" if comment else f"({was})"
            lines.append(f"  --{entry.key}={value}")
            if comment:
                lines += _wrap(comment, width, "      ")
    lines += [
        "",
        "SpeechBrain's run options (the YAML key of the same name, where "
        "there is one, sets the default):",
    ]
    for name, text in run_options().items():
        lines += _wrap(
            f"--{name}: {text}" if text else f"--{name}", width, "  "
        )
    return "\n".join(lines) + "\n"


def _wrap(text, width, indent):
    return textwrap.wrap(
        text, width, initial_indent=indent, subsequent_indent=indent + "  "
    ) or [indent.rstrip()]


def _terminal_width():
    import shutil

    return shutil.get_terminal_size((100, 24)).columns


def _shown_path(path):
    relative = os.path.relpath(path)
    return path if relative.startswith(os.path.join("..", "..")) else relative


def print_help_and_exit(argv, script_dir, script=None):
    """Prints the recipe's help and exits 0, if ``argv`` asks for it.

    Arguments
    ---------
    argv : list of str
        The recipe's arguments (the hparams file first).
    script_dir : str
        The recipe's folder, where the hparams path is looked for second.
    script : str, optional
        The recipe script, for the usage line.
    """
    if not wants_help(argv):
        return
    from sercaf_toolkit.hparams import resolve_hparams_path

    script = _shown_path(script) if script else "train.py"
    if not argv or argv[0].startswith("-"):  # SpeechBrain's order too
        print(
            f"usage: python {script} HPARAMS.yaml [--key=value ...] "
            "[run options]\n\nGive an hparams file (such as hparams/caf.yaml)"
            " before --help to list its keys."
        )
        sys.exit(0)
    path = resolve_hparams_path(argv[0], script_dir or os.getcwd())
    sys.stdout.write(recipe_help(path, script, shown=argv[0]))
    sys.exit(0)
