"""What a new user met on a fresh clone (issue 24), each through the real ``steerlab`` entry point: one-layer lists,
layer numbers checked before any model loads (the same way in every command), a binary data file, a misspelled
hub id offline, ``status`` of a run without repeating its flags, and no transformers deprecation noise."""

from __future__ import annotations

import subprocess
import sys

import pytest

from steerlab.cli import main


def _one_line(capsys, expected: str) -> str:  # noqa: ANN001
    err = capsys.readouterr().err.strip()
    assert expected in err, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if anything loads a model: a layer mistake must be caught before."""

    def refuse(*_a, **_k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("a model was loaded before the layers were checked")

    import steerlab.models
    import steerlab.models.loading

    monkeypatch.setattr(steerlab.models.loading, "load_model", refuse)
    monkeypatch.setattr(steerlab.models, "load_model", refuse)


# ----------------------------------------------------------------------------- 1. one layer is a list


def test_one_extra_layer_from_the_command_line_and_from_yaml(tmp_path):
    from steerlab.asa.config import AsaConfig
    from steerlab.cli import build_parser
    from steerlab.cli_args import config_from_args

    for flag in ("21", "21,", "[21]"):
        args = build_parser().parse_args(["asa", "sweep", "--extra-layers", flag])
        assert config_from_args(AsaConfig, args).extra_layers == [21], flag
    yaml = tmp_path / "asa.yaml"
    yaml.write_text("extra_layers: 21\nstrengths: 0.5\n")
    cfg = AsaConfig.load(yaml)
    assert cfg.extra_layers == [21] and cfg.strengths == [0.5]
    assert AsaConfig(extra_layers="auto").extra_layers == "auto"


# ----------------------------------------------------------------------------- 2. layers, before any model


@pytest.mark.parametrize(
    "args,expected",
    [
        (["pas", "run", "--layers", "99"], "layers [99] out of range: this model has layers 0..29"),
        (["pas", "run", "--layers", "0:99:5"], "layers '0:99:5' out of range: this model has layers 0..29"),
        (["pas", "run", "--layers", "-1"], "layers [-1]: layer numbers count decoder blocks from 0"),
        (["pas", "run", "--layers", "3,-2"], "layers [-2]: layer numbers count decoder blocks from 0"),
        (["pas", "run", "--layers=-3:"], "layers [-3]: layer numbers count decoder blocks from 0"),
        (["pas", "run", "--layers", "5:2"], "layers '5:2' selects no layer"),
        (["pas", "run", "--layers", "0:10:0"], "the step must be >= 1"),
        (["asa", "sweep", "--extra-layers", "-1"], "extra_layers [-1]: layer numbers count decoder blocks"),
        (
            ["asa", "sweep", "--extra-layers", "40"],
            "extra_layers [40] out of range: smollm2-135m has 30 layers",
        ),
        (
            ["sae", "run", "--splice-layers", "15,-1"],
            "splice_layers [-1]: layer numbers count decoder blocks",
        ),
        (["sae", "run", "--lora-layers", "-4"], "lora_layers [-4]: layer numbers count decoder blocks"),
        (["sae", "splice-cost", "--layers", "-1"], "layers [-1]: layer numbers count decoder blocks"),
        (["sae", "sparsity-sweep", "--layer", "30"], "layer [30] out of range: smollm2-135m has 30 layers"),
    ],
)
def test_layers_are_checked_before_any_model_loads(capsys, tmp_path, no_model_load, args, expected):
    assert main([*args, "--out", str(tmp_path / "run")]) == 2
    _one_line(capsys, expected)
    assert not (tmp_path / "run").exists()


def test_pas_layer_forms_resolve_the_same_way():
    from steerlab.pas.config import PasConfig

    cases = {
        "all": list(range(30)),
        "21": [21],
        "3,5": [3, 5],
        "0:10:5": [0, 5],
        "27:": [27, 28, 29],
        ":2": [0, 1],
    }
    for spec, want in cases.items():
        assert PasConfig.from_sources(None, {"layers": spec}).layer_list(30) == want, spec


# ----------------------------------------------------------------------------- 4. a binary data file


def test_binary_data_file_names_the_file(tmp_path, capsys):
    good = '{"prompt": "What is 2+2?", "domain": "math", "label": 1, "split": "cal"}\n'
    path = tmp_path / "data.jsonl"
    path.write_bytes(good.encode() + b"\xd0\x9f\xff\xfe not text\n")
    assert main(["asa", "run", "--data", str(path), "--out", str(tmp_path / "run")]) == 2
    _one_line(capsys, f"{path} is not UTF-8 text (byte 0xff at line 2): expected a JSONL file of prompts")
    assert main(["pas", "run", "--benchmarks", str(path), "--out", str(tmp_path / "pas")]) == 2
    _one_line(capsys, f"{path} is not UTF-8 text")
    tools = tmp_path / "tools.json"
    tools.write_bytes(b"\x89PNG\r\n\x1a\n")
    assert main(["asa", "run", "--tools", str(tools), "--out", str(tmp_path / "run")]) == 2
    _one_line(capsys, f"{tools} is not UTF-8 text (byte 0x89 at line 1): expected a JSON list of tools")
    conf = tmp_path / "c.yaml"
    conf.write_bytes(b"seed: 1\n\xff\n")
    assert main(["asa", "run", "-c", str(conf)]) == 2
    _one_line(capsys, f"{conf} is not UTF-8 text (byte 0xff at line 2): expected a YAML config")


# ----------------------------------------------------------------------------- 5. a hub id, offline


def test_uncached_hub_id_without_network_fails_at_once(monkeypatch, tmp_path):
    """No request to the hub (transformers' adapter lookup ignored local_files_only and retried for ~30 s with a
    warning a try) when the id is not cached and the hub is unreachable."""
    import huggingface_hub.file_download as fd

    from steerlab.models import ModelLoadError, load_model, loading

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(loading, "_hub_reachable", lambda timeout=3.0: False)
    asked: list[str] = []

    def no_network(url, *a, **k):  # noqa: ANN001, ANN002, ANN003, ANN202
        asked.append(url)
        raise OSError("no network in this test")

    monkeypatch.setattr(fd, "get_hf_file_metadata", no_network)
    with pytest.raises(
        ModelLoadError, match="not in the local Hugging Face cache and the hub cannot be reached"
    ):
        load_model("HuggingFaceTB/SmolLM2-135M-Instrct", device="cpu")
    assert asked == []


# ----------------------------------------------------------------------------- 6. status of a run


def test_status_reads_the_runs_recorded_config(tmp_path, tiny_models, capsys):
    from serve_helpers import TINY_ASA
    from steerlab.asa.config import AsaConfig
    from steerlab.asa.stages import runner
    from steerlab.stages import ModelHolder

    root = tmp_path / "run"
    models = ModelHolder()
    models.put("tiny", tiny_models("llama"))
    runner(AsaConfig(**{**TINY_ASA, "seed": 3, "n_top_layers": 2}), root, progress=False, models=models).run(
        "sweep"
    )
    assert main(["asa", "status", "--out", str(root)]) == 0
    rows = dict(line.split()[:2] for line in capsys.readouterr().out.splitlines())
    assert rows["extract"] == rows["sweep"] == "done" and rows["fit"] == "missing", rows
    # a flag given here still counts: the sweep reads n_top_layers, the extract does not
    assert main(["asa", "status", "--out", str(root), "--n-top-layers", "3"]) == 0
    rows = dict(line.split()[:2] for line in capsys.readouterr().out.splitlines())
    assert rows["extract"] == "done" and rows["sweep"] == "stale", rows
    missing = tmp_path / "never-ran"
    assert main(["asa", "status", "--out", str(missing)]) == 2
    _one_line(capsys, f"no run directory {missing}: nothing has run there")
    assert main(["sae", "status", "--out", str(missing)]) == 2
    _one_line(capsys, f"no run directory {missing}: nothing has run there")


# ----------------------------------------------------------------------------- 7. no deprecation noise


def test_generation_prints_no_past_key_values_deprecation():
    """transformers 5.24 warns when a forward gets ``past_key_values`` (renamed ``cache``); steerlab's decoding,
    capture and prompt-last steering pass the cache under the name the installed forward declares."""
    code = """
import torch
from steerlab.capture import capture
from steerlab.generation import generate
from steerlab.models import tiny_model
from steerlab.steering import steer
lm = tiny_model("llama")
prompts = ["a shared prefix for both rows, then one", "a shared prefix for both rows, then two"]
generate(lm, prompts, chat=False, max_new_tokens=4, progress=False)
generate(lm, prompts, chat=False, max_new_tokens=4, progress=False, shared_prefix=False)
capture(lm, prompts, [0, 1], chat=False, progress=False)
v = torch.ones(lm.hidden_size)
with steer(lm, v, layer=1, coef=0.5, policy="prompt_last"):
    generate(lm, prompts, chat=False, max_new_tokens=4, progress=False)
print("done")
"""
    proc = subprocess.run(
        [sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0 and "done" in proc.stdout, proc.stderr
    assert "past_key_values" not in proc.stderr and "deprecated" not in proc.stderr.lower(), proc.stderr
