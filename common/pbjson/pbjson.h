/*
 * pbjson: protobuf binary <-> JSON for message types known only at run
 * time, from the FileDescriptorSet a saga definition was registered with
 * (protoc --include_imports --descriptor_set_out). Prefix pbjson_. Used by
 * sagactl to show saga inputs and step results as JSON, and by libsaga's
 * saga_client_encode_json (linked in, hidden: not part of libsaga's public
 * API) to read a start payload written as JSON.
 *
 * The mapping is the proto3 JSON mapping
 * (https://protobuf.dev/programming-guides/proto3/#json):
 *  - Keys are the fields' json_name (lowerCamelCase unless the .proto set
 *    json_name); input accepts the json_name or the proto field name.
 *  - int64, uint64, sint64, fixed64 and sfixed64 print as JSON strings;
 *    input takes a number or a string holding one (exponent notation is
 *    fine if the value is a whole number, e.g. 1e3). 32-bit integers print
 *    as numbers and accept the same forms.
 *  - float and double print in the fewest digits that read back to the
 *    same value; NaN and the infinities as "NaN", "Infinity", "-Infinity"
 *    (input also takes numbers written as strings). A double beyond the
 *    range of float is refused for a float field.
 *  - bytes print as standard base64 with padding; input takes standard or
 *    URL-safe base64, padded or not.
 *  - Enums print as the value's name (the first one declared, for aliases)
 *    or, for a number the enum does not declare, as that number; input
 *    takes a name or an int32 number. google.protobuf.NullValue is null.
 *  - Maps are JSON objects keyed by the key as text ("1", "true", ...);
 *    input keys of integer maps must be plain decimal (no sign "+", no
 *    leading zeros, no exponent), so that distinct keys are distinct
 *    values. When the binary repeats a key, the last entry wins.
 *  - Presence: fields of a proto3 file without `optional` and outside any
 *    oneof are printed only when not zero/empty (so -0.0 is printed);
 *    message fields, oneof members, proto3 `optional` fields and every
 *    singular field of a file that is not proto3 (proto2) are printed
 *    whenever the binary holds them, zero or not. Repeated fields and maps
 *    are printed when not empty. Output follows declaration order.
 *  - A JSON null for a field means "not set", except for a
 *    google.protobuf.Value (null_value) or NullValue field.
 *  - Binary -> JSON follows protobuf's merge rules: the last value of a
 *    singular scalar wins, occurrences of a singular message field merge,
 *    the last member of a oneof wins; repeated scalars may be packed or
 *    not. JSON -> binary writes fields in field-number order, packs
 *    repeated scalars of proto3 files (unless [packed = false]) and of
 *    proto2 fields marked [packed = true], writes map entries with both key
 *    and value, and leaves zero-valued implicit-presence fields out: the
 *    bytes protoc's C++ runtime writes for the same values (but for the
 *    order of map entries, which protobuf leaves open).
 *  - Well-known types, when the set holds them (protoc --include_imports):
 *    Timestamp as an RFC 3339 string ("2024-01-02T03:04:05.500Z"; input
 *    takes any UTC offset), Duration as "1.5s", the wrappers (Int32Value,
 *    StringValue, ...) as their bare value, Struct / Value / ListValue as
 *    arbitrary JSON, FieldMask as "fooBar,baz.quxQuux" (a path that has
 *    no such form, e.g. "Foo" or "a__b", is refused; input paths may not
 *    contain "_"). A type with such a
 *    name but another shape is an ordinary message. google.protobuf.Any is
 *    refused with SAGA_EINVAL in both directions (its type URL would need
 *    types from outside this set).
 *
 * Unknown fields. Binary fields whose number the message does not declare
 * (or declared but with another wire type: protobuf keeps those as unknown
 * too) are printed, in their binary order, after the known fields under
 * the key "@unknown", as an array of
 *     {"field": N, "wire": W, "value": V}
 * where W and V are
 *     "varint"  the varint as a decimal string ("18446744073709551615")
 *     "fixed64" the 8 bytes as an unsigned decimal string
 *     "fixed32" the 4 bytes as an unsigned number
 *     "bytes"   the length-delimited payload as base64
 *     "group"   the bytes between the start- and end-group tags as base64
 * JSON -> binary accepts the same "@unknown" array and writes each entry
 * back after the known fields, so a message printed and read back keeps
 * its unknown fields. An entry may not use a number and wire type that
 * the message declares (write that field by name). Proto2 extensions are
 * not looked up: they print as unknown fields. Unknown fields inside map
 * entries and well-known types are dropped, as protobuf does for map
 * entries. Any other JSON key that names no field is an error that lists
 * the type's fields.
 *
 * Untrusted input, both directions: messages nest at most PBJSON_MAX_DEPTH
 * levels (each map entry counts as a level, as it is a message on the
 * wire; JSON nests at most 2 * PBJSON_MAX_DEPTH + 8), else SAGA_ETOOBIG;
 * no output grows beyond PBJSON_MAX_OUTPUT bytes (SAGA_ETOOBIG); working
 * memory is at most about 50 bytes per protobuf field (binary -> JSON) or
 * 80 bytes per JSON value (JSON -> binary), plus the output. Strings must be valid
 * UTF-8 (no overlong forms, no surrogates) both in the binary and in the
 * JSON, where \u escapes must pair surrogates. Duplicate JSON keys, and a
 * field given under both of its names, are errors.
 *
 * Errors. Every function returns 0 or a saga_err (saga_base.h):
 *   SAGA_EINVAL    bad argument; JSON that is not JSON, a value that does
 *                  not fit its field (wrong JSON type, integer out of range,
 *                  bad base64, unknown enum name, unknown key, ...); a value
 *                  JSON cannot show (NaN in a google.protobuf.Value, Any)
 *   SAGA_EPROTO    bytes that are not a valid message of that type
 *                  (truncated, bad tag or length, invalid UTF-8 in a
 *                  string, Timestamp/Duration out of their range, a
 *                  FieldMask path with no JSON form), or a descriptor set
 *                  that is not one
 *   SAGA_ENOTFOUND the type, or the type of a field that the data uses, is
 *                  not in the set
 *   SAGA_ETOOBIG   nesting too deep, or output too large
 *   SAGA_ENOMEM    out of memory
 * and, if err is not NULL, writes a one-line printable-ASCII message into
 * err (at most errlen bytes, NUL-terminated) that starts with the JSON
 * path of the value at fault, e.g.
 *     items[2].price: expected a number, got "abc"
 *     labels["k"].when: expected an RFC 3339 timestamp ..., got 5
 *     items[1]: truncated length-delimited field 3 at byte 57
 * (binary errors also give the byte offset in the input). On success err
 * is left empty.
 *
 * Threads: a pbjson is immutable once made; any number of threads may use
 * one at once. Numbers are printed and read with the C library, so the
 * LC_NUMERIC locale must be "C" (the default unless a program calls
 * setlocale).
 */
#ifndef SAGA_PBJSON_H
#define SAGA_PBJSON_H

#include <stddef.h>
#include <stdint.h>

/* Deepest message nesting, the outermost message being level 1. */
#define PBJSON_MAX_DEPTH  100
/* Largest output (JSON text with its NUL, or protobuf bytes). */
#define PBJSON_MAX_OUTPUT (256u << 20)
/* Largest indent accepted by pbjson_to_json. */
#define PBJSON_MAX_INDENT 16

/* An immutable pool of the message and enum types of one
 * FileDescriptorSet. */
typedef struct pbjson pbjson;

/* Reads a serialized FileDescriptorSet (fdset, len bytes; the caller keeps
 * it, pbjson copies what it needs) into a new pool at *out, which the
 * caller releases with pbjson_free(). Types are resolved by full name; a
 * field whose type is missing from the set (protoc run without
 * --include_imports) only fails a conversion whose data uses it
 * (SAGA_ENOTFOUND). Returns 0, SAGA_EPROTO (not a descriptor set,
 * duplicate type names or field numbers, a field without name, number or
 * type), SAGA_ETOOBIG, SAGA_ENOMEM or SAGA_EINVAL (NULL out). */
int pbjson_new(const uint8_t *fdset, size_t len, pbjson **out, char *err, size_t errlen);

/* Releases the pool. NULL is a no-op. */
void pbjson_free(pbjson *p);

/* 1 if the set defines message type full_name ("shop.Order"; a leading
 * dot, as descriptors write it, is accepted too), else 0. */
int pbjson_has_message(const pbjson *p, const char *full_name);

/* Converts buf (len bytes, a serialized message of type `type`, named as
 * for pbjson_has_message) to JSON text. indent 0 prints one line with no
 * spaces; 1..PBJSON_MAX_INDENT prints one field or element per line,
 * indented by that many spaces per level. On success *out is a malloc'd
 * NUL-terminated string that belongs to the caller (free()); on failure
 * *out is NULL. */
int pbjson_to_json(const pbjson *p, const char *type, const uint8_t *buf, size_t len, int indent,
    char **out, char *err, size_t errlen);

/* pbjson_to_json for bytes from which sagad removed sensitive fields
 * (docs/SECURITY.md): redacted[0..n_redacted) are their proto field paths
 * from the top message ("card", "payer.card.number"; repeated fields and
 * their elements share one path). Each such field that the bytes do not
 * hold is printed where it belongs as "key": "[redacted]" (fields under a
 * map entry are left out without the mark). */
int pbjson_to_json_redacted(const pbjson *p, const char *type, const uint8_t *buf, size_t len,
    int indent, const char *const *redacted, size_t n_redacted, char **out, char *err,
    size_t errlen);

/* Converts JSON text (len bytes, UTF-8, NUL not needed; one JSON value,
 * surrounding white space allowed) to a serialized message of type
 * `type`. On success *out is a malloc'd buffer of *outlen bytes that
 * belongs to the caller (free()), or NULL with *outlen 0 when the message
 * encodes to nothing (e.g. {}); on failure *out is NULL and *outlen 0. */
int pbjson_from_json(const pbjson *p, const char *type, const char *json, size_t len, uint8_t **out,
    size_t *outlen, char *err, size_t errlen);

#endif
