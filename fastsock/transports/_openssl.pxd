# The few OpenSSL 3 calls fastsock's TLS record layer (_tls.pyx) makes
# directly, on the SSL and memory BIOs that Python's ssl module created.
# Linked against the system libssl/libcrypto (setup.py), the same shared
# libraries Python's _ssl module uses (checked at import in _tls.pyx).

cdef extern from "openssl/ssl.h" nogil:
    ctypedef struct SSL:
        pass
    ctypedef struct SSL_CTX:
        pass
    ctypedef struct BIO:
        pass

    enum:
        SSL_ERROR_NONE
        SSL_ERROR_SSL
        SSL_ERROR_WANT_READ
        SSL_ERROR_WANT_WRITE
        SSL_ERROR_SYSCALL
        SSL_ERROR_ZERO_RETURN
        SSL_RECEIVED_SHUTDOWN

    int SSL_read_ex(SSL *ssl, void *buf, size_t num, size_t *readbytes)
    int SSL_write_ex(SSL *ssl, const void *buf, size_t num, size_t *written)
    int SSL_do_handshake(SSL *ssl)
    int SSL_get_error(const SSL *ssl, int ret)
    int SSL_pending(const SSL *ssl)
    int SSL_get_shutdown(const SSL *ssl)
    SSL_CTX *SSL_get_SSL_CTX(const SSL *ssl)
    BIO *SSL_get_rbio(const SSL *ssl)
    BIO *SSL_get_wbio(const SSL *ssl)

cdef extern from "openssl/bio.h" nogil:
    int BIO_write(BIO *b, const void *data, int dlen)
    int BIO_read(BIO *b, void *data, int dlen)
    size_t BIO_ctrl_pending(BIO *b)

cdef extern from "openssl/err.h" nogil:
    void ERR_clear_error()

cdef extern from "openssl/crypto.h" nogil:
    unsigned long OpenSSL_version_num()
