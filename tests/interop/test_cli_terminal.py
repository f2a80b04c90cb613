"""`envelope encrypt|decrypt` on a terminal: the progress bar on standard error (a pseudo-terminal here)."""

import os
import pty
import subprocess

from conftest import envelope_bin


def run_on_terminal(args, cwd):
    """Runs envelope with stderr on a pseudo-terminal; returns (exit status, what the terminal got)."""
    master, slave = pty.openpty()
    p = subprocess.Popen([envelope_bin(), *args], cwd=cwd, stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return p.wait(timeout=120), b"".join(chunks).decode(errors="replace")


def test_progress_bar_on_a_terminal_only_for_large_inputs_and_not_with_quiet(tmp_path):
    (tmp_path / "wrap.key").write_bytes(os.urandom(32))
    key = ["--raw-key-file", "wrap.key", "--key-name", "k"]
    big = tmp_path / "big"
    big.write_bytes(os.urandom(48 << 20))
    (tmp_path / "small").write_bytes(b"x" * 1000)

    status, term = run_on_terminal(["encrypt", "big", "-o", "big.env", *key], tmp_path)
    assert status == 0, term
    assert "MiB" in term and "envelope: encrypted 50331648 bytes" in term, term
    status, term = run_on_terminal(["decrypt", "big.env", "-o", "big.out", *key], tmp_path)
    assert status == 0, term
    assert "MiB" in term, term
    assert (tmp_path / "big.out").read_bytes() == big.read_bytes()

    # --quiet: nothing at all; a small input: the summary line only.
    status, term = run_on_terminal(["decrypt", "big.env", "-o", "big.q", "-q", *key], tmp_path)
    assert (status, term) == (0, "")
    status, term = run_on_terminal(["encrypt", "small", "-o", "small.env", *key], tmp_path)
    assert status == 0 and term.strip() == "envelope: encrypted 1000 bytes into small.env", repr(term)
