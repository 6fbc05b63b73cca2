"""AdaBERT-style task-adaptive compression: differentiable architecture search with knowledge distillation.

Importing `nas` registers the compiled student (`adabert_student`) with transformers' Auto
classes, so `AutoModelForSequenceClassification.from_pretrained(student_folder)` works after it.
"""

import os
import sys

from nas.base import __version__  # noqa: F401  (defined once, at the bottom layer)


def _running_as_the_command() -> bool:
    """Whether this process is the `nas` command (its console script, or `python -m nas`)."""
    argv = getattr(sys, "orig_argv", sys.argv)
    as_module = any(flag == "-m" and name == "nas" for flag, name in zip(argv, argv[1:]))
    return as_module or os.path.basename(sys.argv[0] or "") == "nas"


# `searchspace` and `ops` import `nas.base.errors` and `nas.base.atomic` while they load, which runs this
# file first; importing the student then would read their half-built modules. In that case the
# student registers itself on its own import, which every code path that builds or loads one does.
# The `nas` command skips it too: transformers' model classes take seconds to import, which
# `nas validate` need not pay; its commands that load a model import the student.
if not {"searchspace", "ops"} & sys.modules.keys() and not _running_as_the_command():
    import searchspace.student  # noqa: F401,E402  (registers the student with the Auto classes)
