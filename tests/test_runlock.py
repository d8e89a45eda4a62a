"""minigpt.runlock: one run per folder; a stale lock of a dead process is taken over."""

import os
import signal
import subprocess
import sys

import pytest

from minigpt.errors import RunLockedError
from minigpt.runlock import LOCK_NAME, RunLock

HOLD = "import sys, time; from minigpt.runlock import RunLock; RunLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)"


def hold_in_another_process(folder):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_lock_on_a_folder_fails_with_the_pid_of_the_holder(tmp_path):
    proc = hold_in_another_process(tmp_path)
    try:
        with pytest.raises(RunLockedError, match=f"process {proc.pid}"):
            RunLock(tmp_path).acquire()
    finally:
        proc.kill()
        proc.wait()


def test_the_stale_lock_of_a_killed_process_is_taken_over(tmp_path):
    proc = hold_in_another_process(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (tmp_path / LOCK_NAME).read_text().split() == [str(proc.pid)]  # the file is still there
    with RunLock(tmp_path) as lock:
        assert lock.took_over == proc.pid
        assert (tmp_path / LOCK_NAME).read_text().split() == [str(os.getpid())]


def test_releasing_removes_the_lock_file_and_frees_the_folder(tmp_path):
    with RunLock(tmp_path):
        assert (tmp_path / LOCK_NAME).is_file()
    assert not (tmp_path / LOCK_NAME).exists()
    with RunLock(tmp_path) as again:
        assert again.held and again.took_over is None


def test_two_locks_in_one_process_exclude_each_other(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match=str(os.getpid())):
            RunLock(tmp_path).acquire()
