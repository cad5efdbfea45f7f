import torch

from circuitcut import threads
from circuitcut.cli import main


def test_default_threads_leave_busy_cores_alone(monkeypatch):
    monkeypatch.setattr(threads, "available_cores", lambda: 8)
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (5.4, 0.0, 0.0))
    assert threads.default_threads() == 3
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (12.0, 0.0, 0.0))
    assert threads.default_threads() == 1
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert threads.default_threads() == 8


def test_the_cli_sets_the_threads_asked_for(tiny_model_dir, capsys):
    before = torch.get_num_threads()
    try:
        assert main(["info", str(tiny_model_dir), "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
        assert main(["info", str(tiny_model_dir), "--threads", "0"]) == 2
        assert "at least one thread" in capsys.readouterr().err
    finally:
        torch.set_num_threads(before)
