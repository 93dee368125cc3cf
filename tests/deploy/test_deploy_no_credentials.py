"""No committed file carries a credential (scans the content of every `git ls-files` file)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
# Patterns are assembled from pieces so that this file does not match itself.
_BEGIN = "-----BEGIN"
PATTERNS = {
    "private key": re.compile(_BEGIN + r" (RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY"),
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "credential assignment": re.compile(
        r"(?i)(password|passwd|secret[_-]?(access[_-]?)?key|secretkey|api[_-]?key|token)"
        r"[\"']?\s*[:=]\s*[\"']?([A-Za-z0-9/+_\-.]{20,})"
    ),
}
PLACEHOLDER_WORDS = ("replace", "example", "placeholder", "dummy", "fake", "test", "changeme")
SKIP_SUFFIXES = (".png", ".jpg", ".tflite", ".parquet", ".tfrecord", ".gz", ".zip", ".whl")


def _looks_real(value: str) -> bool:
    """A credential-like value: long, mixed letters and digits, not a placeholder or a name."""
    lowered = value.lower()
    if any(word in lowered for word in PLACEHOLDER_WORDS):
        return False
    classes = sum(bool(re.search(p, value)) for p in ("[a-z]", "[A-Z]", "[0-9]"))
    return classes == 3


def scan_text(text: str) -> list[str]:
    """Returns the kinds of credential found in ``text``."""
    found = []
    for kind, pattern in PATTERNS.items():
        for match in pattern.finditer(text):
            if kind == "credential assignment" and not _looks_real(match.group(3)):
                continue
            found.append(kind)
    return found


def _committed_files() -> list[Path]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    return [REPO / name for name in out.split("\0") if name]


def test_scanner_finds_each_kind_of_credential():
    samples = {
        "private key": _BEGIN + " RSA PRIVATE KEY-----\nMIIEow",
        "AWS access key id": "aws_access_key_id = AKIA" + "Q3EXAMPLEZ7ABCD2",
        "GitHub token": "gh" + "p_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8",
        "credential assignment": "MINIO_SECRET_KEY=" + "wJalrXUtnFEMI/K7MDENG/bPxRfiCY",
    }
    for kind, sample in samples.items():
        assert kind in scan_text(sample), kind
    assert scan_text("secretkey=replace-with-secret-key") == []
    assert scan_text("token = os.environ['KF_PIPELINES_TOKEN']") == []


def test_no_committed_file_carries_a_credential():
    files = _committed_files()
    assert len(files) > 10
    offenders = []
    for path in files:
        if path.suffix in SKIP_SUFFIXES or not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for kind in scan_text(text):
            offenders.append(f"{path.relative_to(REPO)}: {kind}")
    assert offenders == []


def test_no_credentials_env_file_or_secret_manifest_is_committed():
    for path in _committed_files():
        rel = path.relative_to(REPO).as_posix()
        assert not rel.endswith("minio-credentials.env"), rel
        assert not re.search(r"(^|/)\.env$", rel), rel
        if path.suffix in (".yaml", ".yml") and path.is_file():
            text = path.read_text(encoding="utf-8")
            if re.search(r"^kind:\s*Secret\s*$", text, re.M):
                assert not re.search(r"^(data|stringData):", text, re.M), rel


@pytest.mark.parametrize("name", ["minio-credentials.env"])
def test_credentials_file_is_git_ignored(name):
    result = subprocess.run(
        ["git", "check-ignore", "-q", f"manifests/base/{name}"], cwd=REPO, check=False
    )
    assert result.returncode == 0
