/*
 * check_db_route.c - which request connection a query goes to
 * (db_route_pick, src/db_pool.c) when its shard has nothing in flight.
 */
#include <check.h>

#include "db_pool.h"
#include "unit.h"

#define GROUP_MAX 4

/* ready, waiting, outstanding */
#define UP(w, o) {true, (w), (o)}
#define DOWN {false, 0, 0}

START_TEST(test_writes_join_the_first_open_group)
{
    /* all idle: the first */
    struct db_route_load idle[] = {UP(0, 0), UP(0, 0), UP(0, 0)};
    ck_assert_int_eq(db_route_pick(idle, 3, true, GROUP_MAX), 0);
    /* the first has a group in flight and one forming: join it, even
     * though the others are idle (one commit for all) */
    struct db_route_load busy[] = {UP(3, 10), UP(0, 0), UP(0, 0)};
    ck_assert_int_eq(db_route_pick(busy, 3, true, GROUP_MAX), 0);
    /* its next group is full: the next connection whose group is open */
    struct db_route_load full[] = {UP(GROUP_MAX, 20), UP(GROUP_MAX, 9), UP(1, 30)};
    ck_assert_int_eq(db_route_pick(full, 3, true, GROUP_MAX), 2);
    /* a connection that is down is skipped */
    struct db_route_load down[] = {DOWN, UP(2, 2), UP(0, 0)};
    ck_assert_int_eq(db_route_pick(down, 3, true, GROUP_MAX), 1);
}
END_TEST

START_TEST(test_writes_spread_when_every_group_is_full)
{
    /* every next group full: the least busy, the first of equals */
    struct db_route_load full[] = {UP(GROUP_MAX, 40), UP(GROUP_MAX, 12), UP(GROUP_MAX, 12)};
    ck_assert_int_eq(db_route_pick(full, 3, true, GROUP_MAX), 1);
}
END_TEST

START_TEST(test_other_queries_go_to_the_least_busy_from_the_last)
{
    /* all idle: the last, away from where the writes gather */
    struct db_route_load idle[] = {UP(0, 0), UP(0, 0), UP(0, 0)};
    ck_assert_int_eq(db_route_pick(idle, 3, false, GROUP_MAX), 2);
    /* the least busy wins over position; a group's room does not matter */
    struct db_route_load busy[] = {UP(0, 1), UP(3, 5), UP(0, 2)};
    ck_assert_int_eq(db_route_pick(busy, 3, false, GROUP_MAX), 0);
    struct db_route_load down[] = {UP(0, 7), UP(0, 7), DOWN};
    ck_assert_int_eq(db_route_pick(down, 3, false, GROUP_MAX), 1);
}
END_TEST

START_TEST(test_nothing_ready)
{
    struct db_route_load none[] = {DOWN, DOWN};
    ck_assert_int_eq(db_route_pick(none, 2, true, GROUP_MAX), -1);
    ck_assert_int_eq(db_route_pick(none, 2, false, GROUP_MAX), -1);
    /* one connection: always it */
    struct db_route_load one[] = {UP(GROUP_MAX, 99)};
    ck_assert_int_eq(db_route_pick(one, 1, true, GROUP_MAX), 0);
    ck_assert_int_eq(db_route_pick(one, 1, false, GROUP_MAX), 0);
}
END_TEST

int main(void)
{
    const struct unit_case cases[] = {
        {"writes_join_the_first_open_group", test_writes_join_the_first_open_group},
        {"writes_spread_when_every_group_is_full", test_writes_spread_when_every_group_is_full},
        {"other_queries_go_to_the_least_busy_from_the_last",
         test_other_queries_go_to_the_least_busy_from_the_last},
        {"nothing_ready", test_nothing_ready},
    };
    return UNIT_RUN("db_route", cases);
}
