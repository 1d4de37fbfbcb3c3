/*
 * saga_base.h: what sagad, libsaga and sagactl share of the public API:
 * the error codes, the version and sagad's default address. saga.h
 * includes it; it is installed next to saga.h.
 *
 * This is the one definition of the codes that travel in
 * sagawire.Error.code (proto/sagawire.proto) and that sagactl exits with.
 *
 * C99 and C++ compatible; depends on nothing.
 */
#ifndef SAGA_BASE_H
#define SAGA_BASE_H

#define SAGA_VERSION_MAJOR 0
#define SAGA_VERSION_MINOR 1
#define SAGA_VERSION_PATCH 0

/* The default address of sagad: every tool and the library use it when no
 * URL is given. */
#define SAGA_DEFAULT_URL "tcp://127.0.0.1:7700"

/* ------------------------------------------------------------------------
 * Errors. The values are stable: they travel on the wire and scripts see
 * them as sagactl exit codes. saga_strerror() (saga.h) describes them.
 * ------------------------------------------------------------------------ */
typedef enum saga_err {
	SAGA_OK = 0,
	SAGA_EINVAL = 1,        /* an argument is invalid */
	SAGA_ENOMEM = 2,        /* out of memory */
	SAGA_ENOTFOUND = 3,     /* no such saga or definition */
	SAGA_EEXIST = 4,        /* already exists */
	SAGA_ETIMEDOUT = 5,     /* no answer in time */
	SAGA_ECONN = 6,         /* cannot reach sagad */
	SAGA_EPROTO = 7,        /* malformed or unexpected message */
	SAGA_ETOOBIG = 8,       /* message or field larger than allowed */
	SAGA_EDEFINITION = 9,   /* invalid saga definition */
	SAGA_ESTATE = 10,       /* not allowed in the saga's current state */
	SAGA_EDB = 11,          /* database error in sagad */
	SAGA_ECLOSED = 12,      /* handle closed or shutting down */
	SAGA_EINTERNAL = 13,    /* bug: please report */
	SAGA_EBUSY = 14,        /* sagad is overloaded; try again */
	SAGA_EUNSUPPORTED = 15, /* the server does not support the request */
	SAGA_EAUTH = 16,        /* no credential, or a wrong, revoked or expired one */
	SAGA_EPERM = 17         /* the caller's role does not allow this */
} saga_err;

#endif
