"""dcgan train --config FILE and --print-config: TOML, YAML and JSON files, a run's own config.json."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from dcgan.cli import main
from dcgan.config import TrainConfig
from dcgan.configfile import read_config_file
from dcgan.errors import UserError
from dcgan.options import resolve

TINY = [
    "--g-width",
    "8",
    "--d-width",
    "8",
    "--batch-size",
    "16",
    "--max-images",
    "160",
    "--quiet",
    "--log-every-steps",
    "2",
    "--sample-every-steps",
    "1000",
    "--checkpoint-every-steps",
    "3",
    "--device",
    "cpu",
    "--num-workers",
    "0",
]


def _printed(capsys, argv: list[str]) -> dict:
    capsys.readouterr()
    assert main(["train", *argv, "--print-config"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    "suffix, text",
    [
        (".toml", 'steps = 7\nlr_g = 2e-4\naugment = "color"\nmirror = true\nmax_images = 100\n'),
        (".yaml", "steps: 7\nlr_g: 2.0e-4\naugment: color\nmirror: true\nmax_images: 100\n"),
        (".json", '{"steps": 7, "lr_g": 2e-4, "augment": "color", "mirror": true, "max_images": 100}'),
    ],
)
def test_each_format_gives_the_same_options(tmp_path, suffix, text):
    path = tmp_path / f"c{suffix}"
    path.write_text(text)
    assert read_config_file(path) == {"steps": 7, "lr_g": 2e-4, "augment": "color", "mirror": True, "max_images": 100}


def test_command_line_overrides_the_file_and_print_config_trains_nothing(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text('recipe = "paper"\nsteps = 7\nbatch_size = 32\ng_width = 8\n')
    run = tmp_path / "run"
    printed = _printed(capsys, ["--config", str(path), "--g-width", "16", "--run-dir", str(run)])
    assert (printed["recipe"], printed["steps"], printed["epochs"], printed["batch_size"]) == ("paper", 7, None, 32)
    assert printed["g_width"] == 16 and printed["lr_g"] == 2e-4  # the command line's, then the paper recipe's
    assert printed["run_dir"] == str(run) and not run.exists()
    # a length on the command line replaces the file's
    printed = _printed(capsys, ["--config", str(path), "--minutes", "2", "--run-dir", str(run)])
    assert (printed["steps"], printed["minutes"], printed["epochs"]) == (7, 2.0, None)
    # the printed config is itself a config file
    again = tmp_path / "printed.json"
    again.write_text(json.dumps(printed))
    assert TrainConfig.from_dict(read_config_file(again)) == TrainConfig.from_dict(
        {k: v for k, v in printed.items() if k != "class_names"}
    )


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"lr": 1e-4}', "unknown field 'lr'; did you mean lr_g?"),
        ('{"batch-size": 8}', "unknown field 'batch-size'; did you mean batch_size?"),
        ('{"steps": "5"}', "field steps must be an integer or null, got '5'"),
        ('{"steps": 5.0}', "field steps must be an integer or null, got 5.0"),
        ('{"mirror": 1}', "field mirror must be true or false, got 1"),
        ('{"lr_g": true}', "field lr_g must be a number, got True"),
        ('{"augment": null}', "field augment must be a string, got None"),
        ("[1, 2]", "expected a table of TrainConfig fields, got list"),
        ('{"steps": ', "not valid JSON"),
    ],
)
def test_bad_fields_are_one_line_naming_the_field(tmp_path, capsys, text, message):
    path = tmp_path / "c.json"
    path.write_text(text)
    assert main(["train", "--config", str(path), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_yaml_number_as_text_and_missing_files(tmp_path, capsys):
    path = tmp_path / "c.yaml"
    path.write_text("lr_g: 4e-4\n")
    with pytest.raises(UserError, match=r"field lr_g must be a number, got '4e-4' \(YAML 1.1 reads 4e-4 as text"):
        read_config_file(path)
    with pytest.raises(UserError, match="no such file"):
        read_config_file(tmp_path / "missing.toml")
    with pytest.raises(UserError, match="give a .toml, .yaml, .yml or .json file"):
        read_config_file(tmp_path / "c.ini")


def test_yaml_without_pyyaml_names_the_extra(tmp_path, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_yaml(name, *args, **kwargs):
        if name == "yaml":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_yaml)
    path = tmp_path / "c.yml"
    path.write_text("steps: 3\n")
    with pytest.raises(UserError, match=r"reading YAML needs PyYAML: pip install 'dcgan\[yaml\]'"):
        read_config_file(path)


def test_config_with_resume_is_refused(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text("{}")
    assert main(["train", "--config", str(path), "--resume", str(tmp_path)]) == 2
    assert "--config starts a new run" in capsys.readouterr().err


def test_python_and_command_line_lengths_resolve_the_same(tmp_path, capsys):
    run = str(tmp_path / "run")
    for flag, field, value in (("--minutes", "minutes", 3.0), ("--steps", "steps", 40)):
        printed = _printed(capsys, [flag, str(value), "--run-dir", run])
        from_python = resolve(TrainConfig(**{field: value}, run_dir=run)).cfg.to_dict()
        assert from_python == printed and printed["epochs"] is None


def _checkpoint(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def test_a_runs_config_json_repeats_its_first_steps_bit_for_bit(tmp_path):
    """dcgan train --config RUN/config.json --steps N --run-dir NEW: RUN's state at step N, exactly."""
    first, repeat = tmp_path / "first", tmp_path / "repeat"
    assert (
        main(
            [
                "train",
                "--steps",
                "8",
                "--keep-every-steps",
                "4",
                "--run-dir",
                str(first),
                "--seed",
                "3",
                "--augment",
                "translation",
                *TINY,
                "--checkpoint-every-steps",
                "4",
            ]
        )
        == 0
    )
    record = json.loads((first / "config.json").read_text())
    assert record["seed"] == 3 and "resolved" in record
    assert main(["train", "--config", str(first / "config.json"), "--steps", "4", "--run-dir", str(repeat)]) == 0
    a, b = _checkpoint(first / "checkpoints" / "step_0000004.pt"), _checkpoint(repeat / "checkpoints" / "latest.pt")
    assert a["step"] == b["step"] == 4
    for net in ("G", "D", "G_ema"):
        assert a[net].keys() == b[net].keys()
        for name in a[net]:
            assert torch.equal(a[net][name], b[net][name]), f"{net}.{name} differs"
    for opt in ("opt_G", "opt_D"):
        for k, state in a[opt]["state"].items():
            assert torch.equal(state["exp_avg_sq"], b[opt]["state"][k]["exp_avg_sq"])
    repeated = json.loads((repeat / "config.json").read_text())
    differ = {k for k in record if record[k] != repeated.get(k)}
    assert differ == {"run_dir", "steps", "resolved"}, differ


@pytest.mark.parametrize(
    "python, argv",
    [
        (dict(minutes=3.0), ["--minutes", "3"]),
        (dict(steps=7), ["--steps", "7"]),
        (dict(minutes=2.0, epochs=5), ["--minutes", "2", "--epochs", "5"]),
        (dict(recipe="paper", minutes=1.0), ["--recipe", "paper", "--minutes", "1"]),
        (dict(data="cifar10", data_root="x"), ["--data", "cifar10", "--data-root", "x"]),
    ],
)
def test_the_python_api_and_the_command_line_resolve_to_one_config(capsys, tmp_path, python, argv):
    run_dir = str(tmp_path / "run")
    recipe = python.pop("recipe", "default")
    from_python = resolve(TrainConfig.for_recipe(recipe, run_dir=run_dir, **python)).cfg.to_dict()
    assert _printed(capsys, [*argv, "--run-dir", run_dir]) == from_python
    if "minutes" in python and "epochs" not in python:
        assert from_python["epochs"] is None  # a length in minutes replaces the default epochs, both ways
