"""
Run an iPXE script the way iPXE does, for the few commands netlab's scripts use,
without booting iPXE (a VM): e2e tests fetch a script over HTTP, run it for a
machine's MAC and see which URL it chains and what that URL serves.

    result = run(text, settings={"mac": "52:54:00:76:00:11"}, fetch=get)
    result.chained   # the URL ``chain`` loaded (None: the script stopped)
    result.exit      # the script's exit status when it stopped
    result.echoed    # what ``echo`` printed

Semantics follow iPXE's shell (``core/exec.c``): a line is commands joined by
``&&`` (run the next only if the last succeeded), ``||`` (only if it failed) and
``;``; an empty command after ``||`` succeeds, which is iPXE's "ignore this
failure" idiom. A script stops at a line that fails, at ``exit``, or when a
``chain`` succeeds (the chained image replaces the script). ``${name}`` and
``${<block>/name}`` (``net0/mac``, ``netX/mac``) expand from ``settings``; a
setting the test did not give is an error here (iPXE would expand it to nothing,
which would hide a wrong name). MACs are in iPXE's form, lowercase with colons.
An unknown command is an error too: the script uses something this does not know.
"""

import re
import shlex

SETTING = re.compile(r"\$\{([^}:]+)(?::[a-z0-9]+)?\}")
TERMINATORS = ("&&", "||", ";")


class ScriptError(RuntimeError):
    pass


class Result:
    def __init__(self):
        self.chained, self.chained_body, self.exit, self.echoed = None, None, None, []


def expand(text, settings):
    def one(match):
        name = match.group(1)
        for key in (name, name.split("/", 1)[-1]):
            if key in settings:
                return settings[key]
        raise ScriptError("setting ${{{}}} is not given".format(name))

    return SETTING.sub(one, text)


def _commands(line):
    """``line`` -> [(argv, terminator)], as iPXE splits a command line."""
    out, argv = [], []
    for word in shlex.split(line, comments=False, posix=True):
        if word in TERMINATORS:
            out.append((argv, word))
            argv = []
        else:
            argv.append(word)
    out.append((argv, None))
    return out


def _execute(argv, result, fetch):
    """One command: its exit status, or "stop" when the script ends here."""
    if not argv:
        return 0
    cmd, args = argv[0], argv[1:]
    if cmd == "iseq":
        return 0 if len(args) == 2 and args[0] == args[1] else 1
    if cmd == "echo":
        result.echoed.append(" ".join(args))
        return 0
    if cmd == "exit":
        result.exit = int(args[0]) if args else 0
        return "stop"
    if cmd == "chain":
        body = fetch(args[-1])
        if body is None:
            return 1
        result.chained, result.chained_body = args[-1], body
        return "stop"
    raise ScriptError("command {!r} is not known here".format(cmd))


def run(text, settings, fetch):
    """Run script ``text``; ``fetch(url)`` returns the URL's body or None (a
    failed download). Returns a :class:`Result`."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("#!ipxe"):
        raise ScriptError("not an iPXE script: {!r}".format(text[:40]))
    result = Result()
    for line in lines[1:]:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        rc, process = 0, True
        for argv, terminator in _commands(expand(line, settings)):
            if process:
                rc = _execute(argv, result, fetch)
                if rc == "stop":
                    return result
            if terminator is None:
                break
            process = {"&&": rc == 0, "||": rc != 0, ";": True}[terminator]
        if rc != 0:
            result.exit = rc   # a failed line ends the script
            return result
    result.exit = 0
    return result
