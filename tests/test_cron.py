"""runtime.cron: parsing schedules and computing their fire times (plain Python, no database)."""

import itertools
from datetime import UTC, datetime, timedelta, timezone

import pytest

from runtime.cron import Cron, CronError, parse


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def fields(cron: Cron) -> tuple:
    return (cron.second, cron.minute, cron.hour, cron.day_of_month, cron.month, cron.day_of_week)


# Field syntax


def test_every_five_minutes_fires_on_the_multiples_of_five():
    times = parse("*/5 * * * *").fire_times(utc(2026, 1, 1, 10, 2), 3)
    assert times == [utc(2026, 1, 1, 10, 5), utc(2026, 1, 1, 10, 10), utc(2026, 1, 1, 10, 15)]


def test_a_five_field_expression_fires_at_second_zero():
    cron = parse("30 9 * * *")
    assert cron.second == {0}
    assert cron.next_after(utc(2026, 1, 1, 10, 0)) == utc(2026, 1, 2, 9, 30, 0)


def test_a_six_field_expression_puts_seconds_first():
    cron = parse("15 30 9 * * *")
    assert (cron.second, cron.minute, cron.hour) == ({15}, {30}, {9})
    assert cron.next_after(utc(2026, 1, 1, 9, 30, 15)) == utc(2026, 1, 2, 9, 30, 15)


def test_a_seconds_step_fires_every_ten_seconds():
    times = parse("*/10 * * * * *").fire_times(utc(2026, 1, 1, 10, 0, 55), 3)
    assert times == [
        utc(2026, 1, 1, 10, 1, 0),
        utc(2026, 1, 1, 10, 1, 10),
        utc(2026, 1, 1, 10, 1, 20),
    ]


@pytest.mark.parametrize(
    ("minute_field", "expected"),
    [
        ("7", {7}),
        ("0-4", {0, 1, 2, 3, 4}),
        ("10-20/5", {10, 15, 20}),
        ("5/15", {5, 20, 35, 50}),
        ("*/15", {0, 15, 30, 45}),
        ("1,3,5", {1, 3, 5}),
        ("1-3,7,10-14/2", {1, 2, 3, 7, 10, 12, 14}),
    ],
)
def test_numbers_ranges_steps_and_lists_expand_to_their_values(minute_field, expected):
    assert parse(f"{minute_field} * * * *").minute == expected


def test_month_and_day_names_are_accepted_in_any_case():
    cron = parse("0 0 * jan,Mar-may mon-FRI")
    assert cron.month == {1, 3, 4, 5}
    assert cron.day_of_week == {1, 2, 3, 4, 5}


def test_day_of_week_seven_and_zero_both_mean_sunday():
    assert parse("0 0 * * 7").day_of_week == parse("0 0 * * 0").day_of_week == {0}
    assert parse("0 0 * * 5-7").day_of_week == {5, 6, 0}
    # 2026-01-03 is a Saturday.
    assert parse("0 0 * * 7").next_after(utc(2026, 1, 3, 12)) == utc(2026, 1, 4)


def test_a_day_of_week_step_does_not_count_sunday_twice():
    assert parse("0 0 * * */3").day_of_week == {0, 3, 6}
    assert parse("0 0 * * *").day_of_week == {0, 1, 2, 3, 4, 5, 6}


def test_leading_and_trailing_whitespace_is_ignored_and_the_expression_kept_as_given():
    cron = parse("  */5   *  * * *\n")
    assert cron.expression == "  */5   *  * * *\n"
    assert fields(cron) == fields(parse("*/5 * * * *"))


# Macros and interval forms


@pytest.mark.parametrize(
    ("macro", "equivalent"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
        ("@DAILY", "0 0 * * *"),
    ],
)
def test_macros_expand_to_their_standard_schedules(macro, equivalent):
    assert fields(parse(macro)) == fields(parse(equivalent))
    assert parse(macro).days_either == parse(equivalent).days_either


@pytest.mark.parametrize(
    ("macro", "expected"),
    [
        ("@hourly", utc(2026, 1, 1, 11)),
        ("@daily", utc(2026, 1, 2)),
        ("@weekly", utc(2026, 1, 4)),  # the first Sunday
        ("@monthly", utc(2026, 2, 1)),
        ("@yearly", utc(2027, 1, 1)),
    ],
)
def test_macros_fire_at_the_start_of_their_period(macro, expected):
    assert parse(macro).next_after(utc(2026, 1, 1, 10, 30)) == expected


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("every second", utc(2026, 1, 1, 10, 0, 3), utc(2026, 1, 1, 10, 0, 4)),
        ("every 10 seconds", utc(2026, 1, 1, 10, 0, 3), utc(2026, 1, 1, 10, 0, 10)),
        ("every minute", utc(2026, 1, 1, 10, 0, 3), utc(2026, 1, 1, 10, 1)),
        ("every 1 minute", utc(2026, 1, 1, 10, 0, 3), utc(2026, 1, 1, 10, 1)),
        ("every 10 minutes", utc(2026, 1, 1, 10, 7), utc(2026, 1, 1, 10, 10)),
        ("every hour", utc(2026, 1, 1, 10, 7), utc(2026, 1, 1, 11)),
        ("every 2 hours", utc(2026, 1, 1, 9), utc(2026, 1, 1, 10)),
        ("every day", utc(2026, 1, 1, 10, 7), utc(2026, 1, 2)),
        # 2026-01-01 is day 20454 since the epoch, a multiple of 3.
        ("every 3 days", utc(2026, 1, 1), utc(2026, 1, 4)),
    ],
)
def test_every_n_units_fires_on_multiples_of_the_interval_since_the_epoch(
    expression, after, expected
):
    assert parse(expression).next_after(after) == expected


@pytest.mark.parametrize(
    ("expression", "seconds"), [("every 7 minutes", 420), ("every 90 seconds", 90)]
)
def test_every_n_accepts_intervals_that_do_not_divide_the_unit(expression, seconds):
    times = parse(expression).fire_times(utc(2026, 1, 1, 10, 55), 20)
    assert all((t - utc(1970, 1, 1)).total_seconds() % seconds == 0 for t in times)
    assert all(b - a == timedelta(seconds=seconds) for a, b in itertools.pairwise(times))


def test_every_n_is_case_insensitive_and_tolerates_extra_spaces():
    cron = parse("  Every   5 MINUTES ")
    assert cron.interval == 300
    assert cron.next_after(utc(2026, 1, 1, 10, 1)) == utc(2026, 1, 1, 10, 5)


# Day-of-month / day-of-week semantics


def test_day_of_month_and_day_of_week_match_either_when_both_are_restricted():
    # The 13th or any Friday; 2026-01-02 and 01-09 are Fridays, 01-13 is a Tuesday.
    times = parse("0 0 13 * 5").fire_times(utc(2026, 1, 1), 4)
    assert times == [utc(2026, 1, 2), utc(2026, 1, 9), utc(2026, 1, 13), utc(2026, 1, 16)]


def test_a_restricted_day_of_week_alone_picks_only_those_weekdays():
    assert parse("0 0 * * 1").fire_times(utc(2026, 1, 1), 2) == [utc(2026, 1, 5), utc(2026, 1, 12)]


def test_a_restricted_day_of_month_alone_picks_only_those_days():
    assert parse("0 0 13 * *").fire_times(utc(2026, 1, 1), 2) == [
        utc(2026, 1, 13),
        utc(2026, 2, 13),
    ]


def test_a_star_step_day_of_month_combines_with_day_of_week_like_vixie_cron():
    # `*/2` starts with `*`, so Vixie cron requires both: odd days that are Mondays.
    times = parse("0 0 */2 * MON").fire_times(utc(2026, 1, 1), 5)
    assert all(t.day % 2 == 1 and t.weekday() == 0 for t in times)
    assert times[0] == utc(2026, 1, 5)


# Calendar edges


def test_the_last_minute_of_the_year_rolls_over_to_january_first():
    assert parse("* * * * *").next_after(utc(2026, 12, 31, 23, 59)) == utc(2027, 1, 1, 0, 0)
    assert parse("0 0 1 1 *").next_after(utc(2026, 6, 1)) == utc(2027, 1, 1)
    assert parse("59 23 31 12 *").next_after(utc(2026, 12, 31, 23, 59)) == utc(2027, 12, 31, 23, 59)


def test_the_31st_skips_months_that_are_shorter():
    assert parse("0 0 31 * *").fire_times(utc(2026, 1, 31), 2) == [
        utc(2026, 3, 31),
        utc(2026, 5, 31),
    ]


def test_february_29th_fires_only_in_leap_years():
    times = parse("0 0 29 2 *").fire_times(utc(2026, 3, 1), 2)
    assert times == [utc(2028, 2, 29), utc(2032, 2, 29)]


def test_century_years_are_leap_years_only_when_divisible_by_400():
    assert parse("0 0 29 2 *").next_after(utc(2097, 3, 1)) == utc(2104, 2, 29)
    assert parse("0 0 29 2 *").next_after(utc(1997, 3, 1)) == utc(2000, 2, 29)


def test_a_rare_date_on_a_given_weekday_is_found_decades_ahead():
    # February 29th that is also a Sunday (`*/7` is only Sunday and starts with `*`, so AND).
    times = parse("0 0 29 2 */7").fire_times(utc(2026, 1, 1), 2)
    assert all(t.month == 2 and t.day == 29 and t.weekday() == 6 for t in times)
    assert times[0] == utc(2032, 2, 29)


# next_after, fire_times, between


def test_next_after_a_time_exactly_on_a_tick_returns_the_next_tick():
    assert parse("*/5 * * * *").next_after(utc(2026, 1, 1, 10, 5)) == utc(2026, 1, 1, 10, 10)
    assert parse("0 9 * * *").next_after(utc(2026, 1, 1, 9)) == utc(2026, 1, 2, 9)
    assert parse("every 10 minutes").next_after(utc(2026, 1, 1, 10, 10)) == utc(2026, 1, 1, 10, 20)


def test_next_after_a_fraction_of_a_second_past_a_tick_returns_the_next_tick():
    after = utc(2026, 1, 1, 10, 5) + timedelta(microseconds=1)
    assert parse("*/5 * * * *").next_after(after) == utc(2026, 1, 1, 10, 10)
    assert parse("every 5 minutes").next_after(after) == utc(2026, 1, 1, 10, 10)


def test_next_after_converts_other_timezones_to_utc():
    paris = timezone(timedelta(hours=1))
    result = parse("0 * * * *").next_after(datetime(2026, 1, 1, 10, 30, tzinfo=paris))
    assert result == utc(2026, 1, 1, 10) and result.tzinfo == UTC


def test_fire_times_returns_the_next_count_ticks_oldest_first():
    times = parse("0 */6 * * *").fire_times(utc(2026, 1, 1, 1), 4)
    assert times == [utc(2026, 1, 1, 6), utc(2026, 1, 1, 12), utc(2026, 1, 1, 18), utc(2026, 1, 2)]
    assert parse("* * * * *").fire_times(utc(2026, 1, 1), 0) == []


def test_between_excludes_the_start_and_includes_the_end():
    times = parse("*/15 * * * *").between(utc(2026, 1, 1, 10), utc(2026, 1, 1, 11), limit=10)
    assert times == [utc(2026, 1, 1, 10, minute) for minute in (15, 30, 45)] + [utc(2026, 1, 1, 11)]


def test_between_stops_at_the_limit_keeping_the_newest_oldest_first():
    times = parse("* * * * *").between(utc(2026, 1, 1), utc(2026, 1, 2), limit=3)
    assert times == [utc(2026, 1, 1, 23, 58), utc(2026, 1, 1, 23, 59), utc(2026, 1, 2)]


@pytest.mark.parametrize("expression", ["* * * * * *", "every second"])
def test_between_over_a_week_of_seconds_keeps_the_newest_tick(expression):
    times = parse(expression).between(utc(2026, 1, 1), utc(2026, 1, 8, 12, 0, 5, 250), limit=1)
    assert times == [utc(2026, 1, 8, 12, 0, 5)]


@pytest.mark.parametrize(
    "expression",
    ["*/7 3-5 * * *", "0 9 * * MON-FRI", "0 0 13 * 5", "5,20 9-17 * 1-6 *", "*/13 */7 4 * * *"],
)
def test_between_walking_back_finds_the_ticks_next_after_finds_walking_forward(expression):
    cron = parse(expression)
    start, end = utc(2026, 1, 30, 7, 3, 11), utc(2026, 8, 2, 1, 2, 3)
    forward = list(itertools.takewhile(lambda t: t <= end, _walk(cron, start)))

    assert cron.between(start, end, limit=len(forward) + 1) == forward
    assert cron.between(start, end, limit=40) == forward[-40:]


def _walk(cron: Cron, t: datetime):
    while True:
        t = cron.next_after(t)
        yield t


@pytest.mark.parametrize(
    ("expression", "when", "tick"),
    [
        ("*/5 * * * *", utc(2026, 1, 1, 10, 7, 30), utc(2026, 1, 1, 10, 5)),
        ("*/5 * * * *", utc(2026, 1, 1, 10, 5), utc(2026, 1, 1, 10, 5)),  # at: included
        ("0 9 * * MON-FRI", utc(2026, 11, 30, 8, 59), utc(2026, 11, 27, 9)),  # Monday → Friday
        ("30 2 * * *", utc(2026, 3, 1, 1), utc(2026, 2, 28, 2, 30)),  # back across a month
        ("0 0 1 1 *", utc(2026, 6, 1), utc(2026, 1, 1)),
        ("59 23 31 12 *", utc(2026, 6, 1), utc(2025, 12, 31, 23, 59)),  # back across a year
        ("0 0 29 2 *", utc(2031, 1, 1), utc(2028, 2, 29)),  # the last leap day
        ("15 30 9 * * *", utc(2026, 1, 1, 9, 30, 14, 999999), utc(2025, 12, 31, 9, 30, 15)),
        ("0 0 13 * 5", utc(2026, 3, 12), utc(2026, 3, 6)),  # Vixie: the 13th or a Friday
        ("every 7 minutes", utc(2026, 1, 1, 0, 6, 59), utc(2026, 1, 1)),  # 7 min since 1970
    ],
)
def test_at_or_before_returns_the_newest_tick_not_after_a_time(expression, when, tick):
    assert parse(expression).at_or_before(when) == tick


def test_between_is_empty_for_an_empty_window_or_a_zero_limit():
    cron = parse("* * * * *")
    assert cron.between(utc(2026, 1, 1, 10), utc(2026, 1, 1, 10), limit=5) == []
    assert cron.between(utc(2026, 1, 1, 11), utc(2026, 1, 1, 10), limit=5) == []
    assert cron.between(utc(2026, 1, 1, 10, 0, 1), utc(2026, 1, 1, 10, 0, 59), limit=5) == []
    assert cron.between(utc(2026, 1, 1), utc(2026, 1, 2), limit=0) == []


@pytest.mark.parametrize(
    "call",
    [
        lambda cron: cron.next_after(datetime(2026, 1, 1)),
        lambda cron: cron.fire_times(datetime(2026, 1, 1), 1),
        lambda cron: cron.between(datetime(2026, 1, 1), utc(2026, 1, 2), 1),
        lambda cron: cron.between(utc(2026, 1, 1), datetime(2026, 1, 2), 1),
        lambda cron: cron.at_or_before(datetime(2026, 1, 1)),
    ],
)
@pytest.mark.parametrize("expression", ["* * * * *", "every 5 minutes"])
def test_naive_datetimes_are_rejected(call, expression):
    with pytest.raises(ValueError, match="naive"):
        call(parse(expression))


# describe()


@pytest.mark.parametrize(
    ("expression", "description"),
    [
        ("* * * * *", "every minute"),
        ("*/5 * * * *", "every 5 minutes"),
        ("*/10 * * * * *", "every 10 seconds"),
        ("* * * * * *", "every second"),
        ("0 * * * *", "every hour at minute 0"),
        ("0 */2 * * *", "every 2 hours at minute 0"),
        ("0 0 * * *", "every day at 00:00"),
        ("15 30 9 * * *", "every day at 09:30:15"),
        ("30 9 * * 1-5", "at 09:30 on Monday to Friday"),
        ("0 9 * * SAT,SUN", "at 09:00 on Saturday and Sunday"),
        ("0 9 * * MON,WED,FRI", "at 09:00 on Monday, Wednesday and Friday"),
        ("0 0 1,15 * *", "at 00:00 on days 1 and 15 of every month"),
        ("@hourly", "every hour at minute 0"),
        ("@daily", "every day at 00:00"),
        ("@weekly", "at 00:00 on Sunday"),
        ("@monthly", "at 00:00 on day 1 of every month"),
        ("@yearly", "at 00:00 on 1 January"),
        ("every second", "every second"),
        ("every 10 seconds", "every 10 seconds"),
        ("every 1 minute", "every minute"),
        ("every 7 minutes", "every 7 minutes"),
        ("every 2 hours", "every 2 hours"),
        ("every day", "every day"),
        ("every 3 days", "every 3 days"),
    ],
)
def test_describe_renders_the_common_shapes_in_words(expression, description):
    assert parse(expression).describe() == description


@pytest.mark.parametrize("expression", ["*/7 * * * *", "0 0 13 * 5", "5,20 9-17 * 1-6 *"])
def test_describe_falls_back_to_the_expression_for_complex_schedules(expression):
    assert parse(f" {expression} ").describe() == f"cron: {expression}"


# Errors


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("", "expression is empty"),
        ("   ", "expression is empty"),
        ("* * * *", "expected 5 or 6 fields, got 4"),
        ("* * * * * * *", "expected 5 or 6 fields, got 7"),
        # cronsim says which field is bad, not why: the message names the field and its text.
        ("60 * * * *", "invalid minute field '60'"),
        ("60 * * * * *", "invalid second field '60'"),
        ("* 24 * * *", "invalid hour field '24'"),
        ("* * 0 * *", "invalid day-of-month field '0'"),
        ("* * 32 * *", "invalid day-of-month field '32'"),
        ("* * * 13 *", "invalid month field '13'"),
        ("* * * 0 *", "invalid month field '0'"),
        ("* * * * 8", "invalid day-of-week field '8'"),
        ("5-3 * * * *", "invalid minute field '5-3'"),
        ("* * * * FRI-MON", "invalid day-of-week field 'FRI-MON'"),
        ("*/0 * * * *", "invalid minute field '*/0'"),
        ("*/ * * * *", "invalid minute field '*/'"),
        ("1/2/3 * * * *", "invalid minute field '1/2/3'"),
        ("* * * FOO *", "invalid month field 'FOO'"),
        ("* * * JAN-FOO *", "invalid month field 'JAN-FOO'"),
        ("* * * * FUNDAY", "invalid day-of-week field 'FUNDAY'"),
        ("MON * * * *", "invalid minute field 'MON'"),
        ("1-2-3 * * * *", "invalid minute field '1-2-3'"),
        ("-1 * * * *", "invalid minute field '-1'"),
        ("1,,2 * * * *", "invalid minute field '1,,2'"),
        ("1, * * * *", "invalid minute field '1,'"),
        ("0 0 * * * 8", "invalid day-of-week field '8' (each value 0-7 or SUN-SAT"),
        ("@fortnightly", "unknown macro"),
        ("every 0 minutes", "interval must be a positive integer, got '0'"),
        ("every -5 minutes", "interval must be a positive integer, got '-5'"),
        ("every 1.5 hours", "interval must be a positive integer, got '1.5'"),
        ("every minutes", "say 'every minute' or 'every N minutes'"),
        ("every 2 weeks", "expected 'every N seconds|minutes|hours|days'"),
        ("every", "expected 'every N seconds|minutes|hours|days'"),
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4,6,9,11 *", "never fires"),
        ("0 0 30,31 FEB *", "never fires"),
    ],
)
def test_malformed_expressions_raise_cron_error_naming_the_expression_and_the_problem(
    expression, problem
):
    with pytest.raises(CronError) as raised:
        parse(expression)
    assert str(raised.value).startswith(f"{expression!r}: ")
    assert problem in str(raised.value)


def test_cron_error_is_a_value_error():
    assert issubclass(CronError, ValueError)


def test_an_impossible_date_with_a_weekday_still_fires_on_that_weekday():
    # Both day fields restricted means either matches, so Feb 30 "or Monday" is not impossible.
    assert parse("0 0 30 2 MON").next_after(utc(2026, 1, 1)) == utc(2026, 2, 2)


def test_running_past_the_last_representable_year_is_a_cron_error():
    with pytest.raises(CronError, match="before year 10000"):
        parse("0 0 1 1 *").next_after(utc(9999, 6, 1))
    with pytest.raises(CronError, match="after year 1"):
        parse("0 0 2 1 *").at_or_before(utc(1, 1, 1, 12))


# cronsim's extensions, which the hand-written parser did not have


def test_the_last_day_of_the_month_and_the_nth_weekday_forms_are_accepted():
    assert parse("0 0 L * *").fire_times(utc(2026, 1, 1), 2) == [utc(2026, 1, 31), utc(2026, 2, 28)]
    # 2026-01-02 is the first Friday, so 01-09 is the second; 01-30 the last.
    assert parse("0 9 * * 5#2").next_after(utc(2026, 1, 1)) == utc(2026, 1, 9, 9)
    assert parse("0 9 * * 5L").at_or_before(utc(2026, 2, 1)) == utc(2026, 1, 30, 9)


@pytest.mark.parametrize("expression", ["0 0 L * *", "0 9 * * 5#2", "0 9 * * 5L"])
def test_describe_shows_the_last_day_and_nth_weekday_forms_as_the_expression(expression):
    assert parse(expression).describe() == f"cron: {expression}"
