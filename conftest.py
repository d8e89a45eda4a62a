"""pytest settings for the whole repo; they matter for the notebooks (`make test-notebooks`:
solutions/ strictly, chapters/ laxly, both by nbval).

nbval starts each notebook's kernel from this process, so the kernel inherits this environment:
minigpt.notebook.NOTEBOOK_ENV, the same one tools/run_notebooks.py used to make the stored outputs
(one torch thread, fixed string hashing, no progress bars). See docs/ENGINE.md.
"""

import os

from minigpt.notebook import notebook_env

# Chapter 12 reads Tatoeba: on the course machines through the offline mirror beside the repository
# (../shared/data/tatoeba), as tests/test_datasets.py does; elsewhere MINIGPT_TATOEBA_URL or a download.
for _key, _value in notebook_env(os.path.dirname(os.path.abspath(__file__))).items():
    os.environ.setdefault(_key, _value)
