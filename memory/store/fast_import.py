"""Import lancedb without the REST namespace client it loads eagerly.

`lance_namespace_urllib3_client/__init__.py` imports every generated REST API class; their
pydantic `validate_call` decorators build schemas at import time, about half of
`import lancedb` (≈1.4 s of 2.8 s on a 2-core box). The embedded store never talks REST, and
nothing imports names from that package's root, only from its submodules. Registering the
package without running its `__init__` keeps every submodule importable while skipping that
work; it matters because MCP clients wait for the first recall.
"""

from __future__ import annotations

import importlib.util
import sys
import types

_CLIENT = "lance_namespace_urllib3_client"


def skip_rest_client_init() -> None:
    if _CLIENT in sys.modules:
        return
    spec = importlib.util.find_spec(_CLIENT)
    if spec is None or not spec.submodule_search_locations:
        return
    package = types.ModuleType(_CLIENT)
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__file__ = spec.origin
    sys.modules[_CLIENT] = package
