use super::*;
use crate::FormatRules;

/// Format rules enough for the firewall: dotted numeric versions, names lowercased (PyPI's
/// separators made `-`, as its normal form does).
#[derive(Debug)]
struct Rules(PackageFormat);

impl FormatRules for Rules {
    fn format(&self) -> PackageFormat {
        self.0
    }

    fn package_key(&self, name: &str) -> crate::Result<String> {
        Ok(match self.0 {
            PackageFormat::Pypi => name.to_lowercase().replace(['_', '.'], "-"),
            PackageFormat::Nuget => name.to_lowercase(),
            _ => name.to_owned(),
        })
    }

    fn version_key(&self, version: &str) -> crate::Result<String> {
        Ok(match self.0 {
            PackageFormat::Nuget if version.split('.').count() == 2 => format!("{version}.0"),
            _ => version.to_owned(),
        })
    }

    fn compare_versions(&self, a: &str, b: &str) -> std::cmp::Ordering {
        let parse = |v: &str| {
            v.split('.')
                .map(|p| p.parse::<u64>().unwrap_or(0))
                .collect::<Vec<_>>()
        };
        parse(a).cmp(&parse(b))
    }

    fn publish_mode(&self) -> crate::PublishMode {
        crate::PublishMode::NewVersion
    }

    fn extra_digests(&self) -> crate::ExtraDigests {
        crate::ExtraDigests::default()
    }
}

const NPM: &Rules = &Rules(PackageFormat::Npm);

fn key(format: PackageFormat, name: &str) -> Option<String> {
    Rules(format).package_key(name).ok()
}

fn candidate<'a>(name: &'a str, version: &'a str) -> Candidate<'a> {
    Candidate {
        format: PackageFormat::Npm,
        repository: "npm-proxy",
        name,
        version,
        published: Timestamp(0),
        upstream: true,
        license: Some("MIT"),
    }
}

fn rule(json: serde_json::Value) -> FirewallRule {
    let rule: FirewallRule = serde_json::from_value(json).unwrap();
    rule.validate().unwrap();
    rule
}

#[test]
fn rules_check_exactly_one_thing_and_are_named_well() {
    for bad in [
        serde_json::json!({"name": "x"}),
        serde_json::json!({"name": "x", "deny": ["a"], "min_age": "3d"}),
        serde_json::json!({"name": "bad name", "deny": ["a"]}),
        serde_json::json!({"name": "x", "licenses": {}}),
    ] {
        let parsed: FirewallRule = serde_json::from_value(bad.clone()).unwrap();
        assert!(parsed.validate().is_err(), "{bad}");
    }
    for bad in [
        serde_json::json!({"name": "x", "deny": ["pkg:cargo/serde"]}),
        serde_json::json!({"name": "x", "deny": ["pkg:npm/a?x=1"]}),
        serde_json::json!({"name": "x", "deny": ["("]}),
        serde_json::json!({"name": "x", "advisories": "severe"}),
        serde_json::json!({"name": "x", "min_age": "3"}),
        serde_json::json!({"name": "x", "min_age": "3w"}),
        serde_json::json!({"name": "x", "min_age": "3é"}),
        serde_json::json!({"name": "x", "min_age": "é"}),
        serde_json::json!({"name": "x", "min_age": "99999999999d"}),
    ] {
        assert!(
            serde_json::from_value::<FirewallRule>(bad.clone()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn deny_allow_and_exceptions_by_name_pattern_and_package_url() {
    let firewall = Firewall::new(
        vec![
            rule(
                serde_json::json!({"name": "no-left-pad", "deny": ["pkg:npm/left-pad@1.3.1", "evil-.*"],
                                    "exceptions": ["pkg:npm/evil-but-ok"]}),
            ),
            rule(serde_json::json!({"name": "scoped", "repositories": "other", "deny": [".*"]})),
            rule(serde_json::json!({"name": "corp-scope", "deny": ["pkg:npm/%40corp/secret"]})),
        ],
        Default::default(),
    );
    let now = Timestamp(0);
    assert_eq!(
        firewall.check(&candidate("left-pad", "1.3.0"), NPM, now),
        []
    );
    let hits = firewall.check(&candidate("left-pad", "1.3.1"), NPM, now);
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].rule, "no-left-pad");
    assert!(
        hits[0].reason.contains("pkg:npm/left-pad@1.3.1 is denied"),
        "{}",
        hits[0].reason
    );
    assert_eq!(
        firewall
            .check(&candidate("evil-x", "1.0.0"), NPM, now)
            .len(),
        1
    );
    assert_eq!(
        firewall.check(&candidate("evil-but-ok", "1.0.0"), NPM, now),
        []
    );
    assert_eq!(
        firewall
            .check(&candidate("@corp/secret", "1.0.0"), NPM, now)
            .len(),
        1
    );
    let allow = Firewall::new(
        vec![rule(
            serde_json::json!({"name": "only", "mode": "warn", "allow": ["pkg:npm/a", "b-.*"]}),
        )],
        Default::default(),
    );
    assert_eq!(allow.check(&candidate("a", "1.0.0"), NPM, now), []);
    assert_eq!(allow.check(&candidate("b-c", "1.0.0"), NPM, now), []);
    let hits = allow.check(&candidate("c", "1.0.0"), NPM, now);
    assert_eq!(
        (hits[0].mode, hits[0].reason.contains("allow list")),
        (Mode::Warn, true)
    );
}

#[test]
fn the_age_gate_holds_back_young_upstream_versions_only() {
    let firewall = Firewall::new(
        vec![rule(
            serde_json::json!({"name": "cool-off", "min_age": "3d"}),
        )],
        Default::default(),
    );
    let day = 86_400_000;
    let mut young = candidate("pad", "2.0.0");
    young.published = Timestamp(10 * day);
    assert_eq!(firewall.check(&young, NPM, Timestamp(12 * day)).len(), 1);
    assert_eq!(firewall.check(&young, NPM, Timestamp(13 * day)), []);
    young.upstream = false;
    assert_eq!(
        firewall.check(&young, NPM, Timestamp(12 * day)),
        [],
        "hosted"
    );
}

#[test]
fn osv_advisories_by_range_list_and_severity() {
    let mut advisories = Advisories::new();
    advisories
        .add_json(
            serde_json::json!([
                {"id": "GHSA-1", "summary": "prototype pollution",
                 "database_specific": {"severity": "HIGH"},
                 "affected": [{"package": {"ecosystem": "npm", "name": "pad"},
                               "ranges": [{"type": "SEMVER", "events": [{"introduced": "0"}, {"fixed": "1.3.1"},
                                                                         {"introduced": "2.0.0"}, {"last_affected": "2.1.0"}]}]}]},
                {"id": "MAL-2", "summary": "malware",
                 "affected": [{"package": {"ecosystem": "npm", "name": "pad"}, "versions": ["9.9.9"]},
                              {"package": {"ecosystem": "crates.io", "name": "pad"}, "versions": ["1.0.0"]}]},
                {"id": "GHSA-3", "summary": "low thing", "database_specific": {"severity": "LOW"},
                 "affected": [{"package": {"ecosystem": "PyPI", "name": "Django_Thing"}, "versions": ["1.0"]}]},
                {"id": "GHSA-4", "withdrawn": "2020-01-01T00:00:00Z",
                 "affected": [{"package": {"ecosystem": "npm", "name": "pad"}, "versions": ["1.5.0"]}]}
            ])
            .to_string()
            .as_bytes(),
            &key,
        )
        .unwrap();
    assert_eq!(advisories.len(), 3);
    let ids = |version: &str| -> Vec<String> {
        advisories
            .affecting("pad", version, NPM)
            .iter()
            .map(|a| a.id.clone())
            .collect()
    };
    assert_eq!(ids("1.0.0"), ["GHSA-1"]);
    assert_eq!(ids("1.3.1"), Vec::<String>::new());
    assert_eq!(ids("1.5.0"), Vec::<String>::new(), "withdrawn");
    assert_eq!(ids("2.1.0"), ["GHSA-1"]);
    assert_eq!(ids("2.2.0"), Vec::<String>::new());
    assert_eq!(ids("9.9.9"), ["MAL-2"]);
    assert_eq!(
        advisories.about(PackageFormat::Npm, "pad")[0].semver_range(),
        "<1.3.1 || >=2.0.0 <=2.1.0"
    );
    assert_eq!(
        advisories.about(PackageFormat::Pypi, "django-thing").len(),
        1
    );

    let firewall = Firewall::new(
        vec![rule(
            serde_json::json!({"name": "vulns", "advisories": "high"}),
        )],
        std::sync::Arc::new(advisories),
    );
    let hits = firewall.check(&candidate("pad", "1.0.0"), NPM, Timestamp(0));
    assert!(
        hits[0]
            .reason
            .contains("GHSA-1 (high, prototype pollution)"),
        "{}",
        hits[0].reason
    );
    assert!(
        firewall.check(&candidate("pad", "9.9.9"), NPM, Timestamp(0))[0]
            .reason
            .contains("MAL-2 (critical")
    );
    assert!(advisories_invalid());
}

fn advisories_invalid() -> bool {
    let mut advisories = Advisories::new();
    advisories.add_json(b"not json", &key).is_err()
        && advisories
            .add_json(br#"{"summary": "no id"}"#, &key)
            .is_err()
}

#[test]
fn licences_allowed_and_denied() {
    let firewall = Firewall::new(
        vec![
            rule(
                serde_json::json!({"name": "permissive", "licenses": {"allow": ["MIT", "Apache-2.0"]}}),
            ),
            rule(
                serde_json::json!({"name": "no-gpl", "mode": "warn", "licenses": {"deny": ["GPL-3.0"]}}),
            ),
        ],
        Default::default(),
    );
    let mut c = candidate("pad", "1.0.0");
    assert_eq!(firewall.check(&c, NPM, Timestamp(0)), []);
    c.license = Some("gpl-3.0");
    let hits = firewall.check(&c, NPM, Timestamp(0));
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].mode, Mode::Block, "blocking hits first");
    c.license = None;
    assert!(
        firewall.check(&c, NPM, Timestamp(0))[0]
            .reason
            .contains("declares no licence")
    );
    // Expressions: every licence in them counts, with or without a version-range suffix.
    for denied in [
        "(GPL-3.0)",
        "MIT AND GPL-3.0",
        "GPL-3.0-only",
        "(MIT OR GPL-3.0-or-later)",
        "GPL-3.0+",
    ] {
        c.license = Some(denied);
        let hits = firewall.check(&c, NPM, Timestamp(0));
        assert!(
            hits.iter().any(|h| h.rule == "no-gpl"),
            "{denied}: {hits:?}"
        );
    }
    c.license = Some("Apache-2.0 WITH LLVM-exception");
    assert_eq!(
        firewall.check(&c, NPM, Timestamp(0)),
        [],
        "an exception is not a licence"
    );
    c.license = Some("MIT OR BSD-3-Clause");
    let hits = firewall.check(&c, NPM, Timestamp(0));
    assert!(
        hits[0]
            .reason
            .contains("BSD-3-Clause, which is not allowed"),
        "{hits:?}"
    );
}

#[test]
fn package_urls_of_every_format() {
    let check = |purl: &str, format: PackageFormat, name: &str, version: &str| {
        let parsed = Purl::parse(purl).unwrap();
        let mut c = candidate(name, version);
        c.format = format;
        parsed.matches(&c, &Rules(format))
    };
    assert!(check(
        "pkg:npm/%40scope/name@1.0.0",
        PackageFormat::Npm,
        "@scope/name",
        "1.0.0"
    ));
    assert!(check(
        "pkg:pypi/Django_Thing@1.0",
        PackageFormat::Pypi,
        "django-thing",
        "1.0"
    ));
    assert!(check(
        "pkg:maven/org.example/lib@1.0",
        PackageFormat::Maven,
        "org.example:lib",
        "1.0"
    ));
    assert!(check(
        "pkg:nuget/Newtonsoft.Json",
        PackageFormat::Nuget,
        "newtonsoft.json",
        "13.0.1"
    ));
    assert!(!check(
        "pkg:npm/name@1.0.0",
        PackageFormat::Pypi,
        "name",
        "1.0.0"
    ));
    for bad in [
        "npm/x",
        "pkg:npm",
        "pkg:npm/",
        "pkg:npm/x@",
        "pkg:npm/a/b/c",
        "pkg:npm/%zz",
    ] {
        assert!(Purl::parse(bad).is_err(), "{bad}");
    }
}
