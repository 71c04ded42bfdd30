"""Reading the JSON files users hand to the adapters (feature maps, vocabularies, column specs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workbench.adapters.module import AdapterError


def read_json_file(path: Path, what: str, *, error: type[AdapterError] = AdapterError) -> Any:
    """Parse the JSON file ``path``, raising ``error`` that names ``what`` and the file when it cannot.

    A missing, unreadable, non-UTF-8, invalid or too deeply nested file each
    gets its own message.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        msg = f"{what} not found: {str(path)!r}"
        raise error(msg) from err
    except UnicodeDecodeError as err:
        msg = f"the {what} {str(path)!r} is not valid JSON (UTF-8 text): {err}"
        raise error(msg) from err
    except OSError as err:
        msg = f"could not read the {what} {str(path)!r}: {err.strerror or err}"
        raise error(msg) from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        msg = f"the {what} {str(path)!r} is not valid JSON: {err}"
        raise error(msg) from err
    except RecursionError as err:
        msg = f"the {what} {str(path)!r} is nested too deeply to read as JSON; check it for runaway brackets"
        raise error(msg) from err
