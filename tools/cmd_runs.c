/* cmd_runs.c: twin runs ls|show|compare|plot: the tracked training runs of the warehouse
 * (<workspace>/twin.db, pipelines/warehouse.h wh_trun_*).
 *
 *   ls                          one line per run: id, name, kind, status, steps, last loss,
 *                               last eval loss, start time
 *   show RUN                    every field, the config, the loss at the first/best/last step,
 *                               the evaluations
 *   compare RUN RUN...          the runs' fields and config keys side by side, rows that differ
 *                               marked '*', then their final metrics
 *   plot RUN... -o FILE.svg     train (solid) and eval (dashed, dots) loss against step, one
 *                               colour per run, axes with ticks, a legend: SVG written by hand
 * RUN is a run id or a name (the latest run of that name). */
#include "cli.h"
#include "cli_warehouse.h"
#include "json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *out) {
    fprintf(out,
            "usage: twin runs ls\n"
            "       twin runs show RUN\n"
            "       twin runs compare RUN RUN...\n"
            "       twin runs plot RUN... -o FILE.svg\n\n"
            "Training runs tracked in <workspace>/twin.db (twin train records them).\n"
            "RUN is a run id or a run name (the latest run with that name).\n\n"
            "ls        one line per run: id, name, kind, status, steps, last train loss, last\n"
            "          eval loss, start time (UTC)\n"
            "show      a run's fields, configuration, first/best/last loss and evaluations\n"
            "compare   runs side by side: fields and configuration keys, rows that differ\n"
            "          marked '*', then the final metrics of each\n"
            "plot      writes an SVG with each run's train loss (solid) and eval loss (dashed)\n"
            "          against the step\n"
            "  -o FILE.svg   where to write it (required)\n\n"
            "exit status: 0 success, 1 runtime error (no such run, unreadable warehouse, write\n"
            "error), 2 bad usage\n");
}

static const char *dash(const char *s) { return s && *s ? s : "-"; }

static void fmt_loss(double v, char out[32]) {
    if (isnan(v))
        snprintf(out, 32, "-");
    else
        snprintf(out, 32, "%.4f", v);
}

/* ---- ls ------------------------------------------------------------------------------------ */

static int ls_one(void *ctx, const wh_trun *r) {
    int *n = ctx;
    if (!(*n)++)
        printf("%-5s %-20s %-4s %-11s %7s %9s %9s  %s\n", "ID", "NAME", "KIND", "STATUS", "STEPS",
               "LOSS", "EVAL", "STARTED");
    char l[32], e[32], t[32];
    fmt_loss(r->last_loss, l);
    fmt_loss(r->last_eval_loss, e);
    cli_time_iso(r->started_at, t);
    printf("%-5lld %-20.20s %-4s %-11s %7lld %9s %9s  %s\n", (long long)r->id, r->name, r->kind,
           r->status, (long long)r->n_steps, l, e, t);
    return 0;
}

static int runs_ls(wh_db *db) {
    int n = 0;
    if (wh_trun_each(db, ls_one, &n)) return cli_fail_status("runs ls");
    if (!n) printf("no training runs\n");
    return CLI_OK;
}

/* ---- show ---------------------------------------------------------------------------------- */

typedef struct {
    int64_t n, first_step, best_step, last_step;
    double first, best, last;
} loss_summary;

static int sum_step(void *ctx, const wh_trun_step *s) {
    loss_summary *a = ctx;
    if (isnan(s->loss)) return 0;
    if (!a->n++) a->first = s->loss, a->first_step = s->step, a->best = INFINITY;
    if (s->loss < a->best) a->best = s->loss, a->best_step = s->step;
    a->last = s->loss, a->last_step = s->step;
    return 0;
}

static int show_eval(void *ctx, const wh_trun_eval *e) {
    int *n = ctx;
    if (!(*n)++) printf("evaluations:\n  %8s  %-10s %9s  %s\n", "STEP", "SPLIT", "LOSS", "METRICS");
    char l[32];
    fmt_loss(e->loss, l);
    printf("  %8lld  %-10.10s %9s  %s\n", (long long)e->step, e->split, l, e->metrics_json);
    return 0;
}

/* Prints the config object's members one per line ("  key: value"); nested values compactly. */
static void print_value(const tw_json *v, char *out, size_t n);

static int runs_show(wh_db *db, const char *which) {
    int64_t id;
    if (wh_trun_find(db, which, &id)) return cli_fail_status("runs show");
    wh_trun r;
    if (wh_trun_get(db, id, &r)) return cli_fail_status("runs show");
    char t0[32], t1[32];
    cli_time_iso(r.started_at, t0);
    if (r.finished_at > 0)
        cli_time_iso(r.finished_at, t1);
    else
        snprintf(t1, sizeof t1, "-");
    printf("run %lld: %s\n", (long long)r.id, r.name);
    printf("  kind          %s\n  status        %s\n", r.kind, r.status);
    if (*r.error) printf("  error         %s\n", r.error);
    printf("  started       %s\n  finished      %s\n", t0, t1);
    printf("  base model    %s\n  base hash     %s\n", dash(r.base_model), dash(r.base_hash));
    printf("  dataset       %s\n  dataset hash  %s\n", dash(r.dataset), dash(r.dataset_hash));
    printf("  code version  %s\n  host          %s\n", dash(r.code_version), dash(r.host));
    printf("  adapter       %s\n", dash(r.adapter_path));
    tw_json *cfg = tw_json_parse(r.config_json, strlen(r.config_json), "config");
    printf("config:\n");
    if (tw_json_is_object(cfg)) {
        for (const tw_json *m = tw_json_first(cfg); m; m = tw_json_next(m)) {
            char v[256];
            print_value(m, v, sizeof v);
            printf("  %-20s %s\n", tw_json_key(m), v);
        }
    } else {
        printf("  %s\n", r.config_json);
    }
    tw_json_free(cfg);
    loss_summary s = {0};
    tw_status st = wh_trun_each_step(db, id, sum_step, &s);
    if (!st) {
        printf("steps: %lld\n", (long long)r.n_steps);
        if (s.n)
            printf("  loss first %.4f (step %lld), best %.4f (step %lld), last %.4f (step %lld)\n",
                   s.first, (long long)s.first_step, s.best, (long long)s.best_step, s.last,
                   (long long)s.last_step);
        int ne = 0;
        st = wh_trun_each_eval(db, id, show_eval, &ne);
        if (!st && !ne) printf("evaluations: none\n");
    }
    wh_trun_clear(&r);
    return st ? cli_fail_status("runs show") : CLI_OK;
}

/* ---- compare ------------------------------------------------------------------------------- */

static void print_value(const tw_json *v, char *out, size_t n) {
    if (tw_json_is_string(v))
        snprintf(out, n, "%s", tw_json_str(v));
    else if (tw_json_is_number(v))
        snprintf(out, n, "%.9g", tw_json_num(v, 0));
    else if (tw_json_is_bool(v))
        snprintf(out, n, "%s", tw_json_bool(v, 0) ? "true" : "false");
    else if (tw_json_is_null(v))
        snprintf(out, n, "null");
    else if (tw_json_is_array(v)) {
        size_t len = 0;
        out[0] = 0;
        len += (size_t)snprintf(out + len, n - len, "[");
        for (const tw_json *e = tw_json_first(v); e && len < n; e = tw_json_next(e)) {
            char item[64];
            print_value(e, item, sizeof item);
            len += (size_t)snprintf(out + len, n - len, "%s%s", e == tw_json_first(v) ? "" : ",",
                                    item);
        }
        if (len < n) snprintf(out + len, n - len, "]");
    } else {
        snprintf(out, n, "{%zu keys}", tw_json_size(v));
    }
}

#define MAX_CMP 8
#define MAX_KEYS 128

static int runs_compare(wh_db *db, int n, char **which) {
    if (n < 2 || n > MAX_CMP) {
        fprintf(stderr, "twin runs compare: give between 2 and %d runs\n", MAX_CMP);
        return CLI_USAGE;
    }
    wh_trun r[MAX_CMP];
    tw_json *cfg[MAX_CMP] = {0};
    int got = 0, rc = CLI_OK;
    for (int i = 0; i < n; i++) {
        int64_t id;
        if (wh_trun_find(db, which[i], &id) || wh_trun_get(db, id, &r[i])) {
            rc = cli_fail_status("runs compare");
            break;
        }
        got++;
        cfg[i] = tw_json_parse(r[i].config_json, strlen(r[i].config_json), "config");
    }
    if (rc) goto done;
    /* Column width: the longest header or value, at most 24. */
    int w = 12;
    char head[MAX_CMP][48];
    for (int i = 0; i < n; i++) {
        snprintf(head[i], sizeof head[i], "%s (%lld)", r[i].name, (long long)r[i].id);
        int l = (int)strlen(head[i]);
        if (l > w) w = l > 24 ? 24 : l;
    }
    printf("  %-16s", "");
    for (int i = 0; i < n; i++) printf(" %-*.*s", w, w, head[i]);
    printf("\n");
    /* fields */
    struct {
        const char *label;
        size_t off;
    } fields[] = {
        {"kind", offsetof(wh_trun, kind)},           {"status", offsetof(wh_trun, status)},
        {"base_model", offsetof(wh_trun, base_model)}, {"base_hash", offsetof(wh_trun, base_hash)},
        {"dataset", offsetof(wh_trun, dataset)},     {"dataset_hash", offsetof(wh_trun, dataset_hash)},
        {"code_version", offsetof(wh_trun, code_version)}, {"host", offsetof(wh_trun, host)},
    };
    for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
        const char *v[MAX_CMP];
        int differ = 0;
        for (int i = 0; i < n; i++) {
            v[i] = dash(*(char *const *)((const char *)&r[i] + fields[f].off));
            if (i && strcmp(v[i], v[0])) differ = 1;
        }
        printf("%c %-16s", differ ? '*' : ' ', fields[f].label);
        for (int i = 0; i < n; i++) printf(" %-*.*s", w, w, v[i]);
        printf("\n");
    }
    /* config keys: the union, in first-seen order */
    const char *keys[MAX_KEYS];
    int nk = 0;
    for (int i = 0; i < n; i++)
        for (const tw_json *m = tw_json_first(tw_json_is_object(cfg[i]) ? cfg[i] : NULL); m;
             m = tw_json_next(m)) {
            int seen = 0;
            for (int k = 0; k < nk && !seen; k++) seen = !strcmp(keys[k], tw_json_key(m));
            if (!seen && nk < MAX_KEYS) keys[nk++] = tw_json_key(m);
        }
    if (nk) printf("config:\n");
    for (int k = 0; k < nk; k++) {
        char v[MAX_CMP][128];
        int differ = 0;
        for (int i = 0; i < n; i++) {
            const tw_json *x = tw_json_get(cfg[i], keys[k]);
            if (x)
                print_value(x, v[i], sizeof v[i]);
            else
                snprintf(v[i], sizeof v[i], "-");
            if (i && strcmp(v[i], v[0])) differ = 1;
        }
        printf("%c %-16.16s", differ ? '*' : ' ', keys[k]);
        for (int i = 0; i < n; i++) printf(" %-*.*s", w, w, v[i]);
        printf("\n");
    }
    printf("final metrics:\n");
    const char *labels[] = {"steps", "last_step", "train_loss", "eval_loss", "hours"};
    for (int row = 0; row < 5; row++) {
        char v[MAX_CMP][32];
        for (int i = 0; i < n; i++) {
            switch (row) {
            case 0: snprintf(v[i], 32, "%lld", (long long)r[i].n_steps); break;
            case 1: snprintf(v[i], 32, "%lld", (long long)r[i].last_step); break;
            case 2: fmt_loss(r[i].last_loss, v[i]); break;
            case 3: fmt_loss(r[i].last_eval_loss, v[i]); break;
            default:
                if (r[i].finished_at > 0)
                    snprintf(v[i], 32, "%.2f", (r[i].finished_at - r[i].started_at) / 3600.0);
                else
                    snprintf(v[i], 32, "-");
            }
        }
        printf("  %-16s", labels[row]);
        for (int i = 0; i < n; i++) printf(" %-*.*s", w, w, v[i]);
        printf("\n");
    }
done:
    for (int i = 0; i < got; i++) {
        wh_trun_clear(&r[i]);
        tw_json_free(cfg[i]);
    }
    return rc;
}

/* ---- plot ---------------------------------------------------------------------------------- */

typedef struct {
    double *x, *y;
    size_t n, cap;
    int failed;
} series;

static void series_add(series *s, double x, double y) {
    if (s->failed || !isfinite(y)) return;
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        double *nx = tw_realloc(s->x, nc * sizeof *nx);
        if (!nx) {
            s->failed = 1;
            return;
        }
        s->x = nx;
        double *ny = tw_realloc(s->y, nc * sizeof *ny);
        if (!ny) {
            s->failed = 1;
            return;
        }
        s->y = ny;
        s->cap = nc;
    }
    s->x[s->n] = x, s->y[s->n] = y, s->n++;
}

static int plot_step(void *ctx, const wh_trun_step *s) {
    series_add(ctx, (double)s->step, s->loss);
    return 0;
}

/* Evaluations: the first split by name at each step ("eval" in practice). */
typedef struct {
    series *s;
    int64_t last_step;
} eval_ctx;

static int plot_eval(void *ctx, const wh_trun_eval *e) {
    eval_ctx *c = ctx;
    if (e->step == c->last_step) return 0;
    c->last_step = e->step;
    series_add(c->s, (double)e->step, e->loss);
    return 0;
}

/* A "nice" tick spacing (1, 2 or 5 times a power of ten) for about `want` ticks over range. */
static double nice_step(double range, int want) {
    if (!(range > 0)) return 1;
    double raw = range / want, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

static void svg_text_escaped(tw_sb *sb, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': tw_sb_puts(sb, "&lt;"); break;
        case '>': tw_sb_puts(sb, "&gt;"); break;
        case '&': tw_sb_puts(sb, "&amp;"); break;
        case '"': tw_sb_puts(sb, "&quot;"); break;
        default: tw_sb_putc(sb, *s);
        }
    }
}

static const char *const palette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                      "#9467bd", "#8c564b", "#e377c2", "#17becf"};

static int runs_plot(wh_db *db, int n, char **which, const char *out) {
    if (n < 1 || n > MAX_CMP) {
        fprintf(stderr, "twin runs plot: give between 1 and %d runs\n", MAX_CMP);
        return CLI_USAGE;
    }
    series tr[MAX_CMP], ev[MAX_CMP];
    memset(tr, 0, sizeof tr);
    memset(ev, 0, sizeof ev);
    char names[MAX_CMP][80];
    int rc = CLI_OK;
    for (int i = 0; i < n && !rc; i++) {
        int64_t id;
        wh_trun r;
        if (wh_trun_find(db, which[i], &id) || wh_trun_get(db, id, &r)) {
            rc = cli_fail_status("runs plot");
            break;
        }
        snprintf(names[i], sizeof names[i], "%s (%lld)", r.name, (long long)id);
        wh_trun_clear(&r);
        eval_ctx ec = {&ev[i], INT64_MIN};
        if (wh_trun_each_step(db, id, plot_step, &tr[i]) ||
            wh_trun_each_eval(db, id, plot_eval, &ec))
            rc = cli_fail_status("runs plot");
        else if (tr[i].failed || ev[i].failed)
            rc = cli_fail(CLI_ERR, "runs plot", "out of memory");
    }
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int i = 0; i < n && !rc; i++)
        for (int k = 0; k < 2; k++) {
            series *s = k ? &ev[i] : &tr[i];
            for (size_t j = 0; j < s->n; j++) {
                if (s->x[j] < x0) x0 = s->x[j];
                if (s->x[j] > x1) x1 = s->x[j];
                if (s->y[j] < y0) y0 = s->y[j];
                if (s->y[j] > y1) y1 = s->y[j];
            }
        }
    if (!rc && !isfinite(x0)) rc = cli_fail(CLI_ERR, "runs plot", "the runs have no finite losses to plot");
    tw_sb sb;
    tw_sb_init(&sb);
    if (!rc) {
        /* Axes: x from 0 (or the first step) to a tick at or past the last step; y padded to
         * ticks around the losses. */
        if (x0 > 0) x0 = 0;
        if (x1 <= x0) x1 = x0 + 1;
        if (y1 <= y0) y0 -= 0.5, y1 += 0.5;
        double xs = nice_step(x1 - x0, 8), ys = nice_step(y1 - y0, 6);
        x1 = ceil(x1 / xs) * xs;
        y0 = floor(y0 / ys) * ys;
        y1 = ceil(y1 / ys) * ys;
        const double W = 820, H = 520, L = 70, R = 200, T = 40, B = 60;
        const double pw = W - L - R, ph = H - T - B;
#define PX(x) (L + ((x) - x0) / (x1 - x0) * pw)
#define PY(y) (T + (1 - ((y) - y0) / (y1 - y0)) * ph)
        tw_sb_printf(&sb,
                     "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                     "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
                     "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n"
                     "<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
                     "<text x=\"%.1f\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">"
                     "training loss</text>\n",
                     W, H, W, H, L + pw / 2);
        /* grid and ticks */
        tw_sb_puts(&sb, "<g class=\"xticks\" stroke=\"#ddd\">\n");
        for (double x = x0; x <= x1 + xs * 1e-9; x += xs)
            tw_sb_printf(&sb, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", PX(x), T,
                         PX(x), T + ph);
        tw_sb_puts(&sb, "</g>\n<g class=\"yticks\" stroke=\"#ddd\">\n");
        for (double y = y0; y <= y1 + ys * 1e-9; y += ys)
            tw_sb_printf(&sb, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", L, PY(y),
                         L + pw, PY(y));
        tw_sb_puts(&sb, "</g>\n<g class=\"xlabels\" text-anchor=\"middle\">\n");
        for (double x = x0; x <= x1 + xs * 1e-9; x += xs)
            tw_sb_printf(&sb, "<text x=\"%.1f\" y=\"%.1f\">%g</text>\n", PX(x), T + ph + 18,
                         fabs(x) < xs * 1e-9 ? 0.0 : x);
        tw_sb_puts(&sb, "</g>\n<g class=\"ylabels\" text-anchor=\"end\">\n");
        for (double y = y0; y <= y1 + ys * 1e-9; y += ys)
            tw_sb_printf(&sb, "<text x=\"%.1f\" y=\"%.1f\">%g</text>\n", L - 6, PY(y) + 4,
                         fabs(y) < ys * 1e-9 ? 0.0 : y);
        tw_sb_printf(&sb,
                     "</g>\n<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" "
                     "fill=\"none\" stroke=\"black\"/>\n"
                     "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">step</text>\n"
                     "<text x=\"16\" y=\"%.1f\" text-anchor=\"middle\" "
                     "transform=\"rotate(-90 16 %.1f)\">loss</text>\n",
                     L, T, pw, ph, L + pw / 2, H - 16, T + ph / 2, T + ph / 2);
        /* curves and legend */
        for (int i = 0; i < n; i++) {
            const char *c = palette[i % 8];
            if (tr[i].n) {
                tw_sb_printf(&sb, "<polyline class=\"train\" fill=\"none\" stroke=\"%s\" "
                                  "stroke-width=\"1.8\" points=\"",
                             c);
                for (size_t j = 0; j < tr[i].n; j++)
                    tw_sb_printf(&sb, "%s%.1f,%.1f", j ? " " : "", PX(tr[i].x[j]), PY(tr[i].y[j]));
                tw_sb_puts(&sb, "\"/>\n");
            }
            if (ev[i].n) {
                tw_sb_printf(&sb, "<polyline class=\"eval\" fill=\"none\" stroke=\"%s\" "
                                  "stroke-width=\"1.8\" stroke-dasharray=\"6 4\" points=\"",
                             c);
                for (size_t j = 0; j < ev[i].n; j++)
                    tw_sb_printf(&sb, "%s%.1f,%.1f", j ? " " : "", PX(ev[i].x[j]), PY(ev[i].y[j]));
                tw_sb_puts(&sb, "\"/>\n");
                for (size_t j = 0; j < ev[i].n; j++)
                    tw_sb_printf(&sb, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n",
                                 PX(ev[i].x[j]), PY(ev[i].y[j]), c);
            }
            double ly = T + 10 + i * 40.0, lx = L + pw + 16;
            tw_sb_printf(&sb, "<g class=\"legend\">\n<text x=\"%.1f\" y=\"%.1f\">", lx, ly + 4);
            svg_text_escaped(&sb, names[i]);
            tw_sb_printf(&sb,
                         "</text>\n<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" "
                         "stroke=\"%s\" stroke-width=\"1.8\"/>"
                         "<text x=\"%.1f\" y=\"%.1f\">train</text>\n"
                         "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" "
                         "stroke-width=\"1.8\" stroke-dasharray=\"6 4\"/>"
                         "<text x=\"%.1f\" y=\"%.1f\">eval</text>\n</g>\n",
                         lx, ly + 18, lx + 24, ly + 18, c, lx + 28, ly + 22, lx + 70, ly + 18,
                         lx + 94, ly + 18, c, lx + 98, ly + 22);
        }
        tw_sb_puts(&sb, "</svg>\n");
#undef PX
#undef PY
        if (sb.failed)
            rc = cli_fail(CLI_ERR, "runs plot", "out of memory");
        else if (tw_file_write_atomic(out, sb.buf, sb.len))
            rc = cli_fail_status("runs plot");
        else
            fprintf(stderr, "wrote %s (%d run%s)\n", out, n, n == 1 ? "" : "s");
    }
    tw_sb_free(&sb);
    for (int i = 0; i < n; i++) {
        tw_free(tr[i].x), tw_free(tr[i].y), tw_free(ev[i].x), tw_free(ev[i].y);
    }
    return rc;
}

int cmd_runs(int argc, char **argv) {
    if (argc < 2 || cli_is_help(argv[1])) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    const char *sub = argv[1];
    const char *out = NULL;
    char *pos[MAX_CMP + 1];
    int np = 0;
    for (int i = 2; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        }
        if (!strcmp(sub, "plot") && cli_opt(argc, argv, &i, "-o", &out)) {
            if (!out) return cli_fail(CLI_USAGE, "runs", "-o needs a value (FILE.svg)");
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1])
            return cli_fail(CLI_USAGE, "runs", "unknown option '%s' (see twin runs --help)",
                            argv[i]);
        if (np > MAX_CMP)
            return cli_fail(CLI_USAGE, "runs", "too many runs (at most %d)", MAX_CMP);
        pos[np++] = argv[i];
    }
    int want_min = 0, want_max = 0;
    if (!strcmp(sub, "ls"))
        want_min = 0, want_max = 0;
    else if (!strcmp(sub, "show"))
        want_min = 1, want_max = 1;
    else if (!strcmp(sub, "compare"))
        want_min = 2, want_max = MAX_CMP;
    else if (!strcmp(sub, "plot"))
        want_min = 1, want_max = MAX_CMP;
    else
        return cli_fail(CLI_USAGE, "runs", "unknown subcommand '%s' (ls, show, compare, plot)",
                        sub);
    if (np < want_min || np > want_max)
        return cli_fail(CLI_USAGE, "runs", "%s takes %s", sub,
                        !strcmp(sub, "ls")     ? "no argument"
                        : !strcmp(sub, "show") ? "one RUN"
                        : !strcmp(sub, "plot") ? "1 to 8 RUNs and -o FILE.svg"
                                               : "2 to 8 RUNs");
    if (!strcmp(sub, "plot") && !out)
        return cli_fail(CLI_USAGE, "runs", "plot needs -o FILE.svg");
    wh_db *db;
    int rc = cli_warehouse_open("runs", &db);
    if (rc) return rc;
    if (!strcmp(sub, "ls"))
        rc = runs_ls(db);
    else if (!strcmp(sub, "show"))
        rc = runs_show(db, pos[0]);
    else if (!strcmp(sub, "compare"))
        rc = runs_compare(db, np, pos);
    else
        rc = runs_plot(db, np, pos, out);
    wh_close(db);
    return rc;
}
