/*
 * http_assets: files built into sagad by server/ui/embed.py: the web UI
 * (the files of server/ui/, served under /ui/) and sagad's wire schema as a
 * FileDescriptorSet (for the JSON API's proto3 JSON mapping).
 */
#ifndef SAGAD_HTTP_ASSETS_H
#define SAGAD_HTTP_ASSETS_H

#include <stddef.h>

typedef struct http_asset {
	const char *name;          /* "/ui/app.js" */
	const unsigned char *data; /* len bytes, then a NUL */
	size_t len;
} http_asset;

extern const http_asset ui_assets[];
extern const size_t ui_assets_n;
extern const http_asset wire_schema[]; /* one: "sagawire.binpb" */
extern const size_t wire_schema_n;

#endif
