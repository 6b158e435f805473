/* cmd_gguf.c: twin gguf info FILE: a GGUF file's header, metadata and tensors.
 *
 * Output (stdout), one item per line:
 *   file / version / alignment / data offset / size, then "metadata: N keys" and one line per
 *   key ("  KEY  TYPE  VALUE"; arrays as `[string x 49152] "a", "b", ...`, long strings cut
 *   with their byte count), then "tensors: N" and one line per tensor (name, type, shape,
 *   bytes, offset), then the parameter and byte totals.
 * Strings are printed quoted with JSON-style escapes; bytes that are not UTF-8 as \xNN. */
#include "cli.h"
#include "gguf.h"

#include <stdlib.h>
#include <string.h>

#define INFO_STR_MAX 60      /* bytes of a string value shown before it is cut */
#define INFO_ELEM_STR_MAX 24 /* bytes of each string shown in an array summary */
#define INFO_ARR_NUM 8       /* numeric array elements shown */
#define INFO_ARR_STR 4       /* string array elements shown */
#define INFO_ARR_NESTED 3    /* elements of an array of arrays shown */
#define INFO_DEPTH 3         /* nesting levels whose elements are shown */

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin gguf info FILE\n"
            "       twin gguf info NAME     (a model fetched by twin model fetch)\n\n"
            "Prints a GGUF file's header (version, alignment, data offset), every metadata key\n"
            "with its type and value (arrays summarised by their first elements, long strings\n"
            "shortened), every tensor's name, type, shape, size and offset, and the totals.\n"
            "A malformed file gives one error line naming the file and the field.\n\n"
            "exit status: 0 success, 1 bad or unreadable file, 2 bad usage\n");
}

/* Prints s quoted and escaped, at most max bytes of it (cut on a character boundary). */
static void print_str(FILE *out, gguf_str s, size_t max) {
    const uint8_t *p = (const uint8_t *)s.ptr;
    size_t n = (size_t)s.len, i = 0;
    fputc('"', out);
    while (i < n) {
        if (i >= max) break;
        uint8_t c = p[i];
        if (c == '"' || c == '\\') {
            fprintf(out, "\\%c", c);
            i++;
        } else if (c == '\n') {
            fputs("\\n", out);
            i++;
        } else if (c == '\t') {
            fputs("\\t", out);
            i++;
        } else if (c == '\r') {
            fputs("\\r", out);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(out, "\\u%04x", c);
            i++;
        } else if (c < 0x80) {
            fputc(c, out);
            i++;
        } else {
            uint32_t cp;
            int k = tw_utf8_decode(p + i, n - i, &cp);
            if (cp == TW_UTF8_INVALID) {
                fprintf(out, "\\x%02x", c);
                i++;
            } else {
                fwrite(p + i, 1, (size_t)k, out);
                i += (size_t)k;
            }
        }
    }
    fputc('"', out);
    if (i < n) fprintf(out, "... (%llu bytes)", (unsigned long long)s.len);
}

/* Shortest decimal form that reads back as the same value (f32 or f64). */
static void print_float(FILE *out, double v, int is_f32) {
    char buf[40];
    if (v == (double)(int64_t)v && v > -1e9 && v < 1e9) { /* 100000, not 1e+05 */
        fprintf(out, "%.0f", v);
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        double back = strtod(buf, NULL);
        if (is_f32 ? (float)back == (float)v : back == v) break;
    }
    fputs(buf, out);
}

static void print_scalar(FILE *out, const gguf_value *v) {
    switch (v->type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_UINT16: case GGUF_TYPE_UINT32: case GGUF_TYPE_UINT64:
        fprintf(out, "%llu", (unsigned long long)v->v.u64);
        break;
    case GGUF_TYPE_INT8: case GGUF_TYPE_INT16: case GGUF_TYPE_INT32: case GGUF_TYPE_INT64:
        fprintf(out, "%lld", (long long)v->v.i64);
        break;
    case GGUF_TYPE_FLOAT32: print_float(out, v->v.f64, 1); break;
    case GGUF_TYPE_FLOAT64: print_float(out, v->v.f64, 0); break;
    case GGUF_TYPE_BOOL: fputs(v->v.u64 ? "true" : "false", out); break;
    case GGUF_TYPE_STRING: print_str(out, v->v.str, INFO_STR_MAX); break;
    default: break;
    }
}

/* `[TYPE x N] e0, e1, ...` with the first few elements; nested arrays by their summaries. */
static void print_array(FILE *out, const gguf_value *v, int depth) {
    gguf_type et = v->v.arr.elem_type;
    uint64_t n = v->v.arr.count;
    fprintf(out, "[%s x %llu]", gguf_type_name(et), (unsigned long long)n);
    uint64_t show = et == GGUF_TYPE_STRING  ? INFO_ARR_STR
                    : et == GGUF_TYPE_ARRAY ? INFO_ARR_NESTED
                                            : INFO_ARR_NUM;
    if (depth >= INFO_DEPTH) show = 0;
    uint64_t k = n < show ? n : show;
    for (uint64_t i = 0; i < k; i++) {
        fputs(i ? ", " : " ", out);
        if (et == GGUF_TYPE_STRING) {
            print_str(out, gguf_arr_str(v, i), INFO_ELEM_STR_MAX);
        } else if (et == GGUF_TYPE_ARRAY) {
            fputc('(', out);
            print_array(out, gguf_arr_elem(v, i), depth + 1);
            fputc(')', out);
        } else if (et == GGUF_TYPE_FLOAT32 || et == GGUF_TYPE_FLOAT64) {
            print_float(out, gguf_arr_f64(v, i), et == GGUF_TYPE_FLOAT32);
        } else if (et == GGUF_TYPE_BOOL) {
            fputs(gguf_arr_i64(v, i) ? "true" : "false", out);
        } else if (et == GGUF_TYPE_UINT64) {
            fprintf(out, "%llu", (unsigned long long)gguf_arr_i64(v, i));
        } else {
            fprintf(out, "%lld", (long long)gguf_arr_i64(v, i));
        }
    }
    if (n > k) fputs(k ? ", ..." : " ...", out);
}

static int gguf_info(const char *path) {
    gguf_file *f = gguf_open(path);
    if (!f) return cli_fail_status("gguf");
    FILE *out = stdout;
    fprintf(out, "file: %s\n", path);
    fprintf(out, "version: %u\n", gguf_version(f));
    fprintf(out, "alignment: %u\n", gguf_alignment(f));
    fprintf(out, "data offset: %llu\n", (unsigned long long)gguf_data_offset(f));
    fprintf(out, "size: %zu bytes\n", gguf_file_size(f));

    uint64_t nkv = gguf_n_kv(f), nt = gguf_n_tensors(f);
    int kw = 0, tw = 0;
    for (uint64_t i = 0; i < nkv; i++) {
        uint64_t l = gguf_kv_at(f, i)->key.len;
        if (l > (uint64_t)kw) kw = l > 48 ? 48 : (int)l;
    }
    for (uint64_t i = 0; i < nt; i++) {
        uint64_t l = gguf_tensor_at(f, i)->name.len;
        if (l > (uint64_t)tw) tw = l > 48 ? 48 : (int)l;
    }
    fprintf(out, "metadata: %llu keys\n", (unsigned long long)nkv);
    for (uint64_t i = 0; i < nkv; i++) {
        const gguf_kv *kv = gguf_kv_at(f, i);
        /* keys are printed raw unless they hold bytes that would break the line */
        int plain = 1;
        for (uint64_t j = 0; j < kv->key.len; j++)
            if ((uint8_t)kv->key.ptr[j] < 0x20 || kv->key.ptr[j] == 0x7f) plain = 0;
        fputs("  ", out);
        if (plain)
            fprintf(out, "%-*.*s", kw, (int)kv->key.len, kv->key.ptr);
        else
            print_str(out, kv->key, 64);
        fprintf(out, "  %-7s ", gguf_type_name(kv->value.type));
        if (kv->value.type == GGUF_TYPE_ARRAY)
            print_array(out, &kv->value, 0);
        else
            print_scalar(out, &kv->value);
        fputc('\n', out);
    }
    fprintf(out, "tensors: %llu\n", (unsigned long long)nt);
    uint64_t params = 0, bytes = 0;
    for (uint64_t i = 0; i < nt; i++) {
        const gguf_tensor *t = gguf_tensor_at(f, i);
        int64_t n = 1;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) n *= t->ne[d]; /* gguf_open checked overflow */
        params += (uint64_t)n;
        bytes += t->nbytes;
        char shape[128];
        int o = snprintf(shape, sizeof shape, "[");
        for (uint32_t d = 0; d < t->n_dims; d++)
            o += snprintf(shape + o, sizeof shape - (size_t)o, "%s%lld", d ? ", " : "",
                          (long long)t->ne[d]);
        snprintf(shape + o, sizeof shape - (size_t)o, "]");
        fputs("  ", out);
        gguf_str nm = t->name;
        int plain = 1;
        for (uint64_t j = 0; j < nm.len; j++)
            if ((uint8_t)nm.ptr[j] < 0x20 || nm.ptr[j] == 0x7f) plain = 0;
        if (plain)
            fprintf(out, "%-*.*s", tw, (int)nm.len, nm.ptr);
        else
            print_str(out, nm, 64);
        fprintf(out, "  %-7s %-20s %12llu bytes  at %llu\n", tw_dtype_name(t->type), shape,
                (unsigned long long)t->nbytes, (unsigned long long)t->offset);
    }
    fprintf(out, "total: %llu parameters, %llu bytes of tensor data\n",
            (unsigned long long)params, (unsigned long long)bytes);
    gguf_close(f);
    if (fflush(out) != 0) return cli_fail(CLI_ERR, "gguf", "cannot write the output");
    return CLI_OK;
}

int cmd_gguf(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (cli_is_help(argv[1])) {
        usage(stdout);
        return CLI_OK;
    }
    if (strcmp(argv[1], "info") != 0)
        return cli_fail(CLI_USAGE, "gguf", "unknown subcommand '%s' (twin gguf --help)", argv[1]);
    const char *file = NULL;
    for (int i = 2; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        }
        if (argv[i][0] == '-' && argv[i][1] != 0)
            return cli_fail(CLI_USAGE, "gguf", "info: unknown option '%s'", argv[i]);
        if (file) return cli_fail(CLI_USAGE, "gguf", "info: one FILE only ('%s')", argv[i]);
        file = argv[i];
    }
    if (!file) return cli_fail(CLI_USAGE, "gguf", "info: needs a FILE (twin gguf --help)");
    /* A bare name that is no file (e.g. smollm2-135m) is a fetched model's name. */
    if (!tw_path_exists(file) && !strchr(file, '/') && !strstr(file, ".gguf")) {
        char *path = cli_resolve_model("gguf", file);
        if (!path) return CLI_ERR;
        int rc = gguf_info(path);
        tw_free(path);
        return rc;
    }
    return gguf_info(file);
}
