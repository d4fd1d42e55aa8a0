import pytest

from steerlab.cli import build_parser, main


def test_every_method_registers_its_commands():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {"info", "asa", "pas", "bfcl", "sae"} <= set(sub.choices)


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and "steerlab" in capsys.readouterr().out
    assert main([]) == 2


def test_bad_config_is_a_clear_error_not_a_traceback(capsys):
    assert main(["asa", "run", "--set", "alpha=[1.0]", "-q"]) == 2
    assert "did you mean 'alphas'" in capsys.readouterr().err
    assert main(["pas", "run", "--sed", "3"]) == 2
    assert "unknown option --sed" in capsys.readouterr().err


def test_pas_overrides_reach_the_config():
    args, extra = build_parser().parse_known_args(
        ["pas", "run", "-c", "x.yaml", "--seed", "42", "--methods", "PASf"]
    )
    from steerlab.pas.config import parse_overrides

    assert args.config == "x.yaml" and parse_overrides(extra) == {"seed": 42, "methods": ["PASf"]}
