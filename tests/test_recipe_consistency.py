"""Recipe YAML consistency, in the spirit of SpeechBrain's tests/consistency.

Every experiment file merges and resolves, every key it declares (in any
of its layers) is used, the README's overrides exist in every recipe, the
fold count comes from the corpus, and experiment files stay short: what
they share lives once, in a corpus file or in recipes/common/.
"""

import pathlib
import re

import pytest
import ruamel.yaml

from sercaf_toolkit.corpora import recipe_fold_count
from sercaf_toolkit.hparams import compose_hparams, resolve_hparams
from sercaf_toolkit.training.recipe import RECIPE_KEYS

ROOT = pathlib.Path(__file__).resolve().parent.parent
RECIPES = ROOT / "recipes"
EXPERIMENTS = sorted(RECIPES.glob("*/hparams/*.yaml"))
NEEDED = {"data_folder": "/corpus", "labels": ["a", "b"]}
FOLDS = {
    "IEMOCAP": 5,
    "EmoDB": 10,
    "CASIA": 4,
    "RAVDESS": 6,
    "Demo": 4,
    "MSPPodcast": 2,  # the official Test1 and Test2
    "MultiCorpus": 6,  # EmoDB (10) and RAVDESS (6): the fewest
}


def recipe_id(path):
    return f"{path.parent.parent.name}/{path.name}"


def declared_keys(path):
    return list(ruamel.yaml.YAML().load(compose_hparams(path)))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=recipe_id)
def test_every_key_is_used(path):
    text = compose_hparams(path)
    unused = [
        key
        for key in declared_keys(path)
        if key not in RECIPE_KEYS
        and not key.startswith("__")  # !apply: run for their effect
        and not re.search(rf"<{re.escape(key)}[>\[]", text)
    ]
    assert not unused, f"{recipe_id(path)} declares unused keys {unused}"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=recipe_id)
def test_every_recipe_resolves_and_knows_its_folds(path):
    corpus = path.parent.parent.name
    needed = {k: v for k, v in NEEDED.items() if k in declared_keys(path)}
    tree = resolve_hparams(path, needed)
    missing = sorted(RECIPE_KEYS - set(tree))
    assert not missing, f"{recipe_id(path)} lacks contract keys {missing}"
    if corpus in FOLDS:
        assert recipe_fold_count(tree) == FOLDS[corpus]
    assert str(tree["experiment"]) == path.stem


def test_iemocap_protocol_decides_the_fold_count():
    path = RECIPES / "IEMOCAP" / "hparams" / "caf.yaml"
    tree = resolve_hparams(
        path, {"data_folder": "/x", "protocol": "leave_one_speaker_out"}
    )
    assert recipe_fold_count(tree) == 10


def test_readme_overrides_exist_in_every_recipe():
    readme = (ROOT / "README.md").read_text()
    sentence = re.search(
        r"Every recipe takes the overrides(.*?)\.\n", readme, re.S
    )
    overrides = re.findall(r"`--(\w+)`", sentence.group(1))
    assert {"data_folder", "fold", "number_of_epochs"} <= set(overrides)
    for path in EXPERIMENTS:
        keys = set(declared_keys(path))
        missing = [key for key in overrides if key not in keys]
        assert not missing, f"{recipe_id(path)} lacks {missing}"


def test_experiment_files_share_no_long_block():
    """What two experiments share lives in a layer, not copied in both."""
    window = 11
    seen = {}
    for path in EXPERIMENTS:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        for start in range(len(lines) - window + 1):
            block = "\n".join(lines[start : start + window])
            other = seen.setdefault(block, path)
            assert other == path, (
                f"{recipe_id(path)} and {recipe_id(other)} share {window} lines"
            )
