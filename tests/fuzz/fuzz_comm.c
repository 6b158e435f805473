/* fuzz_comm.c: comm.h's inputs from outside: a launcher's size variable with arbitrary
 * contents (comm_launch_detect), and batches with arbitrary example lengths, orderings and
 * ranges (comm_split_batch, comm_batch_slice, comm_batch_loss_scale).
 *
 * Input: byte 0 picks the variable (bit 0), the batch kind (bit 1: preference) and whether
 * the example offsets are taken raw (bit 2: possibly decreasing, not ending at n_tokens);
 * byte 1 the rank count (1..16); then the variable's value up to the first '\n' (NULs become
 * '0'); then one byte per example (its length, 0..255) and, at the end, pairs of bytes as
 * ranges to slice. Checks: detection answers OK with a size that reads back, or TW_ERR_ARG
 * naming the variable; a well-formed batch always splits into contiguous shares covering it
 * (pairs whole) whose slices have the share's sizes; a raw one splits or is refused with
 * TW_ERR_ARG; any range slices or is refused, never read out of bounds. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2) return 0;
    const char *var = data[0] & 1 ? "PMI_SIZE" : "OMPI_COMM_WORLD_SIZE";
    int pref = (data[0] >> 1) & 1, raw = (data[0] >> 2) & 1;
    int n_ranks = 1 + data[1] % 16;
    size_t i = 2;
    char value[128];
    size_t nv = 0;
    while (i < size && data[i] != '\n') {
        if (nv + 1 < sizeof value) value[nv++] = data[i] ? (char)data[i] : '0';
        i++;
    }
    value[nv] = '\0';
    i++;

    unsetenv("OMPI_COMM_WORLD_SIZE");
    unsetenv("PMI_SIZE");
    unsetenv("PMIX_RANK");
    setenv(var, value, 1);
    int got = -1;
    const char *which = NULL;
    tw_status st = comm_launch_detect(&got, &which);
    if (st == TW_OK) {
        TW_ASSERT(got >= 1 && which && strcmp(which, var) == 0);
        TW_ASSERT(strtol(value, NULL, 10) == got);
    } else {
        TW_ASSERT(st == TW_ERR_ARG && strstr(tw_errmsg(), var));
    }
    unsetenv(var);

    /* the batch: up to 64 examples, then ranges */
    size_t ne = i < size ? (size - i) / 2 : 0;
    if (ne > 64) ne = 64;
    if (pref) ne -= ne % 2;
    ds_batch b;
    ds_batch_init(&b);
    size_t total = 0;
    for (size_t e = 0; e < ne; e++) total += data[i + e];
    b.tokens = tw_calloc(total + 1, sizeof *b.tokens);
    b.mask = tw_calloc(total + 1, 1);
    b.targets = tw_calloc(total + 1, sizeof *b.targets);
    b.pos = tw_calloc(total + 1, sizeof *b.pos);
    b.seg = tw_calloc(total + 1, sizeof *b.seg);
    b.row_start = tw_calloc(ne + 1, sizeof *b.row_start);
    b.ex_start = tw_calloc(ne + 1, sizeof *b.ex_start);
    b.ex_index = tw_calloc(ne + 1, sizeof *b.ex_index);
    b.ex_side = tw_calloc(ne + 1, 1);
    TW_ASSERT(b.tokens && b.mask && b.targets && b.pos && b.seg && b.row_start && b.ex_start &&
              b.ex_index && b.ex_side);
    b.cap_t = total + 1;
    b.cap_r = b.cap_e = ne + 1;
    size_t at = 0;
    for (size_t e = 0; e < ne; e++) {
        size_t len = data[i + e];
        b.ex_start[e] = raw ? (size_t)data[i + e] * 3 % (total + 1) : at;
        b.row_start[e] = b.ex_start[e];
        b.ex_side[e] = (int8_t)(pref ? (int)(e % 2) : -1);
        for (size_t t = 0; t < len; t++) {
            b.seg[at + t] = (int32_t)e;
            b.targets[at + t] = (t + e) % 3 ? (int32_t)t : -1;
        }
        at += len;
    }
    b.ex_start[ne] = raw && ne ? (size_t)data[i] % (total + 1) : total;
    b.row_start[ne] = total;
    b.n_tokens = total;
    b.n_rows = b.n_examples = ne;

    comm_range out[16];
    st = comm_split_batch(&b, n_ranks, out);
    if (!raw) {
        TW_ASSERT(st == TW_OK);
        size_t ex = 0, tok = 0;
        for (int k = 0; k < n_ranks; k++) {
            TW_ASSERT(out[k].ex_begin == ex && out[k].ex_end >= ex && out[k].tok_begin == tok);
            TW_ASSERT(!pref || out[k].ex_begin % 2 == 0);
            ex = out[k].ex_end;
            tok = out[k].tok_end;
        }
        TW_ASSERT(ex == ne && tok == total);
    } else {
        TW_ASSERT(st == TW_OK || st == TW_ERR_ARG);
    }
    ds_batch s;
    ds_batch_init(&s);
    if (st == TW_OK) {
        for (int k = 0; k < n_ranks; k++) {
            TW_ASSERT(comm_batch_slice(&b, &out[k], &s) == TW_OK);
            TW_ASSERT(s.n_tokens == out[k].tok_end - out[k].tok_begin);
            TW_ASSERT(s.n_examples == out[k].ex_end - out[k].ex_begin);
        }
    }
    /* ranges from the bytes after the lengths */
    for (size_t j = i + ne; j + 1 < size; j += 2) {
        comm_range r = {data[j] % (ne + 2), data[j + 1] % (ne + 2), 0, 0};
        if (r.ex_begin <= ne) r.tok_begin = b.ex_start[r.ex_begin];
        if (r.ex_end <= ne) r.tok_end = b.ex_start[r.ex_end];
        tw_status sst = comm_batch_slice(&b, &r, &s);
        TW_ASSERT(sst == TW_OK || sst == TW_ERR_ARG);
        if (sst == TW_OK) TW_ASSERT(s.n_tokens == r.tok_end - r.tok_begin);
    }
    double sc = comm_batch_loss_scale(&b);
    TW_ASSERT(sc >= 0.0 && sc <= 1.0);
    ds_batch_free(&s);
    ds_batch_free(&b);
    return 0;
}
