//! EventBridge schedule expressions: `rate(value unit)` and AWS's six-field `cron(...)`.
//!
//! [`ScheduleExpression::parse`] validates an expression the way `PutRule` does (the syntax of
//! the EventBridge user guide's "Schedule expressions for rules": rate and cron expressions) and
//! says precisely what is wrong; [`ScheduleError::AWS_MESSAGE`] is the message AWS itself puts in
//! the `ValidationException`. [`ScheduleExpression::next_after`] and
//! [`ScheduleExpression::next_after_anchored`] compute fire times in UTC, at second 0.
//!
//! Settled where the user guide is silent (Quartz, which AWS's syntax comes from, agrees):
//! - month and day-of-week names are case-insensitive; `rate`, `cron` and rate units are not;
//! - fields are separated by any run of white space; [`fmt::Display`] gives back one space and
//!   upper-case names;
//! - a step `/n` must lie in `1..=max` of its field (`*/60` in Minutes is rejected, as by AWS);
//! - a range must not wrap (`50-10` in Minutes is rejected);
//! - `L`, `LW` and `nW` (day-of-month) and `L`, `nL` and `n#k` (day-of-week) stand alone in their
//!   field, as does `?`; a bare `L` in day-of-week is Saturday, the last day of the week;
//! - `nW` never crosses into another month, and does not fire in a month shorter than `n` days;
//! - `/` is not accepted in day-of-week (the user guide's table does not list it).
//!
//! Not for: running schedules (the scheduled-rule trigger owns timers and state) or time zones
//! (EventBridge rules are always UTC).

use std::fmt;
use std::str::FromStr;

use time::{Date, Month, OffsetDateTime, Time, UtcOffset, Weekday};

/// A parsed, valid EventBridge schedule expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleExpression {
    /// `rate(value unit)`: every `value` units, counted from an anchor.
    Rate {
        /// How many units between fires; at least 1.
        value: u32,
        /// The unit of `value`.
        unit: RateUnit,
    },
    /// `cron(Minutes Hours Day-of-month Month Day-of-week Year)`, in UTC.
    Cron(Cron),
}

/// The unit of a rate expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RateUnit {
    /// `minute` / `minutes`.
    Minute,
    /// `hour` / `hours`.
    Hour,
    /// `day` / `days`.
    Day,
}

impl RateUnit {
    /// Length of one unit in seconds.
    pub fn seconds(self) -> i64 {
        match self {
            RateUnit::Minute => 60,
            RateUnit::Hour => 60 * 60,
            RateUnit::Day => 24 * 60 * 60,
        }
    }

    fn singular(self) -> &'static str {
        match self {
            RateUnit::Minute => "minute",
            RateUnit::Hour => "hour",
            RateUnit::Day => "day",
        }
    }
}

/// The six fields of a cron expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CronField {
    /// Minutes, 0-59.
    Minutes,
    /// Hours, 0-23.
    Hours,
    /// Day-of-month, 1-31.
    DayOfMonth,
    /// Month, 1-12 or JAN-DEC.
    Month,
    /// Day-of-week, 1-7 or SUN-SAT (1 = Sunday).
    DayOfWeek,
    /// Year, 1970-2199.
    Year,
}

impl fmt::Display for CronField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CronField::Minutes => "minutes",
            CronField::Hours => "hours",
            CronField::DayOfMonth => "day-of-month",
            CronField::Month => "month",
            CronField::DayOfWeek => "day-of-week",
            CronField::Year => "year",
        })
    }
}

/// Why a schedule expression is not valid; carries the expression as given.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("schedule expression {expression:?} is not valid: {kind}")]
pub struct ScheduleError {
    /// The expression as given.
    pub expression: String,
    /// What is wrong with it.
    pub kind: ScheduleErrorKind,
}

impl ScheduleError {
    /// The message AWS returns in `PutRule`'s `ValidationException` for any invalid expression.
    pub const AWS_MESSAGE: &'static str = "Parameter ScheduleExpression is not valid.";
}

/// What exactly is wrong with a schedule expression.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleErrorKind {
    /// Neither `rate(...)` nor `cron(...)`.
    #[error("expected rate(value unit) or cron(fields)")]
    UnknownForm,
    /// A rate expression without exactly a value and a unit.
    #[error("rate expression needs 2 fields (value unit), found {found}")]
    RateFieldCount {
        /// Fields found.
        found: usize,
    },
    /// A rate value that is not a positive integer.
    #[error("rate value {value:?} is not a positive integer")]
    RateValue {
        /// The value as given.
        value: String,
    },
    /// A rate unit other than minute(s), hour(s), day(s).
    #[error("rate unit {unit:?} is not one of minute, minutes, hour, hours, day, days")]
    RateUnit {
        /// The unit as given.
        unit: String,
    },
    /// A singular unit with a value above 1, or a plural unit with 1.
    #[error("rate unit {unit:?} does not agree with value {value}: use the singular with 1 and the plural otherwise")]
    RateUnitNumber {
        /// The value.
        value: u32,
        /// The unit as given.
        unit: String,
    },
    /// A cron expression without exactly six fields.
    #[error("cron expression needs 6 fields (minutes hours day-of-month month day-of-week year), found {found}")]
    CronFieldCount {
        /// Fields found.
        found: usize,
    },
    /// A token that is neither a number nor a name the field accepts.
    #[error("{field} value {value:?} is not valid")]
    InvalidValue {
        /// The field.
        field: CronField,
        /// The token as given.
        value: String,
    },
    /// A number outside the field's range.
    #[error("{field} value {value} is outside {min}-{max}")]
    OutOfRange {
        /// The field.
        field: CronField,
        /// The number.
        value: u32,
        /// Smallest allowed.
        min: u32,
        /// Largest allowed.
        max: u32,
    },
    /// A range whose start is after its end.
    #[error("{field} range {start}-{end} runs backwards")]
    ReversedRange {
        /// The field.
        field: CronField,
        /// Start of the range.
        start: u32,
        /// End of the range.
        end: u32,
    },
    /// An increment that is not a number in `1..=max`.
    #[error("{field} increment {step:?} is not a number from 1 to {max}")]
    InvalidStep {
        /// The field.
        field: CronField,
        /// The increment as given.
        step: String,
        /// Largest allowed increment.
        max: u32,
    },
    /// A wildcard the field does not accept.
    #[error("the {wildcard} wildcard is not allowed in {field}")]
    WildcardNotAllowed {
        /// The field.
        field: CronField,
        /// The wildcard character.
        wildcard: char,
    },
    /// `?`, `L`, `W` or `#` combined with other expressions in the same field.
    #[error("{field} expression {value:?} must be the only expression in its field")]
    NotAlone {
        /// The field.
        field: CronField,
        /// The field as given.
        value: String,
    },
    /// The occurrence in `n#k` is not 1 to 5.
    #[error("day-of-week occurrence {value:?} is not a number from 1 to 5")]
    InvalidOccurrence {
        /// The occurrence as given.
        value: String,
    },
    /// Both day-of-month and day-of-week given: one of them must be `?`.
    #[error("day-of-month and day-of-week cannot both be specified: one of them must be ?")]
    BothDaysSpecified,
    /// Both day-of-month and day-of-week are `?`.
    #[error("day-of-month and day-of-week cannot both be ?")]
    NoDaySpecified,
}

/// A validated cron expression; see [`ScheduleExpression::Cron`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: Set,
    hours: Set,
    days: DayRule,
    months: Set,
    years: YearSet,
    /// The six fields in canonical spelling (upper case, one space), for `Display`.
    text: String,
}

/// Which days a cron expression fires on: exactly one of the two day fields is not `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DayRule {
    /// Day-of-month numbers (bit `d - 1`).
    MonthDays(Set),
    /// `L`: the last day of the month.
    LastDay,
    /// `LW`: the last weekday (Monday-Friday) of the month.
    LastWeekday,
    /// `nW`: the weekday nearest day `n`, within the month.
    NearestWeekday(u8),
    /// Day-of-week numbers (bit `d - 1`, 1 = Sunday).
    WeekDays(Set),
    /// `nL`: the last such weekday of the month (1 = Sunday).
    LastWeekdayOf(u8),
    /// `n#k`: the k-th such weekday of the month.
    NthWeekday(u8, u8),
}

/// A set of field values, stored as offsets from the field's minimum; `N` words of 64 bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Set<const N: usize = 1>([u64; N]);

/// Years need 230 bits.
type YearSet = Set<4>;

impl<const N: usize> Default for Set<N> {
    fn default() -> Self {
        Set([0; N])
    }
}

impl<const N: usize> Set<N> {
    const BITS: u32 = N as u32 * 64;

    fn insert(&mut self, i: u32) {
        self.0[(i / 64) as usize] |= 1 << (i % 64);
    }

    fn contains(&self, i: u32) -> bool {
        i < Self::BITS && self.0[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// The smallest member at or above `i`.
    fn next_from(&self, i: u32) -> Option<u32> {
        (i..Self::BITS).find(|&j| self.contains(j))
    }
}

struct FieldSpec {
    field: CronField,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTES: FieldSpec = FieldSpec {
    field: CronField::Minutes,
    min: 0,
    max: 59,
    names: &[],
};
const HOURS: FieldSpec = FieldSpec {
    field: CronField::Hours,
    min: 0,
    max: 23,
    names: &[],
};
const DAY_OF_MONTH: FieldSpec = FieldSpec {
    field: CronField::DayOfMonth,
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldSpec = FieldSpec {
    field: CronField::Month,
    min: 1,
    max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
};
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    field: CronField::DayOfWeek,
    min: 1,
    max: 7,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
};
const YEAR: FieldSpec = FieldSpec {
    field: CronField::Year,
    min: 1970,
    max: 2199,
    names: &[],
};

impl FieldSpec {
    /// A single value: a number in range or one of the field's names.
    fn value(&self, token: &str) -> Result<u32, ScheduleErrorKind> {
        if let Some(i) = self.names.iter().position(|n| *n == token) {
            return Ok(self.min + i as u32);
        }
        let n = parse_number(token).ok_or_else(|| ScheduleErrorKind::InvalidValue {
            field: self.field,
            value: token.to_owned(),
        })?;
        if n < self.min || n > self.max {
            return Err(ScheduleErrorKind::OutOfRange {
                field: self.field,
                value: n,
                min: self.min,
                max: self.max,
            });
        }
        Ok(n)
    }

    /// Largest increment accepted after `/`.
    fn max_step(&self) -> u32 {
        if self.min == 0 {
            self.max
        } else {
            self.max - self.min + 1
        }
    }

    /// A comma-separated list of `*`, `v`, `a-b`, each optionally followed by `/step`.
    fn list<const N: usize>(
        &self,
        text: &str,
        allow_step: bool,
    ) -> Result<Set<N>, ScheduleErrorKind> {
        let mut set = Set::default();
        for item in text.split(',') {
            let (base, step) = match item.split_once('/') {
                Some(_) if !allow_step => {
                    return Err(ScheduleErrorKind::WildcardNotAllowed {
                        field: self.field,
                        wildcard: '/',
                    })
                }
                Some((base, step)) => (base, Some(step)),
                None => (item, None),
            };
            let step = match step {
                None => 1,
                Some(s) => match parse_number(s) {
                    Some(n) if (1..=self.max_step()).contains(&n) => n,
                    _ => {
                        return Err(ScheduleErrorKind::InvalidStep {
                            field: self.field,
                            step: s.to_owned(),
                            max: self.max_step(),
                        })
                    }
                },
            };
            let (start, end) = if base == "*" {
                (self.min, self.max)
            } else if let Some((a, b)) = base.split_once('-') {
                let (a, b) = (self.value(a)?, self.value(b)?);
                if a > b {
                    return Err(ScheduleErrorKind::ReversedRange {
                        field: self.field,
                        start: a,
                        end: b,
                    });
                }
                (a, b)
            } else {
                let v = self.value(base)?;
                // `v/step` runs from v to the end of the field.
                (v, if step > 1 { self.max } else { v })
            };
            for v in (start..=end).step_by(step as usize) {
                set.insert(v - self.min);
            }
        }
        Ok(set)
    }

    /// Rejects the wildcards this field never accepts.
    fn reject(&self, text: &str, wildcards: &[char]) -> Result<(), ScheduleErrorKind> {
        match wildcards.iter().find(|w| text.contains(**w)) {
            Some(&wildcard) => Err(ScheduleErrorKind::WildcardNotAllowed {
                field: self.field,
                wildcard,
            }),
            None => Ok(()),
        }
    }
}

/// A non-empty run of ASCII digits that fits in a `u32`.
fn parse_number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses a plain field: minutes, hours, month, year.
fn plain_field<const N: usize>(spec: &FieldSpec, text: &str) -> Result<Set<N>, ScheduleErrorKind> {
    spec.reject(text, &['?', '#'])?;
    if spec.names.is_empty() {
        spec.reject(text, &['L', 'W'])?;
    }
    spec.list(text, true)
}

/// Parses day-of-month; `None` for `?`.
fn day_of_month(text: &str) -> Result<Option<DayRule>, ScheduleErrorKind> {
    let spec = &DAY_OF_MONTH;
    spec.reject(text, &['#'])?;
    let special = text.contains(['?', 'L', 'W']);
    if special && text.contains(',') {
        return Err(ScheduleErrorKind::NotAlone {
            field: spec.field,
            value: text.to_owned(),
        });
    }
    Ok(Some(match text {
        "?" => return Ok(None),
        "L" => DayRule::LastDay,
        "LW" => DayRule::LastWeekday,
        _ => match text.strip_suffix('W') {
            Some(day) => DayRule::NearestWeekday(spec.value(day)? as u8),
            None if special => {
                return Err(ScheduleErrorKind::InvalidValue {
                    field: spec.field,
                    value: text.to_owned(),
                })
            }
            None => DayRule::MonthDays(spec.list(text, true)?),
        },
    }))
}

/// Parses day-of-week; `None` for `?`.
fn day_of_week(text: &str) -> Result<Option<DayRule>, ScheduleErrorKind> {
    let spec = &DAY_OF_WEEK;
    spec.reject(text, &['/'])?;
    let special = text.contains(['?', 'L', '#']);
    if special && text.contains(',') {
        return Err(ScheduleErrorKind::NotAlone {
            field: spec.field,
            value: text.to_owned(),
        });
    }
    if text == "?" {
        return Ok(None);
    }
    if text == "L" {
        let mut saturday = Set::default();
        saturday.insert(6);
        return Ok(Some(DayRule::WeekDays(saturday)));
    }
    if let Some(day) = text.strip_suffix('L') {
        return Ok(Some(DayRule::LastWeekdayOf(spec.value(day)? as u8)));
    }
    if let Some((day, nth)) = text.split_once('#') {
        let day = spec.value(day)? as u8;
        return match parse_number(nth) {
            Some(k @ 1..=5) => Ok(Some(DayRule::NthWeekday(day, k as u8))),
            _ => Err(ScheduleErrorKind::InvalidOccurrence {
                value: nth.to_owned(),
            }),
        };
    }
    if special {
        return Err(ScheduleErrorKind::InvalidValue {
            field: spec.field,
            value: text.to_owned(),
        });
    }
    Ok(Some(DayRule::WeekDays(spec.list(text, false)?)))
}

impl Cron {
    fn parse(inner: &str) -> Result<Cron, ScheduleErrorKind> {
        let fields: Vec<String> = inner
            .split_whitespace()
            .map(str::to_ascii_uppercase)
            .collect();
        let [mi, h, dom, mo, dow, y]: [String; 6] = fields
            .try_into()
            .map_err(|f: Vec<String>| ScheduleErrorKind::CronFieldCount { found: f.len() })?;
        let minutes = plain_field(&MINUTES, &mi)?;
        let hours = plain_field(&HOURS, &h)?;
        let by_month_day = day_of_month(&dom)?;
        let months = plain_field(&MONTH, &mo)?;
        let by_week_day = day_of_week(&dow)?;
        let years = plain_field(&YEAR, &y)?;
        let days = match (by_month_day, by_week_day) {
            (Some(_), Some(_)) => return Err(ScheduleErrorKind::BothDaysSpecified),
            (None, None) => return Err(ScheduleErrorKind::NoDaySpecified),
            (Some(rule), None) | (None, Some(rule)) => rule,
        };
        Ok(Cron {
            minutes,
            hours,
            days,
            months,
            years,
            text: [mi, h, dom, mo, dow, y].join(" "),
        })
    }

    fn day_matches(&self, year: i32, month: Month, day: u8) -> bool {
        let last = month.length(year);
        let weekday = |d: u8| {
            Date::from_calendar_date(year, month, d)
                .expect("day is within the month")
                .weekday()
        };
        let is_weekday = |d: u8| !matches!(weekday(d), Weekday::Saturday | Weekday::Sunday);
        match self.days {
            DayRule::MonthDays(set) => set.contains(u32::from(day) - 1),
            DayRule::LastDay => day == last,
            DayRule::LastWeekday => (1..=last).rev().find(|&d| is_weekday(d)) == Some(day),
            DayRule::NearestWeekday(n) => {
                if n > last {
                    return false;
                }
                let target = match weekday(n) {
                    Weekday::Saturday if n == 1 => 3,
                    Weekday::Saturday => n - 1,
                    Weekday::Sunday if n == last => n - 2,
                    Weekday::Sunday => n + 1,
                    _ => n,
                };
                day == target
            }
            DayRule::WeekDays(set) => {
                set.contains(u32::from(weekday(day).number_from_sunday()) - 1)
            }
            DayRule::LastWeekdayOf(d) => weekday(day).number_from_sunday() == d && day + 7 > last,
            DayRule::NthWeekday(d, k) => {
                weekday(day).number_from_sunday() == d && (day - 1) / 7 + 1 == k
            }
        }
    }

    /// The first fire time strictly after `after`, or `None` if there is none up to 2199.
    fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        let after = after.to_offset(UtcOffset::UTC);
        let mut c = Cursor {
            year: after.year(),
            month: after.month(),
            day: after.day(),
            hour: after.hour(),
            minute: after.minute(),
        };
        c.next_minute();
        loop {
            if c.year > YEAR.max as i32 {
                return None;
            }
            let year_index = u32::try_from(c.year - YEAR.min as i32).unwrap_or(0);
            let found = self.years.next_from(year_index)?;
            let year = YEAR.min as i32 + found as i32;
            if year != c.year {
                c = Cursor::start_of_year(year);
                continue;
            }
            let month_index = u32::from(u8::from(c.month)) - 1;
            match self.months.next_from(month_index) {
                Some(m) if m < 12 => {
                    if m != month_index {
                        let month = Month::try_from(m as u8 + 1).expect("month index below 12");
                        c = Cursor::start_of_month(c.year, month);
                    }
                }
                _ => {
                    c = Cursor::start_of_year(c.year + 1);
                    continue;
                }
            }
            let last = c.month.length(c.year);
            match (c.day..=last).find(|&d| self.day_matches(c.year, c.month, d)) {
                Some(d) if d != c.day => c.set_day(d),
                Some(_) => {}
                None => {
                    c.next_month();
                    continue;
                }
            }
            match self.hours.next_from(u32::from(c.hour)) {
                Some(h) if h < 24 => {
                    if h != u32::from(c.hour) {
                        c.hour = h as u8;
                        c.minute = 0;
                    }
                }
                _ => {
                    c.next_day();
                    continue;
                }
            }
            match self.minutes.next_from(u32::from(c.minute)) {
                Some(m) if m < 60 => {
                    c.minute = m as u8;
                    return c.to_datetime();
                }
                _ => c.next_hour(),
            }
        }
    }
}

/// A UTC minute being searched forward; always a valid calendar position.
struct Cursor {
    year: i32,
    month: Month,
    day: u8,
    hour: u8,
    minute: u8,
}

impl Cursor {
    fn start_of_year(year: i32) -> Cursor {
        Cursor::start_of_month(year, Month::January)
    }

    fn start_of_month(year: i32, month: Month) -> Cursor {
        Cursor {
            year,
            month,
            day: 1,
            hour: 0,
            minute: 0,
        }
    }

    fn set_day(&mut self, day: u8) {
        self.day = day;
        self.hour = 0;
        self.minute = 0;
    }

    fn next_month(&mut self) {
        *self = if self.month == Month::December {
            Cursor::start_of_year(self.year + 1)
        } else {
            Cursor::start_of_month(self.year, self.month.next())
        };
    }

    fn next_day(&mut self) {
        if self.day >= self.month.length(self.year) {
            self.next_month();
        } else {
            self.set_day(self.day + 1);
        }
    }

    fn next_hour(&mut self) {
        if self.hour >= 23 {
            self.next_day();
        } else {
            self.hour += 1;
            self.minute = 0;
        }
    }

    fn next_minute(&mut self) {
        if self.minute >= 59 {
            self.next_hour();
        } else {
            self.minute += 1;
        }
    }

    fn to_datetime(&self) -> Option<OffsetDateTime> {
        let date = Date::from_calendar_date(self.year, self.month, self.day).ok()?;
        let time = Time::from_hms(self.hour, self.minute, 0).ok()?;
        Some(date.with_time(time).assume_utc())
    }
}

impl ScheduleExpression {
    /// Parses and validates an expression as `PutRule` does.
    pub fn parse(s: &str) -> Result<ScheduleExpression, ScheduleError> {
        Self::parse_inner(s).map_err(|kind| ScheduleError {
            expression: s.to_owned(),
            kind,
        })
    }

    fn parse_inner(s: &str) -> Result<ScheduleExpression, ScheduleErrorKind> {
        if let Some(inner) = s.strip_prefix("rate(").and_then(|r| r.strip_suffix(')')) {
            return Self::parse_rate(inner);
        }
        if let Some(inner) = s.strip_prefix("cron(").and_then(|r| r.strip_suffix(')')) {
            return Cron::parse(inner).map(ScheduleExpression::Cron);
        }
        Err(ScheduleErrorKind::UnknownForm)
    }

    fn parse_rate(inner: &str) -> Result<ScheduleExpression, ScheduleErrorKind> {
        let fields: Vec<&str> = inner.split_whitespace().collect();
        let [value_text, unit_text] = fields[..] else {
            return Err(ScheduleErrorKind::RateFieldCount {
                found: fields.len(),
            });
        };
        let value = match parse_number(value_text) {
            Some(v) if v > 0 => v,
            _ => {
                return Err(ScheduleErrorKind::RateValue {
                    value: value_text.to_owned(),
                })
            }
        };
        let (unit, plural) = match unit_text {
            "minute" => (RateUnit::Minute, false),
            "minutes" => (RateUnit::Minute, true),
            "hour" => (RateUnit::Hour, false),
            "hours" => (RateUnit::Hour, true),
            "day" => (RateUnit::Day, false),
            "days" => (RateUnit::Day, true),
            _ => {
                return Err(ScheduleErrorKind::RateUnit {
                    unit: unit_text.to_owned(),
                })
            }
        };
        if plural != (value > 1) {
            return Err(ScheduleErrorKind::RateUnitNumber {
                value,
                unit: unit_text.to_owned(),
            });
        }
        Ok(ScheduleExpression::Rate { value, unit })
    }

    /// The first fire time strictly after `after`, in UTC with second 0.
    ///
    /// A cron expression returns `None` when it does not fire again up to the end of 2199. A
    /// rate is anchored at the Unix epoch here (`rate(5 minutes)` fires at :00, :05, ...); a
    /// scheduled rule anchors it at its creation with [`Self::next_after_anchored`].
    pub fn next_after(&self, after: OffsetDateTime) -> Option<OffsetDateTime> {
        self.next_after_anchored(OffsetDateTime::UNIX_EPOCH, after)
    }

    /// Like [`Self::next_after`], with a rate counted from `anchor` (when the rule was created
    /// or enabled): it fires at `anchor + k * interval` for `k >= 1`, the anchor first truncated
    /// to its minute. The first fire is one interval after the anchor. A cron expression ignores
    /// the anchor. `None` if the fire time is beyond what `OffsetDateTime` can represent.
    pub fn next_after_anchored(
        &self,
        anchor: OffsetDateTime,
        after: OffsetDateTime,
    ) -> Option<OffsetDateTime> {
        match self {
            ScheduleExpression::Cron(cron) => cron.next_after(after),
            ScheduleExpression::Rate { value, unit } => {
                let interval = i128::from(*value) * i128::from(unit.seconds());
                let anchor = i128::from(anchor.unix_timestamp());
                let anchor = anchor - anchor.rem_euclid(60);
                let after = i128::from(after.unix_timestamp());
                let k = if after < anchor {
                    1
                } else {
                    (after - anchor) / interval + 1
                };
                let at = i64::try_from(anchor + k * interval).ok()?;
                OffsetDateTime::from_unix_timestamp(at).ok()
            }
        }
    }
}

impl FromStr for ScheduleExpression {
    type Err = ScheduleError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ScheduleExpression::parse(s)
    }
}

impl fmt::Display for ScheduleExpression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleExpression::Rate { value, unit } => {
                let plural = if *value > 1 { "s" } else { "" };
                write!(f, "rate({value} {}{plural})", unit.singular())
            }
            ScheduleExpression::Cron(cron) => write!(f, "{cron}"),
        }
    }
}

impl fmt::Display for Cron {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cron({})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use CronField::{DayOfMonth, DayOfWeek, Hours, Minutes, Year};
    use ScheduleErrorKind as K;

    fn parse(s: &str) -> ScheduleExpression {
        ScheduleExpression::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn kind(s: &str) -> ScheduleErrorKind {
        match ScheduleExpression::parse(s) {
            Ok(e) => panic!("{s} parsed as {e:?}"),
            Err(e) => {
                assert_eq!(e.expression, s);
                e.kind
            }
        }
    }

    /// The fire times following `after`, one after another.
    fn fires(s: &str, after: OffsetDateTime, n: usize) -> Vec<OffsetDateTime> {
        let e = parse(s);
        let mut out = Vec::new();
        let mut t = after;
        for _ in 0..n {
            t = e.next_after(t).expect("a next fire time");
            out.push(t);
        }
        out
    }

    #[test]
    fn accepts_documented_expressions_and_displays_them_canonically() {
        let cases = [
            ("rate(1 minute)", "rate(1 minute)"),
            ("rate(5 minutes)", "rate(5 minutes)"),
            ("rate(1 hour)", "rate(1 hour)"),
            ("rate(12 hours)", "rate(12 hours)"),
            ("rate(1 day)", "rate(1 day)"),
            ("rate(007  days)", "rate(7 days)"),
            ("cron(0 10 * * ? *)", "cron(0 10 * * ? *)"),
            ("cron(15 12 * * ? *)", "cron(15 12 * * ? *)"),
            ("cron(0 18 ? * MON-FRI *)", "cron(0 18 ? * MON-FRI *)"),
            ("cron(0 8 1 * ? *)", "cron(0 8 1 * ? *)"),
            ("cron(0/15 * * * ? *)", "cron(0/15 * * * ? *)"),
            ("cron(0/10 * ? * MON-FRI *)", "cron(0/10 * ? * MON-FRI *)"),
            (
                "cron(0/5 8-17 ? * MON-FRI *)",
                "cron(0/5 8-17 ? * MON-FRI *)",
            ),
            ("cron(0 9 ? * 2#1 *)", "cron(0 9 ? * 2#1 *)"),
            ("cron(15 10 ? * 6l 2026)", "cron(15 10 ? * 6L 2026)"),
            ("cron(0 0 L * ? *)", "cron(0 0 L * ? *)"),
            ("cron(0 0 LW * ? *)", "cron(0 0 LW * ? *)"),
            ("cron(0 0 15W * ? *)", "cron(0 0 15W * ? *)"),
            ("cron(0 0 ? * L *)", "cron(0 0 ? * L *)"),
            (
                "cron(0 0 1 jan,Jul ? 2026-2030/2)",
                "cron(0 0 1 JAN,JUL ? 2026-2030/2)",
            ),
            (
                "cron(*/59 */23 */31 */12 ? */229)",
                "cron(*/59 */23 */31 */12 ? */229)",
            ),
            (
                "cron(1,2,5-9 0 1-15/3 * ? 1970,2199)",
                "cron(1,2,5-9 0 1-15/3 * ? 1970,2199)",
            ),
            ("cron(0 0 ? * SUN,7 *)", "cron(0 0 ? * SUN,7 *)"),
            ("cron(0 0 * * ? *)", "cron(0 0 * * ? *)"),
            ("cron(0 0 ? * * *)", "cron(0 0 ? * * *)"),
        ];
        for (input, canonical) in cases {
            let e = parse(input);
            assert_eq!(e.to_string(), canonical, "{input}");
            assert_eq!(parse(canonical), e, "{input} round trip");
        }
        assert_eq!(
            parse("rate(5 minutes)"),
            ScheduleExpression::Rate {
                value: 5,
                unit: RateUnit::Minute
            }
        );
    }

    #[test]
    fn rejects_invalid_expressions_with_a_precise_reason() {
        let step = |field, step: &str, max| K::InvalidStep {
            field,
            step: step.into(),
            max,
        };
        let value = |field, value: &str| K::InvalidValue {
            field,
            value: value.into(),
        };
        let range = |field, value, min, max| K::OutOfRange {
            field,
            value,
            min,
            max,
        };
        let wildcard = |field, wildcard| K::WildcardNotAllowed { field, wildcard };
        let alone = |field, value: &str| K::NotAlone {
            field,
            value: value.into(),
        };
        let cases = [
            ("", K::UnknownForm),
            ("at(2026-01-01T00:00:00)", K::UnknownForm),
            ("RATE(5 minutes)", K::UnknownForm),
            ("rate(5 minutes", K::UnknownForm),
            (" rate(5 minutes)", K::UnknownForm),
            ("cron(0 10 * * ? *) ", K::UnknownForm),
            ("rate()", K::RateFieldCount { found: 0 }),
            ("rate(5)", K::RateFieldCount { found: 1 }),
            ("rate(5 minutes now)", K::RateFieldCount { found: 3 }),
            ("rate(0 minutes)", K::RateValue { value: "0".into() }),
            ("rate(-1 minutes)", K::RateValue { value: "-1".into() }),
            ("rate(+2 minutes)", K::RateValue { value: "+2".into() }),
            (
                "rate(1.5 hours)",
                K::RateValue {
                    value: "1.5".into(),
                },
            ),
            (
                "rate(99999999999 days)",
                K::RateValue {
                    value: "99999999999".into(),
                },
            ),
            (
                "rate(5 seconds)",
                K::RateUnit {
                    unit: "seconds".into(),
                },
            ),
            (
                "rate(5 Minutes)",
                K::RateUnit {
                    unit: "Minutes".into(),
                },
            ),
            (
                "rate(2 weeks)",
                K::RateUnit {
                    unit: "weeks".into(),
                },
            ),
            (
                "rate(1 hours)",
                K::RateUnitNumber {
                    value: 1,
                    unit: "hours".into(),
                },
            ),
            (
                "rate(5 hour)",
                K::RateUnitNumber {
                    value: 5,
                    unit: "hour".into(),
                },
            ),
            (
                "rate(1 minutes)",
                K::RateUnitNumber {
                    value: 1,
                    unit: "minutes".into(),
                },
            ),
            (
                "rate(3 minute)",
                K::RateUnitNumber {
                    value: 3,
                    unit: "minute".into(),
                },
            ),
            (
                "rate(2 day)",
                K::RateUnitNumber {
                    value: 2,
                    unit: "day".into(),
                },
            ),
            ("cron(*/1 * * * *)", K::CronFieldCount { found: 5 }),
            ("cron(0 0 0 * * ? *)", K::CronFieldCount { found: 7 }),
            ("cron()", K::CronFieldCount { found: 0 }),
            ("cron(0/5, 9-18, ?, *, MON-FRI, *)", value(Minutes, "")),
            ("cron(60 * * * ? *)", range(Minutes, 60, 0, 59)),
            ("cron(* 24 * * ? *)", range(Hours, 24, 0, 23)),
            ("cron(0 0 0 * ? *)", range(DayOfMonth, 0, 1, 31)),
            ("cron(0 0 32 * ? *)", range(DayOfMonth, 32, 1, 31)),
            ("cron(0 0 1 13 ? *)", range(CronField::Month, 13, 1, 12)),
            ("cron(0 0 ? * 0 *)", range(DayOfWeek, 0, 1, 7)),
            ("cron(0 0 ? * 8 *)", range(DayOfWeek, 8, 1, 7)),
            ("cron(0 0 * * ? 1969)", range(Year, 1969, 1970, 2199)),
            ("cron(0 0 * * ? 2200)", range(Year, 2200, 1970, 2199)),
            (
                "cron(0 0 * JANUARY ? *)",
                value(CronField::Month, "JANUARY"),
            ),
            ("cron(0 0 ? * MONDAY *)", value(DayOfWeek, "MONDAY")),
            ("cron(0 0 ? * FUN *)", value(DayOfWeek, "FUN")),
            ("cron(a 0 * * ? *)", value(Minutes, "A")),
            ("cron(-1 0 * * ? *)", value(Minutes, "")),
            ("cron(1, 0 * * ? *)", value(Minutes, "")),
            ("cron(0 0 * * ? 99999999999)", value(Year, "99999999999")),
            ("cron(0 0 * L ? *)", value(CronField::Month, "L")),
            ("cron(0 0 ? * W *)", value(DayOfWeek, "W")),
            ("cron(0 0 L5 * ? *)", value(DayOfMonth, "L5")),
            ("cron(0 0 W15 * ? *)", value(DayOfMonth, "W15")),
            ("cron(0 0 ? * L6 *)", value(DayOfWeek, "L6")),
            ("cron(0 0 32W * ? *)", range(DayOfMonth, 32, 1, 31)),
            ("cron(0 0 ? * 8L *)", range(DayOfWeek, 8, 1, 7)),
            ("cron(0 0 ? * 8#1 *)", range(DayOfWeek, 8, 1, 7)),
            (
                "cron(50-10 * * * ? *)",
                K::ReversedRange {
                    field: Minutes,
                    start: 50,
                    end: 10,
                },
            ),
            (
                "cron(0 0 ? * FRI-MON *)",
                K::ReversedRange {
                    field: DayOfWeek,
                    start: 6,
                    end: 2,
                },
            ),
            ("cron(*/60 * * * ? *)", step(Minutes, "60", 59)),
            ("cron(0/0 * * * ? *)", step(Minutes, "0", 59)),
            ("cron(0/ * * * ? *)", step(Minutes, "", 59)),
            ("cron(0 */24 * * ? *)", step(Hours, "24", 23)),
            ("cron(0 0 */32 * ? *)", step(DayOfMonth, "32", 31)),
            ("cron(0 0 1 */13 ? *)", step(CronField::Month, "13", 12)),
            ("cron(0 0 1 * ? */231)", step(Year, "231", 230)),
            ("cron(? 0 * * ? *)", wildcard(Minutes, '?')),
            ("cron(0 ? * * ? *)", wildcard(Hours, '?')),
            ("cron(0 0 * ? ? *)", wildcard(CronField::Month, '?')),
            ("cron(0 0 * * ? ?)", wildcard(Year, '?')),
            ("cron(L 0 * * ? *)", wildcard(Minutes, 'L')),
            ("cron(0 1W * * ? *)", wildcard(Hours, 'W')),
            ("cron(0 0 * * ? 2026L)", wildcard(Year, 'L')),
            ("cron(1#2 0 * * ? *)", wildcard(Minutes, '#')),
            ("cron(0 0 * 1#2 ? *)", wildcard(CronField::Month, '#')),
            ("cron(0 0 3#2 * ? *)", wildcard(DayOfMonth, '#')),
            ("cron(0 0 ? * */2 *)", wildcard(DayOfWeek, '/')),
            ("cron(0 0 ? * 1/2 *)", wildcard(DayOfWeek, '/')),
            ("cron(0 0 ?,1 * ? *)", alone(DayOfMonth, "?,1")),
            ("cron(0 0 L,15 * ? *)", alone(DayOfMonth, "L,15")),
            ("cron(0 0 1W,15W * ? *)", alone(DayOfMonth, "1W,15W")),
            ("cron(0 0 ? * 3#1,6#3 *)", alone(DayOfWeek, "3#1,6#3")),
            ("cron(0 0 ? * 6L,2 *)", alone(DayOfWeek, "6L,2")),
            ("cron(0 0 1 * ?,2 *)", alone(DayOfWeek, "?,2")),
            (
                "cron(0 0 ? * 3#0 *)",
                K::InvalidOccurrence { value: "0".into() },
            ),
            (
                "cron(0 0 ? * 3#6 *)",
                K::InvalidOccurrence { value: "6".into() },
            ),
            (
                "cron(0 0 ? * 3# *)",
                K::InvalidOccurrence { value: "".into() },
            ),
            ("cron(7 20 * * 1-7 *)", K::BothDaysSpecified),
            ("cron(0 10 * * * *)", K::BothDaysSpecified),
            ("cron(0 10 1 * MON *)", K::BothDaysSpecified),
            ("cron(0 10 ? * ? *)", K::NoDaySpecified),
        ];
        for (input, expected) in cases {
            assert_eq!(kind(input), expected, "{input}");
        }
    }

    #[test]
    fn error_names_the_expression_and_keeps_aws_message_separate() {
        let err = ScheduleExpression::parse("rate(5 hour)").unwrap_err();
        assert_eq!(
            err.to_string(),
            "schedule expression \"rate(5 hour)\" is not valid: rate unit \"hour\" does not agree \
             with value 5: use the singular with 1 and the plural otherwise"
        );
        assert_eq!(
            ScheduleError::AWS_MESSAGE,
            "Parameter ScheduleExpression is not valid."
        );
        assert!("cron(0 0 * * ? *)".parse::<ScheduleExpression>().is_ok());
    }

    #[test]
    fn daily_cron_fires_next_day_once_today_has_passed() {
        let e = parse("cron(0 12 * * ? *)");
        assert_eq!(
            e.next_after(datetime!(2026-11-24 13:00 UTC)),
            Some(datetime!(2026-11-25 12:00 UTC))
        );
        assert_eq!(
            e.next_after(datetime!(2026-11-24 11:59:59 UTC)),
            Some(datetime!(2026-11-24 12:00 UTC))
        );
        // Strictly after: a fire time is not returned for itself.
        assert_eq!(
            e.next_after(datetime!(2026-11-24 12:00 UTC)),
            Some(datetime!(2026-11-25 12:00 UTC))
        );
        // Other offsets are converted to UTC first.
        assert_eq!(
            e.next_after(datetime!(2026-11-24 14:30 +02:00)),
            Some(datetime!(2026-11-25 12:00 UTC))
        );
        // Rolls over the end of the year.
        assert_eq!(
            e.next_after(datetime!(2026-12-31 12:00 UTC)),
            Some(datetime!(2027-01-01 12:00 UTC))
        );
    }

    #[test]
    fn every_quarter_hour() {
        assert_eq!(
            fires(
                "cron(0/15 * * * ? *)",
                datetime!(2026-03-01 10:07:30 UTC),
                4
            ),
            [
                datetime!(2026-03-01 10:15 UTC),
                datetime!(2026-03-01 10:30 UTC),
                datetime!(2026-03-01 10:45 UTC),
                datetime!(2026-03-01 11:00 UTC),
            ]
        );
        assert_eq!(
            fires("cron(0/15 * * * ? *)", datetime!(2026-12-31 23:45 UTC), 1),
            [datetime!(2027-01-01 00:00 UTC)]
        );
    }

    #[test]
    fn weekday_cron_skips_the_weekend() {
        // 2026-11-27 is a Friday.
        assert_eq!(
            fires(
                "cron(0 18 ? * MON-FRI *)",
                datetime!(2026-11-26 18:00 UTC),
                3
            ),
            [
                datetime!(2026-11-27 18:00 UTC),
                datetime!(2026-11-30 18:00 UTC),
                datetime!(2026-12-01 18:00 UTC),
            ]
        );
        // Numbers mean the same days (2 = Monday, 6 = Friday).
        assert_eq!(
            fires("cron(0 18 ? * 2-6 *)", datetime!(2026-11-27 19:00 UTC), 1),
            [datetime!(2026-11-30 18:00 UTC)]
        );
    }

    #[test]
    fn quarter_hours_on_weekdays_only() {
        // 2026-11-27 is a Friday: after its last quarter hour comes Monday midnight.
        assert_eq!(
            fires(
                "cron(0/15 * ? * MON-FRI *)",
                datetime!(2026-11-27 23:40 UTC),
                3
            ),
            [
                datetime!(2026-11-27 23:45 UTC),
                datetime!(2026-11-30 00:00 UTC),
                datetime!(2026-11-30 00:15 UTC),
            ]
        );
        // Noon every day, weekends included.
        assert_eq!(
            fires("cron(0 12 * * ? *)", datetime!(2026-11-28 12:00 UTC), 2),
            [
                datetime!(2026-11-29 12:00 UTC),
                datetime!(2026-11-30 12:00 UTC)
            ]
        );
    }

    #[test]
    fn first_of_the_month() {
        assert_eq!(
            fires("cron(0 8 1 * ? *)", datetime!(2026-01-01 08:00 UTC), 3),
            [
                datetime!(2026-02-01 08:00 UTC),
                datetime!(2026-03-01 08:00 UTC),
                datetime!(2026-04-01 08:00 UTC),
            ]
        );
    }

    #[test]
    fn last_friday_of_each_month_until_the_year_ends() {
        let e = parse("cron(15 10 ? * 6L 2026)");
        assert_eq!(
            fires(
                "cron(15 10 ? * 6L 2026)",
                datetime!(2025-06-01 00:00 UTC),
                3
            ),
            [
                datetime!(2026-01-30 10:15 UTC),
                datetime!(2026-02-27 10:15 UTC),
                datetime!(2026-03-27 10:15 UTC),
            ]
        );
        assert_eq!(
            e.next_after(datetime!(2026-07-01 00:00 UTC)),
            Some(datetime!(2026-07-31 10:15 UTC))
        );
        // 2026-12-25 is the last Friday of 2026; the year field allows nothing later.
        assert_eq!(
            e.next_after(datetime!(2026-12-01 00:00 UTC)),
            Some(datetime!(2026-12-25 10:15 UTC))
        );
        assert_eq!(e.next_after(datetime!(2026-12-25 10:15 UTC)), None);
    }

    #[test]
    fn first_monday_of_the_month() {
        assert_eq!(
            fires("cron(0 9 ? * 2#1 *)", datetime!(2026-01-05 09:00 UTC), 3),
            [
                datetime!(2026-02-02 09:00 UTC),
                datetime!(2026-03-02 09:00 UTC),
                datetime!(2026-04-06 09:00 UTC),
            ]
        );
        // The fifth Friday only exists in some months.
        assert_eq!(
            fires("cron(0 9 ? * FRI#5 *)", datetime!(2026-01-01 00:00 UTC), 2),
            [
                datetime!(2026-01-30 09:00 UTC),
                datetime!(2026-05-29 09:00 UTC)
            ]
        );
    }

    #[test]
    fn last_day_of_month_includes_leap_february() {
        assert_eq!(
            fires("cron(0 0 L * ? *)", datetime!(2028-01-15 00:00 UTC), 3),
            [
                datetime!(2028-01-31 00:00 UTC),
                datetime!(2028-02-29 00:00 UTC),
                datetime!(2028-03-31 00:00 UTC),
            ]
        );
        assert_eq!(
            fires("cron(0 0 L * ? *)", datetime!(2026-02-01 00:00 UTC), 2),
            [
                datetime!(2026-02-28 00:00 UTC),
                datetime!(2026-03-31 00:00 UTC)
            ]
        );
        // Last weekday: 2026-05-31 is a Sunday, 2026-02-28 a Saturday.
        assert_eq!(
            fires("cron(0 0 LW * ? *)", datetime!(2026-05-01 00:00 UTC), 2),
            [
                datetime!(2026-05-29 00:00 UTC),
                datetime!(2026-06-30 00:00 UTC)
            ]
        );
        assert_eq!(
            fires("cron(0 0 LW 2 ? *)", datetime!(2026-01-01 00:00 UTC), 1),
            [datetime!(2026-02-27 00:00 UTC)]
        );
        // Bare L in day-of-week is Saturday; 2026-02-28 is one.
        assert_eq!(
            fires("cron(0 0 ? * L *)", datetime!(2026-02-26 00:00 UTC), 2),
            [
                datetime!(2026-02-28 00:00 UTC),
                datetime!(2026-03-07 00:00 UTC)
            ]
        );
    }

    #[test]
    fn nearest_weekday_moves_off_weekends_within_the_month() {
        // 2026-01-15 Thursday; 2026-02-15 Sunday -> Monday 16th; 2026-08-15 Saturday -> Friday 14th.
        assert_eq!(
            fires("cron(0 0 15W * ? *)", datetime!(2026-01-01 00:00 UTC), 2),
            [
                datetime!(2026-01-15 00:00 UTC),
                datetime!(2026-02-16 00:00 UTC)
            ]
        );
        assert_eq!(
            fires("cron(0 0 15W * ? *)", datetime!(2026-07-31 00:00 UTC), 1),
            [datetime!(2026-08-14 00:00 UTC)]
        );
        // 2026-08-01 is a Saturday: 1W is Monday the 3rd, not July 31st.
        assert_eq!(
            fires("cron(0 0 1W * ? *)", datetime!(2026-07-02 00:00 UTC), 1),
            [datetime!(2026-08-03 00:00 UTC)]
        );
        // 2027-01-31 is a Sunday: 31W is Friday the 29th, not February 1st; 31W skips
        // months with fewer days.
        assert_eq!(
            fires("cron(0 0 31W * ? *)", datetime!(2026-12-31 00:00 UTC), 2),
            [
                datetime!(2027-01-29 00:00 UTC),
                datetime!(2027-03-31 00:00 UTC)
            ]
        );
    }

    #[test]
    fn month_names_and_lists() {
        assert_eq!(
            fires(
                "cron(30 6 1 JAN,JUL ? *)",
                datetime!(2026-01-01 06:30 UTC),
                3
            ),
            [
                datetime!(2026-07-01 06:30 UTC),
                datetime!(2027-01-01 06:30 UTC),
                datetime!(2027-07-01 06:30 UTC),
            ]
        );
        assert_eq!(
            fires(
                "cron(0 0 ? SEP-OCT MON#2 *)",
                datetime!(2026-01-01 00:00 UTC),
                2
            ),
            [
                datetime!(2026-09-14 00:00 UTC),
                datetime!(2026-10-12 00:00 UTC)
            ]
        );
        assert_eq!(
            fires("cron(0 0 29 FEB ? *)", datetime!(2026-01-01 00:00 UTC), 2),
            [
                datetime!(2028-02-29 00:00 UTC),
                datetime!(2032-02-29 00:00 UTC)
            ]
        );
    }

    #[test]
    fn year_bound_ends_the_schedule() {
        let e = parse("cron(0 0 1 1 ? *)");
        assert_eq!(
            e.next_after(datetime!(2198-06-01 00:00 UTC)),
            Some(datetime!(2199-01-01 00:00 UTC))
        );
        assert_eq!(e.next_after(datetime!(2199-01-01 00:00 UTC)), None);
        assert_eq!(e.next_after(datetime!(2500-01-01 00:00 UTC)), None);
        // Before 1970 the first fire is in 1970.
        assert_eq!(
            e.next_after(datetime!(1900-06-01 00:00 UTC)),
            Some(datetime!(1970-01-01 00:00 UTC))
        );
        // A date that never exists gives None rather than searching forever.
        assert_eq!(
            parse("cron(0 0 30 2 ? *)").next_after(datetime!(2026-01-01 00:00 UTC)),
            None
        );
        assert_eq!(
            parse("cron(0 0 * * ? 2020-2025)").next_after(datetime!(2026-01-01 00:00 UTC)),
            None
        );
        assert_eq!(
            fires(
                "cron(0 0 1 1 ? 2030/50)",
                datetime!(2026-01-01 00:00 UTC),
                3
            ),
            [
                datetime!(2030-01-01 00:00 UTC),
                datetime!(2080-01-01 00:00 UTC),
                datetime!(2130-01-01 00:00 UTC),
            ]
        );
    }

    #[test]
    fn rate_fires_every_interval_from_its_anchor() {
        let anchor = datetime!(2026-11-24 09:03:27 UTC);
        let every_5 = parse("rate(5 minutes)");
        // The anchor is truncated to 09:03; the first fire is one interval later.
        assert_eq!(
            every_5.next_after_anchored(anchor, datetime!(2026-11-24 09:03:27 UTC)),
            Some(datetime!(2026-11-24 09:08 UTC))
        );
        assert_eq!(
            every_5.next_after_anchored(anchor, datetime!(2026-11-24 09:08 UTC)),
            Some(datetime!(2026-11-24 09:13 UTC))
        );
        assert_eq!(
            every_5.next_after_anchored(anchor, datetime!(2026-11-24 10:00:01 UTC)),
            Some(datetime!(2026-11-24 10:03 UTC))
        );
        // Before the anchor, the first fire is still one interval after it.
        assert_eq!(
            every_5.next_after_anchored(anchor, datetime!(2026-01-01 00:00 UTC)),
            Some(datetime!(2026-11-24 09:08 UTC))
        );
        assert_eq!(
            parse("rate(1 day)").next_after_anchored(anchor, datetime!(2026-11-30 12:00 UTC)),
            Some(datetime!(2026-12-01 09:03 UTC))
        );
        assert_eq!(
            parse("rate(2 hours)").next_after_anchored(anchor, datetime!(2026-11-24 11:03 UTC)),
            Some(datetime!(2026-11-24 13:03 UTC))
        );
        // Without an anchor, rates count from the Unix epoch.
        assert_eq!(
            every_5.next_after(datetime!(2026-11-24 09:03:27 UTC)),
            Some(datetime!(2026-11-24 09:05 UTC))
        );
        // Beyond what a date can hold.
        assert_eq!(
            parse(&format!("rate({} days)", u32::MAX)).next_after(anchor),
            None
        );
        // A cron expression ignores the anchor.
        assert_eq!(
            parse("cron(0 12 * * ? *)")
                .next_after_anchored(anchor, datetime!(2026-11-24 13:00 UTC)),
            Some(datetime!(2026-11-25 12:00 UTC))
        );
    }
}
