"""The one SoftHSMv2 token fixture of the interop tests: a fresh token per test from scripts/softhsm.sh.

Without SoftHSMv2 the tests that use it skip, except under CI (`CI` set), where they fail.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import secrets_scan
from conftest import REPO

DEBIAN_MODULE = "/usr/lib/softhsm/libsofthsm2.so"


class Token:
    """A fresh SoftHSMv2 token in `directory` (its own softhsm2.conf and token directory)."""

    def __init__(self, directory: Path, label: str = "envelope-test"):
        module = os.environ.get("ENVELOPE_TEST_HSM_MODULE") or DEBIAN_MODULE
        if not Path(module).is_file():
            if os.environ.get("CI"):
                pytest.fail(f"SoftHSMv2 module {module} not found under CI (scripts/softhsm.sh install)")
            pytest.skip(f"SoftHSMv2 module {module} not found")
        r = subprocess.run([str(REPO / "scripts" / "softhsm.sh"), "init", str(directory), label],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        env = dict(line.split("=", 1) for line in r.stdout.splitlines() if "=" in line)
        self.conf = env["SOFTHSM2_CONF"]
        self.module = env["ENVELOPE_TEST_HSM_MODULE"]
        self.label = env["ENVELOPE_TEST_HSM_TOKEN_LABEL"]
        self.pin_file = Path(env["ENVELOPE_TEST_HSM_PIN_FILE"])
        self.pin = self.pin_file.read_text().strip()
        self.so_pin = (Path(self.conf).parent / "so.pin").read_text().strip()
        secrets_scan.add(self.pin, "HSM user PIN")
        secrets_scan.add(self.so_pin, "HSM SO PIN")

    def add_token(self, label: str, pin: str) -> None:
        """Another token in the same token directory (the same SOFTHSM2_CONF sees both)."""
        secrets_scan.add(pin, f"HSM user PIN of token {label}")
        r = subprocess.run(["softhsm2-util", "--init-token", "--free", "--label", label, "--so-pin", self.so_pin,
                            "--pin", pin], capture_output=True, text=True, env={**os.environ, **self.env()},
                           timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr

    def args(self, pin_file: "Path | None | bool" = None) -> list[str]:
        """`envelope serve` options that keep the root of trust in this token."""
        args = ["--hsm-module", self.module, "--hsm-token-label", self.label]
        if pin_file is not False:
            args += ["--hsm-pin-file", str(pin_file or self.pin_file)]
        return args

    def cluster_arg(self, cluster_id: str, label: str | None = None) -> list[str]:
        """`envelope serve` option naming a token of this directory as a CloudHSM cluster."""
        return ["--hsm-cluster", f"{cluster_id}={self.module}:{label or self.label}"]

    def env(self) -> dict:
        return {"SOFTHSM2_CONF": self.conf}


@pytest.fixture
def token(tmp_path):
    return Token(tmp_path / "hsm")
