"""AIPerf (``aiperf`` on PyPI) in a venv of its own, its tokenizer loadable offline.

The venv is ``~/.cache/fakeai-streams/aiperf`` by default; nothing of AIPerf enters this
project's venv. :func:`install` makes it once (``pip install`` :data:`AIPERF`).

Offline tokenizer. AIPerf loads a tokenizer at start to size prompts and count tokens; with
``--tokenizer o200k_base`` (gpt-4o's encoding) that is tiktoken, which downloads its BPE file
unless it finds it in ``TIKTOKEN_CACHE_DIR`` under the SHA-1 of its URL. The ``litellm`` wheel
on PyPI (:data:`BPE_WHEEL`) ships that file under that name: :func:`install` downloads the
wheel once (``pip download --no-deps``), extracts the one file into ``<venv>/tiktoken``, checks
its SHA-256 against tiktoken's own expected hash, and :func:`aiperf_env` points AIPerf there,
with the Hugging Face hub offline.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

__all__ = [
    "AIPERF",
    "BPE_CACHE_NAME",
    "BPE_WHEEL",
    "DEFAULT_VENV",
    "ENCODING",
    "aiperf_env",
    "install",
]

AIPERF = "aiperf==0.13.0"
BPE_WHEEL = "litellm==1.110.2"
"""A PyPI wheel that ships tiktoken's BPE files under their cache names."""
ENCODING = "o200k_base"
_BPE_URL = f"https://openaipublic.blob.core.windows.net/encodings/{ENCODING}.tiktoken"
BPE_CACHE_NAME = hashlib.sha1(_BPE_URL.encode()).hexdigest()
"""The file name tiktoken looks for in ``TIKTOKEN_CACHE_DIR`` (``tiktoken/load.py``)."""
BPE_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
"""tiktoken's expected hash of the o200k_base file (``tiktoken_ext/openai_public.py``)."""
_BPE_MEMBER = f"litellm/litellm_core_utils/tokenizers/{BPE_CACHE_NAME}"
DEFAULT_VENV = Path.home() / ".cache" / "fakeai-streams" / "aiperf"


def _pip(venv: Path, *args: str, timeout_s: float) -> None:
    cmd = [str(venv / "bin" / "python"), "-m", "pip", "--disable-pip-version-check", *args]
    subprocess.run(cmd, check=True, timeout=timeout_s, capture_output=True)


def install(venv: Path, timeout_s: float = 1800.0) -> str | None:
    """The venv with AIPerf and the offline BPE file, made unless there; an error text, or None."""
    try:
        if not (venv / "bin" / "aiperf").exists():
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=60)
            _pip(venv, "install", "--quiet", AIPERF, timeout_s=timeout_s)
        bpe = venv / "tiktoken" / BPE_CACHE_NAME
        if not bpe.exists():
            with tempfile.TemporaryDirectory() as tmp:
                _pip(venv, "download", "--quiet", "--no-deps", "-d", tmp, BPE_WHEEL, timeout_s=600)
                (wheel,) = Path(tmp).glob("*.whl")
                with zipfile.ZipFile(wheel) as z:
                    content = z.read(_BPE_MEMBER)
            if hashlib.sha256(content).hexdigest() != BPE_SHA256:
                return f"{BPE_WHEEL}'s {ENCODING} file does not have tiktoken's expected hash"
            bpe.parent.mkdir(exist_ok=True)
            bpe.write_bytes(content)
    except (OSError, KeyError, ValueError, subprocess.SubprocessError) as e:
        return f"could not install {AIPERF} with an offline {ENCODING}: {e}"
    return None if (venv / "bin" / "aiperf").exists() else f"{AIPERF} installed no command"


def aiperf_env(venv: Path) -> dict[str, str]:
    """The environment AIPerf runs in: this one, with the offline tokenizer and hub."""
    return {
        **os.environ,
        "TIKTOKEN_CACHE_DIR": str(venv / "tiktoken"),
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
    }
