"""AdaBERT-style task-adaptive compression: differentiable architecture search with knowledge distillation.

Importing `nas` registers the compiled student (`adabert_student`) with transformers' Auto
classes, so `AutoModelForSequenceClassification.from_pretrained(student_folder)` works after it.
"""

import sys

from nas.base import __version__  # noqa: F401  (defined once, at the bottom layer)

# `searchspace` and `ops` import `nas.base.errors` and `nas.base.atomic` while they load, which runs this
# file first; importing the student then would read their half-built modules. In that case the
# student registers itself on its own import, which every code path that builds or loads one does.
if not {"searchspace", "ops"} & sys.modules.keys():
    import searchspace.student  # noqa: F401,E402  (registers the student with the Auto classes)
