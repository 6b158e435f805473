// anchor_hnswlib.cpp: the hnswlib side of `twin bench hnsw` (tools/cmd_bench_hnsw.c runs it on
// the same files). hnswlib is third-party C++ (Debian's libhnswlib-dev); twin itself stays C.
//
//   anchor_hnswlib --base B.fvecs --query Q.fvecs --gt G.ivecs [--metric ip|cosine|l2]
//                  [--M 16] [--ef-construction 200] [--k 10] [--ef 16,32,64] [--threads N] [--serve]
//
// Builds with `threads` threads (addPoint from a shared counter, as hnswlib's python binding
// does), then for each ef searches the queries one at a time on one thread (searchKnn) and
// prints:
//   hnswlib build_s=S cpu_s=C                       C: process CPU seconds (all build threads)
//   hnswlib ef=E recall@10=R qps=Q cpu_qps=P        P: queries per CPU second of the thread
//   hnswlib bytes_per_vector=B
// --serve: loads the files, prints "hnswlib ready", then answers commands read from stdin, one
// per line, so that twin can interleave its own runs with these on a shared machine:
//   build        (re)builds the index from scratch, prints the build line and bytes_per_vector
//   search E     one pass over the queries at ef E, prints the ef line
//   quit         (or end of input) exits
// cosine: the vectors and queries are normalised and searched with the inner-product space.
// Bytes per vector count hnswlib's allocations: the level-0 blocks, the upper link lists, the
// per-element pointer, lock and level, and the label map (its nodes and buckets).
#include <hnswlib/hnswlib.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <time.h>
#include <unordered_set>
#include <vector>

static std::vector<float> read_vecs(const char *path, int &dim, size_t &n) {
    FILE *fp = std::fopen(path, "rb");
    if (!fp) {
        std::fprintf(stderr, "anchor_hnswlib: %s: cannot open\n", path);
        std::exit(1);
    }
    std::vector<float> out;
    dim = 0;
    n = 0;
    int d;
    while (std::fread(&d, 4, 1, fp) == 1) {
        if (dim == 0) dim = d;
        if (d != dim || d <= 0) {
            std::fprintf(stderr, "anchor_hnswlib: %s: vector %zu has dimension %d\n", path, n, d);
            std::exit(1);
        }
        size_t at = out.size();
        out.resize(at + (size_t)d);
        if (std::fread(out.data() + at, 4, (size_t)d, fp) != (size_t)d) {
            std::fprintf(stderr, "anchor_hnswlib: %s: truncated\n", path);
            std::exit(1);
        }
        n++;
    }
    std::fclose(fp);
    return out;
}

static double now_s() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

/* CPU seconds of the whole process (clk = CLOCK_PROCESS_CPUTIME_ID) or of this thread. */
static double cpu_s(clockid_t clk) {
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void normalise(std::vector<float> &v, int dim) {
    for (size_t i = 0; i + (size_t)dim <= v.size(); i += (size_t)dim) {
        double s = 0;
        for (int j = 0; j < dim; j++) s += (double)v[i + j] * v[i + j];
        float inv = s > 0 ? (float)(1.0 / std::sqrt(s)) : 0.f;
        for (int j = 0; j < dim; j++) v[i + j] *= inv;
    }
}

int main(int argc, char **argv) {
    const char *base_p = nullptr, *query_p = nullptr, *gt_p = nullptr;
    std::string metric = "cosine", efs = "16,32,64";
    int M = 16, efc = 200, k = 10, threads = 1;
    bool serve = false;
    for (int i = 1; i < argc; i += 2) {
        std::string a = argv[i];
        if (a == "--serve") {
            serve = true;
            i--;
            continue;
        }
        if (i + 1 >= argc) {
            std::fprintf(stderr, "anchor_hnswlib: %s needs a value\n", a.c_str());
            return 2;
        }
        const char *v = argv[i + 1];
        if (a == "--base") base_p = v;
        else if (a == "--query") query_p = v;
        else if (a == "--gt") gt_p = v;
        else if (a == "--metric") metric = v;
        else if (a == "--M") M = std::atoi(v);
        else if (a == "--ef-construction") efc = std::atoi(v);
        else if (a == "--k") k = std::atoi(v);
        else if (a == "--ef") efs = v;
        else if (a == "--threads") threads = std::atoi(v);
        else {
            std::fprintf(stderr, "anchor_hnswlib: unknown argument '%s'\n", a.c_str());
            return 2;
        }
    }
    if (!base_p || !query_p || !gt_p || k < 1 || M < 2 || threads < 1) {
        std::fprintf(stderr, "usage: anchor_hnswlib --base B.fvecs --query Q.fvecs --gt G.ivecs [--metric ip|cosine|l2] "
                             "[--M 16] [--ef-construction 200] [--k 10] [--ef 16,32,64] [--threads N] [--serve]\n");
        return 2;
    }
    int dim, qdim, gdim;
    size_t n, nq, ng;
    std::vector<float> base = read_vecs(base_p, dim, n), qs = read_vecs(query_p, qdim, nq);
    std::vector<float> gtf = read_vecs(gt_p, gdim, ng);
    if (qdim != dim || ng != nq || gdim < k) {
        std::fprintf(stderr, "anchor_hnswlib: dimensions disagree (base %d, query %d, gt %d x %zu)\n", dim, qdim, gdim, ng);
        return 1;
    }
    std::vector<int> gt(gtf.size());
    std::memcpy(gt.data(), gtf.data(), gtf.size() * 4);
    hnswlib::SpaceInterface<float> *space;
    if (metric == "l2") space = new hnswlib::L2Space((size_t)dim);
    else space = new hnswlib::InnerProductSpace((size_t)dim);
    if (metric == "cosine") {
        normalise(base, dim);
        normalise(qs, dim);
    }
    hnswlib::HierarchicalNSW<float> *ix = nullptr;
    auto build = [&]() {
        delete ix;
        ix = new hnswlib::HierarchicalNSW<float>(space, n, (size_t)M, (size_t)efc);
        double t0 = now_s(), c0 = cpu_s(CLOCK_PROCESS_CPUTIME_ID);
        std::atomic<size_t> next(0);
        auto work = [&]() {
            for (size_t i; (i = next.fetch_add(1)) < n;) ix->addPoint(base.data() + i * (size_t)dim, (hnswlib::labeltype)i);
        };
        std::vector<std::thread> th;
        for (int t = 1; t < threads; t++) th.emplace_back(work);
        work();
        for (auto &t : th) t.join();
        double wall = now_s() - t0, cpu = cpu_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
        std::printf("hnswlib build_s=%.3f cpu_s=%.3f\n", wall, cpu);
        size_t bytes = ix->max_elements_ * (ix->size_data_per_element_ + sizeof(void *) + sizeof(std::mutex) + sizeof(int));
        for (size_t i = 0; i < ix->cur_element_count; i++)
            bytes += (size_t)ix->element_levels_[i] * ix->size_links_per_element_;
        bytes += ix->label_lookup_.bucket_count() * sizeof(void *) +
                 ix->label_lookup_.size() * (sizeof(std::pair<hnswlib::labeltype, hnswlib::tableint>) + sizeof(void *));
        bytes += ix->link_list_update_locks_.size() * sizeof(std::mutex);
        std::printf("hnswlib bytes_per_vector=%.1f\n", (double)bytes / (double)n);
        std::fflush(stdout);
    };
    std::vector<std::vector<hnswlib::labeltype>> found(nq);
    auto search = [&](int ef) {
        ix->setEf((size_t)(ef > k ? ef : k));
        size_t hit = 0;
        double t1 = now_s(), c1 = cpu_s(CLOCK_THREAD_CPUTIME_ID);
        for (size_t q = 0; q < nq; q++) {
            auto res = ix->searchKnn(qs.data() + q * (size_t)dim, (size_t)k);
            found[q].clear();
            while (!res.empty()) {
                found[q].push_back(res.top().second);
                res.pop();
            }
        }
        double dt = now_s() - t1, dc = cpu_s(CLOCK_THREAD_CPUTIME_ID) - c1;
        for (size_t q = 0; q < nq; q++) {
            std::unordered_set<int> truth(gt.begin() + (long)(q * (size_t)gdim), gt.begin() + (long)(q * (size_t)gdim + (size_t)k));
            for (auto l : found[q]) hit += truth.count((int)l);
        }
        std::printf("hnswlib ef=%d recall@%d=%.4f qps=%.1f cpu_qps=%.1f\n", ef, k, (double)hit / (double)(nq * (size_t)k),
                    (double)nq / dt, dc > 0 ? (double)nq / dc : 0.0);
        std::fflush(stdout);
    };
    if (serve) {
        std::printf("hnswlib ready\n");
        std::fflush(stdout);
        char line[256];
        while (std::fgets(line, sizeof line, stdin)) {
            int ef;
            if (std::strncmp(line, "build", 5) == 0) {
                build();
            } else if (std::sscanf(line, "search %d", &ef) == 1 && ef >= 1) {
                if (!ix) {
                    std::fprintf(stderr, "anchor_hnswlib: search before build\n");
                    return 1;
                }
                search(ef);
            } else if (std::strncmp(line, "quit", 4) == 0) {
                break;
            } else {
                std::fprintf(stderr, "anchor_hnswlib: unknown command '%s'\n", line);
                return 2;
            }
        }
    } else {
        build();
        size_t start = 0;
        for (size_t pos = 0; pos <= efs.size(); pos++) {
            if (pos < efs.size() && efs[pos] != ',') continue;
            int ef = std::atoi(efs.substr(start, pos - start).c_str());
            start = pos + 1;
            if (ef >= 1) search(ef);
        }
    }
    delete ix;
    delete space;
    return 0;
}
