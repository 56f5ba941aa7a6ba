//! Rule evaluation (Pacemaker Explained, "Rules"): node-attribute expressions,
//! date expressions and specs, resource and operation expressions, nested with and/or.

use std::collections::BTreeMap;

use chrono::{Datelike, Duration, Months, NaiveDate, NaiveDateTime, NaiveTime, Timelike};
use cib::{Expr, Rule};

/// What a rule may look at. Absent parts make their expressions false.
#[derive(Default)]
pub struct RuleContext<'a> {
    pub node_attrs: Option<&'a BTreeMap<String, String>>,
    pub now: Option<NaiveDateTime>,
    /// class, provider, type of the resource the rule is evaluated for.
    pub rsc: Option<(&'a str, Option<&'a str>, &'a str)>,
    /// operation name and interval in ms.
    pub op: Option<(&'a str, u64)>,
    pub rsc_params: Option<&'a BTreeMap<String, String>>,
    pub rsc_meta: Option<&'a BTreeMap<String, String>>,
}

pub fn evaluate(rule: &Rule, ctx: &RuleContext) -> bool {
    let or = rule.boolean_op.as_deref().map(|b| b.eq_ignore_ascii_case("or")).unwrap_or(false);
    if rule.exprs.is_empty() {
        // An empty rule passes (it is how a rule with only a score is written).
        return true;
    }
    let mut results = rule.exprs.iter().map(|e| evaluate_expr(e, ctx));
    if or {
        results.any(|r| r)
    } else {
        results.all(|r| r)
    }
}

fn evaluate_expr(expr: &Expr, ctx: &RuleContext) -> bool {
    match expr {
        Expr::Rule(r) => evaluate(r, ctx),
        Expr::Attr { attribute, operation, value, value_type, value_source } => {
            let Some(attrs) = ctx.node_attrs else { return false };
            let actual = attrs.get(attribute.as_str()).map(String::as_str);
            let expected = match (value_source.as_deref(), value.as_deref()) {
                (Some("param"), Some(v)) => ctx.rsc_params.and_then(|p| p.get(v)).map(String::as_str),
                (Some("meta"), Some(v)) => ctx.rsc_meta.and_then(|p| p.get(v)).map(String::as_str),
                (_, v) => v,
            };
            compare(actual, operation, expected, value_type.as_deref())
        }
        Expr::Date { operation, start, end, date_spec, duration } => {
            let Some(now) = ctx.now else { return false };
            evaluate_date(now, operation, start.as_deref(), end.as_deref(), date_spec.as_deref(), duration.as_deref())
        }
        Expr::Rsc { class, provider, rsc_type } => {
            let Some((c, p, t)) = ctx.rsc else { return false };
            class.as_deref().map_or(true, |x| x == c)
                && provider.as_deref().map_or(true, |x| Some(x) == p)
                && rsc_type.as_deref().map_or(true, |x| x == t)
        }
        Expr::Op { name, interval } => {
            let Some((n, i)) = ctx.op else { return false };
            n == name && interval.as_deref().map_or(true, |iv| crate::interval_ms(iv) == Some(i))
        }
    }
}

fn compare(actual: Option<&str>, op: &str, expected: Option<&str>, vtype: Option<&str>) -> bool {
    match op {
        "defined" => return actual.is_some(),
        "not_defined" => return actual.is_none(),
        _ => {}
    }
    let (Some(a), Some(e)) = (actual, expected) else {
        // "ne" against a missing attribute holds.
        return op == "ne";
    };
    let vtype = vtype.unwrap_or_else(|| {
        // Pacemaker compares numerically when both sides look like numbers and no type is given.
        if a.parse::<f64>().is_ok() && e.parse::<f64>().is_ok() && op != "eq" && op != "ne" {
            "number"
        } else {
            "string"
        }
    });
    let ord = match vtype {
        "integer" | "number" => match (a.trim().parse::<f64>(), e.trim().parse::<f64>()) {
            (Ok(x), Ok(y)) => x.partial_cmp(&y),
            _ => Some(a.cmp(e)),
        },
        "version" => Some(compare_versions(a, e)),
        _ => Some(if op == "eq" || op == "ne" { a.to_ascii_lowercase().cmp(&e.to_ascii_lowercase()) } else { a.cmp(e) }),
    };
    let Some(ord) = ord else { return false };
    use std::cmp::Ordering::*;
    match op {
        "eq" => ord == Equal,
        "ne" => ord != Equal,
        "lt" => ord == Less,
        "lte" => ord != Greater,
        "gt" => ord == Greater,
        "gte" => ord != Less,
        _ => false,
    }
}

fn compare_versions(a: &str, b: &str) -> std::cmp::Ordering {
    let pa: Vec<u64> = a.split('.').map(|x| x.parse().unwrap_or(0)).collect();
    let pb: Vec<u64> = b.split('.').map(|x| x.parse().unwrap_or(0)).collect();
    for i in 0..pa.len().max(pb.len()) {
        let o = pa.get(i).unwrap_or(&0).cmp(pb.get(i).unwrap_or(&0));
        if o != std::cmp::Ordering::Equal {
            return o;
        }
    }
    std::cmp::Ordering::Equal
}

fn evaluate_date(
    now: NaiveDateTime,
    operation: &str,
    start: Option<&str>,
    end: Option<&str>,
    spec: Option<&[(String, String)]>,
    duration: Option<&[(String, String)]>,
) -> bool {
    let start = start.and_then(parse_iso8601);
    let mut end = end.and_then(parse_iso8601);
    match operation {
        "gt" => start.is_some_and(|s| now > s),
        "lt" => end.is_some_and(|e| now < e),
        "date_spec" => spec.is_some_and(|s| date_spec_matches(now, s)),
        _ => {
            if end.is_none() {
                if let (Some(s), Some(d)) = (start, duration) {
                    end = add_duration(s, d);
                }
            }
            if start.is_none() && end.is_none() {
                return false;
            }
            start.map_or(true, |s| now >= s) && end.map_or(true, |e| now <= e)
        }
    }
}

pub fn add_duration(t: NaiveDateTime, d: &[(String, String)]) -> Option<NaiveDateTime> {
    let mut t = t;
    for (k, v) in d {
        let n: i64 = v.trim().parse().ok()?;
        t = match k.as_str() {
            "years" => add_months(t, n * 12)?,
            "months" => add_months(t, n)?,
            "weeks" => t + Duration::weeks(n),
            "days" => t + Duration::days(n),
            "hours" => t + Duration::hours(n),
            "minutes" => t + Duration::minutes(n),
            "seconds" => t + Duration::seconds(n),
            _ => t,
        };
    }
    Some(t)
}

fn add_months(t: NaiveDateTime, n: i64) -> Option<NaiveDateTime> {
    if n >= 0 {
        t.checked_add_months(Months::new(n as u32))
    } else {
        t.checked_sub_months(Months::new((-n) as u32))
    }
}

fn in_ranges(value: i64, spec: &str) -> bool {
    spec.split(',').any(|part| {
        let part = part.trim();
        match part.split_once('-') {
            Some((a, b)) if !a.is_empty() => match (a.trim().parse::<i64>(), b.trim().parse::<i64>()) {
                (Ok(lo), Ok(hi)) => value >= lo && value <= hi,
                _ => false,
            },
            _ => part.parse::<i64>().map(|x| x == value).unwrap_or(false),
        }
    })
}

fn date_spec_matches(now: NaiveDateTime, spec: &[(String, String)]) -> bool {
    spec.iter().all(|(k, v)| {
        let value = match k.as_str() {
            "seconds" => now.second() as i64,
            "minutes" => now.minute() as i64,
            "hours" => now.hour() as i64,
            "monthdays" => now.day() as i64,
            "weekdays" => now.weekday().number_from_monday() as i64,
            "yeardays" => now.ordinal() as i64,
            "months" => now.month() as i64,
            "weeks" => now.iso_week().week() as i64,
            "years" => now.year() as i64,
            "weekyears" => now.iso_week().year() as i64,
            _ => return true,
        };
        in_ranges(value, v)
    })
}

/// ISO 8601 as Pacemaker accepts it: calendar (2005-01-20), ordinal (2005-020) or
/// week (2005-W03-4) dates, optionally followed by a time and a zone; result in UTC.
pub fn parse_iso8601(s: &str) -> Option<NaiveDateTime> {
    let s = s.trim();
    let (date_part, time_part) = match s.find(|c| c == 'T' || c == ' ') {
        Some(i) => (&s[..i], Some(s[i + 1..].trim())),
        None => (s, None),
    };
    let date = parse_date(date_part)?;
    let mut t = NaiveDateTime::new(date, NaiveTime::MIN);
    if let Some(tp) = time_part {
        let (clock, offset_s) = split_zone(tp)?;
        let mut fields = clock.split(':');
        let h: u32 = fields.next()?.parse().ok()?;
        let m: u32 = fields.next().map(|x| x.parse().ok()).unwrap_or(Some(0))?;
        let sec: u32 = fields.next().map(|x| x.split('.').next().unwrap_or("0").parse().ok()).unwrap_or(Some(0))?;
        t = NaiveDateTime::new(date, NaiveTime::from_hms_opt(h.min(23), m.min(59), sec.min(59))?);
        if h == 24 {
            t += Duration::hours(1);
        }
        t -= Duration::seconds(offset_s);
    }
    Some(t)
}

fn split_zone(tp: &str) -> Option<(&str, i64)> {
    if let Some(c) = tp.strip_suffix('Z') {
        return Some((c, 0));
    }
    if let Some(i) = tp.rfind(|c| c == '+' || c == '-') {
        let (clock, zone) = tp.split_at(i);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let z = &zone[1..];
        let (zh, zm) = match z.split_once(':') {
            Some((a, b)) => (a.parse::<i64>().ok()?, b.parse::<i64>().ok()?),
            None if z.len() == 4 => (z[..2].parse().ok()?, z[2..].parse().ok()?),
            None => (z.parse().ok()?, 0),
        };
        return Some((clock, sign * (zh * 3600 + zm * 60)));
    }
    Some((tp, 0))
}

fn parse_date(d: &str) -> Option<NaiveDate> {
    let parts: Vec<&str> = d.split('-').collect();
    match parts.as_slice() {
        [y, w, wd] if w.starts_with('W') => {
            let week: u32 = w[1..].parse().ok()?;
            let day: u32 = wd.parse().ok()?;
            NaiveDate::from_isoywd_opt(y.parse().ok()?, week, chrono::Weekday::try_from((day.max(1) - 1) as u8).ok()?)
        }
        [y, m, day] => NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, day.parse().ok()?),
        [y, o] if o.len() == 3 => NaiveDate::from_yo_opt(y.parse().ok()?, o.parse().ok()?),
        [y, m] => NaiveDate::from_ymd_opt(y.parse().ok()?, m.parse().ok()?, 1),
        [y] if y.len() == 8 => NaiveDate::from_ymd_opt(y[..4].parse().ok()?, y[4..6].parse().ok()?, y[6..].parse().ok()?),
        [y] => NaiveDate::from_ymd_opt(y.parse().ok()?, 1, 1),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        let a = parse_iso8601("2005-020").unwrap();
        assert_eq!(a, parse_iso8601("2005-01-20").unwrap());
        let b = parse_iso8601("2005-020T11:30").unwrap();
        assert_eq!((b.hour(), b.minute()), (11, 30));
        assert_eq!(parse_iso8601("2005-01-20 12:00:00+01:00").unwrap().hour(), 11);
        assert!(parse_iso8601("garbage").is_none());
    }

    #[test]
    fn date_specs() {
        let t = parse_iso8601("2005-020T11:30").unwrap();
        let spec = vec![("hours".to_string(), "9-16".to_string()), ("weekdays".to_string(), "1-5".to_string())];
        assert!(date_spec_matches(t, &spec));
        let spec = vec![("hours".to_string(), "12-16".to_string())];
        assert!(!date_spec_matches(t, &spec));
    }

    #[test]
    fn attribute_comparisons() {
        assert!(compare(Some("10"), "gt", Some("9"), None));
        assert!(!compare(Some("10"), "gt", Some("9"), Some("string")));
        assert!(compare(None, "ne", Some("x"), None));
        assert!(compare(Some("1.10"), "gt", Some("1.9"), Some("version")));
    }
}
