/* varint: protobuf varints. See varint.h. */
#include "varint.h"

#include "saga_base.h"

int
cm_varint_read(const uint8_t *p, size_t len, size_t *pos, uint64_t *v)
{
	uint64_t x = 0;
	size_t at = *pos;
	for (unsigned i = 0; i < CM_VARINT_MAX; i++) {
		if (at >= len)
			return SAGA_EPROTO;
		uint8_t b = p[at++];
		x |= (uint64_t)(b & 0x7f) << (7 * i);
		if ((b & 0x80) == 0) {
			*v = x;
			*pos = at;
			return 0;
		}
	}
	return SAGA_EPROTO;
}

size_t
cm_varint_write(uint8_t out[CM_VARINT_MAX], uint64_t v)
{
	size_t k = 0;
	do {
		out[k] = (uint8_t)(v & 0x7f);
		v >>= 7;
		if (v != 0)
			out[k] |= 0x80;
		k++;
	} while (v != 0);
	return k;
}
