"""Names the unused-code check (vulture, run by scripts/test.sh) cannot see being used, each with who uses it.

Decorator-registered classes and functions (formats, transcoders, estimators, FastAPI routes, pytest fixtures)
are exempt through ``ignore_decorators`` in pyproject.toml's ``[tool.vulture]``; what is left is listed here.
"""
# ruff: noqa
# vulture reads this file as code: each line below counts as a use of the name it mentions.

_.__getattr__  # steerlab/__init__.py: the lazy top-level API (PEP 562), called by Python's import system
_.__dir__  # steerlab/__init__.py: the names dir(steerlab) and tab completion list
_.pad_token  # models/loading.py: set on the tokenizer, read by transformers
_.pre_tokenizer  # models/tiny.py: set on the tiny tokenizer, read by tokenizers
_.should_exit  # serve/cli.py, serve/background.py: uvicorn.Server's flag to stop
_.binary_location  # selenium ChromeOptions: where Chromium lies (tests/test_ui.py, scripts/ui_screenshot.py)
_.expected_share  # pas.baselines.LeakReport: a field of the report returned to users
_.__spec__  # tests/test_assembled.py: a stand-in module must carry one for importlib
overwrite  # tests/test_assembled.py: the stand-in's signature mirrors the real assemble(path, overwrite)
pytestmark  # tests: read by pytest (module-level marks)
local_ray  # tests/test_sweep_ray.py: a fixture used for its side effect (a local Ray cluster)
stop_after_parsing  # tests/test_config_hypothesis.py: a fixture used for its side effect (commands stop after parsing)
no_model_load  # tests/test_user_edges.py: a fixture used for its side effect (loading a model fails the test)
_.admitted  # serve/batcher.py BatchStats: reported by /health (via __dict__), read by benchmarks/bench_serve.py
_.admissions  # serve/batcher.py BatchStats: reported by /health (via __dict__), read by benchmarks/bench_serve.py
