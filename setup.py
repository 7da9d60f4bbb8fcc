"""Build fastsock: the pure-Python package plus every Cython module under fastsock/.

Set FASTSOCK_NO_EXT=1 to skip the extensions (the package then runs on its
pure-Python twins, slower). FASTSOCK_DEBUG=1 builds with assertions and
without -O3, for gdb and sanitizers.
"""
import os
import pathlib

from setuptools import setup

HERE = pathlib.Path(__file__).parent
# C libraries a module links with (zlib1g-dev provides zlib's header).
LIBRARIES = {"fastsock.websocket._deflate": ["z"],
             # the TLS record layer calls OpenSSL directly (libssl-dev provides its headers)
             "fastsock.transports._tls": ["ssl", "crypto"]}
# Modules built only when their C library's header is found; without it the
# package runs that module's pure-Python twin (scripts/ensure-system-deps.sh
# installs libssl-dev).
OPTIONAL_HEADERS = {"fastsock.transports._tls": "openssl/ssl.h"}


def _header_found(header):
    import sysconfig
    dirs = ["/usr/include", "/usr/local/include", sysconfig.get_config_var("INCLUDEDIR") or ""]
    return any(d and (pathlib.Path(d) / header).exists() for d in dirs)


def extensions():
    if os.environ.get("FASTSOCK_NO_EXT") == "1":
        return []
    from Cython.Build import cythonize
    from setuptools import Extension

    debug = os.environ.get("FASTSOCK_DEBUG") == "1"
    cflags = ["-O0", "-g"] if debug else ["-O3"]
    mods = []
    for pyx in sorted(HERE.glob("fastsock/**/*.pyx")):
        rel = pyx.relative_to(HERE)
        name = ".".join(rel.with_suffix("").parts)
        if name in OPTIONAL_HEADERS and not _header_found(OPTIONAL_HEADERS[name]):
            print(f"warning: {OPTIONAL_HEADERS[name]} not found: {name} not built (pure-Python twin)")
            continue
        mods.append(Extension(name, [str(rel)], extra_compile_args=cflags,
                              libraries=LIBRARIES.get(name, [])))
    return cythonize(
        mods,
        compiler_directives={
            "language_level": 3,
            "boundscheck": debug,
            "wraparound": debug,
            "cdivision": True,
            "initializedcheck": debug,
        },
        annotate=os.environ.get("FASTSOCK_ANNOTATE") == "1",
    )


setup(ext_modules=extensions())
