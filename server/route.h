/*
 * route: which module serves which request, in one table. rpc.c decodes a
 * request and hands it here; the table sends it to the engine (through
 * engine_call, under its lock) or to a reader thread, and a request the
 * engine answers ENGINE_NOT_HELD for (a saga not in memory) to the reader
 * that reads its row. Nothing else switches over request types.
 *
 * With auth on, every request from the network is checked first
 * (auth_check: credential, then the least role its row names) and a
 * refused one goes nowhere. A principal limited to some definitions that
 * names one saga (get, wait, cancel, operate) has that saga's definition
 * read on a reader before the request goes on.
 *
 * Module order, with no circles: route -> engine, reader; reader -> engine
 * (a parked saga it read); engine -> dispatch, sm, store; everyone -> rpc
 * (replies).
 */
#ifndef SAGAD_ROUTE_H
#define SAGAD_ROUTE_H

#include "rpc.h"

/* rpc_start's route function. */
void route_request(rpc_req *r);

#endif
