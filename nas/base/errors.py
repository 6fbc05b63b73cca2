"""User-facing errors.

Anything the user can fix (a bad file, a wrong flag, a malformed arch.json) is raised as a
`UserError`. The command line turns it into one line on stderr and exit code 2, without a
traceback unless `--debug` is given; everything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """A problem with the user's input, reported as one line and exit code 2."""

    exit_code = 2


def where(path, line=None, field=None) -> str:
    """Format a location prefix such as `data/train.tsv:12` or `arch.json: cell[1][0]`."""
    text = str(path)
    if line is not None:
        text += f":{line}"
    if field is not None:
        text += f": {field}"
    return text
