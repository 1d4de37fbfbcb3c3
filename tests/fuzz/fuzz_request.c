/*
 * Fuzz target: sagad's decoder of every request from the network
 * (wire_unpack_request: the schema walk bounding depth and fields, then
 * protobuf-c under an allocation quota). A message that decodes must pack
 * again to no more bytes than it came in (unknown fields are dropped).
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
	Sagawire__Request *q = wire_unpack_request(data, size, &err);
	if (q == NULL)
		return 0;
	size_t n = sagawire__request__get_packed_size(q);
	uint8_t *buf = malloc(n ? n : 1);
	if (buf != NULL) {
		if (sagawire__request__pack(q, buf) != n)
			abort();
		Sagawire__Request *again = wire_unpack_request(buf, n, &err);
		if (again == NULL)
			abort(); /* what we packed must decode */
		wire_free(&again->base);
		free(buf);
	}
	wire_free(&q->base);
	return 0;
}
