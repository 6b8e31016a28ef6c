"""Where weights come from: a local folder, a local mirror, the Hugging Face cache, or the hub.

Offline is detected up front (within about a second) so that a machine with no network gets one
clear sentence instead of minutes of hub retries.
"""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path
from urllib.parse import urlparse

from vlmzoo.errors import HubUnreachableError

MODELS_DIR_ENV = "VLMZOO_MODELS_DIR"
PROBE_TIMEOUT_S = 1.5


def mirror_path(hub_id: str, models_dir: str | os.PathLike | None = None) -> Path | None:
    """A local mirror folder for ``hub_id``: ``$VLMZOO_MODELS_DIR/<org>/<name>``, if present.

    Lets an air-gapped machine (or a test) serve catalog ids from plain folders.
    """
    root = models_dir or os.environ.get(MODELS_DIR_ENV)
    if not root:
        return None
    path = Path(root) / hub_id
    return path if (path / "config.json").is_file() else None


def cached_snapshot(hub_id: str, revision: str | None = None) -> Path | None:
    """The Hugging Face cache's copy of ``hub_id``, without touching the network."""
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return None
    try:
        path = Path(snapshot_download(hub_id, revision=revision, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None
    return path if (path / "config.json").is_file() else None


def hub_endpoint() -> str:
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co")


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """True if a TCP connection to the hub endpoint opens within ``timeout`` seconds.

    Name resolution ignores socket timeouts, so the probe runs in a daemon thread that we stop
    waiting for. The answer is kept per endpoint for the process: loading several models on an
    offline machine costs one probe, not one each.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    endpoint = hub_endpoint()
    if endpoint not in _probed:
        _probed[endpoint] = _probe(endpoint, timeout)
    return _probed[endpoint]


_probed: dict[str, bool] = {}


def _probe(endpoint: str, timeout: float) -> bool:
    url = urlparse(endpoint)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    result: list[bool] = []

    def probe():
        try:
            with socket.create_connection((host, port), timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    t = threading.Thread(target=probe, daemon=True)
    t.start()
    t.join(timeout)
    return bool(result and result[0])


def download(hub_id: str, revision: str | None = None) -> Path:
    """Fetch ``hub_id`` from the hub (weights as safetensors, plus configs and tokenizers)."""
    if not hub_reachable():
        raise HubUnreachableError(
            f"cannot fetch {hub_id!r}: the Hugging Face hub ({hub_endpoint()}) is unreachable "
            f"and no local copy was found (HF cache, or ${MODELS_DIR_ENV}/{hub_id}). "
            "Pass a local checkpoint folder instead."
        )
    from huggingface_hub import snapshot_download

    # safetensors only: vlmzoo never unpickles weights
    patterns = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja"]
    try:
        return Path(snapshot_download(hub_id, revision=revision, allow_patterns=patterns))
    except Exception as e:  # noqa: BLE001 - surface the hub's own reason in one line
        raise HubUnreachableError(f"cannot fetch {hub_id!r} from the hub: {e}") from None


def resolve(hub_id: str, revision: str | None = None, models_dir=None, before_download=None) -> Path:
    """A local folder holding ``hub_id``: mirror, then cache, then download.

    ``before_download()`` runs only when a download is needed (e.g. to refuse a model that
    would not fit before fetching gigabytes of it).
    """
    local = mirror_path(hub_id, models_dir) or cached_snapshot(hub_id, revision)
    if local is not None:
        return local
    if before_download is not None:
        before_download()
    return download(hub_id, revision)


def resolve_file(repo_id: str, filename: str, revision: str | None = None, models_dir=None) -> Path:
    """One file of ``repo_id``: from the mirror (``$VLMZOO_MODELS_DIR/<org>/<name>/<file>``),
    the Hugging Face cache, or the hub."""
    root = models_dir or os.environ.get(MODELS_DIR_ENV)
    if root and (Path(root) / repo_id / filename).is_file():
        return Path(root) / repo_id / filename
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        hf_hub_download = None
    if hf_hub_download is not None:
        try:
            return Path(hf_hub_download(repo_id, filename, revision=revision, local_files_only=True))
        except Exception:  # noqa: BLE001 - not in the cache: fetch it below
            pass
    if not hub_reachable():
        raise HubUnreachableError(
            f"cannot fetch {filename!r} of {repo_id!r}: the Hugging Face hub ({hub_endpoint()}) is unreachable and "
            f"no local copy was found (HF cache, or ${MODELS_DIR_ENV}/{repo_id}/{filename})")
    try:
        return Path(hf_hub_download(repo_id, filename, revision=revision))
    except Exception as e:  # noqa: BLE001 - surface the hub's own reason in one line
        raise HubUnreachableError(f"cannot fetch {filename!r} of {repo_id!r} from the hub: {e}") from None
