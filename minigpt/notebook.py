"""What every course notebook shares: `setup()` first, then small helpers.

    from minigpt.notebook import setup
    device = setup(seed=0)

`setup` seeds Python, NumPy and PyTorch, picks the device (cuda > mps > cpu), makes matplotlib
draw inline with a Japanese font, and prints one line about the environment. When the notebooks
run as tests (`make test-notebooks`, `make notebooks`: the environment variable MINIGPT_CI=1), it
also pins PyTorch to one thread and runs on the CPU, so every float comes out bit for bit the same
as in the stored outputs whatever else runs on the machine (a sum split over 2 threads adds in
another order).
"""

from __future__ import annotations

import os
import platform
import random
import sys
import time
import warnings
from pathlib import Path

__all__ = ["NOTEBOOK_ENV", "setup", "in_ci", "in_colab", "pick_device", "workdir", "timer", "fmt_time", "env_line",
           "progress"]


# The environment the notebooks run in as tests (NOTEBOOK_ENV), the float code their outputs depend on
# (float_code) and when the tests compare them (compares_outputs): minigpt/notebook_env.py.
from minigpt.notebook_env import NOTEBOOK_ENV, compares_outputs, float_code  # noqa: E402,F401


def notebook_env(repo_root: str | os.PathLike) -> dict[str, str]:
    """NOTEBOOK_ENV, plus MINIGPT_TATOEBA_URL when the course machines' offline Tatoeba mirror lies beside
    the repository (`../shared/data/tatoeba`): chapter 12 then reads Tatoeba the same way when its stored
    outputs are made (tools/run_notebooks.py) and when they are tested (the root conftest.py)."""
    env = dict(NOTEBOOK_ENV)
    mirror = Path(repo_root).resolve().parent / "shared" / "data" / "tatoeba" / "jpn_sentences.tsv.bz2"
    if mirror.is_file() and not os.environ.get("MINIGPT_TATOEBA_URL"):
        env["MINIGPT_TATOEBA_URL"] = mirror.as_uri()
    return env


def in_ci() -> bool:
    """True when the notebooks run as tests or are re-executed by tools/run_notebooks.py."""
    return os.environ.get("MINIGPT_CI", "") not in ("", "0")


def in_colab() -> bool:
    return "google.colab" in sys.modules


def pick_device(prefer: str | None = None):
    """cuda if there is an NVIDIA GPU, else mps (Apple silicon), else cpu: minigpt.device.pick_device.

    `prefer` (or the environment variable MINIGPT_DEVICE) overrides. Under MINIGPT_CI=1 the default
    is the CPU: the stored outputs the tests compare with come from the CPU."""
    # lazy: this module is imported (conftest.py, the Colab cell) before torch is needed
    from minigpt import device

    return device.pick_device(prefer)


def env_line(device) -> str:
    import torch

    import minigpt

    return (f"minigpt {minigpt.__version__} · Python {platform.python_version()} · torch {torch.__version__} "
            f"· device {device.type}")


def notebook_path() -> str | None:
    """The running notebook's path as its front end knows it, or None when it cannot be found out.

    JupyterLab / Notebook 7 (jupyter_server >= 2) put it in JPY_SESSION_NAME; VS Code in
    __vsc_ipynb_file__; Colab opens a notebook without its folder, but its sessions API
    (http://$COLAB_JUPYTER_IP:$KMP_TARGET_PORT/api/sessions) names the source, e.g. the GitHub URL
    .../blob/main/solutions/ja/02_....ipynb. Any failure (no network, another front end) gives None.
    """
    if os.environ.get("JPY_SESSION_NAME"):
        return os.environ["JPY_SESSION_NAME"]
    main = sys.modules.get("__main__")
    if getattr(main, "__vsc_ipynb_file__", None):
        return str(main.__vsc_ipynb_file__)
    if in_colab() and os.environ.get("COLAB_JUPYTER_IP"):
        import json
        import urllib.parse
        import urllib.request

        url = f"http://{os.environ['COLAB_JUPYTER_IP']}:{os.environ.get('KMP_TARGET_PORT', '9000')}/api/sessions"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                sessions = json.loads(r.read().decode("utf-8"))
            return urllib.parse.unquote(sessions[0].get("path") or sessions[0].get("name") or "") or None
        except Exception:  # noqa: BLE001 - a guess only: the caller falls back to the folder
            return None
    return None


def japanese_edition() -> bool:
    """True in a notebook of the Japanese edition, which sits in a folder named `ja` (solutions/ja,
    chapters/ja): the kernel's working folder (Jupyter and nbval start it in the notebook's folder),
    else the notebook's path as the front end names it (notebook_path: Colab, VS Code)."""
    if Path.cwd().name == "ja":
        return True
    path = notebook_path()
    return bool(path) and "ja" in Path(path.split("?")[0].replace("\\", "/")).parent.parts


def setup(seed: int = 0, device: str | None = None, quiet: bool = False):
    """Seed everything, choose the device, set up plots; returns the torch.device to use.

    Deterministic settings: the same seed gives the same numbers on the same machine. On a GPU,
    cuDNN is asked for deterministic kernels; a few GPU ops stay non-deterministic, which is why
    the stored outputs of the notebooks come from the CPU.
    """
    import numpy as np
    import torch

    if japanese_edition():  # solutions/ja, chapters/ja: the checkers and messages speak Japanese
        os.environ["MINIGPT_LANG"] = "ja"
    elif in_ci():  # the English edition's stored outputs are English, whatever the machine's locale
        os.environ["MINIGPT_LANG"] = "en"
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if torch.backends.cudnn.is_available():
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    threads = os.environ.get("MINIGPT_NUM_THREADS") or ("1" if in_ci() else None)
    if threads:
        torch.set_num_threads(int(threads))
    torch.set_printoptions(precision=4, sci_mode=False)
    np.set_printoptions(precision=4, suppress=True)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # no fork warnings from tokenizers
    # tqdm warns in notebooks without ipywidgets ("IProgress not found") as soon as transformers
    # imports it; progress bars still work as text, so the warning is only noise.
    warnings.filterwarnings("ignore", message="IProgress not found")
    dev = pick_device(device)
    _setup_plots()
    if not quiet:
        print(env_line(dev) + f" · seed {seed}")
    return dev


def _setup_plots() -> None:
    try:
        import matplotlib
    except ImportError:
        return
    try:
        from IPython import get_ipython

        ip = get_ipython()
        if ip is not None and "inline" not in matplotlib.get_backend():
            ip.run_line_magic("matplotlib", "inline")
    except Exception:
        pass
    try:
        import matplotlib_fontja  # noqa: F401  (registers IPAexGothic and makes it the default font)
    except ImportError:
        pass
    matplotlib.rcParams.update({"figure.figsize": (7, 3.5), "figure.dpi": 80, "axes.grid": True,
                                "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False})


def workdir(name: str) -> Path:
    """A folder for files a notebook writes (tokenizers, checkpoints): runs/notebooks/<name> in the
    repository when there is one (git ignores runs/), else ./runs/<name>."""
    root = Path(__file__).resolve().parent.parent
    base = root / "runs" / "notebooks" if (root / "pyproject.toml").is_file() else Path("runs")
    if japanese_edition():  # its own folder: the Japanese and English notebooks run side by side in the tests
        base = base / "ja"
    path = base / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def fmt_time(seconds: float) -> str:
    """A duration as the notebooks print it: '⏱ 3.2 s'. The ⏱ lets the test sanitizer ignore it."""
    if seconds < 1:
        return f"⏱ {seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"⏱ {seconds:.1f} s"
    return f"⏱ {seconds / 60:.1f} min"


class timer:
    """`with timer() as t: ...` then `t.seconds`, or `print(t)` for '⏱ 3.2 s'."""

    def __enter__(self):
        self.start = time.perf_counter()
        self.seconds = 0.0
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start
        return False

    def __str__(self) -> str:
        return fmt_time(self.seconds)


def progress(folder: str | Path | None = None, *, timeout: float = 30.0, show: bool = True):
    """Which exercises are done, failing or not started, from a notebook cell (minigpt.progress).

    `folder` defaults to the chapters folder this notebook is in (the kernel's working folder), or
    ./chapters. On Colab, save your notebooks to Drive, mount it and pass the folder. The notebooks
    are only read; each one is run in its own process, so this kernel's variables are not touched.
    Returns the list of minigpt.progress.NotebookProgress."""
    from minigpt import progress as _progress

    result = _progress.run_progress(_progress.default_folder() if folder is None else folder, timeout=timeout)
    if show:
        print(_progress.format_table(result))
    return result
