/* json.c: the cJSON wrapper (json.h). cJSON's global error pointer is never used: the
 * parse end comes back through cJSON_ParseWithLengthOpts. */
#include "json.h"

#include <cjson/cJSON.h>
#include <string.h>

#define C(j) ((const cJSON *)(j))

tw_json *tw_json_parse(const char *text, size_t n, const char *what) {
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(text, n, &end, 0);
    if (!root) {
        size_t at = end && end >= text ? (size_t)(end - text) : 0;
        tw_error(TW_ERR_FORMAT, "%s: invalid JSON at byte %zu", what, at);
        return NULL;
    }
    return (tw_json *)root;
}

tw_json *tw_json_parse_file(const char *path) {
    char *buf;
    size_t n;
    if (tw_file_read(path, &buf, &n)) return NULL;
    tw_json *j = tw_json_parse(buf, n, path);
    tw_free(buf);
    return j;
}

void tw_json_free(tw_json *doc) {
    if (doc) cJSON_Delete((cJSON *)doc);
}

int tw_json_is_object(const tw_json *j) { return j && cJSON_IsObject(C(j)); }
int tw_json_is_array(const tw_json *j) { return j && cJSON_IsArray(C(j)); }
int tw_json_is_string(const tw_json *j) { return j && cJSON_IsString(C(j)); }
int tw_json_is_number(const tw_json *j) { return j && cJSON_IsNumber(C(j)); }
int tw_json_is_bool(const tw_json *j) { return j && cJSON_IsBool(C(j)); }
int tw_json_is_null(const tw_json *j) { return j && cJSON_IsNull(C(j)); }

tw_json *tw_json_get(const tw_json *obj, const char *key) {
    if (!tw_json_is_object(obj)) return NULL;
    return (tw_json *)cJSON_GetObjectItemCaseSensitive(C(obj), key);
}

size_t tw_json_size(const tw_json *j) {
    if (!j || !(cJSON_IsArray(C(j)) || cJSON_IsObject(C(j)))) return 0;
    size_t n = 0;
    for (const cJSON *c = C(j)->child; c; c = c->next) n++;
    return n;
}

tw_json *tw_json_first(const tw_json *j) {
    if (!j || !(cJSON_IsArray(C(j)) || cJSON_IsObject(C(j)))) return NULL;
    return (tw_json *)C(j)->child;
}

tw_json *tw_json_next(const tw_json *child) { return child ? (tw_json *)C(child)->next : NULL; }
const char *tw_json_key(const tw_json *member) { return member ? C(member)->string : NULL; }

const char *tw_json_str(const tw_json *j) {
    return tw_json_is_string(j) ? C(j)->valuestring : NULL;
}

double tw_json_num(const tw_json *j, double dflt) {
    return tw_json_is_number(j) ? C(j)->valuedouble : dflt;
}

int tw_json_bool(const tw_json *j, int dflt) {
    return tw_json_is_bool(j) ? cJSON_IsTrue(C(j)) : dflt;
}

const char *tw_json_get_str(const tw_json *obj, const char *key, const char *dflt) {
    const char *s = tw_json_str(tw_json_get(obj, key));
    return s ? s : dflt;
}
double tw_json_get_num(const tw_json *obj, const char *key, double dflt) {
    return tw_json_num(tw_json_get(obj, key), dflt);
}
int tw_json_get_bool(const tw_json *obj, const char *key, int dflt) {
    return tw_json_bool(tw_json_get(obj, key), dflt);
}
