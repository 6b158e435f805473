/* json.h: reading JSON documents (config.json, tokenizer.json, request bodies).
 * The one file that includes cJSON's header is json.c. Nodes are owned by the document
 * returned from tw_json_parse; free only that. Thread-safe on distinct documents. */
#ifndef TWIN_JSON_H
#define TWIN_JSON_H

#include "core.h"

typedef struct tw_json tw_json; /* a node: the document root or any value inside it */

/* Parses n bytes. On failure returns NULL and sets TW_ERR_FORMAT with "<what>: invalid JSON
 * at byte K". Nesting deeper than cJSON's limit is refused the same way. */
tw_json *tw_json_parse(const char *text, size_t n, const char *what);
tw_json *tw_json_parse_file(const char *path); /* reads and parses; errors name the file */
void tw_json_free(tw_json *doc);               /* the root only; NULL is a no-op */

int tw_json_is_object(const tw_json *j);
int tw_json_is_array(const tw_json *j);
int tw_json_is_string(const tw_json *j);
int tw_json_is_number(const tw_json *j);
int tw_json_is_bool(const tw_json *j);
int tw_json_is_null(const tw_json *j);

tw_json *tw_json_get(const tw_json *obj, const char *key); /* NULL when missing or not object */
size_t tw_json_size(const tw_json *j);                      /* array or object member count */
tw_json *tw_json_first(const tw_json *j);                   /* first child of array/object */
tw_json *tw_json_next(const tw_json *child);                /* next sibling; NULL at the end */
const char *tw_json_key(const tw_json *member);             /* key of an object member */

const char *tw_json_str(const tw_json *j);                  /* NULL when not a string */
double tw_json_num(const tw_json *j, double dflt);          /* dflt when not a number */
int tw_json_bool(const tw_json *j, int dflt);               /* dflt when not a bool */

/* Shorthands for obj[key]. */
const char *tw_json_get_str(const tw_json *obj, const char *key, const char *dflt);
double tw_json_get_num(const tw_json *obj, const char *key, double dflt);
int tw_json_get_bool(const tw_json *obj, const char *key, int dflt);

#endif
