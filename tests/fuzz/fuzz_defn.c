/*
 * Fuzz target: sagad's parser of saga definitions (a FileDescriptorSet
 * from `register`): decoding, option reading and every validation.
 */
#include <stdint.h>
#include <stdlib.h>

#include "defn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	defn_saga **defs = NULL;
	size_t n = 0;
	char err[512];
	if (defn_parse_set(data, size, &defs, &n, err, sizeof(err)) == 0)
		defn_free_array(defs, n);
	return 0;
}
