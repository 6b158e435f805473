/* retrieval_session.c: see retrieval_session.h. */
#include "retrieval_session.h"

#include "cli.h"

#include <string.h>
#include <unistd.h>

int retrieval_session_open(const char *cmd, const char *model, retrieval_session *s) {
    memset(s, 0, sizeof *s);
    char *path = cli_resolve_model(cmd, model ? model : "minilm-l6");
    if (!path) return CLI_ERR;
    char *ws = cli_workspace_path(NULL);
    char *db = cli_workspace_path("twin.db");
    char *ix = cli_workspace_path("index");
    int rc = CLI_OK;
    if (!ws || !db || !ix) rc = cli_fail(CLI_ERR, cmd, "out of memory");
    if (!rc && tw_mkdir_p(ws)) rc = cli_fail_status(cmd);
    if (!rc && wh_open(db, &s->db)) rc = cli_fail_status(cmd);
    /* The CPU backend: the CUDA one does not run the encoder's ops (LayerNorm, GELU, masked
     * attention) yet, and "auto" would pick it on a GPU host. */
    if (!rc && tw_backend_open("cpu", &s->be)) rc = cli_fail_status(cmd);
    if (!rc && tw_encoder_load(path, s->be, &s->enc)) rc = cli_fail_status(cmd);
    if (!rc && retrieval_open(ix, s->enc, &s->r)) rc = cli_fail_status(cmd);
    tw_free(path);
    tw_free(ws);
    tw_free(db);
    tw_free(ix);
    if (rc) retrieval_session_close(s);
    return rc;
}

void retrieval_session_close(retrieval_session *s) {
    retrieval_free(s->r);
    tw_encoder_free(s->enc);
    tw_backend_free(s->be);
    wh_close(s->db);
    memset(s, 0, sizeof *s);
}

/* Progress of twin embed: one line, rewritten in place on a terminal, every 5 s otherwise. */
typedef struct {
    int tty;
    double last;
    double t0;
} embed_progress;

static void on_progress(void *ctx, int64_t done, int64_t total) {
    embed_progress *p = ctx;
    double now = tw_now_s();
    if (done < total && now - p->last < (p->tty ? 0.2 : 5.0)) return;
    p->last = now;
    double rate = (double)done / (now - p->t0 > 1e-9 ? now - p->t0 : 1e-9);
    fprintf(stderr, "%sembed: %lld/%lld chunks (%.1f/s)%s", p->tty ? "\r" : "", (long long)done,
            (long long)total, rate, p->tty ? "" : "\n");
    fflush(stderr);
}

int retrieval_embed_chunks(const char *model) {
    retrieval_session s;
    int rc = retrieval_session_open("embed", model, &s);
    if (rc) return rc;
    embed_progress pr = {isatty(2), 0, tw_now_s()};
    retrieval_sync_opts o = {0};
    o.progress = on_progress;
    o.progress_ctx = &pr;
    retrieval_sync_stats st;
    tw_status e = retrieval_sync(s.r, s.db, &o, &st);
    if (pr.tty && pr.last > 0) fputc('\n', stderr);
    if (e) {
        rc = cli_fail_status("embed");
    } else {
        printf("embedded %lld chunks, removed %lld deleted ones; the index holds %lld vectors "
               "(%s, model %s)%s\n",
               (long long)st.embedded, (long long)st.removed, (long long)st.total,
               retrieval_index_path(s.r), tw_encoder_id(s.enc), "");
        if (st.truncated)
            printf("%lld chunks were longer than the model's %d tokens and were cut\n",
                   (long long)st.truncated, tw_encoder_max_tokens(s.enc));
    }
    retrieval_session_close(&s);
    return rc;
}
