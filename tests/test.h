/* test.h: the tiny harness every C test uses. A failed check prints the file, line, the
 * expression and the values, and makes the test exit 1; TEST_SKIP exits 77 (ctest SKIP). */
#ifndef TWIN_TEST_H
#define TWIN_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_failures;

#define CHECK(cond)                                                                           \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);         \
            test_failures++;                                                                  \
        }                                                                                     \
    } while (0)

#define CHECK_EQ_INT(a, b)                                                                    \
    do {                                                                                      \
        long long _a = (long long)(a), _b = (long long)(b);                                   \
        if (_a != _b) {                                                                       \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, \
                    #b, _a, _b);                                                              \
            test_failures++;                                                                  \
        }                                                                                     \
    } while (0)

#define CHECK_EQ_STR(a, b)                                                                    \
    do {                                                                                      \
        const char *_a = (a), *_b = (b);                                                      \
        if (!_a || !_b || strcmp(_a, _b) != 0) {                                              \
            fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__, \
                    #a, #b, _a ? _a : "(null)", _b ? _b : "(null)");                          \
            test_failures++;                                                                  \
        }                                                                                     \
    } while (0)

/* |a - b| <= tol: tol must be justified where it is used. */
#define CHECK_NEAR(a, b, tol)                                                                 \
    do {                                                                                      \
        double _a = (double)(a), _b = (double)(b);                                            \
        if (!(fabs(_a - _b) <= (tol))) {                                                      \
            fprintf(stderr, "%s:%d: %s ~ %s failed: %.9g vs %.9g (tol %g)\n", __FILE__,       \
                    __LINE__, #a, #b, _a, _b, (double)(tol));                                 \
            test_failures++;                                                                  \
        }                                                                                     \
    } while (0)

#define TEST_SKIP(...)                                                                        \
    do {                                                                                      \
        fprintf(stderr, "SKIP: " __VA_ARGS__);                                                \
        fputc('\n', stderr);                                                                  \
        exit(77);                                                                             \
    } while (0)

/* Runs one named test function and reports it. */
#define RUN(fn)                                                                               \
    do {                                                                                      \
        int _before = test_failures;                                                          \
        fn();                                                                                 \
        fprintf(stderr, "%s %s\n", test_failures == _before ? "ok  " : "FAIL", #fn);          \
    } while (0)

#define TEST_DONE() return test_failures ? 1 : 0

/* Paths from the ctest environment (tests/tests.cmake); NULL when unset. */
static inline const char *test_env(const char *name) {
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

#endif
