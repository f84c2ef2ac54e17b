import argparse

import pytest

from ktune_trainer.cli import apply_param_env, build_parser, main


def _parse(argv: list[str], environ: dict[str, str]) -> argparse.Namespace:
    parser = build_parser()
    apply_param_env(parser, argv, environ)
    return parser.parse_args(argv)


def test_flags_absent_from_the_command_line_come_from_ktune_param_variables():
    env = {
        "KTUNE_PARAM_LEARNING_RATE": "0.0003",
        "KTUNE_PARAM_BATCH_SIZE": "64.0",
        "KTUNE_PARAM_LOSS": "pointwise-mse",
        "KTUNE_PARAM_BF16": "false",
        "KTUNE_PARAM_EPOCHS": "2",
    }
    args = _parse(["train", "--epochs", "5"], env)
    assert args.learning_rate == 0.0003
    assert args.batch_size == 64
    assert args.loss == "pointwise-mse"
    assert args.bf16 is False
    assert args.epochs == 5  # the flag wins over the variable


def test_defaults_hold_without_variables():
    args = _parse(["train"], {})
    assert (args.learning_rate, args.batch_size, args.epochs, args.loss) == (1e-3, 32, 3, "listwise")


@pytest.mark.parametrize(
    ("variable", "value", "problem"),
    [
        ("KTUNE_PARAM_LEARNING_RATE", "fast", "could not convert string to float"),
        ("KTUNE_PARAM_BATCH_SIZE", "2.5", "expected a positive integer"),
        ("KTUNE_PARAM_WARMUP_RATIO", "1.5", "expected a number in [0, 1)"),
        ("KTUNE_PARAM_LOSS", "pairwise", "choose from pointwise-bce, pointwise-mse, listwise"),
    ],
)
def test_a_bad_parameter_variable_exits_2_naming_it(capsys, variable, value, problem):
    with pytest.raises(SystemExit) as exit_info:
        _parse(["train"], {variable: value})
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"{variable}={value!r}" in err and problem in err


def test_make_data_writes_a_file_that_train_can_load(tmp_path, capsys):
    assert main(["make-data", "--out", str(tmp_path), "--queries", "30", "--seed", "4", "--format", "csv"]) == 0
    assert "for 30 queries" in capsys.readouterr().out
    from ktune_trainer.data import load_data

    data = load_data(str(tmp_path / "esci.csv"))
    assert sum(len(data.split(name)) for name in ("train", "validation", "test")) == 30


def test_make_data_refuses_too_few_queries(tmp_path, capsys):
    assert main(["make-data", "--out", str(tmp_path), "--queries", "5"]) == 2
    assert "--queries 5: need at least 10" in capsys.readouterr().err
