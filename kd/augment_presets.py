"""Named augmentation presets, read from `kd/augment_presets.yaml` (data, not code).

A preset is a record of `AugmentSettings` fields plus `about`, the paper its numbers come from.
`preset_settings(name)` validates it by building the settings, so a bad entry fails as a
UserError naming the preset and the field.
"""

from __future__ import annotations

from importlib import resources

import yaml

from kd.augment import AugmentSettings
from nas.base.errors import UserError

PRESETS_FILE = "augment_presets.yaml"


def _records() -> dict:
    text = (resources.files("kd") / PRESETS_FILE).read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise UserError(f"kd/{PRESETS_FILE}: expected a mapping of preset name to settings")
    return data


def preset_names() -> list[str]:
    return sorted(_records())


def preset_about(name: str) -> str:
    return str(_record(name).get("about", ""))


def preset_settings(name: str) -> AugmentSettings:
    """The settings of preset `name` (seed 0, `n` not yet resolved for a task: see `for_task`)."""
    record = {key: value for key, value in _record(name).items() if key != "about"}
    try:
        return AugmentSettings.from_dict({**record, "preset": name})
    except (UserError, TypeError) as error:
        raise UserError(f"augmentation preset {name!r} (kd/{PRESETS_FILE}): {error}") from None


def _record(name: str) -> dict:
    records = _records()
    if name not in records:
        raise UserError(f"setting 'augment_preset': unknown preset {name!r} (known: {', '.join(sorted(records))})")
    return records[name]
