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


def test_output_to_a_fifo_is_written_into_not_replaced(tmp_path):
    """A device or FIFO as -o (/dev/null, a named pipe) is written to directly; renaming the temporary
    file over it would replace it. (Tested with a FIFO: a regression with /dev/null would break the machine.)"""
    import stat
    import threading

    (tmp_path / "wrap.key").write_bytes(os.urandom(32))
    key = ["--raw-key-file", str(tmp_path / "wrap.key"), "--key-name", "k", "-q"]
    plain = os.urandom(300_000)
    (tmp_path / "p").write_bytes(plain)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)

    def through_fifo(args):
        got = []
        reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()))
        reader.start()
        p = subprocess.run([envelope_bin(), *args, "-o", str(fifo), *key], capture_output=True, timeout=60)
        reader.join(timeout=60)
        assert stat.S_ISFIFO(os.stat(fifo).st_mode), "the FIFO was replaced"
        return p, got[0]

    p, ciphertext = through_fifo(["encrypt", str(tmp_path / "p")])
    assert p.returncode == 0, p.stderr
    (tmp_path / "m").write_bytes(ciphertext)
    p, out = through_fifo(["decrypt", str(tmp_path / "m")])
    assert p.returncode == 0 and out == plain, p.stderr
    # A failure streaming into it says so, naming it.
    (tmp_path / "cut").write_bytes(ciphertext[:-20])
    p, _ = through_fifo(["decrypt", str(tmp_path / "cut")])
    assert p.returncode == 1
    assert f"what was written to {fifo} is incomplete" in p.stderr.decode(), p.stderr
