/* The leading fields of CPython's private _ssl objects (Modules/_ssl.c, the
 * same in 3.8-3.13): where _SSLSocket keeps its SSL*, MemoryBIO its BIO*,
 * _SSLContext its SSL_CTX*. fastsock's TLS record layer (_tls.pyx) reads
 * them to drive an SSL that Python's ssl module created and configured;
 * _tls.pyx checks them at import (sizes, the SSL's BIOs and context are the
 * ones read, a probe handshake step) and otherwise keeps the ssl-module path. */
#ifndef FASTSOCK_OPENSSL_LAYOUT_H
#define FASTSOCK_OPENSSL_LAYOUT_H
#include <Python.h>
#include <openssl/ssl.h>

typedef struct { PyObject_HEAD PyObject *Socket; SSL *ssl; } fs_PySSLSocket;
typedef struct { PyObject_HEAD BIO *bio; int eof_written; } fs_PySSLMemoryBIO;
typedef struct { PyObject_HEAD SSL_CTX *ctx; } fs_PySSLContext;

static inline SSL *fs_layout_ssl(PyObject *o) { return ((fs_PySSLSocket *)o)->ssl; }
static inline BIO *fs_layout_bio(PyObject *o) { return ((fs_PySSLMemoryBIO *)o)->bio; }
static inline SSL_CTX *fs_layout_ctx(PyObject *o) { return ((fs_PySSLContext *)o)->ctx; }
static inline Py_ssize_t fs_layout_basicsize(PyObject *o) { return Py_TYPE(o)->tp_basicsize; }
#define FS_LAYOUT_SSLSOCKET_MIN ((Py_ssize_t)sizeof(fs_PySSLSocket))
#define FS_LAYOUT_MEMORYBIO_SIZE ((Py_ssize_t)sizeof(fs_PySSLMemoryBIO))
#define FS_LAYOUT_CONTEXT_MIN ((Py_ssize_t)sizeof(fs_PySSLContext))
#endif
