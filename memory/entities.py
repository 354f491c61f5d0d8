"""Find the code-ish names in free text: identifiers, file paths and package names.

Memories are linked and filtered by these ("which notes mention `parse_config`?"), so
precision matters more than recall: a plain English word is never an entity, whatever
its case ("The", "decision", "we"). Something counts when its *shape* says code:

* identifiers with a case change or separator: ``parseConfig``, ``HTTPServer``,
  ``parse_config``, ``MAX_TOKENS``, ``__init__``, letters+digits (``sha256``);
* dotted and ``::`` names: ``os.path.join``, ``module.Class.method``, ``serde::Deserialize``;
* calls: ``foo()`` and ``foo(x)`` give ``foo`` (any word, "print(" is code);
* file paths: ``src/config/parse.py``, ``./x/y``, ``~/.config/x``, ``/etc/hosts``,
  ``README.md``, ``.env``, ``Makefile``, ``C:\\Users\\x\\a.txt``; a trailing
  ``:line[:col]`` is dropped. ``and/or`` or ``client/server`` are not paths;
* packages from commands and code: ``pip install foo``, ``npm i @scope/pkg``,
  ``cargo add serde``, ``go get example.com/mod``, ``import numpy``,
  ``from a.b import c``, ``require("x")``, ``foo==1.2`` requirement lines;
* anything alone in backticks that looks like a name or path (the writer marked it code).

URLs and e-mail addresses are skipped as a whole (their parts would look like dotted
names). Results keep the first occurrence's spelling and position order.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

_KNOWN_EXTENSIONS = frozenset(
    {
        "py", "pyi", "pyx", "ipynb", "md", "rst", "txt", "toml", "yaml", "yml", "json", "jsonl",
        "ini", "cfg", "conf", "env", "lock", "log", "csv", "tsv", "js", "mjs", "cjs", "jsx",
        "ts", "tsx", "vue", "svelte", "css", "scss", "sass", "less", "html", "htm", "xml",
        "svg", "rs", "go", "java", "kt", "kts", "scala", "swift", "c", "h", "cc", "cpp", "cxx",
        "hpp", "hh", "cs", "fs", "rb", "php", "pl", "lua", "r", "jl", "dart", "zig", "sh",
        "bash", "zsh", "fish", "ps1", "bat", "cmd", "sql", "graphql", "proto", "tf", "hcl",
        "nix", "mk", "cmake", "gradle", "dockerfile", "gitignore", "gitattributes",
        "editorconfig", "pem", "crt", "key", "pub", "parquet", "arrow", "db", "sqlite", "gguf",
        "bin", "onnx", "pt", "safetensors", "wasm", "dll", "dylib", "exe",
        "zip", "gz", "tgz", "tar", "whl",
    }
)  # fmt: skip
_KNOWN_FILENAMES = frozenset(
    {
        "Makefile", "Dockerfile", "Containerfile", "Justfile", "Gemfile", "Rakefile",
        "Procfile", "Vagrantfile", "Jenkinsfile", "Brewfile", "Pipfile", "Caddyfile",
        "CODEOWNERS", "LICENSE",
    }
)  # fmt: skip
# "self.lock" or "math.log" is an attribute, not a file, whatever the extension says.
_RECEIVERS = frozenset(
    {"self", "this", "cls", "super", "os", "sys", "np", "math", "console", "logger", "logging"}
)
# Last labels that make "a.b" a host name rather than a dotted identifier.
_DOMAIN_SUFFIXES = frozenset(
    {"com", "org", "net", "io", "dev", "edu", "gov", "co", "uk", "ai", "in", "app", "sh"}
)
_ABBREVIATIONS = frozenset({"e.g", "i.e", "ph.d", "u.s", "a.m", "p.m", "n.b", "et.al"})
# Words that end the argument list of an install command written in prose.
_STOP_WORDS = frozenset(
    {
        "a", "an", "and", "or", "then", "to", "for", "with", "in", "on", "the", "first",
        "again", "before", "after", "if", "so", "but", "which", "that", "it", "is", "was",
        "instead", "too", "also", "as", "from", "into", "via", "using", "when", "once",
        "globally", "locally", "now", "here", "there", "this", "these", "those", "we", "you",
        "they", "i",
    }
)  # fmt: skip
# Install flags that take a value, which is then not a package.
_FLAGS_WITH_VALUE = frozenset(
    {
        "-r", "--requirement", "-c", "--constraint", "-e", "--editable", "-t", "--target", "-i",
        "--index-url", "--extra-index-url", "-f", "--find-links", "--prefix", "--registry",
        "--features", "--python", "-p", "--tag", "--version", "--git", "--path", "--branch",
        "--rev",
    }
)  # fmt: skip

# URLs and e-mail addresses: masked before scanning. Both start only at the beginning of
# a run of their own characters, so a failed attempt is not retried inside the run.
_URL = re.compile(r"(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]*://[^\s<>\"'`)\]]*")
# The last label must be letters, so "lodash@4.17.21" is not an address.
_EMAIL = re.compile(r"(?<![\w.+\-])[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)*\.[A-Za-z]{2,}(?![\w\-])")
# A candidate token: a Windows path, or a run of name/path characters.
_TOKEN = re.compile(r"[A-Za-z]:\\[\w.\\~\-]*|[\w@~./:\-]+")
_BACKTICKED = re.compile(r"`([^`\s]{2,200})`")
_LINE_REF = re.compile(r"(?::\d+){1,2}$")
_IDENT = re.compile(r"[^\W\d]\w*")
_CAMEL = re.compile(r"[a-z0-9][A-Z]|[A-Z]{2}[a-z]")
_PLURAL_ACRONYM = re.compile(r"[A-Z]+s")  # APIs, URLs, IDs: prose
_LETTERS_DIGITS = re.compile(r"[A-Za-z]{2,}[0-9]+[A-Za-z0-9]*")
_HEX = re.compile(r"[0-9a-fA-F]{7,}")  # commit SHAs and digests are not names
# Dot-files by convention (".env.local", ".bashrc", ".dockerignore") or by name; a bare
# ".record" is more likely a relative import than a file.
_DOTFILE = re.compile(
    r"\.(?:env(?:\.[\w\-]+)?|[a-z0-9_\-]+(?:rc|ignore)|git(?:attributes|modules|hub)"
    r"|editorconfig|profile|python-version|tool-versions|vscode|venv|ssh|config|cache)"
)
_WORD_SEPARATORS = re.compile(r"([/:\-])")
_VERSION_TAG = re.compile(r"[\w.\-^~]+")
_HOST_LABEL = re.compile(r"[a-z0-9\-]+")
_WINDOWS_DRIVE = re.compile(r"[A-Za-z]:\\")
_PATH_SEGMENT = re.compile(r"@?[\w~.+\-]+")
_CODE_SEGMENT = re.compile(r"\w[_.\-]\w")
_NPM_SCOPED = re.compile(r"@[a-z0-9][\w.\-]*/[a-z0-9][\w.\-]*")

_INSTALL = re.compile(
    r"(?<![\w\-])(?:pip3?|pipx|uv|poetry|conda|mamba|npm|pnpm|yarn|bun|cargo|gem|brew|go"
    r"|apt|apt-get)[ \t]+(?:install|add|i|get)(?![\w\-])([^\n;&|`)]*)"
)
_INSTALL_WORDS = re.compile(r"install|add|get|\bi\b")
_ARG = re.compile(r"\S+")
_VERSION_SPEC = re.compile(r"\[[^\]]*\]|(?:===?|>=|<=|~=|!=|<|>|=).*$")
_PACKAGE_NAME = re.compile(r"@?[A-Za-z0-9][\w.\-]*(?:/[\w.\-]+)*")
_PY_IMPORT = re.compile(
    r"(?:^|(?<=[`;]))[ \t]*(?:>>>[ \t]*)?import[ \t]+"
    r"([\w.]+(?:[ \t]+as[ \t]+\w+)?(?:[ \t]*,[ \t]*[\w.]+(?:[ \t]+as[ \t]+\w+)?)*)",
    re.MULTILINE,
)
_PY_FROM = re.compile(r"\bfrom[ \t]+(\.*[\w.]+)[ \t]+import[ \t]+\(?[ \t]*([\w., \t]+)")
_JS_MODULE = re.compile(
    r"""\brequire\(\s*['"]([^'"\s]+)['"]\s*\)|\b(?:from|import)\s+['"]([^'"\s]+)['"]"""
)
# "foo==1.2": at a line start or after a quote anything after the operator; elsewhere a
# dotted version, so code such as `count==0` is not a requirement.
_REQUIREMENT = re.compile(
    r"""(?:(?:^[ \t]*(?:-[ \t]+)?|(?<=["']))([A-Za-z][\w.\-]*)(?:\[[\w, \t\-]*\])?"""
    r"""[ \t]*(?:==|>=|<=|~=|!=)[ \t]*v?\d"""
    r"""|(?<![\w.\-])([A-Za-z][\w.\-]*)(?:==|>=|<=|~=|!=)v?\d+\.\d)""",
    re.MULTILINE,
)


@dataclass(frozen=True)
class _Hit:
    pos: int
    text: str
    is_file: bool


def extract_entities(text: str, limit: int = 32) -> list[str]:
    """Identifiers, paths and package names in `text`, first occurrence first."""
    if limit <= 0:
        return []
    return _dedupe((hit.text for hit in _hits(text)), limit)


def extract_files(text: str) -> list[str]:
    """Just the file and directory paths in `text`, first occurrence first."""
    return _dedupe(hit.text for hit in _hits(text) if hit.is_file)


def _dedupe(items: Iterable[str], limit: int | None = None) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
        if limit is not None and len(seen) >= limit:
            break
    return list(seen)


def _hits(text: str) -> list[_Hit]:
    masked = _mask(text)
    hits: list[_Hit] = []
    hits.extend(_package_hits(masked))
    hits.extend(_backticked_hits(masked))
    for m in _TOKEN.finditer(masked):
        token, end = m.group(), m.end()
        is_call = masked.startswith("(", end) and not masked.startswith("(s)", end)
        if not is_call and _is_plain_word(token) and token not in _KNOWN_FILENAMES:
            continue  # fast path: most tokens are ordinary words; "file(s)" is prose
        hits.extend(_classify(token, m.start(), is_call, forced=False))
    # Stable sort: at one position, package/backtick hits come before token hits.
    hits.sort(key=lambda hit: hit.pos)
    return hits


def _mask(text: str) -> str:
    """Blank out URLs and e-mail addresses, keeping every other offset unchanged."""
    for pattern in (_URL, _EMAIL):
        text = pattern.sub(lambda m: " " * len(m.group()), text)
    return text


# --- tokens --------------------------------------------------------------------------


def _classify(token: str, pos: int, is_call: bool, forced: bool) -> Iterator[_Hit]:
    """Entities in one token; `forced` (backticks) accepts plain names as well."""
    lead = len(token) - len(token.lstrip("-:"))
    token, pos = token[lead:], pos + lead
    token = token.rstrip(".,:;-")
    token = _LINE_REF.sub("", token)  # parse.py:42:7
    if len(token) < 2:
        return
    if token.startswith("@"):
        if _NPM_SCOPED.fullmatch(token):
            yield _Hit(pos, token, False)
            return
        token, pos = token.lstrip("@"), pos + len(token) - len(token.lstrip("@"))
    if "@" in token:
        token = _strip_version_tag(token)  # example.com/mod@v1.2.0, pkg@latest
    if _is_module_path(token):
        yield _Hit(pos, token, False)
        return
    if _is_path(token) and ("/" in token or not is_call):  # response.json() is a call
        yield _Hit(pos, token, True)
        return
    if "::" in token:
        parts = token.split("::")
        if all(_IDENT.fullmatch(p) for p in parts):
            yield _Hit(pos, token, False)
        return
    # Not a path: "parseConfig/loadConfig", "a:b", "parse_config-based" hold several words.
    offset = 0
    for piece in _WORD_SEPARATORS.split(token):
        if piece and piece not in "/:-":
            last = offset + len(piece) == len(token)
            yield from _classify_word(piece, pos + offset, is_call and last, forced)
        offset += len(piece)


def _classify_word(word: str, pos: int, is_call: bool, forced: bool) -> Iterator[_Hit]:
    lead = len(word) - len(word.lstrip(".~"))
    word, pos = word[lead:].rstrip("."), pos + lead
    if not word:
        return
    if "." in word:
        if not is_call and _is_file_name(word):
            yield _Hit(pos, word, True)
        elif _is_dotted_name(word):
            yield _Hit(pos, word, False)
        return
    if _is_markdown_emphasis(word):
        word, pos = word[1:-1], pos + 1
    if _IDENT.fullmatch(word) and (is_call or forced or _looks_like_code(word)):
        yield _Hit(pos, word, False)


def _is_plain_word(token: str) -> bool:
    """Letters only, in one case or capitalised ("the", "The", "HTTP"), or digits only."""
    if token.isdigit():
        return True
    return token.isalpha() and (token.islower() or token.isupper() or token[1:].islower())


def _looks_like_code(word: str) -> bool:
    if "_" in word:
        return any(c.isalnum() for c in word)
    if _CAMEL.search(word):
        return not _PLURAL_ACRONYM.fullmatch(word)
    return _LETTERS_DIGITS.fullmatch(word) is not None and not _HEX.fullmatch(word)


def _is_markdown_emphasis(word: str) -> bool:
    return (
        len(word) > 2
        and word[0] == word[-1] == "_"
        and word[1] != "_"
        and word[-2] != "_"
        and "_" not in word[1:-1]
    )


def _is_dotted_name(word: str) -> bool:
    parts = word.split(".")
    if len(parts) < 2 or not all(_IDENT.fullmatch(p) for p in parts):
        return False
    if word.lower() in _ABBREVIATIONS or parts[-1].lower() in _DOMAIN_SUFFIXES:
        return False
    return any(len(p) >= 2 for p in parts)


def _is_file_name(word: str) -> bool:
    if word in _KNOWN_FILENAMES or _DOTFILE.fullmatch(word):
        return True
    stem, dot, ext = word.rpartition(".")
    if not dot or not stem or stem.endswith(".") or stem.split(".")[0] in _RECEIVERS:
        return False
    # Exact lower case: "threading.Lock" is a class, "Cargo.lock" a file.
    return ext in _KNOWN_EXTENSIONS or (ext.isupper() and ext.lower() in _KNOWN_EXTENSIONS)


def _strip_version_tag(token: str) -> str:
    """Drop a trailing "@version" (not a leading "@scope")."""
    head, at, tag = token[1:].rpartition("@")
    if at and "/" not in tag and _VERSION_TAG.fullmatch(tag):
        return token[0] + head
    return token


def _is_module_path(token: str) -> bool:
    """Go-style module paths: a host name, then a path ("github.com/spf13/cobra")."""
    host, slash, rest = token.partition("/")
    labels = host.split(".")
    return bool(
        slash
        and rest
        and len(labels) >= 2
        and labels[-1] in _DOMAIN_SUFFIXES
        and all(_HOST_LABEL.fullmatch(label) for label in labels)
    )


def _is_path(token: str) -> bool:
    if _WINDOWS_DRIVE.match(token):
        return len(token) > 3
    if "/" not in token:
        return _is_file_name(token)
    if ":" in token or "//" in token.lstrip("/"):
        return False  # "a:b/c" and doubled slashes are not paths we can trust
    segments = [s for s in token.split("/") if s]
    if not segments or all(s.isdigit() for s in segments):
        return False  # "/", "1/2", "2024/01/31"
    if any(not _PATH_SEGMENT.fullmatch(s) for s in segments):
        return False
    if token.startswith(("~/", "./", "../")):
        return len(segments) >= 2 or token.startswith("./")
    if token.startswith("/"):
        return len(segments) >= 2 or _is_file_name(segments[-1])
    if _is_file_name(segments[-1]) or len(segments) >= 3:
        return True
    if token.endswith("/"):
        return all(len(s) >= 2 for s in segments)  # "memory/", not "w/"
    # Two bare words ("and/or", "client/server") only when one looks like code.
    return any(_CODE_SEGMENT.search(s) for s in segments)


# --- packages, imports, backticks ----------------------------------------------------


def _package_hits(text: str) -> Iterator[_Hit]:
    # Each scan is skipped when its keyword is absent: most notes have none of them.
    has_import = "import" in text
    for m in _INSTALL.finditer(text) if _INSTALL_WORDS.search(text) else ():
        yield from _install_args(m.group(1), m.start(1))
    for m in _PY_IMPORT.finditer(text) if has_import else ():
        offset = m.start(1)
        for clause in m.group(1).split(","):
            name = clause.split()[0] if clause.split() else ""
            if name:
                yield _Hit(offset + clause.index(name), name, False)
            offset += len(clause) + 1
    for m in _PY_FROM.finditer(text) if has_import else ():
        module = m.group(1).lstrip(".")
        if module:
            yield _Hit(m.start(1) + len(m.group(1)) - len(module), module, False)
        offset = m.start(2)
        for clause in m.group(2).split(","):
            words = clause.split()
            if words and _IDENT.fullmatch(words[0]):
                yield _Hit(offset + clause.index(words[0]), words[0], False)
            offset += len(clause) + 1
    for m in _JS_MODULE.finditer(text) if has_import or "require" in text else ():
        group = 1 if m.group(1) is not None else 2
        spec = m.group(group)
        if not spec.startswith((".", "/")):
            yield _Hit(m.start(group), spec, False)
    for m in _REQUIREMENT.finditer(text) if "=" in text else ():
        group = 1 if m.group(1) is not None else 2
        yield _Hit(m.start(group), m.group(group), False)


def _install_args(args: str, base: int) -> Iterator[_Hit]:
    skip_next = False
    for m in _ARG.finditer(args):
        arg = m.group().strip("\"'")
        if skip_next:
            skip_next = False
            continue
        if arg.startswith("-"):
            skip_next = arg in _FLAGS_WITH_VALUE
            continue
        if arg.lower() in _STOP_WORDS:
            return
        if "://" in arg or arg.startswith((".", "/", "~")) or arg.endswith(".txt"):
            continue  # URLs, local paths and requirement files are not package names
        name = _VERSION_SPEC.sub("", arg)
        if "@" in name[1:]:
            name = name[0] + name[1:].split("@", 1)[0]  # pkg@1.2, @scope/pkg@^2, mod@latest
        name = name.rstrip(".,")
        if not _PACKAGE_NAME.fullmatch(name):
            return  # not an argument any more: prose or shell syntax
        yield _Hit(base + m.start() + m.group().index(name[0]), name, False)


def _backticked_hits(text: str) -> Iterator[_Hit]:
    for m in _BACKTICKED.finditer(text):
        inner = m.group(1)
        is_call = inner.endswith(")") and "(" in inner
        if is_call:
            inner = inner[: inner.index("(")]
        yield from _classify(inner, m.start(1), is_call, forced=True)
