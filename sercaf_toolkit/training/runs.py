"""What a run is, and one run per folder.

A run's record (``hyperparams.yaml``, ``run_info.json``, the manifests,
``test_metrics.json``) must describe what produced the results beside it.
This module decides what identifies a run and guards its folder; the recipe
runner (:mod:`sercaf_toolkit.training.recipe`) and ``sercaf cv``
(:mod:`sercaf_toolkit.training.cv`) both use it, so that they agree on what
"the same
run" means.

**Identity** (:func:`identity_of`): every setting that shapes data, model or
training. It is taken from the merged, resolved and unbuilt recipe tree:
the keys that the runner, ``SERBrain`` and SpeechBrain read by name, and
every key they refer to (``!ref``), each flattened to its leaves. Only the
chosen entry of a pick (``!apply:operator.getitem [mapping, key]``) counts,
so an option the run did not choose changes nothing. Left out:

- where a run writes (:data:`OUTPUT_KEYS`, and any value that is a path
  inside ``output_folder``): moving a run does not change what it computed;
- how it is carried out (:data:`RUN_OPTION_KEYS` and the leaf names in
  :data:`RUN_OPTION_LEAVES`): device, data loader workers, progress bars,
  checkpoint intervals, ``torch.compile`` (in place, same weights), DDP
  bookkeeping, logging.

SpeechBrain run options that do change the numbers (:data:`RESULT_RUN_OPTIONS`:
precision, gradient clipping and accumulation, ``--debug``...) count with
their effective value, whether the YAML or the command line set them.

**Data fingerprint** (:func:`data_fingerprint`): the manifests' content and,
for every audio file they list, its size and modification time: cheap to
compute, and any replaced or edited file changes it.

**Lock** (:class:`RunLock`): ``run.lock`` in a run's folder names the
process that owns it (pid, host, start time, command); a second run into
the folder is refused, a lock left by a dead process is taken over.

Authors
 * sercaf-toolkit developers 2026
"""

import copy
import datetime
import hashlib
import io
import json
import os
import re
import shutil
import socket
import sys
import tempfile

import ruamel.yaml

from sercaf_toolkit.errors import UserError
from sercaf_toolkit.hparams import only_chosen, resolve_hparams

# Version of the identity recorded in run_info.json. Version 1 (no
# "identity_version") held only a few keys: such a record is compared on
# the keys it has.
IDENTITY_VERSION = 2

# Where a run writes: not what it computes. Any other value that is a path
# inside output_folder is left out too (see _inside).
OUTPUT_KEYS = frozenset(
    {
        "output_folder", "save_folder", "train_log", "train_csv",
        "valid_csv", "test_csv", "experiment",
        # the speaker-normalised audio's cache folder: its content is in
        # the data fingerprint, its place does not matter
        "normalized_audio_folder",
        # the SSL feature cache's folder: its entries are keyed by content
        "ssl_cache_folder",
    }
)  # fmt: skip

# How a run is carried out: the same run on another device, with more
# loader workers, other checkpoint intervals or compiled streams computes
# the same thing (up to floating-point rounding). The checkpointer and the
# logger only say where things go; what the checkpointer recovers (model,
# schedulers, counter) is identified under its own keys.
RUN_OPTION_KEYS = frozenset(
    {
        "device", "num_workers", "noprogressbar", "progress",
        "ckpt_interval_minutes", "ckpt_interval_steps", "compile_streams",
        "compile", "jit", "find_unused_parameters", "nonfinite_patience",
        "distributed_backend", "distributed_launch", "data_parallel_backend",
        "log_config", "tqdm_colored_bar", "checkpointer", "train_logger",
        # the SSL feature cache serves the frozen part's own output (to
        # fp16 rounding): a run with or without it computes the same
        "ssl_cache", "ssl_cache_precision",
    }
)  # fmt: skip

# Leaves (the last part of a flattened key) of the same kind, inside
# values that count: e.g. train_dataloader_opts.num_workers.
RUN_OPTION_LEAVES = frozenset(
    {
        "num_workers", "pin_memory", "persistent_workers", "prefetch_factor",
        "normalized_folder", "save_folder", "checkpoints_dir", "save_file",
    }
)  # fmt: skip

# SpeechBrain run options that change what training computes; the
# command line (--precision=bf16) overrides the YAML's value.
RESULT_RUN_OPTIONS = (
    "precision", "eval_precision", "auto_mix_prec", "bfloat16_mix_prec",
    "max_grad_norm", "grad_accumulation_factor", "skip_nonfinite_grads",
    "optimizer_step_limit", "remove_vector_weight_decay",
    "debug", "debug_batches", "debug_epochs",
)  # fmt: skip

# Keys added to the recipes after runs were recorded, with the value that
# reproduces what those runs did: a record without the key is compared as
# if it held that value (a run recorded before these keys existed was
# neither calibrated nor text-disjoint: asked again, it is the same run).
LATER_KEYS = {
    "calibrate": "False",
    "text_disjoint": "False",
    # Before tasks: every run was categorical, its model without regressor
    # and its preparation without dimensions.
    "task": "categorical",
    "model.regressor": "None",
    "prepare.task": "categorical",
    # Before speaker-invariant training: no functionals branch, no speaker
    # adversary (adversary_weight 0 builds none).
    "functionals": "none",
    "model.functionals": "None",
    "adversary_weight": "0.0",
    "adversary_schedule": "dann",
    "adversary_hidden": "64",
    "adversary_on_streams": "False",
    "adversary_dropout": "0.1",
    "speaker_adversary": (
        "!name:sercaf_toolkit.lobes.adversary.SpeakerAdversary"
    ),
    "speaker_adversary.dropout": "0.1",
    "speaker_adversary.hidden_size": "64",
    "speaker_adversary.on_streams": "False",
    "speaker_adversary.schedule": "dann",
    "speaker_adversary.weight": "0.0",
    # Before speaker-invariant training (issue 24): no mixup, and the test
    # used one checkpoint.
    "mixup_alpha": "0.0",
    "average_checkpoints": "1",
    "average_from": "best",
}

DATA_KEY = "data"
LOCK_NAME = "run.lock"
RERUN_FLAG = "--rerun"
# Files that show a folder holds (part of) a run: --rerun empties only
# such folders (or empty ones), never a folder given by mistake.
RUN_MARKERS = ("run_info.json", "hyperparams.yaml", "save", "train_log.txt")
_REF = re.compile(r"<([^<>\[\].]+)")


# Identity -------------------------------------------------------------------


def flatten(node, prefix=""):
    """``{"a": {"b": 1}}`` -> ``{"a.b": "1"}``, tags kept in the values.

    Example
    -------
    >>> tree = ruamel.yaml.YAML().load("a: !new:X {b: 1, c: [2, 3]}")
    >>> flatten(tree)
    {'a': '!new:X', 'a.b': '1', 'a.c[0]': '2', 'a.c[1]': '3'}
    """
    if isinstance(node, dict):
        items = {}
        tag = getattr(getattr(node, "tag", None), "value", None)
        if tag:
            items[prefix] = tag
        for key, value in node.items():
            items.update(flatten(value, f"{prefix}.{key}" if prefix else key))
        return items
    if isinstance(node, list):
        items = {}
        tag = getattr(getattr(node, "tag", None), "value", None)
        if tag:
            items[prefix] = tag
        for i, value in enumerate(node):
            items.update(flatten(value, f"{prefix}[{i}]"))
        return items
    tag = getattr(getattr(node, "tag", None), "value", None)
    value = getattr(node, "value", node)
    return {prefix: f"{tag} {value}" if tag else str(value)}


def _references(node, composed, resolved):
    """Top-level keys that ``node`` (of the unresolved tree) refers to.

    Of a pick ``!apply:operator.getitem [<mapping>, <key>]`` only the
    chosen entry's references count.
    """
    tag = str(getattr(getattr(node, "tag", None), "value", None) or "")
    if tag == "!apply:operator.getitem" and isinstance(node, list):
        if len(node) == 2:
            mapping, key = node
            names = _references(key, composed, resolved)
            choice = (
                resolved.get(next(iter(names)))
                if len(names) == 1 and _is_ref(key)
                else key
            )
            mapping_names = _references(mapping, composed, resolved)
            if _is_ref(mapping) and len(mapping_names) == 1:
                mapping = composed.get(next(iter(mapping_names)))
            if isinstance(mapping, dict) and str(choice) in mapping:
                return names | _references(
                    mapping[str(choice)], composed, resolved
                )
    if tag in ("!ref", "!copy"):
        return set(_REF.findall(str(getattr(node, "value", node))))
    if isinstance(node, dict):
        return set().union(
            *(_references(v, composed, resolved) for v in node.values())
        )
    if isinstance(node, list):
        return set().union(*(_references(v, composed, resolved) for v in node))
    return set()


def _is_ref(node):
    tag = str(getattr(getattr(node, "tag", None), "value", None) or "")
    return tag in ("!ref", "!copy")


def used_keys(composed_tree, resolved, roots):
    """The roots and every top-level key they refer to, transitively.

    Keys named in :data:`OUTPUT_KEYS` or :data:`RUN_OPTION_KEYS` are
    neither used nor followed.
    """
    skip = OUTPUT_KEYS | RUN_OPTION_KEYS
    used, stack = set(), [key for key in roots if key in composed_tree]
    # Keys run at load time (__set_seed: !apply:...) act without being read.
    stack += [key for key in composed_tree if str(key).startswith("__")]
    while stack:
        key = stack.pop()
        if key in used or key in skip or key not in composed_tree:
            continue
        used.add(key)
        stack.extend(_references(composed_tree[key], composed_tree, resolved))
    return used


def _inside(value, folder):
    """Whether a flattened value is ``folder`` or a path inside it."""
    value = value.split(" ", 1)[-1] if value.startswith("!") else value
    return value == folder or value.startswith(folder.rstrip("/") + "/")


def identity_of(resolved, composed=None, roots=(), run_opts=None):
    """What makes two runs the same, as flat ``key -> value`` strings.

    Arguments
    ---------
    resolved : dict
        The merged tree with overrides applied and references resolved,
        unbuilt (:func:`sercaf_toolkit.hparams.checked_hparams`).
    composed : str, optional
        The merged YAML text before resolution: which keys the ``roots``
        refer to. Without it every top-level key counts.
    roots : iterable of str
        The keys read by name (``sercaf_toolkit.training.recipe.RECIPE_KEYS``).
    run_opts : mapping, optional
        SpeechBrain's run options from the command line.

    Returns
    -------
    dict
        Flattened key -> value string, sorted by key.
    """
    if composed is not None:
        composed_tree = ruamel.yaml.YAML().load(composed)
        keys = used_keys(composed_tree, resolved, roots)
    else:
        skip = OUTPUT_KEYS | RUN_OPTION_KEYS
        keys = {key for key in resolved if key not in skip}
    output_folder = str(resolved.get("output_folder", "")) or None
    identity = {}
    for key in sorted(keys - set(RESULT_RUN_OPTIONS)):
        chosen = only_chosen(copy.deepcopy(resolved[key]))
        for leaf, value in flatten(chosen, key).items():
            last = re.split(r"[.\[]", leaf)[-1]
            if leaf != key and last in RUN_OPTION_LEAVES | OUTPUT_KEYS:
                continue
            if output_folder and _inside(value, output_folder):
                continue
            identity[leaf] = value
    identity.update(effective_run_options(resolved, run_opts))
    return dict(sorted(identity.items()))


def effective_run_options(resolved, run_opts=None):
    """The values of :data:`RESULT_RUN_OPTIONS` this run trains with.

    The command line wins over the YAML, the YAML over SpeechBrain's
    default (as in ``speechbrain.core.Brain``).
    """
    from speechbrain.utils.run_opts import RunOptions

    defaults = RunOptions().as_dict()
    given = getattr(run_opts, "overridden_args", None)
    if given is None and run_opts is not None:
        given = set(run_opts)
    values = {}
    for name in RESULT_RUN_OPTIONS:
        if run_opts is not None and name in (given or ()):
            value = run_opts[name]
        elif name in resolved:
            value = resolved[name]
        else:
            value = defaults.get(name)
        values[name] = str(getattr(value, "value", value))
    return values


def first_difference(earlier, now):
    """``(key, value there, value now)`` of the first difference, or None.

    Top-level keys come first (``lr`` says more than ``opt_class.lr``),
    then keys whose value changed before keys that came or went (with
    ``--streams=logmel``, ``streams`` rather than the SSL keys no longer
    used), then in alphabetical order.

    A key on one side only whose value is ``None`` is no difference: a
    setting added later with a null default (``ssl_finetune_layers``)
    keeps the behaviour of the runs recorded before it existed.

    Example
    -------
    >>> first_difference({"lr": "1", "opt.lr": "1"}, {"lr": "2", "opt.lr": "2"})
    ('lr', '1', '2')
    >>> first_difference({"lr": "1"}, {"lr": "1", "ssl.k": "None"}) is None
    True
    """
    different = [
        key
        for key in set(earlier) | set(now)
        if earlier.get(key, "None") != now.get(key, "None")
    ]
    if not different:
        return None
    key = min(
        different,
        key=lambda k: (
            "." in k or "[" in k,
            k not in earlier or k not in now,
            k,
        ),
    )
    return key, earlier.get(key, "(unset)"), now.get(key, "(unset)")


def read_run_info(folder):
    """The folder's ``run_info.json`` as a dict, or None."""
    path = os.path.join(folder, "run_info.json")
    if not os.path.exists(path):
        return None
    try:
        with open(path, encoding="utf-8") as source:
            return json.load(source)
    except (OSError, ValueError):
        return {}


def run_difference(folder, identity, data=None):
    """How the run in ``folder`` differs from the one asked now.

    Arguments
    ---------
    folder : str
        A run folder (it need not exist).
    identity : dict
        :func:`identity_of` of the run asked now.
    data : dict or callable, optional
        The data fingerprint of the run asked now, or a function that
        computes it (called only when the settings agree and the folder's
        record holds a fingerprint).

    Returns
    -------
    tuple or None
        ``(key, value there, value now)``; None when the folder holds no
        recorded run or the same one.
    """
    info = read_run_info(folder)
    if not info or info.get("identity") is None:
        return None  # no run, or one recorded before identities existed
    earlier = {
        **{k: v for k, v in LATER_KEYS.items() if k in identity},
        **info["identity"],
    }
    if info.get("identity_version") != IDENTITY_VERSION:
        common = set(earlier) & set(identity)  # an older, smaller record
        earlier = {k: earlier[k] for k in common}
        identity = {k: identity[k] for k in common}
    difference = first_difference(earlier, identity)
    if difference is not None or DATA_KEY not in info or data is None:
        return difference
    now = data() if callable(data) else data
    if now.get("sha256") != info[DATA_KEY].get("sha256"):
        return DATA_KEY, describe_data(info[DATA_KEY]), describe_data(now)
    return None


def refusal(folder, difference, way_out):
    """The one-line :class:`UserError` for a run that differs."""
    key, there, now = difference
    return UserError(
        f"{folder} holds a run of another experiment ({key}: "
        f"{_short(there)} there, {_short(now)} now); {way_out}"
    )


def _short(value, width=80):
    value = " ".join(str(value).split())
    return value if len(value) <= width else value[: width - 3] + "..."


def check_run_folder(folder, identity, data=None, way_out=None):
    """Refuses (:class:`UserError`, one line) a run that differs.

    See :func:`run_difference`; ``way_out`` ends the message.
    """
    difference = run_difference(folder, identity, data)
    if difference is not None:
        raise refusal(
            folder,
            difference,
            way_out
            or "add --rerun to empty the folder and start afresh, or give "
            "another --output_folder",
        )


# Data fingerprint -----------------------------------------------------------

MANIFESTS = ("train.csv", "valid.csv", "test.csv")


def data_fingerprint(folder, manifests=MANIFESTS):
    """A cheap fingerprint of a run's data.

    The bytes of each manifest, and for each audio file they list (the
    ``wav`` column) its size and modification time: a re-recorded,
    trimmed or regenerated file changes it, and so does any change to the
    splits, labels or speakers.

    Returns
    -------
    dict
        ``files`` (audio files listed), ``bytes`` (their total size) and
        ``sha256`` (of all of it).
    """
    import csv

    digest = hashlib.sha256()
    files, size = 0, 0
    for name in manifests:
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            continue
        with open(path, "rb") as source:
            content = source.read()
        digest.update(f"{name}\0{len(content)}\0".encode())
        digest.update(content)
        with open(path, newline="", encoding="utf-8") as source:
            for row in csv.DictReader(source):
                audio = row.get("wav")
                if not audio:
                    continue
                try:
                    stat = os.stat(audio)
                    line = f"{audio}\0{stat.st_size}\0{stat.st_mtime_ns}\n"
                    files, size = files + 1, size + stat.st_size
                except OSError:
                    line = f"{audio}\0missing\n"
                digest.update(line.encode())
    return {"files": files, "bytes": size, "sha256": digest.hexdigest()}


def describe_data(fingerprint):
    """``96 audio files, 1234567 bytes, sha256 1a2b3c4d5e6f``."""
    return (
        f"{fingerprint.get('files')} audio files, "
        f"{fingerprint.get('bytes')} bytes, "
        f"sha256 {str(fingerprint.get('sha256'))[:12]}"
    )


def prepare_staged(hparams_file, composed, overrides):
    """Runs the recipe's ``prepare`` into a temporary folder.

    The run's own folder is not touched: the tree is resolved again with
    ``output_folder`` in a fresh temporary folder, so every path derived
    from it (the manifests, ``split_info.json``) lands there, and only
    the ``prepare`` entry is built.

    Returns
    -------
    staging, fingerprint
        The temporary folder (the caller removes it, or moves its files
        into the run's folder) and its :func:`data_fingerprint`.
    """
    from hyperpyyaml import load_hyperpyyaml

    from sercaf_toolkit.hparams import overrides_dict

    staging = tempfile.mkdtemp(prefix="sercaf-prepare-")
    try:
        tree = resolve_hparams(
            hparams_file,
            {**overrides_dict(overrides), "output_folder": staging},
            composed,
        )
        text = io.StringIO()
        entry = ruamel.yaml.comments.CommentedMap()
        entry["prepare"] = tree["prepare"]
        ruamel.yaml.YAML().dump(entry, text)
        load_hyperpyyaml(text.getvalue())["prepare"]()
        return staging, data_fingerprint(staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def move_staged(staging, folder):
    """Moves the staged preparation's files into the run's folder."""
    for root, _, names in os.walk(staging):
        target = os.path.join(folder, os.path.relpath(root, staging))
        os.makedirs(target, exist_ok=True)
        for name in names:
            shutil.move(os.path.join(root, name), os.path.join(target, name))
    shutil.rmtree(staging, ignore_errors=True)


# --rerun --------------------------------------------------------------------


def split_rerun(argv):
    """``argv`` without ``--rerun``, and whether it was there.

    SpeechBrain's parser would take ``--rerun`` for a YAML override.

    Example
    -------
    >>> split_rerun(["caf.yaml", "--rerun", "--lr=0.1"])
    (['caf.yaml', '--lr=0.1'], True)
    """
    kept = [arg for arg in argv if arg not in (RERUN_FLAG, "--rerun=True")]
    return kept, len(kept) != len(argv)


def empty_run_folder(folder, keep=(LOCK_NAME,)):
    """Empties a run's folder for ``--rerun`` (keeping its lock).

    Raises
    ------
    UserError
        When the folder holds files but none of a run (a wrong
        ``--output_folder`` must not cost a user their files).
    """
    if not os.path.isdir(folder):
        return
    entries = [name for name in os.listdir(folder) if name not in keep]
    if entries and not any(name in entries for name in RUN_MARKERS):
        raise UserError(
            f"--rerun would empty {folder}, which does not hold a run (no "
            f"{' or '.join(RUN_MARKERS[:2])}); give the run's own "
            "--output_folder"
        )
    for name in entries:
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


# Lock -----------------------------------------------------------------------


def _process_start(pid):
    """The kernel's start time of a process (Linux), to spot reused pids."""
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as source:
            fields = source.read().rsplit(")", 1)[1].split()
        return fields[19]  # field 22 of stat: starttime
    except (OSError, IndexError):
        return None


def _alive(holder):
    """Whether a lock's holder (on this host) is still running."""
    pid = int(holder.get("pid", -1))
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: alive
    started = holder.get("process_start")
    now = _process_start(pid)
    return not (started and now and started != now)


def _missing_folders(folder):
    """The folders ``os.makedirs(folder)`` would create, outermost first."""
    missing = []
    folder = os.path.abspath(folder)
    while not os.path.exists(folder):
        missing.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return missing[::-1]


class RunLock:
    """``run.lock`` in a folder: one run (or ``sercaf cv``) at a time.

    The lock file holds the owner's pid, host, start time and command.
    Taking a lock that a live process holds raises a one-line
    :class:`UserError` naming it; a lock whose process has ended (same
    host, pid gone) is taken over with a one-line notice on stderr. A
    lock held on another host cannot be checked: it is refused, and the
    message says which file to delete if that run is gone.

    Arguments
    ---------
    folder : str
        The folder to lock (created if needed; the folders the lock
        created are removed on release if they are still empty, so that a
        run that stops before writing anything, e.g. on a user's mistake
        found while preparing the data, leaves no trace).
    command : list of str, optional
        The command line, for the record.
    name : str
        Who speaks in the takeover notice.
    way_out : str
        The end of the refusal message.

    Example
    -------
    >>> folder = tempfile.mkdtemp()
    >>> with RunLock(folder):
    ...     RunLock(folder).acquire()
    Traceback (most recent call last):
    ...
    sercaf_toolkit.errors.UserError: ... is in use by another run (pid ...
    >>> os.listdir(folder)
    []
    >>> with RunLock(os.path.join(folder, "results", "run")):
    ...     pass
    >>> os.listdir(folder)  # made by the lock, left empty: removed
    []
    """

    def __init__(
        self,
        folder,
        command=None,
        name="sercaf",
        way_out="wait for it to end, or give another --output_folder",
    ):
        self.folder = folder
        self.path = os.path.join(folder, LOCK_NAME)
        self.command = list(command if command is not None else sys.argv)
        self.name = name
        self.way_out = way_out
        self.held = False
        self.made = []

    def acquire(self):
        """Takes the lock (see the class); returns ``self``."""
        self.made = _missing_folders(self.folder)
        os.makedirs(self.folder, exist_ok=True)
        mine = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(self.command),
            "process_start": _process_start(os.getpid()),
        }
        for _ in range(5):
            try:
                handle = os.open(
                    self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644
                )
            except FileExistsError:
                self._take_over_or_refuse()
                continue
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(mine, out, indent=2)
            self.held = True
            return self
        raise UserError(
            f"{self.folder}: could not take {LOCK_NAME} (other runs keep "
            f"taking it); {self.way_out}"
        )

    def _take_over_or_refuse(self):
        try:
            with open(self.path, encoding="utf-8") as source:
                holder = json.load(source)
        except FileNotFoundError:
            return  # released meanwhile: try again
        except (OSError, ValueError):
            holder = {}  # unreadable: written by a process killed at once
        here = socket.gethostname()
        who = (
            f"pid {holder.get('pid')} on {holder.get('host')}, started "
            f"{holder.get('started')}"
        )
        if holder.get("host", here) != here:
            raise UserError(
                f"{self.folder} is in use by another run ({who}); "
                f"{self.way_out} (if that run is gone, delete {self.path})"
            )
        if holder and _alive(holder):
            raise UserError(
                f"{self.folder} is in use by another run ({who}); "
                f"{self.way_out}"
            )
        print(
            f"{self.name}: taking over {self.path}: its run ({who}) is no "
            "longer running",
            file=sys.stderr,
            flush=True,
        )
        try:
            os.remove(self.path)
        except FileNotFoundError:
            pass

    def release(self):
        """Removes the lock file if this process still holds it."""
        if not self.held:
            return
        self.held = False
        try:
            with open(self.path, encoding="utf-8") as source:
                holder = json.load(source)
            if holder.get("pid") == os.getpid():
                os.remove(self.path)
        except (OSError, ValueError):
            pass
        for folder in reversed(self.made):  # the innermost first
            try:
                os.rmdir(folder)  # only if empty: nothing was written
            except OSError:
                break
        self.made = []

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc_info):
        self.release()
        return False


# Interrupts -----------------------------------------------------------------


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C in a run, with where it happened (``str(error)``)."""

    def __init__(self, message):
        super().__init__(message)
        self.message = message

    def __str__(self):
        return self.message
