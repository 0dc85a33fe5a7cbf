"""
One NFSv3 client session kept open across server-side changes (libnfs through
ctypes; the test machines' kernel has no NFS client).

``nfs-cat`` mounts, reads and exits: it cannot show what a client that stays
mounted sees when the server reloads its exports. This helper runs inside a
client namespace as ``python3 nfs_session.py <server> <export>``: it MOUNTs once
(the export's root file handle is kept in the libnfs context, as a kernel client
keeps it), then answers one command per stdin line with one JSON line:

``open <path>``  open a file and keep its handle (``{"ok": true}``)
``pread``        read the kept handle from offset 0 (``{"ok": true, "data": ...}``)
``cat <path>``   LOOKUP from the kept root handle, then READ
``write <path> <text>``  create/truncate a file and write text to it

A failure is ``{"ok": false, "error": <libnfs's message>}`` (a stale handle says
so), never an exit. :class:`Session` drives it from a test.
"""

import ctypes
import json
import os
import subprocess
import sys

# libnfs 4.0 (Debian 12): the synchronous API
_LIB = "libnfs.so.13"


def _lib():
    lib = ctypes.CDLL(_LIB)
    lib.nfs_init_context.restype = ctypes.c_void_p
    lib.nfs_get_error.restype = ctypes.c_char_p
    lib.nfs_get_error.argtypes = [ctypes.c_void_p]
    lib.nfs_mount.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
    lib.nfs_open.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                             ctypes.POINTER(ctypes.c_void_p)]
    lib.nfs_creat.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
                              ctypes.POINTER(ctypes.c_void_p)]
    lib.nfs_pread.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64,
                              ctypes.c_uint64, ctypes.c_void_p]
    lib.nfs_pwrite.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint64,
                               ctypes.c_uint64, ctypes.c_void_p]
    lib.nfs_close.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    return lib


class _Client:
    def __init__(self, server, export):
        self.lib = _lib()
        self.ctx = self.lib.nfs_init_context()
        self.held = None
        if self.lib.nfs_mount(self.ctx, server.encode(), export.encode()) != 0:
            raise RuntimeError(self.error())

    def error(self):
        return (self.lib.nfs_get_error(self.ctx) or b"").decode(errors="replace")

    def _read(self, fh):
        buf = ctypes.create_string_buffer(65536)
        n = self.lib.nfs_pread(self.ctx, fh, 0, len(buf), buf)
        if n < 0:
            return {"ok": False, "error": self.error()}
        return {"ok": True, "data": buf.raw[:n].decode(errors="replace")}

    def handle(self, line):
        cmd, _, rest = line.partition(" ")
        fh = ctypes.c_void_p()
        if cmd == "open":
            if self.lib.nfs_open(self.ctx, rest.encode(), os.O_RDONLY, ctypes.byref(fh)):
                return {"ok": False, "error": self.error()}
            self.held = fh
            return {"ok": True}
        if cmd == "pread":
            return self._read(self.held)
        if cmd == "cat":
            if self.lib.nfs_open(self.ctx, rest.encode(), os.O_RDONLY, ctypes.byref(fh)):
                return {"ok": False, "error": self.error()}
            try:
                return self._read(fh)
            finally:
                self.lib.nfs_close(self.ctx, fh)
        if cmd == "write":
            path, _, text = rest.partition(" ")
            if self.lib.nfs_creat(self.ctx, path.encode(), 0o644, ctypes.byref(fh)):
                return {"ok": False, "error": self.error()}
            try:
                data = text.encode()
                if self.lib.nfs_pwrite(self.ctx, fh, 0, len(data), data) != len(data):
                    return {"ok": False, "error": self.error()}
                return {"ok": True}
            finally:
                self.lib.nfs_close(self.ctx, fh)
        return {"ok": False, "error": "unknown command " + cmd}


def main(server, export):
    try:
        client = _Client(server, export)
        print(json.dumps({"ok": True}), flush=True)
    except (OSError, RuntimeError) as exc:
        print(json.dumps({"ok": False, "error": "mount: {}".format(exc)}), flush=True)
        return 1
    for line in sys.stdin:
        print(json.dumps(client.handle(line.rstrip("\n"))), flush=True)
    return 0


class Session:
    """A mounted export inside namespace ``ns`` (a :class:`lib.netns.Namespace`);
    ``call("cat /x")`` -> the JSON answer. ``mounted`` says whether MOUNT worked
    (``mount_error`` why not). Close it (or use ``with``)."""

    def __init__(self, ns, server, export, timeout=30):
        self.timeout = timeout
        self.proc = ns.popen([sys.executable, os.path.abspath(__file__), server, export],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        first = self._answer()
        self.mounted = first["ok"]
        self.mount_error = first.get("error")

    def _answer(self):
        import select  # pylint: disable=import-outside-toplevel

        ready, _, _ = select.select([self.proc.stdout], [], [], self.timeout)
        if not ready:
            raise TimeoutError("no answer from the NFS client within {} s".format(
                self.timeout))
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the NFS client exited (rc {})".format(self.proc.poll()))
        return json.loads(line)

    def call(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return self._answer()

    def close(self):
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdout,):
            f.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
