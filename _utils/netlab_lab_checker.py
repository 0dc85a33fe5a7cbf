"""
The checks of single pillar values, and the reader of leaf-field tables.

:class:`Checker` knows how to check one value of each kind (an IPv4 address, a
URL, a path, a choice...). :meth:`Checker.fields` reads a table of
:class:`netlab_lab_schema.Field` rows: one call checks every leaf key of a
mapping and returns the model's values with their defaults filled in.
"""

import posixpath
import urllib.parse

from netlab_lab_schema import (
    CONTROL_CHARS, DNS_LABEL, INTERFACE_RE, KERNEL_ARG_RE, MAX_TEXT, PACKAGE_RE,
    SAFE_PATH_RE, SYSTEM_DIRS, URL_CHARS_RE, netaddr, path)

# a key that is not in the mapping at all (null is a value some kinds report)
MISSING = object()
# kinds for which an explicit null is a wrong value, not an absent one
NULL_IS_A_VALUE = ("port", "positive_number", "label", "packages", "domain")


class Checker:
    """Collects every problem of a pillar value as ``netlab:<path>: <message>``.

    Each check returns the value to use (the default when the value is absent or
    wrong) and reports what is wrong; :meth:`fields` applies a table of
    :class:`netlab_lab_schema.Field` rows to a mapping.
    """

    def __init__(self):
        self.errors = []

    def err(self, where, message):
        self.errors.append("{}: {}".format(where, message))

    def mapping(self, value, *where, allowed=None, required=False):
        """Return ``value`` as a dict (``{}`` when absent); report wrong type / typos."""
        if value is None:
            if required:
                self.err(path(*where), "is required")
            return {}
        if not isinstance(value, dict):
            self.err(path(*where), "must be a mapping, not {}".format(type(value).__name__))
            return {}
        if allowed is not None:
            for key in value:
                if key not in allowed:
                    self.err(path(*where, key), "unknown key (known: {})".format(
                        ", ".join(allowed)))
        return value

    def ipv4(self, value, *where, required=True):
        if value is None:
            if required:
                self.err(path(*where), "is required")
            return None
        text = str(value)
        try:
            ok = netaddr.valid_ipv4(text, flags=netaddr.INET_PTON)
        except Exception:  # pylint: disable=broad-except
            ok = False
        if not ok:
            self.err(path(*where), "{} is not an IPv4 address".format(text))
            return None
        return str(netaddr.IPAddress(text))

    def choice(self, value, choices, default, *where):
        if value is None:
            return default
        if value not in choices:
            self.err(path(*where), "{!r} is not one of: {}".format(value, ", ".join(choices)))
            return default
        return value

    def string(self, value, default, *where):
        if value is None:
            return default
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            self.err(path(*where), "must be a string")
            return default
        return str(value)

    def boolean(self, value, default, *where):
        if value is None:
            return default
        if not isinstance(value, bool):
            self.err(path(*where), "must be true or false")
            return default
        return value

    def text(self, value, default, *where, pattern=None, what=None, maxlen=MAX_TEXT):
        """A single-line string: no control characters, at most ``maxlen`` characters,
        and (with ``pattern``) a full match of ``pattern``; ``default`` when absent."""
        if value is None:
            return default
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            self.err(path(*where), "must be a string")
            return default
        value = str(value)
        if CONTROL_CHARS.search(value) or "\t" in value:
            self.err(path(*where), "{!r} contains a control character (newline, tab, "
                     "escape...); it must be one line".format(value[:80]))
            return default
        if len(value) > maxlen:
            self.err(path(*where), "is too long ({} characters, at most {})".format(
                len(value), maxlen))
            return default
        if pattern is not None and not pattern.fullmatch(value):
            self.err(path(*where), "{!r} is not {}".format(value, what))
            return default
        return value

    def url(self, value, default, *where, schemes=("http", "https"), local_path=False):
        """A URL with a scheme from ``schemes`` and a host (``file:`` a path), no
        whitespace, quotes or shell syntax; ``local_path``: an absolute path too."""
        text = self.text(value, None, *where, maxlen=2048)
        if text is None:
            return default if value is None else None
        want = "a URL ({}://...){}".format("|".join(schemes),
                                           " or an absolute path" if local_path else "")
        if not URL_CHARS_RE.fullmatch(text):
            self.err(path(*where), "{!r} is not {} (no spaces, quotes, $, `, ;, &, |, "
                     "<, >, backslash or brackets)".format(text, want))
            return None
        if local_path and text.startswith("/"):
            return self.abs_path(text, None, *where)
        try:
            parts = urllib.parse.urlsplit(text)
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in schemes:
            self.err(path(*where), "{!r} is not {}".format(text, want))
            return None
        if parts.scheme == "file":
            if parts.netloc or not parts.path.startswith("/"):
                self.err(path(*where), "{!r}: a file URL needs an absolute path "
                         "(file:///srv/x.git)".format(text))
                return None
        elif not parts.hostname:
            self.err(path(*where), "{!r} has no host".format(text))
            return None
        return text

    def abs_path(self, value, default, *where, system_ok=True):
        """An absolute, normalised path of safe characters (no ``..``, ``//``,
        trailing ``/``); with ``system_ok=False`` not ``/`` or a top-level system
        directory."""
        text = self.text(value, None, *where, maxlen=251)
        if text is None:
            return default if value is None else None
        if not SAFE_PATH_RE.fullmatch(text):
            self.err(path(*where), "{!r} must be an absolute path of letters, digits "
                     "and _ . + @ / -".format(text))
            return None
        norm = posixpath.normpath(text)
        if norm.startswith("//"):
            norm = norm[1:]
        if norm != text:
            self.err(path(*where), "{!r} is not a normalised path (no '..', '.', '//' "
                     "or trailing '/'; did you mean {!r}?)".format(text, norm))
            return None
        if not system_ok and text in SYSTEM_DIRS:
            self.err(path(*where), "{!r} is a system directory; use a directory of its "
                     "own (e.g. {}/netlab)".format(text, text.rstrip("/")))
            return None
        return text

    def dns_label(self, value, *where):
        if not isinstance(value, str) or not DNS_LABEL.match(value):
            self.err(path(*where), "{!r} is not a valid DNS label (a-z, 0-9, '-', at most "
                     "63 characters, not starting or ending with '-')".format(value))
            return False
        return True

    # ------------------------------------------------------------------ tables
    def fields(self, table, mapping, *where):
        """Check every row of ``table`` against ``mapping`` (the pillar mapping at
        ``where``); return ``{model name: value}`` with defaults filled in."""
        out = {}
        for field in table:
            opts = dict(field.opts)
            required = opts.pop("required", False)
            fallback = opts.pop("fallback", False)
            nullable, empty_ok = opts.pop("nullable", False), opts.pop("empty_ok", False)
            str_only = opts.pop("str_only", False)
            value = mapping.get(field.key, MISSING)
            if (value is None and nullable) or (value == "" and empty_ok):
                value = MISSING
            default = field.default(out) if callable(field.default) else field.default
            name = field.out or field.key
            if str_only and value not in (None, MISSING) and not isinstance(value, str):
                self.err(path(*where, field.key), "must be a string")
                continue
            if value is MISSING or (value is None and field.kind not in NULL_IS_A_VALUE):
                if required and mapping:
                    self.err(path(*where, field.key), "is required")
                    default = None
                out[name] = default
                continue
            result = getattr(self, "kind_" + field.kind)(value, default, *where, field.key,
                                                         **opts)
            out[name] = (result or default) if fallback else result
        return out

    def kind_choice(self, value, default, *where, choices):
        return self.choice(value, choices, default, *where)

    def kind_string(self, value, default, *where, match=None):
        value = self.string(value, default, *where)
        if match and isinstance(value, str) and not match[0].fullmatch(value):
            self.err(path(*where), match[1].format(value))
        return value

    def kind_match(self, value, default, *where, match):
        if isinstance(value, str) and not match[0].fullmatch(value):
            self.err(path(*where), match[1].format(value))
            return default
        return value

    def kind_boolean(self, value, default, *where):
        return self.boolean(value, default, *where)

    def kind_text(self, value, default, *where, **opts):
        return self.text(value, default, *where, **opts)

    def kind_url(self, value, default, *where, **opts):
        return self.url(value, default, *where, **opts)

    def kind_abs_path(self, value, default, *where, **opts):
        return self.abs_path(value, default, *where, **opts)

    def kind_ipv4(self, value, default, *where):
        return self.ipv4(value, *where, required=False) or default

    def kind_label(self, value, default, *where):
        return value if self.dns_label(value, *where) else default

    def kind_interface(self, value, default, *where):
        if not isinstance(value, str) or not INTERFACE_RE.match(value):
            self.err(path(*where), "{!r} is not an interface name".format(value))
            return default
        return value

    def kind_domain(self, value, default, *where):
        if not isinstance(value, str) or not value or not all(
                DNS_LABEL.match(p) for p in value.split(".")):
            self.err(path(*where), "{!r} is not a valid DNS domain".format(value))
            return default
        return value

    def kind_cidr(self, value, default, *where):
        """An IPv4 network in CIDR form without host bits, at most /30."""
        try:
            cidr = netaddr.IPNetwork(str(value))
            if cidr.version != 4 or "/" not in str(value):
                raise ValueError
        except Exception:  # pylint: disable=broad-except
            self.err(path(*where), "{} is not an IPv4 network in CIDR form "
                     "(e.g. 192.168.42.0/24)".format(value))
            return default
        if cidr.ip != cidr.network:
            self.err(path(*where), "{} has host bits set (did you mean {}?)"
                     .format(value, cidr.cidr))
        if cidr.prefixlen > 30:
            self.err(path(*where), "{} is too small for a lab (at most /30)".format(value))
        return cidr.cidr

    def kind_port(self, value, default, *where, what):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 < value < 65536:
            self.err(path(*where), "{!r} is not {}".format(value, what))
            return default
        return value

    def kind_positive_number(self, value, default, *where, what):
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value <= 0:
            self.err(path(*where), "must be {}".format(what))
            return default
        return value

    def kind_positive_int(self, value, default, *where):
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            self.err(path(*where), "{!r} is not a positive integer".format(value))
            return default
        return value

    def kind_packages(self, value, default, *where):
        if not isinstance(value, list) or not all(
                isinstance(p, str) and PACKAGE_RE.fullmatch(p) for p in value):
            self.err(path(*where), "must be a list of Debian package names")
            return sorted(default)
        return sorted(set(value))

    def kind_kernel_cmdline(self, value, default, *where):
        """Space-separated kernel arguments of safe characters (they go into iPXE
        and pxelinux scripts, where a quote or a newline would add a command)."""
        text = self.text(value, default, *where)
        if text and not all(KERNEL_ARG_RE.fullmatch(w) for w in text.split(" ") if w):
            self.err(path(*where), "{!r} is not a list of kernel arguments (words of "
                     "letters, digits and _ . , : = / @ + -, separated by spaces; no "
                     "quotes)".format(text))
            return default
        return " ".join(text.split())

    def kind_forbidden(self, value, default, *where, message):
        if value:
            self.err(path(*where), message)
        return default
