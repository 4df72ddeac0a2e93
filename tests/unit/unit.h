/*
 * unit.h - the main() of every unit test: one Check test case per named
 * test (Check's fork mode turns a crash into a failed test), run, and the
 * exit status.
 */
#ifndef PUBSUBD_TESTS_UNIT_H
#define PUBSUBD_TESTS_UNIT_H

#include <check.h>
#include <stdlib.h>

struct unit_case {
    const char *name;
    const TTest *test;
};

static inline int unit_run(const char *suite, const struct unit_case *cases, size_t n)
{
    Suite *s = suite_create(suite);
    for (size_t i = 0; i < n; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_test(tc, cases[i].test);
        suite_add_tcase(s, tc);
    }
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

/* cases: an array of struct unit_case. */
#define UNIT_RUN(suite, cases) unit_run((suite), (cases), sizeof(cases) / sizeof((cases)[0]))

#endif
