//! Scores: integers saturating at ±INFINITY (1,000,000), where a -INFINITY on
//! either side of a sum wins, so a ban is never cancelled by a preference.

use std::fmt;

pub const INFINITY: i64 = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Score(pub i64);

impl Score {
    pub const ZERO: Score = Score(0);
    pub const INF: Score = Score(INFINITY);
    pub const NEG_INF: Score = Score(-INFINITY);

    /// Parse a configured score; `None` for text that is not a score.
    pub fn parse(s: &str) -> Option<Score> {
        let t = s.trim();
        match t.to_ascii_lowercase().as_str() {
            "infinity" | "+infinity" => return Some(Score::INF),
            "-infinity" => return Some(Score::NEG_INF),
            "red" => return Some(Score::NEG_INF),
            "yellow" | "green" => return Some(Score::ZERO),
            _ => {}
        }
        // Pacemaker accepts a leading integer and ignores a fractional tail ("1.0").
        let digits: String = t
            .char_indices()
            .take_while(|(i, c)| c.is_ascii_digit() || (*i == 0 && (*c == '-' || *c == '+')))
            .map(|(_, c)| c)
            .collect();
        if digits.is_empty() || digits == "-" || digits == "+" {
            return None;
        }
        let v: i128 = digits.parse().ok()?;
        Some(Score(v.clamp(-INFINITY as i128, INFINITY as i128) as i64))
    }

    pub fn add(self, other: Score) -> Score {
        if self.0 <= -INFINITY || other.0 <= -INFINITY {
            Score::NEG_INF
        } else if self.0 >= INFINITY || other.0 >= INFINITY {
            Score::INF
        } else {
            Score((self.0 + other.0).clamp(-INFINITY, INFINITY))
        }
    }

    pub fn is_neg_inf(self) -> bool {
        self.0 <= -INFINITY
    }

    pub fn is_inf(self) -> bool {
        self.0 >= INFINITY
    }
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.0 >= INFINITY {
            write!(f, "INFINITY")
        } else if self.0 <= -INFINITY {
            write!(f, "-INFINITY")
        } else {
            write!(f, "{}", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturating_sums() {
        assert_eq!(Score::INF.add(Score::NEG_INF), Score::NEG_INF);
        assert_eq!(Score::NEG_INF.add(Score::INF), Score::NEG_INF);
        assert_eq!(Score(999_999).add(Score(5)), Score::INF);
        assert_eq!(Score(-3).add(Score(5)), Score(2));
    }

    #[test]
    fn parsing() {
        assert_eq!(Score::parse("+INFINITY"), Some(Score::INF));
        assert_eq!(Score::parse("-infinity"), Some(Score::NEG_INF));
        assert_eq!(Score::parse("2.0"), Some(Score(2)));
        assert_eq!(Score::parse("5000000"), Some(Score::INF));
        assert_eq!(Score::parse("abc"), None);
        assert_eq!(Score::NEG_INF.to_string(), "-INFINITY");
    }
}
