"""``import layerscope`` and ``import layerscope.integrations`` import no training framework or tracker;
a missing framework is one ConfigError naming the extra to install."""

from __future__ import annotations

import json
import subprocess
import sys

FRAMEWORKS = (
    "transformers",
    "lightning",
    "pytorch_lightning",
    "tensorboard",
    "torch.utils.tensorboard",
    "wandb",
    "mlflow",
    "accelerate",
)


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_importing_layerscope_and_its_integrations_imports_no_framework():
    code = (
        "import sys, json\n"
        "import layerscope, layerscope.integrations\n"
        "from layerscope.integrations import TensorBoardSink, WandbSink, MLflowSink, SinkStore, log_run\n"
        f"print(json.dumps([m for m in {FRAMEWORKS!r} if m in sys.modules]))\n"
    )
    p = _python(code)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout) == []


def test_importing_the_hf_callback_without_transformers_names_the_extra():
    p = _python(
        "import sys\n"
        "sys.modules['transformers'] = None  # as if not installed\n"
        "from layerscope.errors import ConfigError\n"
        "try:\n"
        "    import layerscope.integrations.hf\n"
        "except ConfigError as e:\n"
        "    print(e)\n"
    )
    assert p.returncode == 0, p.stderr
    assert "pip install 'layerscope[hf]'" in p.stdout


def test_importing_the_lightning_callback_without_lightning_names_the_extra():
    p = _python(
        "import sys\n"
        "for m in ('lightning', 'lightning.pytorch', 'pytorch_lightning'):\n"
        "    sys.modules[m] = None\n"
        "from layerscope.errors import ConfigError\n"
        "try:\n"
        "    import layerscope.integrations.lightning\n"
        "except ConfigError as e:\n"
        "    print(e)\n"
    )
    assert p.returncode == 0, p.stderr
    assert "pip install 'layerscope[lightning]'" in p.stdout
