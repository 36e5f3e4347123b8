"""Reading untrusted files with bounded memory: ``.npz`` archives and gzip streams.

Every size a file declares (a zip member's uncompressed size, an ``.npy`` header's shape, an IDX
header's dimensions) is checked against the file's own size and against :data:`MAX_RATIO` before
anything is allocated, and decompression is streamed with a limit, so a small file can never make
xpnet allocate much more than the data it really holds.
"""

import os
import zipfile
import zlib

import numpy as np

# A deflated member may declare at most this many bytes per compressed byte. np.savez (what xpnet
# writes) stores members uncompressed; real data deflates 2-8x; a deflate bomb reaches ~1000x.
MAX_RATIO = 16
SLACK = 1 << 20  # below 1 MiB a file may expand any amount: that much is always affordable
MAX_MEMBERS = 100_000
CHUNK = 1 << 20
# dtypes an xpnet file may hold: numbers and the JSON text of the metadata (never objects: no pickles)
ARRAY_KINDS = "biufcU"


class BoundError(ValueError):
    """A file declares more data than it can hold, or is not what it claims to be (message: why)."""


def allowed_expansion(compressed):
    """The most bytes ``compressed`` bytes of deflate data may decompress to."""
    return max(int(compressed) * MAX_RATIO, SLACK)


def npz_member_names(path):
    """The array names of the ``.npz`` at ``path`` (after the checks of :func:`read_npz`)."""
    with _open_zip(path) as zf:
        return [info.filename[:-4] for info in _checked_infos(zf)]


def read_npz(path, names=None):
    """Read arrays of an ``.npz`` archive with bounded memory.

    Args:
        path: the archive. names: the arrays to read (None: all).

    Returns:
        dict name -> np.ndarray.

    Raises:
        BoundError: not a zip archive (or an ``.npy`` renamed), a member that is not ``.npy``, a member
            declaring more data than its compressed size allows, an object (pickle) array, or a damaged
            member (the CRC is checked).
    """
    with _open_zip(path) as zf:
        infos = {info.filename[:-4]: info for info in _checked_infos(zf)}
        wanted = list(infos) if names is None else list(names)
        missing = [n for n in wanted if n not in infos]
        if missing:
            raise BoundError(f"no array {missing[0]!r} in the archive (it has {', '.join(sorted(infos)[:8])})")
        out = {}
        for name in wanted:
            try:
                with zf.open(infos[name]) as member:
                    out[name] = _read_npy(member, infos[name].file_size, name)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as e:
                raise BoundError(f"member {name!r} is damaged ({e})") from None
        return out


def _open_zip(path):
    path = os.fspath(path)
    with open(path, "rb") as f:
        head = f.read(6)
    if head.startswith(b"\x93NUMPY"):
        raise BoundError("an .npy file, not an .npz archive (renamed?)")
    try:
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise BoundError("not an .npz archive (not a zip file; truncated or corrupted?)") from None


def _checked_infos(zf):
    infos = zf.infolist()
    if len(infos) > MAX_MEMBERS:
        raise BoundError(f"{len(infos)} members, more than the {MAX_MEMBERS} an .npz of xpnet may hold")
    for info in infos:
        if not info.filename.endswith(".npy"):
            raise BoundError(f"member {info.filename!r} is not an .npy array")
        if info.compress_type == zipfile.ZIP_STORED:
            limit = info.compress_size
        else:
            limit = allowed_expansion(info.compress_size)
        if info.file_size > limit:
            raise BoundError(f"member {info.filename!r} declares {info.file_size:,} bytes from "
                             f"{info.compress_size:,} compressed (more than {MAX_RATIO}x: a decompression bomb?)")
    return infos


def _read_npy(stream, declared, name):
    """One ``.npy`` member of ``declared`` bytes; its header must account for exactly those bytes."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(stream)
        read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
        shape, fortran, dtype = read_header(stream)
    except ValueError as e:
        raise BoundError(f"member {name!r}: not an .npy array ({e})") from None
    if dtype.hasobject or dtype.kind not in ARRAY_KINDS:
        raise BoundError(f"member {name!r}: dtype {dtype} is not allowed (numbers and text only, never pickles)")
    count = 1
    for d in shape:
        count *= int(d)
    nbytes = count * dtype.itemsize
    if nbytes != declared - stream.tell():
        raise BoundError(f"member {name!r}: its header declares shape {tuple(shape)} of {dtype} "
                         f"({nbytes:,} bytes) but the member holds {declared - stream.tell():,}")
    array = np.empty(tuple(reversed(shape)) if fortran else shape, dtype=dtype)
    view = memoryview(array.reshape(-1).view(np.uint8)) if nbytes else memoryview(b"")
    done = 0
    while done < nbytes:
        got = stream.readinto(view[done : done + CHUNK])
        if not got:
            raise BoundError(f"member {name!r}: truncated ({done:,} of {nbytes:,} bytes)")
        done += got
    if stream.read(1):  # also makes zipfile check the member's CRC
        raise BoundError(f"member {name!r}: trailing bytes after the array")
    return array.T if fortran else array


class GzipReader:
    """A bounded, streaming reader of a gzip file (several concatenated members allowed).

    ``read(n)`` returns at most ``n`` bytes; the caller decides how much to ask for (from a header it
    has checked), so memory never exceeds what it asked for plus one compressed chunk.
    """

    def __init__(self, f):
        self.f = f
        self._z = zlib.decompressobj(31)
        self._buf = b""
        self._eof = False

    def read(self, n):
        parts, want = [], n
        while want > 0:
            if self._buf:
                part, self._buf = self._buf[:want], self._buf[want:]
            else:
                part = self._more(want)
                if part is None:
                    break
            parts.append(part)
            want -= len(part)
        return b"".join(parts)

    def _more(self, want):
        while not self._eof:
            z = self._z
            if z.eof:  # the rest of the input (in unused_data, and also in unconsumed_tail) is another member
                rest = z.unused_data or self.f.read(CHUNK)
                if not rest.strip(b"\x00"):  # end of file, or the zero padding some tools append
                    self._eof = True
                    break
                self._z = zlib.decompressobj(31)
                data = self._z.decompress(rest, want)
            elif z.unconsumed_tail:
                data = z.decompress(z.unconsumed_tail, want)
            else:
                chunk = self.f.read(CHUNK)
                if not chunk:
                    raise EOFError("compressed file ended before the end-of-stream marker was reached")
                data = z.decompress(chunk, want)
            if data:
                return data
        return None
