"""The real `steerlab` entry point: every user mistake is one line and exit code 2, never a traceback."""

import re
import subprocess
import sys

import pytest

from steerlab.cli import build_parser, main


def _run(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "steerlab.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_every_method_registers_its_commands():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {"info", "asa", "pas", "bfcl", "sae", "agent"} <= set(sub.choices)
    # a sweep over a method's runs registers under the method's command (the method does not import sweeps)
    asa = next(a for a in sub.choices["asa"]._actions if a.dest == "asa_command")
    runs = asa.choices["runs"]
    assert runs.get_default("func").__module__ == "steerlab.sweeps.asa"
    assert {"--models", "--datasets", "--executor"} <= set(runs._option_string_actions)


def _commands(parser):
    """A parser's subcommands: name -> (its parser, the help the parent's listing shows for it)."""
    sub = next(a for a in parser._actions if a.dest and a.dest.endswith("command"))
    helps = {c.dest: c.help for c in sub._choices_actions}
    return {name: (p, helps.get(name)) for name, p in sub.choices.items()}


@pytest.mark.parametrize("method", ["asa", "pas", "sae"])
def test_every_stage_of_every_method_is_a_command_whose_help_is_its_doc(method):
    """`steerlab <method> <stage>` exists for each of the method's stages, its help and description its Stage.doc
    (one description: the two cannot drift)."""
    import importlib

    stages = importlib.import_module(f"steerlab.{method}.stages").STAGES
    commands = _commands(_commands(build_parser())[method][0])
    assert stages and all(s.doc for s in stages)
    for stage in stages:
        parser, listed = commands[stage.name]
        assert listed == stage.doc
        assert parser.description.startswith(stage.doc)
        args = parser.parse_args([])
        assert args.stage == stage.name and callable(args.func)
        assert "--out" in parser._option_string_actions  # the method's config fields


def test_stage_commands_come_from_the_stages_given():
    """The shared helper builds one command per Stage (and the extras around them), each parsing the config's
    fields; an alias names the same command."""
    import argparse

    from steerlab.cli_args import add_stage_commands, config_from_args
    from steerlab.pas.config import PasConfig
    from steerlab.stages import Stage

    root = argparse.ArgumentParser()
    sub = root.add_subparsers(dest="command")
    stages = [Stage("alpha", print, doc="first step"), Stage("beta", print, doc="second step")]
    made = add_stage_commands(
        sub,
        stages,
        PasConfig,
        func=len,
        before=[("run", "everything", {"stage": "beta"})],
        after=[("status", "what is done", {"func": repr})],
        aliases={"beta": ["b"]},
        note=". More.",
    )
    assert list(made) == ["run", "alpha", "beta", "status"]
    assert made["alpha"].description == "first step. More."
    args = root.parse_args(["b", "--seed", "7"])
    assert (args.stage, args.func) == ("beta", len)
    assert config_from_args(PasConfig, args).seed == 7
    assert root.parse_args(["run"]).stage == "beta"
    assert root.parse_args(["status"]).func is repr


def test_version_and_help(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and "steerlab" in capsys.readouterr().out
    assert main([]) == 2


@pytest.mark.parametrize(
    "args,expected",
    [
        (["asa", "run", "--strenghts", "1"], "did you mean '--strengths'"),
        (["asa", "run", "--strengths", "1,nan"], "strengths[1] must be a finite number"),
        (["asa", "run", "--taus", "0.5"], "0.5 < tau < 1"),
        (["asa", "run", "--limit-per-cell", "-3"], "limit_per_cell must satisfy 2 <= limit_per_cell"),
        (["asa", "run", "--data", "nowhere.jsonl"], "neither 'builtin' nor an existing JSONL"),
        (["pas", "run", "--sed", "3"], "did you mean '--seed'"),
        (["pas", "run", "--strengths", "big"], "strengths[0] must be a number"),
        (["pas", "run", "--benchmarks", "nope"], "unknown benchmark 'nope'"),
        (
            ["sae", "run", "--layer", "40"],
            "layer/lora_layers [40] out of range: smollm2-135m has 30 layers",
        ),
        (["sae", "splice-cost", "--layers", "3,99"], "layers [99] out of range"),
        (["bfcl", "eval", "--limit", "-1"], "limit must satisfy 0 <= limit"),
        (["bfcl", "eval", "--categories", "irrelevance,nope"], "unknown BFCL category 'nope'"),
        (["info", "--model", "nonexistent-model"], "is not a known alias"),
        (["asa", "demo", "--asset", "/no/such/asset"], "does not exist or is not a directory"),
        (["info", "--device", "tpu"], "unknown device 'tpu'; valid: auto, cpu, cuda, mps"),
        (["agent", "eval", "--out", "x", "--conditions", "asset"], "condition 'asset' needs --asset"),
        (["agent", "eval", "--out", "x", "--conditions", "plain,lora"], "unknown condition(s) ['lora']"),
        (["agent", "eval", "--out", "x", "--limit", "0"], "--limit must be >= 1, got 0"),
        (["agent", "eval", "--out", "x", "--subset", "tiny"], "task subset 'tiny' is not one of"),
        (
            ["agent", "eval", "--out", "x", "--base-url", "http://h/v1", "--conditions", "a,b"],
            "names the one",
        ),
    ],
)
def test_user_mistakes_are_one_line_and_exit_2(capsys, args, expected):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert expected in err, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err


def test_malformed_yaml_names_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 1\nmethods: [PASf\n")
    assert main(["pas", "run", "-c", str(bad)]) == 2
    assert f"{bad} is not valid YAML at line" in capsys.readouterr().err
    missing = tmp_path / "missing.yaml"
    assert main(["asa", "run", "-c", str(missing)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_values_keep_their_characters_through_the_command_line():
    """--field=value is taken as written: no hyphen becomes an underscore, negative numbers stay numbers."""
    from steerlab.cli_args import config_from_args
    from steerlab.pas.config import PasConfig

    args = build_parser().parse_args(
        [
            "pas",
            "run",
            "--out=/x/my-out",
            "--model=HuggingFaceTB/SmolLM2-135M-Instruct",
            "--strengths=-0.1,0.2",
            "--layers=21",
            "--steer_target=post_attention_layernorm",
        ]
    )
    cfg = config_from_args(PasConfig, args)
    assert cfg.out == "/x/my-out" and cfg.model == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert cfg.strengths == [-0.1, 0.2] and cfg.layer_list(30) == [21] and cfg.site == "mlp_in"


def test_the_installed_entry_point_reports_without_traceback():
    """The real process: exit code 2 and one line for a mistake."""
    proc = _run("asa", "run", "--betas", "x", "-q")
    assert (
        proc.returncode == 2 and proc.stderr.strip() == "steerlab: error: betas[0] must be a number, got 'x'"
    )


def test_top_level_help_speaks_to_users():
    text = build_parser().format_help()
    assert "Read what a language model represents" in text and "add_cli" not in text
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    for name, parser in sub.choices.items():
        for action in parser._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"{name} {action.option_strings} has no help text"


def _failing_info(exc):
    """``steerlab info`` whose work raises ``exc``: the entry point's reply to each kind of failure."""

    def boom(_args):
        raise exc

    return boom


def test_only_user_errors_are_the_users_mistake(monkeypatch, capsys):
    import steerlab.cli as cli
    from steerlab.config import UserError

    def run(exc, *extra):
        parser = cli.build_parser()
        info = next(a for a in parser._actions if a.dest == "command").choices["info"]
        info.set_defaults(func=_failing_info(exc))
        monkeypatch.setattr(cli, "build_parser", lambda: parser)
        return cli.main([*extra, "info"]), capsys.readouterr().err.strip()

    code, err = run(UserError("layer 40 is out of range"))
    assert code == 2 and err == "steerlab: error: layer 40 is out of range"
    code, err = run(KeyError("W_enc"))  # a bug in steerlab, not the user's doing
    assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("steerlab: internal error: KeyError: 'W_enc'") and "please report" in err
    assert "--traceback" in err
    code, err = run(ValueError("a plain ValueError is a bug too"))
    assert code == 1 and "internal error: ValueError" in err
    code, err = run(PermissionError(13, "Permission denied", "/root/out"))  # the system refused
    assert code == 1 and err == "steerlab: error: [Errno 13] Permission denied: '/root/out'"
    from steerlab.sweeps import SweepError
    from steerlab.sweeps.jobs import JobResult

    failed = JobResult("n2", {"n": 2}, ok=False, error="DataError: MCQ file x.jsonl does not exist")
    code, err = run(SweepError([failed], "PAS sweep"))  # each job's own reason, all of them
    assert code == 1 and err.startswith("steerlab: error: 1 job(s) of the PAS sweep failed")
    assert err.endswith("- n2 (n=2): DataError: MCQ file x.jsonl does not exist") and "bug" not in err
    with pytest.raises(KeyError):
        run(KeyError("W_enc"), "--traceback")


def test_library_errors_users_see_are_user_errors():
    """The errors a user's input causes (a layer, a file, an asset, a model, a format) are UserErrors, so the CLI
    prints them as one line with exit code 2."""
    from steerlab.assets import AssetError
    from steerlab.assets.gguf_cvec import ControlVectorError
    from steerlab.config import DataError, LayerError, UserError
    from steerlab.models import ArchitectureError, ModelLoadError
    from steerlab.sae.saelens_format import SaeLensFormatError

    for cls in (AssetError, ControlVectorError, DataError, LayerError, ArchitectureError, ModelLoadError):
        assert issubclass(cls, UserError), cls
    assert issubclass(SaeLensFormatError, UserError)


def _parsed_config(cls, argv):
    from steerlab.cli_args import config_from_args

    return config_from_args(cls, build_parser().parse_args(argv))


def test_serve_ui_demo_and_chat_flags_come_from_their_configs(tmp_path):
    """serve, ui, asa demo and asa chat take -c YAML and flags from Config classes, flags over the file; switches
    keep working alone; a repeated --prompt keeps its commas."""
    from steerlab.asa.config import AsaChatConfig, AsaDemoConfig
    from steerlab.serve.cli import ServeCommandConfig
    from steerlab.ui.cli import UiConfig

    yaml = tmp_path / "serve.yaml"
    yaml.write_text("port: 9001\nmax_batch: 3\ntemperature: 0.5\nmodel: tiny\n")
    cfg = _parsed_config(ServeCommandConfig, ["serve", "-c", str(yaml), "--max-batch", "5", "--no-few-shot"])
    assert (cfg.port, cfg.max_batch, cfg.temperature, cfg.model, cfg.no_few_shot) == (
        9001,
        5,
        0.5,
        "tiny",
        True,
    )
    assert cfg.template_tools is False and cfg.host == "127.0.0.1"
    limits = cfg.limits()
    assert (limits.max_batch, limits.default_temperature, limits.window_ms) == (5, 0.5, 40.0)
    assert _parsed_config(ServeCommandConfig, ["serve", "--no-few-shot", "false"]).no_few_shot is False
    ui = _parsed_config(UiConfig, ["ui", "--no-browser", "--template-tools", "--port", "7001"])
    assert (ui.port, ui.no_browser, ui.template_tools, ui.model) == (7001, True, True, None)
    assert UiConfig().port == 7860 and ServeCommandConfig().port == 8000
    demo = _parsed_config(
        AsaDemoConfig, ["asa", "demo", "--asset", "a", "--prompt", "What is 48,213 / 37?", "--prompt", "Hi"]
    )
    assert demo.prompt == ["What is 48,213 / 37?", "Hi"] and demo.max_new_tokens == 48
    chat = _parsed_config(AsaChatConfig, ["asa", "chat", "--asset", "a", "--max-new-tokens", "9"])
    assert (chat.asset, chat.max_new_tokens, chat.model, chat.device) == ("a", 9, None, "auto")


@pytest.mark.parametrize(
    "args,expected",
    [
        (["asa", "demo"], "--asset is required"),
        (["asa", "chat", "--asset", "a", "--max-new-tokens", "0"], "--max-new-tokens must be >= 1, got 0"),
        (["serve", "--max-batch", "0"], "argument --max-batch/--max_batch: must be >= 1, got 0"),
    ],
)
def test_serve_and_demo_mistakes_are_one_line_and_exit_2(capsys, args, expected):
    try:
        code = main(args)
    except SystemExit as e:  # a flag argparse itself refuses
        code = e.code
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert expected in err and len(err.splitlines()) == 1, err


def test_a_serve_yaml_is_checked_like_its_flags(tmp_path):
    from steerlab.config import UserError
    from steerlab.serve.cli import ServeCommandConfig

    for text, message in [
        ("port: 0", "port must satisfy 1 <= port <= 65535, got 0"),
        ("max_batch: 0", "max_batch must satisfy 1 <= max_batch"),
        ("temperature: 3", "--temperature must be in [0, 2], got 3.0"),
        ("prot: 80", "unknown serve config key 'prot' (did you mean 'port'?)"),
    ]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(text + "\n")
        with pytest.raises(UserError, match=re.escape(message)):
            ServeCommandConfig.load(bad)


def test_model_device_and_dtype_are_declared_once():
    """Every config that loads a model takes model, device and dtype from ModelConfig (one help, one default);
    a subclass may only redeclare ``model`` (an asset's model by default)."""
    import dataclasses

    from steerlab.asa.bfcl import BfclConfig
    from steerlab.asa.config import AsaChatConfig, AsaConfig, AsaDemoConfig
    from steerlab.config import ModelConfig
    from steerlab.pas.config import PasConfig
    from steerlab.sae.config import SparsitySweepConfig, SpliceCostConfig, ToolUseConfig
    from steerlab.serve.cli import ServeCommandConfig
    from steerlab.ui.cli import UiConfig

    base = {f.name: f for f in dataclasses.fields(ModelConfig)}
    for cls in (
        AsaConfig,
        AsaChatConfig,
        AsaDemoConfig,
        BfclConfig,
        PasConfig,
        ToolUseConfig,
        SpliceCostConfig,
        SparsitySweepConfig,
        ServeCommandConfig,
        UiConfig,
    ):
        assert issubclass(cls, ModelConfig), cls
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name in ("device", "dtype"):
            assert fields[name] is base[name] or fields[name].metadata == base[name].metadata, (cls, name)
        for klass in cls.__mro__[:-1]:
            if klass is not ModelConfig:
                assert not {"device", "dtype"} & set(vars(klass).get("__annotations__", {})), klass
