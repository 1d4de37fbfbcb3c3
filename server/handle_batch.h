/*
 * handle_batch: BatchRequest, one operator action (cancel, terminate,
 * retry a step, rerun) on every saga a list filter matches, a page of at
 * most 100 per call with a token for the next, each saga's outcome
 * reported (done, or skipped and why), and a dry run that changes nothing
 * and counts what the action applies to. Each saga gets the very command
 * a single call would send, so it is checked, recorded, forwarded to the
 * sagad owning it and answered the same way.
 */
#ifndef SAGAD_HANDLE_BATCH_H
#define SAGAD_HANDLE_BATCH_H

#include <libpq-fe.h>

#include "rpc.h"

/* On a reader: answers r (a BatchRequest) once every saga of the page is. */
void batch_run(PGconn *c, rpc_req *r);

#endif
