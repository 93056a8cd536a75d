"""Quick demo-recipe command lines shared by the tests that run it."""

import pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
DEMO_YAML = ROOT / "recipes" / "Demo" / "hparams" / "caf.yaml"


def demo_args(data, output, *extra):
    """Demo recipe arguments: 3 utterances per emotion, 3 epochs by default."""
    if not any(arg.startswith("--number_of_epochs") for arg in extra):
        extra = (*extra, "--number_of_epochs=3")
    return [
        str(DEMO_YAML),
        "--device=cpu",
        f"--data_folder={data}",
        f"--output_folder={output}",
        "--utterances_per_emotion=3",
        *extra,
    ]
