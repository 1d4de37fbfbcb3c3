/*
 * Fuzz target: libsaga's decoder of every reply from sagad
 * (wire_unpack_response): work batches (dispatches), report acks, get/list
 * results, errors. A message that decodes must pack and decode again.
 */
#include <stdint.h>
#include <stdlib.h>

#include "sagawire.pb-c.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int err = 0;
	Sagawire__Response *r = wire_unpack_response(data, size, &err);
	if (r == NULL)
		return 0;
	size_t n = sagawire__response__get_packed_size(r);
	uint8_t *buf = malloc(n ? n : 1);
	if (buf != NULL) {
		if (sagawire__response__pack(r, buf) != n)
			abort();
		Sagawire__Response *again = wire_unpack_response(buf, n, &err);
		if (again == NULL)
			abort();
		wire_free(&again->base);
		free(buf);
	}
	wire_free(&r->base);
	return 0;
}
