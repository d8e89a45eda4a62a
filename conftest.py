"""pytest settings for the whole repo; they matter for the notebooks (`make test-notebooks`:
solutions/ strictly, chapters/ laxly, both by nbval).

nbval starts each notebook's kernel from this process, so the kernel inherits this environment:
minigpt.notebook.NOTEBOOK_ENV, the same one tools/run_notebooks.py used to make the stored outputs
(one torch thread, fixed string hashing, no progress bars). See docs/ENGINE.md.
"""

import os

from minigpt.notebook import NOTEBOOK_ENV

for _key, _value in NOTEBOOK_ENV.items():
    os.environ.setdefault(_key, _value)
