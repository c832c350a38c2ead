//! Maven's version order, as Maven's `ComparableVersion` defines it (no crate implements it).
//!
//! This is the order of Maven 3.8 (the `mvn` clients are tested with): a version is split,
//! case-insensitively, into items: numbers, and qualifiers; `.` separates items at one level,
//! `-`, every switch between digits and letters, and a qualifier after other items (`.X` reads
//! as `-X`) open a sub-list.
//! Trailing "null" items (`0`, the release qualifiers `""`, `ga`, `final`, `release`, empty
//! lists) are dropped, so `1`, `1.0`, `1-0` and `1.ga` are the same version. Known qualifiers
//! order as `alpha` (`a` before a digit) < `beta` (`b`) < `milestone` (`m`) < `rc` (`cr`) <
//! `snapshot` < release < `sp`; unknown ones come after, alphabetically. Numbers beat
//! qualifiers and sub-lists; sub-lists beat qualifiers.

use std::cmp::Ordering;
use std::fmt;

/// A version read for Maven's order ([`MavenVersion::compare`]: `1.0` equals `1`).
#[derive(Clone)]
pub struct MavenVersion {
    text: String,
    items: Vec<Item>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Item {
    /// A number, its digits without leading zeros (`""` is zero).
    Number(String),
    /// A qualifier, lowercase, aliases resolved.
    Qualifier(String),
    /// A sub-list.
    List(Vec<Item>),
}

/// The known qualifiers, in order; the empty one is a release.
const QUALIFIERS: [&str; 7] = ["alpha", "beta", "milestone", "rc", "snapshot", "", "sp"];

/// A qualifier's place: its index among [`QUALIFIERS`], unknown ones after all, by name.
fn qualifier_rank(qualifier: &str) -> (usize, &str) {
    match QUALIFIERS.iter().position(|q| *q == qualifier) {
        Some(index) => (index, ""),
        None => (QUALIFIERS.len(), qualifier),
    }
}

/// The release's place, what a missing item compares as.
const RELEASE: (usize, &str) = (5, "");

impl Item {
    fn number(digits: &str) -> Item {
        Item::Number(digits.trim_start_matches('0').to_owned())
    }

    fn qualifier(text: &str, followed_by_digit: bool) -> Item {
        let text = match (followed_by_digit, text) {
            (true, "a") => "alpha",
            (true, "b") => "beta",
            (true, "m") => "milestone",
            (_, "ga" | "final" | "release") => "",
            (_, "cr") => "rc",
            (_, other) => other,
        };
        Item::Qualifier(text.to_owned())
    }

    /// Whether the item is one trailing items may drop.
    fn is_null(&self) -> bool {
        match self {
            Item::Number(digits) => digits.is_empty(),
            Item::Qualifier(q) => q.is_empty(),
            Item::List(items) => items.is_empty(),
        }
    }

    /// Compares with another item, or with nothing (a shorter version's missing item).
    fn compare(&self, other: Option<&Item>) -> Ordering {
        match (self, other) {
            (Item::Number(digits), None) => {
                if digits.is_empty() {
                    Ordering::Equal
                } else {
                    Ordering::Greater
                }
            }
            (Item::Number(a), Some(Item::Number(b))) => {
                a.len().cmp(&b.len()).then_with(|| a.cmp(b))
            }
            (Item::Number(_), Some(_)) => Ordering::Greater,
            (Item::Qualifier(q), None) => qualifier_rank(q).cmp(&RELEASE),
            (Item::Qualifier(_), Some(Item::Number(_) | Item::List(_))) => Ordering::Less,
            (Item::Qualifier(a), Some(Item::Qualifier(b))) => {
                qualifier_rank(a).cmp(&qualifier_rank(b))
            }
            // Every item against nothing, not only the first (`1-0.1` > `1`).
            (Item::List(items), None) => items
                .iter()
                .map(|item| item.compare(None))
                .find(|o| *o != Ordering::Equal)
                .unwrap_or(Ordering::Equal),
            (Item::List(_), Some(Item::Number(_))) => Ordering::Less,
            (Item::List(_), Some(Item::Qualifier(_))) => Ordering::Greater,
            (Item::List(a), Some(Item::List(b))) => compare_lists(a, b),
        }
    }
}

fn compare_lists(a: &[Item], b: &[Item]) -> Ordering {
    for i in 0..a.len().max(b.len()) {
        let ordering = match (a.get(i), b.get(i)) {
            (Some(left), right) => left.compare(right),
            (None, Some(right)) => right.compare(None).reverse(),
            (None, None) => Ordering::Equal,
        };
        if ordering != Ordering::Equal {
            return ordering;
        }
    }
    Ordering::Equal
}

/// Drops trailing null items, stopping at the last one that is not a sub-list.
fn normalize(items: &mut Vec<Item>) {
    let mut i = items.len();
    while i > 0 {
        i -= 1;
        if items[i].is_null() {
            items.remove(i);
        } else if !matches!(items[i], Item::List(_)) {
            break;
        }
    }
}

/// Where a parse is: the lists opened so far, innermost last.
struct Parser {
    stack: Vec<Vec<Item>>,
}

impl Parser {
    fn push(&mut self, item: Item) {
        self.stack.last_mut().expect("the root list").push(item);
    }

    /// Opens a sub-list in the current list.
    fn open(&mut self) {
        self.stack.push(Vec::new());
    }

    /// Opens a sub-list unless the current list is still empty.
    fn open_unless_empty(&mut self) {
        if self.stack.last().is_some_and(|list| !list.is_empty()) {
            self.open();
        }
    }

    /// Closes every list, innermost first, normalizing each.
    fn finish(mut self) -> Vec<Item> {
        while self.stack.len() > 1 {
            let mut inner = self.stack.pop().expect("an open list");
            normalize(&mut inner);
            self.push(Item::List(inner));
        }
        let mut root = self.stack.pop().expect("the root list");
        normalize(&mut root);
        root
    }
}

impl MavenVersion {
    /// Reads any text as a Maven version (Maven accepts every string; its order decides).
    pub fn parse(text: &str) -> MavenVersion {
        let lower = text.to_lowercase();
        let chars: Vec<char> = lower.chars().collect();
        let mut parser = Parser {
            stack: vec![Vec::new()],
        };
        let mut digit = false;
        let mut start = 0;
        let piece = |from: usize, to: usize| chars[from..to].iter().collect::<String>();
        let item = |digit: bool, text: &str| {
            if digit {
                Item::number(text)
            } else {
                Item::qualifier(text, false)
            }
        };
        for (i, &c) in chars.iter().enumerate() {
            match c {
                '.' | '-' => {
                    if i == start {
                        parser.push(Item::Number(String::new()));
                    } else {
                        parser.push(item(digit, &piece(start, i)));
                    }
                    start = i + 1;
                    if c == '-' {
                        parser.open();
                    }
                }
                c if c.is_ascii_digit() => {
                    if !digit && i > start {
                        // `.X1` reads as `-X1`: a qualifier after other items opens a list.
                        parser.open_unless_empty();
                        parser.push(Item::qualifier(&piece(start, i), true));
                        start = i;
                        parser.open();
                    }
                    digit = true;
                }
                _ => {
                    if digit && i > start {
                        parser.push(Item::number(&piece(start, i)));
                        start = i;
                        parser.open();
                    }
                    digit = false;
                }
            }
        }
        if chars.len() > start {
            if !digit {
                // A final `.X` reads as `-X` too.
                parser.open_unless_empty();
            }
            parser.push(item(digit, &piece(start, chars.len())));
        }
        MavenVersion {
            text: text.to_owned(),
            items: parser.finish(),
        }
    }

    /// The version as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Orders two versions as Maven does. Not a total order (Maven's has cycles, such as
    /// `1.a-0` < `1-alpha` < `1` < `1.a-0`), so it is no `Ord`: sort with something that
    /// tolerates that.
    pub fn compare(&self, other: &MavenVersion) -> Ordering {
        compare_lists(&self.items, &other.items)
    }

    /// Whether this is a `-SNAPSHOT` version (a development version, replaced by timestamped
    /// builds).
    pub fn is_snapshot(&self) -> bool {
        self.text.ends_with("-SNAPSHOT")
    }
}

impl fmt::Debug for MavenVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MavenVersion({:?})", self.text)
    }
}

impl fmt::Display for MavenVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Orders two version strings by Maven's rules.
pub fn compare(a: &str, b: &str) -> Ordering {
    MavenVersion::parse(a).compare(&MavenVersion::parse(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Maven's own `ComparableVersionTest` sequences, each strictly increasing.
    const QUALIFIER_ORDER: &[&str] = &[
        "1-alpha2snapshot",
        "1-alpha2",
        "1-alpha-123",
        "1-beta-2",
        "1-beta123",
        "1-m2",
        "1-m11",
        "1-rc",
        "1-cr2",
        "1-rc123",
        "1-SNAPSHOT",
        "1",
        "1-sp",
        "1-sp2",
        "1-sp123",
        "1-abc",
        "1-def",
        "1-pom-1",
        "1-1-snapshot",
        "1-1",
        "1-2",
        "1-123",
    ];

    /// Numbers against qualifiers, as Maven 3.8.7 orders them (its `ComparableVersion` main
    /// agrees with every step).
    const NUMBER_ORDER: &[&str] = &[
        "2.0", "2.0.a", "2-1", "2.0.2", "2.0.123", "2.1.0", "2.1-a", "2.1b", "2.1-c", "2.1-1",
        "2.1.0.1", "2.2", "2.123", "11.a2", "11.a11", "11.b2", "11.b11", "11.m2", "11.m11", "11",
        "11.a", "11b", "11c", "11m",
    ];

    #[test]
    fn maven_sequences_are_strictly_increasing() {
        for sequence in [QUALIFIER_ORDER, NUMBER_ORDER] {
            for (i, low) in sequence.iter().enumerate() {
                for high in &sequence[i + 1..] {
                    assert_eq!(compare(low, high), Ordering::Less, "{low} < {high}");
                    assert_eq!(compare(high, low), Ordering::Greater, "{high} > {low}");
                }
            }
        }
    }

    #[test]
    fn maven_equalities_hold() {
        // Maven's own `ComparableVersionTest` equalities.
        let groups: &[&[&str]] = &[
            &[
                "1", "1.0", "1.0.0", "1-0", "1.0-0", "1ga", "1-ga", "1.ga", "1final", "1release",
            ],
            &["1a", "1-a", "1.0-a", "1.0.0-a", "1.0a", "1.0.0a", "1A"],
            &["1x", "1-x", "1.0-x", "1.0.0-x", "1.0x", "1.0.0x", "1X"],
            &["1a1", "1-a1", "1alpha1", "1-alpha-1", "1A1", "1ALPHA1"],
            &["1b2", "1-b2", "1beta2", "1-beta-2", "1BETA2"],
            &["1m3", "1-m3", "1milestone3", "1-milestone-3", "1MILESTONE3"],
            &["1rc", "1cr", "1-rc", "1-cr", "1RC", "1CR"],
            &["1.0.0-SNAPSHOT", "1-snapshot", "1.0-Snapshot"],
            &["2.0.0-beta-1", "2-b1", "2.0-beta1"],
            &["2.0.a", "2.0.0.a", "2-a"],
            &["5.0.0.M1", "5-milestone-1", "5.0.0-m1"],
            &["1.000000000000000000001", "1.1"],
        ];
        for group in groups {
            for a in *group {
                for b in *group {
                    assert_eq!(compare(a, b), Ordering::Equal, "{a} = {b}");
                }
            }
        }
    }

    #[test]
    fn a_qualifier_after_a_dot_reads_as_after_a_dash() {
        for (low, high) in [
            ("5.0.0.M1", "5.0.0-M2"),
            ("1.0.RC1", "1.0-RC2"),
            ("1.0.0.X1", "1.0.0-X2"),
            ("2.0.RC1", "2.0-SNAPSHOT"),
            ("1.0-alpha", "1.0-beta"),
            ("1.0-rc", "1.0-SNAPSHOT"),
            ("1.0-SNAPSHOT", "1.0"),
            ("1.0", "1.0-sp"),
            ("1.0-sp", "1.0.1"),
        ] {
            assert_eq!(compare(low, high), Ordering::Less, "{low} < {high}");
        }
    }

    #[test]
    fn long_numbers_order_by_magnitude() {
        assert_eq!(
            compare("1.123456789012345678901", "1.9999999999"),
            Ordering::Greater
        );
        assert_eq!(compare("10", "9"), Ordering::Greater);
        assert_eq!(compare("1.0010", "1.9"), Ordering::Greater);
        assert!(MavenVersion::parse("1.1-SNAPSHOT").is_snapshot());
        assert!(!MavenVersion::parse("1.1-snapshot-2").is_snapshot());
    }

    fn version() -> impl Strategy<Value = String> {
        // Versions as the registry accepts them: starting with a letter or digit.
        proptest::string::string_regex(
            "[0-9a-c][0-9a-c.-]{0,8}|(1|2|10)([.-](0|1|a|alpha|rc|sp|snapshot|ga|x)){0,4}",
        )
        .expect("a regex")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Antisymmetric and reflexive. Not transitive: Maven's own order has cycles
        /// (`1.a-0` < `1-alpha` < `1` < `1.a-0` in Maven 3.8.7), so what must hold is agreement
        /// with Maven (the server tests compare with its jar), and callers that sort must not
        /// rely on a total order.
        #[test]
        fn the_order_is_antisymmetric(a in version(), b in version()) {
            let (a, b) = (MavenVersion::parse(&a), MavenVersion::parse(&b));
            prop_assert_eq!(a.compare(&b), b.compare(&a).reverse());
            prop_assert_eq!(a.compare(&a), Ordering::Equal);
        }

        #[test]
        fn any_text_is_a_version(text in ".{0,40}") {
            let _ = MavenVersion::parse(&text);
        }
    }
}
