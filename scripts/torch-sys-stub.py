"""Stubs the torch-sys wrappers that do not compile against a newer libtorch; called by scripts/setup.

Usage: torch-sys-stub.py VENDORED_TORCH_SYS_DIR BUILD_LOG LIBTORCH_VERSION

Contract: reads the compiler errors in BUILD_LOG (a failed `cargo build -p torch-sys`), maps every error to the
generated wrapper in libtch/torch_api_generated.cpp that contains it, and replaces the body of each such wrapper
with one that reports "not available" through torch-sys's own error path (PROTECT sets torch_last_err, so Rust
gets a TchError, not a C++ exception across the FFI boundary). Signatures stay, so the Rust side is untouched.
The patched file is dropped from the crate's .cargo-checksum.json (cargo checks only the files listed there; the
package checksum that Cargo.lock pins stays). Prints one stubbed wrapper per line on stdout.

Exits 3 with a message on stderr, patching nothing, when the failure is more than wrapper stubs can fix: an error
in torch-sys's hand-written code (torch_api.cpp/.h), one that points at no wrapper, a link or Rust error, or a
wrapper that was already stubbed and still fails.
"""

import json
import re
import sys
from pathlib import Path

GENERATED = "torch_api_generated.cpp"
STUB_MARK = "stubbed by harness scripts/setup"
# A wrapper: a top-level definition line ending in `{`, up to the next line that is exactly `}`.
WRAPPER_START = re.compile(r"^(?P<ret>[A-Za-z_][\w ]*?\*?)\s*(?P<name>atg_\w+)\(.*\)\s*\{$")
# gcc: path:line:col: error: ... ; template chains also name our file as `path:line:col:   required from here`
LOCATION = re.compile(r"(?P<path>[^\s:'\"=]+):(?P<line>\d+):(?P<col>\d+):\s+(?P<kind>error|required from|note)")


def refuse(msg: str) -> None:
    print(f"torch-sys-stub: {msg}", file=sys.stderr)
    sys.exit(3)


def wrapper_spans(lines):
    """(name, return type, first line index, closing-brace line index) of every wrapper."""
    spans, i = [], 0
    while i < len(lines):
        m = WRAPPER_START.match(lines[i])
        if m:
            j = i + 1
            while j < len(lines) and lines[j] != "}":
                j += 1
            spans.append((m.group("name"), m.group("ret").strip(), i, j))
            i = j
        i += 1
    return spans


def main() -> None:
    crate, log_path, version = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    log = log_path.read_text(errors="replace")
    src_path = crate / "libtch" / GENERATED
    lines = src_path.read_text().split("\n")
    spans = wrapper_spans(lines)

    error_lines, outside = set(), []
    for m in LOCATION.finditer(log):
        path, line, kind = m.group("path"), int(m.group("line")), m.group("kind")
        if path.endswith("libtch/" + GENERATED) or path == GENERATED:
            if kind != "note":
                error_lines.add(line)
        elif kind == "error" and "libtch/" in path:
            outside.append(f"{path}:{line}")
    if outside:
        refuse(f"errors in torch-sys's own code, not in a generated wrapper ({', '.join(sorted(set(outside))[:5])})")
    if not error_lines:
        tail = "\n".join(log.strip().split("\n")[-15:])
        refuse(f"the build failed, but not in a generated wrapper; last lines of the log:\n{tail}")

    hit = {}
    for line in sorted(error_lines):
        owner = [s for s in spans if s[2] < line <= s[3] + 1]
        if not owner:
            refuse(f"{GENERATED}:{line} has an error outside any generated wrapper")
        name, ret, start, end = owner[0]
        if any(STUB_MARK in l for l in lines[start:end]):
            refuse(f"{name} is already stubbed and still fails to compile")
        hit[name] = (ret, start, end)

    # Replace bottom-up, so earlier line numbers stay valid.
    for name, (ret, start, end) in sorted(hit.items(), key=lambda kv: -kv[1][1]):
        msg = f"{name} is not available: its op changed in libtorch {version} ({STUB_MARK}; torch-sys 0.17 targets 2.4.0)"
        body = ["  PROTECT(", f'    throw std::runtime_error("{msg}");', "  )"]
        if ret != "void":
            body.append("  return nullptr;" if ret.endswith("*") or ret == "tensor" else "  return 0;")
        lines[start + 1 : end] = body
    src_path.write_text("\n".join(lines))

    checksum = crate / ".cargo-checksum.json"
    sums = json.loads(checksum.read_text())
    sums["files"].pop("libtch/" + GENERATED, None)
    checksum.write_text(json.dumps(sums))
    for name in sorted(hit):
        print(name)


if __name__ == "__main__":
    main()
